//! The testable part of the ingest loop: a batch of input messages through
//! the driver into one RocksDB write (dead letters for what cannot be
//! applied), and the commit that publishes stats totals with the state.
//!
//! **A poison message costs one message.** Decoding and validation refuse
//! bad input with a reason; if applying an event fails anyway — a bug that
//! panics — the batch so far is thrown away (a panic may leave it half
//! written), rebuilt from the messages before the failing one, and the
//! failing one goes to the dead-letter topic with reason
//! `processing_failed`. Its offset is committed with the rest, so a restart
//! does not meet it again. A timer whose firing panics (between batches, or
//! before an event in event time) is cancelled instead. A failing state
//! store is not a message's fault: it stops the batch (nothing is
//! committed) and the loop.

use std::{
    collections::HashSet,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::Instant,
};

use cvm_engine::{
    catalog::LiveCatalog, telemetry, Driver, EventResult, Outbound, Output, Reason, Rejection, Source, StateTxn,
};
use cvm_store::{Batch, Store};
use metrics::counter;
use rdkafka::message::{BorrowedMessage, Message};
use tracing::{debug, error, warn};

use super::{CommittedStats, IngestError};
use crate::{
    codec::{dead_letter, decode_event, outbox_entry, stats_entry, Input},
    meters::{BatchCounts, Ingested, Meters},
    wall_ms, KafkaConfig,
};

/// An input message as the applier needs it, owned: a batch is kept until
/// it commits, so that it can be rebuilt without a message that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InputMessage {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Option<Vec<u8>>,
}

impl InputMessage {
    pub(super) fn of(msg: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
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
    /// Test-only fault injection: applying a message this returns true for panics.
    #[cfg(test)]
    pub(super) fault: Option<fn(&InputMessage) -> bool>,
}

/// Why applying one message failed.
enum Failure {
    /// A panic while applying it (its message).
    Panicked(String),
    /// The store failed: not the message's fault; the batch stops.
    Store(IngestError),
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
    /// commits if that did anything. A timer whose firing panics is
    /// cancelled (and counted) instead, and the next pass goes on.
    pub(super) fn maintain(&mut self, partitions: &[u32]) -> Result<(), IngestError> {
        self.refresh_catalog();
        let store = self.store.clone();
        let mut batch = store.begin();
        self.driver.begin();
        let (wall, mut out, mut counts) = (wall_ms(), Output::default(), BatchCounts::default());
        let pass = catch_unwind(AssertUnwindSafe(|| -> Result<bool, IngestError> {
            let mut changed = self.driver.tick(&mut batch, partitions, wall, &mut out)?;
            let scans = self.driver.advance_scans(&mut batch, partitions, wall, &mut out)?;
            changed |= scans.iter().any(|s| s.changed);
            counts.scans(scans);
            Ok(changed)
        }));
        let changed = match pass {
            Ok(changed) => changed?,
            Err(panic) => {
                drop(batch);
                return self.cancel_failed_timer(&panic_text(&*panic));
            }
        };
        if !changed {
            (self.on_commit)(&[]);
            return Ok(());
        }
        self.queue(&mut batch, &out, &mut counts);
        self.commit(batch, &counts)
    }

    /// After a panic outside any message: cancels the timer that was firing
    /// in a write of its own (if it was a timer; a scan that panics is
    /// tried again on the next pass).
    fn cancel_failed_timer(&mut self, panic: &str) -> Result<(), IngestError> {
        let Some((partition, key)) = self.driver.take_failed_timer() else {
            error!(%panic, "A profile scan failed; it is tried again on the next pass.");
            return Ok(());
        };
        error!(%panic, partition, kind = key.kind.name(), "A timer failed to fire; it is cancelled.");
        let store = self.store.clone();
        let mut batch = store.begin();
        batch.cancel_timer(partition, &key)?;
        batch.commit()?;
        counter!(telemetry::TIMERS_FAILED).increment(1);
        Ok(())
    }

