//! Replication lag of every node over the last minutes, as the election samples it: the data
//! behind the status page's plot (drawn by `http::lag_plot`, which owns its presentation).

use std::collections::VecDeque;

/// Samples kept: one every election tick (a third of the lease), so about five minutes with
/// the default 5 s lease.
const KEEP: usize = 180;

/// Lag samples: Unix seconds, then (node id, lag seconds) for every node known then.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: VecDeque<(i64, Vec<(String, f64)>)>,
}

impl History {
    /// This history with one more sample (the oldest beyond [`KEEP`] dropped).
    pub fn with(&self, at: i64, lags: Vec<(String, f64)>) -> History {
        let mut samples = self.samples.clone();
        samples.push_back((at, lags));
        while samples.len() > KEEP {
            samples.pop_front();
        }
        History { samples }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, oldest first: Unix seconds, then (node id, lag seconds) per node.
    pub fn samples(&self) -> &VecDeque<(i64, Vec<(String, f64)>)> {
        &self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples() {
        let mut h = History::default();
        assert!(h.is_empty());
        for t in 0..(KEEP as i64 + 10) {
            h = h.with(t, vec![("aa".into(), 0.0)]);
        }
        assert_eq!(h.len(), KEEP);
        assert_eq!(h.samples().front().map(|s| s.0), Some(10));
    }
}
