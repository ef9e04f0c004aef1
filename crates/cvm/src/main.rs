//! The `cvm` command line.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use cvm::{bench, config::Config, demo, ops, recorded, simulate, Pipeline};
use cvm_engine::{
    offers::document,
    ConfigDocument,
    OfferDefinition,
};

#[derive(Parser)]
#[command(name = "cvm", version, about = "Event-streaming CVM personalization engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine against a Kafka cluster.
    Run {
        /// TOML configuration; `CVM__SECTION__KEY` variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The embedded quickstart: in-process broker, synthetic retailer, engine.
    Demo {
        /// Synthetic customers.
        #[arg(long, default_value_t = 50_000)]
        customers: u32,
        /// Simulated days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Seed of the synthetic retailer.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Address of /metrics, /healthz, /readyz.
        #[arg(long, default_value = "127.0.0.1:9898")]
        http: SocketAddr,
        /// Keep serving /metrics this long after the summary, e.g. "5m".
        #[arg(long, default_value = "0s", value_parser = humantime_duration)]
        linger: Duration,
        /// Keep state here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also write the incrementality report as a self-contained HTML page.
        #[arg(long)]
        report_html: Option<PathBuf>,
    },
    /// Incrementality per campaign: from the stats topic (every instance's
    /// partitions) or from one engine's state directory.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["brokers", "data_dir"])))]
    Report {
        /// Bootstrap brokers: read the compacted stats topic.
        #[arg(long)]
        brokers: Option<String>,
        /// The stats topic.
        #[arg(long, default_value = "cvm.stats")]
        topic: String,
        /// Or an engine's store directory (`store.path`), opened read-only,
        /// so it may belong to a running engine; it holds that instance's
        /// partitions only.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// `text`, `json` or `html`.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Config documents: offers, campaigns, the global contact policy.
    Offers {
        #[command(subcommand)]
        command: OffersCommand,
    },
    /// Decision-core throughput and latency over a RocksDB profile store.
    Bench {
        /// Profiles loaded before measuring.
        #[arg(long, default_value_t = 1_000_000)]
        profiles: u32,
        /// Events measured.
        #[arg(long, default_value_t = 500_000)]
        events: u32,
        /// Events per committed batch.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
        /// Store directory (temporary by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Eligibility cost: one compiled CEL rule, and 1,000 offers per event.
    BenchEligibility {
        /// Evaluations measured.
        #[arg(long, default_value_t = 2_000_000)]
        iterations: u32,
    },
    /// Model scoring cost: 1,000 model-scored candidates for one customer.
    BenchScoring {
        /// Customers scored.
        #[arg(long, default_value_t = 2_000)]
        iterations: u32,
    },
    /// Uplift vs propensity vs rules vs random targeting on a synthetic
    /// retailer whose customers' responsiveness is known.
    BenchUplift {
        /// Customers.
        #[arg(long, default_value_t = 30_000)]
        customers: u32,
        /// Days of history.
        #[arg(long, default_value_t = 60)]
        days: u32,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Percent of held-out customers each policy contacts.
        #[arg(long, default_value_t = 30.0)]
        depth_percent: f64,
        /// Write the trained model artifact here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train a model: replay recorded events with config documents through
    /// the decision core, then fit propensity, uplift and value models for
    /// one offer or campaign from its decisions and the purchases after them.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["offer", "campaign"])))]
    Train {
        /// Recorded events (`cvm synth --out`): JSON lines or protobuf.
        #[arg(long)]
        events: PathBuf,
        /// Config documents (offers, campaigns, policy) to replay with.
        #[arg(long, required = true, num_args = 1..)]
        documents: Vec<PathBuf>,
        /// Train a model for this offer.
        #[arg(long)]
        offer: Option<String>,
        /// Or for every offer of this campaign.
        #[arg(long)]
        campaign: Option<String>,
        /// Purchases this long after a decision are its outcome.
        #[arg(long, default_value = "7d", value_parser = humantime_duration)]
        window: Duration,
        /// Share of the window (latest decisions) kept for validation.
        #[arg(long, default_value_t = 0.3)]
        validation_share: f64,
        /// Seed of the fit.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write the artifact (publish it, or put it in the model directory).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write synthetic retailer events to a file (for `offers simulate`).
    Synth {
        /// Output file: `.jsonl` for JSON lines, anything else for protobuf.
        #[arg(long)]
        out: PathBuf,
        /// Customers.
        #[arg(long, default_value_t = 5_000)]
        customers: u32,
        /// Days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// Output format of `cvm report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// A table for terminals.
    Text,
    /// For machines.
    Json,
    /// A self-contained page with plots.
    Html,
}

#[derive(Subcommand)]
enum OffersCommand {
    /// Check config documents (offers, campaigns with `kind: campaign`, the
    /// policy with `kind: contact_policy`); exits non-zero if any is invalid.
    Lint {
        /// YAML or JSON files, one document each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Lint, then publish documents to the config topic (offers under their
    /// id, campaigns under `campaign/<id>`, the policy under `policy/global`).
    Publish {
        /// YAML or JSON files, one document each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Bootstrap brokers.
        #[arg(long, env = "CVM__KAFKA__BROKERS")]
        brokers: String,
        /// Config topic.
        #[arg(long, default_value = "cvm.config.offers")]
        topic: String,
    },
    /// What is on the config topic: each offer's live version, or why it is rejected.
    List {
        /// Bootstrap brokers.
        #[arg(long, env = "CVM__KAFKA__BROKERS")]
        brokers: String,
        /// Config topic.
        #[arg(long, default_value = "cvm.config.offers")]
        topic: String,
    },
    /// Dry-run one document against recorded events through the decision core.
    Simulate {
        /// The offer document.
        file: PathBuf,
        /// Recorded events: JSON lines (`.jsonl`) or length-delimited protobuf.
        #[arg(long)]
        events: PathBuf,
        /// Rendered messages to show.
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Print the JSON Schema of offer documents (or of `campaign` or `policy`).
    Schema {
        /// `offer`, `campaign` or `policy`.
        #[arg(default_value = "offer")]
        kind: String,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<humantime::Duration>().map(Into::into).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    cvm_expr::quiet_parser_panics();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(config.as_deref())?;
            ops::init_logging(&config.log);
            runtime()?.block_on(serve(config))?;
        }
        Command::Demo { customers, days, seed, http, linger, data_dir, report_html } => {
            let opts = demo::DemoOptions { customers, days, seed, http, linger, data_dir, report_html };
            runtime()?.block_on(demo::run(opts))?;
        }
        Command::Offers { command } => return offers(command),
        Command::Report { brokers, topic, data_dir, format, out } => {
            let stats = match (brokers, data_dir) {
                (Some(brokers), _) => {
                    let k = cvm_kafka::KafkaConfig { brokers, ..Default::default() };
                    let mut stats = Vec::new();
                    for (key, value) in cvm_kafka::read_latest(&k, &topic, Duration::from_secs(60))? {
                        let Some(value) = value else { continue };
                        let decoded = cvm_kafka::decode_stats(&k.topics, &value)
                            .map_err(|e| anyhow::anyhow!("{topic} message {key:?} is unreadable: {e}"))?;
                        stats.push(decoded);
                    }
                    stats
                }
                (None, Some(dir)) => cvm_store::Store::open_read_only(&dir)
                    .with_context(|| format!("opening {} read-only", dir.display()))?
                    .stats()?,
                (None, None) => unreachable!("clap requires one source"),
            };
            let report = cvm_report::Report::from_stats(stats.iter().map(|(_, k, s)| (k, s)));
            let rendered = match format {
                ReportFormat::Text => cvm_report::text(&report),
                ReportFormat::Json => report.json(),
                ReportFormat::Html => cvm_report::html(&report).map_err(|e| anyhow::anyhow!("drawing plots: {e}"))?,
            };
            match out {
                Some(path) => std::fs::write(&path, rendered).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{rendered}"),
            }
        }
        Command::BenchEligibility { iterations } => cvm::bench_eligibility::eligibility(iterations),
        Command::BenchScoring { iterations } => cvm::bench_scoring::scoring(iterations),
        Command::BenchUplift { customers, days, seed, depth_percent, out } => {
            let opts = cvm::uplift::UpliftOptions { customers, days, seed, depth_percent, out };
            print!("{}", cvm::uplift::run(&opts)?.render());
        }
        Command::Train { events, documents, offer, campaign, window, validation_share, seed, out } => {
            let (scope, target) = match (offer, campaign) {
                (Some(o), _) => (cvm_engine::models::Scope::Offer, o),
                (None, Some(c)) => (cvm_engine::models::Scope::Campaign, c),
                (None, None) => unreachable!("clap requires one target"),
            };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            let mut options = cvm_train::TrainOptions::new(scope, &target, now);
            options.seed = seed;
            options.validation_share = validation_share;
            options.progress = true;
            let events = recorded::read(&events)?;
            let docs = cvm::train::documents(&documents)?;
            let artifact = cvm::train::replay_and_train(
                &events,
                docs,
                cvm_engine::EngineConfig::default(),
                &options,
                window.as_millis() as i64,
            )?;
            std::fs::write(&out, serde_json::to_vec_pretty(&artifact)?)?;
            let m = &artifact.metrics;
            println!(
                "wrote {} ({}): {} training / {} validation rows, AUC {:.3}, Qini {}, uplift model: {}",
                out.display(),
                artifact.key(),
                artifact.data.train_rows,
                artifact.data.validation_rows,
                m.auc,
                m.qini.map_or("-".to_owned(), |q| format!("{q:.4}")),
                if artifact.control.is_some() { "yes" } else { "no (too few held-out rows)" }
            );
        }
        Command::Synth { out, customers, days, seed } => {
            let config = cvm_synth::RetailerConfig { customers, days, seed, ..Default::default() };
            let n = recorded::write(&out, cvm_synth::Retailer::new(config).map(|e| e.event))?;
            println!("wrote {n} events to {}", out.display());
        }
        Command::Bench { profiles, events, batch, data_dir } => {
            bench::run(&bench::BenchOptions { profiles, events, batch, data_dir })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A checked document and the bytes it was read from.
type Linted = (ConfigDocument, Vec<u8>);

/// Reads and checks documents; prints one line each. `None` if any is bad.
fn lint(files: &[PathBuf]) -> anyhow::Result<Option<Vec<Linted>>> {
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

fn offers(command: OffersCommand) -> anyhow::Result<ExitCode> {
    match command {
        OffersCommand::Lint { files } => {
            if lint(&files)?.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
        OffersCommand::Publish { files, brokers, topic } => {
            let Some(docs) = lint(&files)? else {
                println!("nothing published: fix the documents above first");
                return Ok(ExitCode::FAILURE);
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
        }
        OffersCommand::List { brokers, topic } => {
            let k = kafka_config(brokers, topic);
            let docs = cvm_kafka::read_documents(&k, Duration::from_secs(30))?;
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
        }
        OffersCommand::Simulate { file, events, samples } => {
            let Some(mut docs) = lint(std::slice::from_ref(&file))? else { return Ok(ExitCode::FAILURE) };
            let (ConfigDocument::Offer(def), _) = docs.remove(0) else {
                anyhow::bail!("{} is not an offer document; simulate takes an offer", file.display());
            };
            let def = *def;
            let events = recorded::read(&events)?;
            let sim = simulate::simulate(def, &events, cvm_engine::EngineConfig::default(), samples);
            print!("{}", sim.render());
        }
        OffersCommand::Schema { kind } => {
            let file = format!("{kind}.schema.json");
            let Some((_, schema)) = document::json_schemas().into_iter().find(|(name, _)| *name == file) else {
                anyhow::bail!("unknown kind {kind:?}; use offer, campaign or policy");
            };
            print!("{schema}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let health = ops::Health::default();
    let addr = ops::serve(config.http.listen, health.clone()).await.context("cannot bind the operations endpoint")?;
    tracing::info!(%addr, "Operations endpoint up.");
    let pipeline = Pipeline::start(&config, health).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
