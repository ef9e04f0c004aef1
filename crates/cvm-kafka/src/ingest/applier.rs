//! The testable part of the ingest loop: one decoded-or-not input message
//! into a batch through the driver (dead letters for what cannot be
//! applied), and the commit that publishes stats totals with the state.

use std::{sync::Arc, time::Instant};

use cvm_engine::{catalog::LiveCatalog, Driver, EventResult, Output, Source};
use cvm_store::{Batch, Store};
use rdkafka::message::{BorrowedMessage, Message};
use tracing::{debug, warn};

use super::{CommittedStats, IngestError};
use crate::{
    codec::{dead_letter, decode_event, outbox_entry, stats_entry, Input},
    meters::{BatchCounts, Ingested, Meters},
    wall_ms, KafkaConfig,
};

/// An input message as the applier needs it (a Kafka message, or a test's).
#[derive(Debug, Clone, Copy)]
pub(super) struct InputMessage<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: Option<&'a [u8]>,
}

impl<'a> InputMessage<'a> {
    pub(super) fn of(msg: &'a BorrowedMessage<'_>) -> Self {
        Self {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key(),
            payload: msg.payload(),
        }
    }
}

/// Everything but the consumer: takes messages into a batch through the
/// driver and commits. (Apart from the consumer, because a polled message
/// borrows it while the applier changes.)
pub(super) struct Applier {
    pub(super) store: Store,
    pub(super) driver: Driver,
    pub(super) catalog: LiveCatalog,
    pub(super) catalog_generation: u64,
    pub(super) config: KafkaConfig,
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) meters: Meters,
    pub(super) on_commit: CommittedStats,
}

impl Applier {
    /// Swaps in a reloaded catalog, if there is one.
    pub(super) fn refresh_catalog(&mut self) {
        let snapshot = self.catalog.snapshot();
        if snapshot.generation != self.catalog_generation {
            debug!(generation = snapshot.generation, offers = snapshot.catalog.all().len(), "Catalog reloaded.");
            self.catalog_generation = snapshot.generation;
            self.driver.set_catalog(snapshot.catalog);
        }
    }

