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
//! It runs on its own thread with a synchronous `BaseConsumer`: the decision
//! core is synchronous and CPU-bound, so an async runtime would only add
//! hand-offs. Rebalances are handled inside `poll`, between batches, so a
//! partition is never revoked while its events are half applied. Between
//! batches a maintenance pass lets the driver fire due timers and advance
//! sweeps; it commits the same way, so a crash never fires a timer twice or
//! loses a sweep's place.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cvm_engine::{
    attribution::{Stats, StatsKey},
    catalog::LiveCatalog,
    driver::ScanPacing,
    Driver, DriverConfig, Engine, EventResult, Output, Source,
};
use cvm_store::{Batch, Store};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Message},
};
use tracing::{debug, info, warn};

use crate::{
    codec::{dead_letter, decode_event, outbox_entry, stats_entry, Input},
    consumer::{consumer, SeekToStoredOffsets},
    meters::{BatchCounts, Ingested, Meters},
    ClientError, KafkaConfig,
};

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

/// The ingest loop; see the module docs.
pub struct Ingest {
    consumer: BaseConsumer<SeekToStoredOffsets>,
    applier: Applier,
}

/// Everything but the consumer: takes messages into a batch through the
/// driver and commits. (Apart from the consumer, because a polled message
/// borrows it while the applier changes.)
struct Applier {
    store: Store,
    driver: Driver,
    catalog: LiveCatalog,
    catalog_generation: u64,
    config: KafkaConfig,
    wake: Arc<tokio::sync::Notify>,
    meters: Meters,
    on_commit: CommittedStats,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("group", &self.applier.config.group_id).finish()
    }
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Ingest {
    /// Creates the consumer. `wake` is notified after every commit that
    /// added outbox entries; `on_commit` sees every commit's stats totals.
    pub fn new(
        config: &KafkaConfig,
        store: Store,
        engine: Engine,
        catalog: LiveCatalog,
        wake: Arc<tokio::sync::Notify>,
        on_commit: CommittedStats,
    ) -> Result<Self, IngestError> {
        let consumer = consumer(config, &store)?;
        let mut driver = Driver::new(
            engine,
            DriverConfig {
                clock: config.clock,
                // Purchases and app events; erasure requests do not move time.
                inputs: 2,
                idle_timeout_ms: config.watermark_idle_timeout.as_millis().try_into().unwrap_or(i64::MAX),
                pacing: ScanPacing::Rate,
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
        };
        Ok(Self { consumer, applier })
    }

    /// Runs until `stop` is set; the batch in progress is committed first.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), IngestError> {
        let t = &self.applier.config.topics;
        let topics = [t.purchases.name.as_str(), t.app.name.as_str(), t.erasure.name.as_str()];
        self.consumer.subscribe(&topics).map_err(|source| IngestError::Subscribe {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            source,
        })?;
        info!(group = %self.applier.config.group_id, ?topics, "Ingest started.");
        let mut last_maintenance = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.run_batch()?;
            if last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                self.applier.maintain(&self.owned_partitions())?;
                last_maintenance = Instant::now();
            }
        }
        info!("Ingest stopped.");
        Ok(())
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

    /// Polls up to a batch of messages, applies them and commits.
    fn run_batch(&mut self) -> Result<(), IngestError> {
        let Self { consumer, applier } = self;
        let store = applier.store.clone();
        let mut batch = store.begin();
        let mut counts = BatchCounts::default();
        let mut last_offsets: Vec<(String, i32, i64)> = Vec::new();
        let mut deadline = None::<Instant>;
        while deadline.is_none_or(|d| Instant::now() < d) && counts.messages() < applier.config.batch_max_events {
            let timeout = deadline.map_or(Duration::from_millis(100), |d| d.saturating_duration_since(Instant::now()));
            let msg = match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "Consumer error; retrying.");
                    break;
                }
                Some(Ok(msg)) => msg,
            };
            if deadline.is_none() {
                // Swap in a reloaded catalog when a batch starts, so an event
                // produced after an offer update is decided with it.
                applier.refresh_catalog();
                applier.driver.begin();
                deadline = Some(Instant::now() + applier.config.batch_max_wait);
            }
            applier.handle(&mut batch, &msg, &mut counts)?;
            match last_offsets.iter_mut().find(|(t, p, _)| t == msg.topic() && *p == msg.partition()) {
                Some(entry) => entry.2 = msg.offset(),
                None => last_offsets.push((msg.topic().to_owned(), msg.partition(), msg.offset())),
            }
        }
        if last_offsets.is_empty() {
            return Ok(());
        }
        applier.commit(batch, &counts)?;
        for (topic, partition, offset) in &last_offsets {
            // For lag monitoring only (the stored state is the truth);
            // librdkafka stores the offset after the one given.
            let _ = consumer.store_offset(topic, *partition, *offset);
        }
        Ok(())
    }
}

