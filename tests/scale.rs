//! Scale-out and crashes through a broker: state follows a partition to
//! another instance; `kill -9` at random moments changes nothing; an
//! instance killed under load hands its partitions, with their state, to
//! the survivor. Engines under fault run as `cvm run` child processes, so
//! they die as a process does; the comparison is always a crash-free run of
//! the same input in this process.
//!
//! The input is a synthetic retailer's, sent in phases — each day's app
//! events, then its purchases — each consumed before the next is sent, so
//! that every run reads one order (as `kafka_pipeline_and_driver_decide_identically`
//! explains). Sweeps and inactivity backfills are left out: they run on the
//! wall clock's schedule, not at a point in the event order.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cvm::{service::ops::Health, Config, Pipeline};
use cvm_e2e::{on_tansu, Harness, PARTITIONS, QUIET};
use cvm_engine::{
    attribution::{Stats, StatsKey},
    offers::Trigger,
    Event, OfferDefinition, Profile,
};
use cvm_proto::{decode, v1::Offer};
use cvm_store::Store;
use cvm_synth::{Retailer, RetailerConfig};
use rand::{Rng, SeedableRng};

type Phase = Vec<(i32, String, Event)>;

/// The synthetic stream in phases: each day's app events, then its purchases.
fn phases(customers: u32, days: u32) -> Vec<Phase> {
    let config = RetailerConfig { customers, days, ..Default::default() };
    let start = config.start_ms;
    let events: Vec<_> = Retailer::new(config).filter(|e| !e.key.is_empty()).collect();
    let partition_of = |key: &str| (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % PARTITIONS as u64) as i32;
    let mut out = Vec::new();
    for day in 0..=i64::from(days) {
        let today: Vec<_> =
            events.iter().filter(|e| (e.event.timestamp_ms() - start).div_euclid(24 * 3_600_000) == day).collect();
        for purchases in [false, true] {
            let phase: Phase = today
                .iter()
                .filter(|e| matches!(e.event, Event::Purchase(_)) == purchases)
                .map(|e| (partition_of(&e.key), e.key.clone(), e.event.clone()))
                .collect();
            if !phase.is_empty() {
                out.push(phase);
            }
        }
    }
    out
}

/// The sample offers that decide in event order (no sweeps, no inactivity).
fn event_ordered_offers() -> Vec<OfferDefinition> {
    cvm::lab::samples::sample_offers()
        .into_iter()
        .filter(|d| !matches!(d.doc.trigger, Trigger::Sweep { .. } | Trigger::Inactivity { .. }))
        .collect()
}

/// A harness with the event-ordered offers published and a clock that
/// never lets an input go idle (the phases keep both in step).
async fn harness() -> Harness {
    let mut h = Harness::new().await;
    h.config.kafka.watermark_idle_timeout = Duration::from_secs(3600);
    h.config.kafka.workers = 2;
    let offers = h.topics().offers_config.clone();
    for d in event_ordered_offers() {
        h.send_raw(&offers, d.id(), Some(serde_json::to_string(&d.doc).unwrap().as_bytes()));
    }
    h.flush();
    h
}

fn send_phase(h: &Harness, phase: &Phase) {
    for (partition, key, event) in phase {
        h.send_to(*partition, key, event);
    }
    h.flush();
}

/// The outcome compared between runs.
#[derive(Debug, PartialEq)]
struct Outcome {
    profiles: BTreeMap<(u32, String), Profile>,
    stats: Vec<(u32, StatsKey, Stats)>,
    /// Offer ids on the push and stories topics, each with how often it was read.
    offer_ids: BTreeMap<String, usize>,
}

impl Outcome {
    /// The partitions' state in `store` (only `partitions`) and the offers on `h`'s topics.
    fn of(h: &Harness, store: &Store) -> Self {
        let parked = store.parked(5).unwrap();
        assert!(
            parked.is_empty(),
            "entries the broker refused: {:?}",
            parked.iter().map(|(_, e)| e.headers.clone()).collect::<Vec<_>>()
        );
        let profiles = store.profiles().map(Result::unwrap).map(|(p, c, profile)| ((p, c), profile)).collect();
        let mut stats = store.stats().unwrap();
        stats.sort_by(|a, b| {
            (a.0, &a.1.campaign_id, a.1.group.code(), a.1.day).cmp(&(b.0, &b.1.campaign_id, b.1.group.code(), b.1.day))
        });
        let mut offer_ids = BTreeMap::new();
        let mut payloads: HashMap<String, Vec<u8>> = HashMap::new();
        for topic in [&h.topics().push.name, &h.topics().stories.name] {
            for record in h.read_all(topic) {
                let offer: Offer = decode(h.topics().push.format, &record.payload).unwrap();
                let first = payloads.entry(offer.offer_id.clone()).or_insert_with(|| record.payload.clone());
                assert_eq!(*first, record.payload, "offer {} was sent twice with different content", offer.offer_id);
                *offer_ids.entry(offer.offer_id).or_insert(0) += 1;
            }
        }
        Self { profiles, stats, offer_ids }
    }

