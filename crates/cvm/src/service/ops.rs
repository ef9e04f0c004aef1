//! Operations: logging, the Prometheus recorder, health, and the HTTP
//! endpoint serving `/metrics`, `/healthz` and `/readyz`.
//!
//! Most series are counted where things happen. What is a reading rather
//! than a count — RocksDB's sizes and stalls, the outbox's oldest entry,
//! the process's memory and CPU — is sampled when `/metrics` is scraped, so
//! it costs nothing between scrapes and is never stale.

use cvm_engine::telemetry;
use cvm_kafka::IngestStatus;
use cvm_store::Store;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::service::config::{LogConfig, LogFormat};

/// Installs the `tracing` subscriber (once per process; later calls are no-ops).
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2];
            let commit = [1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5];
            let restore = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(telemetry::EVENT_PROCESSING.into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(telemetry::BATCH_COMMIT.into()), &commit))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(telemetry::RESTORE_DURATION.into()), &restore))
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            telemetry::describe();
            describe_sampled();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Gauge `cvm_build_info`, always 1, label `version`.
const BUILD_INFO: &str = "cvm_build_info";
/// Gauge `cvm_ready`: what `/readyz` would answer (1 ready, 0 not).
const READY: &str = "cvm_ready";

/// Sampled at scrape: RocksDB's figures (see [`cvm_store::RocksDbFigures`]).
mod rocksdb_series {
    pub(super) const LIVE_SST: &str = "cvm_rocksdb_live_sst_bytes";
    pub(super) const PENDING_COMPACTION: &str = "cvm_rocksdb_pending_compaction_bytes";
    pub(super) const MEMTABLES: &str = "cvm_rocksdb_memtable_bytes";
    pub(super) const BLOCK_CACHE_USAGE: &str = "cvm_rocksdb_block_cache_usage_bytes";
    pub(super) const RUNNING_COMPACTIONS: &str = "cvm_rocksdb_running_compactions";
    pub(super) const WRITE_STOPPED: &str = "cvm_rocksdb_write_stopped";
    pub(super) const PROFILES: &str = "cvm_rocksdb_estimated_profiles";
    pub(super) const CACHE_HITS: &str = "cvm_rocksdb_block_cache_hits_total";
    pub(super) const CACHE_MISSES: &str = "cvm_rocksdb_block_cache_misses_total";
    pub(super) const STALL: &str = "cvm_rocksdb_write_stall_seconds_total";
}

fn describe_sampled() {
    use metrics::{describe_counter, describe_gauge, Unit};
    use rocksdb_series::*;
    describe_gauge!(BUILD_INFO, "Always 1; the version label says which cvm runs.");
    describe_gauge!(READY, "1 when /readyz answers 200: started, nothing restoring, ingest not paused.");
    describe_gauge!(LIVE_SST, Unit::Bytes, "Live SST files of the state store (data on disk without the WAL).");
    describe_gauge!(PENDING_COMPACTION, Unit::Bytes, "Bytes RocksDB estimates compaction still has to rewrite.");
    describe_gauge!(MEMTABLES, Unit::Bytes, "Bytes in the state store's memtables.");
    describe_gauge!(
        BLOCK_CACHE_USAGE,
        Unit::Bytes,
        "Bytes held by the shared block cache (memtables are charged to it)."
    );
    describe_gauge!(RUNNING_COMPACTIONS, "Compactions running now.");
    describe_gauge!(WRITE_STOPPED, "1 while RocksDB stops writes (memtables, level-0 files or compaction debt).");
    describe_gauge!(PROFILES, "Customer profiles in the state store, as RocksDB estimates them.");
    describe_counter!(CACHE_HITS, "Block-cache hits since the store opened.");
    describe_counter!(CACHE_MISSES, "Block-cache misses since the store opened.");
    describe_gauge!(STALL, Unit::Seconds, "Time writes were delayed or stopped since the store opened.");
    describe_gauge!("process_cpu_seconds_total", Unit::Seconds, "User and system CPU time of the process.");
    describe_gauge!("process_resident_memory_bytes", Unit::Bytes, "Resident memory of the process.");
    describe_gauge!("process_virtual_memory_bytes", Unit::Bytes, "Virtual memory of the process.");
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!("process_max_fds", "Soft limit on open file descriptors.");
    describe_gauge!("process_threads", "Threads of the process.");
    describe_gauge!("process_start_time_seconds", Unit::Seconds, "Start time of the process since the Unix epoch.");
}

