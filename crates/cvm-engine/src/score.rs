//! The transparent heuristic score used until models arrive.
//!
//! `score = priority × (propensity × net_margin − contact_cost)`, where
//! propensity grows with the customer's affinity to the offer's category,
//! their purchase frequency and recency, and whether the category is in
//! their cart; and net margin is the offer's expected margin minus the
//! discount's cost on the customer's typical basket. Every term is written
//! into the decision, so a marketer can see why an offer won.

use cvm_proto::v1::{Discount, Score};

use crate::{
    features::{Features, Num},
    offers::OfferDefinition,
};

/// Typical basket in minor units, for customers with no recent orders.
const DEFAULT_BASKET_MINOR: f64 = 3_000.0;

/// The customer's typical basket in minor units: their 90-day average order
/// value, or a default without recent orders. Discounts are costed on it.
pub(crate) fn typical_basket_minor(features: &Features<'_>) -> f64 {
    match features.num(Num::AVG_BASKET_VALUE_90D) {
        b if b > 0.0 => b * 100.0,
        _ => DEFAULT_BASKET_MINOR,
    }
}

/// Scores `offer` with `discount` for the customer described by `features`.
pub fn score(offer: &OfferDefinition, features: &Features<'_>, discount: &Discount, now_ms: i64) -> Score {
    let profile = features.profile();
    let w90 = profile.window(now_ms, 90);
    let category = offer.doc.category.as_deref();
    let affinity = category.map_or(0.3, |c| profile.category_share(c));
    let frequency = (f64::from(w90.orders) / 6.0).min(1.0);
    let recency = profile.days_since_last_purchase(now_ms).map_or(0.0, |d| (-d / 60.0).exp());
    let in_cart = match category {
        Some(c) if profile.cart.iter().any(|l| l.category == c) => 1.0,
        _ => 0.0,
    };
    let propensity = (0.02 + 0.30 * affinity + 0.15 * frequency + 0.10 * recency + 0.15 * in_cart).min(0.9);
    let basket = typical_basket_minor(features);
    let discount_cost = basket * f64::from(discount.percent) / 100.0 + discount.fixed_minor as f64;
    let net_margin = offer.margin_minor(features) - discount_cost;
    let contact_cost = offer.doc.economics.contact_cost_minor as f64;
    Score {
        offer_definition_id: offer.doc.id.clone(),
        offer_version: offer.doc.version,
        score: offer.doc.weight * (propensity * net_margin - contact_cost),
        propensity,
        expected_margin_minor: net_margin,
        source: "rules".into(),
        discount_percent: discount.percent,
        ..Score::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        features::EventFacts,
        profile::{CategoryAffinity, Profile},
    };

    #[test]
    fn affinity_raises_the_score() {
        let offer = crate::offers::definition::tests::sample();
        let cold = Profile::default();
        let mut fan = Profile::default();
        fan.categories.push(CategoryAffinity { category: "sushi".into(), score: 10.0, as_of_day: 0 });
        let score_for =
            |p: &Profile| score(&offer, &Features::compute(p, EventFacts::default(), 0), &offer.discount(0), 0);
        let (a, b) = (score_for(&cold), score_for(&fan));
        assert!(b.score > a.score, "{b:?} vs {a:?}");
        assert!(b.propensity > a.propensity);
        // 10 % of the default basket comes off the margin.
        assert_eq!(a.expected_margin_minor, 600.0 - 300.0);
    }
}
