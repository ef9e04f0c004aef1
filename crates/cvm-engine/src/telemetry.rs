//! Metric names, in one place, with their descriptions: the decision core's
//! own and those of the edges (ingest, publisher, config reader), so a
//! dashboard or alert has one list to check against. Labels never carry
//! customer ids: only topics, results, outcomes, channels, offers, models
//! and campaigns.

use cvm_proto::v1::Outcome;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Every decision outcome, in protobuf-number order (so `OUTCOMES[o as usize] == o`).
pub const OUTCOMES: [Outcome; 11] = [
    Outcome::Unspecified,
    Outcome::Treated,
    Outcome::HoldoutGlobal,
    Outcome::HoldoutCampaign,
    Outcome::Capped,
    Outcome::Ineligible,
    Outcome::Unreachable,
    Outcome::Deferred,
    Outcome::Suppressed,
    Outcome::NotIncremental,
    Outcome::OverBudget,
];

/// The `outcome` label of a decision outcome, e.g. `holdout_global`.
pub fn outcome_label(o: Outcome) -> String {
    o.as_str_name().trim_start_matches("OUTCOME_").to_ascii_lowercase()
}

/// Counter: input messages by `topic` and `result` (applied, duplicate,
/// anonymous, rekeyed, dlq, erased).
pub const EVENTS_INGESTED: &str = "cvm_events_ingested_total";
/// Counter: decisions by `campaign` (the offer's campaign, or `none`) and
/// `outcome`.
pub const DECISIONS: &str = "cvm_decisions_total";
/// Counter: offers by `channel`.
pub const OFFERS: &str = "cvm_offers_total";
/// Counter: messages sent to the dead-letter topic, by source `topic` and
/// `reason` (a [`crate::Reason`] code).
pub const DLQ: &str = "cvm_dlq_total";
/// Histogram: time to apply and decide one event, seconds.
pub const EVENT_PROCESSING: &str = "cvm_event_processing_seconds";
/// Histogram: time to commit one batch to RocksDB, seconds.
pub const BATCH_COMMIT: &str = "cvm_batch_commit_seconds";
/// Gauge: 1 while ingest is paused because the outbox is over its bound.
pub const INGEST_PAUSED: &str = "cvm_ingest_paused";
/// Gauge: entries waiting in the outbox.
pub const OUTBOX_DEPTH: &str = "cvm_outbox_depth";
/// Counter: messages acknowledged by the broker, by `topic`.
pub const PUBLISHED: &str = "cvm_published_total";
/// Counter: failed publish attempts, by `kind`: `retried` (the entry stays
/// in the outbox), `fatal` (the producer was rebuilt), or why an entry was
/// parked (`message_too_large`, `unknown_topic`, `not_authorized`,
/// `invalid_record`).
pub const PUBLISH_ERRORS: &str = "cvm_publish_errors_total";
/// Counter, label `outcome` (committed, aborted, recovered_committed,
/// recovered_aborted): the exactly-once publisher's transactions.
pub const PUBLISH_TRANSACTIONS: &str = "cvm_publish_transactions_total";
/// Counter: config documents read, by `kind` (offer, campaign, policy,
/// model: from the key) and `result` (accepted, rejected, deleted).
pub const CONFIG_DOCUMENTS: &str = "cvm_config_documents_total";
/// Gauge: config documents whose latest version on the config topic was
/// rejected (the previous good version keeps running), by `kind`.
pub const CONFIG_DOCUMENTS_REJECTED: &str = "cvm_config_documents_rejected";
/// Gauge: active offers in the catalog.
pub const OFFERS_ACTIVE: &str = "cvm_offers_active";

