//! The sample offers shipped in `deploy/offers/` and their campaigns in
//! `deploy/campaigns/`, compiled in for the demo and the benchmark.

use cvm_engine::{Catalog, ConfigDocument, OfferDefinition};

/// `(file name, YAML)` of every sample offer.
pub const SAMPLE_OFFERS: [(&str, &str); 8] = [
    ("lapsed-sushi-reactivation.yaml", include_str!("../../../../deploy/offers/lapsed-sushi-reactivation.yaml")),
    ("abandoned-cart.yaml", include_str!("../../../../deploy/offers/abandoned-cart.yaml")),
    ("pharmacy-refill.yaml", include_str!("../../../../deploy/offers/pharmacy-refill.yaml")),
    ("wine-with-meat.yaml", include_str!("../../../../deploy/offers/wine-with-meat.yaml")),
    ("app-loyalty-bonus.yaml", include_str!("../../../../deploy/offers/app-loyalty-bonus.yaml")),
    ("storm-tonight.yaml", include_str!("../../../../deploy/offers/storm-tonight.yaml")),
    ("winback-ladder.yaml", include_str!("../../../../deploy/offers/winback-ladder.yaml")),
    ("beauty-collection-teaser.yaml", include_str!("../../../../deploy/offers/beauty-collection-teaser.yaml")),
];

/// `(file name, YAML)` of every sample campaign document.
pub const SAMPLE_CAMPAIGNS: [(&str, &str); 4] = [
    ("winback.yaml", include_str!("../../../../deploy/campaigns/winback.yaml")),
    ("situational-storm.yaml", include_str!("../../../../deploy/campaigns/situational-storm.yaml")),
    ("loyalty.yaml", include_str!("../../../../deploy/campaigns/loyalty.yaml")),
    ("reactivation.yaml", include_str!("../../../../deploy/campaigns/reactivation.yaml")),
];

/// The sample campaigns, parsed.
pub fn sample_campaigns() -> Vec<ConfigDocument> {
    SAMPLE_CAMPAIGNS
        .iter()
        .map(|(name, doc)| ConfigDocument::parse_file(name, doc.as_bytes()).expect("sample campaigns are lint-clean"))
        .collect()
}

/// The sample offers and campaigns as one catalog.
pub fn sample_catalog() -> Catalog {
    sample_campaigns().into_iter().fold(Catalog::new(sample_offers()), |c, doc| c.with_document(doc))
}

/// The sample offers, parsed.
pub fn sample_offers() -> Vec<OfferDefinition> {
    SAMPLE_OFFERS
        .iter()
        .map(|(name, doc)| OfferDefinition::parse(name, doc.as_bytes()).expect("sample offers are lint-clean"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cvm_engine::{Driver, Engine, MemoryState, Outbound, Output, Source};
    use cvm_proto::v1::{Channel, Outcome};
    use cvm_synth::{Retailer, RetailerConfig};

    #[test]
    fn samples_parse_and_the_directory_has_no_others() {
        assert_eq!(super::sample_offers().len(), super::SAMPLE_OFFERS.len());
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/offers")).unwrap().count();
        assert_eq!(on_disk, super::SAMPLE_OFFERS.len(), "every file in deploy/offers/ is listed and tested");
        assert_eq!(super::sample_campaigns().len(), super::SAMPLE_CAMPAIGNS.len());
        let on_disk =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/campaigns")).unwrap().count();
        assert_eq!(on_disk, super::SAMPLE_CAMPAIGNS.len(), "every file in deploy/campaigns/ is listed and tested");
    }

    /// The demo's world, without Kafka: every outcome the quickstart promises occurs.
    #[test]
    fn sample_offers_on_the_synthetic_retailer_reach_every_outcome() {
        let mut driver = Driver::replay(Engine::new(Default::default(), super::sample_catalog()));
        let mut state = MemoryState::default();
        let mut seen: HashMap<(Channel, Outcome), u32> = HashMap::new();
        let mut triggers: HashMap<String, u32> = HashMap::new();
        for e in Retailer::new(RetailerConfig { customers: 3_000, days: 70, ..Default::default() }) {
            let mut out = Output::default();
            driver.apply(&mut state, 0, Source::Input(0), &e.event, 0, &mut out).unwrap();
            for emit in out.emits {
                if let Outbound::Decision(d) = emit {
                    *seen.entry((d.channel(), d.outcome())).or_default() += 1;
                    *triggers.entry(format!("{}/{}", d.offer_definition_id, d.trigger)).or_default() += 1;
                }
            }
        }
        // Every sample except the sweep (run by the ingest loop) decides something.
        for (name, _) in super::SAMPLE_OFFERS.iter().filter(|(n, _)| !n.starts_with("storm")) {
            let id = name.trim_end_matches(".yaml");
            assert!(triggers.keys().any(|k| k.starts_with(&format!("{id}/"))), "{id} never decided: {triggers:?}");
        }
        assert!(triggers.keys().any(|k| k.ends_with("/cascade")), "no cascade: {triggers:?}");
        for key in [
            (Channel::Push, Outcome::Treated),
            (Channel::Stories, Outcome::Treated),
            (Channel::Push, Outcome::Capped),
            (Channel::Unspecified, Outcome::HoldoutGlobal),
            (Channel::Push, Outcome::HoldoutCampaign),
            (Channel::Push, Outcome::Unreachable),
            (Channel::Push, Outcome::Deferred),
            (Channel::Unspecified, Outcome::Ineligible),
        ] {
            assert!(seen.get(&key).is_some_and(|n| *n > 0), "no {key:?} in {seen:?}");
        }
    }
}
