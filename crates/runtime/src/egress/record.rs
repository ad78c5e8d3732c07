//! The record of denied connection attempts: a bounded log per sandbox (or run), read through
//! the API, and one log line per denial.

use std::collections::VecDeque;

use serde::Serialize;

/// Most denials kept per sandbox; older ones are dropped, their count is not.
pub const MAX_KEPT_DENIALS: usize = 1000;

/// One refused attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Position in the sandbox's sequence of denials, from 1.
    pub seq: u64,
    /// When (ms since the epoch).
    pub time_ms: i64,
    /// What the sandbox asked for, as `host:port`.
    pub target: String,
    /// The address the decision was about, when the name resolved.
    pub address: Option<String>,
    /// The rule that decided, e.g. `rule 2: deny *.example.com`, `default: deny`.
    pub rule: String,
}

/// The denials of one sandbox.
#[derive(Debug, Default)]
pub struct DenialLog {
    kept: VecDeque<Denial>,
    total: u64,
}

impl DenialLog {
    /// Record a denial and return it.
    pub fn push(&mut self, time_ms: i64, target: String, address: Option<String>, rule: String) -> Denial {
        self.total += 1;
        let denial = Denial { seq: self.total, time_ms, target, address, rule };
        if self.kept.len() == MAX_KEPT_DENIALS {
            self.kept.pop_front();
        }
        self.kept.push_back(denial.clone());
        denial
    }

    /// Denials after `seq`, oldest first, at most `limit`.
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Denial> {
        self.kept.iter().filter(|d| d.seq > seq).take(limit).cloned().collect()
    }

    /// How many denials there have been, including dropped ones.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_counts_all() {
        let mut log = DenialLog::default();
        for i in 0..(MAX_KEPT_DENIALS + 5) {
            log.push(i as i64, format!("h{i}:80"), None, "default: deny".into());
        }
        assert_eq!(log.total(), (MAX_KEPT_DENIALS + 5) as u64);
        let all = log.since(0, usize::MAX);
        assert_eq!(all.len(), MAX_KEPT_DENIALS);
        assert_eq!(all[0].seq, 6);
        let tail = log.since(log.total() - 2, 10);
        assert_eq!(tail.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![log.total() - 1, log.total()]);
    }
}
