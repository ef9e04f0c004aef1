//! `cvm demo`: the embedded quickstart. An in-process Kafka-protocol broker
//! (librdkafka's mock cluster), a synthetic retailer streaming into it, the
//! sample offers published to the config topic (plus one broken document to
//! show rejection), and the real engine in between. Everything the summary
//! counts is read back from the output topics, not from the engine's memory.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use cvm_engine::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use cvm_proto::v1::{Decision, Outcome};
use cvm_synth::{Effect, Responder, Retailer, RetailerConfig};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Message,
    mocking::MockCluster,
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{
    lab::samples::{sample_campaigns, SAMPLE_CAMPAIGNS, SAMPLE_OFFERS},
    service::{config::Config, ops},
    Pipeline,
};

/// Options of the demo, as `cvm demo` parses them.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Synthetic customers.
    #[arg(long, default_value_t = 50_000)]
    pub customers: u32,
    /// Simulated days.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Seed of the synthetic retailer.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Address of /metrics, /healthz, /readyz.
    #[arg(long, default_value = "127.0.0.1:9898")]
    pub http: SocketAddr,
    /// Keep serving /metrics this long after the summary, e.g. "5m".
    #[arg(long, default_value = "0s", value_parser = crate::commands::humantime_duration)]
    pub linger: Duration,
    /// Keep state here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the incrementality report as a self-contained HTML page.
    #[arg(long)]
    pub report_html: Option<PathBuf>,
    /// Ingest worker threads, each owning some partitions (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Publish with Kafka transactions (exactly-once) or without
    /// (at-least-once): compares what transactions cost.
    #[arg(long, default_value = "exactly-once", value_parser = delivery)]
    pub delivery: cvm_kafka::Delivery,
    /// Feed the events at this many per second, stamped with the wall clock
    /// as they are sent and decided on it (as in production), and report the
    /// event-to-offer latency (default: replay the simulated history in
    /// event time as fast as the broker takes it).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Score with the model artifacts in this directory (`cvm train --out`),
    /// as `model_dir.path` does for `cvm run`.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
}

/// `--delivery exactly-once | at-least-once`.
fn delivery(s: &str) -> Result<cvm_kafka::Delivery, String> {
    match s {
        "exactly-once" => Ok(cvm_kafka::Delivery::ExactlyOnce),
        "at-least-once" => Ok(cvm_kafka::Delivery::AtLeastOnce),
        other => Err(format!("{other:?}: use exactly-once or at-least-once")),
    }
}

/// The synthetic customers' hidden response to each campaign: what the
/// incrementality report should find. Campaigns not listed have no effect
/// (their increment should come out as zero, flagged).
fn hidden_effects(seed: u64) -> Responder {
    let effect = |probability, price_minor, cost_minor| Effect { probability, price_minor, cost_minor };
    Responder::new(seed)
        .with_effect("reactivation", effect(0.25, 4_000, 2_000))
        .with_effect("abandoned-cart", effect(0.20, 3_000, 1_800))
        .with_effect("winback", effect(0.10, 5_000, 2_500))
}

/// One garbage message per this many events (the first after event 100), to
/// show the dead-letter path.
const GARBAGE_EVERY: u64 = 25_000;
/// librdkafka's mock broker trims a partition past 100,000 messages or 5 MB,
/// so the demo spreads its topics wide enough to keep every message: 50,000
/// customers × 14 days is ~440k events, ~1.6 MB per input partition.
const PARTITIONS: i32 = 32;
/// The sample published after the history, as a same-day campaign would be.
const SWEEP_OFFER: &str = "storm-tonight";
/// The demo's sweep rate (the sample says 500/s; the demo has no time to wait).
const DEMO_SWEEP_RATE: &str = "rate_per_second: 25000";

