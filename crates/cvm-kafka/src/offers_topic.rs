//! Reads offer documents from the config topic, at start and live.
//!
//! The topic is compacted and keyed by offer id; an empty value deletes the
//! offer. Each document is validated; a bad one is rejected with its errors
//! on the status topic while the last good version of that offer keeps
//! running. Accepted versions must not go backwards.

use std::{
    sync::{atomic::AtomicBool, atomic::Ordering, Arc, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cvm_engine::{Catalog, ConfigDocument};
use cvm_proto::{encode, v1::ConfigStatus};
use metrics::{counter, gauge};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Message},
    producer::{BaseRecord, DefaultProducerContext, ThreadedProducer},
    Offset, TopicPartitionList,
};
use tracing::{info, warn};

use crate::{client_config, telemetry, ClientError, KafkaConfig};

/// The live catalog, shared between the reader and the ingest loop. Each
/// update bumps a generation so readers notice changes cheaply.
#[derive(Debug, Clone, Default)]
pub struct SharedCatalog {
    inner: Arc<RwLock<(u64, Arc<Catalog>)>>,
}

impl SharedCatalog {
    /// The current generation and catalog.
    pub fn get(&self) -> (u64, Arc<Catalog>) {
        let g = self.inner.read().expect("catalog lock poisoned");
        (g.0, g.1.clone())
    }

    /// Replaces the catalog with `f(current)`.
    pub fn update(&self, f: impl FnOnce(&Catalog) -> Catalog) {
        let mut g = self.inner.write().expect("catalog lock poisoned");
        let next = f(&g.1);
        gauge!(telemetry::OFFERS_ACTIVE).set(next.all().len() as f64);
        *g = (g.0 + 1, Arc::new(next));
    }
}

/// Applies one document to the catalog; returns the status to publish.
pub(crate) fn apply_document(catalog: &SharedCatalog, key: &str, value: Option<&[u8]>) -> ConfigStatus {
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let Some(bytes) = value.filter(|v| !v.is_empty()) else {
        catalog.update(|c| c.without_key(key));
        counter!(telemetry::CONFIG_DOCUMENTS, "result" => "deleted").increment(1);
        info!(key, "Config document deleted.");
        return ConfigStatus { offer_definition_id: key.to_owned(), accepted: true, version: 0, errors: vec![], at_ms };
    };
    let (_, current) = catalog.get();
    let checked = ConfigDocument::parse(key, bytes).and_then(|doc| match current.version_of(key, &doc) {
        Some((running, same)) if doc.version() < running || (doc.version() == running && !same) => {
            Err(cvm_engine::OfferError {
                id: key.to_owned(),
                errors: vec![format!(
                    "version: {} does not supersede running version {running}; raise the version on every edit",
                    doc.version(),
                )],
            })
        }
        _ => Ok(doc),
    });
    match checked {
        Ok(doc) => {
            let version = doc.version();
            info!(key, version, "Config document accepted.");
            catalog.update(|c| c.with_document(doc));
            counter!(telemetry::CONFIG_DOCUMENTS, "result" => "accepted").increment(1);
            ConfigStatus { offer_definition_id: key.to_owned(), accepted: true, version, errors: vec![], at_ms }
        }
        Err(e) => {
            warn!(key, errors = ?e.errors, "Config document rejected; the last good version keeps running.");
            counter!(telemetry::CONFIG_DOCUMENTS, "result" => "rejected").increment(1);
            ConfigStatus {
                offer_definition_id: key.to_owned(),
                accepted: false,
                version: current.running_version(key).unwrap_or(0),
                errors: e.errors,
                at_ms,
            }
        }
    }
}

/// The config-topic reader.
pub struct OffersReader {
    consumer: BaseConsumer,
    producer: ThreadedProducer<DefaultProducerContext>,
    catalog: SharedCatalog,
    config: KafkaConfig,
}

impl std::fmt::Debug for OffersReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffersReader").field("topic", &self.config.topics.offers_config).finish()
    }
}

impl OffersReader {
    /// Creates the reader; call [`catch_up`](Self::catch_up), then [`follow`](Self::follow).
    pub fn new(config: &KafkaConfig, catalog: SharedCatalog) -> Result<Self, ClientError> {
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
        info!(documents = read, offers = self.catalog.get().1.all().len(), "Offer catalog loaded.");
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
        let status = apply_document(&self.catalog, &key, msg.payload());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u32, title: &str) -> Vec<u8> {
        format!(
            "id: o1\nversion: {version}\ncampaign_id: c\ntrigger: {{ kind: event, event: app_open }}\n\
             channels: {{ push: {{ title: \"{title}\", body: hi }} }}\neconomics: {{ margin_per_redemption_minor: 100 }}\n"
        )
        .into_bytes()
    }

    #[test]
    fn bad_document_is_rejected_and_the_good_version_keeps_running() {
        let catalog = SharedCatalog::default();
        assert!(apply_document(&catalog, "o1", Some(&doc(1, "hello"))).accepted);
        let bad = apply_document(&catalog, "o1", Some(&doc(2, "")));
        assert!(!bad.accepted);
        assert_eq!(bad.version, 1, "status names the version still running");
        assert!(bad.errors[0].starts_with("channels.push.title: is empty"), "{:?}", bad.errors);
        let title = |c: &SharedCatalog| c.get().1.get("o1").unwrap().doc.channels.push.clone().unwrap().title;
        assert_eq!(title(&catalog), "hello");

        let stale = apply_document(&catalog, "o1", Some(&doc(1, "changed")));
        assert!(stale.errors[0].starts_with("version:"), "{:?}", stale.errors);
        let wrong_key = apply_document(&catalog, "other", Some(&doc(3, "x")));
        assert!(wrong_key.errors[0].starts_with("id:"));

        assert!(apply_document(&catalog, "o1", Some(&doc(2, "edited"))).accepted);
        assert_eq!(catalog.get().1.get("o1").unwrap().version(), 2);
        assert_eq!(title(&catalog), "edited");
        assert!(apply_document(&catalog, "o1", None).accepted);
        assert!(catalog.get().1.get("o1").is_none(), "tombstone deletes");
    }
}
