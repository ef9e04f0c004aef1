//! The ingest loop: Kafka messages in batches → decision core → one RocksDB
//! commit per batch (state + offsets + outbox).
//!
//! It runs on its own thread with a synchronous `BaseConsumer`: the decision
//! core is synchronous and CPU-bound, so an async runtime would only add
//! hand-offs. Rebalances are handled inside `poll`, between batches, so a
//! partition is never revoked while its events are half applied.
//!
//! Between batches the loop also does the engine's time-driven work for the
//! partitions it owns: it fires due durable timers (delays, inactivity,
//! cascades) and advances sweeps at their rate limit. Both commit the same
//! way as events — state, timer deletions, sweep progress and outbox in one
//! write — so a crash never fires a timer twice or loses a sweep's place.
//! Time is the wall clock, or with `clock = "event_time"` event time: then
//! the timers of a partition due by an event's timestamp fire just before
//! that event is applied (and the maintenance pass catches timers due by the
//! partition's latest event), so a replay fires timers as the original run
//! would, however fast it reads.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cvm_engine::{
    attribution::{Stats, StatsKey},
    offers::Trigger,
    Emit, Engine, EventResult, TimerKind,
};
use cvm_store::{Batch, Store, SweepProgress};
use metrics::{counter, gauge, histogram, Counter, Histogram};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    message::{BorrowedMessage, Message},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{debug, error, info, warn};

use crate::{
    client_config,
    codec::{dead_letter, decode_event, outbox_entry, stats_entry, Input},
    telemetry, ClientError, Clock, KafkaConfig, SharedCatalog, StartFrom,
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

/// Seeks every assigned partition to the offset stored with its state.
struct IngestContext {
    store: Store,
    start_from: StartFrom,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                for (topic, partition) in &parts {
                    let offset = match self.store.next_offset(topic, *partition) {
                        Ok(Some(o)) => Offset::Offset(o),
                        Ok(None) if self.start_from == StartFrom::Earliest => Offset::Beginning,
                        Ok(None) => Offset::End,
                        Err(e) => {
                            error!(topic, partition, error = %e, "Cannot read stored offset; starting from the beginning.");
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        error!(topic, partition, error = %e, "Cannot set start offset.");
                    }
                    info!(topic, partition, ?offset, "Partition assigned.");
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!(error = %e, "Assign failed.");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "Partitions revoked.");
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "Unassign failed.");
                }
            }
            other => error!(error = ?other, "Rebalance error."),
        }
    }
}

/// Metric handles, registered once; updated once per batch.
struct Meters {
    /// Per input (purchases, app, erasure) × result.
    ingested: [[Counter; 5]; 3],
    dlq: [Counter; 3],
    outcomes: [Counter; telemetry::OUTCOMES.len()],
    offers: [Counter; 3],
    latency: Histogram,
    commit: Histogram,
}

const RESULTS: [&str; 5] = ["applied", "duplicate", "anonymous", "rekeyed", "dlq"];

impl Meters {
    fn new(cfg: &KafkaConfig) -> Self {
        let topics = [cfg.topics.purchases.name.clone(), cfg.topics.app.name.clone(), cfg.topics.erasure.name.clone()];
        Self {
            ingested: topics
                .clone()
                .map(|t| RESULTS.map(|r| counter!(telemetry::EVENTS_INGESTED, "topic" => t.clone(), "result" => r))),
            dlq: topics.map(|t| counter!(telemetry::DLQ, "topic" => t)),
            outcomes: telemetry::OUTCOMES
                .map(|o| counter!(telemetry::DECISIONS, "outcome" => telemetry::outcome_label(o))),
            offers: ["unspecified", "push", "stories"].map(|c| counter!(telemetry::OFFERS, "channel" => c)),
            latency: histogram!(telemetry::EVENT_PROCESSING),
            commit: histogram!(telemetry::BATCH_COMMIT),
        }
    }
}

/// Counts of one batch, flushed to the meters after commit.
#[derive(Default)]
struct Tally {
    ingested: [[u64; 5]; 3],
    outcomes: [u64; telemetry::OUTCOMES.len()],
    offers: [u64; 3],
    /// Timers fired, by kind (delayed, inactivity, cascade, deferred).
    timers: [u64; 4],
    erasures: u64,
}

const TIMER_KINDS: [TimerKind; 4] =
    [TimerKind::Delayed, TimerKind::Inactivity, TimerKind::Cascade, TimerKind::Deferred];

