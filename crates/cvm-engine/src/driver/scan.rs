//! Profile scans: sweeps (decide a sweep offer for every customer) and
//! inactivity backfills (set an inactivity offer's timer for customers who
//! lapsed before it was published).
//!
//! A scan walks each partition's customers in id order, a page at a time,
//! and records how far it got in the same transaction as what it decided,
//! so a crash never decides a customer twice or loses the scan's place.
//! Progress is kept per offer *version* for sweeps (publishing a new version
//! sweeps again) and under version 0 for backfills (once per offer).

use std::collections::HashMap;

use tracing::info;

use super::{Driver, Output, TimerQueue};
use crate::{offers::Trigger, OfferDefinition, StateTxn, StoreError};

/// How far a scan has got in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepProgress {
    /// Visited every customer up to and including this one.
    After(String),
    /// Finished.
    Done,
}

/// Customers in id order, and where each scan stands.
pub trait ProfileScan {
    /// Up to `limit` customer ids of `partition` after `after` (exclusive), in order.
    fn customers_after(&mut self, partition: u32, after: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Where the scan of `offer_id` at `version` stands in `partition`.
    fn sweep_progress(
        &mut self,
        offer_id: &str,
        version: u32,
        partition: u32,
    ) -> Result<Option<SweepProgress>, StoreError>;
    /// Records how far the scan of `offer_id` at `version` has got in `partition`.
    fn set_sweep_progress(&mut self, offer_id: &str, version: u32, partition: u32, progress: SweepProgress);
}

/// How fast scans may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScanPacing {
    /// At each sweep's `rate_per_second` (backfills at
    /// [`BACKFILL_RATE`]), at most [`SCAN_PAGE`] customers per call.
    Rate,
    /// Every scan to its end in one call (replays).
    Unlimited,
}

/// Customers per second an inactivity backfill visits (it only sets timers).
pub const BACKFILL_RATE: u32 = 20_000;
/// Customers one paced scan visits per call at most, whatever its rate: the
/// ingest loop calls every 200 ms, so sweeps top out at 25,000 customers/s
/// per instance, and a call pauses ingestion for at most ~100 ms.
pub const SCAN_PAGE: usize = 5_000;

/// What a scan does with each customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// Decide a sweep offer.
    Sweep,
    /// Set an inactivity offer's timer.
    InactivityBackfill,
}

impl ScanKind {
    /// Lower-case name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ScanKind::Sweep => "sweep",
            ScanKind::InactivityBackfill => "inactivity_backfill",
        }
    }
}

/// What one call did for one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// The offer scanned for.
    pub offer_id: String,
    /// Sweep or backfill.
    pub kind: ScanKind,
    /// Customers visited in this call.
    pub scanned: usize,
    /// Partitions the scan has finished.
    pub partitions_done: usize,
    /// Whether the call changed state (visited customers or recorded progress).
    pub changed: bool,
}

/// Token buckets of the paced scans, by (offer, version): unspent budget
/// and the wall time it was last topped up.
#[derive(Debug, Default)]
pub(super) struct Scans {
    budgets: HashMap<(String, u32), (f64, i64)>,
}

