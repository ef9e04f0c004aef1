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
//! - `offsets`: `topic ‖ 0 ‖ partition` → next offset to consume (`i64` BE);
//!   also `0xFE ‖ "writer"` → this store's id in the changelog, `0xFE ‖
//!   "txn"` → the publisher's transaction in flight, and per
//!   partition `0xFD ‖ partition` → its event-time clock and `0xFC ‖
//!   partition` → its commit number
//! - `outbox`: sequence (`u64` BE) → [`OutboxEntry`]
//! - `timers`: `partition ‖ due_ms (u64 BE) ‖ timer key` → [`Timer`], so the
//!   due timers of a partition are a prefix scan in time order
//! - `timer_index`: `partition ‖ timer key` → due_ms, to find a pending
//!   timer by key when it is cancelled or replaced
//! - `scans`: `offer ‖ 0 ‖ version ‖ partition` → how far a sweep or
//!   inactivity backfill has got, so a restarted scan resumes
//! - `stats`: `partition ‖ group ‖ day ‖ campaign` → attribution [`Stats`];
//!   a batch sums its deltas in memory and adds them at commit
//! - `arms`: `partition ‖ segment ‖ offer hash` → bandit [`ArmCounts`]
//! - `budgets`: `partition ‖ campaign hash` → the campaign's daily budget
//!   [`Ledger`](cvm_engine::budget::Ledger)
//!
//! With a changelog topic set, every commit also queues its changes for it,
//! so a partition's state can be restored elsewhere (`changelog` module).
//!
//! Modules: `keys` encodes keys, `reads` holds the committed-state reads,
//! `outbox` the publisher's side, `batch` the pending work and its atomic
//! commit, `txn` the decision core's `StateTxn` view of a batch.

mod batch;
mod changelog;
mod figures;
mod keys;
mod outbox;
mod reads;
#[cfg(test)]
mod tests;
mod txn;

use std::{
    collections::VecDeque,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cvm_engine::StoreError;
use rocksdb::{
    compaction_filter::Decision as FilterDecision, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    IteratorMode, Options, WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

pub use batch::{Batch, Committed};
pub use changelog::{commit_marker, ChangelogRecord, CommitMarker};
pub use cvm_engine::driver::SweepProgress;
pub use figures::RocksDbFigures;
pub use outbox::{OutboxEntry, PublisherTxn};

use keys::*;

/// RocksDB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the database.
    pub path: PathBuf,
    /// RocksDB's memory budget, MiB: one block cache shared by every column
    /// family, which is also charged for the memtables (see
    /// `memtable_budget_mb`), index and filter blocks. The process needs
    /// this plus roughly 300 MiB (librdkafka queues, batches, the runtime).
    pub block_cache_mb: usize,
    /// Of that budget, the most all memtables together may hold, MiB; when
    /// reached, the largest is flushed.
    pub memtable_budget_mb: usize,
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
            memtable_budget_mb: 128,
            write_buffer_mb: 64,
            max_write_buffers: 3,
            bloom_bits_per_key: 10.0,
            sync_writes: false,
            dedup_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl StoreConfig {
    /// Every problem serde cannot see, as `path: problem; fix`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.block_cache_mb == 0 || self.write_buffer_mb == 0 {
            errors.push(format!("{path}: block_cache_mb and write_buffer_mb must be positive"));
        }
        // MiB are shifted into bytes at open: a size beyond 1 TiB is a typo, and would overflow.
        if self.block_cache_mb > 1 << 20 || self.write_buffer_mb > 1 << 20 {
            errors.push(format!("{path}: block_cache_mb and write_buffer_mb must be at most 1048576 (1 TiB)"));
        }
        if self.memtable_budget_mb == 0 || self.memtable_budget_mb > self.block_cache_mb {
            errors.push(format!(
                "{path}.memtable_budget_mb: must be positive and at most block_cache_mb (the memtables are charged to it)"
            ));
        }
        errors
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
    /// A store opened read-only lacks column families this version reads.
    #[error(
        "the state store at {path} lacks column families {missing:?}: it is being created, or was written by an \
         older cvm; open it once with `cvm run` (which adds them) or wait for the engine to start"
    )]
    Incomplete {
        /// The directory.
        path: PathBuf,
        /// The missing column families.
        missing: Vec<String>,
    },
}

