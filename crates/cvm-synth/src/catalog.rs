//! A synthetic offer catalog of any size, for benchmarks and load tests:
//! "thousands of rules for millions of customers" needs thousands of rules.
//!
//! The mix follows what large retailers run: most offers are product
//! coupons on a few triggers (a product view or cart add of one SKU), a
//! smaller share are category offers (a purchase with a line in the
//! category, a view or cart add in it, an abandoned cart of it), and a few
//! need no particular event (app opens, story views; one in a thousand is
//! for lapsed customers).
//! Eligibility rules are drawn from segment shapes (frequency, value,
//! recency, category affinity, reachability), so some customers qualify and
//! most do not. Categories and SKUs are the [`Retailer`](crate::Retailer)'s,
//! so a generated catalog triggers on its events.

use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{CATEGORIES, SKUS_PER_CATEGORY};

/// `count` offer documents (YAML) with their ids, the same for the same seed.
pub fn generated_offers(count: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count).map(|i| offer(&mut rng, i)).collect()
}

/// The name of a SKU of category `cat`, as the retailer writes it.
pub fn sku_name(cat: usize, n: u32) -> String {
    format!("{}-{n:03}", CATEGORIES[cat].name)
}

/// Segment rules an offer's eligibility is drawn from.
fn eligibility(rng: &mut SmallRng, category: &str) -> String {
    let orders = rng.random_range(1..6);
    let revenue = rng.random_range(2..40) * 10;
    let days = rng.random_range(7..90);
    let share = f64::from(rng.random_range(1..6u32)) / 10.0;
    match rng.random_range(0..6) {
        0 => format!("orders_90d >= {orders} && push_reachable"),
        1 => format!("revenue_90d > {revenue}.0 && has_app"),
        2 => format!("days_since_last_purchase > {days} && has_purchased"),
        3 => format!("category_share(\"{category}\") >= {share} && contacts_7d < 3"),
        4 => format!("favourite_category == \"{category}\" && orders_365d >= {orders}"),
        _ => format!("has_app && local_hour >= 8 && local_hour < 21 && avg_basket_value_90d > {revenue}.0"),
    }
}

fn offer(rng: &mut SmallRng, i: usize) -> (String, String) {
    let cat = rng.random_range(0..CATEGORIES.len());
    let category = CATEGORIES[cat].name;
    let sku = sku_name(cat, rng.random_range(0..SKUS_PER_CATEGORY));
    let view_or_cart = ["product_view", "add_to_cart"][rng.random_range(0..2)];
    let roll = if i % 1000 == 999 { 100 } else { rng.random_range(0..100) };
    let trigger = match roll {
        0..72 => format!("{{ kind: event, event: {view_or_cart}, filter: 'event.sku == \"{sku}\"' }}"),
        72..84 => format!("{{ kind: event, event: purchase, filter: 'basket_has_category(\"{category}\")' }}"),
        84..94 => format!("{{ kind: event, event: {view_or_cart}, filter: 'event.category == \"{category}\"' }}"),
        94 => format!(
            "{{ kind: delayed, event: add_to_cart, filter: 'event.category == \"{category}\"', after: 2h, cancel_on: purchase }}"
        ),
        95..98 => "{ kind: event, event: app_open }".to_owned(),
        98..100 => "{ kind: event, event: story_view }".to_owned(),
        // One in a thousand: every purchase sets a timer per such offer.
        _ => format!("{{ kind: inactivity, days: {} }}", rng.random_range(20..90)),
    };
    let id = format!("gen-{i:05}");
    let percent = [5, 10, 15, 20][rng.random_range(0..4)];
    let doc = format!(
        "id: {id}\nversion: 1\ncampaign_id: gen-campaign-{campaign}\ntrigger: {trigger}\neligibility: '{eligibility}'\n\
         channels:\n  push: {{ title: \"{category} for you\", body: \"{{{{discount}}}} off {category} this week\", deep_link: \"app://category/{category}\" }}\n  \
         stories: {{ template: gen-v1, title: \"{category}\", call_to_action: \"{{{{discount}}}} off\" }}\n\
         reward: {{ percent: {percent} }}\neconomics: {{ margin_per_redemption_minor: {margin}, contact_cost_minor: 1 }}\n\
         category: {category}\npriority: {priority}\nttl: 3d\n",
        campaign = i % 50,
        eligibility = eligibility(rng, category),
        margin = rng.random_range(100..1500),
        priority = rng.random_range(0..50),
    );
    (id, doc)
}

#[cfg(test)]
mod tests {
    use cvm_engine::{offers::Trigger, OfferDefinition};

    use super::generated_offers;

    #[test]
    fn generated_offers_compile_and_follow_the_mix() {
        let offers = generated_offers(2_000, 3);
        assert_eq!(offers, generated_offers(2_000, 3), "seeded");
        let defs: Vec<OfferDefinition> = offers
            .iter()
            .map(|(id, doc)| OfferDefinition::parse(id, doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}\n{e}")))
            .collect();
        let share = |f: &dyn Fn(&OfferDefinition) -> bool| defs.iter().filter(|d| f(d)).count() as f64 / 2_000.0;
        let filter = |d: &OfferDefinition| match &d.doc.trigger {
            Trigger::Event { filter, .. } | Trigger::Delayed { filter, .. } => filter.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let product = share(&|d| filter(d).starts_with("event.sku"));
        assert!((0.68..0.76).contains(&product), "product coupons: {product}");
        let inactivity = share(&|d| matches!(d.doc.trigger, Trigger::Inactivity { .. }));
        assert!((0.0005..0.0015).contains(&inactivity), "lapsed offers: {inactivity}");
    }
}
