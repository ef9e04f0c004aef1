//! The changelog: every committed change of a partition's state, also
//! queued in the outbox for a compacted Kafka topic, so that the state of a
//! partition follows it to whichever instance owns it next (as Kafka
//! Streams' changelog topics do).
//!
//! A commit queues, after its own messages (offers first: a crash between
//! the two re-sends an offer under its id rather than losing it), one
//! record per key it wrote in each partition it touched — key
//! `family code ‖ RocksDB key`, value the RocksDB value, a tombstone for a
//! delete — and then that partition's **commit marker** (key `0xFF`, value
//! the writer's id and the partition's commit number, which the store
//! keeps with the partition's state). Records of one commit are contiguous in their
//! partition, so a reader applies what precedes the last marker and
//! ignores a tail after it: the half-published commit of an instance that
//! died, whose input the next owner reads again.
//!
//! Not changelogged: the outbox and parked entries (this instance's own
//! queue) and the de-duplication ids (a restored partition resumes at the
//! exact input offsets of its last complete commit, so nothing is applied
//! twice; only a duplicate whose two copies straddle a failover is not
//! recognised). Erasure markers are changelogged: an erased customer stays
//! erased on any owner.

use std::collections::BTreeMap;

use cvm_engine::StoreError;
use rocksdb::{IteratorMode, WriteBatch};

use crate::{backend, keys::*, OutboxEntry, Store};

/// The key of a commit marker.
const MARKER: [u8; 1] = [0xff];

/// Column families in the changelog, with their codes (stable: they are
/// the first byte of every changelog key on the broker).
const FAMILIES: [(u8, &str); 10] = [
    (1, CF_PROFILES),
    (2, CF_EVENTS),
    (3, CF_DEVICES),
    (4, CF_OFFSETS),
    (5, CF_TIMERS),
    (6, CF_TIMER_INDEX),
    (7, CF_STATS),
    (8, CF_ARMS),
    (9, CF_SCANS),
    (10, CF_BUDGETS),
];

fn code_of(cf: &str) -> u8 {
    FAMILIES.iter().find(|(_, name)| *name == cf).map(|(code, _)| *code).expect("a changelogged column family")
}

fn family_of(code: u8) -> Option<&'static str> {
    FAMILIES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

/// A changelog record as read back: key and value (`None`: a tombstone).
pub type ChangelogRecord = (Vec<u8>, Option<Vec<u8>>);

/// Who wrote a commit of a partition, and its number in the partition's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMarker {
    /// The writing store's id ([`Store::writer_id`]).
    pub writer: u64,
    /// The partition's commit number: one more than the commit before.
    pub commit: u64,
}

/// The commit marker `key`/`value` is, if it is one.
pub fn commit_marker(key: &[u8], value: Option<&[u8]>) -> Option<CommitMarker> {
    if key != MARKER {
        return None;
    }
    let v = value.unwrap_or_default();
    let word = |i: usize| v.get(i..i + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
    Some(CommitMarker { writer: word(0), commit: word(8) })
}

/// The writes of one commit, by partition, in the order they are published.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    by_partition: BTreeMap<u32, Vec<ChangelogRecord>>,
}

impl Changes {
    pub(crate) fn put(&mut self, partition: u32, cf: &str, key: &[u8], value: &[u8]) {
        self.record(partition, cf, key, Some(value.to_vec()));
    }

    pub(crate) fn delete(&mut self, partition: u32, cf: &str, key: &[u8]) {
        self.record(partition, cf, key, None);
    }

    fn record(&mut self, partition: u32, cf: &str, key: &[u8], value: Option<Vec<u8>>) {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(code_of(cf));
        k.extend_from_slice(key);
        self.by_partition.entry(partition).or_default().push((k, value));
    }

    /// The partitions this commit changes.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_partition.keys().copied()
    }

    /// The outbox entries for `topic`: each partition's records, then its
    /// marker with the partition's commit number from `commits`.
    pub(crate) fn into_entries(self, topic: &str, writer: u64, commits: &BTreeMap<u32, u64>) -> Vec<OutboxEntry> {
        let mut out = Vec::new();
        for (p, records) in self.by_partition {
            let partition = Some(p as i32);
            for (key, value) in records {
                let tombstone = value.is_none();
                let payload = value.unwrap_or_default();
                out.push(OutboxEntry {
                    topic: topic.to_owned(),
                    key,
                    payload,
                    partition,
                    tombstone,
                    source: Some(p),
                    ..Default::default()
                });
            }
            out.push(OutboxEntry {
                topic: topic.to_owned(),
                key: MARKER.to_vec(),
                payload: [writer.to_be_bytes(), commits.get(&p).copied().unwrap_or_default().to_be_bytes()].concat(),
                partition,
                source: Some(p),
                ..Default::default()
            });
        }
        out
    }
}

