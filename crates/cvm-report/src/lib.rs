//! Incrementality reports: what each campaign earned beyond what its
//! customers would have bought anyway.
//!
//! Input is the additive attribution aggregates the engine keeps
//! ([`cvm_engine::attribution`]): per campaign, group and day, the number of
//! episodes (customers), converters, orders, revenue and margin with their
//! sums of squares, and the contacts sent with their cost. From these sums
//! alone the report computes, per campaign, treated against its holdout
//! (or against the global control group when the campaign has no holdout):
//!
//! - conversion rate per group and the uplift, absolute and relative, with a
//!   95 % normal-approximation interval for a difference of proportions;
//! - incremental revenue and margin: the difference of per-customer means
//!   times the treated customers, with a 95 % Welch interval;
//! - contact cost and incremental ROI, `(incremental margin − cost) / cost`;
//! - flags: the control group is too small to say anything, or an interval
//!   spans zero (the increment is not shown).
//!
//! The programme line compares everyone against the global control group.
//!
//! A model challenger running in shadow is compared with its champion
//! off-policy, from the logged decisions ([`challengers`]).

pub mod challengers;
mod render;

use std::collections::BTreeMap;

use cvm_engine::attribution::{Group, Stats, StatsKey, PROGRAMME};
use serde::Serialize;

pub use render::{html, text};

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;
/// Below this many control customers, the report does not draw conclusions.
pub const MIN_CONTROL_CUSTOMERS: u64 = 100;

/// An estimate with its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Estimate {
    fn new(value: f64, standard_error: f64) -> Self {
        Self { value, low: value - Z95 * standard_error, high: value + Z95 * standard_error }
    }

    /// Whether the interval contains zero (the sign is not established).
    pub fn spans_zero(&self) -> bool {
        self.low <= 0.0 && self.high >= 0.0
    }

    /// Whether `x` lies inside the interval.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Side {
    /// Customers (attribution episodes).
    pub customers: u64,
    /// Customers who bought in their window.
    pub converters: u64,
    /// `converters / customers`.
    pub conversion_rate: f64,
    /// Attributed revenue, minor units.
    pub revenue_minor: i64,
    /// Attributed margin, minor units.
    pub margin_minor: i64,
    /// Offers sent.
    pub contacts: u64,
}

impl Side {
    fn of(s: &Stats) -> Self {
        Self {
            customers: s.customers,
            converters: s.converters,
            conversion_rate: ratio(s.converters as f64, s.customers),
            revenue_minor: s.revenue_minor,
            margin_minor: s.margin_minor,
            contacts: s.contacts,
        }
    }
}

fn ratio(x: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x / n as f64
    }
}

/// Mean and variance of the mean of a per-customer amount from its sums.
fn mean_and_variance(sum: i64, sum_sq: i128, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let nf = n as f64;
    let mean = sum as f64 / nf;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = ((sum_sq as f64 - nf * mean * mean) / (nf - 1.0)).max(0.0);
    (mean, var / nf)
}

/// The comparison of one campaign (or of the programme).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignReport {
    /// The campaign id (`"programme"` for the programme line).
    pub campaign_id: String,
    /// Which group served as control: `campaign_control` or `global_control`.
    pub control_group: &'static str,
    /// Treated customers.
    pub treated: Side,
    /// Control customers.
    pub control: Side,
    /// Conversion-rate difference, treated minus control (0.02 = 2 points).
    pub uplift: Estimate,
    /// Uplift relative to the control's conversion rate, if it has one.
    pub relative_uplift: Option<f64>,
    /// Revenue the treated bought beyond the control's rate, minor units.
    pub incremental_revenue_minor: Estimate,
    /// Margin likewise: the money the campaign made.
    pub incremental_margin_minor: Estimate,
    /// What the contacts cost, minor units.
    pub contact_cost_minor: i64,
    /// `(incremental margin − contact cost) / contact cost`, if there was a cost.
    pub incremental_roi: Option<f64>,
    /// Why the numbers should not be trusted yet, if they should not.
    pub flags: Vec<&'static str>,
}

