//! What each `cvm` subcommand does, for the binary to dispatch to: the
//! engine, the quickstart, the report, and the marketer and operator tools.
//! Each returns `Ok(false)` when its input was rejected (the process then
//! exits non-zero) and `Err` when it could not run.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use cvm_engine::{offers::document, ConfigDocument, OfferDefinition};

use crate::{
    lab::{recorded, simulate, train},
    service::ops,
    Config, Pipeline,
};

/// Output format of `cvm report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A table for terminals.
    Text,
    /// For machines.
    Json,
    /// A self-contained page with plots.
    Html,
}

/// Where `cvm report` reads the attribution aggregates.
#[derive(Debug, Clone)]
pub enum ReportSource {
    /// The compacted stats topic on these brokers: every instance.
    Topic {
        /// Bootstrap brokers.
        brokers: String,
        /// The stats topic.
        topic: String,
    },
    /// One engine's state directory, opened read-only.
    Store(PathBuf),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// `cvm run`: the engine against a Kafka cluster until SIGTERM or Ctrl-C.
pub fn run_engine(config: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    ops::init_logging(&config.log);
    runtime()?.block_on(serve(config))
}

/// Parses a duration such as "90s", "5m" or "7d" (a command-line value).
pub fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<humantime::Duration>().map(Into::into).map_err(|e| e.to_string())
}

/// Parses a world name for `cvm bench-uplift --world`.
pub fn parse_world(s: &str) -> Result<cvm_synth::World, String> {
    cvm_synth::World::named(s).ok_or_else(|| {
        let names: Vec<&str> = cvm_synth::World::ALL.iter().map(|w| w.name()).collect();
        format!("unknown world `{s}`; one of {}", names.join(", "))
    })
}

/// `cvm demo`: the embedded quickstart.
pub fn demo(opts: crate::lab::demo::DemoOptions) -> anyhow::Result<()> {
    runtime()?.block_on(crate::lab::demo::run(opts))
}

/// `cvm report`: incrementality per campaign; with `challengers` (the
/// engine's config, brokers set), also each challenger model in shadow
/// against its champion, from the logged decisions.
pub fn report(
    source: ReportSource,
    format: ReportFormat,
    out: Option<PathBuf>,
    challengers: Option<&Config>,
) -> anyhow::Result<()> {
    let stats = match source {
        ReportSource::Topic { brokers, topic } => {
            let k = cvm_kafka::KafkaConfig { brokers, ..Default::default() };
            let mut stats = Vec::new();
            let latest = cvm_kafka::read_latest(&k, &topic, Duration::from_secs(60))?;
            warn_if_incomplete(&topic, &latest);
            for (key, value) in latest.values {
                let Some(value) = value else { continue };
                let decoded = cvm_kafka::decode_stats(&k.topics, &value)
                    .map_err(|e| anyhow::anyhow!("{topic} message {key:?} is unreadable: {e}"))?;
                stats.push(decoded);
            }
            stats
        }
        ReportSource::Store(dir) => cvm_store::Store::open_read_only(&dir)
            .with_context(|| format!("opening {} read-only", dir.display()))?
            .stats()?,
    };
    let mut report = cvm_report::Report::from_stats(stats.iter().map(|(_, k, s)| (k, s)));
    if let Some(config) = challengers {
        report.challengers = challenger_duels(config)?;
    }
    let rendered = match format {
        ReportFormat::Text => cvm_report::text(&report),
        ReportFormat::Json => report.json(),
        ReportFormat::Html => cvm_report::html(&report).map_err(|e| anyhow::anyhow!("drawing plots: {e}"))?,
    };
    match out {
        Some(path) => std::fs::write(&path, rendered).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{rendered}"),
    }
    Ok(())
}

/// Where `cvm train` finds decisions and the purchases after them.
#[derive(Debug, Clone)]
pub enum TrainSource {
    /// Recorded events, replayed through the decision core with these
    /// config documents.
    Replay {
        /// Recorded events.
        events: PathBuf,
        /// Config documents replayed with them.
        documents: Vec<PathBuf>,
    },
    /// What a running engine logged: its decisions topic and the purchases
    /// topic, read to their end.
    Topics {
        /// The engine's configuration: brokers, topic names and formats,
        /// input limits.
        config: Box<Config>,
        /// Publish the artifact on the config topic too.
        publish: bool,
    },
}

