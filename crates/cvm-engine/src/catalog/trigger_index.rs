//! Offers by trigger, and within a trigger by what their filter needs of the
//! event, so that an event only looks at the offers it can trigger.
//!
//! A large catalog is mostly product coupons and category offers
//! (`event.sku == "wine-017"`, `basket_has_category("wine")`): with 30,000
//! offers a product view would otherwise test thousands of filters to find
//! the dozen about its product. [`Predicate::required`] tells which values
//! a filter cannot hold without; the offer is listed under each of them, and
//! under "any" when it needs none. The filter is still evaluated on every
//! candidate: the index only leaves out offers that could not pass.

use std::{collections::HashMap, sync::Arc};

use cvm_expr::{Predicate, Requirement};

use crate::{
    features::{EventFacts, Func, Text},
    offers::OfferDefinition,
};

/// An offer and its position in id order (candidates keep that order).
type Ranked = (u32, Arc<OfferDefinition>);

/// The event values a filter can need, narrowest first.
const KEYS: [Requirement; 3] = [
    Requirement::Text(Text::EVENT_SKU as u16),
    Requirement::Text(Text::EVENT_CATEGORY as u16),
    Requirement::Call(Func::BASKET_HAS_CATEGORY as u16),
];

/// The offers one event kind triggers (at once, or starting a wait).
#[derive(Debug, Clone, Default)]
pub(crate) struct TriggerIndex {
    /// Offers whose filter needs no particular product or category.
    any: Vec<Ranked>,
    /// By requirement (an entry of [`KEYS`]) and the value it needs.
    by_value: [HashMap<Box<str>, Vec<Ranked>>; KEYS.len()],
}

impl TriggerIndex {
    /// Lists `offer`, whose trigger filter is `filter`; offers must come in id order.
    pub(crate) fn add(&mut self, rank: u32, offer: Arc<OfferDefinition>, filter: Option<&Predicate>) {
        let needs = filter.and_then(|f| {
            KEYS.iter().enumerate().filter_map(|(k, key)| Some((k, f.required(*key)?))).min_by_key(|(_, v)| v.len())
        });
        match needs {
            None => self.any.push((rank, offer)),
            Some((k, values)) => {
                for v in values {
                    self.by_value[k].entry(v.into()).or_default().push((rank, offer.clone()));
                }
            }
        }
    }

    /// Offers an event with `facts` may trigger, in id order; their filters
    /// are still to be evaluated.
    pub(crate) fn candidates(&self, facts: &EventFacts<'_>) -> Vec<&Arc<OfferDefinition>> {
        let [by_sku, by_category, by_basket] = &self.by_value;
        let mut lists = vec![self.any.as_slice()];
        lists.extend(by_sku.get(facts.sku).map(Vec::as_slice));
        lists.extend(by_category.get(facts.category).map(Vec::as_slice));
        if let (false, Some(purchase)) = (by_basket.is_empty(), facts.purchase) {
            let mut seen: Vec<&str> = Vec::new();
            for line in &purchase.lines {
                if !seen.contains(&line.category.as_str()) {
                    seen.push(&line.category);
                    lists.extend(by_basket.get(line.category.as_str()).map(Vec::as_slice));
                }
            }
        }
        if let [only] = lists.as_slice() {
            return only.iter().map(|(_, d)| d).collect();
        }
        let mut all: Vec<&Ranked> = lists.into_iter().flatten().collect();
        all.sort_unstable_by_key(|(rank, _)| *rank);
        all.dedup_by_key(|(rank, _)| *rank);
        all.into_iter().map(|(_, d)| d).collect()
    }
}

#[cfg(test)]
mod tests {
    use cvm_proto::v1::{AppEvent, AppEventKind, Purchase, PurchaseLine};
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use crate::{
        catalog::Catalog,
        events::{Event, EventKind},
        features::{EventFacts, Features},
        OfferDefinition, Profile,
    };

    const FILTERS: [&str; 9] = [
        "",
        r#"event.sku == "s1""#,
        r#"event.sku == "s2" && cart_lines >= 0"#,
        r#"event.category == "a""#,
        r#"event.category in ["a", "b"]"#,
        r#"basket_has_category("b") || basket_has_category("c")"#,
        r#"event.category == "a" || event.sku == "s3""#,
        r#"event.category != "a""#,
        r#"basket_has_category("a") && event.category == "c""#,
    ];

    fn offer(i: usize, kind: &str, filter: &str) -> OfferDefinition {
        let filter = if filter.is_empty() { String::new() } else { format!(", filter: '{filter}'") };
        let doc = format!(
            "id: o{i:03}\nversion: 1\ncampaign_id: c\ntrigger: {{ kind: event, event: {kind}{filter} }}\n\
             channels: {{ push: {{ title: t, body: b }} }}\neconomics: {{ margin_per_redemption_minor: 1 }}\n"
        );
        OfferDefinition::parse("test", doc.as_bytes()).unwrap()
    }

    /// Whatever the filters, an event's candidates that pass their filter
    /// are exactly the offers of its kind that do, in id order.
    #[test]
    fn candidates_leave_out_only_offers_whose_filter_cannot_pass() {
        let kinds = ["purchase", "product_view"];
        let catalog = Catalog::new((0..90).map(|i| offer(i, kinds[i % 2], FILTERS[i / 2 % FILTERS.len()])));
        let all = catalog.all();
        let mut rng = SmallRng::seed_from_u64(5);
        let value = |rng: &mut SmallRng, prefix: &str| format!("{prefix}{}", rng.random_range(0..4));
        let (mut pruned, mut passing) = (0, 0);
        for _ in 0..400 {
            let event = if rng.random_bool(0.5) {
                let lines = (0..rng.random_range(0..4))
                    .map(|_| PurchaseLine {
                        sku: value(&mut rng, "s"),
                        category: ["a", "b", "c", "d"][rng.random_range(0..4)].into(),
                        quantity: 1,
                        unit_price_minor: rng.random_range(1..100),
                        unit_cost_minor: 0,
                    })
                    .collect();
                Event::Purchase(Purchase { lines, ..Default::default() })
            } else {
                Event::App(AppEvent {
                    kind: AppEventKind::ProductView as i32,
                    sku: value(&mut rng, "s"),
                    category: ["a", "b", "c", "d"][rng.random_range(0..4)].into(),
                    ..Default::default()
                })
            };
            let facts = EventFacts::of(&event);
            let kind = facts.kind.unwrap();
            let profile = Profile::default();
            let features = Features::compute(&profile, facts, 0);
            let candidates = catalog.triggered_by(kind, &facts);
            let ids = |ds: Vec<&OfferDefinition>| ds.iter().map(|d| d.id().to_owned()).collect::<Vec<_>>();
            let expected = ids(all
                .iter()
                .copied()
                .filter(|d| matches!(&d.doc.trigger, crate::offers::Trigger::Event { event, .. } if *event == kind))
                .filter(|d| d.passes_filter(&features))
                .collect());
            let got = ids(candidates.iter().map(|d| d.as_ref()).filter(|d| d.passes_filter(&features)).collect());
            assert_eq!(got, expected, "{event:?}");
            pruned += 45 - candidates.len();
            passing += expected.len();
            assert!(matches!(kind, EventKind::Purchase | EventKind::ProductView));
        }
        assert!(pruned > 400 * 20, "the index leaves most offers out: {pruned}");
        assert!(passing > 400, "events trigger offers: {passing}");
    }
}