/// Counter: timers whose firing failed (a bug) and that were cancelled.
pub const TIMERS_FAILED: &str = "cvm_timers_failed_total";
/// Counter: timers fired, by `kind` (delayed, inactivity, cascade, deferred).
pub const TIMERS_FIRED: &str = "cvm_timers_fired_total";
/// Counter: customers visited by a profile scan, by `offer` and `scan`
/// (sweep, inactivity_backfill).
pub const SWEEP_CUSTOMERS: &str = "cvm_sweep_customers_total";
/// Gauge: owned partitions a profile scan has finished, by `offer` and `scan`.
pub const SWEEP_PARTITIONS_DONE: &str = "cvm_sweep_partitions_done";

/// Gauge: attribution customers (episodes) by `campaign` and `group`
/// (treated, campaign_control, global_control) in this instance's partitions;
/// the programme is `campaign="programme"`. Sums across instances.
pub const CAMPAIGN_CUSTOMERS: &str = "cvm_campaign_customers";
/// Gauge: converters likewise.
pub const CAMPAIGN_CONVERTERS: &str = "cvm_campaign_converters";
/// Gauge: attributed margin likewise, minor units.
pub const CAMPAIGN_MARGIN: &str = "cvm_campaign_margin_minor";
/// Gauge: conversion uplift (treated − control rate) by `campaign`, from this
/// instance's partitions.
pub const CAMPAIGN_UPLIFT: &str = "cvm_campaign_uplift";
/// Gauge: incremental margin by `campaign`, minor units, this instance's partitions.
pub const CAMPAIGN_INCREMENTAL_MARGIN: &str = "cvm_campaign_incremental_margin_minor";
/// Gauge: lower bound of the incremental margin's 95 % interval by `campaign`.
pub const CAMPAIGN_INCREMENTAL_MARGIN_LOW: &str = "cvm_campaign_incremental_margin_low_minor";
/// Gauge: upper bound likewise.
pub const CAMPAIGN_INCREMENTAL_MARGIN_HIGH: &str = "cvm_campaign_incremental_margin_high_minor";
/// Counter: erasure requests carried out.
pub const ERASURES: &str = "cvm_erasures_total";
/// Counter: model-scored contacts, by `offer` and predicted `decile`.
pub const MODEL_CONTACTS: &str = "cvm_model_contacts_total";
/// Counter: conversions attributed to model-scored contacts, by `offer` and `decile`.
pub const MODEL_CONVERSIONS: &str = "cvm_model_conversions_total";
/// Gauge: population stability index of a model's input, by `model` and `series`.
pub const MODEL_PSI: &str = "cvm_model_psi";
/// Gauge: 1 while a model has drifted and its decisions fall back to rules, by `model`.
pub const MODEL_DRIFTED: &str = "cvm_model_drifted";
/// Counter: decisions in drift fallback, by `model`: held back (an uplift
/// model outside the exploration slice) or ranked by rule priority.
pub const MODEL_FALLBACKS: &str = "cvm_model_fallbacks_total";
/// Gauge: the running version of a model, by `model` (its target).
pub const MODEL_VERSION: &str = "cvm_model_version";
/// Counter: gaps in an input partition's offsets (a message whose offset is
/// past the one expected), by `topic`. Inputs are not compacted, so a gap
/// means records the broker did not deliver (or a transactional producer's
/// commit markers, which also take offsets).
pub const INPUT_OFFSET_GAPS: &str = "cvm_input_offset_gaps_total";
/// Counter: offsets stepped over in those gaps, by `topic`.
pub const INPUT_OFFSETS_SKIPPED: &str = "cvm_input_offsets_skipped_total";
/// Counter: partitions gained, by `restore` (`current`: local state was the
/// latest; `empty`: nothing in the changelog; `restored`: rebuilt from it).
pub const PARTITIONS_ASSIGNED: &str = "cvm_partitions_assigned_total";
/// Gauge: partitions this instance owns.
pub const PARTITIONS_OWNED: &str = "cvm_partitions_owned";
/// Counter: rebalances this instance's consumers took part in.
pub const REBALANCES: &str = "cvm_rebalances_total";
/// Gauge: partitions being restored from the changelog now.
pub const RESTORING_PARTITIONS: &str = "cvm_restoring_partitions";
/// Counter: changelog records read while restoring partitions.
pub const RESTORE_RECORDS: &str = "cvm_restore_records_total";
/// Counter: changelog reads that failed during a restore (it is retried).
pub const RESTORE_FAILURES: &str = "cvm_restore_failures_total";
/// Histogram: time to restore one gained partition, seconds.
pub const RESTORE_DURATION: &str = "cvm_partition_restore_seconds";
/// Gauge: records of an input partition not yet consumed (the broker's
/// high watermark minus the next offset to process), by `topic` and
/// `partition`; 0 once the partition is released.
pub const CONSUMER_LAG: &str = "cvm_consumer_lag_records";
/// Gauge: seconds since the oldest undelivered outbox entry was committed.
pub const OUTBOX_OLDEST_AGE: &str = "cvm_outbox_oldest_age_seconds";

