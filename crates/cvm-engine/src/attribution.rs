//! Streaming attribution: what each campaign's treated and control customers
//! bought, summed so that uplift and its confidence interval can be computed
//! at any moment without keeping per-customer data.
//!
//! The unit is the *customer*: a customer's first decision of a campaign
//! opens their one episode of it, in the group the decision put them in
//! (treated, campaign holdout or global control), and it lasts the
//! campaign's attribution window. Every purchase inside it adds to it. Later
//! decisions of the campaign open no other episode, inside the window or
//! after it. This is the estimand the report states: the effect of being
//! assigned to the campaign, over the window after the first decision
//! (intention to treat). Counting an episode per window instead compares
//! unlike groups: a held-out customer uses no cap slot and is never
//! fatigued, so they are decided again and again, and customers who are
//! decided often differ from the rest in what they would buy anyway. One
//! episode per customer also keeps the report's per-customer variances
//! right: a customer's several windows are not independent.
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

use crate::{
    profile::{contact_hash, Exposure, Profile, Totals, MAX_ASSIGNED, MAX_EXPOSURES},
    time::DAY_MS,
    StateTxn, StoreError,
};

pub use crate::{
    profile::Group,
    stats::{Stats, StatsKey, PROGRAMME},
};

fn key(campaign_id: &str, group: Group, at_ms: i64) -> StatsKey {
    StatsKey { campaign_id: campaign_id.to_owned(), group, day: at_ms.div_euclid(DAY_MS) as i32 }
}

fn add(totals: &mut Totals, p: &Totals) {
    totals.orders = totals.orders.saturating_add(p.orders);
    totals.revenue_minor = totals.revenue_minor.saturating_add(p.revenue_minor);
    totals.margin_minor = totals.margin_minor.saturating_add(p.margin_minor);
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

/// Opens the customer's episode of `campaign_id` in `group` at `now_ms`,
/// unless they had one already; closed episodes are forgotten (the
/// campaign is remembered in [`Profile::assigned`]).
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
    let campaign = contact_hash(campaign_id);
    // The open-episode check covers profiles stored before `assigned`
    // existed, and campaigns pushed out of its bounded list.
    if profile.assigned.contains(&campaign)
        || profile.exposures.iter().any(|e| e.campaign_id == campaign_id && e.start_ms <= now_ms)
    {
        return Ok(());
    }
    profile.assigned.push(campaign);
    if profile.assigned.len() > MAX_ASSIGNED {
        profile.assigned.remove(0);
    }
    profile.exposures.push(Exposure {
        campaign_id: campaign_id.to_owned(),
        group,
        start_ms: now_ms,
        until_ms: now_ms.saturating_add(window_ms),
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
    fn a_customer_has_one_episode_per_campaign_however_often_decided() {
        let mut txn = crate::MemoryState::default();
        let mut profile = Profile::default();
        let window = 7 * DAY_MS;
        expose(&mut txn, 0, &mut profile, "c", Group::CampaignControl, DAY_MS, window).unwrap();
        // Decided again inside the window, and long after it: no new episode.
        expose(&mut txn, 0, &mut profile, "c", Group::CampaignControl, 2 * DAY_MS, window).unwrap();
        expose(&mut txn, 0, &mut profile, "c", Group::CampaignControl, 30 * DAY_MS, window).unwrap();
        expose(&mut txn, 0, &mut profile, "other", Group::Treated, 30 * DAY_MS, window).unwrap();
        let stats = txn.stats();
        let customers = |campaign: &str, group, day: i64| {
            let key = key(campaign, group, day * DAY_MS);
            stats.iter().find(|(k, _)| *k == key).map_or(0, |(_, s)| s.customers)
        };
        assert_eq!(customers("c", Group::CampaignControl, 1), 1);
        assert_eq!(customers("c", Group::CampaignControl, 2) + customers("c", Group::CampaignControl, 30), 0);
        assert_eq!(customers("other", Group::Treated, 30), 1);
        assert_eq!(profile.exposures.len(), 1, "the first episode closed; the other campaign's is open");
        assert_eq!(profile.assigned, [contact_hash("c"), contact_hash("other")]);
    }

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
