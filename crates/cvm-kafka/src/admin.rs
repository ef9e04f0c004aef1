//! Topic creation for the quickstart, tests and `kafka.create_topics`.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
    ClientConfig,
};

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
    /// The broker refused a topic.
    #[error("broker refused to create topic {topic}: {code}; create it by hand or fix the broker's permissions")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
}

/// Creates each topic in `topics` with `partitions` partitions unless it exists.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), AdminError> {
    let kafka = |source| AdminError::Kafka { brokers: brokers.to_owned(), source };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().map_err(kafka)?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &opts).await.map_err(kafka)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Refused { topic, code }),
        }
    }
    Ok(())
}
