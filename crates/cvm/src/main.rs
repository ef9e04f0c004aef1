//! The `cvm` command line.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use cvm::{bench, config::Config, demo, ops, Pipeline};
use cvm_engine::OfferDefinition;

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
    },
    /// Offer documents.
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
}

#[derive(Subcommand)]
enum OffersCommand {
    /// Check offer documents; exits non-zero if any is invalid.
    Lint {
        /// JSON files, one offer each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    s.parse::<humantime::Duration>().map(Into::into).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
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
        Command::Demo { customers, days, seed, http, linger, data_dir } => {
            runtime()?.block_on(demo::run(demo::DemoOptions { customers, days, seed, http, linger, data_dir }))?;
        }
        Command::Offers { command: OffersCommand::Lint { files } } => {
            let mut bad = 0;
            for f in &files {
                let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let key = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                match OfferDefinition::parse(&key, &text) {
                    Ok(d) => println!(
                        "ok    {}: offer {} v{} ({} condition(s))",
                        f.display(),
                        d.id,
                        d.version,
                        d.eligibility.len()
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("error {}: {e}", f.display());
                    }
                }
            }
            if bad > 0 {
                println!("{bad} of {} document(s) rejected", files.len());
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Bench { profiles, events, batch, data_dir } => {
            bench::run(&bench::BenchOptions { profiles, events, batch, data_dir })?;
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
