//! The ingest consumers and partition ownership.
//!
//! Each worker thread has its own consumer, a member of the ingest group
//! (with static membership when `kafka.instance_id` is set). The group's
//! **range** assignor gives every member the same partition numbers of
//! every input topic — the co-partitioning the state relies on: a
//! customer's purchases, app events and erasures meet in one partition.
//! (The cooperative-sticky assignor balances each topic on its own and
//! would split them.)
//!
//! Gaining a partition: its state is restored from the changelog when
//! another instance wrote it since (see the `restore` module), and only
//! then is it assigned, at the offset stored with that state — so what was
//! committed is never applied twice, and a partition is never processed
//! before its state is there.
//!
//! Losing a partition: the worker is inside `poll`, between batches, so
//! nothing is half applied. Before the partition is released, the outbox —
//! which holds this instance's commits of it, offers and changelog records
//! — is drained (for at most [`REVOKE_DRAIN`]), so the next owner restores
//! everything this one decided. Messages the worker had polled for the
//! batch it was filling are discarded (see [`Ownership::rebalances`]).
//!
//! Pausing (the outbox over its bound, see the ingest loop) is the
//! worker's state, not the partition's: every assignment starts resumed.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use cvm_engine::telemetry;
use cvm_store::Store;
use metrics::{counter, gauge, histogram};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    statistics::Statistics,
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{error, info, warn};

use crate::{
    client_config,
    gate::PublishGate,
    restore::{restore_partition, Restored},
    ClientError, KafkaConfig, StartFrom,
};

/// Longest a revoke waits for the outbox to deliver this instance's commits.
const REVOKE_DRAIN: Duration = Duration::from_secs(10);

/// Longest a revoke waits for a publishing round (a transaction) carrying
/// the revoked partitions' entries to end.
const REVOKE_ROUND: Duration = Duration::from_secs(60);

/// Partitions restored at the same time after a rebalance.
const RESTORES_AT_ONCE: usize = 8;

/// How often each consumer reports its partitions' lag, ms.
const LAG_INTERVAL_MS: &str = "5000";

/// Longest one attempt to read a changelog partition may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// What the whole instance reports about its workers' partitions (for
/// `/readyz` and the gauges): shared by every worker.
#[derive(Debug, Default)]
pub struct IngestStatus {
    paused_workers: AtomicUsize,
    restoring: AtomicUsize,
    owned: AtomicUsize,
}

impl IngestStatus {
    /// Whether some worker has paused its partitions (the outbox is full).
    pub fn paused(&self) -> bool {
        self.paused_workers.load(Ordering::SeqCst) > 0
    }

    /// Partitions this instance owns (assigned, restored or restoring).
    pub fn owned(&self) -> usize {
        self.owned.load(Ordering::SeqCst)
    }

