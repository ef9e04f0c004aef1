//! The ingest loop: Kafka messages in batches → the [`Driver`] → one
//! RocksDB commit per batch (state + offsets + outbox).
//!
//! Only what is Kafka's lives here: poll, decode, dead letters, offsets,
//! batching and meters. How events, timers and sweeps reach the decision
//! core — the event-time watermark over the two input topics, due timers
//! fired before the event that passes them, paced sweeps — is the driver's,
//! the same code `offers simulate`, `train` and the benchmarks replay
//! through.
//!
//! Each worker runs one on its own thread with a synchronous `BaseConsumer`
//! (a member of the ingest group owning some partitions, see the
//! `consumer` module): the decision core is synchronous and CPU-bound, so
//! an async runtime would only add hand-offs, and workers share nothing but
//! the store (whose commits are atomic) and the catalog. Rebalances are
//! handled inside `poll`, between batches, so a partition is never revoked
//! while its events are half applied; what was polled for the batch being
//! filled when a rebalance happens is dropped and read again by whoever
//! owns its partition. The offsets of every input partition are checked
//! for gaps (inputs are not compacted: a gap is records the broker did not
//! deliver), which are counted and logged. Between
//! batches a maintenance pass lets the driver fire due timers and advance
//! sweeps; it commits the same way, so a crash never fires a timer twice or
//! loses a sweep's place.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
    time::{Duration, Instant},
};

mod applier;

use cvm_engine::{
    attribution::{Stats, StatsKey},
    catalog::LiveCatalog,
    driver::{ScanPacing, TIMERS_PER_BATCH},
    telemetry, Driver, DriverConfig, Engine,
};
use cvm_store::Store;
use metrics::counter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{debug, info, warn};

use crate::{
    consumer::{consumer, IngestStatus, Ownership},
    gate::PublishGate,
    meters::Meters,
    ClientError, KafkaConfig,
};
use applier::{Applier, InputMessage};

/// The ingest loop had to stop.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The consumer could not be created or subscribed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Subscribing failed.
    #[error("cannot subscribe to {topics:?}: {source}; check the topics exist")]
    Subscribe {
        /// The topics.
        topics: Vec<String>,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The state store failed; nothing of the current batch was committed.
    #[error("state store failed, batch not committed (it will be re-read on restart): {0}")]
    Store(#[from] cvm_engine::StoreError),
}

/// Called after every commit with the attribution totals it wrote (and with
/// none after maintenance passes that wrote none), e.g. to keep gauges.
pub type CommittedStats = Box<dyn FnMut(&[(u32, StatsKey, Stats)]) + Send>;

/// How often due timers and sweeps are looked at: often enough that a timer
/// fires within a fraction of a second, rarely enough that the scans (one
/// RocksDB iterator per owned partition) stay off the hot path.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(200);

/// One worker's ingest loop; see the module docs.
pub struct Ingest {
    consumer: BaseConsumer<Ownership>,
    applier: Applier,
    /// Whether this worker has paused its partitions (the outbox is full).
    paused: bool,
    status: Arc<IngestStatus>,
    stop: Arc<AtomicBool>,
    /// Per input partition, the offset the next message should have.
    expected: HashMap<(String, i32), i64>,
    /// Per input partition, the last applied offset librdkafka has not yet
    /// taken for the group's commit (it refuses during a rebalance); see
    /// [`Ingest::store_group_offsets`].
    unstored: HashMap<(String, i32), i64>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("group", &self.applier.config.group_id).finish()
    }
}

/// What every worker of an instance shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The state store.
    pub store: Store,
    /// The live offer catalog.
    pub catalog: LiveCatalog,
    /// Notified after every commit that added outbox entries.
    pub wake: Arc<tokio::sync::Notify>,
    /// Paused and restoring partitions, for `/readyz`.
    pub status: Arc<IngestStatus>,
    /// Set to stop (the batch in progress is committed first).
    pub stop: Arc<AtomicBool>,
    /// The partitions whose outbox entries may be published: the workers
    /// open what they gain and close what they lose.
    pub gate: Arc<PublishGate>,
}