/// Counts read back from the output topics.
#[derive(Debug, Default)]
struct Outputs {
    outcomes: Mutex<HashMap<Outcome, u64>>,
    push: AtomicU64,
    stories: AtomicU64,
    dlq: AtomicU64,
    rejected_docs: AtomicU64,
    accepted_docs: AtomicU64,
    triggers: Mutex<HashMap<String, u64>>,
    /// Treated decisions by how the chosen offer was scored.
    sources: Mutex<HashMap<String, u64>>,
    /// Purchases the synthetic customers made because of an offer.
    responses: AtomicU64,
    /// When each synthetic event was handed to the producer, by event id
    /// (with `--rate` only).
    sent: Mutex<HashMap<String, Instant>>,
    /// From an event being sent to the offer it triggered being readable
    /// (committed on the decisions topic), microseconds.
    latency_us: Mutex<Vec<u64>>,
}

impl Outputs {
    fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes.lock().expect("poisoned").get(&o).copied().unwrap_or(0)
    }
    fn decisions(&self) -> u64 {
        self.outcomes.lock().expect("poisoned").values().sum()
    }
    fn by_trigger(&self, t: &str) -> u64 {
        self.triggers.lock().expect("poisoned").get(t).copied().unwrap_or(0)
    }
    fn by_source(&self, s: &str) -> u64 {
        self.sources.lock().expect("poisoned").get(s).copied().unwrap_or(0)
    }
    fn record_latency(&self, event_id: &str) {
        if let Some(sent) = self.sent.lock().expect("poisoned").remove(event_id) {
            let us = sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
            self.latency_us.lock().expect("poisoned").push(us);
        }
    }
}

