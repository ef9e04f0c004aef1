//! Drains the outbox to Kafka: in transactions (`delivery = exactly_once`,
//! the default) or with the idempotent producer alone (`at_least_once`).
//!
//! Each round takes, in outbox order, up to a chunk of the entries whose
//! partition is open (see the `gate` module), and always whole commits: a
//! round ends only at a commit's last entry.
//!
//! **Exactly once.** A round is one Kafka transaction (transactional id
//! `cvm-<writer id>`, one per state store, so a restarted instance fences
//! its predecessor). Before it begins, the store records the transaction's
//! number and the entries it carries; the transaction carries, besides the
//! entries, a record of its number on the progress topic, keyed by the
//! writer id. When the commit returns, the entries and the record of the
//! transaction are removed in one write. After a crash — or a commit whose
//! outcome is unknown — the producer is rebuilt (which makes the broker
//! finish or abort the open transaction) and the progress topic, read
//! `read_committed`, says whether the recorded transaction committed: its
//! entries are then removed, or sent again. A commit's offers, decisions,
//! stats and changelog records for a partition become visible together.
//!
//! **At least once.** Entries are removed after the broker acknowledged
//! them; a crash between the two sends them again (same bytes, same ids).
//!
//! Either way, a failed send stays in the outbox and is retried after a
//! back-off, so a broker outage delays offers but loses none, except:
//! - an entry the broker will never take (message too large, unknown topic,
//!   not authorized) is **parked** — moved to the store's parked entries
//!   with the reason, counted and logged — so it cannot block everything
//!   behind it;
//! - a fatal producer error **rebuilds the producer**.
//!
//! At shutdown it drains for at most the drain deadline; what is left stays
//! in the outbox for the next start.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cvm_engine::{telemetry, StoreError};
use cvm_store::{OutboxEntry, PublisherTxn, Store};
use futures::future::join_all;
use metrics::{counter, gauge};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Message, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::{
    client_config,
    gate::{PublishGate, Round},
    restore::{read_partition, RestoreError},
    ClientError, Delivery, KafkaConfig,
};

/// Entries sent per round (a round ends at a commit's end, so may hold more).
const CHUNK: usize = 5_000;

/// How long shutdown waits for the outbox to drain.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How long a transaction call (init, begin, commit, abort) may take.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the start's probe transaction may wait for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The progress topic partition every writer records its transactions in.
const PROGRESS_PARTITION: i32 = 0;

/// How many records from the progress partition's end are read first to
/// find this writer's last one (then, if it is not there, all of them).
const PROGRESS_TAIL: i64 = 10_000;

/// The transactional id of the publisher of the store with `writer` id.
pub(crate) fn transactional_id(writer: u64) -> String {
    format!("cvm-{writer:016x}")
}

/// What to do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFailure {
    /// Try again later (broker down, timeout, leader change, …).
    Retry,
    /// The broker will never accept this entry: park it with this reason.
    Permanent(&'static str),
    /// The producer is unusable: build a new one, then retry.
    Fatal,
}

impl SendFailure {
    fn of(e: &KafkaError) -> Self {
        use RDKafkaErrorCode as C;
        match e.rdkafka_error_code() {
            Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
                Self::Permanent("message_too_large")
            }
            Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::InvalidTopic) => Self::Permanent("unknown_topic"),
            Some(
                C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed,
            ) => Self::Permanent("not_authorized"),
            Some(C::InvalidRecord | C::InvalidMessage) => Self::Permanent("invalid_record"),
            Some(C::Fatal) => Self::Fatal,
            _ => Self::Retry,
        }
    }
}

/// The entries of one round and how far the outbox was read for it.
#[derive(Debug, Default)]
struct Chunk {
    entries: Vec<(u64, OutboxEntry)>,
    /// The sequence number after the last entry looked at.
    scanned_to: u64,
    /// The first entry left out because its partition is closed.
    first_skipped: Option<u64>,
}

