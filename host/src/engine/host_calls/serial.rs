//! `octopus:adaptor/serial` for the guest: WIT types in, [`capabilities::serial`] out.

use tracing::Instrument;
use wasmtime::component::Resource;

use super::Wit;
use crate::bindings::CapabilityError;
use crate::bindings::octopus::adaptor::serial as wit;
use crate::capabilities::serial::{Exchange, Parity, Port, Settings};
use crate::engine::StoreState;

impl From<wit::Settings> for Settings {
    fn from(s: wit::Settings) -> Self {
        Self {
            baud_rate: s.baud_rate,
            data_bits: s.data_bits,
            parity: match s.parity {
                wit::Parity::None => Parity::None,
                wit::Parity::Even => Parity::Even,
                wit::Parity::Odd => Parity::Odd,
            },
            stop_bits: s.stop_bits,
        }
    }
}

impl wit::Host for StoreState {
    async fn open(
        &mut self,
        grant: String,
        settings: wit::Settings,
    ) -> wasmtime::Result<Result<Resource<Port>, CapabilityError>> {
        let span = tracing::debug_span!("limb.serial.open", device = %self.device, %grant);
        let opened = self
            .caps
            .open_serial(&grant, settings.into())
            .instrument(span)
            .await;
        self.count("serial", &opened);
        self.push_handle(opened)
    }
}

impl wit::HostPort for StoreState {
    async fn transact(
        &mut self,
        port: Resource<Port>,
        exchange: wit::Exchange,
    ) -> wasmtime::Result<Result<Vec<u8>, CapabilityError>> {
        let bus = self.table.get(&port)?.bus();
        let span =
            tracing::debug_span!("limb.serial.transact", device = %self.device, path = bus.path());
        let exchange = Exchange {
            request: exchange.request,
            timeout_ms: exchange.timeout_ms,
            reply_len: exchange.reply_len,
            idle_ms: exchange.idle_ms,
        };
        Ok(self
            .caps
            .serial_transact(&bus, &exchange)
            .instrument(span)
            .await
            .wit())
    }

    async fn write(
        &mut self,
        port: Resource<Port>,
        data: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<u32, CapabilityError>> {
        let bus = self.table.get(&port)?.bus();
        Ok(self.caps.serial_write(&bus, &data, timeout_ms).await.wit())
    }

    async fn read(
        &mut self,
        port: Resource<Port>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapabilityError>> {
        let bus = self.table.get(&port)?.bus();
        Ok(self.caps.serial_read(&bus, max, timeout_ms).await.wit())
    }

    async fn clear_input(
        &mut self,
        port: Resource<Port>,
    ) -> wasmtime::Result<Result<(), CapabilityError>> {
        let bus = self.table.get(&port)?.bus();
        Ok(self.caps.serial_clear_input(&bus).await.wit())
    }

    async fn drop(&mut self, port: Resource<Port>) -> wasmtime::Result<()> {
        self.table.delete(port)?;
        self.caps.release();
        Ok(())
    }
}
