//! The transparent heuristic score used until models arrive.
//!
//! `score = priority × (propensity × net_margin − contact_cost)`, where
//! propensity grows with the customer's affinity to the offer's category,
//! their purchase frequency and recency, and whether the category is in
//! their cart; and net margin is the offer's expected margin minus the
//! discount's cost on the customer's typical basket. Every term is written
//! into the decision, so a marketer can see why an offer won.

use cvm_proto::v1::Score;

use crate::{offers::OfferDefinition, profile::Profile};

/// Typical basket in minor units, for customers with no recent orders.
const DEFAULT_BASKET_MINOR: f64 = 3_000.0;

/// Scores `offer` for `profile` at `now_ms`.
pub fn score(offer: &OfferDefinition, profile: &Profile, now_ms: i64) -> Score {
    let w90 = profile.window(now_ms, 90);
    let affinity = match &offer.category {
        Some(c) => profile.category_share(c),
        None => 0.3,
    };
    let frequency = (f64::from(w90.orders) / 6.0).min(1.0);
    let recency = profile.days_since_last_purchase(now_ms).map_or(0.0, |d| (-d / 60.0).exp());
    let in_cart = match &offer.category {
        Some(c) if profile.cart.iter().any(|l| &l.category == c) => 1.0,
        _ => 0.0,
    };
    let propensity = (0.02 + 0.30 * affinity + 0.15 * frequency + 0.10 * recency + 0.15 * in_cart).min(0.9);
    let basket = if w90.orders > 0 { w90.revenue_minor as f64 / f64::from(w90.orders) } else { DEFAULT_BASKET_MINOR };
    let discount_cost = basket * f64::from(offer.discount.percent) / 100.0 + offer.discount.fixed_minor as f64;
    let net_margin = offer.expected_margin_minor as f64 - discount_cost;
    Score {
        offer_definition_id: offer.id.clone(),
        offer_version: offer.version,
        score: offer.priority * (propensity * net_margin - offer.contact_cost_minor as f64),
        propensity,
        expected_margin_minor: net_margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offers::tests::sample_json;
    use crate::profile::CategoryAffinity;

    #[test]
    fn affinity_raises_the_score() {
        let offer = OfferDefinition::parse("k", sample_json().as_bytes()).unwrap();
        let cold = Profile::default();
        let mut fan = Profile::default();
        fan.categories.push(CategoryAffinity { category: "sushi".into(), score: 10.0, as_of_day: 0 });
        let (a, b) = (score(&offer, &cold, 0), score(&offer, &fan, 0));
        assert!(b.score > a.score, "{b:?} vs {a:?}");
        assert!(b.propensity > a.propensity);
        // 10 % of the default basket comes off the margin.
        assert_eq!(a.expected_margin_minor, 600.0 - 300.0);
    }
}
