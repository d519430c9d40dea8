//! The Octopus brain: validates every DeviceLink's node and model, marks each link with
//! its node so limbs select their own, and lets deletions of links on vanished nodes
//! finish. Every replica also serves the DeviceLink admission webhook ([`admission`]).

pub mod admin;
pub mod admission;
pub mod backoff;
pub mod config;
pub mod leader;
pub mod metrics;
pub mod reconciler;
pub mod run;