impl Ingest {
    /// Creates worker number `worker`'s consumer; `on_commit` sees every
    /// commit's stats totals.
    pub fn new(
        config: &KafkaConfig,
        shared: Shared,
        engine: Engine,
        on_commit: CommittedStats,
        worker: usize,
    ) -> Result<Self, IngestError> {
        let Shared { store, catalog, wake, status, stop, gate } = shared;
        let ownership = Ownership::new(store.clone(), config.clone(), status.clone(), stop.clone(), gate);
        let consumer = consumer(config, ownership, worker)?;
        let mut driver = Driver::new(
            engine,
            DriverConfig {
                clock: config.clock,
                // Purchases and app events; erasure requests do not move time.
                inputs: 2,
                idle_timeout_ms: config.watermark_idle_timeout.as_millis().try_into().unwrap_or(i64::MAX),
                pacing: ScanPacing::Rate,
                timers_per_batch: TIMERS_PER_BATCH,
                real_wall_clock: true,
            },
        );
        let snapshot = catalog.snapshot();
        driver.set_catalog(snapshot.catalog);
        let applier = Applier {
            store,
            driver,
            catalog,
            catalog_generation: snapshot.generation,
            meters: Meters::new(config),
            config: config.clone(),
            wake,
            on_commit,
            #[cfg(test)]
            fault: None,
        };
        Ok(Self { consumer, applier, paused: false, status, stop, expected: HashMap::new(), unstored: HashMap::new() })
    }

