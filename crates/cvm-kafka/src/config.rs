//! Kafka settings: brokers, topics and their formats, batching, clock.

use std::{collections::BTreeMap, time::Duration};

use cvm_engine::driver::Clock;
use cvm_proto::Format;
use serde::{Deserialize, Serialize};

/// A topic and the encoding of its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// `protobuf` or `json` (the canonical proto3 JSON mapping).
    #[serde(default)]
    pub format: Format,
}

impl TopicSpec {
    fn new(name: &str) -> Self {
        Self { name: name.to_owned(), format: Format::Protobuf }
    }
}

/// Every topic cvm reads or writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Input: `Purchase` messages, keyed by customer id.
    pub purchases: TopicSpec,
    /// Input: `AppEnvelope` messages (app events, identifies, consents).
    pub app: TopicSpec,
    /// Input: `EraseRequest`s, keyed by customer id.
    pub erasure: TopicSpec,
    /// Input and output: `DeviceLink`s, keyed by device id — cvm's own
    /// routing of a device's link to the partition its anonymous events
    /// land in.
    pub device_links: TopicSpec,
    /// Input: config documents (offers, `campaign/<id>`, `policy/global`),
    /// YAML or JSON; empty value deletes.
    pub offers_config: String,
    /// Output: one `ConfigStatus` per offer document read.
    pub config_status: TopicSpec,
    /// Output: `Offer`s for push.
    pub push: TopicSpec,
    /// Output: `Offer`s for stories.
    pub stories: TopicSpec,
    /// Output: every `Decision`.
    pub decisions: TopicSpec,
    /// Output: undecodable or invalid input, as received, reason in headers.
    pub dlq: String,
    /// Output: an `ErasureConfirmation` per erase request.
    pub erasure_confirmations: TopicSpec,
    /// Output: `CampaignStats`, the attribution sums as they change (compacted).
    pub stats: TopicSpec,
    /// Every committed state change, per input partition (compacted): how
    /// a partition's state follows it to another instance.
    pub changelog: String,
    /// The exactly-once publisher's progress (compacted): in every
    /// transaction, the transaction's number, keyed by the store's writer
    /// id, so that after a crash the publisher learns whether its last
    /// transaction committed.
    pub publisher_progress: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            purchases: TopicSpec::new("cvm.events.purchases"),
            app: TopicSpec::new("cvm.events.app"),
            erasure: TopicSpec::new("cvm.requests.erasure"),
            device_links: TopicSpec::new("cvm.links.device"),
            offers_config: "cvm.config.offers".into(),
            config_status: TopicSpec::new("cvm.config.status"),
            push: TopicSpec::new("cvm.offers.push"),
            stories: TopicSpec::new("cvm.offers.stories"),
            decisions: TopicSpec::new("cvm.decisions"),
            dlq: "cvm.dlq".into(),
            erasure_confirmations: TopicSpec::new("cvm.erasure.confirmations"),
            stats: TopicSpec::new("cvm.stats"),
            changelog: "cvm.changelog.state".into(),
            publisher_progress: "cvm.publisher.progress".into(),
        }
    }
}

impl Topics {
    /// The input topics, in the order of per-input meters: purchases, app
    /// events, erasures, device links.
    pub fn inputs(&self) -> [&str; 4] {
        [&self.purchases.name, &self.app.name, &self.erasure.name, &self.device_links.name]
    }

    /// Every topic name, inputs first.
    pub fn all(&self) -> [&str; 14] {
        [
            &self.purchases.name,
            &self.app.name,
            &self.erasure.name,
            &self.device_links.name,
            &self.offers_config,
            &self.config_status.name,
            &self.push.name,
            &self.stories.name,
            &self.decisions.name,
            &self.dlq,
            &self.erasure_confirmations.name,
            &self.stats.name,
            &self.changelog,
            &self.publisher_progress,
        ]
    }
}

/// Where to start reading a partition that has no stored state yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained message: builds profiles from history.
    #[default]
    Earliest,
    /// Only new messages.
    Latest,
}

/// How the outbox reaches Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// In Kafka transactions, each with a progress record: after any crash
    /// a `read_committed` consumer sees every message once. Needs a broker
    /// with transactions.
    #[default]
    ExactlyOnce,
    /// With the idempotent producer only: a crash between the broker's
    /// acknowledgement and the outbox delete sends a message again (same
    /// bytes, same ids).
    AtLeastOnce,
}