    /// Applies `messages` in one write and commits it; see the module docs
    /// for what happens when one of them fails.
    pub(super) fn apply_batch(&mut self, messages: &[InputMessage]) -> Result<(), IngestError> {
        // Swap in a reloaded catalog when a batch starts, so an event
        // produced after an offer update is decided with it.
        self.refresh_catalog();
        let store = self.store.clone();
        let mut failed: HashSet<usize> = HashSet::new();
        let mut failed_timers = Vec::new();
        'rebuild: loop {
            let mut batch = store.begin();
            self.driver.begin();
            let mut counts = BatchCounts::default();
            for (partition, key) in &failed_timers {
                batch.cancel_timer(*partition, key)?;
            }
            for (i, msg) in messages.iter().enumerate() {
                if failed.contains(&i) {
                    let detail = "applying the event failed (a bug; the engine logged the panic at this offset)";
                    self.dead_letter(&mut batch, msg, &Rejection::new(Reason::ProcessingFailed, detail), &mut counts);
                    continue;
                }
                match self.handle(&mut batch, msg, &mut counts) {
                    Ok(()) => {}
                    Err(Failure::Store(e)) => return Err(e),
                    Err(Failure::Panicked(panic)) => {
                        // A timer the event let fire may be what failed, not the event.
                        if let Some((partition, key)) = self.driver.take_failed_timer() {
                            error!(%panic, partition, kind = key.kind.name(),
                                "A timer failed to fire; it is cancelled and the batch is rebuilt without it.");
                            counter!(telemetry::TIMERS_FAILED).increment(1);
                            failed_timers.push((partition, key));
                        } else {
                            error!(topic = %msg.topic, partition = msg.partition, offset = msg.offset, %panic,
                                "Applying an event failed; it goes to the dead-letter topic and the batch is rebuilt without it.");
                            failed.insert(i);
                        }
                        continue 'rebuild;
                    }
                }
            }
            // The clocks of the partitions read, committed with their state.
            let partitions: std::collections::BTreeSet<u32> = messages.iter().map(|m| m.partition as u32).collect();
            for partition in partitions {
                if let Some(clock) = self.driver.clock_state(partition) {
                    batch.set_clock(partition, clock);
                }
            }
            return self.commit(batch, &counts);
        }
    }

    /// Decodes one message and hands it to the driver; dead-letters what
    /// cannot be decoded or is refused by validation.
    fn handle(&mut self, batch: &mut Batch<'_>, msg: &InputMessage, counts: &mut BatchCounts) -> Result<(), Failure> {
        let started = Instant::now();
        let applied = catch_unwind(AssertUnwindSafe(|| self.apply_one(batch, msg, counts)));
        match applied {
            Ok(Ok(())) => {
                self.meters.latency.record(started.elapsed().as_secs_f64());
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Store(e)),
            Err(panic) => Err(Failure::Panicked(panic_text(&*panic))),
        }
    }

    fn apply_one(
        &mut self,
        batch: &mut Batch<'_>,
        msg: &InputMessage,
        counts: &mut BatchCounts,
    ) -> Result<(), IngestError> {
        #[cfg(test)]
        if self.fault.is_some_and(|fault| fault(msg)) {
            panic!("injected fault at offset {}", msg.offset);
        }
        let (input, index) = Input::of(&self.config.topics, &msg.topic);
        batch.set_next_offset(&msg.topic, msg.partition, msg.offset + 1);
        let event = match decode_event(&self.config.topics, input, msg.payload.as_deref()) {
            Ok(e) => e,
            Err(detail) => {
                self.dead_letter(batch, msg, &Rejection::new(Reason::Undecodable, detail), counts);
                return Ok(());
            }
        };
        let source = match input {
            Input::Purchases => Source::Input(0),
            Input::App => Source::Input(1),
            Input::Erasure | Input::DeviceLinks => Source::Side,
        };
        let mut out = Output::default();
        let result = self.driver.apply(batch, msg.partition as u32, source, &event, wall_ms(), &mut out)?;
        if let EventResult::Invalid(rejection) = &result {
            self.dead_letter(batch, msg, rejection, counts);
            return Ok(());
        }
        counts.ingested(index, Ingested::of(&result));
        if let Some(customer) = erased_customer(&out) {
            self.drop_pending_contacts(batch, &customer, &mut out)?;
        }
        self.queue(batch, &out, counts);
        Ok(())
    }

    /// Drops what would still contact an erased customer: decisions and
    /// offers waiting in the outbox, and those timers produced in this very
    /// call (they fired before the erasure request in event time).
    fn drop_pending_contacts(
        &self,
        batch: &mut Batch<'_>,
        customer: &str,
        out: &mut Output,
    ) -> Result<(), IngestError> {
        let t = &self.config.topics;
        let topics = [t.push.name.as_str(), t.stories.name.as_str(), t.decisions.name.as_str()];
        let dropped = batch.drop_outbox(customer.as_bytes(), &topics)?;
        out.retain(|e| match e {
            Outbound::Decision(d) => d.customer_id != customer,
            Outbound::Offer(o) => o.customer_id != customer,
            Outbound::Rekeyed(_) | Outbound::Erased(_) | Outbound::DeviceLink(_) => true,
        });
        if dropped > 0 {
            debug!(dropped, "Unpublished contacts of an erased customer dropped.");
        }
        Ok(())
    }

