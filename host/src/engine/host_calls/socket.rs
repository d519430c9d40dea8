//! `octopus:adaptor/socket` for the guest: WIT types in, [`capabilities::socket`] out.

use tracing::Instrument;
use wasmtime::component::Resource;

use super::Wit;
use crate::bindings::CapabilityError;
use crate::bindings::octopus::adaptor::socket as wit;
use crate::capabilities::socket::{TcpStream, UdpSocket};
use crate::capabilities::tls::TlsOptions;
use crate::engine::StoreState;

impl From<wit::TlsOptions> for TlsOptions {
    fn from(o: wit::TlsOptions) -> Self {
        Self {
            server_name: o.server_name,
            ca_pem: o.ca_pem,
            client_cert_pem: o.client_cert_pem,
            client_key_pem: o.client_key_pem,
            insecure_skip_verify: o.insecure_skip_verify,
        }
    }
}

impl wit::Host for StoreState {
    async fn connect_tcp(
        &mut self,
        grant: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Resource<TcpStream>, CapabilityError>> {
        let span = tracing::debug_span!("limb.socket.connect_tcp", device = %self.device, %grant);
        let opened = self
            .caps
            .open_tcp(&grant, timeout_ms)
            .instrument(span)
            .await;
        self.count("socket", &opened);
        self.push_handle(opened)
    }

    async fn connect_tls(
        &mut self,
        grant: String,
        options: wit::TlsOptions,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Resource<TcpStream>, CapabilityError>> {
        let span = tracing::debug_span!("limb.socket.connect_tls", device = %self.device, %grant);
        let opened = self
            .caps
            .open_tls(&grant, &options.into(), timeout_ms)
            .instrument(span)
            .await;
        self.count("socket", &opened);
        self.push_handle(opened)
    }

    async fn connect_udp(
        &mut self,
        grant: String,
    ) -> wasmtime::Result<Result<Resource<UdpSocket>, CapabilityError>> {
        let span = tracing::debug_span!("limb.socket.connect_udp", device = %self.device, %grant);
        let opened = self.caps.open_udp(&grant).instrument(span).await;
        self.count("socket", &opened);
        self.push_handle(opened)
    }
}

impl wit::HostTcpStream for StoreState {
    async fn send(
        &mut self,
        stream: Resource<TcpStream>,
        data: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<u32, CapabilityError>> {
        let timeout = self.caps.timeout(timeout_ms);
        let s = self.table.get_mut(&stream)?;
        Ok(s.send(&data, timeout).await.wit())
    }

    async fn receive(
        &mut self,
        stream: Resource<TcpStream>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapabilityError>> {
        let (max, timeout) = match self.caps.read_limits(max, timeout_ms) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let s = self.table.get_mut(&stream)?;
        Ok(s.receive(max, timeout).await.wit())
    }

    async fn drop(&mut self, stream: Resource<TcpStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        self.caps.release();
        Ok(())
    }
}

impl wit::HostUdpSocket for StoreState {
    async fn send(
        &mut self,
        socket: Resource<UdpSocket>,
        data: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<u32, CapabilityError>> {
        let timeout = self.caps.timeout(timeout_ms);
        let s = self.table.get(&socket)?;
        Ok(s.send(&data, timeout).await.wit())
    }

    async fn receive(
        &mut self,
        socket: Resource<UdpSocket>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapabilityError>> {
        let (max, timeout) = match self.caps.read_limits(max, timeout_ms) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let s = self.table.get(&socket)?;
        Ok(s.receive(max, timeout).await.wit())
    }

    async fn drop(&mut self, socket: Resource<UdpSocket>) -> wasmtime::Result<()> {
        self.table.delete(socket)?;
        self.caps.release();
        Ok(())
    }
}
