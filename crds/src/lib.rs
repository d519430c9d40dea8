//! The Octopus API: `DeviceLink` (group `edge.cattle.io`), its condition pipeline, and
//! the capability grants a link may carry.
//!
//! This crate depends on nothing else of ours, so the brain, the limb and the tests
//! share one definition of the API.

pub mod conditions;
pub mod generated;
pub mod grants;
pub mod models;
pub mod parse;
pub mod schema;
pub mod v1alpha1;
pub mod validate;

pub use conditions::{Condition, ConditionStatus, ConditionType, Conditions};
pub use grants::{Grant, GrantKind};
pub use v1alpha1::{DeviceLink, DeviceLinkSpec, DeviceLinkStatus};
