//! The RocksDB state of one cvm instance: customer profiles, applied event
//! ids, device links, consumed offsets and the outbox of messages to publish.
//!
//! The point of keeping them in one database is atomicity: a [`Batch`]
//! collects the profile changes an input batch caused, the offsets it
//! consumed and the messages it wants published, and [`Batch::commit`] writes
//! them in a single `WriteBatch`. After a crash at any instant either all of
//! it is there (the consumer resumes after it and the publisher sends what is
//! in the outbox) or none of it is (the consumer re-reads the same input and
//! the decisions come out again with the same ids).
//!
//! Keys of partitioned state start with the Kafka partition (`u32`, big
//! endian), so the state of a partition is one contiguous key range that can
//! later be moved, dropped or restored with it.
//!
//! Column families, one per concern:
//! - `profiles`: `partition ‖ customer_id` → [`Profile`] (versioned postcard)
//! - `events`: `partition ‖ event_id` → wall-clock ms when applied; entries
//!   older than `dedup_retention` are dropped by a compaction filter
//! - `devices`: `partition ‖ device_id` → customer_id
//! - `offsets`: `topic ‖ 0 ‖ partition` → next offset to consume (`i64` BE)
//! - `outbox`: sequence (`u64` BE) → [`OutboxEntry`]
//! - `timers`: `partition ‖ due_ms (u64 BE) ‖ timer key` → [`Timer`], so the
//!   due timers of a partition are a prefix scan in time order
//! - `timer_index`: `partition ‖ timer key` → due_ms, to find a pending
//!   timer by key when it is cancelled or replaced
//! - `sweeps` (in `offsets`): `0xff ‖ offer ‖ 0 ‖ version ‖ partition` → the
//!   last customer a sweep has decided, so a restarted sweep resumes
//! - `stats`: `partition ‖ group ‖ day ‖ campaign` → attribution [`Stats`];
//!   a batch sums its deltas in memory and adds them at commit
//! - `arms`: `partition ‖ segment ‖ offer hash` → bandit [`ArmCounts`]

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cvm_engine::{
    attribution::{Group, Stats, StatsKey},
    models::{ArmCounts, ArmKey},
    Profile, StateTxn, StoreError, Timer, TimerKey,
};
use rocksdb::{
    compaction_filter::Decision as FilterDecision, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

const CF_PROFILES: &str = "profiles";
const CF_EVENTS: &str = "events";
const CF_DEVICES: &str = "devices";
const CF_OFFSETS: &str = "offsets";
const CF_OUTBOX: &str = "outbox";
const CF_TIMERS: &str = "timers";
const CF_TIMER_INDEX: &str = "timer_index";
const CF_STATS: &str = "stats";
const CF_ARMS: &str = "arms";
const ALL_CFS: [&str; 9] =
    [CF_PROFILES, CF_EVENTS, CF_DEVICES, CF_OFFSETS, CF_OUTBOX, CF_TIMERS, CF_TIMER_INDEX, CF_STATS, CF_ARMS];

fn arm_key(partition: u32, key: &ArmKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(key.segment);
    k.extend_from_slice(&key.offer.to_be_bytes());
    k
}

/// RocksDB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the database.
    pub path: PathBuf,
    /// Block cache shared by all column families, MiB.
    pub block_cache_mb: usize,
    /// Size of one memtable, MiB.
    pub write_buffer_mb: usize,
    /// Memtables per column family before writes stall.
    pub max_write_buffers: i32,
    /// Bloom filter bits per key (0 disables).
    pub bloom_bits_per_key: f64,
    /// fsync the WAL on every commit (survives power loss, costs latency).
    pub sync_writes: bool,
    /// How long applied event ids are remembered for de-duplication.
    #[serde(with = "humantime_serde")]
    pub dedup_retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/cvm"),
            // Sized for a few million profiles on a small machine.
            block_cache_mb: 256,
            write_buffer_mb: 64,
            max_write_buffers: 3,
            bloom_bits_per_key: 10.0,
            sync_writes: false,
            dedup_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// RocksDB refused to open the directory.
    #[error("cannot open the state store at {path}: {source}; check the path is writable and not used by another cvm process")]
    Open {
        /// The directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
}

/// A message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Destination topic.
    pub topic: String,
    /// Message key.
    pub key: Vec<u8>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Message headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The state store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    next_outbox_seq: Arc<AtomicU64>,
    write_opts: Arc<WriteOptions>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn partition_key(partition: u32, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn timer_key(partition: u32, due_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn stats_key(partition: u32, key: &StatsKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.campaign_id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(key.group.code());
    k.extend_from_slice(&((key.day as u32) ^ 0x8000_0000).to_be_bytes());
    k.extend_from_slice(key.campaign_id.as_bytes());
    k
}

fn decode_stats(k: &[u8], v: &[u8]) -> Result<(u32, StatsKey, Stats), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { what: "stats", detail };
    if k.len() < 9 {
        return Err(corrupt(format!("key of {} bytes", k.len())));
    }
    let partition = u32::from_be_bytes(k[..4].try_into().expect("checked length"));
    let group = Group::from_code(k[4]).ok_or_else(|| corrupt(format!("unknown group {}", k[4])))?;
    let day = (u32::from_be_bytes(k[5..9].try_into().expect("checked length")) ^ 0x8000_0000) as i32;
    let campaign_id = String::from_utf8_lossy(&k[9..]).into_owned();
    let stats = postcard::from_bytes(v).map_err(|e| corrupt(e.to_string()))?;
    Ok((partition, StatsKey { campaign_id, group, day }, stats))
}

fn timer_index_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn sweep_key(offer_id: &str, version: u32, partition: u32) -> Vec<u8> {
    let mut k = vec![0xff];
    k.extend_from_slice(offer_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// How far a sweep has got in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepProgress {
    /// Decided every customer up to and including this one.
    After(String),
    /// Finished.
    Done,
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

impl Store {
    /// Opens (creating if needed) the store described by `config`.
    pub fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        let cache = Cache::new_lru_cache(config.block_cache_mb << 20);
        let cf_opts = |name: &str| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            if config.bloom_bits_per_key > 0.0 && name != CF_OUTBOX && name != CF_OFFSETS {
                table.set_bloom_filter(config.bloom_bits_per_key, false);
            }
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_write_buffer_size(config.write_buffer_mb << 20);
            o.set_max_write_buffer_number(config.max_write_buffers);
            if name == CF_EVENTS {
                let retention_ms = config.dedup_retention.as_millis() as u64;
                o.set_compaction_filter("dedup-retention", move |_level, _key, value: &[u8]| {
                    let applied = value.try_into().map(u64::from_be_bytes).unwrap_or(0);
                    if now_ms().saturating_sub(applied) > retention_ms {
                        FilterDecision::Remove
                    } else {
                        FilterDecision::Keep
                    }
                });
            }
            ColumnFamilyDescriptor::new(name, o)
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        let db = DB::open_cf_descriptors(&db_opts, &config.path, ALL_CFS.map(cf_opts))
            .map_err(|source| OpenError::Open { path: config.path.clone(), source })?;
        let next_seq = {
            let cf = db.cf_handle(CF_OUTBOX).expect("created above");
            let mut it = db.iterator_cf(cf, IteratorMode::End);
            match it.next() {
                Some(Ok((k, _))) => u64::from_be_bytes(k[..8].try_into().expect("outbox keys are 8 bytes")) + 1,
                _ => 0,
            }
        };
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        Ok(Self {
            db: Arc::new(db),
            next_outbox_seq: Arc::new(AtomicU64::new(next_seq)),
            write_opts: Arc::new(write_opts),
            path: config.path.clone(),
        })
    }

    /// Opens an existing store read-only, e.g. beside a running engine for
    /// `cvm report`: it sees what was committed when it was opened.
    pub fn open_read_only(path: &Path) -> Result<Self, OpenError> {
        let db = DB::open_cf_for_read_only(&Options::default(), path, ALL_CFS, false)
            .map_err(|source| OpenError::Open { path: path.to_owned(), source })?;
        Ok(Self {
            db: Arc::new(db),
            next_outbox_seq: Arc::new(AtomicU64::new(0)),
            write_opts: Arc::new(WriteOptions::default()),
            path: path.to_owned(),
        })
    }

    /// Every attribution aggregate, per partition.
    pub fn stats(&self) -> Result<Vec<(u32, StatsKey, Stats)>, StoreError> {
        self.db
            .iterator_cf(self.cf(CF_STATS), IteratorMode::Start)
            .map(|r| r.map_err(backend).and_then(|(k, v)| decode_stats(&k, &v)))
            .collect()
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Starts a batch of state work.
    pub fn begin(&self) -> Batch<'_> {
        Batch {
            store: self,
            profiles: HashMap::new(),
            seen: HashSet::new(),
            devices: HashMap::new(),
            offsets: HashMap::new(),
            outbox: Vec::new(),
            timers: HashMap::new(),
            earliest_set: HashMap::new(),
            sweeps: HashMap::new(),
            stats: HashMap::new(),
            stats_resolved: false,
            arms: HashMap::new(),
        }
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

    /// Where the sweep of `offer_id` at `version` stands in `partition`.
    pub fn sweep_progress(
        &self,
        offer_id: &str,
        version: u32,
        partition: u32,
    ) -> Result<Option<SweepProgress>, StoreError> {
        let v = self.db.get_cf(self.cf(CF_OFFSETS), sweep_key(offer_id, version, partition)).map_err(backend)?;
        Ok(v.map(|b| match b.split_first() {
            Some((1, _)) => SweepProgress::Done,
            Some((_, rest)) => SweepProgress::After(String::from_utf8_lossy(rest).into_owned()),
            None => SweepProgress::After(String::new()),
        }))
    }

    /// Up to `limit` customer ids of `partition` after `after` (exclusive), in order.
    pub fn customers_after(&self, partition: u32, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut from = partition_key(partition, after);
        if !after.is_empty() {
            from.push(0);
        }
        let prefix = partition.to_be_bytes();
        self.db
            .iterator_cf(self.cf(CF_PROFILES), IteratorMode::From(&from, rocksdb::Direction::Forward))
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|r| Ok(String::from_utf8_lossy(&r.map_err(backend)?.0[4..]).into_owned()))
            .collect()
    }

    /// The next offset to consume from `topic`/`partition`, if any was committed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let v = self.db.get_cf(self.cf(CF_OFFSETS), offset_key(topic, partition)).map_err(backend)?;
        Ok(v.and_then(|b| b.as_slice().try_into().ok()).map(i64::from_be_bytes))
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

    /// Up to `limit` outbox entries with sequence numbers from `from_seq` on,
    /// oldest first. Starting past removed entries keeps the read from
    /// wading through their tombstones.
    pub fn outbox_peek(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let from = from_seq.to_be_bytes();
        self.db
            .iterator_cf(self.cf(CF_OUTBOX), IteratorMode::From(&from, rocksdb::Direction::Forward))
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(backend)?;
                let seq = u64::from_be_bytes(k[..8].try_into().expect("outbox keys are 8 bytes"));
                let entry = postcard::from_bytes(&v)
                    .map_err(|e| StoreError::Corrupt { what: "outbox entry", detail: e.to_string() })?;
                Ok((seq, entry))
            })
            .collect()
    }

    /// Removes delivered outbox entries.
    pub fn outbox_remove(&self, seqs: impl IntoIterator<Item = u64>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for s in seqs {
            wb.delete_cf(self.cf(CF_OUTBOX), s.to_be_bytes());
        }
        self.db.write_opt(wb, &self.write_opts).map_err(backend)
    }

    /// The sequence number the next outbox entry will get.
    pub fn outbox_next_seq(&self) -> u64 {
        self.next_outbox_seq.load(Ordering::SeqCst)
    }

    /// Entries waiting in the outbox at or after `from_seq`.
    pub fn outbox_depth(&self, from_seq: u64) -> Result<u64, StoreError> {
        let oldest = self.outbox_peek(from_seq, 1)?.first().map(|(s, _)| *s);
        Ok(oldest.map_or(0, |o| self.outbox_next_seq().saturating_sub(o)))
    }

    /// Flushes memtables to disk (used at shutdown so restarts replay little WAL).
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = ALL_CFS.iter().map(|n| self.cf(n)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).map_err(backend)
    }
}

