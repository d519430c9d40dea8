//! Showing device status in the terminal: a live table on a TTY, JSON lines otherwise.
//!
//! Both are bounded whatever the devices do: the table reads the board once a second,
//! and the JSON lines follow the board's change feed, which holds at most one pending
//! key per device; a device that changed again before its line was written gets one
//! line with its latest report (counted as `output_coalesced{output="json"}`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::bounds::escape;
use crate::metrics::Metrics;
use crate::status::{Changes, DeviceReport, StatusBoard};

/// Characters of a device's status or error shown in the table.
const DETAIL: usize = 90;

/// Redraws a table every `every` until shutdown.
pub async fn table(board: Arc<StatusBoard>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let text = render(&board);
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

/// Prints every device change as one JSON line until shutdown; a device that changed
/// again before its line went out gets one line, with its latest report.
pub async fn json_lines(
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let feed = board.feed(metrics.output_coalesced("json"));
    // tokio's stdout: a reader that stops reading blocks this task, not a runtime thread.
    lines(&board, feed, tokio::io::stdout(), shutdown).await;
}

/// Writes a line per device announced by `feed` to `out`, until shutdown or a write
/// fails. One line is in memory at a time.
async fn lines(
    board: &StatusBoard,
    mut feed: Changes,
    mut out: impl AsyncWrite + Unpin,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let key = tokio::select! {
            key = feed.next() => key,
            _ = shutdown.changed() => return,
        };
        // Serialized under the board's read lock, written after it.
        let Some(Ok(mut line)) = board.read(&key, serde_json::to_string) else {
            continue;
        };
        line.push('\n');
        if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

/// The table as text. Everything the adaptors or the files provide is escaped, so a
/// name, version, error or status cannot add lines or move the cursor.
pub fn render(board: &StatusBoard) -> String {
    let mut s = String::new();
    s.push_str("ADAPTORS\n");
    for a in board.adaptors() {
        match (&a.error, &a.name) {
            (Some(err), _) => s.push_str(&format!(
                "  {:<48} REFUSED  {}\n",
                shown(&a.source, 200),
                shown(err, 100)
            )),
            (None, Some(name)) => s.push_str(&format!(
                "  {:<40} {:<10} {}  {}\n",
                shown(name, 253),
                shown(a.version.as_deref().unwrap_or("-"), 40),
                shown(a.digest.as_deref().unwrap_or("-"), 80),
                shown(&a.models.join(", "), 200)
            )),
            _ => {}
        }
    }
    s.push_str(&format!(
        "\n{:<32} {:<22} {:<12} {:<12} {:>6} {:>5}  STATUS\n",
        "DEVICE", "MODEL", "VERSION", "PHASE", "POLLS", "TRAPS"
    ));
    board.for_each(|d| s.push_str(&row(d)));
    s
}

/// One device's line of the table.
fn row(d: &DeviceReport) -> String {
    let detail = match &d.last_error {
        Some(e) => shown(&format!("! {e}"), DETAIL),
        None => shown(&head(&d.status, DETAIL), DETAIL),
    };
    format!(
        "{:<32} {:<22} {:<12} {:<12} {:>6} {:>5}  {}\n",
        shown(&d.key(), 32),
        shown(&d.model, 22),
        shown(d.adaptor_version.as_deref().unwrap_or("-"), 12),
        format!("{:?}", d.phase),
        d.polls,
        d.traps,
        detail
    )
}

/// `s` escaped and cut to `n` characters.
fn shown(s: &str, n: usize) -> String {
    cut(&escape(s), n)
}

/// The start of `v` as JSON, enough to show `n` characters: a large status is not
/// serialized whole to show its first line.
fn head(v: &Value, n: usize) -> String {
    /// Keeps the first `room` bytes, then refuses more (which stops serializing).
    struct Head {
        bytes: Vec<u8>,
        room: usize,
    }
    impl std::io::Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let take = buf.len().min(self.room);
            self.bytes.extend_from_slice(&buf[..take]);
            self.room -= take;
            Ok(take)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Four bytes a character at most, and one more: cut() then sees that it is longer.
    let mut w = Head {
        bytes: Vec::new(),
        room: (n + 1) * 4,
    };
    let _ = serde_json::to_writer(&mut w, v);
    String::from_utf8_lossy(&w.bytes).into_owned()
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

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use serde_json::json;

    use super::*;
    use crate::status::{AdaptorReport, Phase};

    fn update(board: &StatusBoard, name: &str, change: impl FnOnce(&mut DeviceReport)) {
        board.update(
            &format!("ns/{name}"),
            || DeviceReport::new("ns", name, "Kind", "a"),
            change,
        );
    }

    #[test]
    fn guest_text_cannot_add_lines_or_escape_sequences_to_the_table() {
        let board = StatusBoard::default();
        let forged = "x\n2026-01-01 INFO forged\u{1b}[2J\r\u{202e}";
        board.set_adaptor(AdaptorReport {
            source: "dir/evil\n.wasm".into(),
            name: Some(format!("evil{forged}")),
            version: Some(forged.into()),
            digest: Some("abc".into()),
            models: vec![forged.into()],
            error: None,
            loaded_at: "t".into(),
        });
        board.set_adaptor(AdaptorReport::refused(
            &format!("dir/bad{forged}"),
            None,
            None,
            forged,
        ));
        // (device, change)
        type Change<'a> = Box<dyn FnOnce(&mut DeviceReport) + 'a>;
        let cases: [(&str, Change<'_>); 4] = [
            ("error", Box::new(|r| r.last_error = Some(forged.into()))),
            ("status", Box::new(|r| r.status = json!({ "k\n": forged }))),
            (
                "version",
                Box::new(|r| r.adaptor_version = Some(forged.into())),
            ),
            ("model", Box::new(|r| r.model = forged.into())),
        ];
        let devices = cases.len();
        for (name, change) in cases {
            update(&board, name, change);
        }
        let text = render(&board);
        // Two adaptors, a blank line, the header, the devices.
        assert_eq!(text.lines().count(), 1 + 2 + 2 + devices, "{text}");
        assert!(!text.contains(['\u{1b}', '\r', '\u{202e}']), "{text:?}");
        assert!(text.contains("x\\n2026"), "{text}");
    }

    #[test]
    fn a_large_status_is_shown_by_its_start() {
        let board = StatusBoard::default();
        update(&board, "big", |r| {
            r.status = json!({ "a": "y".repeat(1 << 20) });
            r.phase = Phase::Healthy;
        });
        update(&board, "small", |r| r.status = json!({ "on": true }));
        let text = render(&board);
        let big = text.lines().find(|l| l.starts_with("ns/big")).unwrap();
        assert!(big.ends_with('…'), "{big}");
        assert!(big.contains("{\"a\":\"yyy"), "{big}");
        assert_eq!(big.split("  ").last().unwrap().chars().count(), DETAIL);
        let small = text.lines().find(|l| l.starts_with("ns/small")).unwrap();
        assert!(small.ends_with("{\"on\":true}"), "{small}");
    }

    /// Lines written by [`lines`] for the changes made so far, then stopped.
    async fn drain(board: &StatusBoard, feed: Changes) -> Vec<Value> {
        let (stop, shutdown) = watch::channel(false);
        let mut out = Vec::new();
        {
            let run = lines(board, feed, &mut out, shutdown);
            tokio::pin!(run);
            // Let it write what is pending (it never waits on a Vec), then stop it.
            let ran = tokio::time::timeout(Duration::from_millis(50), &mut run).await;
            assert!(ran.is_err(), "it only stops when told");
            let _ = stop.send(true);
            run.await;
        }
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn json_lines_write_the_latest_report_once_per_device_behind() {
        let status = json!({ "pad": "z".repeat(1 << 20) });
        // (devices, updates per device while nothing is read)
        for (devices, updates) in [(1, 1), (1, 10_000), (4, 2_500)] {
            let board = StatusBoard::default();
            let counted = Counter::default();
            for d in 0..devices {
                update(&board, &format!("d{d}"), |r| r.status = status.clone());
            }
            let feed = board.feed(counted.clone());
            for n in 1..=updates {
                for d in 0..devices {
                    update(&board, &format!("d{d}"), |r| r.polls = n);
                }
            }
            let case = format!("{devices} devices x {updates} updates");
            assert_eq!(feed.pending(), devices, "{case}");
            assert_eq!(counted.get(), (updates - 1) * devices as u64, "{case}");
            let written = drain(&board, feed).await;
            assert_eq!(written.len(), devices, "{case}");
            for (d, line) in written.iter().enumerate() {
                assert_eq!(line["name"], format!("d{d}"), "{case}");
                assert_eq!(line["polls"], updates, "{case}");
                assert_eq!(line["status"], status, "{case}");
            }
        }
    }
}
