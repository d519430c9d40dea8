//! `octopus:adaptor/gpio` for the guest: WIT types in, [`capabilities::gpio`] out.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;
use wasmtime::component::Resource;

use super::Wit;
use crate::bindings::CapabilityError;
use crate::bindings::octopus::adaptor::gpio as wit;
use crate::capabilities::gpio::{
    Bias, Direction, Drive, EVENT_BUFFER, EdgeEvent, Edges, Line, Settings,
};
use crate::engine::StoreState;

impl From<wit::Direction> for Direction {
    fn from(d: wit::Direction) -> Self {
        match d {
            wit::Direction::Input => Direction::Input,
            wit::Direction::Output => Direction::Output,
        }
    }
}

/// The guest's settings as the capability's own. A drive mode other than push-pull on
/// an input stays in, so that the capability refuses it by name.
fn settings(s: &wit::LineSettings) -> (Direction, Settings) {
    let direction = Direction::from(s.direction);
    let drive = match (direction, s.drive) {
        (Direction::Input, wit::Drive::PushPull) => None,
        (_, wit::Drive::PushPull) => Some(Drive::PushPull),
        (_, wit::Drive::OpenDrain) => Some(Drive::OpenDrain),
        (_, wit::Drive::OpenSource) => Some(Drive::OpenSource),
    };
    let settings = Settings {
        active_low: s.active_low,
        bias: match s.bias {
            wit::Bias::AsIs => None,
            wit::Bias::PullUp => Some(Bias::PullUp),
            wit::Bias::PullDown => Some(Bias::PullDown),
            wit::Bias::Disabled => Some(Bias::Disabled),
        },
        drive,
        debounce: (s.debounce_us > 0).then(|| Duration::from_micros(u64::from(s.debounce_us))),
        edges: match s.edges {
            wit::Edges::None => None,
            wit::Edges::Rising => Some(Edges::Rising),
            wit::Edges::Falling => Some(Edges::Falling),
            wit::Edges::Both => Some(Edges::Both),
        },
    };
    (direction, settings)
}

impl From<EdgeEvent> for wit::EdgeEvent {
    fn from(e: EdgeEvent) -> Self {
        Self {
            timestamp_ns: e.timestamp_ns,
            rising: e.rising,
            seqno: e.seqno,
        }
    }
}

impl wit::Host for StoreState {
    async fn open(
        &mut self,
        grant: String,
        direction: wit::Direction,
    ) -> wasmtime::Result<Result<Resource<Line>, CapabilityError>> {
        let span = tracing::debug_span!("limb.gpio.open", device = %self.device, %grant);
        let opened = span.in_scope(|| {
            self.caps
                .open_gpio(&grant, direction.into(), &Settings::default())
        });
        self.count("gpio", &opened);
        self.push_handle(opened)
    }

    async fn request(
        &mut self,
        grant: String,
        settings: wit::LineSettings,
    ) -> wasmtime::Result<Result<Resource<Line>, CapabilityError>> {
        let (direction, settings) = self::settings(&settings);
        let span = tracing::debug_span!("limb.gpio.request", device = %self.device, %grant, ?direction, ?settings);
        let opened = span.in_scope(|| self.caps.open_gpio(&grant, direction, &settings));
        self.count("gpio", &opened);
        self.push_handle(opened)
    }
}

impl wit::HostLine for StoreState {
    async fn get(
        &mut self,
        line: Resource<Line>,
    ) -> wasmtime::Result<Result<bool, CapabilityError>> {
        Ok(self.table.get(&line)?.get().wit())
    }

    async fn set(
        &mut self,
        line: Resource<Line>,
        active: bool,
    ) -> wasmtime::Result<Result<(), CapabilityError>> {
        Ok(self.table.get(&line)?.set(active).wit())
    }

    async fn wait_edges(
        &mut self,
        line: Resource<Line>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<wit::EdgeEvent>, CapabilityError>> {
        let timeout = self.caps.timeout(timeout_ms);
        let max = usize::try_from(max)
            .unwrap_or(EVENT_BUFFER)
            .min(EVENT_BUFFER);
        let span =
            tracing::debug_span!("limb.gpio.wait_edges", device = %self.device, max, ?timeout);
        let wait = self
            .table
            .get(&line)?
            .wait_edges(timeout, max)
            .instrument(span);
        // A removed device stops waiting: the poll then ends by itself, within the
        // stop's grace, and `shutdown` can still drive the outputs' shutdown levels.
        let stop = Arc::clone(self.stop());
        let events = tokio::select! {
            events = wait => events,
            () = stop.wait() => Ok(Vec::new()),
        };
        Ok(events
            .map(|events| events.into_iter().map(Into::into).collect())
            .wit())
    }

    async fn drop(&mut self, line: Resource<Line>) -> wasmtime::Result<()> {
        self.table.delete(line)?;
        self.caps.release();
        Ok(())
    }
}
