//! Hidden responsiveness: how the synthetic customers react to offers.
//!
//! The event stream of [`Retailer`](crate::Retailer) is what customers would
//! do anyway. A [`Responder`] adds what an offer makes them do: for each
//! campaign a known probability that a customer buys because of it, and the
//! basket they then buy. A customer answers their first offer of a campaign
//! only (push or story, whichever comes first), so the true effect of a
//! campaign is exactly `probability × basket margin` per treated customer —
//! the number an incrementality report has to recover. Whether a customer
//! responds is a pure function of the seed and the offer id, so a replay
//! responds the same way.

use std::collections::{HashMap, HashSet};

use cvm_proto::v1::{Offer, Purchase, PurchaseChannel, PurchaseLine};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use cvm_engine::time::HOUR_MS;

/// A campaign's true effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    /// Probability that a treated customer buys because of the offer.
    pub probability: f64,
    /// Price of the basket they then buy, minor units.
    pub price_minor: i64,
    /// Its cost of goods, minor units.
    pub cost_minor: i64,
}

impl Effect {
    /// Incremental margin per treated customer, minor units.
    pub fn margin_per_treated(&self) -> f64 {
        self.probability * (self.price_minor - self.cost_minor) as f64
    }
}

/// Customers' reactions to offers, by campaign.
#[derive(Debug, Clone, Default)]
pub struct Responder {
    seed: u64,
    effects: HashMap<String, Effect>,
    answered: HashSet<(String, String)>,
}

impl Responder {
    /// A responder where no campaign has any effect.
    pub fn new(seed: u64) -> Self {
        Self { seed, ..Self::default() }
    }

    /// Gives `campaign_id` the effect `effect`.
    pub fn with_effect(mut self, campaign_id: &str, effect: Effect) -> Self {
        self.effects.insert(campaign_id.to_owned(), effect);
        self
    }

    /// Every campaign's effect, in campaign order.
    pub fn effects(&self) -> Vec<(&str, Effect)> {
        let mut v: Vec<_> = self.effects.iter().map(|(c, e)| (c.as_str(), *e)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The purchase `offer` causes, if its customer responds: the offer's
    /// basket, redeeming it, 2 to 48 hours after it was sent.
    pub fn respond(&mut self, offer: &Offer) -> Option<Purchase> {
        let effect = self.effects.get(&offer.campaign_id)?;
        if !self.answered.insert((offer.customer_id.clone(), offer.campaign_id.clone())) {
            return None;
        }
        let draw = xxh3_64_with_seed(offer.offer_id.as_bytes(), self.seed);
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        if uniform >= effect.probability {
            return None;
        }
        let delay = 2 * HOUR_MS + (draw % 46) as i64 * HOUR_MS;
        Some(Purchase {
            event_id: format!("response-{}", offer.offer_id),
            customer_id: offer.customer_id.clone(),
            timestamp_ms: offer.created_at_ms + delay,
            channel: PurchaseChannel::Online as i32,
            lines: vec![PurchaseLine {
                sku: format!("{}-basket", offer.campaign_id),
                category: "campaign".into(),
                quantity: 1,
                unit_price_minor: effect.price_minor,
                unit_cost_minor: effect.cost_minor,
            }],
            currency: "EUR".into(),
            offer_id: offer.offer_id.clone(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_answer_their_first_offer_of_a_campaign_at_the_given_rate() {
        let effect = Effect { probability: 0.3, price_minor: 2000, cost_minor: 1200 };
        let mut r = Responder::new(7).with_effect("c", effect);
        let offer = |i: usize| Offer {
            offer_id: format!("o{i}"),
            customer_id: format!("k{i}"),
            campaign_id: "c".into(),
            ..Default::default()
        };
        let responses = (0..10_000).filter(|&i| r.respond(&offer(i)).is_some()).count();
        assert!((2_850..=3_150).contains(&responses), "{responses}");
        assert!(r.respond(&offer(0)).is_none(), "a second offer of the campaign is not answered");
        assert!(r.respond(&Offer { campaign_id: "other".into(), ..offer(1) }).is_none());
        assert!((effect.margin_per_treated() - 240.0).abs() < 1e-9);
    }
}