impl Driver {
    /// Advances every due sweep and every inactivity backfill over
    /// `partitions`, within their pacing; returns what each did. Sweeps
    /// decide at the latest clock among the partitions.
    pub fn advance_scans<S: StateTxn + TimerQueue + ProfileScan>(
        &mut self,
        state: &mut S,
        partitions: &[u32],
        wall_ms: i64,
        out: &mut Output,
    ) -> Result<Vec<ScanReport>, StoreError> {
        let mut clocks = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            clocks.extend(self.clock(partition, wall_ms));
        }
        let Some(now) = clocks.into_iter().max() else {
            return Ok(Vec::new());
        };
        let catalog = self.engine.catalog().clone();
        let sweeps = catalog.sweeps().iter().filter(|d| d.sweep_due(now)).map(|d| {
            let rate = match d.doc.trigger {
                Trigger::Sweep { rate_per_second, .. } => rate_per_second,
                _ => 0,
            };
            (d, ScanKind::Sweep, rate, d.version())
        });
        let backfills = catalog.inactivity().iter().map(|d| (d, ScanKind::InactivityBackfill, BACKFILL_RATE, 0));
        let mut reports = Vec::new();
        for (def, kind, rate, version) in sweeps.chain(backfills) {
            let budget = self.scan_budget(def.id(), version, rate, wall_ms);
            let report = self.scan(state, partitions, def, kind, version, budget, now, out)?;
            if let Some((tokens, _)) = self.scans.budgets.get_mut(&(def.id().to_owned(), version)) {
                *tokens -= report.scanned as f64;
            }
            reports.push(report);
        }
        Ok(reports)
    }

    /// Customers scan `(offer_id, version)` may visit now.
    fn scan_budget(&mut self, offer_id: &str, version: u32, rate_per_second: u32, wall_ms: i64) -> usize {
        if self.config.pacing == ScanPacing::Unlimited {
            return usize::MAX;
        }
        let (tokens, last) = self.scans.budgets.entry((offer_id.to_owned(), version)).or_insert((0.0, wall_ms));
        let rate = f64::from(rate_per_second);
        let elapsed_s = wall_ms.saturating_sub(*last).max(0) as f64 / 1000.0;
        *tokens = (*tokens + rate * elapsed_s).min(rate.max(1.0));
        *last = wall_ms;
        (tokens.max(0.0) as usize).min(SCAN_PAGE)
    }

    #[allow(clippy::too_many_arguments)]
    fn scan<S: StateTxn + TimerQueue + ProfileScan>(
        &mut self,
        state: &mut S,
        partitions: &[u32],
        def: &std::sync::Arc<OfferDefinition>,
        kind: ScanKind,
        version: u32,
        mut budget: usize,
        now: i64,
        out: &mut Output,
    ) -> Result<ScanReport, StoreError> {
        let mut report =
            ScanReport { offer_id: def.id().to_owned(), kind, scanned: 0, partitions_done: 0, changed: false };
        for &partition in partitions {
            let after = match state.sweep_progress(def.id(), version, partition)? {
                Some(SweepProgress::Done) => {
                    report.partitions_done += 1;
                    continue;
                }
                Some(SweepProgress::After(customer)) => customer,
                None => String::new(),
            };
            if budget == 0 {
                continue;
            }
            report.changed = true;
            let (visited, progress) = self.visit(state, partition, def, kind, after, budget, now, out)?;
            budget -= visited;
            report.scanned += visited;
            if progress == SweepProgress::Done {
                report.partitions_done += 1;
                info!(offer = def.id(), scan = kind.name(), partition, "Scan finished a partition.");
            }
            state.set_sweep_progress(def.id(), version, partition, progress);
        }
        Ok(report)
    }

    /// Visits up to `budget` customers of `partition` after `after`, a page
    /// at a time, for `kind`; returns how many and where that leaves the scan.
    #[allow(clippy::too_many_arguments)]
    fn visit<S: StateTxn + TimerQueue + ProfileScan>(
        &mut self,
        state: &mut S,
        partition: u32,
        def: &std::sync::Arc<OfferDefinition>,
        kind: ScanKind,
        after: String,
        budget: usize,
        now: i64,
        out: &mut Output,
    ) -> Result<(usize, SweepProgress), StoreError> {
        let (mut visited, mut progress) = (0, SweepProgress::After(after));
        while let (SweepProgress::After(after), true) = (&progress, visited < budget) {
            let page = (budget - visited).min(SCAN_PAGE);
            let customers = state.customers_after(partition, after, page)?;
            for customer in &customers {
                match kind {
                    ScanKind::Sweep => out.add(partition, self.engine.sweep(state, partition, customer, def, now)?),
                    ScanKind::InactivityBackfill => {
                        self.engine.schedule_inactivity(state, partition, customer, def)?;
                    }
                }
            }
            visited += customers.len();
            progress = match customers.last() {
                Some(last) if customers.len() == page => SweepProgress::After(last.clone()),
                _ => SweepProgress::Done,
            };
        }
        self.learn_timers_set(state, partition);
        Ok((visited, progress))
    }
}

impl Driver {
    /// Decides sweep offer `def` for every customer of `partitions` at
    /// `at_ms`, whatever its schedule, after firing the timers due by then:
    /// for replays that script when a sweep runs (simulation, benchmarks).
    /// Returns the customers visited.
    pub fn sweep_everyone<S: StateTxn + TimerQueue + ProfileScan>(
        &mut self,
        state: &mut S,
        partitions: &[u32],
        def: &std::sync::Arc<OfferDefinition>,
        at_ms: i64,
        out: &mut Output,
    ) -> Result<usize, StoreError> {
        let mut visited = 0;
        for &partition in partitions {
            self.fire_through(state, partition, at_ms, out)?;
            visited += self.visit(state, partition, def, ScanKind::Sweep, String::new(), usize::MAX, at_ms, out)?.0;
        }
        Ok(visited)
    }
}
