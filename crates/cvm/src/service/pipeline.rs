//! Wires the components into a running engine and stops it cleanly.
//!
//! Start: topics (if `kafka.create_topics`) → state store → offer catalog
//! read to the end of the config topic → publisher → one ingest loop per
//! worker (each restores the partitions it gains before applying their
//! events) → ready.
//! Stop: the ingest loops commit their batches and exit → the publisher
//! drains the outbox and flushes → the store is flushed. Nothing in flight
//! is lost.

use std::{
    sync::{atomic::AtomicBool, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use cvm_engine::catalog::LiveCatalog;
use cvm_engine::Engine;
use cvm_kafka::{check_co_partitioned, ensure_topics, Ingest, OffersReader, Publisher, Shared};
use cvm_store::Store;
use tokio::sync::{watch, Notify};
use tracing::{error, info};

use crate::service::{config::Config, ops::Health};

/// Why the pipeline could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Topic creation failed.
    #[error(transparent)]
    Admin(#[from] cvm_kafka::AdminError),
    /// The store did not open.
    #[error(transparent)]
    Store(#[from] cvm_store::OpenError),
    /// A Kafka client could not be created.
    #[error(transparent)]
    Client(#[from] cvm_kafka::ClientError),
    /// The ingest loop failed.
    #[error(transparent)]
    Ingest(#[from] cvm_kafka::IngestError),
    /// The config topic could not be read.
    #[error("cannot read the offer config topic: {0}; check it exists and the broker is reachable")]
    Offers(rdkafka::error::KafkaError),
    /// Shutdown did not finish in time.
    #[error("{0} did not stop within the shutdown timeout")]
    Timeout(&'static str),
}

/// A running engine.
#[derive(Debug)]
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    /// One ingest loop per worker; emptied by shutdown.
    ingest: Vec<JoinHandle<Result<(), cvm_kafka::IngestError>>>,
    offers: Option<JoinHandle<()>>,
    models: Option<JoinHandle<()>>,
    publisher: tokio::task::JoinHandle<()>,
    drain: watch::Sender<bool>,
    store: Store,
    catalog: LiveCatalog,
    health: Health,
}

impl Pipeline {
    /// Starts every component; returns once the offer catalog is loaded and
    /// the ingest loop runs. Must be called inside a tokio runtime.
    pub async fn start(config: &Config, health: Health) -> Result<Self, PipelineError> {
        let k = &config.kafka;
        if k.create_topics {
            ensure_topics(k).await?;
        }
        let checked = k.clone();
        tokio::task::spawn_blocking(move || check_co_partitioned(&checked)).await.expect("check does not panic")?;
        let store = Store::open(&config.store)?.with_changelog(&k.topics.changelog);
        let catalog = LiveCatalog::default();
        let stop = Arc::new(AtomicBool::new(false));

        let reader = OffersReader::new(k, catalog.clone())?;
        // Not ready, and no event decided, before every document published
        // so far is loaded: a partial catalog would decide with offers missing.
        let mut reader = reader;
        loop {
            let (done, back) = tokio::task::spawn_blocking(move || {
                let done = reader.catch_up(Duration::from_secs(30));
                (done, reader)
            })
            .await
            .expect("catch-up does not panic");
            reader = back;
            if done.map_err(PipelineError::Offers)? {
                break;
            }
        }
        let offers = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cvm-offers".into())
                .spawn(move || reader.follow(&stop))
                .expect("spawn offers thread")
        };

        // Models from the directory are loaded before the first event.
        let models = config.model_dir.path.as_ref().map(|dir| {
            let mut watcher = crate::service::model_dir::ModelDirectory::new(dir);
            let loaded = watcher.scan(&catalog);
            info!(dir = %dir.display(), files = loaded, "Model directory loaded.");
            let (stop, catalog, every) = (stop.clone(), catalog.clone(), config.model_dir.poll_interval);
            std::thread::Builder::new()
                .name("cvm-models".into())
                .spawn(move || watcher.watch(&catalog, &stop, every))
                .expect("spawn model directory thread")
        });

        let wake = Arc::new(Notify::new());
        let (drain, drain_rx) = watch::channel(false);
        let gate = Arc::new(cvm_kafka::PublishGate::default());
        let mut publisher = Publisher::new(k, store.clone(), wake.clone(), gate.clone())?;
        publisher.prepare().await?;
        let publisher = tokio::spawn(publisher.run(drain_rx));

        // Workers share the store, the catalog and the campaign gauges (the
        // gauges sum every owned partition, whichever worker commits it).
        let gauges = Arc::new(Mutex::new(crate::service::gauges::campaign_gauges(store.clone())));
        let shared = Shared {
            store: store.clone(),
            catalog: catalog.clone(),
            wake,
            status: health.ingest_status(),
            stop: stop.clone(),
            gate,
        };
        let workers = k.worker_count();
        let mut ingest = Vec::with_capacity(workers);
        for worker in 0..workers {
            let engine = Engine::new(config.engine.clone(), cvm_engine::Catalog::default())
                .with_partitions(u32::try_from(k.partitions).unwrap_or(1));
            let gauges = gauges.clone();
            let on_commit: cvm_kafka::CommittedStats =
                Box::new(move |totals| (gauges.lock().unwrap_or_else(std::sync::PoisonError::into_inner))(totals));
            let loop_ = Ingest::new(k, shared.clone(), engine, on_commit, worker)?;
            let health = health.clone();
            let handle = std::thread::Builder::new()
                .name(format!("cvm-ingest-{worker}"))
                .spawn(move || {
                    let r = loop_.run();
                    if let Err(e) = &r {
                        error!(worker, error = %e, "Ingest loop failed.");
                        health.set_live(false);
                    }
                    r
                })
                .expect("spawn ingest thread");
            ingest.push(handle);
        }
        health.sample_store(Some(store.clone()));
        health.set_live(true);
        health.set_ready(true);
        info!(brokers = %k.brokers, store = %store.path().display(), workers, "cvm running.");
        Ok(Self { stop, ingest, offers: Some(offers), models, publisher, drain, store, catalog, health })
    }

    /// The state store (for inspection by tools and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live offer catalog.
    pub fn catalog(&self) -> &LiveCatalog {
        &self.catalog
    }

    /// Whether an ingest loop has stopped on its own (an error).
    pub fn ingest_failed(&self) -> bool {
        self.ingest.iter().any(JoinHandle::is_finished)
    }

    /// Stops cleanly: commit, drain the outbox, flush. See the module docs.
    pub async fn shutdown(mut self, timeout: Duration) -> Result<(), PipelineError> {
        self.health.set_ready(false);
        self.health.sample_store(None);
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let ingest = std::mem::take(&mut self.ingest);
        let offers = self.offers.take().expect("shutdown runs once");
        let models = self.models.take();
        let joined = tokio::task::spawn_blocking(move || {
            let results: Vec<_> = ingest.into_iter().map(JoinHandle::join).collect();
            let joined = (results, offers.join());
            if let Some(m) = models {
                let _ = m.join();
            }
            joined
        });
        let (ingest_result, _) = tokio::time::timeout(timeout, joined)
            .await
            .map_err(|_| PipelineError::Timeout("ingest loop"))?
            .expect("join does not panic");
        let _ = self.drain.send(true);
        tokio::time::timeout(timeout, &mut self.publisher).await.map_err(|_| PipelineError::Timeout("publisher"))?.ok();
        if let Err(e) = self.store.flush() {
            error!(error = %e, "Store flush at shutdown failed; the WAL still holds every commit.");
        }
        info!("cvm stopped.");
        for result in ingest_result {
            result.expect("ingest thread does not panic")?;
        }
        Ok(())
    }
}
