//! What one line showed: its level, when that last changed, and its edge counts. Pure,
//! so that the counting (sequence gaps, a request that started over) is tested natively.

use crds::models::gpio::GPIOPropertyStatus;
use octopus_adaptor_sdk::gpio::EdgeEvent;
use serde::{Deserialize, Serialize};

/// The state of one line that survives a hot swap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    #[serde(default)]
    pub value: Option<bool>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub rising: u64,
    #[serde(default)]
    pub falling: u64,
    #[serde(default)]
    pub lost: u64,
    /// The last sequence number seen, to find gaps.
    #[serde(default)]
    pub last_seqno: u32,
}

impl Reading {
    /// Counts edges. A gap in sequence numbers is edges the kernel dropped; numbers that
    /// go back mean the line was requested again, and counting starts over from them.
    pub fn edges(&mut self, events: &[EdgeEvent]) {
        for e in events {
            if e.rising {
                self.rising += 1;
            } else {
                self.falling += 1;
            }
            if e.seqno > self.last_seqno {
                self.lost += u64::from(e.seqno - self.last_seqno - 1);
            }
            self.last_seqno = e.seqno;
        }
    }

    /// Takes a level read at `now`; `true` when it changed.
    pub fn level(&mut self, active: bool, now: impl FnOnce() -> String) -> bool {
        if self.value == Some(active) {
            return false;
        }
        self.value = Some(active);
        self.updated_at = Some(now());
        true
    }

    /// The line's status; edge counts only for lines with edge detection.
    pub fn status(&self, name: &str, counted: bool) -> GPIOPropertyStatus {
        GPIOPropertyStatus {
            name: name.to_owned(),
            value: self.value,
            updated_at: self.updated_at.clone(),
            rising_edges: counted.then_some(self.rising),
            falling_edges: counted.then_some(self.falling),
            lost_edges: counted.then_some(self.lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(seqno: u32, rising: bool) -> EdgeEvent {
        EdgeEvent {
            timestamp_ns: u64::from(seqno) * 1000,
            rising,
            seqno,
        }
    }

    #[test]
    fn edges_are_counted_by_kind_and_gaps_are_lost_edges() {
        let mut r = Reading::default();
        r.edges(&[edge(1, true), edge(2, false), edge(5, true)]);
        assert_eq!((r.rising, r.falling, r.lost), (2, 1, 2));
        // The line was requested again (a restart): its numbers start over.
        r.edges(&[edge(1, false), edge(2, true)]);
        assert_eq!((r.rising, r.falling, r.lost, r.last_seqno), (3, 2, 2, 2));
    }

    #[test]
    fn a_level_counts_as_a_change_only_when_it_differs() {
        let mut r = Reading::default();
        assert!(r.level(true, || "t1".into()));
        assert!(!r.level(true, || "t2".into()));
        assert_eq!(r.updated_at.as_deref(), Some("t1"));
        assert!(r.level(false, || "t3".into()));
        let s = r.status("door", true);
        assert_eq!(
            (s.value, s.updated_at.as_deref(), s.rising_edges),
            (Some(false), Some("t3"), Some(0))
        );
        assert_eq!(r.status("door", false).lost_edges, None);
    }
}
