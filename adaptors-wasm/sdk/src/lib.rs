//! What every Rust adaptor needs and should not write again: Octopus's duration strings
//! (`syncInterval: 1m30s`) and `updatedAt` timestamps. Pure code, so it builds for the
//! component and for native unit tests alike.

pub mod duration;
pub mod time;
