//! Daily campaign budgets, spent on the highest expected increments.
//!
//! A campaign document may limit its contacts, or the discount it gives
//! away, per UTC day. Spent first come first served, a budget goes to
//! whoever happens to be decided first after midnight. Here an opportunity
//! is taken only if its expected value is among the best of what the rest of
//! the day is likely to bring: with `r` contacts left and about `n` more
//! opportunities expected, the threshold is the value the top `r / n` of
//! the recent opportunities reach. `n` is what came after this hour
//! yesterday, scaled by how today compares with yesterday so far (a sale
//! day brings more), or on a campaign's first day today's pace since its
//! first busy hour; the recent
//! values are the last [`RECENT`] the partition saw, so the threshold
//! follows the distribution as it moves (until [`WARM_UP`] values are seen,
//! a budget that cannot take everyone takes no one). The exploration slice is not
//! thresholded (its decisions must not depend on the model): it is admitted
//! at random at the same rate, so it keeps its share of the budget.
//!
//! Scale-out: customers hash evenly over partitions, so each partition
//! spends its share of the limit ([`Budget::share`]); the ledger is
//! partition state, committed with the decisions and restored with the
//! partition, so a replay or a restart spends exactly as the first run did.

use cvm_proto::v1::Discount;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::{DAY_MS, HOUR_MS};

/// Recent opportunity values kept per partition and campaign.
pub const RECENT: usize = 256;

/// Values a ledger sees before it thresholds: until then, while the budget
/// cannot take everyone, it takes no one (the first values would otherwise
/// be compared with almost nothing).
pub const WARM_UP: usize = 32;

/// Pseudo-opportunities added to both days when today is compared with
/// yesterday, so an hour's noise does not swing the estimate.
const RATIO_PRIOR: f64 = 20.0;

/// A campaign's daily limits (UTC days), across all partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Offers sent per day (the campaign holdout sends nothing and uses none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_contacts: Option<u64>,
    /// Expected discount given away per day, minor units: each offer sent
    /// counts its discount (fixed, or percent of the customer's typical
    /// basket) times its chance of being redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_discount_minor: Option<i64>,
}

impl Budget {
    /// Every problem, as `path: problem; fix`.
    pub(crate) fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.daily_contacts == Some(0) {
            out.push(format!("{path}.daily_contacts: is 0; to stop a campaign, pause its offers (status: paused)"));
        }
        if self.daily_discount_minor.is_some_and(|d| d <= 0) {
            out.push(format!("{path}.daily_discount_minor: must be positive (minor units, e.g. 50000 for 500.00)"));
        }
        out
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.daily_contacts.is_some() || self.daily_discount_minor.is_some()
    }

    /// Partition `partition`'s part of the limits when `partitions` share
    /// them: an even split, the remainder to the lowest partitions, so the
    /// parts add up to the limit exactly.
    pub fn share(&self, partition: u32, partitions: u32) -> Share {
        let partitions = u64::from(partitions.max(1));
        let part = |limit: u64| limit / partitions + u64::from(u64::from(partition) % partitions < limit % partitions);
        Share {
            contacts: self.daily_contacts.map(part),
            discount_minor: self.daily_discount_minor.map(|d| part(d.max(0) as u64) as f64),
        }
    }
}

/// The expected cost of `discount` to a customer whose typical basket is
/// `basket_minor`, redeemed with probability `propensity`, minor units.
pub fn expected_discount_minor(discount: &Discount, propensity: f64, basket_minor: f64) -> f64 {
    let face =
        discount.fixed_minor.max(0) as f64 + f64::from(discount.percent.min(100)) / 100.0 * basket_minor.max(0.0);
    let cost = propensity.clamp(0.0, 1.0) * face;
    if cost.is_finite() {
        cost
    } else {
        0.0
    }
}

/// One partition's daily limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Contacts per day.
    pub contacts: Option<u64>,
    /// Expected discount per day, minor units.
    pub discount_minor: Option<f64>,
}

