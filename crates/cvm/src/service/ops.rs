//! Operations: logging, the Prometheus recorder, health, and the HTTP
//! endpoint serving `/metrics`, `/healthz` and `/readyz`.

use cvm_kafka::IngestStatus;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
};

use axum::{extract::State, http::StatusCode, routing::get, Router};
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
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(cvm_engine::telemetry::EVENT_PROCESSING.into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(cvm_engine::telemetry::BATCH_COMMIT.into()), &commit)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            cvm_engine::telemetry::describe();
            handle
        })
        .clone()
}

/// Liveness and readiness, flipped by the pipeline.
#[derive(Debug, Default, Clone)]
pub struct Health {
    live: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    /// The ingest workers' partitions: paused by backpressure, restoring.
    ingest: Arc<IngestStatus>,
}

impl Health {
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
        .route("/metrics", get(move || std::future::ready(handle.render())))
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