    /// Lets the driver fire due timers and advance sweeps over `partitions`;
    /// commits if that did anything.
    pub(super) fn maintain(&mut self, partitions: &[u32]) -> Result<(), IngestError> {
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
    pub(super) fn handle(
        &mut self,
        batch: &mut Batch<'_>,
        msg: &InputMessage<'_>,
        counts: &mut BatchCounts,
    ) -> Result<(), IngestError> {
        let topics = &self.config.topics;
        let (input, index) = Input::of(topics, msg.topic);
        batch.set_next_offset(msg.topic, msg.partition, msg.offset + 1);
        let started = Instant::now();
        let dead =
            |reason: &str| dead_letter(topics, msg.topic, msg.partition, msg.offset, msg.key, msg.payload, reason);
        let event = match decode_event(topics, input, msg.payload) {
            Ok(e) => e,
            Err(reason) => {
                warn!(topic = msg.topic, partition = msg.partition, offset = msg.offset, %reason, "Undecodable event sent to the dead-letter topic.");
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
        let result = self.driver.apply(batch, msg.partition as u32, source, &event, wall_ms(), &mut out)?;
        if let EventResult::Invalid(reason) = result {
            warn!(topic = msg.topic, offset = msg.offset, reason, "Invalid event sent to the dead-letter topic.");
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
    pub(super) fn commit(&mut self, mut batch: Batch<'_>, counts: &BatchCounts) -> Result<(), IngestError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cvm_engine::{
        driver::{Clock, ScanPacing},
        policy::{QuietHours, TimeOfDay},
        Catalog, DriverConfig, Engine, EngineConfig, Event, OfferDefinition,
    };
    use cvm_proto::v1::Purchase;
    use cvm_store::StoreConfig;
    use cvm_testkit::{add_to_cart, consent_at};

    use super::*;
    use crate::input_message;

    const CART_OFFER: &str = r#"
id: cart
version: 1
campaign_id: cart
trigger: { kind: event, event: add_to_cart }
channels:
  push: { title: "Still hungry?", body: "{{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 500 }
"#;

    /// An applier on the wall clock with one cart offer, no control groups
    /// and no quiet hours; `committed` records the stats totals of each commit.
    fn applier(dir: &std::path::Path, committed: Arc<Mutex<Vec<usize>>>) -> Applier {
        let store_config =
            StoreConfig { path: dir.join("state"), block_cache_mb: 8, write_buffer_mb: 4, ..Default::default() };
        let mut engine_config =
            EngineConfig { global_control_percent: 0.0, default_holdout_percent: 0.0, ..Default::default() };
        engine_config.contact_policy.quiet_hours = QuietHours { from: TimeOfDay::new(0, 0), to: TimeOfDay::new(0, 0) };
        let def = OfferDefinition::parse("cart", CART_OFFER.as_bytes()).unwrap();
        let driver = Driver::new(
            Engine::new(engine_config, Catalog::new([def])),
            DriverConfig { clock: Clock::Wall, inputs: 2, idle_timeout_ms: 0, pacing: ScanPacing::Rate },
        );
        let config = KafkaConfig::default();
        Applier {
            store: Store::open(&store_config).unwrap(),
            driver,
            catalog: LiveCatalog::default(),
            catalog_generation: 0,
            meters: Meters::new(&config),
            config,
            wake: Arc::new(tokio::sync::Notify::new()),
            on_commit: Box::new(move |totals| committed.lock().unwrap().push(totals.len())),
        }
    }

    fn message<'a>(topic: &'a str, offset: i64, payload: &'a [u8]) -> InputMessage<'a> {
        InputMessage { topic, partition: 1, offset, key: Some(b"c1"), payload: Some(payload) }
    }

    fn outbox_topics(store: &Store) -> Vec<String> {
        store.outbox_peek(0, 100).unwrap().into_iter().map(|(_, e)| e.topic).collect()
    }

    #[test]
    fn undecodable_and_invalid_messages_are_dead_lettered_with_their_reason_and_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = applier(dir.path(), Arc::default());
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let mut batch = store.begin();
        let mut counts = BatchCounts::default();
        a.handle(&mut batch, &message(&topics.purchases.name, 7, b"\xff garbage"), &mut counts).unwrap();
        let (topic, no_lines) = input_message(
            &topics,
            &Event::Purchase(Purchase { event_id: "p1".into(), customer_id: "c1".into(), ..Default::default() }),
        );
        a.handle(&mut batch, &message(topic, 8, &no_lines), &mut counts).unwrap();
        assert_eq!(counts.messages(), 2);
        assert!(store.outbox_peek(0, 10).unwrap().is_empty(), "nothing is visible before the commit");
        a.commit(batch, &counts).unwrap();

        let dead = store.outbox_peek(0, 10).unwrap();
        assert_eq!(dead.len(), 2, "{dead:?}");
        let header = |i: usize, name: &str| {
            let (_, v) = dead[i].1.headers.iter().find(|(k, _)| k == name).unwrap();
            String::from_utf8(v.clone()).unwrap()
        };
        assert!(dead.iter().all(|(_, e)| e.topic == topics.dlq));
        assert!(!header(0, "cvm.error").is_empty());
        assert_eq!(header(0, "cvm.source.offset"), "7");
        assert_eq!(header(1, "cvm.error"), "purchase without lines");
        assert_eq!(dead[1].1.payload, no_lines, "the message goes to the DLQ unchanged");
        assert_eq!(store.next_offset(&topics.purchases.name, 1).unwrap(), Some(9), "both are consumed");
    }

    #[test]
    fn an_applied_event_queues_its_decision_offer_and_stats_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut a = applier(dir.path(), committed.clone());
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let mut batch = store.begin();
        let mut counts = BatchCounts::default();
        for (offset, event) in [(0, consent_at("c1", wall_ms())), (1, add_to_cart("a1", "c1", wall_ms()))] {
            let (topic, payload) = input_message(&topics, &event);
            a.handle(&mut batch, &message(topic, offset, &payload), &mut counts).unwrap();
        }
        a.commit(batch, &counts).unwrap();

        let mut out = outbox_topics(&store);
        out.sort();
        out.dedup();
        let mut want = vec![topics.decisions.name.clone(), topics.push.name.clone(), topics.stats.name.clone()];
        want.sort();
        assert_eq!(out, want, "decision, offer and stats totals in the same write");
        assert_eq!(store.next_offset(&topics.app.name, 1).unwrap(), Some(2));
        let committed = committed.lock().unwrap();
        assert_eq!(committed.len(), 1);
        assert!(committed[0] > 0, "the commit hook sees the stats totals written");
    }
}