/// The state store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    next_outbox_seq: Arc<AtomicU64>,
    /// The oldest entry the publisher has not delivered yet, as it last saw it.
    outbox_head: Arc<AtomicU64>,
    write_opts: Arc<WriteOptions>,
    path: PathBuf,
    /// The changelog topic commits are queued for (see [`Store::with_changelog`]).
    changelog: Option<Arc<str>>,
    /// This store's id in the changelog's commit markers.
    writer: u64,
    /// Held while a commit takes outbox sequence numbers and writes, so
    /// that commits of several workers enter the outbox in sequence order
    /// (the publisher reads it in order and must not step over a gap that
    /// a slower commit fills later).
    commit_lock: Arc<Mutex<()>>,
    /// When each commit with outbox entries put them there: its first
    /// sequence number and the time (see [`Store::outbox_oldest_age`]).
    outbox_commits: Arc<Mutex<VecDeque<(u64, Instant)>>>,
    /// The options holding RocksDB's statistics (`None` when read-only).
    statistics: Option<Arc<Options>>,
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

/// Stores written before scan progress had its own column family kept it
/// in `offsets` under a `0xff` prefix; moves it, once, so no sweep re-runs
/// after an upgrade.
fn migrate_scan_progress(db: &DB) -> Result<(), rocksdb::Error> {
    let (offsets, scans) = (db.cf_handle(CF_OFFSETS).expect("created"), db.cf_handle(CF_SCANS).expect("created"));
    let mut wb = WriteBatch::default();
    for r in db.iterator_cf(offsets, IteratorMode::From(&[0xff], rocksdb::Direction::Forward)) {
        let (k, v) = r?;
        if k.first() != Some(&0xff) {
            break;
        }
        wb.put_cf(scans, &k[1..], &v);
        wb.delete_cf(offsets, &k);
    }
    if !wb.is_empty() {
        db.write(wb)?;
    }
    Ok(())
}

