//! Time from the limb (the component links no WASI clocks of its own). Native builds
//! use the system clocks.

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::octopus::adaptor::clock::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A monotonic clock in nanoseconds with an arbitrary origin, for deadlines.
pub fn monotonic_ns() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::octopus::adaptor::clock::monotonic_ns()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Milliseconds elapsed on the monotonic clock.
pub fn monotonic_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

/// Now as an RFC 3339 UTC timestamp, for `updatedAt`.
pub fn now_rfc3339() -> String {
    crate::time::rfc3339(now_ms())
}
