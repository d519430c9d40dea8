//! The `octopus` command (also `kubectl octopus`), the one command line for users:
//! inspect adaptor components, push them as the ConfigMaps the limb reads (or print
//! those with `push --dry-run`), and list the adaptors in a cluster and where
//! DeviceLinks run them. The `limb` binary only runs (standalone or on a cluster node).
//!
//! Owns presenting and the talk with the API server. Must not know components itself:
//! compiling, validating, describing and the ConfigMap format are the limb's own code
//! (`limb::adaptors`), so `octopus` and a limb of the same commit always agree.

pub mod cluster;
pub mod config;
pub mod inspect;
pub mod list;
pub mod models;
pub mod output;
pub mod push;
