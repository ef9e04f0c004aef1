//! Streaming attribution: what each campaign's treated and control customers
//! bought, summed so that uplift and its confidence interval can be computed
//! at any moment without keeping per-customer data.
//!
//! The unit is an *episode*: a customer's first decision of a campaign opens
//! one, in the group the decision put them in (treated, campaign holdout or
//! global control), and it lasts the campaign's attribution window. Every
//! purchase inside an open episode adds to it. Later decisions of the same
//! campaign inside the window do not open another, so treated and control
//! episodes have the same length whatever the caps did.
//!
//! Control customers are decided like treated ones up to the very last
//! step: eligibility, caps and quiet hours all apply, and only then does the
//! holdout keep the offer back. So the control group is "would have been
//! sent", and the difference between the groups is the offer's effect.
//!
//! Aggregates are [`Stats`] under a [`StatsKey`] (campaign, group, day). They
//! are additive: sums of squares grow by `2·x·d + d²` when a customer's
//! episode total `x` grows by `d`, so day buckets, partitions and instances
//! can simply be added. They are written through the [`StateTxn`], in the
//! same transaction as the event that caused them.
//!
//! The programme as a whole is the campaign `""`: every customer, by whether
//! they are in the global control group, over all their purchases.

use serde::{Deserialize, Serialize};

use crate::{
    profile::{Exposure, Profile, Totals, DAY_MS, MAX_EXPOSURES},
    StateTxn, StoreError,
};

/// The campaign id under which the programme-level comparison is kept.
pub const PROGRAMME: &str = "";

/// Which side of a comparison a customer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    /// Sent the offer (for the programme: not in the global control group).
    Treated,
    /// In the campaign's holdout: would have been sent the offer.
    CampaignControl,
    /// In the global control group: never sent anything.
    GlobalControl,
}

impl Group {
    /// Every group, in code order.
    pub const ALL: [Group; 3] = [Group::Treated, Group::CampaignControl, Group::GlobalControl];

    /// Lower-case name, for reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Group::Treated => "treated",
            Group::CampaignControl => "campaign_control",
            Group::GlobalControl => "global_control",
        }
    }

    /// One byte, for storage keys.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The group of a storage code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The group of a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// Where a [`Stats`] delta is added.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    /// The campaign ([`PROGRAMME`] for the programme).
    pub campaign_id: String,
    /// The group.
    pub group: Group,
    /// Days since the Unix epoch of the event that caused the delta.
    pub day: i32,
}

/// Additive sums over episodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Episodes opened (customers, counted once per attribution window).
    pub customers: u64,
    /// Episodes with at least one purchase.
    pub converters: u64,
    /// Attributed orders.
    pub orders: u64,
    /// Attributed revenue, minor units.
    pub revenue_minor: i64,
    /// Attributed margin, minor units.
    pub margin_minor: i64,
    /// Sum over episodes of the squared episode revenue.
    pub revenue_sq: i128,
    /// Sum over episodes of the squared episode margin.
    pub margin_sq: i128,
    /// Offers sent (treated only).
    pub contacts: u64,
    /// Their cost, minor units.
    pub contact_cost_minor: i64,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Stats) {
        self.customers += other.customers;
        self.converters += other.converters;
        self.orders += other.orders;
        self.revenue_minor += other.revenue_minor;
        self.margin_minor += other.margin_minor;
        self.revenue_sq += other.revenue_sq;
        self.margin_sq += other.margin_sq;
        self.contacts += other.contacts;
        self.contact_cost_minor += other.contact_cost_minor;
    }

    /// The delta of adding purchase `p` to an episode whose totals were `before`.
    fn purchase(before: &Totals, p: &Totals) -> Self {
        let sq = |x: i64, d: i64| 2 * i128::from(x) * i128::from(d) + i128::from(d) * i128::from(d);
        Stats {
            converters: u64::from(before.orders == 0),
            orders: 1,
            revenue_minor: p.revenue_minor,
            margin_minor: p.margin_minor,
            revenue_sq: sq(before.revenue_minor, p.revenue_minor),
            margin_sq: sq(before.margin_minor, p.margin_minor),
            ..Stats::default()
        }
    }
}

