//! Versions of links the brain has itself written past.
//!
//! After the brain writes a link, its watch cache still holds the old version for a
//! moment, and every event in between triggers a reconcile of that old version. Such a
//! reconcile decides the same writes again, and each one fails on the resourceVersion
//! guard: while 1,000 links connect that was about a thousand conflicts, each a request
//! the API server had to turn away and a retry. Kubernetes' own controllers keep
//! "expectations" for the same reason. Only versions the brain saw replaced by its own
//! writes are recorded, so no ordering of resourceVersions is assumed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct Superseded(Mutex<HashMap<String, Vec<String>>>);

/// Links tracked at most. A record goes when the link's next version is reconciled, but
/// a link deleted right after a write is never reconciled again; forgetting everything
/// at this size bounds that, at the cost of a few conflicts.
const MAX_TRACKED: usize = 10_000;

impl Superseded {
    /// The link `key` was written past `versions`.
    pub fn record(&self, key: &str, versions: Vec<String>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if versions.is_empty() {
            map.remove(key);
            return;
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_owned(), versions);
    }

    /// Whether `version` of `key` is one the brain already wrote past. Any other version
    /// means the cache caught up (or someone else wrote): the record is dropped.
    pub fn is_stale(&self, key: &str, version: &str) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = map
            .get(key)
            .is_some_and(|versions| versions.iter().any(|v| v == version));
        if !stale {
            map.remove(key);
        }
        stale
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_written_past_are_stale_until_the_cache_catches_up() {
        let s = Superseded::default();
        assert!(!s.is_stale("ns/a", "1"), "nothing recorded");
        s.record("ns/a", vec!["1".into(), "2".into()]);
        assert!(s.is_stale("ns/a", "1"));
        assert!(s.is_stale("ns/a", "2"));
        assert!(!s.is_stale("ns/b", "1"), "another link");
        // The brain's own last write (3) arrives: a real reconcile, and the record goes.
        assert!(!s.is_stale("ns/a", "3"));
        assert_eq!(s.len(), 0);
        assert!(!s.is_stale("ns/a", "1"), "forgotten once caught up");
    }

    #[test]
    fn records_of_deleted_links_cannot_pile_up() {
        let s = Superseded::default();
        for i in 0..MAX_TRACKED + 5 {
            s.record(&format!("ns/{i}"), vec!["1".into()]);
        }
        assert!(s.len() <= MAX_TRACKED);
        assert!(
            s.is_stale(&format!("ns/{}", MAX_TRACKED + 4), "1"),
            "the newest is kept"
        );
    }

    #[test]
    fn a_write_of_nothing_clears_the_record() {
        let s = Superseded::default();
        s.record("ns/a", vec!["1".into()]);
        s.record("ns/a", vec![]);
        assert_eq!(s.len(), 0);
    }
}
