//! Harness for the end-to-end tests: a broker, topics unique to each test,
//! a producer of input events and a reader of output topics.
//!
//! The broker is librdkafka's in-process mock cluster, unless
//! `CVM_TEST_BROKERS` names a real Kafka-compatible broker (the test script
//! starts tansu and sets it), so the same tests run against both.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use cvm::{service::ops::Health, Config, Pipeline};
use cvm_engine::Event;
use cvm_kafka::{input_message, Clock, Topics};
use rand::Rng;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Headers, Message},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer},
    ClientConfig, Offset, TopicPartitionList,
};

/// Partitions of every test topic.
pub const PARTITIONS: i32 = 2;

/// How long a topic or the pipeline must stay unchanged to count as settled.
pub const QUIET: Duration = Duration::from_millis(1500);

/// The broker under test.
pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    External(String),
}

impl Broker {
    pub fn start() -> Self {
        match std::env::var("CVM_TEST_BROKERS") {
            Ok(b) if !b.is_empty() => Broker::External(b),
            _ => Broker::Mock(MockCluster::new(1).expect("start mock cluster")),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::External(b) => b.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "in-process mock",
            Broker::External(_) => "external",
        }
    }
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One test's world: a broker, its topics, a state directory.
pub struct Harness {
    pub broker: Broker,
    pub config: Config,
    pub dir: tempfile::TempDir,
    producer: BaseProducer,
}

/// Whether the suite runs on tansu (`CVM_TANSU` names its binary).
pub fn on_tansu() -> bool {
    std::env::var_os("CVM_TANSU").is_some()
}

impl Harness {
    pub async fn new() -> Self {
        Self::on(Broker::start()).await
    }

