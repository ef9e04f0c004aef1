//! Champion against challenger, before promotion: what each model's choices
//! would have earned, estimated off-policy from the decisions the engine
//! logged.
//!
//! A challenger runs in shadow (a model artifact with `role: challenger`):
//! on every decision about its offer that logs model features, the engine
//! records whether it would have selected the offer
//! (`Decision::challenger_selects`) beside what the champion did. With the
//! decisions' logged randomisation (`selection_probability`,
//! `treatment_probability`) and the purchases in each campaign's
//! attribution window, [`cvm_train::offpolicy`] values both rules on the
//! same customers: the champion's (it selected the offer: selection
//! probability 1) and the challenger's. Where they agree, a row adds the
//! same to both and nothing to their difference; where the challenger
//! selects a customer the champion held back, only the exploration slice
//! saw what a contact does, and its rows weigh one over the exploration
//! share — so a challenger is judged on how much it is wrong where it
//! differs, and the interval of the difference says how sure that is.
//!
//! Promotion is a config change: publish the challenger's artifact as the
//! champion (`role` unset) and delete the challenger's key.

use std::collections::BTreeMap;

use cvm_proto::v1::Decision;
use cvm_train::{
    dataset::{self, PurchaseLog, Row, Target},
    offpolicy::{self, PolicyValue},
};
use serde::Serialize;

use crate::Estimate;

/// One champion and one challenger of an offer, valued on the decisions
/// logged while both ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duel {
    /// The offer (definition) decided about.
    pub offer_definition_id: String,
    /// The champion's `target@version`.
    pub champion: String,
    /// The challenger's `target@version`.
    pub challenger: String,
    /// Decisions that reached the treatment/holdout coin flip while both ran.
    pub decisions: usize,
    /// Customers the champion would contact (estimated: explored rows count
    /// one over their selection probability).
    pub champion_contacts: f64,
    /// Customers the challenger would contact.
    pub challenger_contacts: f64,
    /// The champion's incremental margin net of contact cost, minor units.
    pub champion_increment_minor: Estimate,
    /// The challenger's.
    pub challenger_increment_minor: Estimate,
    /// Challenger minus champion (a paired estimate).
    pub difference_minor: Estimate,
    /// What to do.
    pub verdict: &'static str,
}

/// What valuing an offer's decisions needs from the catalog: the
/// attribution window of its campaign and its contact cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// Purchases this long after a decision are its outcome, ms.
    pub window_ms: i64,
    /// What one contact costs, minor units.
    pub contact_cost_minor: f64,
}

/// Every champion/challenger pair in `decisions` (any order), valued with
/// the purchases after them; `terms` gives an offer's window and contact
/// cost from its definition id and campaign id.
pub fn duels(
    decisions: &mut [Decision],
    purchases: &mut PurchaseLog,
    terms: impl Fn(&str, &str) -> Terms,
) -> Vec<Duel> {
    dataset::in_decision_order(decisions);
    let mut offers: BTreeMap<&str, &str> = BTreeMap::new();
    for d in decisions.iter().filter(|d| !d.challenger_version.is_empty() && !d.model_version.is_empty()) {
        offers.insert(&d.offer_definition_id, &d.campaign_id);
    }
    let mut out = Vec::new();
    for (offer, campaign) in offers {
        let Terms { window_ms, contact_cost_minor } = terms(offer, campaign);
        let rows = dataset::rows(decisions, purchases, Target::Offer(offer), window_ms);
        let mut pairs: BTreeMap<(&str, &str), Vec<Row>> = BTreeMap::new();
        for row in rows {
            let d = &decisions[row.decision];
            if !d.challenger_version.is_empty() && !d.model_version.is_empty() {
                pairs.entry((&d.model_version, &d.challenger_version)).or_default().push(row);
            }
        }
        for ((champion, challenger), rows) in pairs {
            let champion_rule = offpolicy::rule(|r: &Row| r.assignment.selection >= 1.0);
            let challenger_rule = offpolicy::rule(|r: &Row| decisions[r.decision].challenger_selects);
            let champion_value = offpolicy::value(&rows, contact_cost_minor, &champion_rule);
            let challenger_value = offpolicy::value(&rows, contact_cost_minor, &challenger_rule);
            let difference = offpolicy::difference(&rows, contact_cost_minor, &challenger_rule, &champion_rule);
            out.push(Duel {
                offer_definition_id: offer.to_owned(),
                champion: champion.to_owned(),
                challenger: challenger.to_owned(),
                decisions: rows.len(),
                champion_contacts: champion_value.contacts,
                challenger_contacts: challenger_value.contacts,
                champion_increment_minor: estimate(&champion_value),
                challenger_increment_minor: estimate(&challenger_value),
                difference_minor: estimate(&difference),
                verdict: verdict(&difference),
            });
        }
    }
    out
}

