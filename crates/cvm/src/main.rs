//! The `cvm` command line: parses it and dispatches to [`cvm::commands`].

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use cvm::{
    commands::{self, humantime_duration, parse_world, ReportFormat, ReportSource, TrainArgs, TrainSource},
    lab::{bench, bench_eligibility, bench_restore, bench_scoring, bench_sweep, demo::DemoOptions, uplift},
    Config,
};
use cvm_engine::models::{Role, Scope};

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
    Demo(DemoOptions),
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
        /// Also value each challenger model running in shadow against its
        /// champion, off-policy, from the decisions and purchases topics
        /// (with `--brokers`).
        #[arg(long, requires = "brokers")]
        challengers: bool,
        /// The engine's config file, for the topics' names and formats, the
        /// input limits and the default attribution window (with `--challengers`).
        #[arg(long, requires = "challengers")]
        config: Option<PathBuf>,
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
        /// Active offers generated with the retail mix (`cvm offers generate`);
        /// 0 = the sample catalog.
        #[arg(long, default_value_t = 0)]
        offers: usize,
    },
    /// Eligibility cost: one compiled CEL rule, and 1,000 offers per event.
    BenchEligibility {
        /// Evaluations measured.
        #[arg(long, default_value_t = 2_000_000)]
        iterations: u32,
    },
    /// How fast a partition's state is restored from the changelog
    /// (in-process broker): profiles/s.
    BenchRestore {
        /// Profiles in the partition.
        #[arg(long, default_value_t = 200_000)]
        profiles: u32,
    },
    /// The store's footprint per profile after compaction, and a sweep over
    /// every profile at no rate limit: profiles/s with worker threads.
    BenchSweep {
        /// Profiles loaded and swept.
        #[arg(long, default_value_t = 1_000_000)]
        profiles: u32,
        /// Worker threads, each owning a share of the 8 partitions.
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// Store directory (temporary by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
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
        /// Worlds to run (`types`, `interactions`, `no-persuadables`); all by default.
        #[arg(long = "world", value_parser = parse_world)]
        worlds: Vec<cvm_synth::World>,
        /// Train the linear two-model (T-learner) uplift model instead of the
        /// uplift forest, to compare.
        #[arg(long)]
        linear: bool,
        /// Write the trained model artifact here (of the last world run).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run each world this many times (seeds `seed`, `seed + 1`, …) and
        /// print one line per run and how often the intervals covered the truth.
        #[arg(long, default_value_t = 1)]
        repeat: u64,
    },
    /// Train a model: fit propensity, uplift and value models for one offer
    /// or campaign from its decisions and the purchases after them — those a
    /// running engine logged on Kafka (`--brokers`), or those of recorded
    /// events replayed with config documents through the decision core.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["offer", "campaign"])))]
    #[command(group(clap::ArgGroup::new("source").required(true).args(["events", "brokers"])))]
    Train {
        /// Recorded events (`cvm synth --out`): JSON lines or protobuf.
        #[arg(long, requires = "documents")]
        events: Option<PathBuf>,
        /// Config documents (offers, campaigns, policy) to replay with.
        #[arg(long, num_args = 1..)]
        documents: Vec<PathBuf>,
        /// Bootstrap brokers: read the decisions and purchases topics the
        /// engine uses (names and formats from `--config`).
        #[arg(long)]
        brokers: Option<String>,
        /// The engine's config file, for its topic names, formats and input limits.
        #[arg(long, requires = "brokers")]
        config: Option<PathBuf>,
        /// Publish the artifact on the config topic as well (with `--brokers`).
        #[arg(long, requires = "brokers")]
        publish: bool,
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
        /// Write an uplift model even if validation does not show it beats
        /// random targeting, marked `force` so the engine scores with it.
        #[arg(long)]
        force: bool,
        /// Write a challenger: the engine scores it in shadow beside the
        /// champion and logs its choices, for `cvm report --challengers`;
        /// promote it by training or publishing it without this flag.
        #[arg(long)]
        challenger: bool,
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
    /// Write a synthetic catalog with a large retailer's mix (mostly product
    /// coupons, some category offers, a few on any app open), for load tests:
    /// lint and publish it like any documents.
    Generate {
        /// Offers to write.
        #[arg(long, default_value_t = 1_000)]
        count: usize,
        /// Seed (the same seed writes the same catalog).
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Directory to write `<id>.yaml` files into (created).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    cvm_expr::quiet_parser_panics();
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `Ok(false)` when its input was rejected.
fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Run { config } => commands::run_engine(config.as_deref())?,
        Command::Demo(options) => commands::demo(options)?,
        Command::Offers { command } => return offers(command),
        Command::Report { brokers, topic, data_dir, format, out, challengers, config } => {
            let engine_config = match (&brokers, challengers) {
                (Some(brokers), true) => {
                    let mut c = Config::load(config.as_deref())?;
                    c.kafka.brokers = brokers.clone();
                    Some(c)
                }
                _ => None,
            };
            let source = match (brokers, data_dir) {
                (Some(brokers), _) => ReportSource::Topic { brokers, topic },
                (None, Some(dir)) => ReportSource::Store(dir),
                (None, None) => unreachable!("clap requires one source"),
            };
            commands::report(source, format, out, engine_config.as_ref())?
        }
        Command::BenchEligibility { iterations } => bench_eligibility::eligibility(iterations),
        Command::BenchScoring { iterations } => bench_scoring::scoring(iterations),
        Command::BenchRestore { profiles } => bench_restore::run(profiles)?,
        Command::BenchSweep { profiles, workers, data_dir } => bench_sweep::run(profiles, workers, data_dir)?,
        Command::BenchUplift { customers, days, seed, worlds, linear, out, repeat } => {
            let worlds = if worlds.is_empty() { cvm_synth::World::ALL.to_vec() } else { worlds };
            for world in worlds {
                let mut runs = Vec::new();
                for seed in seed..seed.saturating_add(repeat.max(1)) {
                    let opts = uplift::UpliftOptions { world, customers, days, seed, linear, out: out.clone() };
                    let report = uplift::run(&opts)?;
                    if repeat > 1 {
                        println!("{}", report.summary_line(seed));
                    } else {
                        print!("{}", report.render());
                    }
                    runs.push(report);
                }
                if repeat > 1 {
                    print!("{}", uplift::coverage(&runs));
                }
            }
        }
        Command::Train {
            events,
            documents,
            brokers,
            config,
            publish,
            offer,
            campaign,
            window,
            validation_share,
            seed,
            out,
            force,
            challenger,
        } => {
            let role = if challenger { Role::Challenger } else { Role::Champion };
            let (scope, target) = match (offer, campaign) {
                (Some(o), _) => (Scope::Offer, o),
                (None, Some(c)) => (Scope::Campaign, c),
                (None, None) => unreachable!("clap requires one target"),
            };
            let source = match (events, brokers) {
                (Some(events), _) => TrainSource::Replay { events, documents },
                (None, Some(brokers)) => {
                    let mut config = Config::load(config.as_deref())?;
                    config.kafka.brokers = brokers;
                    TrainSource::Topics { config: Box::new(config), publish }
                }
                (None, None) => unreachable!("clap requires one source"),
            };
            let args = TrainArgs { source, scope, target, window, validation_share, seed, out, force, role };
            commands::train(args)?
        }
        Command::Synth { out, customers, days, seed } => commands::synth(&out, customers, days, seed)?,
        Command::Bench { profiles, events, batch, data_dir, offers } => {
            bench::run(&bench::BenchOptions { profiles, events, batch, data_dir, offers })?
        }
    }
    Ok(true)
}

fn offers(command: OffersCommand) -> anyhow::Result<bool> {
    match command {
        OffersCommand::Lint { files } => commands::lint(&files),
        OffersCommand::Publish { files, brokers, topic } => commands::publish(&files, brokers, topic),
        OffersCommand::List { brokers, topic } => commands::list(brokers, topic).map(|()| true),
        OffersCommand::Simulate { file, events, samples } => commands::simulate_offer(&file, &events, samples),
        OffersCommand::Schema { kind } => commands::schema(&kind).map(|()| true),
        OffersCommand::Generate { count, seed, out } => commands::generate(count, seed, &out).map(|()| true),
    }
}