impl CampaignReport {
    fn compare(campaign_id: &str, treated: &Stats, control: &Stats, control_group: Group) -> Self {
        let (t, c) = (Side::of(treated), Side::of(control));
        let (pt, pc) = (t.conversion_rate, c.conversion_rate);
        let se = (ratio(pt * (1.0 - pt), t.customers) + ratio(pc * (1.0 - pc), c.customers)).sqrt();
        let uplift = Estimate::new(pt - pc, se);
        let incremental = |sum_t: i64, sq_t: i128, sum_c: i64, sq_c: i128| {
            let (mt, vt) = mean_and_variance(sum_t, sq_t, treated.customers);
            let (mc, vc) = mean_and_variance(sum_c, sq_c, control.customers);
            let n = treated.customers as f64;
            Estimate::new((mt - mc) * n, (vt + vc).sqrt() * n)
        };
        let incremental_revenue_minor =
            incremental(treated.revenue_minor, treated.revenue_sq, control.revenue_minor, control.revenue_sq);
        let incremental_margin_minor =
            incremental(treated.margin_minor, treated.margin_sq, control.margin_minor, control.margin_sq);
        let cost = treated.contact_cost_minor;
        let mut flags = Vec::new();
        if control.customers < MIN_CONTROL_CUSTOMERS || treated.customers < MIN_CONTROL_CUSTOMERS {
            flags.push("too few customers to say");
        } else {
            if uplift.spans_zero() {
                flags.push("uplift interval spans zero");
            }
            if incremental_margin_minor.spans_zero() {
                flags.push("margin interval spans zero");
            }
        }
        Self {
            campaign_id: if campaign_id == PROGRAMME { "programme".into() } else { campaign_id.into() },
            control_group: control_group.name(),
            treated: t,
            control: c,
            uplift,
            relative_uplift: (pc > 0.0).then(|| (pt - pc) / pc),
            incremental_revenue_minor,
            incremental_margin_minor,
            contact_cost_minor: cost,
            incremental_roi: (cost > 0).then(|| (incremental_margin_minor.value - cost as f64) / cost as f64),
            flags,
        }
    }
}

/// Cumulative incremental margin of a campaign at the end of each day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The campaign.
    pub campaign_id: String,
    /// `(days since the Unix epoch, incremental margin in minor units)`.
    pub points: Vec<(i32, f64)>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Everyone against the global control group.
    pub programme: CampaignReport,
    /// Per campaign, in id order.
    pub campaigns: Vec<CampaignReport>,
    /// Cumulative incremental margin over time, per campaign.
    pub series: Vec<Series>,
    /// Champion against challenger, per offer with a challenger in shadow
    /// (only when the report read the logged decisions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub challengers: Vec<challengers::Duel>,
}

impl Report {
    /// Builds the report from aggregates (of any number of partitions and
    /// instances: keys may repeat, their stats are added).
    pub fn from_stats<'a>(stats: impl IntoIterator<Item = (&'a StatsKey, &'a Stats)>) -> Self {
        let mut by_day: BTreeMap<(String, Group), BTreeMap<i32, Stats>> = BTreeMap::new();
        for (key, s) in stats {
            by_day.entry((key.campaign_id.clone(), key.group)).or_default().entry(key.day).or_default().add(s);
        }
        let total = |days: Option<&BTreeMap<i32, Stats>>| {
            days.into_iter().flat_map(|d| d.values()).fold(Stats::default(), |mut a, s| {
                a.add(s);
                a
            })
        };
        let mut campaigns: Vec<String> = by_day.keys().map(|(c, _)| c.clone()).collect();
        campaigns.dedup();
        let mut reports = Vec::new();
        let mut series = Vec::new();
        let mut programme = None;
        for campaign in campaigns {
            let days = |g: Group| by_day.get(&(campaign.clone(), g));
            let control_group = if campaign == PROGRAMME || total(days(Group::CampaignControl)).customers == 0 {
                Group::GlobalControl
            } else {
                Group::CampaignControl
            };
            let treated = total(days(Group::Treated));
            let report = CampaignReport::compare(&campaign, &treated, &total(days(control_group)), control_group);
            if campaign == PROGRAMME {
                programme = Some(report);
                continue;
            }
            series.push(Series {
                campaign_id: campaign.clone(),
                points: cumulative(days(Group::Treated), days(control_group)),
            });
            reports.push(report);
        }
        let programme = programme.unwrap_or_else(|| {
            CampaignReport::compare(PROGRAMME, &Stats::default(), &Stats::default(), Group::GlobalControl)
        });
        Self { programme, campaigns: reports, series, challengers: Vec::new() }
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }
}