/// The partition a key of an offsets or scans record belongs to: its last four bytes.
pub(crate) fn trailing_partition(key: &[u8]) -> Option<u32> {
    let tail: [u8; 4] = key.get(key.len().checked_sub(4)?..)?.try_into().ok()?;
    Some(u32::from_be_bytes(tail))
}

impl Store {
    /// Deletes everything the changelog holds for `partition` — and its
    /// de-duplication ids, which belong to the history being replaced —
    /// before the partition is restored from another writer's changelog.
    pub fn wipe_partition(&self, partition: u32) -> Result<(), StoreError> {
        // Kafka partitions are non-negative `i32`s: `partition + 1` fits.
        let (from, to) = (partition.to_be_bytes(), partition.saturating_add(1).to_be_bytes());
        let mut wb = WriteBatch::default();
        for cf in [CF_PROFILES, CF_EVENTS, CF_DEVICES, CF_TIMERS, CF_TIMER_INDEX, CF_STATS, CF_ARMS, CF_BUDGETS] {
            wb.delete_range_cf(self.cf(cf), from, to);
        }
        for cf in [CF_OFFSETS, CF_SCANS] {
            for r in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                let (k, _) = r.map_err(backend)?;
                if k.first() != Some(&WRITER_KEY[0]) && trailing_partition(&k) == Some(partition) {
                    wb.delete_cf(self.cf(cf), k);
                }
            }
        }
        self.db.write_opt(wb, &self.write_opts).map_err(backend)
    }

    /// Writes changelog records into the store as they are (markers are
    /// skipped); returns how many records were not understood (a family
    /// code this version does not know), which are skipped too.
    pub fn apply_changelog(&self, records: &[ChangelogRecord]) -> Result<usize, StoreError> {
        let mut wb = WriteBatch::default();
        let mut unknown = 0;
        for (key, value) in records {
            let Some((code, rocks_key)) = key.split_first() else {
                unknown += 1;
                continue;
            };
            if commit_marker(key, value.as_deref()).is_some() {
                continue;
            }
            let Some(cf) = family_of(*code) else {
                unknown += 1;
                continue;
            };
            match value {
                Some(v) => wb.put_cf(self.cf(cf), rocks_key, v),
                None => wb.delete_cf(self.cf(cf), rocks_key),
            }
        }
        self.db.write_opt(wb, &self.write_opts).map_err(backend)?;
        Ok(unknown)
    }

    /// Removes every entry `partition`'s commits left in the outbox
    /// unpublished — offers, decisions, stats, dead letters and changelog
    /// records: another writer's history replaces this instance's, and its
    /// new owner decided those inputs again (under the same ids). Publishing
    /// them would send offers twice and interleave two histories on the
    /// changelog. Returns how many.
    pub fn drop_unpublished(&self, partition: u32) -> Result<usize, StoreError> {
        let mut wb = WriteBatch::default();
        let mut dropped = 0;
        for (seq, entry) in self.outbox_peek(0, usize::MAX)? {
            if entry.source == Some(partition) {
                wb.delete_cf(self.cf(CF_OUTBOX), seq.to_be_bytes());
                dropped += 1;
            }
        }
        self.db.write_opt(wb, &self.write_opts).map_err(backend)?;
        Ok(dropped)
    }

    /// The changelog topic commits are queued for, if any.
    pub fn changelog_topic(&self) -> Option<&str> {
        self.changelog.as_deref()
    }

    /// The number of `partition`'s last commit in this store (0: none).
    pub fn commit_number(&self, partition: u32) -> Result<u64, StoreError> {
        let v = self.db.get_pinned_cf(self.cf(CF_OFFSETS), commit_number_key(partition)).map_err(backend)?;
        Ok(v.and_then(|b| b.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes))
    }

    /// This store's writer id, in the commit markers it queues: random,
    /// made when the store was created, kept with it.
    pub fn writer_id(&self) -> u64 {
        self.writer
    }
}

/// The offsets-family key of a partition's commit number: `0xFC ‖
/// partition` (changelogged and wiped with the partition, like its offsets).
pub(crate) fn commit_number_key(partition: u32) -> Vec<u8> {
    let mut k = vec![0xfc];
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The offsets-family key of the writer id (`0xFE` never starts a topic name).
pub(crate) const WRITER_KEY: [u8; 7] = [0xfe, b'w', b'r', b'i', b't', b'e', b'r'];