/// Pending state work; see [`Store::begin`]. Dropping it without
/// [`commit`](Batch::commit) discards everything.
pub struct Batch<'s> {
    store: &'s Store,
    /// Profiles written (`None`: erased).
    profiles: HashMap<(u32, String), Option<Profile>>,
    seen: HashSet<(u32, String)>,
    /// Device links written (`None`: removed).
    devices: HashMap<(u32, String), Option<String>>,
    offsets: HashMap<(String, i32), i64>,
    outbox: Vec<OutboxEntry>,
    timers: HashMap<(u32, Vec<u8>), TimerChange>,
    /// Per partition, the earliest due time set since it was last taken.
    earliest_set: HashMap<u32, i64>,
    sweeps: HashMap<Vec<u8>, SweepProgress>,
    /// Attribution deltas, added to the stored aggregates at commit (or
    /// resolved to totals earlier by [`Batch::stats_totals`]).
    stats: HashMap<(u32, StatsKey), Stats>,
    /// Whether `stats` holds totals rather than deltas.
    stats_resolved: bool,
    /// Bandit arms read or written, with whether they changed.
    arms: HashMap<(u32, ArmKey), (ArmCounts, bool)>,
}

/// A timer set or cancelled in a batch: what is committed now, and what will be.
struct TimerChange {
    committed_due: Option<i64>,
    next: Option<Timer>,
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
    /// Outbox entries added.
    pub outbox: usize,
}

