//! Showing device status in the terminal: a live table on a TTY, JSON lines otherwise.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::status::{DeviceReport, StatusBoard};

/// Redraws a table every `every` until shutdown.
pub async fn table(board: Arc<StatusBoard>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let text = render(&board.devices(), &board);
        {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[2J\x1b[H{text}");
            let _ = out.flush();
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Prints every device change as one JSON line until shutdown.
pub async fn json_lines(board: Arc<StatusBoard>, mut shutdown: watch::Receiver<bool>) {
    let mut rx = board.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(report) => {
                    if let Ok(line) = serde_json::to_string(&*report)
                        && writeln!(std::io::stdout().lock(), "{line}").is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "status output fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// The table as text.
pub fn render(devices: &[DeviceReport], board: &StatusBoard) -> String {
    let mut s = String::new();
    s.push_str("ADAPTORS\n");
    for a in board.adaptors() {
        match (&a.error, &a.name) {
            (Some(err), _) => {
                s.push_str(&format!("  {:<48} REFUSED  {}\n", a.source, cut(err, 100)))
            }
            (None, Some(name)) => s.push_str(&format!(
                "  {:<40} {:<10} {}  {}\n",
                name,
                a.version.as_deref().unwrap_or("-"),
                a.digest.as_deref().unwrap_or("-"),
                a.models.join(", ")
            )),
            _ => {}
        }
    }
    s.push_str(&format!(
        "\n{:<32} {:<22} {:<12} {:<12} {:>6} {:>5}  STATUS\n",
        "DEVICE", "MODEL", "VERSION", "PHASE", "POLLS", "TRAPS"
    ));
    for d in devices {
        let detail = match &d.last_error {
            Some(e) => format!("! {e}"),
            None => d.status.to_string(),
        };
        s.push_str(&format!(
            "{:<32} {:<22} {:<12} {:<12} {:>6} {:>5}  {}\n",
            cut(&d.key(), 32),
            cut(&d.model, 22),
            cut(d.adaptor_version.as_deref().unwrap_or("-"), 12),
            format!("{:?}", d.phase),
            d.polls,
            d.traps,
            cut(&detail, 90)
        ));
    }
    s
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
