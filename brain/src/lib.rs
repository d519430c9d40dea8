//! The Octopus brain: validates every DeviceLink's node and model, marks each link with
//! its node so limbs select their own, and lets deletions of links on vanished nodes
//! finish. Every replica also serves the DeviceLink admission webhook ([`admission`]) and
//! a read-only, cluster-wide [`dashboard`].
//!
//! It never talks to a device or runs an adaptor: what it knows of adaptors is what their
//! ConfigMaps' labels and annotations say.

pub mod admin;
pub mod admission;
pub mod config;
pub mod dashboard;
pub mod leader;
pub mod metrics;
pub mod models;
pub mod reconciler;
pub mod run;
pub mod validate;
