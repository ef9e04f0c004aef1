//! The ingest loop's metrics: handles registered once, and a per-batch
//! counts flushed to them after the batch committed, so a rolled-back batch
//! counts nothing.

use cvm_engine::{
    driver::ScanReport,
    telemetry::{self, OUTCOMES},
    EventResult, Outbound, Output, Reason, TimerKind,
};
use std::collections::HashMap;

use metrics::{counter, gauge, histogram, Counter, Histogram};

use crate::KafkaConfig;

/// What happened to an input message: the `result` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ingested {
    Applied,
    Duplicate,
    Anonymous,
    Rekeyed,
    DeadLettered,
    Erased,
}

impl Ingested {
    const LABELS: [&'static str; 6] = ["applied", "duplicate", "anonymous", "rekeyed", "dlq", "erased"];

    /// The result of an event the engine took (invalid ones are dead-lettered).
    pub(crate) fn of(result: &EventResult) -> Self {
        match result {
            EventResult::Applied => Ingested::Applied,
            EventResult::Duplicate => Ingested::Duplicate,
            EventResult::Anonymous => Ingested::Anonymous,
            EventResult::Rekeyed => Ingested::Rekeyed,
            EventResult::Invalid(_) => Ingested::DeadLettered,
            EventResult::Erased => Ingested::Erased,
        }
    }
}

/// The `campaign` label of decisions about offers outside any campaign.
const NO_CAMPAIGN: &str = "none";

/// Input topics (see [`crate::Topics::inputs`]).
const INPUTS: usize = 4;

/// Metric handles, registered once.
pub(crate) struct Meters {
    /// Per input (purchases, app, erasure, device links) × result.
    ingested: [[Counter; Ingested::LABELS.len()]; INPUTS],
    /// Per input × reason.
    dlq: [[Counter; Reason::ALL.len()]; INPUTS],
    offers: [Counter; 3],
    pub(crate) latency: Histogram,
    pub(crate) commit: Histogram,
}

impl Meters {
    pub(crate) fn new(cfg: &KafkaConfig) -> Self {
        let topics = cfg.topics.inputs().map(str::to_owned);
        Self {
            ingested: topics.clone().map(|t| {
                Ingested::LABELS.map(|r| counter!(telemetry::EVENTS_INGESTED, "topic" => t.clone(), "result" => r))
            }),
            dlq: topics
                .map(|t| Reason::ALL.map(|r| counter!(telemetry::DLQ, "topic" => t.clone(), "reason" => r.code()))),
            offers: ["unspecified", "push", "stories"].map(|c| counter!(telemetry::OFFERS, "channel" => c)),
            latency: histogram!(telemetry::EVENT_PROCESSING),
            commit: histogram!(telemetry::BATCH_COMMIT),
        }
    }

    /// Adds a committed batch's counts.
    pub(crate) fn flush(&self, t: &BatchCounts) {
        for (i, per_input) in t.ingested.iter().enumerate() {
            for (r, n) in per_input.iter().enumerate().filter(|(_, n)| **n > 0) {
                self.ingested[i][r].increment(*n);
            }
        }
        for (counters, per_reason) in self.dlq.iter().zip(&t.dead_lettered) {
            for (counter, n) in counters.iter().zip(per_reason).filter(|(_, n)| **n > 0) {
                counter.increment(*n);
            }
        }
        for (campaign, per_outcome) in &t.outcomes {
            for (outcome, n) in OUTCOMES.iter().zip(per_outcome).filter(|(_, n)| **n > 0) {
                let labels = [("campaign", campaign.clone()), ("outcome", telemetry::outcome_label(*outcome))];
                counter!(telemetry::DECISIONS, &labels).increment(*n);
            }
        }
        for (counter, n) in self.offers.iter().zip(t.offers) {
            counter.increment(n);
        }
        for (kind, n) in TimerKind::ALL.iter().zip(t.timers) {
            if n > 0 {
                counter!(telemetry::TIMERS_FIRED, "kind" => kind.name()).increment(n);
            }
        }
        if t.erasures > 0 {
            counter!(telemetry::ERASURES).increment(t.erasures);
        }
        for scan in &t.scans {
            let labels = [("offer", scan.offer_id.clone()), ("scan", scan.kind.name().to_owned())];
            if scan.scanned > 0 {
                counter!(telemetry::SWEEP_CUSTOMERS, &labels).increment(scan.scanned as u64);
            }
            gauge!(telemetry::SWEEP_PARTITIONS_DONE, &labels).set(scan.partitions_done as f64);
        }
    }
}

/// Counts of one batch, flushed to the meters after commit.
#[derive(Default)]
pub(crate) struct BatchCounts {
    ingested: [[u64; Ingested::LABELS.len()]; INPUTS],
    dead_lettered: [[u64; Reason::ALL.len()]; INPUTS],
    /// Decisions by campaign (`none` for offers outside campaigns) and outcome.
    outcomes: HashMap<String, [u64; OUTCOMES.len()]>,
    offers: [u64; 3],
    timers: [u64; TimerKind::ALL.len()],
    erasures: u64,
    scans: Vec<ScanReport>,
}

impl BatchCounts {
    /// One input message of input `input` (purchases 0, app 1, erasure 2).
    pub(crate) fn ingested(&mut self, input: usize, result: Ingested) {
        self.ingested[input][result as usize] += 1;
    }

    /// One input message of input `input` dead-lettered for `reason`.
    pub(crate) fn dead_lettered(&mut self, input: usize, reason: Reason) {
        self.ingested(input, Ingested::DeadLettered);
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.dead_lettered[input][i] += 1;
    }

    /// What the driver produced.
    pub(crate) fn output(&mut self, out: &Output) {
        for emit in &out.emits {
            match emit {
                Outbound::Decision(d) => {
                    let campaign = if d.campaign_id.is_empty() { NO_CAMPAIGN } else { d.campaign_id.as_str() };
                    let counts = match self.outcomes.get_mut(campaign) {
                        Some(counts) => counts,
                        None => self.outcomes.entry(campaign.to_owned()).or_default(),
                    };
                    counts[d.outcome as usize % OUTCOMES.len()] += 1;
                }
                Outbound::Offer(o) => self.offers[o.channel as usize % 3] += 1,
                Outbound::Rekeyed(_) | Outbound::DeviceLink(_) => {}
                Outbound::Erased(_) => self.erasures += 1,
            }
        }
        for (total, n) in self.timers.iter_mut().zip(out.timers_fired) {
            *total += n;
        }
    }

    /// What the profile scans did.
    pub(crate) fn scans(&mut self, reports: Vec<ScanReport>) {
        self.scans.extend(reports);
    }
}
