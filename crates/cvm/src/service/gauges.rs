//! The per-campaign incrementality gauges: kept from the attribution totals
//! each ingest commit writes, read from the store once, and recomputed as a
//! report every [`REPORT_INTERVAL`] (the report's intervals are not cheap).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use cvm_engine::{
    attribution::{Stats, StatsKey},
    telemetry::{
        CAMPAIGN_CONVERTERS, CAMPAIGN_CUSTOMERS, CAMPAIGN_INCREMENTAL_MARGIN, CAMPAIGN_INCREMENTAL_MARGIN_HIGH,
        CAMPAIGN_INCREMENTAL_MARGIN_LOW, CAMPAIGN_MARGIN, CAMPAIGN_UPLIFT,
    },
};
use cvm_kafka::CommittedStats;
use cvm_report::Report;
use cvm_store::Store;
use metrics::gauge;
use tracing::warn;

/// How often the per-campaign gauges are recomputed from the aggregates.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The ingest loop's commit hook that keeps the gauges of `store`'s partitions.
pub fn campaign_gauges(store: Store) -> CommittedStats {
    let mut totals: Option<HashMap<(u32, StatsKey), Stats>> = None;
    let mut last_report = Instant::now();
    Box::new(move |committed| {
        if let Some(totals) = &mut totals {
            totals.extend(committed.iter().map(|(p, k, s)| ((*p, k.clone()), *s)));
        }
        if last_report.elapsed() < REPORT_INTERVAL {
            return;
        }
        last_report = Instant::now();
        if totals.is_none() {
            match store.stats() {
                Ok(all) => totals = Some(all.into_iter().map(|(p, k, s)| ((p, k), s)).collect()),
                Err(e) => {
                    warn!(error = %e, "Cannot read the attribution aggregates; gauges not updated.");
                    return;
                }
            }
        }
        export_report(&Report::from_stats(totals.iter().flatten().map(|((_, k), s)| (k, s))));
    })
}

/// Sets the per-campaign gauges from a report of this instance's aggregates.
fn export_report(report: &Report) {
    for r in std::iter::once(&report.programme).chain(&report.campaigns) {
        let campaign = r.campaign_id.clone();
        for (group, side) in [("treated", &r.treated), (r.control_group, &r.control)] {
            let labels = [("campaign", campaign.clone()), ("group", group.to_owned())];
            gauge!(CAMPAIGN_CUSTOMERS, &labels).set(side.customers as f64);
            gauge!(CAMPAIGN_CONVERTERS, &labels).set(side.converters as f64);
            gauge!(CAMPAIGN_MARGIN, &labels).set(side.margin_minor as f64);
        }
        gauge!(CAMPAIGN_UPLIFT, "campaign" => campaign.clone()).set(r.uplift.value);
        let margin = &r.incremental_margin_minor;
        gauge!(CAMPAIGN_INCREMENTAL_MARGIN, "campaign" => campaign.clone()).set(margin.value);
        gauge!(CAMPAIGN_INCREMENTAL_MARGIN_LOW, "campaign" => campaign.clone()).set(margin.low);
        gauge!(CAMPAIGN_INCREMENTAL_MARGIN_HIGH, "campaign" => campaign).set(margin.high);
    }
}
