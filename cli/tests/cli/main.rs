//! The `octopus` binary as a process: `inspect` on real adaptor components, and `push`
//! and `list` against a real kube-apiserver (built by `scripts/build-kube.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use octopus_tests::apiserver;

mod common;

mod inspect;
mod list;
mod models;
mod push;