/// Runs the demo; prints progress and a summary to stdout.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let mock = MockCluster::new(1).context("cannot start the in-process broker")?;
    let brokers = mock.bootstrap_servers();
    // The defaults, with any CVM__SECTION__KEY overrides (as for `cvm run`);
    // what the demo needs is set over them.
    let mut config = Config::load(None)?;
    config.kafka.brokers.clone_from(&brokers);
    config.kafka.create_topics = false;
    config.kafka.workers = opts.workers;
    config.kafka.delivery = opts.delivery;
    if opts.rate.is_none() {
        config.kafka.clock = cvm_kafka::Clock::EventTime;
    }
    // One producer writes both topics in time order and the in-process broker
    // has no lag: a purchases topic quiet for a second has ended, and the
    // watermark need not wait the production default for it.
    config.kafka.watermark_idle_timeout = Duration::from_secs(1);
    // The simulated history has fixed dates, which may lie after today: the
    // demo accepts events up to ten years ahead of the wall clock.
    config.engine.input.max_event_lead = cvm_engine::time::MAX_DURATION;
    config.http.listen = opts.http;
    config.model_dir.path.clone_from(&opts.model_dir);
    for t in config.kafka.topics.all() {
        mock.create_topic(t, PARTITIONS, 1).with_context(|| format!("creating topic {t}"))?;
    }
    let tmp = tempfile::tempdir()?;
    config.store.path = opts.data_dir.clone().unwrap_or_else(|| tmp.path().join("state"));
    ops::init_logging(&crate::service::config::LogConfig { level: "warn".into(), ..Default::default() });

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let topics = config.kafka.topics.clone();
    // The campaigns first, then every sample offer but the situational sweep,
    // which goes live once the history is in.
    for (doc, (_, text)) in sample_campaigns().iter().zip(SAMPLE_CAMPAIGNS) {
        send(&producer, &topics.offers_config, doc.key().as_bytes(), text.as_bytes());
    }
    for (name, doc) in SAMPLE_OFFERS.iter().filter(|(n, _)| !n.starts_with(SWEEP_OFFER)) {
        let key = name.trim_end_matches(".yaml");
        send(&producer, &topics.offers_config, key.as_bytes(), doc.as_bytes());
    }
    // A bad edit: rejected with its errors while version 1 keeps running.
    let (_, wine) = SAMPLE_OFFERS.iter().find(|(n, _)| n.starts_with("wine-with-meat")).expect("sample exists");
    let broken = wine.replace("version: 1", "version: 2").replace("orders_90d >= 1", "orders_90d >= \"one\"");
    send(&producer, &topics.offers_config, b"wine-with-meat", broken.as_bytes());
    producer.flush(Duration::from_secs(10))?;

    let health = ops::Health::default();
    let bound = ops::serve(config.http.listen, health.clone()).await.context("cannot bind the metrics endpoint")?;
    let pipeline = Pipeline::start(&config, health.clone()).await?;
    if opts.rate.is_some() {
        // Live: latency counts from when every partition is decided here.
        let ingest = health.ingest_status();
        while ingest.owned() < PARTITIONS as usize || ingest.restoring() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let outputs = Arc::new(Outputs::default());
    let done_reading = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let responder = hidden_effects(opts.seed);
    let truth: Vec<String> = responder
        .effects()
        .iter()
        .map(|(campaign, e)| {
            format!(
                "{campaign} {:+.2} ({:.0} % buy a {:.2}-margin basket)",
                e.margin_per_treated() / 100.0,
                e.probability * 100.0,
                (e.price_minor - e.cost_minor) as f64 / 100.0
            )
        })
        .collect();
    let reader =
        spawn_output_reader(&brokers, &config, outputs.clone(), done_reading.clone(), responder, produced.clone())?;

    println!(
        "cvm demo: {} customers, {} days, seed {}; metrics on http://{bound}/metrics",
        opts.customers, opts.days, opts.seed
    );
    let started = Instant::now();
    let feeder = {
        let produced = produced.clone();
        let topics = topics.clone();
        let retailer =
            RetailerConfig { seed: opts.seed, customers: opts.customers, days: opts.days, ..Default::default() };
        let outputs = outputs.clone();
        let rate = opts.rate;
        std::thread::spawn(move || {
            let mut garbage = 0u64;
            let start = Instant::now();
            for (i, mut e) in Retailer::new(retailer).enumerate() {
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    happening_now(&mut e.event);
                    outputs.sent.lock().expect("poisoned").insert(e.event.event_id().to_owned(), Instant::now());
                }
                let (topic, payload) = cvm_kafka::input_message(&topics, &e.event);
                send(&producer, topic, e.key.as_bytes(), &payload);
                if i as u64 % GARBAGE_EVERY == 100 {
                    send(
                        &producer,
                        &topics.purchases.name,
                        e.key.as_bytes(),
                        b"\x08\xff\xff garbage from a broken sender",
                    );
                    garbage += 1;
                }
                produced.fetch_add(1, Ordering::Relaxed);
            }
            producer.flush(Duration::from_secs(30)).expect("flush synthetic events");
            garbage
        })
    };

    let mut feeding = Some(feeder);
    // When the first batch was committed: before it, the consumer group
    // forms and partitions are restored.
    let mut first_commit = None;
    let mut garbage = 0;
    let consumed = |p: &Pipeline| -> anyhow::Result<i64> {
        let mut n = 0;
        for t in [&topics.purchases.name, &topics.app.name] {
            for part in 0..PARTITIONS {
                n += p.store().next_offset(t, part)?.unwrap_or(0);
            }
        }
        Ok(n)
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if feeding.as_ref().is_some_and(|f| f.is_finished()) {
            garbage = feeding.take().expect("checked").join().expect("feeder does not panic");
        }
        let in_count = consumed(&pipeline)?;
        if in_count > 0 && first_commit.is_none() {
            first_commit = Some(started.elapsed());
        }
        let secs = started.elapsed().as_secs_f64();
        print!(
            "\r  {:>5.1}s  produced {:>9}  ingested {:>9} ({:>7.0}/s)  decisions {:>8}  push {:>7}  stories {:>7}  dlq {:>3}   ",
            secs,
            produced.load(Ordering::Relaxed),
            in_count,
            in_count as f64 / secs,
            outputs.decisions(),
            outputs.push.load(Ordering::Relaxed),
            outputs.stories.load(Ordering::Relaxed),
            outputs.dlq.load(Ordering::Relaxed),
        );
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        if pipeline.ingest_failed() {
            bail!("the ingest loop stopped; see the log above");
        }
        let total_in = produced.load(Ordering::Relaxed) + garbage;
        if feeding.is_none()
            && in_count as u64 >= total_in
            && pipeline.store().outbox_depth(0)? == 0
            && outputs.dlq.load(Ordering::Relaxed) >= garbage
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    let trimmed = trimmed_inputs(&brokers, &topics)?;
    if trimmed > 0 {
        bail!("the in-process broker trimmed {trimmed} input messages before they were read; run with fewer --customers or --days");
    }
    // The sweep and the morning after belong to the simulated history.
    let sweep = match opts.rate {
        None => {
            let sweep = run_sweep(&brokers, &config, &pipeline).await?;
            next_morning(&brokers, &topics, &opts, &produced)?;
            Some(sweep)
        }
        Some(_) => None,
    };
    // Let the reader see the last offers and the engine the purchases they caused.
    let mut settled = 0;
    while settled < 8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let caught_up = consumed(&pipeline)? as u64 >= produced.load(Ordering::Relaxed) + garbage
            && pipeline.store().outbox_depth(0)? == 0;
        settled = if caught_up { settled + 1 } else { 0 };
    }
    done_reading.store(true, Ordering::SeqCst);
    reader.join().expect("reader does not panic");
    let total = produced.load(Ordering::Relaxed);
    println!();
    summary(&outputs, opts.customers, total, garbage, elapsed);
    if let Some(first) = first_commit {
        let ingesting = elapsed.saturating_sub(first).as_secs_f64().max(1e-3);
        println!("  {:<28}{:>12.1}", "seconds to the first commit", first.as_secs_f64());
        println!("  {:<28}{:>12.0}", "events/s after it", (total + garbage) as f64 / ingesting);
    }
    if let Some(sweep) = sweep {
        println!("  {:<28}{:>12.1}", "sweep seconds", sweep.as_secs_f64());
    }
    row_responses(&outputs);
    let stats = pipeline.store().stats()?;
    let report = cvm_report::Report::from_stats(stats.iter().map(|(_, k, s)| (k, s)));
    println!("\n{}", cvm_report::text(&report));
    println!("  hidden truth, margin per treated customer: {}; every other campaign 0", truth.join(", "));
    if let Some(path) = &opts.report_html {
        let page = cvm_report::html(&report).map_err(|e| anyhow::anyhow!("drawing the report: {e}"))?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("  HTML report: {}", path.display());
    }

    if !opts.linger.is_zero() {
        println!("serving http://{bound}/metrics for {:?} more (Ctrl-C to stop)", opts.linger);
        tokio::select! {
            _ = tokio::time::sleep(opts.linger) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    pipeline.shutdown(Duration::from_secs(30)).await?;
    let missing: Vec<&str> = [
        ("push offers", outputs.push.load(Ordering::Relaxed)),
        ("stories offers", outputs.stories.load(Ordering::Relaxed)),
        ("capped decisions", outputs.outcome(Outcome::Capped)),
        ("global holdouts", outputs.outcome(Outcome::HoldoutGlobal)),
        ("campaign holdouts", outputs.outcome(Outcome::HoldoutCampaign)),
        ("dead-lettered events", outputs.dlq.load(Ordering::Relaxed)),
        ("delayed-trigger decisions", outputs.by_trigger("delayed")),
        ("cascade decisions", outputs.by_trigger("cascade")),
        ("sweep decisions", outputs.by_trigger("sweep")),
        ("deferred pushes", outputs.outcome(Outcome::Deferred)),
        ("purchases caused by offers", outputs.responses.load(Ordering::Relaxed)),
    ]
    .into_iter()
    .filter(|(_, n)| *n == 0)
    .map(|(what, _)| what)
    .collect();
    // A live run is too short for waits, cascades and lapses to come due.
    if !missing.is_empty() && opts.rate.is_none() {
        bail!("demo self-check failed: no {}", missing.join(", no "));
    }
    Ok(())
}

/// Stamps `event` with the wall clock, as if it happened as it is sent.
fn happening_now(event: &mut cvm_engine::Event) {
    use cvm_engine::Event;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    match event {
        Event::Purchase(e) => e.timestamp_ms = now,
        Event::App(e) => e.timestamp_ms = now,
        Event::Identify(e) => e.timestamp_ms = now,
        Event::Consent(e) => e.timestamp_ms = now,
        Event::Erase(e) => e.timestamp_ms = now,
        Event::DeviceLink(e) => e.timestamp_ms = now,
    }
}

/// Publishes the situational sweep and waits until every partition has
/// been swept and its offers published; returns how long that took.
async fn run_sweep(brokers: &str, config: &Config, pipeline: &Pipeline) -> anyhow::Result<Duration> {
    let (_, doc) = SAMPLE_OFFERS.iter().find(|(n, _)| n.starts_with(SWEEP_OFFER)).context("sweep sample exists")?;
    let doc = doc.replace("rate_per_second: 500", DEMO_SWEEP_RATE);
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    send(&producer, &config.kafka.topics.offers_config, SWEEP_OFFER.as_bytes(), doc.as_bytes());
    producer.flush(Duration::from_secs(10))?;
    println!("\n  published {SWEEP_OFFER} (a same-day sweep over every customer) ...");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut done = 0;
        for p in 0..PARTITIONS as u32 {
            if pipeline.store().sweep_progress(SWEEP_OFFER, 1, p)? == Some(cvm_store::SweepProgress::Done) {
                done += 1;
            }
        }
        if done == PARTITIONS && pipeline.store().outbox_depth(0)? == 0 {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the sweep did not finish in 5 minutes ({done} of {PARTITIONS} partitions)");
        }
    }
}

