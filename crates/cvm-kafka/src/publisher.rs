//! Drains the outbox to Kafka with an idempotent producer.
//!
//! Entries are removed only after the broker acknowledged them; a failed send
//! stays in the outbox and is retried after a back-off, so a broker outage
//! delays offers but loses none.

use std::{sync::Arc, time::Duration};

use cvm_engine::telemetry;
use cvm_store::Store;
use futures::future::join_all;
use metrics::{counter, gauge};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::{client_config, ClientError, KafkaConfig};

/// Entries sent per round.
const CHUNK: usize = 5_000;

/// The outbox publisher.
pub struct Publisher {
    producer: FutureProducer,
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
        let mut cc = client_config(config, &std::collections::BTreeMap::new());
        cc.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000");
        for (k, v) in &config.producer {
            cc.set(k, v);
        }
        let producer = cc.create().map_err(|source| ClientError::Create { role: "producer", source })?;
        Ok(Self { producer, store, wake })
    }

    /// Publishes until `drain` turns true and the outbox is empty.
    pub async fn run(self, mut drain: watch::Receiver<bool>) {
        let mut next = 0u64;
        loop {
            let entries = match self.store.outbox_peek(next, CHUNK) {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "Cannot read the outbox; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let first = entries.first().map_or(self.store.outbox_next_seq(), |(s, _)| *s);
            gauge!(telemetry::OUTBOX_DEPTH).set(self.store.outbox_next_seq().saturating_sub(first) as f64);
            if entries.is_empty() {
                if *drain.borrow() {
                    break;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = drain.changed() => {}
                }
                continue;
            }
            let sends = entries.iter().map(|(seq, e)| {
                let mut headers = OwnedHeaders::new_with_capacity(e.headers.len());
                for (k, v) in &e.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                let record = FutureRecord::to(&e.topic).key(&e.key).payload(&e.payload).headers(headers);
                let fut = self.producer.send(record, Timeout::Never);
                async move { (*seq, &e.topic, fut.await) }
            });
            let mut delivered = Vec::with_capacity(entries.len());
            let mut failed = 0;
            for (seq, topic, result) in join_all(sends).await {
                match result {
                    Ok(_) => {
                        counter!(telemetry::PUBLISHED, "topic" => topic.clone()).increment(1);
                        delivered.push(seq);
                    }
                    Err((e, _)) => {
                        failed += 1;
                        if failed == 1 {
                            warn!(error = %e, topic, "Publish failed; the entry stays in the outbox.");
                        }
                    }
                }
            }
            if let Err(e) = self.store.outbox_remove(delivered.iter().copied()) {
                warn!(error = %e, "Cannot remove delivered entries; they will be re-sent with the same ids.");
            }
            if failed > 0 {
                counter!(telemetry::PUBLISH_ERRORS).increment(failed);
                tokio::time::sleep(Duration::from_millis(500)).await;
                next = first; // retry from the oldest undelivered entry
            } else {
                next = entries.last().map_or(next, |(s, _)| s + 1);
            }
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            warn!(error = %e, "Producer flush at shutdown failed.");
        }
        info!("Publisher drained.");
    }
}
