//! Pending state work and its atomic commit: state, timers, scan progress,
//! stats, consumed offsets and the outbox in one RocksDB `WriteBatch`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::atomic::Ordering,
};

use cvm_engine::{
    attribution::{Stats, StatsKey},
    budget::Ledger,
    driver::{ClockState, ProfileScan, SweepProgress, TimerQueue},
    models::{ArmCounts, ArmKey},
    Profile, StoreError, Timer,
};
use rocksdb::{IteratorMode, WriteBatch};

use crate::{
    backend,
    changelog::{commit_number_key, trailing_partition, Changes},
    keys::*,
    now_ms, OutboxEntry, Store,
};

impl Store {
    /// Starts a batch of state work.
    pub fn begin(&self) -> Batch<'_> {
        Batch {
            store: self,
            profiles: HashMap::new(),
            scanned: HashMap::new(),
            seen: HashSet::new(),
            erased: HashSet::new(),
            devices: HashMap::new(),
            held: HashMap::new(),
            offsets: HashMap::new(),
            clocks: HashMap::new(),
            outbox: Vec::new(),
            outbox_dropped: Vec::new(),
            timers: HashMap::new(),
            earliest_set: HashMap::new(),
            sweeps: HashMap::new(),
            stats: HashMap::new(),
            stats_resolved: false,
            arms: HashMap::new(),
            budgets: HashMap::new(),
        }
    }
}

/// Pending state work; see [`Store::begin`]. Dropping it without
/// [`commit`](Batch::commit) discards everything.
pub struct Batch<'s> {
    pub(crate) store: &'s Store,
    /// Profiles written (`None`: erased).
    pub(crate) profiles: HashMap<(u32, String), Option<Profile>>,
    /// Committed profiles of the last page a scan read, encoded: the scan
    /// reads each next (see [`ProfileScan::customers_after`]).
    pub(crate) scanned: HashMap<(u32, String), Box<[u8]>>,
    pub(crate) seen: HashSet<(u32, String)>,
    /// Customers erased in this batch (markers; see `StateTxn::mark_erased`).
    pub(crate) erased: HashSet<(u32, String)>,
    /// Device links written (`None`: removed).
    pub(crate) devices: HashMap<(u32, String), Option<String>>,
    /// Anonymous events held per device, encoded (empty: none).
    pub(crate) held: HashMap<(u32, String), Vec<u8>>,
    pub(crate) offsets: HashMap<(String, i32), i64>,
    /// Event-time clocks of partitions, committed with their state.
    pub(crate) clocks: HashMap<u32, ClockState>,
    pub(crate) outbox: Vec<OutboxEntry>,
    /// Committed outbox entries to delete unpublished (see [`Batch::drop_outbox`]).
    pub(crate) outbox_dropped: Vec<u64>,
    pub(crate) timers: HashMap<(u32, Vec<u8>), TimerChange>,
    /// Per partition, the earliest due time set since it was last taken.
    pub(crate) earliest_set: HashMap<u32, i64>,
    pub(crate) sweeps: HashMap<Vec<u8>, SweepProgress>,
    /// Attribution deltas, added to the stored aggregates at commit (or
    /// resolved to totals earlier by [`Batch::stats_totals`]).
    pub(crate) stats: HashMap<(u32, StatsKey), Stats>,
    /// Whether `stats` holds totals rather than deltas.
    pub(crate) stats_resolved: bool,
    /// Bandit arms read or written, with whether they changed.
    pub(crate) arms: HashMap<(u32, ArmKey), (ArmCounts, bool)>,
    /// Budget ledgers written, by partition and campaign hash.
    pub(crate) budgets: HashMap<(u32, u64), Ledger>,
}

/// A timer set or cancelled in a batch: what is committed now, and what will be.
pub(crate) struct TimerChange {
    pub(crate) committed_due: Option<i64>,
    pub(crate) next: Option<Timer>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("profiles", &self.profiles.len())
            .field("events", &self.seen.len())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Profiles written.
    pub profiles: usize,
    /// The batch's own outbox entries added.
    pub outbox: usize,
    /// Changelog records (and markers) added to the outbox.
    pub changelog: usize,
}