    /// Offer ids read more than once (the same bytes: at-least-once with stable ids).
    fn repeats(&self) -> usize {
        self.offer_ids.values().map(|n| n - 1).sum()
    }

    /// Asserts that `self` (a run under faults) decided what `reference` did.
    fn assert_same_as(&self, reference: &Self) {
        assert!(!reference.offer_ids.is_empty(), "the scenario must send offers");
        let ids = |o: &Self| o.offer_ids.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(self), ids(reference), "the set of offer ids differs from the crash-free run");
        assert_eq!(self.profiles.len(), reference.profiles.len(), "profile counts differ");
        for (key, profile) in &reference.profiles {
            assert_eq!(self.profiles.get(key), Some(profile), "profile {key:?} differs from the crash-free run");
        }
        assert_eq!(self.stats, reference.stats, "attribution totals differ from the crash-free run");
    }
}

/// Sends `phases` one by one, each consumed by `pipeline` before the next;
/// `sent` messages were sent before; returns the count after.
async fn feed(h: &Harness, pipeline: &Pipeline, phases: &[Phase], mut sent: i64) -> i64 {
    for phase in phases {
        send_phase(h, phase);
        sent += phase.len() as i64;
        h.wait_consumed(pipeline, sent).await;
    }
    sent
}

/// The crash-free run: one in-process engine reads the phases.
async fn reference_run(phases: &[Phase]) -> Outcome {
    let h = harness().await;
    let pipeline = h.start().await;
    feed(&h, &pipeline, phases, 0).await;
    h.wait_idle(&pipeline).await;
    let outcome = Outcome::of(&h, pipeline.store());
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
    outcome
}

/// The `cvm` binary built with these tests (`CVM_BIN` overrides).
fn cvm_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CVM_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("cvm");
    assert!(bin.exists(), "{} not built; run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// A `cvm run` child process with its own state directory and config.
struct Instance {
    name: String,
    config: Config,
    config_path: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn new(h: &Harness, name: &str, workers: usize) -> Self {
        let mut config = h.config.clone();
        config.store.path = h.dir.path().join(name);
        // Static membership, except where the broker cannot keep it: tansu
        // 0.6.0 revokes static members right after assigning them and
        // stalls the group for minutes (see the note in the README).
        if std::env::var_os("CVM_DYNAMIC_MEMBERSHIP").is_none() {
            config.kafka.instance_id = Some(name.to_owned());
        }
        config.kafka.workers = workers;
        // The harness's 6 s session timeout notices a member that died. This is
        // also the rebalance timeout: how long a broker may wait for members to
        // rejoin (tansu waits for the dead one this long).
        config.kafka.consumer.insert("max.poll.interval.ms".into(), "20000".into());
        let config_path = h.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        Self { name: name.to_owned(), config, config_path, child: None }
    }

    fn start(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.config_path.with_extension("log")).unwrap();
        let child = Command::new(cvm_binary())
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "warn,cvm_kafka=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no commit, no drain, no leaving the group.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the clean exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            let status = child.wait().unwrap();
            let log = std::fs::read_to_string(self.config_path.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            assert!(status.success(), "{} exited with {status}; its log ends:\n{}", self.name, tail.join("\n"));
        }
    }

    fn store(&self) -> Option<Store> {
        Store::open_read_only(&self.config.store.path).ok()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = std::env::var_os("CVM_KEEP_LOGS") {
            let _ = std::fs::copy(
                self.config_path.with_extension("log"),
                Path::new(&dir).join(format!("{}.log", self.name)),
            );
        }
    }
}

/// Per input partition, the furthest offset any of `instances` committed.
fn consumed(h: &Harness, instances: &[&Instance]) -> i64 {
    let stores: Vec<Store> = instances.iter().filter_map(|i| i.store()).collect();
    let t = h.topics();
    let mut n = 0;
    for topic in [&t.purchases.name, &t.app.name, &t.erasure.name] {
        for p in 0..PARTITIONS {
            n += stores.iter().filter_map(|s| s.next_offset(topic, p).unwrap()).max().unwrap_or(0);
        }
    }
    n
}