    /// Runs until `stop` is set; the batch in progress is committed first.
    pub fn run(mut self) -> Result<(), IngestError> {
        let t = &self.applier.config.topics;
        let topics = t.inputs();
        self.consumer.subscribe(&topics).map_err(|source| IngestError::Subscribe {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            source,
        })?;
        info!(group = %self.applier.config.group_id, ?topics, "Ingest started.");
        let mut last_maintenance = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let paused = self.backpressure();
            self.run_batch()?;
            // Timers and sweeps add to the outbox too: they wait while it is full.
            if !paused && last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                self.applier.maintain(&self.owned_partitions())?;
                last_maintenance = Instant::now();
            }
        }
        info!("Ingest stopped.");
        Ok(())
    }

    /// Pauses every assigned partition while the outbox holds more than
    /// `outbox_max_entries` (again on every call: a rebalance may have
    /// assigned new ones), resumes below half of it; returns whether paused.
    fn backpressure(&mut self) -> bool {
        let pending = self.applier.store.outbox_pending();
        let bound = self.applier.config.outbox_max_entries;
        let was_paused = self.paused;
        let paused = if was_paused { pending > bound / 2 } else { pending > bound };
        if paused != was_paused {
            if paused {
                warn!(pending, bound, "Outbox over its bound (is the broker taking offers?); ingest paused.");
            } else {
                info!(pending, "Outbox drained; ingest resumed.");
            }
            self.paused = paused;
            self.status.set_paused(paused);
        }
        // The assignment is read only while paused or resuming: this runs
        // before every batch.
        if paused || was_paused {
            let result = self.consumer.assignment().and_then(|assignment| {
                if paused {
                    self.consumer.pause(&assignment)
                } else {
                    self.consumer.resume(&assignment)
                }
            });
            if let Err(e) = result {
                warn!(error = %e, paused, "Cannot pause or resume the input partitions.");
            }
        }
        paused
    }

    /// The partitions this instance owns (the same numbers on every input topic).
    fn owned_partitions(&self) -> Vec<u32> {
        let mut parts: Vec<u32> = match self.consumer.assignment() {
            Ok(tpl) => tpl.elements().iter().map(|e| e.partition() as u32).collect(),
            Err(_) => Vec::new(),
        };
        parts.sort_unstable();
        parts.dedup();
        parts
    }

    /// After a rebalance, before any event of a gained partition: its
    /// event-time clock resumes from the one committed with its state
    /// (restored, perhaps, from another owner), and offsets are expected afresh.
    fn take_gained(&mut self) -> Result<(), IngestError> {
        let gained = std::mem::take(
            &mut *self.consumer.context().gained.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if gained.is_empty() {
            return Ok(());
        }
        let owned = self.owned_partitions();
        self.unstored.retain(|(_, partition), _| owned.contains(&(*partition as u32)));
        for partition in gained {
            let clock = self.applier.store.clock(partition)?;
            self.applier.driver.gain_partition(partition, clock.as_ref(), crate::wall_ms());
            // The group learns the gained partition's offsets from the store:
            // the previous owner's last commit to the group may have been
            // refused mid-rebalance, and no message may come to correct it.
            for topic in self.applier.config.topics.inputs() {
                if let Some(next) = self.applier.store.next_offset(topic, partition as i32)?.filter(|n| *n > 0) {
                    self.unstored.insert((topic.to_owned(), partition as i32), next - 1);
                }
            }
        }
        self.expected.clear();
        Ok(())
    }

    /// Hands librdkafka the last applied offset of every input partition
    /// for the group's commit — for lag monitoring only (the store holds
    /// the offsets the engine resumes from). A partition whose offset is
    /// refused (during a rebalance) is tried again after the next poll;
    /// `rd_kafka_offset_store` stores the offset after the one given, so the
    /// group's committed offset is the next to read.
    fn store_group_offsets(&mut self) {
        let consumer = &self.consumer;
        self.unstored.retain(|(topic, partition), offset| match consumer.store_offset(topic, *partition, *offset) {
            Ok(()) => false,
            Err(e) => {
                debug!(topic, partition, offset, error = %e, "Offset not yet stored for the group; retried after the next poll.");
                true
            }
        });
    }

    /// Polls up to a batch of messages, applies them and commits.
    fn run_batch(&mut self) -> Result<(), IngestError> {
        let Self { consumer, applier, .. } = self;
        let mut messages: Vec<InputMessage> = Vec::new();
        let mut deadline = None::<Instant>;
        let mut generation = consumer.context().rebalances.load(Ordering::SeqCst);
        while deadline.is_none_or(|d| Instant::now() < d) && messages.len() < applier.config.batch_max_events {
            let timeout = deadline.map_or(Duration::from_millis(100), |d| d.saturating_duration_since(Instant::now()));
            let polled = consumer.poll(timeout);
            let now = consumer.context().rebalances.load(Ordering::SeqCst);
            if now != generation {
                // Polled before a rebalance: revoked, or re-assigned at the stored offsets.
                messages.clear();
                generation = now;
            }
            match polled {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "Consumer error; retrying.");
                    break;
                }
                Some(Ok(msg)) => messages.push(InputMessage::of(&msg)),
            }
            deadline.get_or_insert_with(|| Instant::now() + applier.config.batch_max_wait);
        }
        self.take_gained()?;
        if messages.is_empty() {
            self.store_group_offsets();
            return Ok(());
        }
        self.check_gaps(&messages)?;
        self.applier.apply_batch(&messages)?;
        for m in &messages {
            let last = self.unstored.entry((m.topic.clone(), m.partition)).or_insert(m.offset);
            *last = (*last).max(m.offset);
        }
        self.store_group_offsets();
        Ok(())
    }

    /// Counts and logs messages whose offset is past the one expected (the
    /// stored next offset, then the one after the last message).
    fn check_gaps(&mut self, messages: &[InputMessage]) -> Result<(), IngestError> {
        for m in messages {
            let key = (m.topic.clone(), m.partition);
            let expected = match self.expected.get(&key) {
                Some(e) => Some(*e),
                None => self.applier.store.next_offset(&m.topic, m.partition)?,
            };
            if let Some(expected) = expected.filter(|e| m.offset > *e) {
                let skipped = m.offset - expected;
                counter!(telemetry::INPUT_OFFSET_GAPS, "topic" => m.topic.clone()).increment(1);
                counter!(telemetry::INPUT_OFFSETS_SKIPPED, "topic" => m.topic.clone()).increment(skipped as u64);
                warn!(topic = %m.topic, partition = m.partition, expected, got = m.offset, skipped,
                    "Input offsets skipped: the broker did not deliver these records (or they are a transactional producer's markers).");
            }
            self.expected.insert(key, m.offset + 1);
        }
        Ok(())
    }
}