/// What `cvm train` trains on and where it writes.
#[derive(Debug, Clone)]
pub struct TrainArgs {
    /// Where the decisions and purchases come from.
    pub source: TrainSource,
    /// Offer or campaign, and its id.
    pub scope: cvm_engine::models::Scope,
    /// The offer or campaign id.
    pub target: String,
    /// Attribution window of the label.
    pub window: Duration,
    /// Share of the latest decisions that validate.
    pub validation_share: f64,
    /// Seed of training.
    pub seed: u64,
    /// The artifact's file.
    pub out: PathBuf,
    /// Write an uplift model that has not shown it beats random targeting.
    pub force: bool,
    /// Champion (decides) or challenger (runs in shadow, to be judged by
    /// `cvm report --challengers`).
    pub role: cvm_engine::models::Role,
}

/// The artifact as a config document: indented JSON when that fits in a
/// document, else compact (a forest's many nodes); refused when even that
/// is too large for the engine to take.
pub fn artifact_json(artifact: &cvm_engine::models::ModelArtifact) -> anyhow::Result<Vec<u8>> {
    let limit = cvm_engine::offers::MAX_DOCUMENT_BYTES;
    let pretty = serde_json::to_vec_pretty(artifact)?;
    if pretty.len() <= limit {
        return Ok(pretty);
    }
    let compact = serde_json::to_vec(artifact)?;
    anyhow::ensure!(
        compact.len() <= limit,
        "the model is {} bytes of JSON, more than the {limit} a config document may have; train fewer or shallower trees",
        compact.len()
    );
    Ok(compact)
}

/// `cvm train`: replay recorded events through the driver, then fit models.
pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let TrainArgs { source, scope, target, window, validation_share, seed, out, force, role } = args;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut options = cvm_train::TrainOptions::new(scope, &target, now);
    options.seed = seed;
    options.validation_share = validation_share;
    options.progress = true;
    let window_ms = window.as_millis() as i64;
    let rows = match &source {
        TrainSource::Replay { events, documents } => {
            let events = recorded::read(events)?;
            let docs = train::documents(documents)?;
            train::replay_rows(&events, docs, cvm_engine::EngineConfig::default(), &options, window_ms)?
        }
        TrainSource::Topics { config, .. } => {
            let mut logged = read_logged(&config.kafka, &config.engine.input)?;
            train::logged_rows(&mut logged, &options, window_ms)
        }
    };
    let artifact = cvm_train::train(&rows, &options)?;
    let m = &artifact.metrics;
    let qini = match (m.qini, m.qini_interval) {
        (Some(q), Some([low, high])) => format!("{q:.4} (95 % interval {low:.4} to {high:.4})"),
        (Some(q), None) => format!("{q:.4}"),
        _ => "-".to_owned(),
    };
    let summary = format!(
        "{}: {} training / {} validation rows, AUC {:.3}, Qini {qini}, uplift model: {}",
        artifact.key(),
        artifact.data.train_rows,
        artifact.data.validation_rows,
        m.auc,
        if artifact.control.is_some() { "yes" } else { "no (too few held-out rows)" }
    );
    let artifact = cvm_engine::models::ModelArtifact { force, role, ..artifact };
    if let Some(why) = artifact.unproven() {
        anyhow::bail!("{summary}\nnot written: the engine would refuse it: {why} (--force writes it anyway)");
    }
    let json = artifact_json(&artifact)?;
    std::fs::write(&out, &json)?;
    let verdict = match (artifact.control.is_some(), force, role) {
        (false, _, _) => "a propensity model (no uplift to validate)",
        (true, _, cvm_engine::models::Role::Challenger) => {
            "a challenger: it runs in shadow, and `cvm report --challengers` values it against the champion"
        }
        (true, false, _) => "beats random targeting on validation",
        (true, true, _) => "forced: written without checking that it beats random targeting",
    };
    println!("wrote {}: {summary}; {verdict}", out.display());
    if let TrainSource::Topics { config, publish: true } = &source {
        let kafka = &config.kafka;
        cvm_kafka::publish_documents(kafka, &[(artifact.key(), json)], Duration::from_secs(30))?;
        println!(
            "published {} to {}; engines report acceptance on {}",
            artifact.key(),
            kafka.topics.offers_config,
            kafka.topics.config_status.name
        );
    }
    Ok(())
}