/// The `kind` label values of [`CONFIG_DOCUMENTS`] and
/// [`CONFIG_DOCUMENTS_REJECTED`]: what `catalog::document_kind` returns.
pub const DOCUMENT_KINDS: [&str; 4] = ["offer", "campaign", "policy", "model"];

/// The `kind` label values of [`PUBLISH_ERRORS`].
pub const PUBLISH_ERROR_KINDS: [&str; 6] =
    ["retried", "fatal", "message_too_large", "unknown_topic", "not_authorized", "invalid_record"];

/// The `outcome` label values of [`PUBLISH_TRANSACTIONS`].
pub const PUBLISH_TRANSACTION_OUTCOMES: [&str; 4] =
    ["committed", "aborted", "recovered_committed", "recovered_aborted"];

/// Starts at zero the counters and gauges of things that happen rarely or
/// never in a healthy engine (failures, restores, rebalances, a paused
/// ingest, a rejected document), so that a dashboard or an alert reads 0
/// rather than no data.
fn start_at_zero() {
    metrics::gauge!(INGEST_PAUSED).set(0.0);
    for kind in DOCUMENT_KINDS {
        metrics::gauge!(CONFIG_DOCUMENTS_REJECTED, "kind" => kind).set(0.0);
    }
    for name in [TIMERS_FAILED, RESTORE_FAILURES, RESTORE_RECORDS, REBALANCES, ERASURES] {
        metrics::counter!(name).increment(0);
    }
    for kind in PUBLISH_ERROR_KINDS {
        metrics::counter!(PUBLISH_ERRORS, "kind" => kind).increment(0);
    }
    for outcome in PUBLISH_TRANSACTION_OUTCOMES {
        metrics::counter!(PUBLISH_TRANSACTIONS, "outcome" => outcome).increment(0);
    }
}

