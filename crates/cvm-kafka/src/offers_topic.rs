//! Reads offer documents from the config topic, at start and live.
//!
//! The topic is compacted and keyed by document key; an empty value deletes
//! the document. What is accepted (checks, versions that only go up) is the
//! catalog's rule ([`LiveCatalog::apply`]); this reader only carries
//! documents in and statuses out, on the status topic.

use std::{
    sync::{atomic::AtomicBool, atomic::Ordering},
    time::{Duration, Instant},
};

use cvm_engine::catalog::LiveCatalog;
use cvm_proto::encode;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Message},
    producer::{BaseRecord, DefaultProducerContext, ThreadedProducer},
    Offset, TopicPartitionList,
};
use tracing::{info, warn};

use crate::{client_config, wall_ms, ClientError, KafkaConfig};

/// The config-topic reader.
pub struct OffersReader {
    consumer: BaseConsumer,
    /// Asks for the topic's ends (see [`read_to_end`]).
    probe: BaseConsumer,
    producer: ThreadedProducer<DefaultProducerContext>,
    catalog: LiveCatalog,
    config: KafkaConfig,
}

impl std::fmt::Debug for OffersReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffersReader").field("topic", &self.config.topics.offers_config).finish()
    }
}

impl OffersReader {
    /// Creates the reader; call [`catch_up`](Self::catch_up), then [`follow`](Self::follow).
    pub fn new(config: &KafkaConfig, catalog: LiveCatalog) -> Result<Self, ClientError> {
        let mut cc = client_config(config, &config.consumer);
        // Every instance reads the whole topic: no group offsets are used.
        cc.set("group.id", format!("{}-offers", config.group_id)).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = cc.create().map_err(|source| ClientError::Create { role: "consumer", source })?;
        let probe: BaseConsumer = cc.create().map_err(|source| ClientError::Create { role: "consumer", source })?;
        let producer = client_config(config, &config.producer)
            .create()
            .map_err(|source| ClientError::Create { role: "producer", source })?;
        Ok(Self { consumer, probe, producer, catalog, config: config.clone() })
    }

    /// Assigns every partition from the beginning and reads up to the end
    /// (see [`read_to_end`]), so the engine starts with every offer
    /// published so far. Returns whether the end was reached before
    /// `timeout`; the pipeline calls it again until it was, and is not
    /// ready meanwhile.
    pub fn catch_up(&mut self, timeout: Duration) -> Result<bool, rdkafka::error::KafkaError> {
        let mut read = 0;
        let unread = read_to_end(&self.consumer, &self.probe, &self.config.topics.offers_config, timeout, |msg| {
            self.apply(msg);
            read += 1;
        })?;
        if unread.is_empty() {
            info!(documents = read, offers = self.catalog.current().all().len(), "Offer catalog loaded.");
        } else {
            warn!(documents = read, ?unread, "Config topic not read to its end yet; still loading (not ready).");
        }
        Ok(unread.is_empty())
    }

    /// Follows the topic until `stop` is set.
    pub fn follow(self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(msg)) => self.apply(&msg),
                Some(Err(e)) => warn!(error = %e, "Config topic read failed; retrying."),
                None => {}
            }
        }
        let _ = rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(5));
    }

    fn apply(&self, msg: &BorrowedMessage<'_>) {
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        let status = self.catalog.apply(&key, msg.payload(), wall_ms());
        let spec = &self.config.topics.config_status;
        let payload = encode(spec.format, &status);
        if let Err((e, _)) = self.producer.send(BaseRecord::to(&spec.name).key(&key).payload(&payload)) {
            warn!(error = %e, offer = %key, "Cannot publish config status.");
        }
    }
}

/// Publishes offer documents (key = id) to the config topic and waits for
/// the broker's acknowledgements. Callers lint documents first.
pub fn publish_documents(
    config: &KafkaConfig,
    docs: &[(String, Vec<u8>)],
    timeout: Duration,
) -> Result<(), ClientError> {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(config, &config.producer)
        .create()
        .map_err(|source| ClientError::Create { role: "producer", source })?;
    let topic = &config.topics.offers_config;
    for (key, value) in docs {
        producer
            .send(BaseRecord::to(topic).key(key).payload(value))
            .map_err(|(source, _)| ClientError::Request { action: "publish", source })?;
    }
    rdkafka::producer::Producer::flush(&producer, timeout)
        .map_err(|source| ClientError::Request { action: "publish", source })
}

/// How long an end must hold before it is believed: some brokers (tansu)
/// report a high watermark behind their log for a moment after a write.
const END_SETTLE: Duration = Duration::from_millis(500);