/// The sweep runs at each partition's event time, which is night (the end of
/// the history, or later where purchases caused by offers came in up to two
/// days after it), so its pushes wait for the end of quiet hours. In event
/// time the clock of a partition only moves with its events: anonymous app
/// opens on every partition at 08:05 UTC three days after the history move
/// the app topic there, and since the purchases topic has gone quiet, the
/// partition's watermark follows once that topic has been idle for
/// `kafka.watermark_idle_timeout`; then every deferred push and pending
/// timer fires. The opens change no state (their devices are unknown).
fn next_morning(
    brokers: &str,
    topics: &cvm_kafka::Topics,
    opts: &DemoOptions,
    produced: &AtomicU64,
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let start = RetailerConfig::default().start_ms;
    let morning = start + i64::from(opts.days + 3) * DAY_MS + 8 * HOUR_MS + 5 * MINUTE_MS;
    for p in 0..PARTITIONS {
        let open = cvm_proto::v1::AppEvent {
            event_id: format!("morning-{p}"),
            device_id: format!("anonymous-{p}"),
            timestamp_ms: morning,
            kind: cvm_proto::v1::AppEventKind::AppOpen as i32,
            ..Default::default()
        };
        let (topic, payload) = cvm_kafka::input_message(topics, &cvm_engine::Event::App(open));
        producer
            .send(BaseRecord::to(topic).key(&format!("anonymous-{p}")).payload(&payload).partition(p))
            .map_err(|(e, _)| e)?;
        produced.fetch_add(1, Ordering::Relaxed);
    }
    producer.flush(Duration::from_secs(10))?;
    println!("  three days later, 08:05 UTC: deferred pushes go out ...");
    Ok(())
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &[u8], payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => panic!("cannot produce to the in-process broker: {e}"),
        }
    }
}