/// Sets the series read off the store: RocksDB's and the outbox's oldest entry.
fn export_store(store: &Store) {
    use rocksdb_series::*;
    let f = store.rocksdb_figures();
    gauge!(LIVE_SST).set(f.live_sst_bytes as f64);
    gauge!(PENDING_COMPACTION).set(f.pending_compaction_bytes as f64);
    gauge!(MEMTABLES).set(f.memtable_bytes as f64);
    gauge!(BLOCK_CACHE_USAGE).set(f.block_cache_usage_bytes as f64);
    gauge!(RUNNING_COMPACTIONS).set(f.running_compactions as f64);
    gauge!(WRITE_STOPPED).set(f64::from(u8::from(f.write_stopped)));
    gauge!(PROFILES).set(f.estimated_profiles as f64);
    counter!(CACHE_HITS).absolute(f.block_cache_hits);
    counter!(CACHE_MISSES).absolute(f.block_cache_misses);
    // A counter in meaning; a gauge because the recorder's counters are
    // integers and stalls are fractions of a second (`rate()` reads it alike).
    gauge!(STALL).set(f.stall_micros as f64 / 1e6);
    let age = store.outbox_oldest_age().map_or(0.0, |a| a.as_secs_f64());
    gauge!(telemetry::OUTBOX_OLDEST_AGE).set(age);
}

/// What the operations endpoint reports of the running pipeline: liveness
/// and readiness (flipped by the pipeline), and the store sampled at each
/// scrape while it is open.
#[derive(Debug, Default, Clone)]
pub struct Health {
    live: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    /// The ingest workers' partitions: paused by backpressure, restoring.
    ingest: Arc<IngestStatus>,
    /// The pipeline's store, while it runs.
    store: Arc<Mutex<Option<Store>>>,
}

impl Health {
    /// Samples `store` at each scrape from now on (`None`: stops, so a
    /// stopped pipeline's store can close).
    pub fn sample_store(&self, store: Option<Store>) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = store;
    }

    /// Samples what is read rather than counted, then renders every series.
    fn render(&self, handle: &PrometheusHandle) -> String {
        crate::service::process::export();
        gauge!(READY).set(f64::from(u8::from(self.is_ready())));
        if let Some(store) = self.store.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            export_store(store);
        }
        handle.render()
    }

    /// Marks the process alive (or dead: a stopped ingest loop).
    pub fn set_live(&self, v: bool) {
        self.live.store(v, Ordering::SeqCst);
    }
    /// Marks the process ready to take traffic.
    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::SeqCst);
    }
    /// Whether ready: started, no partition restoring, and ingest not paused.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }
    /// What the ingest workers report (paused, restoring).
    pub fn ingest_status(&self) -> Arc<IngestStatus> {
        self.ingest.clone()
    }
    /// Why not ready, if not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.ready.load(Ordering::SeqCst) {
            Some("starting: the config topic is not read to its end yet, or stopping\n")
        } else if self.ingest.restoring() > 0 {
            Some("restoring: a gained partition's state is being read from the changelog\n")
        } else if self.ingest.paused() {
            Some("ingest paused: the outbox is over kafka.outbox_max_entries; the broker is not taking offers\n")
        } else {
            None
        }
    }
}

fn status(ok: bool, what: &'static str) -> (StatusCode, &'static str) {
    if ok {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, what)
    }
}

/// Serves the operations endpoint on `addr` until the runtime shuts down.
/// Returns the bound address (useful with port 0).
pub async fn serve(addr: SocketAddr, health: Health) -> std::io::Result<SocketAddr> {
    let handle = metrics_handle();
    let app = Router::new()
        .route("/metrics", get(move |State(h): State<Health>| std::future::ready(h.render(&handle))))
        .route(
            "/healthz",
            get(|State(h): State<Health>| async move { status(h.live.load(Ordering::SeqCst), "ingest stopped\n") }),
        )
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                let reason = h.not_ready_reason();
                status(reason.is_none(), reason.unwrap_or_default())
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "Operations endpoint failed.");
        }
    });
    Ok(bound)
}
