//! Restoring a partition's state from the changelog when this instance
//! gains the partition, before any of its events is applied.
//!
//! The changelog partition is read to its end and its last commit marker
//! decides:
//! - no marker: nothing complete was ever published; the local state (if
//!   any) is all there is;
//! - this store's own marker, of a commit it still has (its commit number
//!   is at most the local one): the latest published history is this
//!   instance's, and its local state holds that and possibly more (commits
//!   still in its outbox) — nothing to do;
//! - another writer's marker, or one of this store's commits that it lost
//!   (a power loss took the unsynced end of its write-ahead log after the
//!   commit was published): the local copy (if any) is stale. It is wiped, with this instance's
//!   unpublished changelog records for it (publishing them would interleave
//!   two histories), and the records before the last marker are applied.
//!   Records after it are a commit that was never completed — its writer
//!   died while publishing it — and its input is read again.
//!
//! The restored state carries the input offsets of its last commit, so the
//! consumer resumes exactly after them.

use std::time::{Duration, Instant};

use cvm_engine::telemetry;
use cvm_store::{commit_marker, ChangelogRecord, Store};
use metrics::counter;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Message,
    Offset, TopicPartitionList,
};
use tracing::info;

use crate::{client_config, KafkaConfig};

/// Records applied in one RocksDB write while restoring (at commit boundaries).
const APPLY_CHUNK: usize = 20_000;

/// How long the end of a changelog partition must hold before it is trusted
/// (a broker may report a high watermark that lags its log).
const END_SETTLE: Duration = Duration::from_millis(300);

/// Why a restore failed; the caller retries.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the changelog failed.
    #[error("cannot read {topic} partition {partition}: {source}; is the broker reachable?")]
    Kafka {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The changelog was not read to its end in time.
    #[error("{topic} partition {partition} not read to its end within {timeout:?}")]
    Timeout {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The time allowed.
        timeout: Duration,
    },
    /// Writing the restored state failed.
    #[error(transparent)]
    Store(#[from] cvm_engine::StoreError),
}

/// What gaining a partition took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The local state was the latest.
    Current,
    /// The changelog holds no complete commit.
    Empty,
    /// Rebuilt from another writer's changelog.
    Rebuilt {
        /// Changelog records applied.
        records: u64,
        /// Time taken.
        took: Duration,
    },
}

impl Restored {
    /// The `restore` label of `cvm_partitions_assigned_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Empty => "empty",
            Self::Rebuilt { .. } => "restored",
        }
    }
}

