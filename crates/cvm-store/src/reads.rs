//! Reads of committed state: profiles, timers, scans, offsets, stats.

use cvm_engine::{
    attribution::{Stats, StatsKey},
    driver::{ClockState, SweepProgress},
    Profile, StoreError, Timer,
};
use rocksdb::IteratorMode;

use crate::{backend, keys::*, Store};

/// A customer id and their encoded profile, as a scan reads them.
pub(crate) type ScannedProfile = (String, Box<[u8]>);

impl Store {
    /// Every attribution aggregate, per partition.
    pub fn stats(&self) -> Result<Vec<(u32, StatsKey, Stats)>, StoreError> {
        self.db
            .iterator_cf(self.cf(CF_STATS), IteratorMode::Start)
            .map(|r| r.map_err(backend).and_then(|(k, v)| decode_stats(&k, &v)))
            .collect()
    }

    /// Up to `limit` pending timers of `partition` due at or before
    /// `now_ms`, earliest first.
    pub fn due_timers(&self, partition: u32, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let from = partition.to_be_bytes();
        let until = timer_key(partition, now_ms.saturating_add(1), &[]);
        self.db
            .iterator_cf(self.cf(CF_TIMERS), IteratorMode::From(&from, rocksdb::Direction::Forward))
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k[..] < until[..]))
            .take(limit)
            .map(|r| Timer::decode(&r.map_err(backend)?.1))
            .collect()
    }

    /// Number of pending timers (all partitions; scans the index).
    pub fn pending_timers(&self) -> usize {
        self.db.iterator_cf(self.cf(CF_TIMER_INDEX), IteratorMode::Start).count()
    }

    /// Where the scan of `offer_id` at `version` stands in `partition`.
    pub fn sweep_progress(
        &self,
        offer_id: &str,
        version: u32,
        partition: u32,
    ) -> Result<Option<SweepProgress>, StoreError> {
        let v = self.db.get_cf(self.cf(CF_SCANS), scan_key(offer_id, version, partition)).map_err(backend)?;
        Ok(v.map(|b| decode_progress(&b)))
    }

    /// Up to `limit` customer ids of `partition` after `after` (exclusive), in order.
    pub fn customers_after(&self, partition: u32, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.profiles_after(partition, after, limit)?.into_iter().map(|(c, _)| c).collect())
    }

    /// Like [`Store::customers_after`], with each customer's encoded profile
    /// (a scan reads them in the same pass instead of one lookup each).
    pub(crate) fn profiles_after(
        &self,
        partition: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ScannedProfile>, StoreError> {
        let mut from = partition_key(partition, after);
        if !after.is_empty() {
            from.push(0);
        }
        let prefix = partition.to_be_bytes();
        self.db
            .iterator_cf(self.cf(CF_PROFILES), IteratorMode::From(&from, rocksdb::Direction::Forward))
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(backend)?;
                Ok((String::from_utf8_lossy(&k[4..]).into_owned(), v))
            })
            .collect()
    }

    /// The next offset to consume from `topic`/`partition`, if any was committed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let v = self.db.get_cf(self.cf(CF_OFFSETS), offset_key(topic, partition)).map_err(backend)?;
        Ok(v.and_then(|b| b.as_slice().try_into().ok()).map(i64::from_be_bytes))
    }

    /// The event-time clock committed with `partition`'s state, if any (an
    /// unreadable one reads as none: the clock then starts afresh).
    pub fn clock(&self, partition: u32) -> Result<Option<ClockState>, StoreError> {
        let v = self.db.get_pinned_cf(self.cf(CF_OFFSETS), clock_key(partition)).map_err(backend)?;
        Ok(v.and_then(|b| postcard::from_bytes(&b).ok()))
    }

    /// The committed profile of a customer.
    pub fn profile(&self, partition: u32, customer_id: &str) -> Result<Option<Profile>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_PROFILES), partition_key(partition, customer_id))
            .map_err(backend)?
            .map(|b| Profile::decode(&b))
            .transpose()
    }

    /// Every committed profile, in key order (for tests and tools; scans the whole family).
    pub fn profiles(&self) -> impl Iterator<Item = Result<(u32, String, Profile), StoreError>> + '_ {
        self.db.iterator_cf(self.cf(CF_PROFILES), IteratorMode::Start).map(|r| {
            let (k, v) = r.map_err(backend)?;
            let partition = u32::from_be_bytes(k[..4].try_into().expect("profile keys start with the partition"));
            Ok((partition, String::from_utf8_lossy(&k[4..]).into_owned(), Profile::decode(&v)?))
        })
    }
}
