//! `cvm bench-restore`: how fast partitions' state comes back from the
//! changelog. Loads synthetic profiles into a store that queues its
//! changelog, produces those records to the in-process broker, then
//! restores every partition, one after the other, into an empty store and
//! reports profiles/s.
//!
//! The in-process broker keeps about 5 MB per partition and drops older
//! records, so the profiles are spread over partitions of at most
//! [`PER_PARTITION`]; the benchmark checks that nothing was dropped.

use std::time::{Duration, Instant};

use cvm_kafka::{restore_partition, KafkaConfig, Restored, Topics};
use cvm_store::{Store, StoreConfig};
use rand::{rngs::SmallRng, SeedableRng};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

use crate::lab::bench::load_profiles;

const TOPIC: &str = "bench.changelog";

/// Profiles per partition: their changelog stays within what the in-process broker keeps.
const PER_PARTITION: u32 = 15_000;

/// Runs the benchmark over `profiles` profiles and prints its figures.
pub fn run(profiles: u32) -> anyhow::Result<()> {
    let partitions = profiles.div_ceil(PER_PARTITION).max(1);
    let tmp = tempfile::tempdir()?;
    let open = |name: &str| -> anyhow::Result<Store> {
        Ok(Store::open(&StoreConfig { path: tmp.path().join(name), ..Default::default() })?.with_changelog(TOPIC))
    };
    let writer = open("writer")?;
    let mut rng = SmallRng::seed_from_u64(7);
    load_profiles(&writer, &mut rng, profiles, partitions, 2_000)?;

    let mock = MockCluster::new(1)?;
    mock.create_topic(TOPIC, partitions as i32, 1)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let t = Instant::now();
    let mut records = 0u64;
    let mut from = 0;
    loop {
        let entries = writer.outbox_peek(from, 50_000)?;
        let Some((last, _)) = entries.last() else { break };
        from = last + 1;
        for (_, e) in &entries {
            let partition = e.partition.unwrap_or_default();
            let mut record = BaseRecord::<[u8], [u8]>::to(TOPIC).key(&e.key[..]).partition(partition);
            if !e.tombstone {
                record = record.payload(&e.payload[..]);
            }
            while let Err((err, back)) = producer.send(record) {
                anyhow::ensure!(
                    err.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    "produce failed: {err}"
                );
                producer.poll(Duration::from_millis(5));
                record = back;
            }
            records += 1;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let produced = t.elapsed();
    let probe: BaseConsumer = ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create()?;
    for p in 0..partitions as i32 {
        let (low, _) = probe.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        anyhow::ensure!(low == 0, "the in-process broker dropped the oldest records of partition {p}");
    }

    let reader = open("reader")?;
    let config = KafkaConfig {
        brokers: mock.bootstrap_servers(),
        topics: Topics { changelog: TOPIC.into(), ..Default::default() },
        ..Default::default()
    };
    let t = Instant::now();
    for p in 0..partitions as i32 {
        let outcome = restore_partition(&config, &reader, p, Duration::from_secs(3_600))?;
        anyhow::ensure!(matches!(outcome, Restored::Rebuilt { .. }), "expected a rebuild, got {outcome:?}");
    }
    let restored = t.elapsed();
    let back = reader.profiles().count();
    anyhow::ensure!(back == profiles as usize, "{back} of {profiles} profiles came back");

    let rate = |n: f64, d: Duration| n / d.as_secs_f64().max(1e-9);
    println!("changelog restore, in-process broker ({partitions} partitions, one after the other)");
    println!("  {:<38}{:>12}", "profiles", profiles);
    println!("  {:<38}{:>12}", "changelog records", records);
    println!("  {:<38}{:>12.0}", "produced records/s (bare producer)", rate(records as f64, produced));
    println!("  {:<38}{:>12.2}", "restore seconds (two reads each)", restored.as_secs_f64());
    println!("  {:<38}{:>12.0}", "restored profiles/s", rate(f64::from(profiles), restored));
    Ok(())
}
