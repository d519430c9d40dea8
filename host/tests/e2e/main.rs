//! End-to-end tests of the limb with real adaptor components built from
//! `adaptors-wasm/` (by `scripts/test.sh`, which sets `OCTOPUS_ADAPTORS_DIR`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;
#[path = "../../../brain/tests/cluster/repo.rs"]
mod repo;

mod capabilities;
mod cluster;
mod containment;
mod hotswap;
mod languages;
mod loading;
mod modbus;
mod mosquitto;
mod mqtt;
mod peers;
mod runtime;
mod standalone;
