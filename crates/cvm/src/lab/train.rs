//! `cvm train`: the rows a model learns from — decisions about one offer or
//! campaign and the purchases that followed — either from what a running
//! engine logged (the decisions topic and the purchases topic) or from a
//! recorded event history replayed through the decision core with the given
//! config documents (the same rows the engine records on `cvm.decisions`).

use std::path::Path;

use cvm_engine::{
    models::Scope,
    validation::{validate, InputLimits, TimeWindow},
    Catalog, ConfigDocument, Driver, Engine, EngineConfig, Event, MemoryState, Outbound, Output, Source,
};
use cvm_proto::v1::{Decision, Purchase};
use cvm_train::{
    dataset::{self, PurchaseLog, Row, Target},
    TrainOptions,
};
use indicatif::{ProgressBar, ProgressStyle};

/// What the engine logged on Kafka, ready to learn from.
#[derive(Debug, Default)]
pub struct Logged {
    /// Every decision on the decisions topic.
    pub decisions: Vec<Decision>,
    /// Every purchase on the purchases topic.
    pub purchases: PurchaseLog,
    /// Messages that did not decode (the engine sent bad input to its
    /// dead-letter topic; a tool skips them too), per topic.
    pub unreadable: Vec<(String, usize)>,
    /// Partitions not read to their end before the timeout, per topic.
    pub unread: Vec<(String, Vec<(i32, i64, i64)>)>,
}

/// Reads the decisions and purchases topics of `kafka` to their end.
/// Purchases the engine would refuse (`limits`) are skipped as unreadable:
/// the input topic still holds what went to the dead-letter topic.
pub fn read_logged(
    kafka: &cvm_kafka::KafkaConfig,
    limits: &InputLimits,
    timeout: std::time::Duration,
) -> anyhow::Result<Logged> {
    let window = TimeWindow::anytime(limits);
    let mut logged = Logged::default();
    let (decisions, purchases) = (&kafka.topics.decisions, &kafka.topics.purchases);
    let read = read_counting(kafka, &decisions.name, timeout, |payload| {
        cvm_proto::decode::<Decision>(decisions.format, payload).map(|d| logged.decisions.push(d)).is_ok()
    })?;
    logged.add_read(&decisions.name, read);
    let read = read_counting(kafka, &purchases.name, timeout, |payload| {
        let event = cvm_proto::decode::<Purchase>(purchases.format, payload).ok().map(Event::Purchase);
        match event.filter(|e| validate(e, limits, window).is_ok()) {
            Some(Event::Purchase(p)) => {
                logged.purchases.add(&p);
                true
            }
            _ => false,
        }
    })?;
    logged.add_read(&purchases.name, read);
    Ok(logged)
}

impl Logged {
    fn add_read(&mut self, topic: &str, (unreadable, unread): (usize, Vec<(i32, i64, i64)>)) {
        self.unreadable.push((topic.to_owned(), unreadable));
        self.unread.push((topic.to_owned(), unread));
    }
}

/// Reads `topic` to its end, handing each payload to `take`; returns how
/// many it refused and the partitions not read to their end.
fn read_counting(
    kafka: &cvm_kafka::KafkaConfig,
    topic: &str,
    timeout: std::time::Duration,
    mut take: impl FnMut(&[u8]) -> bool,
) -> anyhow::Result<(usize, Vec<(i32, i64, i64)>)> {
    let mut refused = 0;
    let unread = cvm_kafka::read_all(kafka, topic, timeout, |payload| refused += usize::from(!take(payload)))?;
    Ok((refused, unread))
}

/// The rows of `options.target` in what the engine logged, whatever order
/// the topic's partitions were read in (decisions are taken in time and id
/// order, so a decision logged on two channels is the same row either way).
pub fn logged_rows(logged: &mut Logged, options: &TrainOptions, window_ms: i64) -> Vec<Row> {
    dataset::in_decision_order(&mut logged.decisions);
    dataset::rows(&logged.decisions, &mut logged.purchases, target(options), window_ms)
}

fn target(options: &TrainOptions) -> Target<'_> {
    match options.scope {
        Scope::Offer => Target::Offer(&options.target),
        Scope::Campaign => Target::Campaign(&options.target),
    }
}

/// Replays `events` with `docs`; the rows of `options.target` in the decisions made.
pub fn replay_rows(
    events: &[Event],
    docs: Vec<ConfigDocument>,
    config: EngineConfig,
    options: &TrainOptions,
    window_ms: i64,
) -> anyhow::Result<Vec<Row>> {
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
    Ok(dataset::rows(&decisions, &mut purchases, target(options), window_ms))
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