/// Input messages the broker dropped from the start of its logs.
fn trimmed_inputs(brokers: &str, topics: &cvm_kafka::Topics) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut trimmed = 0;
    for topic in [&topics.purchases.name, &topics.app.name] {
        for p in 0..PARTITIONS {
            trimmed += consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?.0;
        }
    }
    Ok(trimmed)
}

/// Reads the output topics into `outputs`; customers answer offers as
/// `responder` says, with purchases produced to the input (counted in `produced`).
fn spawn_output_reader(
    brokers: &str,
    config: &Config,
    outputs: Arc<Outputs>,
    done: Arc<AtomicBool>,
    mut responder: Responder,
    produced: Arc<AtomicU64>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "20").create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "cvm-demo-reader")
        .set("enable.auto.commit", "false")
        // The in-process broker holds a fetch for its whole wait even when
        // data arrives: a short wait keeps the measured latency the engine's.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let t = config.kafka.topics.clone();
    let mut tpl = TopicPartitionList::new();
    for topic in [&t.decisions.name, &t.push.name, &t.stories.name, &t.dlq, &t.config_status.name] {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else { continue };
            let topic = msg.topic();
            if topic == t.decisions.name {
                if let Ok(d) = cvm_proto::decode::<Decision>(t.decisions.format, msg.payload().unwrap_or_default()) {
                    *outputs.outcomes.lock().expect("poisoned").entry(d.outcome()).or_default() += 1;
                    if d.outcome() == Outcome::Treated {
                        let chosen = d.scores.iter().find(|s| s.offer_definition_id == d.offer_definition_id);
                        let source = chosen.map_or("", |s| s.source.as_str()).to_owned();
                        *outputs.sources.lock().expect("poisoned").entry(source).or_default() += 1;
                    }
                    if d.trigger == "event" && d.outcome() == Outcome::Treated {
                        outputs.record_latency(&d.event_id);
                    }
                    *outputs.triggers.lock().expect("poisoned").entry(d.trigger).or_default() += 1;
                }
            } else if topic == t.push.name || topic == t.stories.name {
                let counter = if topic == t.push.name { &outputs.push } else { &outputs.stories };
                counter.fetch_add(1, Ordering::Relaxed);
                let format = if topic == t.push.name { t.push.format } else { t.stories.format };
                let Ok(offer) = cvm_proto::decode::<cvm_proto::v1::Offer>(format, msg.payload().unwrap_or_default())
                else {
                    continue;
                };
                if let Some(p) = responder.respond(&offer) {
                    let (topic, payload) = cvm_kafka::input_message(&t, &cvm_engine::Event::Purchase(p));
                    produced.fetch_add(1, Ordering::Relaxed);
                    outputs.responses.fetch_add(1, Ordering::Relaxed);
                    send(&producer, topic, offer.customer_id.as_bytes(), &payload);
                }
            } else if topic == t.dlq {
                outputs.dlq.fetch_add(1, Ordering::Relaxed);
            } else if let Ok(s) = cvm_proto::decode::<cvm_proto::v1::ConfigStatus>(
                t.config_status.format,
                msg.payload().unwrap_or_default(),
            ) {
                let counter = if s.accepted { &outputs.accepted_docs } else { &outputs.rejected_docs };
                counter.fetch_add(1, Ordering::Relaxed);
                if !s.accepted {
                    println!("\n  config: offer {:?} rejected: {}", s.offer_definition_id, s.errors.join(" | "));
                }
            }
        }
    }))
}

