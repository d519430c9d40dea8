//! `octopus:adaptor/gpio` for the guest: WIT types in, [`capabilities::gpio`] out.

use wasmtime::component::Resource;

use super::Wit;
use crate::bindings::CapabilityError;
use crate::bindings::octopus::adaptor::gpio as wit;
use crate::capabilities::gpio::{Direction, Line, Settings};
use crate::engine::StoreState;

impl From<wit::Direction> for Direction {
    fn from(d: wit::Direction) -> Self {
        match d {
            wit::Direction::Input => Direction::Input,
            wit::Direction::Output => Direction::Output,
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

    async fn drop(&mut self, line: Resource<Line>) -> wasmtime::Result<()> {
        self.table.delete(line)?;
        self.caps.release();
        Ok(())
    }
}