impl Batch<'_> {
    /// Records that everything before `next_offset` of `topic`/`partition` is consumed.
    pub fn set_next_offset(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.offsets.insert((topic.to_owned(), partition), next_offset);
    }

    /// Records `partition`'s event-time clock as of this batch.
    pub fn set_clock(&mut self, partition: u32, clock: ClockState) {
        self.clocks.insert(partition, clock);
    }

    /// Queues a message for the publisher, caused by `partition`'s input
    /// (only the partition's owner publishes it).
    pub fn publish(&mut self, partition: u32, entry: OutboxEntry) {
        self.outbox.push(OutboxEntry { source: Some(partition), ..entry });
    }

    pub(crate) fn timer_change(&mut self, partition: u32, key: Vec<u8>) -> Result<&mut TimerChange, StoreError> {
        let map_key = (partition, key);
        if !self.timers.contains_key(&map_key) {
            let committed = self
                .store
                .db
                .get_cf(self.store.cf(CF_TIMER_INDEX), timer_index_key(partition, &map_key.1))
                .map_err(backend)?
                .and_then(|b| b.as_slice().try_into().ok())
                .map(i64::from_be_bytes);
            let next = match committed {
                Some(due) => self
                    .store
                    .db
                    .get_cf(self.store.cf(CF_TIMERS), timer_key(partition, due, &map_key.1))
                    .map_err(backend)?
                    .map(|b| Timer::decode(&b))
                    .transpose()?,
                None => None,
            };
            self.timers.insert(map_key.clone(), TimerChange { committed_due: committed, next });
        }
        Ok(self.timers.get_mut(&map_key).expect("inserted above"))
    }

    /// The attribution sums this batch changes, as the totals they will
    /// have after commit, so they can be published in the same commit. No
    /// stats may be added after this call.
    pub fn stats_totals(&mut self) -> Result<Vec<(u32, StatsKey, Stats)>, StoreError> {
        if !self.stats_resolved {
            for ((p, key), delta) in &mut self.stats {
                let k = stats_key(*p, key);
                if let Some(v) = self.store.db.get_pinned_cf(self.store.cf(CF_STATS), &k).map_err(backend)? {
                    delta.add(&decode_stats(&k, &v)?.2);
                }
            }
            self.stats_resolved = true;
        }
        Ok(self.stats.iter().map(|((p, k), s)| (*p, k.clone(), *s)).collect())
    }

    /// The batch's copy of an arm, read from the store on first use.
    pub(crate) fn arm_entry(&mut self, partition: u32, key: &ArmKey) -> Result<&mut (ArmCounts, bool), StoreError> {
        let map_key = (partition, *key);
        if !self.arms.contains_key(&map_key) {
            let stored =
                self.store.db.get_pinned_cf(self.store.cf(CF_ARMS), arm_key(partition, key)).map_err(backend)?;
            let counts = match stored {
                Some(v) => postcard::from_bytes(&v)
                    .map_err(|e| StoreError::Corrupt { what: "bandit arm", detail: e.to_string() })?,
                None => ArmCounts::default(),
            };
            self.arms.insert(map_key, (counts, false));
        }
        Ok(self.arms.get_mut(&map_key).expect("inserted above"))
    }

    /// Drops the messages for `topics` keyed `key` that are not published
    /// yet — this batch's, and those committed but still in the outbox — so
    /// that an erased customer's pending offers are not sent. (One the
    /// publisher has in flight may still go out.) Returns how many.
    pub fn drop_outbox(&mut self, key: &[u8], topics: &[&str]) -> Result<usize, StoreError> {
        let matches = |e: &OutboxEntry| e.key == key && topics.contains(&e.topic.as_str());
        let before = self.outbox.len();
        self.outbox.retain(|e| !matches(e));
        let mut dropped = before - self.outbox.len();
        let head = self.store.outbox_head.load(Ordering::SeqCst);
        for (seq, entry) in self.store.outbox_peek(head, usize::MAX)? {
            if matches(&entry) {
                self.outbox_dropped.push(seq);
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Writes everything atomically: state, offsets, the outbox and — with
    /// a changelog topic — each touched partition's changes and commit
    /// marker, queued after the batch's own messages.
    pub fn commit(mut self) -> Result<Committed, StoreError> {
        self.stats_totals()?;
        let s = self.store;
        let mut w =
            Writes { wb: WriteBatch::default(), changes: s.changelog.is_some().then(Changes::default), store: s };
        let stamp = now_ms().to_be_bytes();
        for ((p, c), profile) in &self.profiles {
            match profile {
                Some(profile) => w.put(*p, CF_PROFILES, &partition_key(*p, c), &profile.encode()),
                None => w.delete(*p, CF_PROFILES, &partition_key(*p, c)),
            }
        }
        for (p, e) in &self.seen {
            // De-duplication ids stay local (see the changelog module).
            w.wb.put_cf(s.cf(CF_EVENTS), partition_key(*p, e), stamp);
        }
        for (p, c) in &self.erased {
            w.put(*p, CF_EVENTS, &erased_key(*p, c), &stamp);
        }
        for ((p, d), c) in &self.devices {
            match c {
                Some(c) => w.put(*p, CF_DEVICES, &partition_key(*p, d), c.as_bytes()),
                None => w.delete(*p, CF_DEVICES, &partition_key(*p, d)),
            }
        }
        for ((p, d), events) in &self.held {
            if events.is_empty() {
                w.delete(*p, CF_DEVICES, &held_key(*p, d));
            } else {
                w.put(*p, CF_DEVICES, &held_key(*p, d), events);
            }
        }
        for ((p, key), total) in &self.stats {
            w.put(*p, CF_STATS, &stats_key(*p, key), &postcard::to_stdvec(total).expect("stats serialize"));
        }
        for ((p, key), (counts, changed)) in &self.arms {
            if *changed {
                w.put(*p, CF_ARMS, &arm_key(*p, key), &postcard::to_stdvec(counts).expect("arm serialize"));
            }
        }
        for ((p, campaign), ledger) in &self.budgets {
            w.put(*p, CF_BUDGETS, &budget_key(*p, *campaign), &postcard::to_stdvec(ledger).expect("ledger serialize"));
        }
        for ((t, p), o) in &self.offsets {
            w.put(*p as u32, CF_OFFSETS, &offset_key(t, *p), &o.to_be_bytes());
        }
        for (p, clock) in &self.clocks {
            w.put(*p, CF_OFFSETS, &clock_key(*p), &postcard::to_stdvec(clock).expect("clocks serialize"));
        }
        for ((p, key), change) in &self.timers {
            if let Some(due) = change.committed_due {
                w.delete(*p, CF_TIMERS, &timer_key(*p, due, key));
            }
            match &change.next {
                Some(t) => {
                    w.put(*p, CF_TIMERS, &timer_key(*p, t.due_ms, key), &t.encode());
                    w.put(*p, CF_TIMER_INDEX, &timer_index_key(*p, key), &t.due_ms.to_be_bytes());
                }
                None => w.delete(*p, CF_TIMER_INDEX, &timer_index_key(*p, key)),
            }
        }
        for (key, progress) in &self.sweeps {
            let partition = trailing_partition(key).expect("scan keys end with the partition");
            w.put(partition, CF_SCANS, key, &encode_progress(progress));
        }
        let Writes { mut wb, changes, .. } = w;
        for seq in &self.outbox_dropped {
            wb.delete_cf(s.cf(CF_OUTBOX), seq.to_be_bytes());
        }
        let own = self.outbox.len();
        if let (Some(mut changes), Some(topic)) = (changes, s.changelog.as_deref()) {
            // Each changed partition's commit number goes up by one, with its state.
            let mut commits = BTreeMap::new();
            for p in changes.partitions().collect::<Vec<_>>() {
                let number = s.commit_number(p)? + 1;
                let key = commit_number_key(p);
                wb.put_cf(s.cf(CF_OFFSETS), &key, number.to_be_bytes());
                changes.put(p, CF_OFFSETS, &key, &number.to_be_bytes());
                commits.insert(p, number);
            }
            self.outbox.extend(changes.into_entries(topic, s.writer, &commits));
        }
        let _in_sequence = s.commit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(last) = self.outbox.last_mut() {
            last.commit_end = true;
        }
        let first_seq = s.next_outbox_seq.fetch_add(self.outbox.len() as u64, Ordering::SeqCst);
        if !self.outbox.is_empty() {
            s.note_outbox_commit(first_seq);
        }
        for (i, entry) in self.outbox.iter().enumerate() {
            let value = postcard::to_stdvec(entry).expect("outbox entries always serialize");
            wb.put_cf(s.cf(CF_OUTBOX), (first_seq + i as u64).to_be_bytes(), value);
        }
        s.db.write_opt(wb, &s.write_opts).map_err(backend)?;
        Ok(Committed { profiles: self.profiles.len(), outbox: own, changelog: self.outbox.len() - own })
    }
}

/// A commit's `WriteBatch`, and its changes by partition for the changelog.
struct Writes<'s> {
    wb: WriteBatch,
    changes: Option<Changes>,
    store: &'s Store,
}

impl Writes<'_> {
    fn put(&mut self, partition: u32, cf: &str, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(cf), key, value);
        if let Some(c) = &mut self.changes {
            c.put(partition, cf, key, value);
        }
    }

    fn delete(&mut self, partition: u32, cf: &str, key: &[u8]) {
        self.wb.delete_cf(self.store.cf(cf), key);
        if let Some(c) = &mut self.changes {
            c.delete(partition, cf, key);
        }
    }
}

