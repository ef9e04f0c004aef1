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
    #[test]
    fn samples_parse() {
        assert_eq!(super::sample_offers().len(), super::SAMPLE_OFFERS.len());
    }
}