/// The store's writer id, made (random) and kept the first time it is opened.
fn writer_id(db: &DB, write_opts: &WriteOptions) -> Result<u64, rocksdb::Error> {
    let offsets = db.cf_handle(CF_OFFSETS).expect("created");
    if let Some(v) = db.get_cf(offsets, changelog::WRITER_KEY)? {
        if let Ok(bytes) = v.as_slice().try_into() {
            return Ok(u64::from_be_bytes(bytes));
        }
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    let id = hasher.finish();
    db.put_cf_opt(offsets, changelog::WRITER_KEY, id.to_be_bytes(), write_opts)?;
    Ok(id)
}

/// The share of a memtable's size given to its bloom filter.
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;

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
            if name != CF_OUTBOX && name != CF_OFFSETS && name != CF_TIMERS {
                // Point reads (a profile per event, an event id, a device…)
                // otherwise search every memtable's skip list — the largest
                // cost of the decision core in a profile; a bloom filter per
                // memtable skips those without the key.
                o.set_memtable_whole_key_filtering(true);
                o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
            }
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
        // One budget: memtables are charged to the block cache.
        let memtables = WriteBufferManager::new_write_buffer_manager_with_cache(
            config.memtable_budget_mb << 20,
            false,
            cache.clone(),
        );
        db_opts.set_write_buffer_manager(&memtables);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        // Counters only (block-cache hits, stalls) for the operations endpoint.
        db_opts.enable_statistics();
        db_opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        let db = DB::open_cf_descriptors(&db_opts, &config.path, ALL_CFS.map(cf_opts))
            .map_err(|source| OpenError::Open { path: config.path.clone(), source })?;
        migrate_scan_progress(&db).map_err(|source| OpenError::Open { path: config.path.clone(), source })?;
        let (first_seq, next_seq) = {
            let cf = db.cf_handle(CF_OUTBOX).expect("created above");
            let seq_at = |mode| match db.iterator_cf(cf, mode).next() {
                Some(Ok((k, _))) => Some(u64::from_be_bytes(k[..8].try_into().expect("outbox keys are 8 bytes"))),
                _ => None,
            };
            let next = seq_at(IteratorMode::End).map_or(0, |last| last + 1);
            (seq_at(IteratorMode::Start).unwrap_or(next), next)
        };
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let writer =
            writer_id(&db, &write_opts).map_err(|source| OpenError::Open { path: config.path.clone(), source })?;
        Ok(Self {
            db: Arc::new(db),
            next_outbox_seq: Arc::new(AtomicU64::new(next_seq)),
            outbox_head: Arc::new(AtomicU64::new(first_seq)),
            write_opts: Arc::new(write_opts),
            path: config.path.clone(),
            changelog: None,
            writer,
            commit_lock: Arc::default(),
            outbox_commits: Arc::new(Mutex::new(VecDeque::from_iter(
                (first_seq < next_seq).then(|| (first_seq, Instant::now())),
            ))),
            statistics: Some(Arc::new(db_opts)),
        })
    }

    /// Opens an existing store read-only, e.g. beside a running engine for
    /// `cvm report`: it sees what was committed when it was opened.
    pub fn open_read_only(path: &Path) -> Result<Self, OpenError> {
        let open_error = |source| OpenError::Open { path: path.to_owned(), source };
        // Every family this version reads must be there: one written by an
        // older version (or still being created) may lack newer ones.
        let cfs = DB::list_cf(&Options::default(), path).map_err(open_error)?;
        let missing: Vec<String> =
            ALL_CFS.iter().filter(|name| !cfs.iter().any(|c| c == *name)).map(|n| (*n).to_owned()).collect();
        if !missing.is_empty() {
            return Err(OpenError::Incomplete { path: path.to_owned(), missing });
        }
        let db = DB::open_cf_for_read_only(&Options::default(), path, cfs, false).map_err(open_error)?;
        Ok(Self {
            db: Arc::new(db),
            next_outbox_seq: Arc::new(AtomicU64::new(0)),
            outbox_head: Arc::new(AtomicU64::new(0)),
            write_opts: Arc::new(WriteOptions::default()),
            path: path.to_owned(),
            changelog: None,
            writer: 0,
            commit_lock: Arc::default(),
            outbox_commits: Arc::default(),
            statistics: None,
        })
    }

    /// Queues every commit's changes for the changelog `topic` too (see
    /// the `changelog` module). Set before the store is cloned.
    pub fn with_changelog(mut self, topic: &str) -> Self {
        self.changelog = Some(topic.into());
        self
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Flushes memtables to disk (used at shutdown so restarts replay little WAL).
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = ALL_CFS.iter().map(|n| self.cf(n)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).map_err(backend)
    }

    /// Flushes, then compacts every column family fully (benchmarks
    /// measure the footprint after it; RocksDB compacts on its own).
    pub fn compact(&self) -> Result<(), StoreError> {
        self.flush()?;
        for name in ALL_CFS {
            self.db.compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Bytes of the live SST files of every column family (the data on
    /// disk, without the write-ahead log).
    pub fn live_sst_bytes(&self) -> Result<u64, StoreError> {
        ALL_CFS.iter().try_fold(0, |sum, name| {
            let size = self.db.property_int_value_cf(self.cf(name), "rocksdb.live-sst-files-size").map_err(backend)?;
            Ok(sum + size.unwrap_or(0))
        })
    }
}
