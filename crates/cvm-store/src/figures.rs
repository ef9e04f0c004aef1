//! What RocksDB says about itself, for the operations endpoint: sizes,
//! compaction debt, block-cache hits and write stalls. Read when
//! `/metrics` is scraped, never on the hot path; the tickers come from
//! RocksDB's statistics object, kept at its cheapest level (counters only).

use std::{collections::VecDeque, time::Instant};

use rocksdb::statistics::Ticker;

use crate::{keys::ALL_CFS, Store};

/// A reading of the store's RocksDB figures, summed over column families.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RocksDbFigures {
    /// Bytes of live SST files (the data on disk, without the WAL).
    pub live_sst_bytes: u64,
    /// Bytes compaction still has to rewrite, as RocksDB estimates them.
    pub pending_compaction_bytes: u64,
    /// Bytes in the memtables.
    pub memtable_bytes: u64,
    /// Bytes the shared block cache holds (memtables are charged to it).
    pub block_cache_usage_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Whether writes are stopped (too many memtables or level-0 files, or
    /// too much compaction debt) right now.
    pub write_stopped: bool,
    /// Estimated customer profiles.
    pub estimated_profiles: u64,
    /// Block-cache hits since open.
    pub block_cache_hits: u64,
    /// Block-cache misses since open.
    pub block_cache_misses: u64,
    /// Microseconds writes were delayed or stopped since open.
    pub stall_micros: u64,
}

impl Store {
    /// RocksDB's figures now (statistics tickers are zero for a store
    /// opened read-only).
    pub fn rocksdb_figures(&self) -> RocksDbFigures {
        let sum = |property: &str| -> u64 {
            ALL_CFS
                .iter()
                .filter_map(|name| self.db.property_int_value_cf(self.cf(name), property).ok().flatten())
                .sum()
        };
        let db_int = |property: &str| self.db.property_int_value(property).ok().flatten().unwrap_or(0);
        let ticker = |t: Ticker| self.statistics.as_ref().map_or(0, |o| o.get_ticker_count(t));
        RocksDbFigures {
            live_sst_bytes: sum("rocksdb.live-sst-files-size"),
            pending_compaction_bytes: sum("rocksdb.estimate-pending-compaction-bytes"),
            memtable_bytes: sum("rocksdb.cur-size-all-mem-tables"),
            // Our column families share one cache (the default family, which
            // holds nothing, has its own): ask through one of them.
            block_cache_usage_bytes: self
                .db
                .property_int_value_cf(self.cf(crate::keys::CF_PROFILES), "rocksdb.block-cache-usage")
                .ok()
                .flatten()
                .unwrap_or(0),
            running_compactions: db_int("rocksdb.num-running-compactions"),
            write_stopped: db_int("rocksdb.is-write-stopped") > 0,
            estimated_profiles: self
                .db
                .property_int_value_cf(self.cf(crate::keys::CF_PROFILES), "rocksdb.estimate-num-keys")
                .ok()
                .flatten()
                .unwrap_or(0),
            block_cache_hits: ticker(Ticker::BlockCacheHit),
            block_cache_misses: ticker(Ticker::BlockCacheMiss),
            stall_micros: ticker(Ticker::StallMicros),
        }
    }

    /// How long the oldest entry still in the outbox (as the publisher last
    /// noted its head) has waited since its commit; `None` when it is empty.
    /// Entries found at open count from the open.
    pub fn outbox_oldest_age(&self) -> Option<std::time::Duration> {
        let head = self.outbox_head.load(std::sync::atomic::Ordering::SeqCst);
        if head >= self.outbox_next_seq() {
            return None;
        }
        let mut commits = self.outbox_commits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        forget_delivered(&mut commits, head);
        commits.front().map(|(_, at)| at.elapsed())
    }

    /// Notes that a commit put outbox entries from sequence `first_seq` on,
    /// now (called under the commit lock, so in sequence order).
    pub(crate) fn note_outbox_commit(&self, first_seq: u64) {
        let mut commits = self.outbox_commits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        forget_delivered(&mut commits, self.outbox_head.load(std::sync::atomic::Ordering::SeqCst));
        // Without a publisher (a benchmark, a stuck broker while ingest has
        // not paused yet) the head stays put: past the bound, later commits
        // are not noted, and the age reads high (never low) once the head
        // passes the last one noted.
        if commits.len() < MAX_NOTED_COMMITS {
            commits.push_back((first_seq, Instant::now()));
        }
    }
}

/// Most commits whose time is kept for [`Store::outbox_oldest_age`].
const MAX_NOTED_COMMITS: usize = 1 << 16;

/// Drops the commits whose every entry is before `head`, the oldest entry
/// not yet delivered.
fn forget_delivered(commits: &mut VecDeque<(u64, Instant)>, head: u64) {
    while commits.len() > 1 && commits[1].0 <= head {
        commits.pop_front();
    }
}
