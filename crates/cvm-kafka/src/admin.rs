//! Topic creation for the quickstart, tests and `kafka.create_topics`, and
//! the co-partitioning check at start.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::RDKafkaErrorCode,
};

use crate::{client_config, KafkaConfig};

/// Topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin client or request failed.
    #[error("cannot create topics on {brokers}: {source}; is the broker reachable?")]
    Kafka {
        /// Brokers asked.
        brokers: String,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The input topics have different partition counts (or are missing).
    #[error(
        "input topics are not co-partitioned: {counts:?} (topic, partitions); give them the same partition count \
         (kafka.partitions) and key every event by customer id"
    )]
    NotCoPartitioned {
        /// Each input topic and its partition count.
        counts: Vec<(String, usize)>,
    },
    /// The broker refused a topic.
    #[error("broker refused to create topic {topic}: {code}; create it by hand or fix the broker's permissions")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
}

/// Creates every topic of `config` that does not exist, with
/// `config.partitions` partitions and `config.replication_factor` replicas.
/// The config, status, stats, changelog and publisher progress topics are
/// compacted: each holds the latest value per key (a document, a partition's
/// totals, a state record, a transaction number), which is all a reader
/// needs, so old values must not fill the disk or expire.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), AdminError> {
    let brokers = &config.brokers;
    let kafka = |source| AdminError::Kafka { brokers: brokers.to_owned(), source };
    let admin: AdminClient<DefaultClientContext> = client_config(config, &config.producer).create().map_err(kafka)?;
    let t = &config.topics;
    let compacted = [
        t.offers_config.as_str(),
        t.stats.name.as_str(),
        t.config_status.name.as_str(),
        t.changelog.as_str(),
        t.publisher_progress.as_str(),
    ];
    let new: Vec<NewTopic<'_>> = t
        .all()
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(name, config.partitions, TopicReplication::Fixed(config.replication_factor));
            if compacted.contains(&name) {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &opts).await.map_err(kafka)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
        }
    }
    Ok(())
}

/// Checks that the input topics (device links included) and the changelog
/// are co-partitioned (the same partition count): a customer's purchases
/// and app events must reach the same partition, whose state holds the
/// customer and is changelogged to the partition of that number; a device's
/// link must reach the partition its anonymous events land in.
pub fn check_co_partitioned(config: &KafkaConfig) -> Result<(), AdminError> {
    let brokers = &config.brokers;
    let kafka = |source| AdminError::Kafka { brokers: brokers.to_owned(), source };
    let consumer: BaseConsumer = client_config(config, &config.consumer).create().map_err(kafka)?;
    let t = &config.topics;
    let mut counts = Vec::new();
    for topic in t.inputs().into_iter().chain([t.changelog.as_str()]) {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(kafka)?;
        let partitions = md.topics().first().map_or(0, |m| m.partitions().len());
        counts.push((topic.to_owned(), partitions));
    }
    if counts.iter().any(|(_, n)| *n != counts[0].1 || *n == 0) {
        return Err(AdminError::NotCoPartitioned { counts });
    }
    Ok(())
}