impl TimerQueue for Batch<'_> {
    /// Pending timers of `partition` due at or before `now_ms` as this batch
    /// sees them (committed ones it has not changed, plus those it set),
    /// earliest first, at most `limit`.
    fn due_timers(&mut self, partition: u32, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let here = || self.timers.iter().filter(move |((p, _), _)| *p == partition);
        let changed_here = here().count();
        let mut due: Vec<Timer> = self
            .store
            .due_timers(partition, now_ms, limit + changed_here)?
            .into_iter()
            .filter(|t| !self.timers.contains_key(&(partition, t.key().encode())))
            .collect();
        due.extend(here().filter_map(|(_, c)| c.next.as_ref()).filter(|t| t.due_ms <= now_ms).cloned());
        due.sort_by_key(|t| (t.due_ms, t.key().encode()));
        due.truncate(limit);
        Ok(due)
    }

    /// When the earliest pending timer of `partition` is due, as this batch sees it.
    fn earliest_due(&mut self, partition: u32) -> Result<Option<i64>, StoreError> {
        let from = partition.to_be_bytes();
        let mut committed = None;
        for r in
            self.store.db.iterator_cf(self.store.cf(CF_TIMERS), IteratorMode::From(&from, rocksdb::Direction::Forward))
        {
            let (k, v) = r.map_err(backend)?;
            if !k.starts_with(&from) {
                break;
            }
            let t = Timer::decode(&v)?;
            if !self.timers.contains_key(&(partition, t.key().encode())) {
                committed = Some(t.due_ms);
                break;
            }
        }
        let here = self
            .timers
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .filter_map(|(_, c)| c.next.as_ref().map(|t| t.due_ms))
            .min();
        Ok(match (committed, here) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The earliest due time of the timers set on `partition` since the
    /// last call (for callers that keep a "next timer" hint per partition).
    fn take_earliest_set(&mut self, partition: u32) -> Option<i64> {
        self.earliest_set.remove(&partition)
    }
}

impl ProfileScan for Batch<'_> {
    fn customers_after(&mut self, partition: u32, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let page = self.store.profiles_after(partition, after, limit)?;
        let customers = page.iter().map(|(c, _)| c.clone()).collect();
        self.scanned = page.into_iter().map(|(c, v)| ((partition, c), v)).collect();
        Ok(customers)
    }

    fn sweep_progress(
        &mut self,
        offer_id: &str,
        version: u32,
        partition: u32,
    ) -> Result<Option<SweepProgress>, StoreError> {
        match self.sweeps.get(&scan_key(offer_id, version, partition)) {
            Some(p) => Ok(Some(p.clone())),
            None => self.store.sweep_progress(offer_id, version, partition),
        }
    }

    fn set_sweep_progress(&mut self, offer_id: &str, version: u32, partition: u32, progress: SweepProgress) {
        self.sweeps.insert(scan_key(offer_id, version, partition), progress);
    }
}
