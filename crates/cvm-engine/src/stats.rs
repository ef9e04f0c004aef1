//! The attribution aggregates: additive sums per campaign, group and day
//! (see [`attribution`](crate::attribution) for how episodes feed them).
//! Plain data below the store interface, which reads and writes them.

use serde::{Deserialize, Serialize};

use crate::profile::{Group, Totals};

/// The campaign id under which the programme-level comparison is kept.
pub const PROGRAMME: &str = "";

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
        // Saturating: sums of bounded inputs fit, but a stats message read
        // back from the topic is input too.
        self.customers = self.customers.saturating_add(other.customers);
        self.converters = self.converters.saturating_add(other.converters);
        self.orders = self.orders.saturating_add(other.orders);
        self.revenue_minor = self.revenue_minor.saturating_add(other.revenue_minor);
        self.margin_minor = self.margin_minor.saturating_add(other.margin_minor);
        self.revenue_sq = self.revenue_sq.saturating_add(other.revenue_sq);
        self.margin_sq = self.margin_sq.saturating_add(other.margin_sq);
        self.contacts = self.contacts.saturating_add(other.contacts);
        self.contact_cost_minor = self.contact_cost_minor.saturating_add(other.contact_cost_minor);
    }

    /// The delta of adding purchase `p` to an episode whose totals were `before`.
    pub(crate) fn purchase(before: &Totals, p: &Totals) -> Self {
        let sq = |x: i64, d: i64| {
            let (x, d) = (i128::from(x), i128::from(d));
            (2 * x).saturating_mul(d).saturating_add(d * d)
        };
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