/// Reads every partition of `topic` from the beginning to its end, handing
/// each message to `on_message`; returns the partitions not read to their
/// end before `timeout`, as (partition, position, end) — empty when complete.
///
/// One high watermark is not trusted: once the position reaches it, the
/// reader keeps polling for [`END_SETTLE`] and asks for the watermarks
/// again; only an end that holds twice counts. Positions come from the
/// consumer, which also steps over transaction markers and compacted gaps.
/// The watermarks come from `probe`, a consumer with nothing assigned: asked
/// through `consumer`, each query waited behind its fetch, which a broker
/// may hold for `fetch.wait.max.ms` (500 ms) when there is nothing new —
/// seconds per end check on a topic of many partitions.
fn read_to_end(
    consumer: &BaseConsumer,
    probe: &BaseConsumer,
    topic: &str,
    timeout: Duration,
    mut on_message: impl FnMut(&BorrowedMessage<'_>),
) -> Result<Vec<(i32, i64, i64)>, rdkafka::error::KafkaError> {
    let deadline = Instant::now() + timeout;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let ends = |timeout: Duration| -> Result<Vec<(i32, i64, i64)>, rdkafka::error::KafkaError> {
        let mut out = Vec::with_capacity(partitions.len());
        let positions = consumer.position()?;
        for p in &partitions {
            let (low, high) = probe.fetch_watermarks(topic, *p, timeout)?;
            let position = match positions.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(low),
                _ => low,
            };
            out.push((*p, position, high));
        }
        Ok(out)
    };
    let unread =
        |state: &[(i32, i64, i64)]| state.iter().filter(|(_, pos, end)| pos < end).copied().collect::<Vec<_>>();
    let mut held = 0;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let state = ends(remaining.min(Duration::from_secs(5)))?;
        let left = unread(&state);
        if left.is_empty() {
            held += 1;
            if held >= 2 {
                return Ok(Vec::new());
            }
        } else {
            held = 0;
        }
        if remaining.is_zero() {
            return Ok(left);
        }
        // Read for a while (or let an end settle), then look again.
        let until = Instant::now() + if left.is_empty() { END_SETTLE } else { Duration::from_secs(1) };
        while Instant::now() < until.min(deadline) {
            if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(50)) {
                on_message(&msg);
                held = 0;
            }
        }
    }
}

/// A document on the config topic: its key and value (`None` = deleted).
pub type KeyedDocument = (String, Option<Vec<u8>>);

/// Reads the whole config topic and returns the latest document per key,
/// as the engine would see it.
pub fn read_documents(config: &KafkaConfig, timeout: Duration) -> Result<LatestValues, ClientError> {
    read_latest(config, &config.topics.offers_config, timeout)
}

/// The latest value per key of a compacted topic, and whether the topic
/// was read to its end (if not, what is shown may be incomplete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestValues {
    /// In key order; `None` = deleted.
    pub values: Vec<KeyedDocument>,
    /// Partitions not read to their end: (partition, position, end).
    pub unread: Vec<(i32, i64, i64)>,
}

/// The consumer and the watermark probe of [`read_to_end`], in a reader
/// group that commits nothing (committed transactions only, librdkafka's
/// default isolation, said here because the tools rely on it).
fn readers(config: &KafkaConfig) -> Result<(BaseConsumer, BaseConsumer), ClientError> {
    let mut cc = client_config(config, &config.consumer);
    cc.set("group.id", format!("{}-reader", config.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let create = || cc.create().map_err(|source| ClientError::Create { role: "consumer", source });
    Ok((create()?, create()?))
}

/// Reads every message of `topic` from the beginning to its end (committed
/// transactions only), handing each payload to `on_payload`; returns the
/// partitions not read to their end before `timeout`, as (partition,
/// position, end) — empty when complete. For tools that learn from what
/// the engine logged (`cvm train --brokers`).
pub fn read_all(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    mut on_payload: impl FnMut(&[u8]),
) -> Result<Vec<(i32, i64, i64)>, ClientError> {
    let (consumer, probe) = readers(config)?;
    read_to_end(&consumer, &probe, topic, timeout, |msg| {
        if let Some(payload) = msg.payload() {
            on_payload(payload);
        }
    })
    .map_err(|source| ClientError::Request { action: "topic read", source })
}

/// Reads a compacted topic to its end and returns the latest value per key
/// (`None` = deleted), in key order.
pub fn read_latest(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<LatestValues, ClientError> {
    let (consumer, probe) = readers(config)?;
    let mut latest = std::collections::BTreeMap::new();
    let unread = read_to_end(&consumer, &probe, topic, timeout, |msg| {
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        latest.insert(key, msg.payload().filter(|v| !v.is_empty()).map(<[u8]>::to_vec));
    })
    .map_err(|source| ClientError::Request { action: "compacted topic read", source })?;
    Ok(LatestValues { values: latest.into_iter().collect(), unread })
}
