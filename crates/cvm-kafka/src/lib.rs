//! The Kafka edges of cvm: the ingest loop that feeds the decision core,
//! the publisher that drains the outbox, and the reader of offer documents
//! on the config topic.
//!
//! Guarantees, and where they come from:
//! - **Nothing lost, nothing applied twice.** The ingest loop never commits
//!   offsets to Kafka as the source of truth: the next offset of every
//!   partition is written in the same RocksDB batch as the state changes and
//!   outbox entries it produced, and on assignment the consumer seeks to it.
//!   Kafka's committed offsets are stored too, but only so lag is visible.
//! - **Nothing sent under a new id.** Decisions and offers have deterministic
//!   ids; the publisher removes an outbox entry only after the broker
//!   acknowledged it, with an idempotent producer. A crash between the ack
//!   and the removal re-sends the entry with the same id (at-least-once with
//!   stable ids; consumers deduplicate on `offer_id`).
//! - **Bad input never stops the engine.** An undecodable or invalid event
//!   goes to the dead-letter topic, with the reason in the `cvm.error`
//!   header, through the same outbox, so it is published exactly when its
//!   offset is consumed.

mod admin;
mod codec;
mod config;
mod consumer;
mod gate;
mod ingest;
mod meters;
mod offers_topic;
mod publisher;
mod restore;

pub use admin::{check_co_partitioned, ensure_topics, AdminError};
pub use codec::{decode_stats, input_message};
pub use config::{Delivery, KafkaConfig, StartFrom, TopicSpec, Topics};
pub use consumer::IngestStatus;
pub use cvm_engine::driver::Clock;
pub use gate::PublishGate;
pub use ingest::{CommittedStats, Ingest, IngestError, Shared};
pub use offers_topic::{
    publish_documents, read_all, read_documents, read_latest, KeyedDocument, LatestValues, OffersReader,
};
pub use publisher::Publisher;
pub use restore::{restore_partition, RestoreError, Restored};

use rdkafka::ClientConfig;

/// A failure talking to Kafka at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// librdkafka refused the configuration.
    #[error("cannot create the Kafka {role}: {source}; check `kafka.brokers` and the raw `kafka.{role}` options")]
    Create {
        /// consumer or producer.
        role: &'static str,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// A request to the brokers failed.
    #[error("Kafka {action} failed: {source}; check that `kafka.brokers` are reachable and the topic exists")]
    Request {
        /// What was attempted.
        action: &'static str,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// Exactly-once delivery needs Kafka transactions, which the broker
    /// does not offer (or not entirely).
    #[error(
        "the broker cannot run transactions ({source}); use a broker with transactions (Kafka ≥ 0.11, Redpanda, …) or \
         set kafka.delivery = \"at_least_once\" (a crash may then send a message twice, with the same id)"
    )]
    NoTransactions {
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
}

/// Wall-clock milliseconds since the epoch: the edge's clock (the decision
/// core never reads one).
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The client config shared by every client: brokers plus raw overrides.
pub(crate) fn client_config(cfg: &KafkaConfig, overrides: &std::collections::BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in overrides {
        c.set(k, v);
    }
    c
}
