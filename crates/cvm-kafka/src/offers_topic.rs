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
        let producer = client_config(config, &config.producer)
            .create()
            .map_err(|source| ClientError::Create { role: "producer", source })?;
        Ok(Self { consumer, producer, catalog, config: config.clone() })
    }

    /// Assigns every partition from the beginning and reads up to the end, so
    /// the engine starts with every offer published so far. Returns the number
    /// of documents read.
    pub fn catch_up(&mut self, timeout: Duration) -> Result<usize, rdkafka::error::KafkaError> {
        let mut read = 0;
        let remaining = read_to_end(&self.consumer, &self.config.topics.offers_config, timeout, |msg| {
            self.apply(msg);
            read += 1;
        })?;
        if !remaining.is_empty() {
            warn!(?remaining, "Config topic not fully read before the timeout; continuing live.");
        }
        info!(documents = read, offers = self.catalog.current().all().len(), "Offer catalog loaded.");
        Ok(read)
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

/// Assigns every partition of `topic` from the beginning and hands each
/// message to `on_message` until the end (the high watermarks read at the
/// start) or `timeout`; returns the partitions left unread, with their ends.
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
    mut on_message: impl FnMut(&BorrowedMessage<'_>),
) -> Result<Vec<(i32, i64)>, rdkafka::error::KafkaError> {
    let deadline = Instant::now() + timeout;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = Vec::new();
    for p in md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            remaining.push((p, high));
        }
    }
    consumer.assign(&tpl)?;
    while !remaining.is_empty() && Instant::now() < deadline {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) {
            on_message(&msg);
            remaining.retain(|(p, high)| !(*p == msg.partition() && msg.offset() + 1 >= *high));
        }
    }
    Ok(remaining)
}

/// A document on the config topic: its key and value (`None` = deleted).
pub type KeyedDocument = (String, Option<Vec<u8>>);

/// Reads the whole config topic and returns the latest document per key,
/// as the engine would see it.
pub fn read_documents(config: &KafkaConfig, timeout: Duration) -> Result<Vec<KeyedDocument>, ClientError> {
    read_latest(config, &config.topics.offers_config, timeout)
}

/// Reads a compacted topic to its end and returns the latest value per key
/// (`None` = deleted), in key order.
pub fn read_latest(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<KeyedDocument>, ClientError> {
    let mut cc = client_config(config, &config.consumer);
    cc.set("group.id", format!("{}-reader", config.group_id)).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cc.create().map_err(|source| ClientError::Create { role: "consumer", source })?;
    let mut latest = std::collections::BTreeMap::new();
    let remaining = read_to_end(&consumer, topic, timeout, |msg| {
        let key = msg.key().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        latest.insert(key, msg.payload().filter(|v| !v.is_empty()).map(<[u8]>::to_vec));
    })
    .map_err(|source| ClientError::Request { action: "compacted topic read", source })?;
    if !remaining.is_empty() {
        warn!(topic, ?remaining, "Topic not read to the end before the timeout; the result is incomplete.");
    }
    Ok(latest.into_iter().collect())
}