/// `cvm synth`: record a synthetic retailer's events.
pub fn synth(out: &Path, customers: u32, days: u32, seed: u64) -> anyhow::Result<()> {
    let config = cvm_synth::RetailerConfig { customers, days, seed, ..Default::default() };
    let n = recorded::write(out, cvm_synth::Retailer::new(config).map(|e| e.event))?;
    println!("wrote {n} events to {}", out.display());
    Ok(())
}

/// A checked document and the bytes it was read from.
type Linted = (ConfigDocument, Vec<u8>);

/// Reads and checks documents; prints one line each. `None` if any is bad.
fn lint_files(files: &[PathBuf]) -> anyhow::Result<Option<Vec<Linted>>> {
    let mut good = Vec::new();
    let mut bad = 0;
    for f in files {
        let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match ConfigDocument::parse_file(&name, &text) {
            Ok(doc) => {
                let what = match &doc {
                    ConfigDocument::Offer(d) => {
                        format!("offer {} v{} ({} trigger)", d.id(), d.version(), trigger_kind(d))
                    }
                    ConfigDocument::Campaign(c) => {
                        format!("campaign {} v{} ({} % holdout)", c.id, c.version, c.holdout_percent)
                    }
                    ConfigDocument::Policy(p) => format!("global contact policy v{}", p.version),
                    ConfigDocument::Model(m) => format!(
                        "model {} v{} (AUC {:.3}, {})",
                        m.target,
                        m.version,
                        m.metrics.auc,
                        if m.control.is_some() { "uplift" } else { "propensity" }
                    ),
                };
                println!("ok    {}: {what}", f.display());
                good.push((doc, text));
            }
            Err(e) => {
                bad += 1;
                println!("error {}: {e}", f.display());
            }
        }
    }
    if bad > 0 {
        println!("{bad} of {} document(s) rejected", files.len());
        return Ok(None);
    }
    Ok(Some(good))
}

fn trigger_kind(d: &OfferDefinition) -> &'static str {
    match d.doc.trigger {
        document::Trigger::Event { .. } => "event",
        document::Trigger::Delayed { .. } => "delayed",
        document::Trigger::Inactivity { .. } => "inactivity",
        document::Trigger::Sweep { .. } => "sweep",
    }
}

fn kafka_config(brokers: String, topic: String) -> cvm_kafka::KafkaConfig {
    let mut k = cvm_kafka::KafkaConfig { brokers, ..Default::default() };
    k.topics.offers_config = topic;
    k
}

/// `cvm offers lint`.
pub fn lint(files: &[PathBuf]) -> anyhow::Result<bool> {
    Ok(lint_files(files)?.is_some())
}

/// `cvm offers publish`: lint, then publish to the config topic.
pub fn publish(files: &[PathBuf], brokers: String, topic: String) -> anyhow::Result<bool> {
    let Some(docs) = lint_files(files)? else {
        println!("nothing published: fix the documents above first");
        return Ok(false);
    };
    let k = kafka_config(brokers, topic);
    let msgs: Vec<(String, Vec<u8>)> = docs.into_iter().map(|(d, text)| (d.key(), text)).collect();
    cvm_kafka::publish_documents(&k, &msgs, Duration::from_secs(30))?;
    println!(
        "published {} document(s) to {}; engines report acceptance on {}",
        msgs.len(),
        k.topics.offers_config,
        k.topics.config_status.name
    );
    Ok(true)
}

/// Every challenger in shadow against its champion: the decisions and
/// purchases topics valued with the windows and contact costs of the
/// documents on the config topic, taken in as an engine takes them.
pub fn challenger_duels(config: &Config) -> anyhow::Result<Vec<cvm_report::challengers::Duel>> {
    let kafka = &config.kafka;
    let docs = cvm_kafka::read_documents(kafka, Duration::from_secs(60))?;
    warn_if_incomplete(&kafka.topics.offers_config, &docs);
    let live = cvm_engine::catalog::LiveCatalog::default();
    for (key, value) in &docs.values {
        live.apply(key, value.as_deref(), 0);
    }
    let engine = cvm_engine::Engine::new(config.engine.clone(), (*live.current()).clone());
    let mut logged = read_logged(kafka, &config.engine.input)?;
    let terms = |offer: &str, campaign: &str| cvm_report::challengers::Terms {
        window_ms: engine.attribution_window_ms(campaign),
        contact_cost_minor: engine.catalog().get(offer).map_or(0.0, |d| d.doc.economics.contact_cost_minor as f64),
    };
    Ok(cvm_report::challengers::duels(&mut logged.decisions, &mut logged.purchases, terms))
}