/// The ingest loop; see the module docs.
pub struct Ingest {
    consumer: BaseConsumer<IngestContext>,
    store: Store,
    engine: Engine,
    catalog: SharedCatalog,
    catalog_generation: u64,
    config: KafkaConfig,
    wake: Arc<tokio::sync::Notify>,
    meters: Meters,
    /// Latest event time per partition (the clock in event-time mode).
    watermarks: HashMap<u32, i64>,
    /// Sweep pacing: unspent budget and when it was last topped up.
    sweep_budget: HashMap<(String, u32), (f64, Instant)>,
    last_sweep_log: Instant,
    last_report: Instant,
    /// The attribution totals of this instance's store, for the gauges:
    /// read once, then kept current from what each commit writes.
    stats: Option<HashMap<(u32, StatsKey), Stats>>,
}

/// How often due timers and sweeps are looked at: often enough that a timer
/// fires within a fraction of a second, rarely enough that the scans (one
/// RocksDB iterator per owned partition) stay off the hot path.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(200);
/// Customers per second an inactivity backfill visits (it only sets timers).
const BACKFILL_RATE: u32 = 20_000;
/// How often the per-campaign gauges are recomputed from the aggregates.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What a profile scan does with each customer.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// Decide a sweep offer.
    Sweep,
    /// Set an inactivity offer's timer.
    InactivityBackfill,
}

impl Scan {
    fn name(self) -> &'static str {
        match self {
            Scan::Sweep => "sweep",
            Scan::InactivityBackfill => "inactivity_backfill",
        }
    }
}

/// Timers fired per partition per maintenance pass; the rest wait for the next pass.
const TIMERS_PER_PASS: usize = 2_000;
/// Customers a sweep decides per pass at most, whatever its rate: with a
/// pass every 200 ms, sweeps top out at 25,000 customers/s per instance, and
/// a pass pauses ingestion for at most ~100 ms.
const SWEEP_PAGE: usize = 5_000;

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("group", &self.config.group_id).finish()
    }
}