/// Brings `partition`'s local state up to its changelog; see the module docs.
pub fn restore_partition(
    config: &KafkaConfig,
    store: &Store,
    partition: i32,
    timeout: Duration,
) -> Result<Restored, RestoreError> {
    let topic = config.topics.changelog.as_str();
    let deadline = Instant::now() + timeout;

    // Pass 1: where is the last complete commit, and whose is it?
    let mut last_marker = None;
    let end = read_partition(config, topic, partition, 0, deadline, timeout, |msg| {
        if let Some(marker) = commit_marker(msg.key().unwrap_or_default(), msg.payload()) {
            last_marker = Some((msg.offset(), marker));
        }
    })?;
    let Some((marker_offset, marker)) = last_marker else { return Ok(Restored::Empty) };
    if marker.writer == store.writer_id() && marker.commit <= store.commit_number(partition as u32)? {
        return Ok(Restored::Current);
    }

    // Pass 2: replace the local copy by the records before the last marker.
    let started = Instant::now();
    let dropped = store.drop_unpublished(partition as u32)?;
    store.wipe_partition(partition as u32)?;
    let mut pending: Vec<ChangelogRecord> = Vec::new();
    let (mut applied, mut unknown, mut failed) = (0u64, 0usize, None);
    read_partition(config, topic, partition, 0, deadline, timeout, |msg| {
        if failed.is_some() || msg.offset() > marker_offset {
            return;
        }
        let key = msg.key().unwrap_or_default().to_vec();
        let is_marker = commit_marker(&key, msg.payload()).is_some();
        pending.push((key, msg.payload().map(<[u8]>::to_vec)));
        if is_marker && (pending.len() >= APPLY_CHUNK || msg.offset() == marker_offset) {
            match store.apply_changelog(&pending) {
                Ok(n) => unknown += n,
                Err(e) => failed = Some(e),
            }
            applied += pending.len() as u64;
            counter!(telemetry::RESTORE_RECORDS).increment(pending.len() as u64);
            pending.clear();
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let took = started.elapsed();
    info!(
        partition,
        records = applied,
        ?took,
        end,
        dropped_own_records = dropped,
        unknown_records = unknown,
        "Partition restored from the changelog."
    );
    Ok(Restored::Rebuilt { records: applied, took })
}

/// Reads `topic`/`partition` from offset `from` to its end (an end that
/// held for [`END_SETTLE`]), `read_committed`, with a consumer of its own
/// (one re-assigned to the beginning may still hand out what it fetched
/// before); returns the end offset.
pub(crate) fn read_partition(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    from: i64,
    deadline: Instant,
    timeout: Duration,
    mut on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<i64, RestoreError> {
    let kafka = |source| RestoreError::Kafka { topic: topic.to_owned(), partition, source };
    let mut cc = client_config(config, &config.consumer);
    cc.set("group.id", format!("{}-restore", config.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // The partition is read once, as fast as the broker sends it: do
        // not let a fetch wait for more data to arrive.
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = cc.create().map_err(kafka)?;
    let mut tpl = TopicPartitionList::new();
    let start = if from <= 0 { Offset::Beginning } else { Offset::Offset(from) };
    tpl.add_partition_offset(topic, partition, start).map_err(kafka)?;
    consumer.assign(&tpl).map_err(kafka)?;
    let mut next = from;
    let mut settled_since: Option<Instant> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(RestoreError::Timeout { topic: topic.to_owned(), partition, timeout });
        }
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, remaining.min(Duration::from_secs(5))).map_err(kafka)?;
        if next.max(low) >= high {
            match settled_since {
                Some(since) if since.elapsed() >= END_SETTLE => return Ok(high),
                Some(_) => {}
                None => settled_since = Some(Instant::now()),
            }
        } else {
            settled_since = None;
        }
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(msg)) => {
                    next = msg.offset() + 1;
                    settled_since = None;
                    on_message(&msg);
                }
                Some(Err(e)) => return Err(kafka(e)),
                None => {
                    // Past transaction markers, which are never handed out.
                    if let Some(Offset::Offset(at)) =
                        consumer.position().ok().and_then(|p| p.find_partition(topic, partition).map(|e| e.offset()))
                    {
                        next = next.max(at);
                    }
                    if next.max(low) >= high {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cvm_engine::{Profile, StateTxn};
    use cvm_store::{OutboxEntry, StoreConfig};
    use rdkafka::{
        mocking::MockCluster,
        producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer},
    };

    use super::*;

    const TOPIC: &str = "changelog";

    fn open(path: &std::path::Path) -> Store {
        let config = StoreConfig {
            path: path.to_owned(),
            block_cache_mb: 8,
            memtable_budget_mb: 4,
            write_buffer_mb: 4,
            ..Default::default()
        };
        Store::open(&config).unwrap().with_changelog(TOPIC)
    }

    /// Commits a profile for `customer` in partition 0 (with its lifetime orders as `orders`).
    fn commit(store: &Store, customer: &str, orders: u64) {
        let mut b = store.begin();
        b.put_profile(0, customer, Profile { lifetime_orders: orders, ..Default::default() }).unwrap();
        b.set_next_offset("in", 0, orders as i64);
        b.commit().unwrap();
    }

    /// Produces `store`'s unpublished changelog entries (the publisher's job), `keep` of them.
    fn publish(mock: &MockCluster<'_, DefaultProducerContext>, store: &Store, keep: usize) {
        let producer: BaseProducer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
        let entries: Vec<(u64, OutboxEntry)> =
            store.outbox_peek(0, usize::MAX).unwrap().into_iter().filter(|(_, e)| e.topic == TOPIC).collect();
        for (_, e) in entries.iter().take(keep) {
            let mut record = BaseRecord::<[u8], [u8]>::to(TOPIC).key(&e.key[..]).partition(e.partition.unwrap());
            if !e.tombstone {
                record = record.payload(&e.payload[..]);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        store.outbox_remove(entries.iter().take(keep).map(|(seq, _)| *seq)).unwrap();
    }

    fn restore(mock: &MockCluster<'_, DefaultProducerContext>, store: &Store) -> Restored {
        let config = KafkaConfig {
            brokers: mock.bootstrap_servers(),
            topics: crate::Topics { changelog: TOPIC.into(), ..Default::default() },
            ..Default::default()
        };
        restore_partition(&config, store, 0, Duration::from_secs(30)).unwrap()
    }

    fn orders(store: &Store, customer: &str) -> Option<u64> {
        store.profile(0, customer).unwrap().map(|p| p.lifetime_orders)
    }

    #[test]
    fn a_partition_is_rebuilt_from_another_writer_up_to_its_last_complete_commit() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic(TOPIC, 1, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let writer = open(&dir.path().join("writer"));
        commit(&writer, "a", 1);
        commit(&writer, "b", 2);
        publish(&mock, &writer, usize::MAX);
        // A third commit whose writer died while publishing it: records, no marker.
        commit(&writer, "c", 3);
        publish(&mock, &writer, 1);

        let reader = open(&dir.path().join("reader"));
        commit(&reader, "stale", 9);
        assert!(matches!(restore(&mock, &reader), Restored::Rebuilt { .. }));
        assert_eq!((orders(&reader, "a"), orders(&reader, "b")), (Some(1), Some(2)));
        assert_eq!(orders(&reader, "c"), None, "the half-published commit is not applied");
        assert_eq!(orders(&reader, "stale"), None, "the reader's own history of the partition is replaced");
        assert_eq!(reader.next_offset("in", 0).unwrap(), Some(2), "input resumes after the last complete commit");
        assert_eq!(reader.commit_number(0).unwrap(), 2);

        assert_eq!(restore(&mock, &writer), Restored::Current, "the last marker is the writer's own");
    }

    #[test]
    fn a_store_that_lost_published_commits_restores_them() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic(TOPIC, 1, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (live, lost) = (dir.path().join("live"), dir.path().join("lost"));
        {
            let store = open(&live);
            commit(&store, "a", 1);
        }
        // The state as a power loss would leave it: the same store, one commit behind.
        std::fs::create_dir(&lost).unwrap();
        for f in std::fs::read_dir(&live).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), lost.join(f.file_name())).unwrap();
        }
        let store = open(&live);
        commit(&store, "b", 2);
        publish(&mock, &store, usize::MAX);

        let behind = open(&lost);
        assert_eq!(behind.writer_id(), store.writer_id());
        assert_eq!(orders(&behind, "b"), None);
        assert!(matches!(restore(&mock, &behind), Restored::Rebuilt { .. }), "its own marker, of a commit it lacks");
        assert_eq!(orders(&behind, "b"), Some(2));
    }
}