/// What one day spent and saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DayTally {
    /// Offers sent.
    pub contacts: u64,
    /// Expected discount of the offers sent, minor units.
    pub discount_minor: f64,
    /// Opportunities that reached the budget (eligible, incremental, allowed
    /// by the contact policy), taken or not, by hour of the day (UTC).
    pub hourly: [u32; 24],
}

impl DayTally {
    /// Opportunities of the whole day so far.
    pub fn opportunities(&self) -> u64 {
        self.hourly.iter().map(|n| u64::from(*n)).sum()
    }
}

/// A partition's budget state for one campaign.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The UTC day (days since the epoch) `today` counts.
    pub day: i64,
    /// Today so far.
    pub today: DayTally,
    /// Opportunities by hour the day before `day` (`None`: none recorded).
    pub yesterday: Option<[u32; 24]>,
    /// Values of the latest opportunities, a ring of at most [`RECENT`].
    pub recent: Vec<f64>,
    /// Where the next value goes in `recent` once it is full.
    pub next: u32,
}

/// Why an opportunity was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Today's share is spent.
    Spent {
        /// `contacts` or `discount`.
        limit: &'static str,
        /// Today's share.
        share: f64,
    },
    /// An exploration decision not drawn at the day's admission rate.
    Explored {
        /// The share of opportunities the budget admits now.
        rate: f64,
    },
    /// Too few values seen yet to know what a good one is.
    WarmingUp {
        /// Values seen so far.
        seen: usize,
    },
    /// The value is below what the rest of the day is expected to offer.
    BelowThreshold {
        /// The opportunity's expected value, minor units.
        value: f64,
        /// The threshold.
        threshold: f64,
        /// Contacts (or their discount equivalent) left today.
        left: f64,
        /// Opportunities expected in the rest of the day.
        expected: f64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spent { limit, share } => write!(f, "today's {limit} budget ({share:.0} on this partition) is spent"),
            Self::Explored { rate } => {
                write!(f, "exploring: not drawn among the {:.1} % of opportunities the budget admits now", rate * 100.0)
            }
            Self::WarmingUp { seen } => {
                write!(f, "the budget cannot take everyone and has seen {seen} of the {WARM_UP} values it learns a threshold from")
            }
            Self::BelowThreshold { value, threshold, left, expected } => write!(
                f,
                "expected value {:.2} is below the budget threshold {:.2} ({left:.0} contacts left for about \
                 {expected:.0} more opportunities today)",
                value / 100.0,
                threshold / 100.0
            ),
        }
    }
}

/// An opportunity at the gate.
#[derive(Debug, Clone, Copy)]
pub struct Opportunity {
    /// Its expected value, minor units (the ranking value).
    pub value: f64,
    /// The expected discount of the offer if sent, minor units.
    pub discount_minor: f64,
    /// An exploration decision: admitted at random, not by value.
    pub exploring: bool,
    /// A uniform draw in [0, 1) fixed by the decision (for exploration).
    pub draw: f64,
}

