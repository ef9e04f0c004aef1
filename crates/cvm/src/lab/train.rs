//! `cvm train`: replays a recorded event history through the decision core
//! with the given config documents, then trains a model for one offer or
//! campaign from the decisions it made and the purchases that followed
//! (the same rows the engine records on `cvm.decisions`).

use std::path::Path;

use cvm_engine::{
    models::{ModelArtifact, Scope},
    Catalog, ConfigDocument, Driver, Engine, EngineConfig, Event, MemoryState, Outbound, Output, Source,
};
use cvm_train::{
    dataset::{self, PurchaseLog, Target},
    TrainOptions,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Replays `events` with `docs` and trains `options.target`.
pub fn replay_and_train(
    events: &[Event],
    docs: Vec<ConfigDocument>,
    config: EngineConfig,
    options: &TrainOptions,
    window_ms: i64,
) -> anyhow::Result<ModelArtifact> {
    let catalog = docs.into_iter().fold(Catalog::default(), |c, d| c.with_document(d));
    let mut driver = Driver::replay(Engine::new(config, catalog));
    let mut state = MemoryState::default();
    let mut decisions = Vec::new();
    let mut purchases = PurchaseLog::default();
    let bar = ProgressBar::new(events.len() as u64);
    bar.set_style(ProgressStyle::with_template("replaying [{bar:30}] {pos}/{len} events {per_sec}").expect("valid"));
    for event in events {
        let mut out = Output::default();
        driver.apply(&mut state, 0, Source::Input(0), event, 0, &mut out)?;
        decisions.extend(out.emits.into_iter().filter_map(|e| match e {
            Outbound::Decision(d) => Some(d),
            _ => None,
        }));
        if let Event::Purchase(p) = event {
            purchases.add(p);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let target = match options.scope {
        Scope::Offer => Target::Offer(&options.target),
        Scope::Campaign => Target::Campaign(&options.target),
    };
    let rows = dataset::rows(&decisions, &mut purchases, target, window_ms);
    Ok(cvm_train::train(&rows, options)?)
}

/// Reads config documents from files.
pub fn documents(files: &[impl AsRef<Path>]) -> anyhow::Result<Vec<ConfigDocument>> {
    files
        .iter()
        .map(|f| {
            let f = f.as_ref();
            let text = std::fs::read(f)?;
            let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            ConfigDocument::parse_file(&name, &text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
        })
        .collect()
}
