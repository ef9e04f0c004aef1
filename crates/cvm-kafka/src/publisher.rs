//! Drains the outbox to Kafka with an idempotent producer.
//!
//! Entries are removed only after the broker acknowledged them; a failed send
//! stays in the outbox and is retried after a back-off, so a broker outage
//! delays offers but loses none. Two kinds of failure are not retried:
//! - an entry the broker will never take (message too large, unknown topic,
//!   not authorized) is **parked** — moved to the store's parked entries
//!   with the reason, counted and logged — so it cannot block everything
//!   behind it;
//! - a fatal error of the idempotent producer (its sequence state is lost)
//!   **rebuilds the producer**; the entries it failed are sent again.
//!
//! At shutdown it drains for at most the drain deadline; what is left stays
//! in the outbox for the next start.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cvm_engine::telemetry;
use cvm_store::{OutboxEntry, Store};
use futures::future::join_all;
use metrics::{counter, gauge};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::{client_config, ClientError, KafkaConfig};

/// Entries sent per round.
const CHUNK: usize = 5_000;

/// How long shutdown waits for the outbox to drain.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

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

/// The outbox publisher.
pub struct Publisher {
    producer: FutureProducer,
    config: KafkaConfig,
    store: Store,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the producer (idempotent, lz4, short linger).
    pub fn new(config: &KafkaConfig, store: Store, wake: Arc<Notify>) -> Result<Self, ClientError> {
        Ok(Self { producer: Self::producer(config)?, config: config.clone(), store, wake })
    }

    fn producer(config: &KafkaConfig) -> Result<FutureProducer, ClientError> {
        let mut cc = client_config(config, &std::collections::BTreeMap::new());
        cc.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000");
        for (k, v) in &config.producer {
            cc.set(k, v);
        }
        cc.create().map_err(|source| ClientError::Create { role: "producer", source })
    }

    /// Publishes until `drain` turns true and the outbox is empty (or the
    /// drain deadline has passed).
    pub async fn run(mut self, mut drain: watch::Receiver<bool>) {
        let mut next = 0u64;
        let mut drain_deadline = None::<Instant>;
        loop {
            if drain_deadline.is_none() && *drain.borrow() {
                drain_deadline = Some(Instant::now() + DRAIN_DEADLINE);
            }
            let entries = match self.store.outbox_peek(next, CHUNK) {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "Cannot read the outbox; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let first = entries.first().map_or(self.store.outbox_next_seq(), |(s, _)| *s);
            self.store.note_outbox_head(first);
            gauge!(telemetry::OUTBOX_DEPTH).set(self.store.outbox_pending() as f64);
            if entries.is_empty() {
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
                warn!(
                    left = self.store.outbox_pending(),
                    "Drain deadline passed; the rest stays in the outbox for the next start."
                );
                break;
            }
            let retry = self.send(&entries).await;
            if retry {
                tokio::time::sleep(Duration::from_millis(500)).await;
                next = first; // retry from the oldest undelivered entry
            } else {
                next = entries.last().map_or(next, |(s, _)| s + 1);
            }
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
            warn!(error = %e, "Producer flush at shutdown failed.");
        }
        info!("Publisher stopped.");
    }

    /// Sends `entries`, removes the delivered, parks the undeliverable;
    /// returns whether some must be retried.
    async fn send(&mut self, entries: &[(u64, OutboxEntry)]) -> bool {
        let sends = entries.iter().map(|(seq, e)| {
            let mut headers = OwnedHeaders::new_with_capacity(e.headers.len());
            for (k, v) in &e.headers {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&e.topic).key(&e.key[..]).headers(headers);
            if !e.tombstone {
                record = record.payload(&e.payload[..]);
            }
            if let Some(partition) = e.partition {
                record = record.partition(partition);
            }
            let fut = self.producer.send(record, Timeout::Never);
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
                    warn!(error = %e, topic = %entry.topic, seq, reason, "The broker will not accept this entry; parked.");
                    counter!(telemetry::PUBLISH_ERRORS, "kind" => reason).increment(1);
                    if let Err(e) = self.store.outbox_park(seq, entry.clone(), &e.to_string()) {
                        warn!(error = %e, seq, "Cannot park the entry; it will be tried again.");
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
            match Self::producer(&self.config) {
                Ok(p) => {
                    warn!("Fatal producer error; the producer was rebuilt and the entries are sent again.");
                    self.producer = p;
                }
                Err(e) => warn!(error = %e, "Fatal producer error and no new producer; retrying."),
            }
        }
        retry > 0
    }
}