impl Ledger {
    /// The ledger as of `now_ms`: a new day starts a new tally.
    pub fn at(mut self, now_ms: i64) -> Self {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            // A day without opportunities (or a new ledger) says nothing
            // about the next: its pace is used instead.
            let consecutive = self.day.checked_add(1) == Some(day);
            self.yesterday = (consecutive && self.today.opportunities() > 0).then_some(self.today.hourly);
            self.today = DayTally::default();
            self.day = day;
        }
        self
    }

    /// Whether opportunity `o` (already [observed](Self::observe)) may be
    /// taken within `share`, `treated_share` of takers being sent an offer
    /// (the rest are held out and spend nothing).
    pub fn check(&self, o: &Opportunity, share: &Share, now_ms: i64, treated_share: f64) -> Result<(), Refusal> {
        let left = self.left(o, share)?;
        let expected = self.expected_remaining(now_ms);
        // Contacts the rest of the day can afford, per opportunity expected.
        let rate = left / (expected * treated_share.clamp(0.01, 1.0)).max(1.0);
        if rate >= 1.0 || (o.exploring && o.draw < rate) {
            return Ok(());
        }
        if o.exploring {
            return Err(Refusal::Explored { rate });
        }
        if self.recent.len() < WARM_UP {
            return Err(Refusal::WarmingUp { seen: self.recent.len() });
        }
        let threshold = quantile(&self.recent, 1.0 - rate);
        if o.value >= threshold {
            Ok(())
        } else {
            Err(Refusal::BelowThreshold { value: o.value, threshold, left, expected })
        }
    }

    /// Records an offer sent.
    pub fn spend(&mut self, discount_minor: f64) {
        self.today.contacts += 1;
        self.today.discount_minor += discount_minor.max(0.0);
    }

    /// Contacts left today (the discount budget in contacts at this offer's
    /// discount), or why there are none.
    fn left(&self, o: &Opportunity, share: &Share) -> Result<f64, Refusal> {
        let mut left = f64::INFINITY;
        if let Some(contacts) = share.contacts {
            if self.today.contacts >= contacts {
                return Err(Refusal::Spent { limit: "contacts", share: contacts as f64 });
            }
            left = left.min((contacts - self.today.contacts) as f64);
        }
        if let Some(discount) = share.discount_minor {
            let remaining = discount - self.today.discount_minor;
            if remaining < o.discount_minor.max(0.0) || remaining <= 0.0 {
                return Err(Refusal::Spent { limit: "discount", share: discount });
            }
            left = left.min(if o.discount_minor > 0.0 { remaining / o.discount_minor } else { f64::INFINITY });
        }
        Ok(left)
    }

    /// Opportunities expected between `now_ms` and the end of the day.
    fn expected_remaining(&self, now_ms: i64) -> f64 {
        let into_day = now_ms.rem_euclid(DAY_MS);
        let elapsed = into_day as f64 / DAY_MS as f64;
        let Some(yesterday) = &self.yesterday else {
            // The first day: today's pace since its first busy hour, over
            // at least an hour.
            let first = self.today.hourly.iter().position(|n| *n > 0).unwrap_or(0) as f64 / 24.0;
            return self.today.opportunities() as f64 / (elapsed - first).max(1.0 / 24.0) * (1.0 - elapsed);
        };
        let hour = (into_day / HOUR_MS) as usize;
        let into_hour = (into_day % HOUR_MS) as f64 / HOUR_MS as f64;
        let this_hour = f64::from(yesterday[hour]);
        let before = yesterday[..hour].iter().map(|n| f64::from(*n)).sum::<f64>() + this_hour * into_hour;
        let after = yesterday[hour + 1..].iter().map(|n| f64::from(*n)).sum::<f64>() + this_hour * (1.0 - into_hour);
        // Today against yesterday so far, shrunk towards 1 while both are small.
        let ratio = (self.today.opportunities() as f64 + RATIO_PRIOR) / (before + RATIO_PRIOR);
        after * ratio
    }

    /// Counts an opportunity of expected value `value`: once per decision
    /// and campaign, taken or not.
    pub fn observe(&mut self, value: f64, now_ms: i64) {
        let hour = (now_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize;
        self.today.hourly[hour] = self.today.hourly[hour].saturating_add(1);
        let value = if value.is_finite() { value } else { 0.0 };
        if self.recent.len() < RECENT {
            self.recent.push(value);
        } else {
            let at = self.next as usize % RECENT;
            self.recent[at] = value;
            self.next = ((at + 1) % RECENT) as u32;
        }
    }
}

