//! Status and events outside of `poll`: pushed readings (subscriptions) and
//! Kubernetes events on the DeviceLink. Native builds print to stderr.

use serde::Serialize;

use crate::error::Result;

/// Normal or warning, as Kubernetes events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Replaces the device's status with `status` (which must encode to a JSON object).
pub fn report_status<S: Serialize + ?Sized>(status: &S) -> Result<()> {
    let json = crate::status::to_json(status)?;
    #[cfg(target_arch = "wasm32")]
    crate::bindings::octopus::adaptor::events::report_status(&json);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[status] {json}");
    Ok(())
}

/// Records an event; `reason` is a short CamelCase word such as `Connected`.
pub fn record(event_type: EventType, reason: &str, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::octopus::adaptor::events as wit;
        let event_type = match event_type {
            EventType::Normal => wit::EventType::Normal,
            EventType::Warning => wit::EventType::Warning,
        };
        wit::record_event(event_type, reason, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[event {event_type:?}] {reason}: {message}");
}

/// Records a `Normal` event.
pub fn normal(reason: &str, message: &str) {
    record(EventType::Normal, reason, message);
}

/// Records a `Warning` event.
pub fn warning(reason: &str, message: &str) {
    record(EventType::Warning, reason, message);
}