/// How cvm talks to Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group of the ingest consumers.
    pub group_id: String,
    /// This instance's stable name in the group (static membership): its
    /// workers join as `<instance_id>-<n>`, so a restart within the
    /// session timeout gets the same partitions back without a rebalance.
    /// Unset: dynamic membership (every restart rebalances).
    pub instance_id: Option<String>,
    /// Worker threads, each a group member owning some partitions with
    /// their state; 0: one per core.
    pub workers: usize,
    /// Topic names and formats.
    pub topics: Topics,
    /// `exactly_once` (Kafka transactions) or `at_least_once`.
    pub delivery: Delivery,
    /// Create missing topics at start (with `partitions` partitions).
    pub create_topics: bool,
    /// Partitions of topics created by cvm. Input topics must be
    /// co-partitioned: same count, keyed by customer id.
    pub partitions: i32,
    /// Replication factor of topics created by cvm (3 on a production
    /// cluster; 1 for a single broker).
    pub replication_factor: i32,
    /// When this many entries wait in the outbox (the broker is down or
    /// slow), ingest pauses its partitions and `/readyz` says so; it
    /// resumes below half of it. Bounds memory and disk during an outage.
    pub outbox_max_entries: u64,
    /// Most events applied in one RocksDB batch.
    pub batch_max_events: usize,
    /// Longest a batch waits to fill up.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Decision time source.
    pub clock: Clock,
    /// In event time: how long an input topic may send nothing before it
    /// stops holding back its partitions' watermark (see the driver).
    #[serde(with = "humantime_serde")]
    pub watermark_idle_timeout: Duration,
    /// Start position of partitions without stored state.
    pub start_from: StartFrom,
    /// Raw librdkafka consumer options (win over cvm's defaults).
    pub consumer: BTreeMap<String, String>,
    /// Raw librdkafka producer options (win over cvm's defaults).
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "cvm".into(),
            instance_id: None,
            workers: 0,
            topics: Topics::default(),
            delivery: Delivery::ExactlyOnce,
            create_topics: true,
            partitions: 8,
            replication_factor: 1,
            outbox_max_entries: 200_000,
            batch_max_events: 2_000,
            batch_max_wait: Duration::from_millis(20),
            clock: Clock::Wall,
            watermark_idle_timeout: Duration::from_secs(5),
            start_from: StartFrom::Earliest,
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The number of worker threads: `workers`, or one per core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// Every problem with the settings, as `path: problem; fix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.brokers.trim().is_empty() {
            errors.push(format!("{prefix}.brokers: is empty; set host:port of at least one broker"));
        }
        if self.group_id.trim().is_empty() {
            errors.push(format!("{prefix}.group_id: is empty; name the consumer group"));
        }
        if self.instance_id.as_ref().is_some_and(|id| id.trim().is_empty() || id.len() > 200) {
            errors.push(format!(
                "{prefix}.instance_id: must be 1–200 characters, unique in the group (e.g. the pod name)"
            ));
        }
        if self.workers > 1024 {
            errors.push(format!("{prefix}.workers: at most 1024 (0 means one per core)"));
        }
        if self.partitions < 1 {
            errors.push(format!("{prefix}.partitions: must be at least 1"));
        }
        if self.replication_factor < 1 {
            errors.push(format!("{prefix}.replication_factor: must be at least 1"));
        }
        if self.outbox_max_entries < 2 * self.batch_max_events as u64 {
            errors.push(format!(
                "{prefix}.outbox_max_entries: must be at least twice batch_max_events, or ingest would stop at every batch"
            ));
        }
        if self.batch_max_events == 0 {
            errors.push(format!("{prefix}.batch_max_events: must be at least 1"));
        }
        for owned in [
            "enable.auto.offset.store",
            "group.id",
            "group.instance.id",
            "bootstrap.servers",
            "partition.assignment.strategy",
        ] {
            if self.consumer.contains_key(owned) {
                errors.push(format!(
                    "{prefix}.consumer.\"{owned}\": is managed by cvm (offsets live in the state store); delete it"
                ));
            }
        }
        if self.producer.contains_key("transactional.id") {
            errors.push(format!(
                "{prefix}.producer.\"transactional.id\": is managed by cvm (one per state store); delete it"
            ));
        }
        if self.producer.get("enable.idempotence").is_some_and(|v| v != "true") {
            errors.push(format!(
                "{prefix}.producer.\"enable.idempotence\": must stay true, or retries can duplicate offers; delete it"
            ));
        }
        let names = self.topics.all();
        for (i, a) in names.iter().enumerate() {
            if a.trim().is_empty() {
                errors.push(format!("{prefix}.topics: topic #{i} has an empty name"));
            }
            if names[..i].contains(a) {
                errors.push(format!("{prefix}.topics: \"{a}\" is used twice; every role needs its own topic"));
            }
        }
        errors
    }
}