fn key(campaign_id: &str, group: Group, at_ms: i64) -> StatsKey {
    StatsKey { campaign_id: campaign_id.to_owned(), group, day: at_ms.div_euclid(DAY_MS) as i32 }
}

fn add(totals: &mut Totals, p: &Totals) {
    totals.orders += p.orders;
    totals.revenue_minor += p.revenue_minor;
    totals.margin_minor += p.margin_minor;
}

/// Counts a new customer in the programme comparison.
pub(crate) fn new_customer(
    txn: &mut impl StateTxn,
    partition: u32,
    group: Group,
    at_ms: i64,
) -> Result<(), StoreError> {
    txn.add_stats(partition, key(PROGRAMME, group, at_ms), &Stats { customers: 1, ..Stats::default() })
}

/// Opens an episode of `campaign_id` in `group` at `now_ms`, unless one is
/// open already; closed episodes are forgotten.
pub(crate) fn expose(
    txn: &mut impl StateTxn,
    partition: u32,
    profile: &mut Profile,
    campaign_id: &str,
    group: Group,
    now_ms: i64,
    window_ms: i64,
) -> Result<(), StoreError> {
    profile.exposures.retain(|e| e.until_ms > now_ms);
    if profile.exposures.iter().any(|e| e.campaign_id == campaign_id && e.start_ms <= now_ms) {
        return Ok(());
    }
    profile.exposures.push(Exposure {
        campaign_id: campaign_id.to_owned(),
        group,
        start_ms: now_ms,
        until_ms: now_ms + window_ms,
        totals: Totals::default(),
    });
    if profile.exposures.len() > MAX_EXPOSURES {
        profile.exposures.remove(0);
    }
    txn.add_stats(partition, key(campaign_id, group, now_ms), &Stats { customers: 1, ..Stats::default() })
}

/// Counts an offer sent for `campaign_id` and its cost.
pub(crate) fn contact(
    txn: &mut impl StateTxn,
    partition: u32,
    campaign_id: &str,
    cost_minor: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let delta = Stats { contacts: 1, contact_cost_minor: cost_minor, ..Stats::default() };
    txn.add_stats(partition, key(campaign_id, Group::Treated, now_ms), &delta)?;
    txn.add_stats(partition, key(PROGRAMME, Group::Treated, now_ms), &delta)
}

/// Attributes purchase `p` at `at_ms` to the programme (in the customer's
/// `programme_group`) and to every episode open at that time.
pub(crate) fn purchase(
    txn: &mut impl StateTxn,
    partition: u32,
    profile: &mut Profile,
    programme_group: Group,
    p: &Totals,
    at_ms: i64,
) -> Result<(), StoreError> {
    let delta = Stats::purchase(&profile.programme, p);
    add(&mut profile.programme, p);
    txn.add_stats(partition, key(PROGRAMME, programme_group, at_ms), &delta)?;
    for e in profile.exposures.iter_mut().filter(|e| e.start_ms <= at_ms && at_ms < e.until_ms) {
        let delta = Stats::purchase(&e.totals, p);
        add(&mut e.totals, p);
        txn.add_stats(partition, key(&e.campaign_id, e.group, at_ms), &delta)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_squares_are_additive_per_episode() {
        // One episode buys 3 then 4: its total is 7, so Σx² must be 49.
        let first = Stats::purchase(&Totals::default(), &Totals { orders: 1, revenue_minor: 3, margin_minor: 1 });
        let after = Totals { orders: 1, revenue_minor: 3, margin_minor: 1 };
        let second = Stats::purchase(&after, &Totals { orders: 1, revenue_minor: 4, margin_minor: 2 });
        let mut total = first;
        total.add(&second);
        assert_eq!((total.revenue_sq, total.margin_sq), (49, 9));
        assert_eq!((total.converters, total.orders), (1, 2));
    }
}
