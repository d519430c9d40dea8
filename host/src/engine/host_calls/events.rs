//! `octopus:adaptor/events`: status pushed outside a poll, and events on the link.

use crate::bindings::octopus::adaptor::events as wit;
use crate::bounds;
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
        let event = match check_event(&reason, &message) {
            Ok(()) => {
                let type_ = match event_type {
                    wit::EventType::Normal => EventType::Normal,
                    wit::EventType::Warning => EventType::Warning,
                };
                Event::new(type_, &reason, &bounds::escape(&message))
            }
            // The guest cannot be told (the call returns nothing), so the link's own
            // events say what was refused and why.
            Err(why) => Event::new(
                EventType::Warning,
                "EventRefused",
                &format!("an adaptor event was refused: {why}"),
            ),
        };
        self.outbox.events.push(event);
        Ok(())
    }
}

/// An event's reason is one CamelCase word, as Kubernetes expects; both it and the
/// message are bounded.
fn check_event(reason: &str, message: &str) -> Result<(), String> {
    bounds::check("its reason", reason, bounds::MAX_EVENT_REASON).map_err(|e| e.to_string())?;
    bounds::check("its message", message, bounds::MAX_EVENT_MESSAGE).map_err(|e| e.to_string())?;
    if reason.is_empty() || !reason.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "its reason {:?} is not one word of letters and digits",
            bounds::escape(reason)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_before_they_are_kept() {
        let long = "x".repeat(bounds::MAX_EVENT_MESSAGE + 1);
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("Connected", "all good", None),
            ("Connected", "two\nlines", None),
            ("", "m", Some("not one word")),
            ("Forged\nINFO", "m", Some("not one word")),
            ("Has Space", "m", Some("not one word")),
            (
                &"R".repeat(65),
                "m",
                Some("its reason is 65 bytes long, over the limit of 64"),
            ),
            (
                "Long",
                &long,
                Some("its message is 1025 bytes long, over the limit of 1024"),
            ),
        ];
        for (reason, message, want) in cases {
            let got = check_event(reason, message).err();
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{reason:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