/// Incremental margin of the treated up to each day, from cumulative sums.
fn cumulative(treated: Option<&BTreeMap<i32, Stats>>, control: Option<&BTreeMap<i32, Stats>>) -> Vec<(i32, f64)> {
    let empty = BTreeMap::new();
    let (treated, control) = (treated.unwrap_or(&empty), control.unwrap_or(&empty));
    let mut days: Vec<i32> = treated.keys().chain(control.keys()).copied().collect();
    days.sort_unstable();
    days.dedup();
    let (mut t, mut c) = (Stats::default(), Stats::default());
    let mut points = Vec::new();
    for day in days {
        if let Some(s) = treated.get(&day) {
            t.add(s);
        }
        if let Some(s) = control.get(&day) {
            c.add(s);
        }
        if t.customers > 0 && c.customers > 0 {
            let mean = |s: &Stats| s.margin_minor as f64 / s.customers as f64;
            points.push((day, (mean(&t) - mean(&c)) * t.customers as f64));
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(customers: u64, converters: u64, margin_each: i64) -> Stats {
        // Every converter spends `margin_each` once.
        Stats {
            customers,
            converters,
            orders: converters,
            revenue_minor: converters as i64 * margin_each * 2,
            margin_minor: converters as i64 * margin_each,
            revenue_sq: i128::from(converters) * i128::from(margin_each * 2).pow(2),
            margin_sq: i128::from(converters) * i128::from(margin_each).pow(2),
            ..Stats::default()
        }
    }

    fn key(campaign: &str, group: Group) -> StatsKey {
        StatsKey { campaign_id: campaign.into(), group, day: 20_000 }
    }

    #[test]
    fn uplift_and_increments_follow_from_the_sums() {
        let stats = [
            (key("a", Group::Treated), Stats { contacts: 1000, contact_cost_minor: 1000, ..side(1000, 300, 500) }),
            (key("a", Group::CampaignControl), side(1000, 200, 500)),
        ];
        let r = Report::from_stats(stats.iter().map(|(k, s)| (k, s)));
        let a = &r.campaigns[0];
        assert!((a.uplift.value - 0.1).abs() < 1e-12);
        // se = sqrt(.3·.7/1000 + .2·.8/1000) ≈ 0.01924
        assert!((a.uplift.high - a.uplift.value - Z95 * 0.019_235_384).abs() < 1e-6);
        assert!((a.relative_uplift.unwrap() - 0.5).abs() < 1e-12);
        // (150 − 100) per customer × 1000 treated.
        assert!((a.incremental_margin_minor.value - 50_000.0).abs() < 1e-6);
        assert!((a.incremental_roi.unwrap() - 49.0).abs() < 1e-9);
        assert!(a.flags.is_empty(), "{:?}", a.flags);
        assert_eq!(a.control_group, "campaign_control");
    }

    #[test]
    fn small_or_inconclusive_comparisons_are_flagged() {
        let stats = [
            (key("small", Group::Treated), side(500, 100, 500)),
            (key("small", Group::CampaignControl), side(50, 10, 500)),
            (key("null", Group::Treated), side(2000, 400, 500)),
            (key("null", Group::CampaignControl), side(2000, 402, 500)),
            (key("noholdout", Group::Treated), side(2000, 400, 500)),
            (key("noholdout", Group::GlobalControl), side(200, 40, 500)),
        ];
        let r = Report::from_stats(stats.iter().map(|(k, s)| (k, s)));
        let by_id = |id: &str| r.campaigns.iter().find(|c| c.campaign_id == id).unwrap();
        assert_eq!(by_id("small").flags, ["too few customers to say"]);
        assert!(by_id("null").flags.contains(&"uplift interval spans zero"));
        assert_eq!(by_id("noholdout").control_group, "global_control");
        assert_eq!(r.series.len(), 3);
    }
}