    /// Partitions being restored from the changelog right now.
    pub fn restoring(&self) -> usize {
        self.restoring.load(Ordering::SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        if paused {
            self.paused_workers.fetch_add(1, Ordering::SeqCst);
        } else {
            self.paused_workers.fetch_sub(1, Ordering::SeqCst);
        }
        gauge!(telemetry::INGEST_PAUSED).set(f64::from(u8::from(self.paused())));
    }

    fn owned_delta(&self, gained: usize, lost: usize) {
        let update = |owned: usize| Some((owned + gained).saturating_sub(lost));
        let before = self.owned.fetch_update(Ordering::SeqCst, Ordering::SeqCst, update).unwrap_or_default();
        gauge!(telemetry::PARTITIONS_OWNED).set(((before + gained).saturating_sub(lost)) as f64);
    }
}

/// A worker's ingest consumer (the worker's number names its static member).
pub(crate) fn consumer(
    config: &KafkaConfig,
    ownership: Ownership,
    worker: usize,
) -> Result<BaseConsumer<Ownership>, ClientError> {
    let mut cc = client_config(config, &std::collections::BTreeMap::new());
    cc.set("group.id", &config.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("queued.max.messages.kbytes", "65536")
        .set("partition.assignment.strategy", "range")
        // librdkafka's statistics carry each partition's lag (see `stats`).
        .set("statistics.interval.ms", LAG_INTERVAL_MS);
    if let Some(id) = &config.instance_id {
        cc.set("group.instance.id", format!("{id}-{worker}"));
    }
    for (k, v) in &config.consumer {
        cc.set(k, v);
    }
    cc.create_with_context(ownership).map_err(|source| ClientError::Create { role: "consumer", source })
}

/// A worker's side of the rebalance protocol; see the module docs.
pub(crate) struct Ownership {
    store: Store,
    config: KafkaConfig,
    status: Arc<IngestStatus>,
    stop: Arc<AtomicBool>,
    gate: Arc<PublishGate>,
    /// Bumped on every assignment or revocation: a worker that sees it
    /// change while filling a batch drops what it polled before (those
    /// partitions were revoked, or re-assigned at their stored offsets).
    pub(crate) rebalances: AtomicU64,
    /// Partitions assigned since the worker last looked: it forgets what
    /// it knew of their clocks.
    pub(crate) gained: Mutex<BTreeSet<u32>>,
}

impl Ownership {
    pub(crate) fn new(
        store: Store,
        config: KafkaConfig,
        status: Arc<IngestStatus>,
        stop: Arc<AtomicBool>,
        gate: Arc<PublishGate>,
    ) -> Self {
        Self { store, config, status, stop, gate, rebalances: AtomicU64::new(0), gained: Mutex::default() }
    }

    /// Restores `partition` until it works (or the instance stops):
    /// processing it without its state would contact customers whose caps
    /// were spent elsewhere. The instance is not ready meanwhile.
    fn restore(&self, partition: i32) -> Option<Restored> {
        self.status.restoring.fetch_add(1, Ordering::SeqCst);
        gauge!(telemetry::RESTORING_PARTITIONS).increment(1.0);
        info!(partition, "Partition assigned; restoring its state.");
        let started = Instant::now();
        let mut outcome = None;
        while !self.stop.load(Ordering::Relaxed) {
            match restore_partition(&self.config, &self.store, partition, RESTORE_TIMEOUT) {
                Ok(r) => {
                    outcome = Some(r);
                    break;
                }
                Err(e) => {
                    counter!(telemetry::RESTORE_FAILURES).increment(1);
                    error!(partition, error = %e, "Cannot restore the partition's state; retrying.");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
        self.status.restoring.fetch_sub(1, Ordering::SeqCst);
        gauge!(telemetry::RESTORING_PARTITIONS).decrement(1.0);
        if outcome.is_some() {
            histogram!(telemetry::RESTORE_DURATION).record(started.elapsed());
        }
        outcome
    }

    /// Restores `partitions`, up to [`RESTORES_AT_ONCE`] at a time (each
    /// waits for its changelog's end to settle, mostly idle); returns
    /// whether all were restored (false: the instance is stopping).
    fn restore_all(&self, partitions: &BTreeSet<i32>) -> bool {
        let queue = Mutex::new(partitions.iter().copied());
        let restored = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..RESTORES_AT_ONCE.min(partitions.len()) {
                scope.spawn(|| loop {
                    let Some(partition) = queue.lock().unwrap_or_else(PoisonError::into_inner).next() else { break };
                    let Some(outcome) = self.restore(partition) else { break };
                    counter!(telemetry::PARTITIONS_ASSIGNED, "restore" => outcome.label()).increment(1);
                    info!(partition, restore = outcome.label(), "Partition gained.");
                    restored.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        restored.into_inner() == partitions.len()
    }

    /// Waits until the publisher has delivered every entry committed so far.
    fn drain_outbox(&self) {
        let target = self.store.outbox_next_seq();
        let deadline = Instant::now() + REVOKE_DRAIN;
        while !self.store.outbox_delivered_up_to(target) {
            if Instant::now() >= deadline {
                warn!(pending = self.store.outbox_pending(),
                    "Outbox not drained before releasing partitions; the next owner may decide their last events again (same ids).");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let parts: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        let numbers: BTreeSet<i32> = parts.iter().map(|(_, p)| *p).collect();
        if !self.restore_all(&numbers) {
            return;
        }
        self.gate.open(numbers.iter().map(|p| *p as u32));
        for (topic, partition) in &parts {
            let offset = match self.store.next_offset(topic, *partition) {
                Ok(Some(o)) => Offset::Offset(o),
                Ok(None) if self.config.start_from == StartFrom::Earliest => Offset::Beginning,
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
        // librdkafka keeps a partition's pause through a revoke and a new
        // assignment (Kafka's Java consumer does not): a partition paused
        // when it was lost would never be fetched again once it came back.
        // Every assignment starts resumed; a worker still over its outbox
        // bound pauses it again before its next batch.
        if let Err(e) = consumer.resume(tpl) {
            error!(error = %e, "Cannot resume the assigned partitions.");
        }
        self.gained.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(numbers.iter().map(|p| *p as u32));
        self.status.owned_delta(numbers.len(), 0);
    }
}

impl ClientContext for Ownership {
    /// Sets the lag gauge of every partition this consumer fetches: the
    /// partition's end minus the offset stored after the last commit (or,
    /// before the first, the group's committed offset). Partitions it does
    /// not own report no lag and are left to their owner.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in t.partitions.iter().filter(|(n, _)| **n >= 0) {
                let lag = if p.consumer_lag_stored >= 0 { p.consumer_lag_stored } else { p.consumer_lag };
                if lag >= 0 {
                    gauge!(telemetry::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Ownership {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        counter!(telemetry::REBALANCES).increment(1);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let numbers: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(partitions = ?numbers, "Partitions revoked; draining the outbox before releasing them.");
                self.drain_outbox();
                if !self.gate.close(numbers.iter().map(|p| *p as u32), REVOKE_ROUND) {
                    warn!("A publishing round carrying revoked partitions has not ended; releasing them anyway.");
                }
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "Unassign failed.");
                }
                // Its next owner reports the lag from now on.
                for e in tpl.elements() {
                    let labels = [("topic", e.topic().to_owned()), ("partition", e.partition().to_string())];
                    gauge!(telemetry::CONSUMER_LAG, &labels).set(0.0);
                }
                self.status.owned_delta(0, numbers.len());
            }
            other => error!(error = ?other, "Rebalance error."),
        }
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use cvm_store::StoreConfig;
    use rdkafka::{
        message::Message,
        mocking::MockCluster,
        producer::{BaseProducer, BaseRecord, Producer},
    };

    use super::*;

    const INPUT: &str = "in";

    fn member(
        mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        dir: &std::path::Path,
        worker: usize,
    ) -> BaseConsumer<Ownership> {
        let mut config = KafkaConfig { brokers: mock.bootstrap_servers(), group_id: "g".into(), ..Default::default() };
        config.topics.changelog = "changelog".into();
        config.consumer.insert("session.timeout.ms".into(), "6000".into());
        config.consumer.insert("heartbeat.interval.ms".into(), "200".into());
        let store_config = StoreConfig {
            path: dir.join(worker.to_string()),
            block_cache_mb: 8,
            memtable_budget_mb: 4,
            write_buffer_mb: 4,
            ..Default::default()
        };
        let store = Store::open(&store_config).unwrap().with_changelog("changelog");
        let stop = Arc::new(AtomicBool::new(false));
        let ownership = Ownership::new(store, config.clone(), Arc::default(), stop, Arc::default());
        let consumer = consumer(&config, ownership, worker).unwrap();
        consumer.subscribe(&[INPUT]).unwrap();
        consumer
    }

    /// Polls every consumer until `done` holds of the first one's assignment, for at most 30 s.
    fn poll_until(consumers: &[&BaseConsumer<Ownership>], done: impl Fn(usize) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(consumers[0].assignment().map(|a| a.count()).unwrap_or(0)) {
            assert!(Instant::now() < deadline, "no rebalance");
            for c in consumers {
                let _ = c.poll(Duration::from_millis(50));
            }
        }
    }

    /// A worker paused (its outbox over the bound) when a second member
    /// joined; the second one leaves and the partitions come back. In
    /// librdkafka they would come back paused, for good: the test broker's
    /// outage in the fault suite stalled this way (tansu restarted,
    /// rebalancing while the workers were paused).
    #[test]
    fn partitions_lost_while_paused_are_fetched_when_they_come_back() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic(INPUT, 2, 1).unwrap();
        mock.create_topic("changelog", 2, 1).unwrap();
        let producer: BaseProducer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
        for partition in 0..2 {
            producer
                .send(BaseRecord::<str, str>::to(INPUT).key("k").payload("v").partition(partition))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let dir = tempfile::tempdir().unwrap();

        let first = member(&mock, dir.path(), 0);
        poll_until(&[&first], |owned| owned == 2);
        first.pause(&first.assignment().unwrap()).unwrap();
        let second = member(&mock, dir.path(), 1);
        poll_until(&[&first, &second], |owned| owned == 1);
        drop(second);
        poll_until(&[&first], |owned| owned == 2);

        let mut fetched = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while fetched.len() < 2 && Instant::now() < deadline {
            if let Some(Ok(m)) = first.poll(Duration::from_millis(50)) {
                fetched.insert(m.partition());
            }
        }
        assert_eq!(fetched, BTreeSet::from([0, 1]), "every partition assigned again is fetched");
    }
}
