//! The Octopus limb: a sandboxed wasmtime host that drives edge devices through
//! WebAssembly adaptors.
//!
//! The data path, module by module: a DeviceLink ([`crds`]) resolves to grants
//! ([`capabilities::grants`]), checked against the node [`capabilities::policy`]; the
//! [`supervisor`] instantiates the adaptor ([`adaptors`], on the [`engine`]) in a store
//! holding only those capability handles, configures and polls the device, and writes
//! its status to the [`status`] board, which [`standalone`] and [`admin`] show.

pub mod adaptors;
pub mod admin;
pub mod bindings;
pub mod bounds;
pub mod capabilities;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod engine;
pub mod extension;
pub mod metrics;
pub mod run;
pub mod standalone;
pub mod status;
pub mod supervisor;
