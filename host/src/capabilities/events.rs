//! `octopus:adaptor/events`: status pushed outside a poll, and events on the link.

use crate::bindings::octopus::adaptor::events as wit;
use crate::engine::StoreState;
use crate::status::{Event, EventType};

/// Most events buffered between two supervisor turns; more are counted, not kept.
pub const MAX_PENDING_EVENTS: usize = 32;

impl wit::Host for StoreState {
    async fn report_status(&mut self, status: String) -> wasmtime::Result<()> {
        self.outbox.status = Some(status);
        Ok(())
    }

    async fn record_event(
        &mut self,
        event_type: wit::EventType,
        reason: String,
        message: String,
    ) -> wasmtime::Result<()> {
        if self.outbox.events.len() >= MAX_PENDING_EVENTS {
            self.outbox.dropped_events += 1;
            return Ok(());
        }
        let type_ = match event_type {
            wit::EventType::Normal => EventType::Normal,
            wit::EventType::Warning => EventType::Warning,
        };
        self.outbox.events.push(Event::new(
            type_,
            &crate::capabilities::log::truncate(&reason, 64),
            &crate::capabilities::log::truncate(&message, 1024),
        ));
        Ok(())
    }
}
