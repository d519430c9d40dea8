//! End-to-end tests of the limb with real adaptor components built from
//! `adaptors-wasm/` (by `scripts/test.sh`, which sets `OCTOPUS_ADAPTORS_DIR`).

mod common;

mod capabilities;
mod containment;
mod hotswap;
mod loading;
mod runtime;
mod standalone;
