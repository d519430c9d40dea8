//! `octopus:adaptor/clock`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::octopus::adaptor::clock as wit;
use crate::engine::StoreState;

impl wit::Host for StoreState {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    async fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        Ok(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}