impl Ingest {
    /// Creates the consumer. `wake` is notified after every commit that
    /// added outbox entries.
    pub fn new(
        config: &KafkaConfig,
        store: Store,
        engine: Engine,
        catalog: SharedCatalog,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Self, IngestError> {
        let mut cc = client_config(config, &std::collections::BTreeMap::new());
        cc.set("group.id", &config.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "65536")
            .set("partition.assignment.strategy", "range,roundrobin");
        for (k, v) in &config.consumer {
            cc.set(k, v);
        }
        let ctx = IngestContext { store: store.clone(), start_from: config.start_from };
        let consumer =
            cc.create_with_context(ctx).map_err(|source| ClientError::Create { role: "consumer", source })?;
        let (catalog_generation, current) = catalog.get();
        let mut engine = engine;
        engine.set_catalog(current);
        Ok(Self {
            consumer,
            store,
            engine,
            catalog,
            catalog_generation,
            meters: Meters::new(config),
            config: config.clone(),
            wake,
            watermarks: HashMap::new(),
            sweep_budget: HashMap::new(),
            last_sweep_log: Instant::now(),
            last_report: Instant::now(),
            stats: None,
        })
    }

    fn wall_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    /// The clock of `partition`: wall time, or its latest event time.
    fn now_for(&self, partition: u32) -> Option<i64> {
        match self.config.clock {
            Clock::Wall => Some(Self::wall_ms()),
            Clock::EventTime => self.watermarks.get(&partition).copied(),
        }
    }

    fn refresh(shared: &SharedCatalog, engine: &mut Engine, seen_generation: &mut u64) {
        let (generation, catalog) = shared.get();
        if generation != *seen_generation {
            debug!(generation, offers = catalog.all().len(), "Catalog reloaded.");
            engine.set_catalog(catalog);
            *seen_generation = generation;
        }
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

    /// Fires due timers and advances sweeps; see the module docs.
    fn maintain(&mut self) -> Result<(), IngestError> {
        Self::refresh(&self.catalog, &mut self.engine, &mut self.catalog_generation);
        if self.last_report.elapsed() >= REPORT_INTERVAL {
            if self.stats.is_none() {
                self.stats = Some(self.store.stats()?.into_iter().map(|(p, k, s)| ((p, k), s)).collect());
            }
            let stats = self.stats.iter().flatten().map(|((_, k), s)| (k, s));
            telemetry::export_report(&cvm_report::Report::from_stats(stats));
            self.last_report = Instant::now();
        }
        let partitions = self.owned_partitions();
        let store = self.store.clone();
        let mut batch = store.begin();
        let mut tally = Tally::default();
        let mut changed = false;
        for &p in &partitions {
            let Some(now) = self.now_for(p) else { continue };
            changed |= Self::fire_page(&self.engine, &self.config, &mut batch, p, now, &mut tally)? > 0;
        }
        changed |= self.advance_sweeps(&mut batch, &partitions, &mut tally)?;
        if !changed {
            return Ok(());
        }
        let totals = Self::publish_stats(&self.config, &mut batch)?;
        let committed = batch.commit()?;
        self.remember_stats(totals);
        if committed.outbox > 0 {
            self.wake.notify_one();
        }
        self.flush_tally(&tally);
        Ok(())
    }

    /// Advances the profile scans: sweeps (decide each customer) and
    /// inactivity backfills (set each customer's timer for an inactivity
    /// offer published after they lapsed). Each runs within its rate, and its
    /// position per partition is committed with what it did.
    fn advance_sweeps(
        &mut self,
        batch: &mut Batch<'_>,
        partitions: &[u32],
        tally: &mut Tally,
    ) -> Result<bool, IngestError> {
        let now = partitions.iter().filter_map(|p| self.now_for(*p)).max().unwrap_or_else(Self::wall_ms);
        let catalog = self.engine.catalog().clone();
        let sweeps = catalog.sweeps().iter().filter(|d| d.sweep_due(now)).map(|d| {
            let rate = match d.doc.trigger {
                Trigger::Sweep { rate_per_second, .. } => rate_per_second,
                _ => 0,
            };
            // Progress per version: publishing a new version sweeps again.
            (d, Scan::Sweep, rate, d.version())
        });
        // Progress under version 0: once per offer, whatever its edits.
        let backfills = catalog.inactivity().iter().map(|d| (d, Scan::InactivityBackfill, BACKFILL_RATE, 0));
        let mut changed = false;
        for (def, scan, rate_per_second, version) in sweeps.chain(backfills) {
            let key = (def.id().to_owned(), version);
            let (tokens, last) = self.sweep_budget.entry(key.clone()).or_insert((0.0, Instant::now()));
            let rate = f64::from(rate_per_second);
            *tokens = (*tokens + rate * last.elapsed().as_secs_f64()).min(rate.max(1.0));
            *last = Instant::now();
            let mut budget = (*tokens as usize).min(SWEEP_PAGE);
            let (mut scanned, mut done) = (0usize, 0usize);
            for &p in partitions {
                let after = match self.store.sweep_progress(def.id(), version, p)? {
                    Some(SweepProgress::Done) => {
                        done += 1;
                        continue;
                    }
                    Some(SweepProgress::After(c)) => c,
                    None => String::new(),
                };
                if budget == 0 {
                    continue;
                }
                let customers = self.store.customers_after(p, &after, budget)?;
                for c in &customers {
                    match scan {
                        Scan::Sweep => {
                            let emits = self.engine.sweep(batch, p, c, def, now)?;
                            Self::publish_emits(&self.config, batch, &emits, tally);
                        }
                        Scan::InactivityBackfill => {
                            self.engine.schedule_inactivity(batch, p, c, def)?;
                        }
                    }
                }
                let progress = if customers.len() < budget {
                    done += 1;
                    info!(offer = def.id(), scan = scan.name(), partition = p, "Scan finished a partition.");
                    SweepProgress::Done
                } else {
                    SweepProgress::After(customers.last().cloned().unwrap_or(after))
                };
                batch.set_sweep_progress(def.id(), version, p, progress);
                budget -= customers.len();
                scanned += customers.len();
                changed = true;
            }
            if let Some((tokens, _)) = self.sweep_budget.get_mut(&key) {
                *tokens -= scanned as f64;
            }
            let labels = [("offer", def.id().to_owned()), ("scan", scan.name().to_owned())];
            if scanned > 0 {
                counter!(telemetry::SWEEP_CUSTOMERS, &labels).increment(scanned as u64);
            }
            gauge!(telemetry::SWEEP_PARTITIONS_DONE, &labels).set(done as f64);
            if scanned > 0 && self.last_sweep_log.elapsed() >= Duration::from_secs(10) {
                info!(
                    offer = def.id(),
                    scan = scan.name(),
                    partitions_done = done,
                    partitions = partitions.len(),
                    "Scan progress."
                );
                self.last_sweep_log = Instant::now();
            }
        }
        Ok(changed)
    }

    /// In event time, fires the timers of `partition` due at or before the
    /// event about to be applied, so a replay interleaves timers and events
    /// exactly as they happened, however fast it reads.
    fn fire_due_before(
        engine: &Engine,
        config: &KafkaConfig,
        batch: &mut Batch<'_>,
        partition: u32,
        now: i64,
        next_due: &mut HashMap<u32, Option<i64>>,
        tally: &mut Tally,
    ) -> Result<(), IngestError> {
        let hint = match next_due.get(&partition) {
            Some(h) => *h,
            None => *next_due.entry(partition).or_insert(batch.earliest_due(partition)?),
        };
        if hint.is_none_or(|due| due > now) {
            return Ok(());
        }
        // Timers set while firing (cascades) may be due already: look again.
        while Self::fire_page(engine, config, batch, partition, now, tally)? > 0 {}
        batch.take_earliest_set(partition);
        next_due.insert(partition, batch.earliest_due(partition)?);
        Ok(())
    }

    /// Fires up to [`TIMERS_PER_PASS`] timers of `partition` due by `now`,
    /// earliest first; returns how many. In event time each fires at its
    /// own due time, as in the original run; on the wall clock, now.
    fn fire_page(
        engine: &Engine,
        config: &KafkaConfig,
        batch: &mut Batch<'_>,
        partition: u32,
        now: i64,
        tally: &mut Tally,
    ) -> Result<usize, IngestError> {
        let due = batch.due_timers(partition, now, TIMERS_PER_PASS)?;
        for timer in &due {
            let at = if config.clock == Clock::EventTime { timer.due_ms } else { now };
            let emits = engine.fire(batch, partition, timer, at)?;
            tally.timers[timer.kind as usize] += 1;
            Self::publish_emits(config, batch, &emits, tally);
        }
        Ok(due.len())
    }

    fn publish_emits(config: &KafkaConfig, batch: &mut Batch<'_>, emits: &[Emit], tally: &mut Tally) {
        for emit in emits {
            match emit {
                Emit::Decision(d) => tally.outcomes[d.outcome as usize % telemetry::OUTCOMES.len()] += 1,
                Emit::Offer(o) => tally.offers[o.channel as usize % 3] += 1,
                Emit::Rekeyed(_) => {}
                Emit::Erased(_) => tally.erasures += 1,
            }
            batch.publish(outbox_entry(&config.topics, emit));
        }
    }

    /// Runs until `stop` is set; the batch in progress is committed first.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), IngestError> {
        let t = &self.config.topics;
        let topics = [t.purchases.name.as_str(), t.app.name.as_str(), t.erasure.name.as_str()];
        self.consumer.subscribe(&topics).map_err(|source| IngestError::Subscribe {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            source,
        })?;
        info!(group = %self.config.group_id, ?topics, "Ingest started.");
        let mut last_maintenance = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.run_batch()?;
            if last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                self.maintain()?;
                last_maintenance = Instant::now();
            }
        }
        info!("Ingest stopped.");
        Ok(())
    }

    fn run_batch(&mut self) -> Result<(), IngestError> {
        let store = self.store.clone();
        let mut batch = store.begin();
        let mut tally = Tally::default();
        let mut last_offsets: Vec<(String, i32, i64)> = Vec::new();
        let mut n = 0usize;
        let mut deadline = None::<Instant>;
        // Per partition, no pending timer is due before this (event-time
        // mode); learned lazily, kept exact within the batch.
        let mut next_due: HashMap<u32, Option<i64>> = HashMap::new();
        while n < self.config.batch_max_events {
            let timeout = match deadline {
                None => Duration::from_millis(100),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "Consumer error; retrying.");
                    break;
                }
                Some(Ok(msg)) => {
                    if deadline.is_none() {
                        // Swap in a reloaded catalog when a batch starts, so an event
                        // produced after an offer update is decided with it.
                        Self::refresh(&self.catalog, &mut self.engine, &mut self.catalog_generation);
                        deadline = Some(Instant::now() + self.config.batch_max_wait);
                    }
                    if let Some(t) = Self::handle(
                        &self.engine,
                        &self.config,
                        &self.meters,
                        &mut batch,
                        &msg,
                        &mut tally,
                        &mut next_due,
                    )? {
                        let w = self.watermarks.entry(msg.partition() as u32).or_insert(t);
                        *w = (*w).max(t);
                    }
                    match last_offsets.iter_mut().find(|(t, p, _)| t == msg.topic() && *p == msg.partition()) {
                        Some(entry) => entry.2 = msg.offset(),
                        None => last_offsets.push((msg.topic().to_owned(), msg.partition(), msg.offset())),
                    }
                    n += 1;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        if n == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let totals = Self::publish_stats(&self.config, &mut batch)?;
        let committed = batch.commit()?;
        self.remember_stats(totals);
        self.meters.commit.record(started.elapsed().as_secs_f64());
        for (topic, partition, offset) in &last_offsets {
            // Progress for lag monitoring only; the stored state is the truth.
            let _ = self.consumer.store_offset(topic, *partition, offset + 1);
        }
        if committed.outbox > 0 {
            self.wake.notify_one();
        }
        self.flush_tally(&tally);
        Ok(())
    }

    fn handle(
        engine: &Engine,
        config: &KafkaConfig,
        meters: &Meters,
        batch: &mut Batch<'_>,
        msg: &BorrowedMessage<'_>,
        tally: &mut Tally,
        next_due: &mut HashMap<u32, Option<i64>>,
    ) -> Result<Option<i64>, IngestError> {
        let topics = &config.topics;
        let (input, idx) = Input::of(topics, msg.topic());
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
                tally.ingested[idx][4] += 1;
                return Ok(None);
            }
        };
        let now = match config.clock {
            Clock::EventTime => event.timestamp_ms(),
            Clock::Wall => Self::wall_ms(),
        };
        let partition = msg.partition() as u32;
        if config.clock == Clock::EventTime {
            Self::fire_due_before(engine, config, batch, partition, now, next_due, tally)?;
        }
        let processed = engine.process(batch, partition, &event, now)?;
        if let Some(set) = batch.take_earliest_set(partition) {
            if let Some(hint) = next_due.get_mut(&partition) {
                *hint = Some(hint.map_or(set, |h| h.min(set)));
            }
        }
        let result = match processed.result {
            EventResult::Applied => 0,
            EventResult::Duplicate => 1,
            EventResult::Anonymous => 2,
            EventResult::Rekeyed => 3,
            EventResult::Invalid(reason) => {
                warn!(
                    topic = msg.topic(),
                    offset = msg.offset(),
                    reason,
                    "Invalid event sent to the dead-letter topic."
                );
                batch.publish(dead(reason));
                4
            }
        };
        tally.ingested[idx][result] += 1;
        Self::publish_emits(config, batch, &processed.emits, tally);
        meters.latency.record(started.elapsed().as_secs_f64());
        Ok(Some(event.timestamp_ms()))
    }

    /// Queues the attribution sums the batch changed, as totals, on the
    /// stats topic: published in the same commit that changes them.
    /// Returns the totals, to [`remember`](Self::remember_stats) once committed.
    fn publish_stats(config: &KafkaConfig, batch: &mut Batch<'_>) -> Result<Vec<(u32, StatsKey, Stats)>, IngestError> {
        let totals = batch.stats_totals()?;
        for (partition, key, total) in &totals {
            batch.publish(stats_entry(&config.topics, *partition, key, total));
        }
        Ok(totals)
    }

    /// Keeps the gauges' copy of the totals current after a commit.
    fn remember_stats(&mut self, totals: Vec<(u32, StatsKey, Stats)>) {
        if let Some(stats) = &mut self.stats {
            stats.extend(totals.into_iter().map(|(p, k, s)| ((p, k), s)));
        }
    }

    fn flush_tally(&self, t: &Tally) {
        for (i, per_topic) in t.ingested.iter().enumerate() {
            for (r, n) in per_topic.iter().enumerate() {
                if *n > 0 {
                    self.meters.ingested[i][r].increment(*n);
                }
            }
            if per_topic[4] > 0 {
                self.meters.dlq[i].increment(per_topic[4]);
            }
        }
        for (i, n) in t.outcomes.iter().enumerate() {
            self.meters.outcomes[i].increment(*n);
        }
        for (i, n) in t.offers.iter().enumerate() {
            self.meters.offers[i].increment(*n);
        }
        for (kind, n) in TIMER_KINDS.iter().zip(t.timers) {
            if n > 0 {
                counter!(telemetry::TIMERS_FIRED, "kind" => kind.name()).increment(n);
            }
        }
        if t.erasures > 0 {
            counter!(telemetry::ERASURES).increment(t.erasures);
        }
    }
}