impl Applier {
    /// Swaps in a reloaded catalog, if there is one.
    fn refresh_catalog(&mut self) {
        let snapshot = self.catalog.snapshot();
        if snapshot.generation != self.catalog_generation {
            debug!(generation = snapshot.generation, offers = snapshot.catalog.all().len(), "Catalog reloaded.");
            self.catalog_generation = snapshot.generation;
            self.driver.set_catalog(snapshot.catalog);
        }
    }

    /// Lets the driver fire due timers and advance sweeps over `partitions`;
    /// commits if that did anything.
    fn maintain(&mut self, partitions: &[u32]) -> Result<(), IngestError> {
        self.refresh_catalog();
        let store = self.store.clone();
        let mut batch = store.begin();
        self.driver.begin();
        let (wall, mut out, mut counts) = (wall_ms(), Output::default(), BatchCounts::default());
        let mut changed = self.driver.tick(&mut batch, partitions, wall, &mut out)?;
        let scans = self.driver.advance_scans(&mut batch, partitions, wall, &mut out)?;
        changed |= scans.iter().any(|s| s.changed);
        counts.scans(scans);
        if !changed {
            (self.on_commit)(&[]);
            return Ok(());
        }
        self.queue(&mut batch, &out, &mut counts);
        self.commit(batch, &counts)
    }

    /// Decodes one message and hands it to the driver; dead-letters what
    /// cannot be decoded or applied.
    fn handle(
        &mut self,
        batch: &mut Batch<'_>,
        msg: &BorrowedMessage<'_>,
        counts: &mut BatchCounts,
    ) -> Result<(), IngestError> {
        let topics = &self.config.topics;
        let (input, index) = Input::of(topics, msg.topic());
        batch.set_next_offset(msg.topic(), msg.partition(), msg.offset() + 1);
        let started = Instant::now();
        let dead = |reason: &str| {
            dead_letter(topics, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.payload(), reason)
        };
        let event = match decode_event(topics, input, msg.payload()) {
            Ok(e) => e,
            Err(reason) => {
                warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), %reason, "Undecodable event sent to the dead-letter topic.");
                batch.publish(dead(&reason));
                counts.ingested(index, Ingested::DeadLettered);
                return Ok(());
            }
        };
        let source = match input {
            Input::Purchases => Source::Input(0),
            Input::App => Source::Input(1),
            Input::Erasure => Source::Side,
        };
        let mut out = Output::default();
        let result = self.driver.apply(batch, msg.partition() as u32, source, &event, wall_ms(), &mut out)?;
        if let EventResult::Invalid(reason) = result {
            warn!(topic = msg.topic(), offset = msg.offset(), reason, "Invalid event sent to the dead-letter topic.");
            batch.publish(dead(reason));
        }
        counts.ingested(index, Ingested::of(&result));
        self.queue(batch, &out, counts);
        self.meters.latency.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Queues what the driver produced in the outbox.
    fn queue(&self, batch: &mut Batch<'_>, out: &Output, counts: &mut BatchCounts) {
        counts.output(out);
        for emit in &out.emits {
            batch.publish(outbox_entry(&self.config.topics, emit));
        }
    }

    /// Publishes the attribution totals the batch changed on the stats topic
    /// in the same write, commits, and flushes the counts.
    fn commit(&mut self, mut batch: Batch<'_>, counts: &BatchCounts) -> Result<(), IngestError> {
        let started = Instant::now();
        let totals = batch.stats_totals()?;
        for (partition, key, total) in &totals {
            batch.publish(stats_entry(&self.config.topics, *partition, key, total));
        }
        let committed = batch.commit()?;
        self.meters.commit.record(started.elapsed().as_secs_f64());
        (self.on_commit)(&totals);
        if committed.outbox > 0 {
            self.wake.notify_one();
        }
        self.meters.flush(counts);
        Ok(())
    }
}