    /// A harness on `broker`, e.g. one the test starts and stops itself.
    /// On tansu (`CVM_TANSU` set), or with `CVM_TEST_DELIVERY=at_least_once`,
    /// delivery is at least once.
    /// `CVM_TEST_LOG` (a `tracing` filter, e.g. `cvm_kafka=info`) shows
    /// the engine's logs.
    pub async fn on(broker: Broker) -> Self {
        if let Ok(filter) = std::env::var("CVM_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let prefix = format!("t{:08x}", rand::rng().random::<u32>());
        let mut config = Config::default();
        config.kafka.brokers = broker.bootstrap();
        config.kafka.group_id = format!("{prefix}-group");
        config.kafka.partitions = PARTITIONS;
        config.kafka.clock = Clock::EventTime;
        config.kafka.batch_max_events = 200;
        // A member that left without a word (a killed engine; or, on the
        // in-process broker, one that closed) holds a rebalance up for this
        // long, not the 45 s default.
        config.kafka.consumer.insert("session.timeout.ms".into(), "6000".into());
        config.kafka.consumer.insert("heartbeat.interval.ms".into(), "500".into());
        let t = &mut config.kafka.topics;
        for spec in [
            &mut t.purchases,
            &mut t.app,
            &mut t.erasure,
            &mut t.device_links,
            &mut t.push,
            &mut t.stories,
            &mut t.decisions,
            &mut t.config_status,
            &mut t.erasure_confirmations,
            &mut t.stats,
        ] {
            spec.name = format!("{prefix}.{}", spec.name);
        }
        for name in [&mut t.offers_config, &mut t.dlq, &mut t.changelog, &mut t.publisher_progress] {
            *name = format!("{prefix}.{name}");
        }
        if on_tansu() || std::env::var("CVM_TEST_DELIVERY").is_ok_and(|d| d == "at_least_once") {
            // tansu 0.6.0 does not serve EndTxn: no transaction can commit.
            config.kafka.delivery = cvm_kafka::Delivery::AtLeastOnce;
        }
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        config.store.path = dir.path().join("state");
        config.store.block_cache_mb = 16;
        config.store.memtable_budget_mb = 8;
        config.store.write_buffer_mb = 8;
        match &broker {
            Broker::Mock(m) => {
                for topic in config.kafka.topics.all() {
                    m.create_topic(topic, PARTITIONS, 1).unwrap();
                }
                config.kafka.create_topics = false;
            }
            Broker::External(b) => {
                config.kafka.brokers.clone_from(b);
                cvm_kafka::ensure_topics(&config.kafka).await.expect("create topics");
            }
        }
        let mut producer = ClientConfig::new();
        producer.set("bootstrap.servers", broker.bootstrap()).set("linger.ms", "5");
        if let Broker::External(_) = broker {
            // tansu 0.6.0 answers a fetch that starts inside a record batch
            // with the batch's first records under later offsets (and drops
            // the rest): one record per batch keeps every fetch at a batch
            // start, whatever the engine's position.
            producer.set("batch.num.messages", "1");
        }
        let producer = producer.create().expect("create producer");
        eprintln!("broker: {} ({}), topics {prefix}.*", broker.name(), broker.bootstrap());
        Self { broker, config, dir, producer }
    }

    pub fn topics(&self) -> &Topics {
        &self.config.kafka.topics
    }

    pub async fn start(&self) -> Pipeline {
        self.start_with(Health::default()).await
    }

    /// Starts the pipeline reporting to `health` (to watch readiness).
    pub async fn start_with(&self, health: Health) -> Pipeline {
        Pipeline::start(&self.config, health).await.expect("pipeline starts")
    }

    pub fn send_raw(&self, topic: &str, key: &str, payload: Option<&[u8]>) {
        let mut record = BaseRecord::<str, [u8]>::to(topic).key(key);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer.send(record).map_err(|(e, _)| e).expect("enqueue");
        self.producer.poll(Duration::ZERO);
    }

    /// Sends an input event, keyed by its customer (or device).
    pub fn send(&self, key: &str, event: &Event) {
        let (topic, payload) = input_message(self.topics(), event);
        self.send_raw(topic, key, Some(&payload));
    }

    /// Sends an input event to `partition` of its topic.
    pub fn send_to(&self, partition: i32, key: &str, event: &Event) {
        let (topic, payload) = input_message(self.topics(), event);
        let record = BaseRecord::<str, [u8]>::to(topic).key(key).partition(partition).payload(&payload);
        self.producer.send(record).map_err(|(e, _)| e).expect("enqueue");
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until the pipeline has committed `n` input messages.
    pub async fn wait_consumed(&self, pipeline: &Pipeline, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.consumed(pipeline) < n {
            assert!(!pipeline.ingest_failed(), "ingest loop died");
            assert!(Instant::now() < deadline, "pipeline consumed {} of {n}", self.consumed(pipeline));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Every message on `topic`, read from the beginning until the high
    /// watermarks are reached and nothing new arrived for [`QUIET`]. (The
    /// quiet period matters: tansu 0.6 reports high watermarks that lag its
    /// log when records arrive in batches, so watermarks alone stop early.)
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap())
            .set("group.id", format!("{topic}-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = Vec::new();
        for p in 0..PARTITIONS {
            let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
                remaining.push((p, high));
            }
        }
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            if !remaining.iter().any(|(q, _)| *q == p) {
                tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_message = Instant::now();
        while !remaining.is_empty() || last_message.elapsed() < QUIET {
            assert!(Instant::now() < deadline, "timed out reading {topic}; still missing {remaining:?}");
            let msg = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                // The end, past the transaction markers that are never handed out.
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    remaining.retain(|(q, _)| *q != p);
                    continue;
                }
                Some(other) => other.unwrap(),
            };
            last_message = Instant::now();
            let headers = msg
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            out.push(Record {
                key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
                payload: msg.payload().unwrap_or_default().to_vec(),
                headers,
            });
            remaining.retain(|(p, high)| !(*p == msg.partition() && msg.offset() + 1 >= *high));
        }
        out
    }

    /// Sum of the high watermarks of the input topics.
    pub fn input_end(&self) -> i64 {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", self.broker.bootstrap()).create().unwrap();
        let t = self.topics();
        let mut n = 0;
        for topic in [&t.purchases.name, &t.app.name, &t.erasure.name] {
            for p in 0..PARTITIONS {
                n += consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1;
            }
        }
        n
    }

    /// Input messages the pipeline has committed.
    pub fn consumed(&self, pipeline: &Pipeline) -> i64 {
        let t = self.topics();
        let mut n = 0;
        for topic in [&t.purchases.name, &t.app.name, &t.erasure.name] {
            for p in 0..PARTITIONS {
                n += pipeline.store().next_offset(topic, p).unwrap().unwrap_or(0);
            }
        }
        n
    }

    /// Waits until the pipeline has consumed every input message (the high
    /// watermarks, and no progress for [`QUIET`]) and published its outbox.
    pub async fn wait_idle(&self, pipeline: &Pipeline) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let (mut last, mut since) = (-1, Instant::now());
        loop {
            assert!(!pipeline.ingest_failed(), "ingest loop died");
            let consumed = self.consumed(pipeline);
            if consumed != last {
                (last, since) = (consumed, Instant::now());
            }
            let settled = since.elapsed() >= QUIET && consumed >= self.input_end();
            if settled && pipeline.store().outbox_depth(0).unwrap() == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "pipeline did not catch up: {consumed} of {}", self.input_end());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `cond` holds for the live catalog.
    pub async fn wait_catalog(&self, pipeline: &Pipeline, cond: impl Fn(&cvm_engine::Catalog) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(&pipeline.catalog().current()) {
            assert!(Instant::now() < deadline, "catalog never reached the expected state");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