fn row_responses(o: &Outputs) {
    println!("  {:<28}{:>12}", "purchases caused by offers", o.responses.load(Ordering::Relaxed));
}

fn summary(o: &Outputs, customers: u32, events: u64, garbage: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let row = |label: &str, n: u64| println!("  {label:<28}{n:>12}");
    println!("\n=== cvm demo summary ===");
    row("customers", u64::from(customers));
    row("events ingested", events + garbage);
    println!("  {:<28}{:>12.1}", "seconds (end to end)", secs);
    println!("  {:<28}{:>12.0}", "events/s (end to end)", (events + garbage) as f64 / secs);
    row("decisions", o.decisions());
    for outcome in &cvm_engine::telemetry::OUTCOMES[1..] {
        row(&format!("  {}", cvm_engine::telemetry::outcome_label(*outcome)), o.outcome(*outcome));
    }
    for trigger in ["event", "delayed", "inactivity", "cascade", "deferred", "sweep"] {
        row(&format!("  by {trigger} trigger"), o.by_trigger(trigger));
    }
    println!("  treated, by how the offer was scored (README, Models):");
    for source in ["uplift", "propensity", "bandit", "bandit_mean", "rules", "rules_drift"] {
        row(&format!("    {source}"), o.by_source(source));
    }
    row("offers on push", o.push.load(Ordering::Relaxed));
    row("offers on stories", o.stories.load(Ordering::Relaxed));
    row("dead-lettered events", o.dlq.load(Ordering::Relaxed));
    row("offer documents accepted", o.accepted_docs.load(Ordering::Relaxed));
    row("offer documents rejected", o.rejected_docs.load(Ordering::Relaxed));
    let mut latencies = o.latency_us.lock().expect("poisoned").clone();
    if !latencies.is_empty() {
        latencies.sort_unstable();
        let ms = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        println!("  event-to-offer latency, ms (sent to readable, {} offers):", latencies.len());
        println!("  {:<28}{:>12.1}", "  p50", ms(0.5));
        println!("  {:<28}{:>12.1}", "  p99", ms(0.99));
        println!("  {:<28}{:>12.1}", "  max", ms(1.0));
    }
}