/// The decisions and purchases topics read to their end, with what could
/// not be read said on standard error.
fn read_logged(
    kafka: &cvm_kafka::KafkaConfig,
    limits: &cvm_engine::validation::InputLimits,
) -> anyhow::Result<train::Logged> {
    let logged = train::read_logged(kafka, limits, Duration::from_secs(120))?;
    for (topic, unread) in &logged.unread {
        for (partition, position, end) in unread {
            eprintln!(
                "warning: {topic} partition {partition} was read to offset {position} of {end} before the timeout; \
                 using what was read"
            );
        }
    }
    for (topic, n) in logged.unreadable.iter().filter(|(_, n)| *n > 0) {
        eprintln!("warning: {n} message(s) on {topic} did not decode and were skipped");
    }
    eprintln!(
        "read {} decisions and {} purchases from {}",
        logged.decisions.len(),
        logged.purchases.len(),
        kafka.brokers
    );
    Ok(logged)
}

/// Says on stderr when a topic was not read to its end, so what is shown may
/// be incomplete.
fn warn_if_incomplete(topic: &str, latest: &cvm_kafka::LatestValues) {
    for (partition, position, end) in &latest.unread {
        eprintln!(
            "warning: {topic} partition {partition} was read to offset {position} of {end} before the timeout; \
             what is shown may be incomplete"
        );
    }
}

/// `cvm offers list`: the documents on the config topic.
pub fn list(brokers: String, topic: String) -> anyhow::Result<()> {
    let k = kafka_config(brokers, topic);
    let docs = cvm_kafka::read_documents(&k, Duration::from_secs(30))?;
    warn_if_incomplete(&k.topics.offers_config, &docs);
    let docs = docs.values;
    println!("{:<32} {:>7} {:<8} {:<11} campaign", "key", "version", "status", "trigger");
    for (key, value) in docs {
        let Some(value) = value else { continue };
        match ConfigDocument::parse(&key, &value) {
            Ok(ConfigDocument::Offer(d)) => println!(
                "{:<32} {:>7} {:<8} {:<11} {}",
                d.id(),
                d.version(),
                format!("{:?}", d.doc.status).to_lowercase(),
                trigger_kind(&d),
                d.doc.campaign_id
            ),
            Ok(doc) => println!("{key:<32} {:>7}", doc.version()),
            Err(e) => println!("{key:<32} {:>7} rejected: {}", "-", e.errors.join(" | ")),
        }
    }
    Ok(())
}

/// `cvm offers simulate`: one offer against recorded events.
pub fn simulate_offer(file: &Path, events: &Path, samples: usize) -> anyhow::Result<bool> {
    let Some(mut docs) = lint_files(&[file.to_owned()])? else { return Ok(false) };
    let (ConfigDocument::Offer(def), _) = docs.remove(0) else {
        anyhow::bail!("{} is not an offer document; simulate takes an offer", file.display());
    };
    let def = *def;
    let events = recorded::read(events)?;
    let sim = simulate::simulate(def, &events, cvm_engine::EngineConfig::default(), samples);
    print!("{}", sim.render());
    Ok(true)
}

/// `cvm offers schema`: the JSON Schema of a document kind.
pub fn schema(kind: &str) -> anyhow::Result<()> {
    let file = format!("{kind}.schema.json");
    let Some((_, schema)) = document::json_schemas().into_iter().find(|(name, _)| *name == file) else {
        anyhow::bail!("unknown kind {kind:?}; use offer, campaign or policy");
    };
    print!("{schema}");
    Ok(())
}

/// `cvm offers generate`: writes a synthetic catalog as one file per offer.
pub fn generate(count: usize, seed: u64, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (id, doc) in cvm_synth::generated_offers(count, seed) {
        let path = out.join(format!("{id}.yaml"));
        std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {count} offers to {}", out.display());
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // First, so that a SIGTERM while starting (restoring partitions) stops cleanly too.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let health = ops::Health::default();
    let addr = ops::serve(config.http.listen, health.clone()).await.context("cannot bind the operations endpoint")?;
    tracing::info!(%addr, "Operations endpoint up.");
    let pipeline = Pipeline::start(&config, health).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if pipeline.ingest_failed() { break; }
            }
        }
    }
    tracing::info!("Stopping: committing, draining the outbox, flushing.");
    pipeline.shutdown(Duration::from_secs(30)).await?;
    Ok(())
}