async fn wait_consumed(h: &Harness, instances: &[&Instance], n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumed(h, instances) < n {
        assert!(Instant::now() < deadline, "consumed {} of {n}", consumed(h, instances));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The consumer session timeout the harness configures.
fn session_timeout(h: &Harness) -> Duration {
    let ms = h.config.kafka.consumer.get("session.timeout.ms").and_then(|v| v.parse().ok()).unwrap_or(45_000);
    Duration::from_millis(ms)
}

/// Waits until every input message is consumed and `live` has published its outbox.
async fn wait_idle(h: &Harness, instances: &[&Instance], live: &Instance) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since = Instant::now();
    loop {
        let done =
            consumed(h, instances) >= h.input_end() && live.store().is_some_and(|s| s.outbox_depth(0).unwrap() == 0);
        if !done {
            since = Instant::now();
        }
        if since.elapsed() >= QUIET {
            return;
        }
        assert!(Instant::now() < deadline, "never idle: consumed {} of {}", consumed(h, instances), h.input_end());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_follows_a_partition_to_an_instance_with_an_empty_disk() {
    let phases = phases(200, 6);
    let (first, rest) = phases.split_at(phases.len() / 2);
    let reference = reference_run(&phases).await;

    let h = harness().await;
    let a = h.start().await;
    let sent = feed(&h, &a, first, 0).await;
    h.wait_idle(&a).await;
    let a_store = a.store().clone();
    a.shutdown(Duration::from_secs(30)).await.unwrap();

    // Another instance, another (empty) disk, the same group.
    let mut config_b: Config = h.config.clone();
    config_b.store.path = h.dir.path().join("state-b");
    let health = Health::default();
    let b = Pipeline::start(&config_b, health.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.consumed(&b) < sent || !health.is_ready() {
        assert!(Instant::now() < deadline, "state not restored: {} of {sent} offsets", h.consumed(&b));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restored: Vec<_> = b.store().profiles().map(Result::unwrap).collect();
    let original: Vec<_> = a_store.profiles().map(Result::unwrap).collect();
    assert!(!original.is_empty());
    assert_eq!(restored, original, "the restored profiles are the first instance's");
    assert_eq!(b.store().stats().unwrap().len(), a_store.stats().unwrap().len());
    assert_eq!(b.store().pending_timers(), a_store.pending_timers(), "pending timers moved too");

    feed(&h, &b, rest, sent).await;
    h.wait_idle(&b).await;
    let outcome = Outcome::of(&h, b.store());
    b.shutdown(Duration::from_secs(30)).await.unwrap();
    // Caps, holdouts, timers and attribution continued from the first
    // instance's state: the same offers as one instance throughout.
    outcome.assert_same_as(&reference);
    assert_eq!(outcome.repeats(), 0, "a graceful hand-over sends nothing twice");
}

/// `CVM_CRASH_KILLS` kills (default 20) at seeded random moments while
/// the phases are read; each time the engine restarts on its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_changes_no_decision_state_or_offer() {
    let kills: usize = std::env::var("CVM_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("CVM_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let phases = phases(600, 8);
    let reference = reference_run(&phases).await;

    let h = harness().await;
    // On tansu the restart waits out the session timeout. Its coordinator
    // hands partitions to members of the killed process that have not yet
    // expired; when it does expire them, it goes back to forming the group
    // without telling the live members (their heartbeats keep succeeding at
    // the same generation), so a partition can stay unowned for minutes.
    // The in-process broker restarts at once, into the dead members' session.
    let restart_after = if on_tansu() { session_timeout(&h) + Duration::from_secs(1) } else { Duration::ZERO };
    let mut engine = Instance::new(&h, "crashy", 2);
    engine.start();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Which phases get a kill (some two), spread over the stream.
    let mut kills_in: Vec<usize> = (0..kills).map(|i| i * phases.len() / kills.max(1)).collect();
    kills_in.sort_unstable();
    let mut sent = 0;
    let mut killed = 0;
    for (i, phase) in phases.iter().enumerate() {
        send_phase(&h, phase);
        sent += phase.len() as i64;
        for _ in kills_in.iter().filter(|k| **k == i) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
            engine.kill();
            killed += 1;
            tokio::time::sleep(restart_after).await;
            engine.start();
        }
        wait_consumed(&h, &[&engine], sent).await;
    }
    wait_idle(&h, &[&engine], &engine).await;
    engine.stop();
    let outcome = Outcome::of(&h, &engine.store().unwrap());
    eprintln!("{killed} kills; {} offers, {} read twice (same bytes)", outcome.offer_ids.len(), outcome.repeats());
    assert_eq!(killed, kills);
    outcome.assert_same_as(&reference);
}

/// Two instances of one worker each; the one that owns partition 0 is
/// killed mid-stream; the survivor takes the partition over with its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_hands_its_partitions_with_their_state_to_the_survivor() {
    if std::env::var_os("CVM_TANSU").is_some() {
        // tansu 0.6.0 expires the dead member on the survivor's heartbeat and
        // goes back to forming the group, but answers that heartbeat and the
        // next ones with success at the same generation: the survivor is never
        // told to rejoin, and nobody consumes the dead member's partition.
        eprintln!("skipped: tansu 0.6.0 never asks the survivor to rejoin, so a dead member's partitions never move");
        return;
    }
    let phases = phases(400, 6);
    let reference = reference_run(&phases).await;

    let h = harness().await;
    let mut a = Instance::new(&h, "a", 1);
    let mut b = Instance::new(&h, "b", 1);
    a.start();
    b.start();
    let kill_at = phases.len() / 2;
    let mut sent = 0;
    let mut failover = None;
    for (i, phase) in phases.iter().enumerate() {
        send_phase(&h, phase);
        sent += phase.len() as i64;
        if i == kill_at {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Each owns one partition; a's is the one to move.
            let victim_partition = (0..PARTITIONS)
                .find(|p| a.store().and_then(|s| s.next_offset(&h.topics().app.name, *p).unwrap()).is_some())
                .expect("a owns a partition");
            let before = b.store().and_then(|s| s.next_offset(&h.topics().app.name, victim_partition).unwrap());
            assert_eq!(before, None, "b did not own a's partition before the kill");
            let killed_at = Instant::now();
            a.kill();
            eprintln!("killed a at {:?}", std::time::SystemTime::now());
            let deadline = Instant::now() + Duration::from_secs(150);
            let mut restored = None;
            loop {
                let now = b.store().and_then(|s| s.next_offset(&h.topics().app.name, victim_partition).unwrap());
                match (restored, now) {
                    (None, Some(o)) => restored = Some((o, killed_at.elapsed())),
                    (Some((o, at)), Some(n)) if n > o => {
                        failover = Some((at, killed_at.elapsed()));
                        break;
                    }
                    _ => {}
                }
                // Done early if the partition's phase was consumed before the restore was seen.
                if restored.is_some() && consumed(&h, &[&a, &b]) >= sent {
                    failover = restored.map(|(_, at)| (at, at));
                    break;
                }
                assert!(Instant::now() < deadline, "b never took partition {victim_partition} over");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        wait_consumed(&h, &[&a, &b], sent).await;
    }
    wait_idle(&h, &[&a, &b], &b).await;
    b.stop();
    let log = std::fs::read_to_string(b.config_path.with_extension("log")).unwrap_or_default();
    for line in log.lines().filter(|l| ["revoked", "gained", "restored from"].iter().any(|w| l.contains(w))) {
        eprintln!("b: {line}");
    }
    let (restored_after, first_progress_after) = failover.expect("the kill happened");
    eprintln!("failover: partition restored on the survivor {restored_after:?} after the kill, first event applied after {first_progress_after:?} (session timeout 6 s, no standby)");
    let outcome = Outcome::of(&h, &b.store().unwrap());
    eprintln!("{} offers, {} read twice (same bytes)", outcome.offer_ids.len(), outcome.repeats());
    outcome.assert_same_as(&reference);
}

/// Events per second through `cvm run` children on the in-process broker:
/// one instance with one worker, one with two, and two instances of one
/// worker each (a measurement, run by hand: `cargo test -p cvm-e2e --test
/// scale -- --ignored --nocapture scaling`; `CVM_SCALING_CUSTOMERS` sizes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn scaling_events_per_second() {
    let customers = std::env::var("CVM_SCALING_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let phases = phases(customers, 7);
    let total: i64 = phases.iter().map(|p| p.len() as i64).sum();
    for (instances, workers) in [(1, 1), (1, 2), (2, 1)] {
        let h = harness().await;
        for phase in &phases {
            send_phase(&h, phase);
        }
        let mut engines: Vec<Instance> = (0..instances).map(|i| Instance::new(&h, &format!("e{i}"), workers)).collect();
        engines.iter_mut().for_each(Instance::start);
        let refs: Vec<&Instance> = engines.iter().collect();
        // From the first commit (start-up and the group join are not throughput).
        let deadline = Instant::now() + Duration::from_secs(120);
        while consumed(&h, &refs) == 0 {
            assert!(Instant::now() < deadline, "nothing consumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (from, started) = (consumed(&h, &refs), Instant::now());
        let deadline = Instant::now() + Duration::from_secs(600);
        while consumed(&h, &refs) < total {
            assert!(Instant::now() < deadline, "consumed {} of {total}", consumed(&h, &refs));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rate = (total - from) as f64 / started.elapsed().as_secs_f64();
        eprintln!("{instances} instance(s) × {workers} worker(s): {rate:.0} events/s ({total} events, {PARTITIONS} partitions)");
        drop(refs);
        engines.iter_mut().for_each(Instance::stop);
    }
}
