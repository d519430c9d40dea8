//! The Octopus API: `DeviceLink` (group `edge.cattle.io`), its condition pipeline, and
//! the capability grants a link may carry.
//!
//! This crate depends on nothing else of ours, so the brain, the limb and the tests
//! share one definition of the API.
//!
//! Without the default `kube` feature only [`models`] is left, as plain serde types
//! with no Kubernetes dependency: that is what the adaptors (`wasm32-wasip2` guests)
//! parse their specs with, so a model has one definition for its CRD and its guest.

pub mod compat;
#[cfg(feature = "kube")]
pub mod conditions;
pub mod declared;
#[cfg(feature = "kube")]
pub mod generated;
#[cfg(feature = "kube")]
pub mod grants;
pub mod models;
pub mod octopus;
#[cfg(feature = "kube")]
pub mod parse;
#[cfg(feature = "kube")]
pub mod schema;
#[cfg(feature = "kube")]
pub mod structural;
#[cfg(feature = "kube")]
pub mod v1alpha1;
#[cfg(feature = "kube")]
pub mod validate;

#[cfg(feature = "kube")]
pub use conditions::{Condition, ConditionStatus, ConditionType, Conditions};
#[cfg(feature = "kube")]
pub use grants::{Grant, GrantKind};
#[cfg(feature = "kube")]
pub use v1alpha1::{DeviceLink, DeviceLinkSpec, DeviceLinkStatus};