/// The outbox publisher.
pub struct Publisher {
    producer: FutureProducer,
    config: KafkaConfig,
    store: Store,
    wake: Arc<Notify>,
    gate: Arc<PublishGate>,
    /// The number of the last transaction begun (exactly once).
    txn_number: u64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the producer (idempotent, lz4, short linger; transactional
    /// for exactly-once delivery).
    pub fn new(
        config: &KafkaConfig,
        store: Store,
        wake: Arc<Notify>,
        gate: Arc<PublishGate>,
    ) -> Result<Self, ClientError> {
        Ok(Self { producer: Self::producer(config, &store)?, config: config.clone(), store, wake, gate, txn_number: 0 })
    }

    fn exactly_once(&self) -> bool {
        self.config.delivery == Delivery::ExactlyOnce
    }

    fn producer(config: &KafkaConfig, store: &Store) -> Result<FutureProducer, ClientError> {
        let mut cc = client_config(config, &std::collections::BTreeMap::new());
        cc.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000");
        for (k, v) in &config.producer {
            cc.set(k, v);
        }
        if config.delivery == Delivery::ExactlyOnce {
            cc.set("transactional.id", transactional_id(store.writer_id()));
            if !config.producer.contains_key("transaction.timeout.ms") {
                // librdkafka wants a message's timeout within its transaction's.
                let message: u64 = cc.get("message.timeout.ms").and_then(|v| v.parse().ok()).unwrap_or(30_000);
                cc.set("transaction.timeout.ms", message.max(60_000).to_string());
            }
        }
        cc.create().map_err(|source| ClientError::Create { role: "producer", source })
    }

    /// Before the first round, for exactly-once delivery: fences earlier
    /// producers of this store, settles the transaction the last run left,
    /// and commits a first transaction (this store's last progress record
    /// again), so that a broker without transactions is refused at start
    /// rather than found out offer by offer. A broker that is merely failing
    /// now (it refuses or times out the probe) is not refused: the rounds
    /// retry.
    pub async fn prepare(&mut self) -> Result<(), ClientError> {
        if !self.exactly_once() {
            return Ok(());
        }
        let request = |action| move |source| ClientError::Request { action, source };
        self.blocking(|p| p.init_transactions(TXN_CALL_TIMEOUT)).await.map_err(request("init_transactions"))?;
        self.recover().await.map_err(request("reading the publisher progress"))?;
        self.blocking(|p| p.begin_transaction()).await.map_err(request("begin_transaction"))?;
        let probe = async {
            let sent = self.send_progress(self.txn_number, Timeout::After(PROBE_TIMEOUT));
            match tokio::time::timeout(PROBE_TIMEOUT, sent).await {
                Ok(Ok(())) => self.blocking(|p| p.commit_transaction(TXN_CALL_TIMEOUT)).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)),
            }
        };
        match probe.await {
            Ok(()) => Ok(()),
            Err(source) if source.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature) => {
                Err(ClientError::NoTransactions { source })
            }
            Err(e) => {
                warn!(error = %e, "Cannot check now that the broker commits transactions; publishing retries.");
                if self.blocking(|p| p.abort_transaction(TXN_CALL_TIMEOUT)).await.is_err() {
                    self.recover_after_failure().await;
                }
                Ok(())
            }
        }
    }

    /// Publishes until `drain` turns true and the outbox is empty (or the
    /// drain deadline has passed).
    pub async fn run(mut self, mut drain: watch::Receiver<bool>) {
        let (mut next, mut opened, mut skipped_from) = (0u64, None, None::<u64>);
        let mut drain_deadline = None::<Instant>;
        loop {
            if drain_deadline.is_none() && *drain.borrow() {
                drain_deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            let round = self.gate.begin_round();
            if opened != Some(round.opened) {
                // Partitions opened: look again at what was skipped.
                next = next.min(skipped_from.take().unwrap_or(next));
                opened = Some(round.opened);
            }
            let chunk = match self.collect(next, &round) {
                Ok(c) => c,
                Err(e) => {
                    self.gate.end_round();
                    warn!(error = %e, "Cannot read the outbox; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Some(s) = chunk.first_skipped {
                skipped_from = Some(skipped_from.map_or(s, |k| k.min(s)));
            }
            let head = chunk.entries.first().map_or(chunk.scanned_to, |(s, _)| *s);
            self.store.note_outbox_head(head);
            gauge!(telemetry::OUTBOX_DEPTH).set(self.store.outbox_pending() as f64);
            if chunk.entries.is_empty() {
                self.gate.end_round();
                next = chunk.scanned_to;
                if drain_deadline.is_some() {
                    break;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = drain.changed() => {}
                }
                continue;
            }
            if drain_deadline.is_some_and(|d| Instant::now() >= d) {
                self.gate.end_round();
                warn!(
                    left = self.store.outbox_pending(),
                    "Drain deadline passed; the rest stays in the outbox for the next start."
                );
                break;
            }
            let retry = if self.exactly_once() {
                self.send_transaction(&chunk.entries).await
            } else {
                self.send(&chunk.entries).await
            };
            self.gate.end_round();
            if retry {
                tokio::time::sleep(Duration::from_millis(500)).await;
                next = head; // retry from the oldest undelivered entry
            } else {
                next = chunk.scanned_to;
            }
        }
        if !self.exactly_once() {
            if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
                warn!(error = %e, "Producer flush at shutdown failed.");
            }
        }
        info!("Publisher stopped.");
    }

    /// The next round's entries from `from` on: those `round` admits, up to
    /// [`CHUNK`] and to the end of a commit.
    fn collect(&self, from: u64, round: &Round) -> Result<Chunk, StoreError> {
        let mut chunk = Chunk { scanned_to: from, ..Chunk::default() };
        loop {
            let page = self.store.outbox_peek(chunk.scanned_to, CHUNK)?;
            if page.is_empty() {
                return Ok(chunk);
            }
            for (seq, entry) in page {
                chunk.scanned_to = seq + 1;
                let commit_end = entry.commit_end;
                if round.admits(entry.source) {
                    chunk.entries.push((seq, entry));
                } else {
                    chunk.first_skipped.get_or_insert(seq);
                }
                if commit_end && chunk.entries.len() >= CHUNK {
                    return Ok(chunk);
                }
            }
        }
    }

    fn record<'e>(entry: &'e OutboxEntry) -> FutureRecord<'e, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(entry.headers.len());
        for (k, v) in &entry.headers {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&entry.topic).key(&entry.key[..]).headers(headers);
        if !entry.tombstone {
            record = record.payload(&entry.payload[..]);
        }
        if let Some(partition) = entry.partition {
            record = record.partition(partition);
        }
        record
    }

    /// Sends `entries`, removes the delivered, parks the undeliverable;
    /// returns whether some must be retried.
    async fn send(&mut self, entries: &[(u64, OutboxEntry)]) -> bool {
        let sends = entries.iter().map(|(seq, e)| {
            let fut = self.producer.send(Self::record(e), Timeout::Never);
            async move { (*seq, e, fut.await) }
        });
        let mut delivered = Vec::with_capacity(entries.len());
        let (mut retry, mut fatal) = (0u64, false);
        for (seq, entry, result) in join_all(sends).await {
            let e = match result {
                Ok(_) => {
                    counter!(telemetry::PUBLISHED, "topic" => entry.topic.clone()).increment(1);
                    delivered.push(seq);
                    continue;
                }
                Err((e, _)) => e,
            };
            match SendFailure::of(&e) {
                SendFailure::Permanent(reason) => {
                    if !self.park(seq, entry, &e, reason) {
                        retry += 1;
                    }
                }
                SendFailure::Fatal => {
                    fatal = true;
                    retry += 1;
                }
                SendFailure::Retry => {
                    if retry == 0 {
                        warn!(error = %e, topic = %entry.topic, "Publish failed; the entry stays in the outbox.");
                    }
                    retry += 1;
                }
            }
        }
        if retry > 0 {
            counter!(telemetry::PUBLISH_ERRORS, "kind" => "retried").increment(retry);
        }
        if let Err(e) = self.store.outbox_remove(delivered.iter().copied()) {
            warn!(error = %e, "Cannot remove delivered entries; they will be re-sent with the same ids.");
        }
        if fatal {
            counter!(telemetry::PUBLISH_ERRORS, "kind" => "fatal").increment(1);
            match Self::producer(&self.config, &self.store) {
                Ok(p) => {
                    warn!("Fatal producer error; the producer was rebuilt and the entries are sent again.");
                    self.producer = p;
                }
                Err(e) => warn!(error = %e, "Fatal producer error and no new producer; retrying."),
            }
        }
        retry > 0
    }

    /// Parks an entry the broker will never take; whether that worked.
    fn park(&self, seq: u64, entry: &OutboxEntry, e: &KafkaError, reason: &'static str) -> bool {
        warn!(error = %e, topic = %entry.topic, seq, reason, "The broker will not accept this entry; parked.");
        counter!(telemetry::PUBLISH_ERRORS, "kind" => reason).increment(1);
        match self.store.outbox_park(seq, entry.clone(), &e.to_string()) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, seq, "Cannot park the entry; it will be tried again.");
                false
            }
        }
    }

    /// Sends `entries` in one transaction; returns whether some must be
    /// retried (none was removed unless the transaction committed).
    async fn send_transaction(&mut self, entries: &[(u64, OutboxEntry)]) -> bool {
        // What the producer would refuse anyway is parked first: a refused
        // send aborts the whole transaction.
        let limit = self.max_message_bytes();
        let (oversized, entries): (Vec<_>, Vec<_>) = entries.iter().partition(|(_, e)| wire_size(e) > limit);
        for (seq, entry) in oversized {
            let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
            self.park(*seq, entry, &e, "message_too_large");
        }
        if entries.is_empty() {
            return false;
        }
        let number = self.txn_number + 1;
        let txn = PublisherTxn { number, seqs: entries.iter().map(|(s, _)| *s).collect() };
        if let Err(e) = self.store.begin_publisher_txn(&txn) {
            warn!(error = %e, "Cannot record the transaction; retrying.");
            return true;
        }
        self.txn_number = number;
        if let Err(e) = self.blocking(|p| p.begin_transaction()).await {
            warn!(error = %e, "Cannot begin a transaction; the producer is rebuilt.");
            self.recover_after_failure().await;
            return true;
        }
        let sends = entries.iter().map(|(seq, e)| {
            let fut = self.producer.send(Self::record(e), Timeout::Never);
            async move { (*seq, e, fut.await) }
        });
        let failed: Vec<(u64, &OutboxEntry, KafkaError)> = join_all(sends)
            .await
            .into_iter()
            .filter_map(|(seq, entry, r)| r.err().map(|(e, _)| (seq, entry, e)))
            .collect();
        // The progress record goes last, once every entry is written: even
        // where aborted records stay visible, a visible progress record then
        // means every entry of the transaction is too.
        let progress = if failed.is_empty() { self.send_progress(number, Timeout::Never).await } else { Ok(()) };
        if let Err(e) = progress {
            // No entry failed: nothing to park, everything is retried.
            warn!(error = %e, number, "The progress record failed; the transaction is aborted and retried.");
            counter!(telemetry::PUBLISH_ERRORS, "kind" => "retried").increment(1);
            self.abort_or_recover(number, &e).await;
            return true;
        }
        if failed.is_empty() {
            match self.blocking(|p| p.commit_transaction(TXN_CALL_TIMEOUT)).await {
                Ok(()) => {
                    self.ended(number, true, "committed");
                    for (_, entry) in &entries {
                        counter!(telemetry::PUBLISHED, "topic" => entry.topic.clone()).increment(1);
                    }
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, number, "Committing the transaction failed; its outcome is asked of the broker.");
                    self.abort_or_recover(number, &e).await;
                    return true;
                }
            }
        }
        let (_, _, first) = &failed[0];
        warn!(error = %first, failed = failed.len(), number, "Sends failed; the transaction is aborted and retried.");
        counter!(telemetry::PUBLISH_ERRORS, "kind" => "retried").increment(failed.len() as u64);
        self.abort_or_recover(number, first).await;
        for (seq, entry, e) in &failed {
            if let SendFailure::Permanent(reason) = SendFailure::of(e) {
                self.park(*seq, entry, e, reason);
            }
        }
        true
    }

    /// Produces this store's progress record `number` (inside the open
    /// transaction).
    async fn send_progress(&self, number: u64, timeout: Timeout) -> Result<(), KafkaError> {
        let (key, value) = (self.store.writer_id().to_be_bytes(), number.to_be_bytes());
        let record = FutureRecord::<[u8], [u8]>::to(&self.config.topics.publisher_progress)
            .partition(PROGRESS_PARTITION)
            .key(&key[..])
            .payload(&value[..]);
        self.producer.send(record, timeout).await.map(|_| ()).map_err(|(e, _)| e)
    }

    /// The largest message the producer takes (`message.max.bytes`).
    fn max_message_bytes(&self) -> usize {
        self.config.producer.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
    }

    /// After a failed transaction: aborts it if the producer can, otherwise
    /// rebuilds the producer and asks the broker what became of it.
    async fn abort_or_recover(&mut self, number: u64, cause: &KafkaError) {
        let abortable = match cause {
            KafkaError::Transaction(e) => !e.is_fatal(),
            _ => !matches!(SendFailure::of(cause), SendFailure::Fatal),
        };
        if abortable && self.blocking(|p| p.abort_transaction(TXN_CALL_TIMEOUT)).await.is_ok() {
            self.ended(number, false, "aborted");
            return;
        }
        self.recover_after_failure().await;
    }

    fn ended(&self, number: u64, committed: bool, outcome: &'static str) {
        counter!(telemetry::PUBLISH_TRANSACTIONS, "outcome" => outcome).increment(1);
        if let Err(e) = self.store.end_publisher_txn(number, committed) {
            // The record stays; the next start asks the broker again.
            warn!(error = %e, number, committed, "Cannot record the end of the transaction.");
        }
    }

    /// Builds a new producer and recovers, until both work.
    async fn recover_after_failure(&mut self) {
        counter!(telemetry::PUBLISH_ERRORS, "kind" => "fatal").increment(1);
        loop {
            match Self::producer(&self.config, &self.store) {
                Ok(p) => self.producer = p,
                Err(e) => warn!(error = %e, "Cannot build a producer; retrying."),
            }
            match self.init_and_recover().await {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "Cannot start transactions; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Fences any earlier producer of this store (the broker finishes or
    /// aborts its open transaction), then settles the recorded transaction:
    /// committed (the progress topic has its number) — its entries are
    /// removed; otherwise they are sent again.
    async fn init_and_recover(&mut self) -> Result<(), String> {
        self.blocking(|p| p.init_transactions(TXN_CALL_TIMEOUT)).await.map_err(|e| e.to_string())?;
        self.recover().await.map_err(|e| e.to_string())
    }

    /// Settles the recorded transaction (after `init_transactions`).
    async fn recover(&mut self) -> Result<(), KafkaError> {
        let txn = self.store.publisher_txn().map_err(|e| {
            warn!(error = %e, "Cannot read the recorded transaction.");
            KafkaError::Canceled
        })?;
        self.txn_number = self.txn_number.max(txn.number);
        if txn.seqs.is_empty() {
            return Ok(());
        }
        let (config, writer) = (self.config.clone(), self.store.writer_id());
        let last = match tokio::task::spawn_blocking(move || last_progress(&config, writer)).await {
            Ok(Ok(last)) => last,
            Ok(Err(RestoreError::Kafka { source, .. })) => return Err(source),
            Ok(Err(e)) => {
                warn!(error = %e, "Cannot read the publisher progress.");
                return Err(KafkaError::Canceled);
            }
            Err(_) => return Err(KafkaError::Canceled),
        };
        let committed = last.is_some_and(|n| n >= txn.number);
        info!(number = txn.number, committed, entries = txn.seqs.len(), "Settled the transaction left in flight.");
        self.ended(txn.number, committed, if committed { "recovered_committed" } else { "recovered_aborted" });
        Ok(())
    }

    /// Runs a blocking transaction call of the producer off the async threads.
    async fn blocking(
        &self,
        call: impl FnOnce(&FutureProducer) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        match tokio::task::spawn_blocking(move || call(&producer)).await {
            Ok(result) => result,
            Err(panic) => {
                warn!(%panic, "A transaction call panicked.");
                Err(KafkaError::Canceled)
            }
        }
    }
}

/// An upper bound of the bytes `entry` takes in a record batch, as the
/// producer counts them against `message.max.bytes`.
fn wire_size(entry: &OutboxEntry) -> usize {
    let headers: usize = entry.headers.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    entry.key.len() + entry.payload.len() + headers + 64
}

/// The number of the last transaction of `writer` on the progress topic
/// (read `read_committed`), if any.
pub(crate) fn last_progress(config: &KafkaConfig, writer: u64) -> Result<Option<u64>, RestoreError> {
    let topic = &config.topics.publisher_progress;
    let kafka = |source| RestoreError::Kafka { topic: topic.clone(), partition: PROGRESS_PARTITION, source };
    let consumer: BaseConsumer = client_config(config, &config.consumer).create().map_err(kafka)?;
    let (low, high) = consumer.fetch_watermarks(topic, PROGRESS_PARTITION, Duration::from_secs(10)).map_err(kafka)?;
    let key = writer.to_be_bytes();
    let timeout = Duration::from_secs(120);
    let mut from = high.saturating_sub(PROGRESS_TAIL).max(low);
    loop {
        let mut last = None;
        read_partition(config, topic, PROGRESS_PARTITION, from, Instant::now() + timeout, timeout, |msg| {
            if msg.key() == Some(&key[..]) {
                last = msg.payload().and_then(|v| v.try_into().ok()).map(u64::from_be_bytes);
            }
        })?;
        if last.is_some() || from <= low {
            return Ok(last);
        }
        from = low;
    }
}

#[cfg(test)]
mod tests {
    use cvm_store::StoreConfig;
    use rdkafka::{
        mocking::MockCluster,
        producer::{BaseProducer, BaseRecord, DefaultProducerContext},
        ClientConfig, Offset, TopicPartitionList,
    };

    use super::*;

    const OFFERS: &str = "offers";

    struct World {
        mock: MockCluster<'static, DefaultProducerContext>,
        config: KafkaConfig,
        store: Store,
        _dir: tempfile::TempDir,
    }

    impl World {
        fn new() -> World {
            let mock = MockCluster::new(1).unwrap();
            let config = KafkaConfig { brokers: mock.bootstrap_servers(), ..Default::default() };
            for topic in [OFFERS, config.topics.publisher_progress.as_str()] {
                mock.create_topic(topic, 1, 1).unwrap();
            }
            let dir = tempfile::tempdir().unwrap();
            let store_config = StoreConfig {
                path: dir.path().to_owned(),
                block_cache_mb: 8,
                memtable_budget_mb: 4,
                write_buffer_mb: 4,
                ..Default::default()
            };
            World { mock, config, store: Store::open(&store_config).unwrap(), _dir: dir }
        }

        /// Commits one offer keyed `key` for `partition`; its outbox sequence number.
        fn queue(&self, partition: u32, key: &str) -> u64 {
            let seq = self.store.outbox_next_seq();
            let mut b = self.store.begin();
            b.publish(partition, OutboxEntry { topic: OFFERS.into(), key: key.into(), ..Default::default() });
            b.commit().unwrap();
            seq
        }

        fn produce(&self, topic: &str, key: &[u8], value: &[u8]) {
            let producer: BaseProducer =
                ClientConfig::new().set("bootstrap.servers", self.mock.bootstrap_servers()).create().unwrap();
            producer.send(BaseRecord::to(topic).partition(0).key(key).payload(value)).map_err(|(e, _)| e).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }

        /// Runs a publisher with `open` partitions until the outbox holds
        /// only entries of closed ones, then drains it.
        async fn publish(&self, gate: &Arc<PublishGate>) {
            let wake = Arc::new(Notify::new());
            let mut publisher = Publisher::new(&self.config, self.store.clone(), wake, gate.clone()).unwrap();
            publisher.prepare().await.unwrap();
            let (drain, drain_rx) = watch::channel(false);
            let run = tokio::spawn(publisher.run(drain_rx));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let waiting = self.store.outbox_peek(0, usize::MAX).unwrap();
                if waiting.iter().all(|(_, e)| !gate.is_open(e.source.unwrap())) {
                    break;
                }
                assert!(Instant::now() < deadline, "not published: {}", waiting.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drain.send(true).unwrap();
            run.await.unwrap();
        }

        /// The keys on the offers topic, in order (`read_committed`).
        fn offers(&self) -> Vec<String> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", self.mock.bootstrap_servers())
                .set("group.id", "reader")
                .set("isolation.level", "read_committed")
                .create()
                .unwrap();
            let (_, high) = consumer.fetch_watermarks(OFFERS, 0, Duration::from_secs(10)).unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(OFFERS, 0, Offset::Beginning).unwrap();
            consumer.assign(&tpl).unwrap();
            let mut keys = Vec::new();
            let mut next = 0;
            while next < high {
                if let Some(msg) = consumer.poll(Duration::from_secs(5)) {
                    let msg = msg.unwrap();
                    next = msg.offset() + 1;
                    keys.push(String::from_utf8(msg.key().unwrap().to_vec()).unwrap());
                } else {
                    panic!("offers topic not read to {high}");
                }
            }
            keys
        }
    }

    /// The crash window: transaction 7 carried `a` and `b`; the process died
    /// before removing them. `committed`: the broker has the transaction.
    async fn restart_after_the_crash_window(committed: bool) -> (Vec<String>, World) {
        let world = World::new();
        let seqs = vec![world.queue(0, "a"), world.queue(0, "b")];
        world.queue(0, "c");
        world.store.begin_publisher_txn(&PublisherTxn { number: 7, seqs }).unwrap();
        let writer = world.store.writer_id().to_be_bytes();
        if committed {
            world.produce(OFFERS, b"a", b"");
            world.produce(OFFERS, b"b", b"");
            world.produce(&world.config.topics.publisher_progress, &writer, &7u64.to_be_bytes());
        } else {
            world.produce(&world.config.topics.publisher_progress, &writer, &6u64.to_be_bytes());
        }
        let gate = Arc::new(PublishGate::default());
        gate.open([0]);
        world.publish(&gate).await;
        (world.offers(), world)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_that_committed_before_a_crash_is_not_sent_again() {
        let (offers, World { store, .. }) = restart_after_the_crash_window(true).await;
        assert_eq!(offers, ["a", "b", "c"], "a and b once, from the transaction before the crash");
        assert!(store.outbox_peek(0, 10).unwrap().is_empty());
        let txn = store.publisher_txn().unwrap();
        assert!(txn.number > 7 && txn.seqs.is_empty(), "numbers go on after the recovered one: {txn:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_that_did_not_commit_is_sent_again() {
        let (offers, World { store, .. }) = restart_after_the_crash_window(false).await;
        assert_eq!(offers, ["a", "b", "c"]);
        assert!(store.outbox_peek(0, 10).unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_of_a_partition_owned_elsewhere_wait_until_it_is_open_here() {
        let world = World::new();
        world.queue(0, "mine");
        world.queue(1, "theirs");
        world.queue(0, "mine too");
        let gate = Arc::new(PublishGate::default());
        gate.open([0]);
        world.publish(&gate).await;
        assert_eq!(world.offers(), ["mine", "mine too"]);
        let left = world.store.outbox_peek(0, 10).unwrap();
        assert_eq!(left.len(), 1, "partition 1's entry waits");
        assert_eq!(left[0].1.source, Some(1));

        gate.open([1]);
        world.publish(&gate).await;
        assert_eq!(world.offers(), ["mine", "mine too", "theirs"]);
    }
}