fn estimate(v: &PolicyValue) -> Estimate {
    Estimate { value: v.increment_minor, low: v.low_minor, high: v.high_minor }
}

fn verdict(difference: &PolicyValue) -> &'static str {
    if difference.low_minor > 0.0 {
        "the challenger earns more: promote it (publish it as the champion)"
    } else if difference.high_minor < 0.0 {
        "the champion earns more: keep it, retire the challenger"
    } else {
        "no difference shown yet: keep the champion, let both run longer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_engine::models::vector::LEN;
    use cvm_proto::v1::{Outcome, Purchase, PurchaseLine};

    const HOUR: i64 = 3_600_000;

    /// Splitmix64: a reproducible uniform in [0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` customers, half helped by a contact (+30 pp) and half harmed
    /// (−10 pp), buying a basket of margin 10.00. The champion selects
    /// everyone; the challenger only the helped (`challenger_right`) or
    /// only the harmed. A 5 % exploration slice and a 50 % holdout.
    fn world(n: usize, challenger_right: bool, seed: u64) -> (Vec<Decision>, PurchaseLog) {
        let mut state = seed;
        let mut decisions = Vec::new();
        let mut purchases = PurchaseLog::default();
        for i in 0..n {
            let helped = i % 2 == 0;
            let treated = uniform(&mut state) < 0.5;
            let rate = match (helped, treated) {
                (true, true) => 0.4,
                (true, false) => 0.1,
                (false, true) => 0.1,
                (false, false) => 0.2,
            };
            let customer = format!("c{i}");
            let at = i as i64;
            decisions.push(Decision {
                decision_id: format!("d{i}"),
                customer_id: customer.clone(),
                decided_at_ms: at,
                outcome: if treated { Outcome::Treated } else { Outcome::HoldoutCampaign } as i32,
                campaign_id: "camp".into(),
                offer_definition_id: "offer".into(),
                model_version: "offer@1".into(),
                model_features: vec![0.0; LEN],
                selection_probability: 1.0,
                treatment_probability: 0.5,
                challenger_version: "offer@2".into(),
                challenger_selects: helped == challenger_right,
                ..Decision::default()
            });
            if uniform(&mut state) < rate {
                purchases.add(&Purchase {
                    customer_id: customer,
                    timestamp_ms: at + HOUR,
                    lines: vec![PurchaseLine {
                        quantity: 1,
                        unit_price_minor: 2_000,
                        unit_cost_minor: 1_000,
                        ..Default::default()
                    }],
                    ..Purchase::default()
                });
            }
        }
        (decisions, purchases)
    }

    fn duel(n: usize, challenger_right: bool, seed: u64) -> Duel {
        let (mut decisions, mut purchases) = world(n, challenger_right, seed);
        let terms = |_: &str, _: &str| Terms { window_ms: 2 * HOUR, contact_cost_minor: 10.0 };
        let mut duels = duels(&mut decisions, &mut purchases, terms);
        assert_eq!(duels.len(), 1);
        duels.remove(0)
    }

    #[test]
    fn a_challenger_that_drops_the_harmed_is_shown_to_earn_more_and_the_truth_is_inside_the_intervals() {
        let n = 20_000;
        // Per customer: helped +0.30 × 1000 − 10 = 290, harmed −0.10 × 1000 − 10 = −110.
        let (helped, harmed) = (n as f64 / 2.0 * 290.0, n as f64 / 2.0 * -110.0);
        let d = duel(n, true, 7);
        assert_eq!((d.champion.as_str(), d.challenger.as_str(), d.decisions), ("offer@1", "offer@2", n));
        assert!(d.champion_increment_minor.contains(helped + harmed), "{d:?}");
        assert!(d.challenger_increment_minor.contains(helped), "{d:?}");
        assert!(d.difference_minor.contains(-harmed) && d.difference_minor.low > 0.0, "{d:?}");
        assert!(d.verdict.starts_with("the challenger earns more"), "{}", d.verdict);
        assert!((d.challenger_contacts - n as f64 / 2.0).abs() < 1.0 && (d.champion_contacts - n as f64).abs() < 1.0);
    }

    #[test]
    fn a_challenger_that_drops_the_helped_is_shown_to_earn_less() {
        let d = duel(20_000, false, 8);
        assert!(d.difference_minor.high < 0.0, "{d:?}");
        assert!(d.verdict.starts_with("the champion earns more"), "{}", d.verdict);
    }

    #[test]
    fn decisions_without_a_challenger_make_no_duel() {
        let (mut decisions, mut purchases) = world(100, true, 9);
        for d in &mut decisions {
            d.challenger_version.clear();
        }
        let terms = |_: &str, _: &str| Terms { window_ms: HOUR, contact_cost_minor: 0.0 };
        assert!(duels(&mut decisions, &mut purchases, terms).is_empty());
    }
}
