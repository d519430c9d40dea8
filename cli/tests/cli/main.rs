//! The `octopus` binary as a process: `inspect` on real adaptor components, and `push`
//! and `list` against a real kube-apiserver (built by `scripts/build-kube.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

#[path = "../../../brain/tests/cluster/apiserver.rs"]
#[allow(dead_code, reason = "shared with the brain's tests")]
mod apiserver;

mod common;

mod inspect;
mod list;
mod push;