/// The `q` quantile (0–1) of `values` (nearest rank); −∞ for none.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NEG_INFINITY;
    }
    let mut sorted = values.to_vec();
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    let (_, v, _) = sorted.select_nth_unstable_by(rank, f64::total_cmp);
    *v
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = DAY_MS / 24;

    fn opportunity(value: f64) -> Opportunity {
        Opportunity { value, discount_minor: 0.0, exploring: false, draw: 0.5 }
    }

    impl Ledger {
        fn admit(&mut self, o: &Opportunity, share: &Share, now_ms: i64, treated_share: f64) -> Result<(), Refusal> {
            self.observe(o.value, now_ms);
            self.check(o, share, now_ms, treated_share)
        }
    }

    #[test]
    fn shares_add_up_to_the_limit() {
        let budget = Budget { daily_contacts: Some(10), daily_discount_minor: Some(1_001) };
        let shares: Vec<Share> = (0..4).map(|p| budget.share(p, 4)).collect();
        assert_eq!(shares.iter().map(|s| s.contacts.unwrap()).sum::<u64>(), 10);
        assert_eq!(shares.iter().map(|s| s.discount_minor.unwrap()).sum::<f64>(), 1_001.0);
        assert_eq!(shares.iter().map(|s| s.contacts.unwrap()).collect::<Vec<_>>(), [3, 3, 2, 2]);
    }

    #[test]
    fn a_new_day_starts_a_new_tally_and_remembers_yesterdays_count() {
        let mut ledger = Ledger::default().at(5 * DAY_MS);
        let share = Budget { daily_contacts: Some(1_000), ..Default::default() }.share(0, 1);
        for _ in 0..40 {
            ledger.admit(&opportunity(1.0), &share, 5 * DAY_MS + HOUR, 1.0).unwrap();
            ledger.spend(0.0);
        }
        let next = ledger.clone().at(6 * DAY_MS + 3);
        assert_eq!(next.today, DayTally::default());
        assert_eq!(next.yesterday.map(|y| (y[1], y.iter().sum::<u32>())), Some((40, 40)));
        let later = ledger.at(8 * DAY_MS);
        assert_eq!(later.yesterday, None, "a gap of days leaves no yesterday");
    }

    /// A day of opportunities with values spread evenly in time: a budget
    /// of a tenth of them goes to (nearly) the top tenth, where first come
    /// first served would have spent it in the first hours on average ones.
    #[test]
    fn the_budget_goes_to_the_best_opportunities_of_the_day() {
        let share = Budget { daily_contacts: Some(100), ..Default::default() }.share(0, 1);
        for (day, (taken, last_hour)) in run_days(&share, |_| 1_000, 3).iter().enumerate() {
            let mean = taken.iter().sum::<f64>() / taken.len() as f64;
            assert!(taken.len() <= 100, "day {day}: {} sent", taken.len());
            // The top tenth averages 949.5; all of them 499.5. (Seen: 100
            // sent each day, means 935, 941 and 949, the last at hour 23.)
            assert!(taken.len() >= 95 && mean > 920.0, "day {day}: {} sent, mean value {mean}", taken.len());
            assert!(*last_hour >= 20, "day {day}: the budget ran out at hour {last_hour}");
        }
    }

    /// Runs `days` of `per_day(day)` opportunities, spread evenly over the
    /// day, values a permutation of 0..n; returns per day the values taken
    /// and the hour of the last one.
    fn run_days(share: &Share, per_day: impl Fn(i64) -> i64, days: i64) -> Vec<(Vec<f64>, i64)> {
        let mut ledger = Ledger::default();
        let mut out = Vec::new();
        for day in 0..days {
            let n = per_day(day);
            let (mut taken, mut last) = (Vec::new(), 0);
            for i in 0..n {
                let now = day * DAY_MS + i * DAY_MS / n;
                let value = ((i * 7_919 + day * 13) % n) as f64 * 1_000.0 / n as f64;
                ledger = ledger.at(now);
                if ledger.admit(&opportunity(value), share, now, 1.0).is_ok() {
                    ledger.spend(0.0);
                    taken.push(value);
                    last = (now - day * DAY_MS) / HOUR;
                }
            }
            out.push((taken, last));
        }
        out
    }

    /// A sale day brings three times the opportunities of the day before:
    /// the threshold rises with the pace instead of spending the budget by
    /// the morning on what an ordinary day would have taken.
    #[test]
    fn a_busier_day_raises_the_threshold_rather_than_running_out_early() {
        let share = Budget { daily_contacts: Some(100), ..Default::default() }.share(0, 1);
        let days = run_days(&share, |day| if day == 2 { 3_000 } else { 1_000 }, 3);
        let (taken, last_hour) = &days[2];
        let mean = taken.iter().sum::<f64>() / taken.len() as f64;
        assert!(taken.len() <= 100 && taken.len() >= 80, "{} sent", taken.len());
        // Paced by yesterday's count alone, it ran out at hour 18 with a mean of 969.
        assert!(*last_hour >= 21, "the budget ran out at hour {last_hour}");
        // The top 100 of 3,000 average 983.
        assert!(mean > 975.0, "mean value taken {mean}");
    }

    #[test]
    fn the_limit_holds_and_exploration_is_drawn_at_the_rate_not_by_value() {
        let share = Budget { daily_contacts: Some(3), ..Default::default() }.share(0, 1);
        let mut ledger = Ledger { yesterday: Some([42; 24]), recent: vec![10.0; RECENT], ..Default::default() };
        let low = Opportunity { value: 1.0, discount_minor: 0.0, exploring: true, draw: 0.0 };
        for _ in 0..3 {
            ledger.admit(&low, &share, HOUR, 1.0).unwrap();
            ledger.spend(0.0);
        }
        assert_eq!(ledger.admit(&low, &share, HOUR, 1.0), Err(Refusal::Spent { limit: "contacts", share: 3.0 }));
        let fresh = Ledger { recent: vec![10.0; RECENT], yesterday: Some([42; 24]), ..Default::default() };
        let refused = fresh.clone().admit(&opportunity(1.0), &share, HOUR, 1.0);
        assert!(matches!(refused, Err(Refusal::BelowThreshold { .. })), "{refused:?}");
        // 3 contacts for hundreds of opportunities: an explorer drawn at 0.5 is not admitted.
        let unlucky = Opportunity { draw: 0.5, ..low };
        assert!(matches!(fresh.clone().admit(&unlucky, &share, HOUR, 1.0), Err(Refusal::Explored { .. })));
    }

    #[test]
    fn the_discount_budget_counts_expected_discount() {
        let share = Budget { daily_discount_minor: Some(1_000), ..Default::default() }.share(0, 1);
        let mut ledger = Ledger::default();
        let o = Opportunity { value: 5.0, discount_minor: 300.0, exploring: true, draw: 0.0 };
        for _ in 0..3 {
            ledger.admit(&o, &share, HOUR, 1.0).unwrap();
            ledger.spend(o.discount_minor);
        }
        assert!(matches!(ledger.admit(&o, &share, HOUR, 1.0), Err(Refusal::Spent { limit: "discount", .. })));
        let cheap = Opportunity { discount_minor: 50.0, ..o };
        assert!(ledger.admit(&cheap, &share, HOUR, 1.0).is_ok(), "100.00 left covers a 50.00 discount");
    }

    #[test]
    fn hostile_values_neither_panic_nor_poison_the_threshold() {
        let share = Budget { daily_contacts: Some(1), ..Default::default() }.share(0, 1);
        let mut ledger = Ledger::default();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e300] {
            let _ = ledger.admit(&opportunity(v), &share, i64::MAX, 1.0);
            let _ = ledger.admit(&opportunity(v), &share, i64::MIN, 0.0);
        }
        assert!(ledger.recent.iter().all(|v| v.is_finite()));
        let _ = Ledger::default().at(i64::MIN).at(i64::MAX);
    }
}
