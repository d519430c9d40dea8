//! Guest stdout and stderr, line-buffered into `tracing` events tagged with the device,
//! under the same kind of rate limit as the `log` interface: a guest printing in a loop
//! must not drown the limb's log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::DeviceTag;
use super::host_calls::log::{Budget, MAX_MESSAGE};
use crate::bounds::truncate;

/// Lines per second one device may print on stdout and stderr together.
pub const LINES_PER_SECOND: u32 = 100;

/// Writes each line the guest prints as one `tracing` event.
#[derive(Clone)]
pub struct GuestOutput {
    device: DeviceTag,
    stream: &'static str,
    /// Shared by both streams and by every handle the guest opens on them.
    budget: Arc<Mutex<Budget>>,
}

impl GuestOutput {
    /// stdout and stderr of one device, sharing one budget.
    pub fn pair(device: DeviceTag) -> (Self, Self) {
        let budget = Arc::new(Mutex::new(Budget::new(LINES_PER_SECOND)));
        let out = |stream| Self {
            device: device.clone(),
            stream,
            budget: budget.clone(),
        };
        (out("stdout"), out("stderr"))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    out: GuestOutput,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let (allowed, dropped) = match self.out.budget.lock() {
            Ok(mut b) => b.take(Instant::now()),
            Err(_) => (false, 0),
        };
        if dropped > 0 {
            tracing::warn!(device = %self.out.device, dropped, "adaptor output lines dropped by the rate limit");
        }
        if !allowed {
            return;
        }
        let text = String::from_utf8_lossy(line);
        // Escaped: guest text never starts a line of its own in the limb's log.
        let text = truncate(text.trim_end_matches(['\n', '\r']), MAX_MESSAGE);
        let text = crate::bounds::escape(&text);
        tracing::info!(target: "adaptor", device = %self.out.device, stream = self.out.stream, "{text}");
    }

    fn flush_lines(&mut self) {
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit(&line);
        }
        if self.buf.len() > MAX_MESSAGE {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.flush_lines();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
