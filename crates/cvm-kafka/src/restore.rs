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
pub(crate) enum RestoreError {
    /// Reading the changelog failed.
    #[error("cannot read changelog {topic} partition {partition}: {source}; is the broker reachable?")]
    Kafka {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The changelog was not read to its end in time.
    #[error("changelog {topic} partition {partition} not read to its end within {timeout:?}")]
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
pub(crate) enum Restored {
    /// The local state was the latest.
    Current,
    /// The changelog holds no complete commit.
    Empty,
    /// Rebuilt from another writer's changelog: records applied, time taken.
    Rebuilt { records: u64, took: Duration },
}

impl Restored {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Empty => "empty",
            Self::Rebuilt { .. } => "restored",
        }
    }
}

/// Brings `partition`'s local state up to its changelog; see the module docs.
pub(crate) fn restore_partition(
    config: &KafkaConfig,
    store: &Store,
    partition: i32,
    timeout: Duration,
) -> Result<Restored, RestoreError> {
    let topic = config.topics.changelog.as_str();
    let kafka = |source| RestoreError::Kafka { topic: topic.to_owned(), partition, source };
    let mut cc = client_config(config, &config.consumer);
    cc.set("group.id", format!("{}-restore", config.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // The partition is read once, as fast as the broker sends it: do
        // not let a fetch wait for more data to arrive.
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = cc.create().map_err(kafka)?;
    let deadline = Instant::now() + timeout;

    // Pass 1: where is the last complete commit, and whose is it?
    let mut last_marker = None;
    let end = read_partition(&consumer, topic, partition, deadline, timeout, |msg| {
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
    let dropped = store.drop_unpublished_changelog(partition as u32)?;
    store.wipe_partition(partition as u32)?;
    let mut pending: Vec<ChangelogRecord> = Vec::new();
    let (mut applied, mut unknown, mut failed) = (0u64, 0usize, None);
    read_partition(&consumer, topic, partition, deadline, timeout, |msg| {
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

/// Reads `topic`/`partition` from its beginning to its end (an end that
/// held for [`END_SETTLE`]); returns the end offset.
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    deadline: Instant,
    timeout: Duration,
    mut on_message: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> Result<i64, RestoreError> {
    let kafka = |source| RestoreError::Kafka { topic: topic.to_owned(), partition, source };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).map_err(kafka)?;
    consumer.assign(&tpl).map_err(kafka)?;
    let mut next = 0i64;
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
                None if next.max(low) >= high => break,
                None => {}
            }
        }
    }
}
