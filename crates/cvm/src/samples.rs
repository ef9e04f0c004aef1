//! The sample offers shipped in `deploy/offers/`, compiled in for the demo
//! and the benchmark.

use cvm_engine::OfferDefinition;

/// `(file name, JSON)` of every sample offer.
pub const SAMPLE_OFFERS: [(&str, &str); 5] = [
    ("cart-sushi.json", include_str!("../../../deploy/offers/cart-sushi.json")),
    ("lapsed-reactivation.json", include_str!("../../../deploy/offers/lapsed-reactivation.json")),
    ("wine-with-meat.json", include_str!("../../../deploy/offers/wine-with-meat.json")),
    ("loyalty-stories.json", include_str!("../../../deploy/offers/loyalty-stories.json")),
    ("beauty-teaser.json", include_str!("../../../deploy/offers/beauty-teaser.json")),
];

/// The sample offers, parsed.
pub fn sample_offers() -> Vec<OfferDefinition> {
    SAMPLE_OFFERS
        .iter()
        .map(|(name, json)| OfferDefinition::parse(name, json.as_bytes()).expect("sample offers are lint-clean"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cvm_engine::{Catalog, Emit, Engine, MemoryState};
    use cvm_proto::v1::{Channel, Outcome};
    use cvm_synth::{Retailer, RetailerConfig};

    #[test]
    fn samples_parse() {
        assert_eq!(super::sample_offers().len(), super::SAMPLE_OFFERS.len());
    }

    /// The demo's world, without Kafka: every outcome the quickstart promises occurs.
    #[test]
    fn sample_offers_on_the_synthetic_retailer_reach_every_outcome() {
        let engine = Engine::new(Default::default(), Catalog::new(super::sample_offers()));
        let mut state = MemoryState::default();
        let mut seen: HashMap<(Channel, Outcome), u32> = HashMap::new();
        for e in Retailer::new(RetailerConfig { customers: 3_000, days: 10, ..Default::default() }) {
            for emit in engine.process(&mut state, 0, &e.event, e.event.timestamp_ms()).unwrap().emits {
                if let Emit::Decision(d) = emit {
                    *seen.entry((d.channel(), d.outcome())).or_default() += 1;
                }
            }
        }
        for key in [
            (Channel::Push, Outcome::Treated),
            (Channel::Stories, Outcome::Treated),
            (Channel::Push, Outcome::Capped),
            (Channel::Unspecified, Outcome::HoldoutGlobal),
            (Channel::Push, Outcome::HoldoutCampaign),
            (Channel::Push, Outcome::Unreachable),
            (Channel::Unspecified, Outcome::Ineligible),
        ] {
            assert!(seen.get(&key).is_some_and(|n| *n > 0), "no {key:?} in {seen:?}");
        }
    }
}