    /// Sends `msg` to the dead-letter topic, unchanged, with `rejection` in
    /// its headers; counts it by reason.
    fn dead_letter(&self, batch: &mut Batch<'_>, msg: &InputMessage, rejection: &Rejection, counts: &mut BatchCounts) {
        let topics = &self.config.topics;
        warn!(topic = %msg.topic, partition = msg.partition, offset = msg.offset, reason = rejection.reason.code(),
            detail = %rejection.detail, "Event sent to the dead-letter topic.");
        batch.set_next_offset(&msg.topic, msg.partition, msg.offset + 1);
        batch.publish(
            msg.partition as u32,
            dead_letter(
                topics,
                &msg.topic,
                msg.partition,
                msg.offset,
                msg.key.as_deref(),
                msg.payload.as_deref(),
                rejection,
            ),
        );
        let (_, index) = Input::of(topics, &msg.topic);
        counts.dead_lettered(index, rejection.reason);
    }

    /// Queues what the driver produced in the outbox.
    fn queue(&self, batch: &mut Batch<'_>, out: &Output, counts: &mut BatchCounts) {
        counts.output(out);
        for (partition, emit) in out.by_partition() {
            batch.publish(partition, outbox_entry(&self.config.topics, emit));
        }
    }

    /// Publishes the attribution totals the batch changed on the stats topic
    /// in the same write, commits, and flushes the counts.
    pub(super) fn commit(&mut self, mut batch: Batch<'_>, counts: &BatchCounts) -> Result<(), IngestError> {
        let started = Instant::now();
        let totals = batch.stats_totals()?;
        for (partition, key, total) in &totals {
            batch.publish(*partition, stats_entry(&self.config.topics, *partition, key, total));
        }
        let committed = batch.commit()?;
        self.meters.commit.record(started.elapsed().as_secs_f64());
        (self.on_commit)(&totals);
        if committed.outbox + committed.changelog > 0 {
            self.wake.notify_one();
        }
        self.meters.flush(counts);
        Ok(())
    }
}

