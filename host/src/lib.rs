//! The Octopus limb: a sandboxed wasmtime host that drives edge devices through
//! WebAssembly adaptors.
//!
//! The data path, module by module: a DeviceLink ([`crds`]), from a folder
//! ([`standalone`]) or the API (`cluster`), goes to the [`fleet`], which decides what
//! runs on which adaptor version; it resolves to grants
//! ([`capabilities::grants`]), checked against the node [`capabilities::policy`]; the
//! [`supervisor`] instantiates the adaptor ([`adaptors`], on the [`engine`]) in a store
//! holding only those capability handles, configures and polls the device, and writes
//! its status to the [`status`] board, which [`standalone`] and [`admin`] show.
//!
//! Only `cluster` talks to an API server: the engine, capabilities, adaptors, supervisor
//! and fleet know nothing of Kubernetes, so both modes share them, and the capabilities
//! know nothing of the engine or the WIT either (see docs/architecture.md).

pub mod adaptors;
pub mod admin;
pub mod bindings;
pub mod bounds;
pub mod capabilities;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod extension;
pub mod fleet;
pub mod metrics;
pub mod run;
pub mod standalone;
pub mod status;
pub mod supervisor;
