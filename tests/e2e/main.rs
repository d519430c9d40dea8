//! End-to-end tests of the limb with real adaptor components built from
//! `adaptors-wasm/` (by `scripts/test.sh`, which sets `OCTOPUS_ADAPTORS_DIR`), through the
//! crate's one harness (`octopus_tests`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use octopus_tests::{mosquitto, peers};

mod ble;
mod ble_cluster;
mod ble_gatt;
mod ble_uart;
mod capabilities;
mod cluster;
mod containment;
mod dashboard;
mod dashboard_cluster;
mod fidelity;
mod hotswap;
mod languages;
mod loading;
mod migration;
mod modbus;
mod mqtt;
mod opcua;
mod runtime;
mod schema;
mod standalone;
mod status_floor;
