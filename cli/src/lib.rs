//! The `octopus` command (also `kubectl octopus`): inspect an adaptor component, push
//! it as the ConfigMaps the limb reads, and list the adaptors in a cluster and where
//! DeviceLinks run them.
//!
//! Everything about components (compiling, validating, describing, the ConfigMap
//! format) is the limb's own code (`limb::adaptors`); this crate only presents it and
//! talks to the API server.

pub mod cluster;
pub mod config;
pub mod inspect;
pub mod list;
pub mod output;
pub mod push;