impl Batch<'_> {
    /// Records that everything before `next_offset` of `topic`/`partition` is consumed.
    pub fn set_next_offset(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.offsets.insert((topic.to_owned(), partition), next_offset);
    }

    /// Queues a message for the publisher.
    pub fn publish(&mut self, entry: OutboxEntry) {
        self.outbox.push(entry);
    }

    /// Records how far the sweep of `offer_id` at `version` has got in `partition`.
    pub fn set_sweep_progress(&mut self, offer_id: &str, version: u32, partition: u32, progress: SweepProgress) {
        self.sweeps.insert(sweep_key(offer_id, version, partition), progress);
    }

    /// Pending timers of `partition` due at or before `now_ms` as this batch
    /// sees them (committed ones it has not changed, plus those it set),
    /// earliest first, at most `limit`.
    pub fn due_timers(&self, partition: u32, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
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
    pub fn earliest_due(&self, partition: u32) -> Result<Option<i64>, StoreError> {
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
    pub fn take_earliest_set(&mut self, partition: u32) -> Option<i64> {
        self.earliest_set.remove(&partition)
    }

    fn timer_change(&mut self, partition: u32, key: Vec<u8>) -> Result<&mut TimerChange, StoreError> {
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
    fn arm_entry(&mut self, partition: u32, key: &ArmKey) -> Result<&mut (ArmCounts, bool), StoreError> {
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

    /// Writes everything atomically.
    pub fn commit(mut self) -> Result<Committed, StoreError> {
        self.stats_totals()?;
        let s = self.store;
        let mut wb = WriteBatch::default();
        let stamp = now_ms().to_be_bytes();
        for ((p, c), profile) in &self.profiles {
            match profile {
                Some(profile) => wb.put_cf(s.cf(CF_PROFILES), partition_key(*p, c), profile.encode()),
                None => wb.delete_cf(s.cf(CF_PROFILES), partition_key(*p, c)),
            }
        }
        for (p, e) in &self.seen {
            wb.put_cf(s.cf(CF_EVENTS), partition_key(*p, e), stamp);
        }
        for ((p, d), c) in &self.devices {
            match c {
                Some(c) => wb.put_cf(s.cf(CF_DEVICES), partition_key(*p, d), c.as_bytes()),
                None => wb.delete_cf(s.cf(CF_DEVICES), partition_key(*p, d)),
            }
        }
        for ((p, key), total) in &self.stats {
            wb.put_cf(s.cf(CF_STATS), stats_key(*p, key), postcard::to_stdvec(total).expect("stats serialize"));
        }
        for ((p, key), (counts, changed)) in &self.arms {
            if *changed {
                wb.put_cf(s.cf(CF_ARMS), arm_key(*p, key), postcard::to_stdvec(counts).expect("arm serialize"));
            }
        }
        for ((t, p), o) in &self.offsets {
            wb.put_cf(s.cf(CF_OFFSETS), offset_key(t, *p), o.to_be_bytes());
        }
        for ((p, key), change) in &self.timers {
            if let Some(due) = change.committed_due {
                wb.delete_cf(s.cf(CF_TIMERS), timer_key(*p, due, key));
            }
            match &change.next {
                Some(t) => {
                    wb.put_cf(s.cf(CF_TIMERS), timer_key(*p, t.due_ms, key), t.encode());
                    wb.put_cf(s.cf(CF_TIMER_INDEX), timer_index_key(*p, key), t.due_ms.to_be_bytes());
                }
                None => wb.delete_cf(s.cf(CF_TIMER_INDEX), timer_index_key(*p, key)),
            }
        }
        for (key, progress) in &self.sweeps {
            let value = match progress {
                SweepProgress::Done => vec![1],
                SweepProgress::After(c) => [&[0u8][..], c.as_bytes()].concat(),
            };
            wb.put_cf(s.cf(CF_OFFSETS), key, value);
        }
        let first_seq = s.next_outbox_seq.fetch_add(self.outbox.len() as u64, Ordering::SeqCst);
        for (i, entry) in self.outbox.iter().enumerate() {
            let value = postcard::to_stdvec(entry).expect("outbox entries always serialize");
            wb.put_cf(s.cf(CF_OUTBOX), (first_seq + i as u64).to_be_bytes(), value);
        }
        s.db.write_opt(wb, &s.write_opts).map_err(backend)?;
        Ok(Committed { profiles: self.profiles.len(), outbox: self.outbox.len() })
    }
}

impl StateTxn for Batch<'_> {
    fn profile(&mut self, partition: u32, customer_id: &str) -> Result<Option<Profile>, StoreError> {
        match self.profiles.get(&(partition, customer_id.to_owned())) {
            Some(p) => Ok(p.clone()),
            None => self.store.profile(partition, customer_id),
        }
    }

    fn put_profile(&mut self, partition: u32, customer_id: &str, profile: Profile) -> Result<(), StoreError> {
        self.profiles.insert((partition, customer_id.to_owned()), Some(profile));
        Ok(())
    }

    fn first_sighting(&mut self, partition: u32, event_id: &str) -> Result<bool, StoreError> {
        let key = (partition, event_id.to_owned());
        if self.seen.contains(&key) {
            return Ok(false);
        }
        let stored = self
            .store
            .db
            .get_pinned_cf(self.store.cf(CF_EVENTS), partition_key(partition, event_id))
            .map_err(backend)?;
        if stored.is_some() {
            return Ok(false);
        }
        self.seen.insert(key);
        Ok(true)
    }

    fn customer_of_device(&mut self, partition: u32, device_id: &str) -> Result<Option<String>, StoreError> {
        if let Some(c) = self.devices.get(&(partition, device_id.to_owned())) {
            return Ok(c.clone());
        }
        let v = self
            .store
            .db
            .get_pinned_cf(self.store.cf(CF_DEVICES), partition_key(partition, device_id))
            .map_err(backend)?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn link_device(&mut self, partition: u32, device_id: &str, customer_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), Some(customer_id.to_owned()));
        Ok(())
    }

    fn set_timer(&mut self, partition: u32, timer: Timer) -> Result<(), StoreError> {
        let key = timer.key().encode();
        let due = timer.due_ms;
        self.timer_change(partition, key)?.next = Some(timer);
        let earliest = self.earliest_set.entry(partition).or_insert(due);
        *earliest = (*earliest).min(due);
        Ok(())
    }

    fn timer_due(&mut self, partition: u32, key: &TimerKey) -> Result<Option<i64>, StoreError> {
        Ok(self.timer_change(partition, key.encode())?.next.as_ref().map(|t| t.due_ms))
    }

    fn cancel_timer(&mut self, partition: u32, key: &TimerKey) -> Result<bool, StoreError> {
        Ok(self.timer_change(partition, key.encode())?.next.take().is_some())
    }

    fn timers_of(&mut self, partition: u32, customer_id: &str) -> Result<Vec<TimerKey>, StoreError> {
        let prefix = timer_index_key(partition, &TimerKey::customer_prefix(customer_id));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let index = self.store.cf(CF_TIMER_INDEX);
        for r in self.store.db.iterator_cf(index, IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (k, _) = r.map_err(backend)?;
            if !k.starts_with(&prefix) {
                break;
            }
            keys.push(k[4..].to_vec());
        }
        let customer_prefix = &prefix[4..];
        keys.extend(
            self.timers
                .keys()
                .filter(|(p, k)| *p == partition && k.starts_with(customer_prefix))
                .map(|(_, k)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        let mut pending = Vec::new();
        for k in keys {
            if let Some(t) = &self.timer_change(partition, k)?.next {
                pending.push(t.key());
            }
        }
        Ok(pending)
    }

    fn delete_profile(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError> {
        self.profiles.insert((partition, customer_id.to_owned()), None);
        Ok(())
    }

    fn unlink_device(&mut self, partition: u32, device_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), None);
        Ok(())
    }

    fn arm(&mut self, partition: u32, key: &ArmKey) -> Result<ArmCounts, StoreError> {
        Ok(self.arm_entry(partition, key)?.0)
    }

    fn add_arm(&mut self, partition: u32, key: &ArmKey, delta: ArmCounts) -> Result<(), StoreError> {
        let entry = self.arm_entry(partition, key)?;
        entry.0.add(delta);
        entry.1 = true;
        Ok(())
    }

    fn add_stats(&mut self, partition: u32, key: StatsKey, delta: &Stats) -> Result<(), StoreError> {
        assert!(!self.stats_resolved, "stats added after stats_totals; publish totals last, just before commit");
        self.stats.entry((partition, key)).or_default().add(delta);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_proto::v1::{Purchase, PurchaseLine};

    fn open(dir: &Path) -> Store {
        Store::open(&StoreConfig { path: dir.to_owned(), block_cache_mb: 8, write_buffer_mb: 4, ..Default::default() })
            .unwrap()
    }

    fn bought(p: &mut Profile, at: i64) {
        p.apply_purchase(&Purchase {
            timestamp_ms: at,
            lines: vec![PurchaseLine {
                sku: "s".into(),
                category: "c".into(),
                quantity: 1,
                unit_price_minor: 100,
                unit_cost_minor: 60,
            }],
            ..Default::default()
        });
    }

    #[test]
    fn batch_reads_its_own_writes_and_commits_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut b = store.begin();
        let mut p = Profile::default();
        bought(&mut p, 1);
        b.put_profile(3, "c1", p.clone()).unwrap();
        assert_eq!(b.profile(3, "c1").unwrap(), Some(p.clone()));
        assert!(b.first_sighting(3, "e1").unwrap());
        assert!(!b.first_sighting(3, "e1").unwrap(), "duplicate inside one batch");
        b.set_next_offset("cvm.events.purchases", 3, 42);
        b.publish(OutboxEntry { topic: "t".into(), key: b"k".to_vec(), payload: b"v".to_vec(), headers: vec![] });
        // Nothing is visible before commit.
        assert_eq!(store.profile(3, "c1").unwrap(), None);
        assert_eq!(store.next_offset("cvm.events.purchases", 3).unwrap(), None);
        assert_eq!(store.outbox_depth(0).unwrap(), 0);
        b.commit().unwrap();
        assert_eq!(store.profile(3, "c1").unwrap(), Some(p));
        assert_eq!(store.next_offset("cvm.events.purchases", 3).unwrap(), Some(42));
        assert_eq!(store.outbox_depth(0).unwrap(), 1);
        assert!(!store.begin().first_sighting(3, "e1").unwrap(), "replay after commit");
        assert!(store.begin().first_sighting(4, "e1").unwrap(), "event ids are scoped by partition");
    }

    #[test]
    fn dropped_batch_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut b = store.begin();
        b.put_profile(0, "c", Profile::default()).unwrap();
        assert!(b.first_sighting(0, "e").unwrap());
        drop(b);
        assert_eq!(store.profile(0, "c").unwrap(), None);
        assert!(store.begin().first_sighting(0, "e").unwrap());
    }

    #[test]
    fn state_outbox_and_offsets_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let mut b = store.begin();
            b.put_profile(1, "c", Profile { lifetime_orders: 7, ..Default::default() }).unwrap();
            for i in 0..3u8 {
                b.publish(OutboxEntry {
                    topic: "t".into(),
                    key: vec![i],
                    payload: vec![i],
                    headers: vec![("h".into(), vec![1])],
                });
            }
            b.link_device(1, "d", "c").unwrap();
            b.set_next_offset("x", 1, 9);
            b.commit().unwrap();
            store.outbox_remove([0]).unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.profile(1, "c").unwrap().unwrap().lifetime_orders, 7);
        assert_eq!(store.next_offset("x", 1).unwrap(), Some(9));
        assert_eq!(store.begin().customer_of_device(1, "d").unwrap().as_deref(), Some("c"));
        let pending = store.outbox_peek(0, 10).unwrap();
        assert_eq!(pending.iter().map(|(s, e)| (*s, e.key[0])).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
        assert_eq!(store.outbox_depth(0).unwrap(), 2);
        // New entries continue the sequence after a reopen.
        let mut b = store.begin();
        b.publish(OutboxEntry { topic: "t".into(), key: vec![9], payload: vec![], headers: vec![] });
        b.commit().unwrap();
        assert_eq!(store.outbox_peek(0, 10).unwrap().last().unwrap().0, 3);
        assert_eq!(store.profiles().count(), 1);
    }

    fn timer(customer: &str, due_ms: i64) -> Timer {
        Timer {
            due_ms,
            customer_id: customer.into(),
            kind: cvm_engine::TimerKind::Delayed,
            subject: "offer".into(),
            offer_id: "offer".into(),
            cause_event_id: "e".into(),
            parent_decision_id: String::new(),
            event_kind: None,
            event_category: String::new(),
            event_sku: String::new(),
        }
    }

    #[test]
    fn attribution_stats_add_up_across_batches_and_survive_reopen_and_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let key = |campaign: &str, group| StatsKey { campaign_id: campaign.into(), group, day: -3 };
        let delta = Stats { customers: 1, margin_minor: 7, margin_sq: 49, ..Stats::default() };
        {
            let store = open(dir.path());
            for _ in 0..2 {
                let mut b = store.begin();
                b.add_stats(1, key("spring", Group::Treated), &delta).unwrap();
                b.add_stats(1, key("spring", Group::Treated), &delta).unwrap();
                b.add_stats(2, key("", Group::GlobalControl), &delta).unwrap();
                b.commit().unwrap();
            }
            let mut b = store.begin();
            b.put_profile(1, "c1", Profile::default()).unwrap();
            b.link_device(1, "d1", "c1").unwrap();
            b.commit().unwrap();
            let mut b = store.begin();
            b.delete_profile(1, "c1").unwrap();
            b.unlink_device(1, "d1").unwrap();
            assert_eq!(b.profile(1, "c1").unwrap(), None, "the batch sees its own erasure");
            b.commit().unwrap();
        }
        let store = Store::open_read_only(dir.path()).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!(stats.len(), 2);
        let (p, k, s) = &stats.iter().find(|(p, ..)| *p == 1).unwrap();
        assert_eq!((*p, k), (1, &key("spring", Group::Treated)));
        assert_eq!((s.customers, s.margin_minor, s.margin_sq), (4, 28, 196));
        assert!(store.profile(1, "c1").unwrap().is_none());
        assert_eq!(store.profiles().count(), 0);
    }

    #[test]
    fn timers_survive_reopen_and_are_replaced_and_cancelled_by_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let mut b = store.begin();
            b.set_timer(2, timer("a", 500)).unwrap();
            b.set_timer(2, timer("b", 100)).unwrap();
            b.set_timer(3, timer("c", 50)).unwrap();
            b.commit().unwrap();
            // Replace a's timer in a later batch: the old due time must vanish.
            let mut b = store.begin();
            b.set_timer(2, timer("a", 300)).unwrap();
            assert_eq!(b.timer_due(2, &timer("a", 0).key()).unwrap(), Some(300));
            b.commit().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.pending_timers(), 3);
        let due: Vec<(String, i64)> =
            store.due_timers(2, 1_000, 10).unwrap().into_iter().map(|t| (t.customer_id, t.due_ms)).collect();
        assert_eq!(due, [("b".to_owned(), 100), ("a".to_owned(), 300)], "time order, partition 2 only");
        assert_eq!(store.due_timers(2, 299, 10).unwrap().len(), 1);
        let mut b = store.begin();
        assert!(b.cancel_timer(2, &timer("b", 0).key()).unwrap());
        assert!(!b.cancel_timer(2, &timer("b", 0).key()).unwrap(), "already cancelled in this batch");
        b.commit().unwrap();
        assert_eq!(store.due_timers(2, 1_000, 10).unwrap().len(), 1);
        assert_eq!(store.pending_timers(), 2);

        // A batch sees its own changes on top of the committed timers.
        let mut b = store.begin();
        assert_eq!(b.earliest_due(2).unwrap(), Some(300));
        b.set_timer(2, timer("d", 200)).unwrap();
        b.cancel_timer(2, &timer("a", 0).key()).unwrap();
        assert_eq!(b.take_earliest_set(2), Some(200));
        assert_eq!(b.take_earliest_set(2), None, "taken");
        let due: Vec<String> = b.due_timers(2, 1_000, 10).unwrap().into_iter().map(|t| t.customer_id).collect();
        assert_eq!(due, ["d"], "the cancelled committed timer is gone, the new one is there");
        assert_eq!(b.earliest_due(2).unwrap(), Some(200));
        assert_eq!(b.earliest_due(9).unwrap(), None);
    }

    #[test]
    fn sweep_progress_and_customer_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut b = store.begin();
        for c in ["c1", "c2", "c3"] {
            b.put_profile(5, c, Profile::default()).unwrap();
        }
        b.put_profile(6, "other", Profile::default()).unwrap();
        b.set_sweep_progress("storm", 2, 5, SweepProgress::After("c1".into()));
        b.commit().unwrap();
        assert_eq!(store.customers_after(5, "", 10).unwrap(), ["c1", "c2", "c3"]);
        assert_eq!(store.customers_after(5, "c1", 1).unwrap(), ["c2"]);
        assert!(store.customers_after(5, "c3", 10).unwrap().is_empty(), "stays inside the partition");
        assert_eq!(store.sweep_progress("storm", 2, 5).unwrap(), Some(SweepProgress::After("c1".into())));
        assert_eq!(store.sweep_progress("storm", 3, 5).unwrap(), None, "per version");
    }
}