/// Registers descriptions with the installed recorder and starts the rare
/// counters at zero.
pub fn describe() {
    start_at_zero();
    describe_counter!(EVENTS_INGESTED, "Input messages by topic and result.");
    describe_counter!(DECISIONS, "Decisions by campaign and outcome.");
    describe_counter!(OFFERS, "Offers sent, by channel.");
    describe_gauge!(INGEST_PAUSED, "1 while ingest is paused because the outbox is over its bound.");
    describe_counter!(TIMERS_FAILED, "Timers whose firing failed (a bug) and that were cancelled.");
    describe_counter!(DLQ, "Messages sent to the dead-letter topic, by source topic and reason code.");
    describe_histogram!(EVENT_PROCESSING, Unit::Seconds, "Time to apply and decide one event.");
    describe_histogram!(BATCH_COMMIT, Unit::Seconds, "Time to commit one batch to RocksDB.");
    describe_gauge!(OUTBOX_DEPTH, "Entries waiting in the outbox.");
    describe_counter!(PUBLISHED, "Messages acknowledged by the broker, by topic.");
    describe_counter!(PUBLISH_ERRORS, "Failed publish attempts, by kind (retried, fatal, or why an entry was parked).");
    describe_counter!(
        PUBLISH_TRANSACTIONS,
        "Transactions of the exactly-once publisher, by outcome (recovered_*: found after a restart or failure)."
    );
    describe_counter!(CONFIG_DOCUMENTS, "Config documents read, by kind and result.");
    describe_gauge!(OFFERS_ACTIVE, "Offers in the live catalog.");
    describe_gauge!(
        CONFIG_DOCUMENTS_REJECTED,
        "Config documents whose latest version was rejected (the last good one runs), by kind."
    );
    describe_counter!(TIMERS_FIRED, "Durable timers fired, by kind.");
    describe_counter!(
        SWEEP_CUSTOMERS,
        "Customers visited by a profile scan, by offer and scan (sweep, inactivity_backfill)."
    );
    describe_gauge!(SWEEP_PARTITIONS_DONE, "Owned partitions a profile scan has finished, by offer and scan.");
    describe_gauge!(CAMPAIGN_CUSTOMERS, "Attribution customers by campaign and group (this instance).");
    describe_gauge!(CAMPAIGN_CONVERTERS, "Customers who bought in their attribution window, by campaign and group.");
    describe_gauge!(CAMPAIGN_MARGIN, "Attributed margin in minor units, by campaign and group.");
    describe_gauge!(CAMPAIGN_UPLIFT, "Conversion uplift, treated minus control, by campaign.");
    describe_gauge!(CAMPAIGN_INCREMENTAL_MARGIN, "Incremental margin in minor units, by campaign.");
    describe_gauge!(
        CAMPAIGN_INCREMENTAL_MARGIN_LOW,
        "Lower bound of the incremental margin's 95 % interval, minor units, by campaign."
    );
    describe_gauge!(
        CAMPAIGN_INCREMENTAL_MARGIN_HIGH,
        "Upper bound of the incremental margin's 95 % interval, minor units, by campaign."
    );
    describe_counter!(ERASURES, "Erasure requests carried out.");
    describe_counter!(MODEL_CONTACTS, "Model-scored contacts, by offer and predicted decile.");
    describe_counter!(MODEL_CONVERSIONS, "Conversions of model-scored contacts, by offer and predicted decile.");
    describe_gauge!(MODEL_PSI, "Population stability index of a model input, by model and series.");
    describe_gauge!(MODEL_DRIFTED, "1 while a model has drifted and its decisions are in fallback, by model.");
    describe_counter!(
        MODEL_FALLBACKS,
        "Decisions in drift fallback (held back, or ranked by rule priority), by model."
    );
    describe_gauge!(MODEL_VERSION, "Running version of a model, by model.");
    describe_counter!(INPUT_OFFSET_GAPS, "Gaps in an input partition's offsets, by topic.");
    describe_counter!(INPUT_OFFSETS_SKIPPED, "Input offsets stepped over in gaps, by topic.");
    describe_counter!(PARTITIONS_ASSIGNED, "Partitions gained, by restore outcome (current, empty, restored).");
    describe_gauge!(PARTITIONS_OWNED, "Input partitions this instance owns.");
    describe_counter!(REBALANCES, "Rebalances this instance's consumers took part in.");
    describe_gauge!(RESTORING_PARTITIONS, "Partitions being restored from the changelog now.");
    describe_counter!(RESTORE_RECORDS, "Changelog records read while restoring partitions.");
    describe_counter!(RESTORE_FAILURES, "Changelog reads that failed during a restore (retried).");
    describe_histogram!(RESTORE_DURATION, Unit::Seconds, "Time to restore one gained partition.");
    describe_gauge!(CONSUMER_LAG, "Input records not yet consumed, by topic and partition.");
    describe_gauge!(OUTBOX_OLDEST_AGE, Unit::Seconds, "Age of the oldest undelivered outbox entry.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_indexed_by_their_protobuf_number() {
        for (i, o) in OUTCOMES.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        assert_eq!(outcome_label(Outcome::HoldoutGlobal), "holdout_global");
    }
}
