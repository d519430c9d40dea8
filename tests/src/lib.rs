//! The one harness of Octopus's end-to-end suites (`e2e/` for the limb, `cluster/` for
//! the brain): a real kube-apiserver with etcd ([`apiserver`]), the `limb` and `brain`
//! processes built from this checkout ([`bins`], run as [`process`]es), headless Chromium ([`browser`]), the device peers (pymodbus, socat and
//! mbpoll in [`peers`], mosquitto in [`mosquitto`], asyncua in [`opcua`]) and the one lookup of repository
//! files and adaptor components ([`paths`]).
//!
//! It knows no Octopus crate: the suites bring the limb and brain libraries as
//! dev-dependencies, and the limb's and CLI's tests and benches can use this crate
//! without a cycle. Unit tests stay next to their code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a failed step fails the test that asked for it"
)]

pub mod apiserver;
pub mod bins;
pub mod browser;
pub mod mosquitto;
pub mod opcua;
pub mod paths;
pub mod peers;
pub mod process;