/// The message of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The customer an erasure in `out` confirms, if any.
fn erased_customer(out: &Output) -> Option<String> {
    out.emits.iter().find_map(|e| match e {
        Outbound::Erased(c) => Some(c.customer_id.clone()),
        _ => None,
    })
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
    use cvm_store::{OutboxEntry, StoreConfig};
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
        let store_config = StoreConfig {
            path: dir.join("state"),
            block_cache_mb: 8,
            memtable_budget_mb: 4,
            write_buffer_mb: 4,
            ..Default::default()
        };
        let mut engine_config =
            EngineConfig { global_control_percent: 0.0, default_holdout_percent: 0.0, ..Default::default() };
        engine_config.contact_policy.quiet_hours = QuietHours { from: TimeOfDay::new(0, 0), to: TimeOfDay::new(0, 0) };
        let def = OfferDefinition::parse("cart", CART_OFFER.as_bytes()).unwrap();
        let driver = Driver::new(
            Engine::new(engine_config, Catalog::new([def])),
            DriverConfig {
                clock: Clock::Wall,
                inputs: 2,
                idle_timeout_ms: 0,
                pacing: ScanPacing::Rate,
                timers_per_batch: usize::MAX,
                real_wall_clock: true,
            },
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
            fault: None,
        }
    }

    fn message(topic: &str, offset: i64, payload: &[u8]) -> InputMessage {
        InputMessage {
            topic: topic.to_owned(),
            partition: 1,
            offset,
            key: Some(b"c1".to_vec()),
            payload: Some(payload.to_vec()),
        }
    }

    fn outbox_topics(store: &Store) -> Vec<String> {
        store.outbox_peek(0, 100).unwrap().into_iter().map(|(_, e)| e.topic).collect()
    }

    fn header(entry: &OutboxEntry, name: &str) -> String {
        let (_, v) = entry.headers.iter().find(|(k, _)| k == name).unwrap();
        String::from_utf8(v.clone()).unwrap()
    }

    #[test]
    fn undecodable_and_invalid_messages_are_dead_lettered_with_their_reason_and_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = applier(dir.path(), Arc::default());
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let (topic, no_lines) = input_message(
            &topics,
            &Event::Purchase(Purchase {
                event_id: "p1".into(),
                customer_id: "c1".into(),
                timestamp_ms: wall_ms(),
                ..Default::default()
            }),
        );
        a.apply_batch(&[message(&topics.purchases.name, 7, b"\xff garbage"), message(topic, 8, &no_lines)]).unwrap();

        let dead = store.outbox_peek(0, 10).unwrap();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(dead.iter().all(|(_, e)| e.topic == topics.dlq));
        assert_eq!(header(&dead[0].1, "cvm.error.code"), "undecodable");
        assert!(header(&dead[0].1, "cvm.error").contains("Purchase"));
        assert_eq!(header(&dead[0].1, "cvm.source.offset"), "7");
        assert_eq!(header(&dead[1].1, "cvm.error.code"), "line_count");
        assert_eq!(dead[1].1.payload, no_lines, "the message goes to the DLQ unchanged");
        assert_eq!(store.next_offset(&topics.purchases.name, 1).unwrap(), Some(9), "both are consumed");
    }

    #[test]
    fn a_message_that_panics_is_dead_lettered_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = applier(dir.path(), Arc::default());
        a.fault = Some(|m| m.offset == 1);
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let events =
            [consent_at("c1", wall_ms()), add_to_cart("a1", "c1", wall_ms()), add_to_cart("a2", "c1", wall_ms())];
        let messages: Vec<InputMessage> = events
            .iter()
            .enumerate()
            .map(|(offset, e)| {
                let (topic, payload) = input_message(&topics, e);
                message(topic, offset as i64, &payload)
            })
            .collect();
        a.apply_batch(&messages).unwrap();

        let out = store.outbox_peek(0, 100).unwrap();
        let dead: Vec<_> = out.iter().filter(|(_, e)| e.topic == topics.dlq).collect();
        assert_eq!(dead.len(), 1, "only the failing message: {out:?}");
        assert_eq!(header(&dead[0].1, "cvm.error.code"), "processing_failed");
        assert_eq!(header(&dead[0].1, "cvm.source.offset"), "1");
        assert_eq!(dead[0].1.payload, messages[1].payload.clone().unwrap());
        let pushes = out.iter().filter(|(_, e)| e.topic == topics.push.name).count();
        assert_eq!(pushes, 1, "the cart after the failing one is decided, once (the batch was rebuilt, not doubled)");
        assert_eq!(store.next_offset(&topics.app.name, 1).unwrap(), Some(3), "all three are consumed");
        assert!(store.profile(1, "c1").unwrap().is_some(), "the consent before it is kept");
    }

    #[test]
    fn an_erasure_drops_the_customers_unpublished_offers_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = applier(dir.path(), Arc::default());
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let now = wall_ms();
        let to_messages = |events: &[Event], first: i64| -> Vec<InputMessage> {
            events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let (topic, payload) = input_message(&topics, e);
                    message(topic, first + i as i64, &payload)
                })
                .collect()
        };
        let carts =
            [consent_at("c1", now), add_to_cart("a1", "c1", now), consent_at("c2", now), add_to_cart("a2", "c2", now)];
        a.apply_batch(&to_messages(&carts, 0)).unwrap();
        let keyed = |key: &str, topic: &str| {
            store
                .outbox_peek(0, 100)
                .unwrap()
                .iter()
                .filter(|(_, e)| e.key == key.as_bytes() && e.topic == topic)
                .count()
        };
        assert_eq!((keyed("c1", &topics.push.name), keyed("c2", &topics.push.name)), (1, 1));

        let erase = Event::Erase(cvm_proto::v1::EraseRequest {
            request_id: "r".into(),
            customer_id: "c1".into(),
            timestamp_ms: now,
        });
        a.apply_batch(&to_messages(&[erase], 4)).unwrap();
        assert_eq!(
            keyed("c1", &topics.push.name) + keyed("c1", &topics.decisions.name),
            0,
            "c1's pending contacts are gone"
        );
        assert_eq!(keyed("c2", &topics.push.name), 1, "another customer's offer stays");
        assert_eq!(keyed("c1", &topics.erasure_confirmations.name), 1, "the erasure is confirmed");
    }

    #[test]
    fn an_applied_event_queues_its_decision_offer_and_stats_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut a = applier(dir.path(), committed.clone());
        let topics = a.config.topics.clone();
        let store = a.store.clone();
        let messages: Vec<InputMessage> = [(0, consent_at("c1", wall_ms())), (1, add_to_cart("a1", "c1", wall_ms()))]
            .iter()
            .map(|(offset, event)| {
                let (topic, payload) = input_message(&topics, event);
                message(topic, *offset, &payload)
            })
            .collect();
        a.apply_batch(&messages).unwrap();

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
