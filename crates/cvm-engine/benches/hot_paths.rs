//! Micro-benchmarks of the decision core's hot paths (`cargo bench -p
//! cvm-engine`): a profile's encoding both ways, its feature vector, one compiled
//! eligibility rule, the candidates of an event in a large catalog, and one
//! whole decision (features, eligibility, scoring, caps, holdouts,
//! rendering, state) against in-memory state. Each prints the mean time per
//! call over a fixed number of calls after a warm-up.

use cvm_engine::{
    features::{schema, EventFacts, Features},
    Catalog, Engine, Event, MemoryState, OfferDefinition, Profile, StateTxn,
};
use cvm_expr::compile_predicate;
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Purchase, PurchaseLine};
use cvm_testkit::{add_to_cart, config, DAY, HOUR};
use std::{
    hint::black_box,
    time::{Duration, Instant},
};

const NOW: i64 = 400 * DAY + 10 * HOUR;
const CATEGORIES: [&str; 6] = ["sushi", "wine", "meat", "bakery", "dairy", "beauty"];

/// A customer of a year: weekly purchases over categories, app use, push consent.
fn profile() -> Profile {
    let mut p = Profile::default();
    for week in 0..52 {
        let category = CATEGORIES[week % CATEGORIES.len()];
        p.apply_purchase(&Purchase {
            timestamp_ms: NOW - (week as i64 * 7 + 1) * DAY,
            lines: vec![PurchaseLine {
                sku: format!("{category}-{week}"),
                category: category.into(),
                quantity: 2,
                unit_price_minor: 1200,
                unit_cost_minor: 700,
            }],
            ..Default::default()
        });
    }
    p.apply_consent(&Consent {
        channel: Channel::Push as i32,
        granted: true,
        push_token_present: true,
        ..Default::default()
    });
    p.apply_app_event(&AppEvent { kind: AppEventKind::AppOpen as i32, timestamp_ms: NOW - HOUR, ..Default::default() });
    p
}

fn offer(id: &str, trigger: &str, eligibility: &str) -> OfferDefinition {
    let doc = format!(
        "id: {id}\nversion: 1\ncampaign_id: bench\ntrigger: {trigger}\neligibility: '{eligibility}'\n\
         channels: {{ push: {{ title: \"{{{{event.category}}}} for you\", body: \"{{{{discount}}}} off\" }}, stories: {{ template: s, call_to_action: go }} }}\n\
         reward: {{ percent: 10 }}\neconomics: {{ margin_per_redemption_minor: 500, contact_cost_minor: 1 }}\n\
         contact_policy: {{ caps: [{{ max: 2, window: 7d }}] }}\n"
    );
    OfferDefinition::parse(id, doc.as_bytes()).expect("bench offers compile")
}

/// Times `f` over `calls` calls (after a tenth as many to warm up) and prints the mean.
fn bench<T>(name: &str, calls: u32, mut f: impl FnMut() -> T) {
    for _ in 0..calls / 10 {
        black_box(f());
    }
    let started = Instant::now();
    for _ in 0..calls {
        black_box(f());
    }
    let per_call = started.elapsed() / calls;
    println!("{name:<52} {:>10.2} µs", per_call.as_secs_f64() * 1e6);
}

fn encoding() {
    let p = profile();
    let bytes = p.encode();
    bench("profile/encode", 200_000, || black_box(&p).encode());
    bench("profile/decode", 200_000, || Profile::decode(black_box(&bytes)).unwrap());
}

fn features_and_rules() {
    let p = profile();
    bench("features/compute", 200_000, || Features::compute(black_box(&p), EventFacts::default(), NOW).event());
    let rule = compile_predicate(
        r#"days_since_last_purchase > 3 && orders_90d >= 2 && category_share("sushi") > 0.1 && push_reachable"#,
        schema(),
    )
    .unwrap();
    let f = Features::compute(&p, EventFacts::default(), NOW);
    bench("eligibility/four-clause rule", 5_000_000, || rule.eval(black_box(&f)));
}

fn candidates() {
    // 10,000 product-view offers, one per product of 10 categories, and 100 per category.
    let defs = (0..10_000).map(|i| {
        let category = CATEGORIES[i % CATEGORIES.len()];
        let filter = if i % 100 == 0 {
            format!(r#"event.category == "{category}""#)
        } else {
            format!(r#"event.sku == "{category}-{i}""#)
        };
        offer(&format!("o{i:05}"), &format!("{{ kind: event, event: product_view, filter: '{filter}' }}"), "has_app")
    });
    let catalog = Catalog::new(defs);
    let view = Event::App(AppEvent {
        kind: AppEventKind::ProductView as i32,
        category: "wine".into(),
        sku: "wine-7".into(),
        ..Default::default()
    });
    let facts = EventFacts::of(&view);
    let kind = facts.kind.unwrap();
    bench("catalog/candidates of a view among 10,000 offers", 1_000_000, || {
        catalog.triggered_by(kind, black_box(&facts)).len()
    });
}

fn decision() {
    let catalog = Catalog::new([
        offer("cart", "{ kind: event, event: add_to_cart }", "cart_lines >= 1 && push_reachable"),
        offer("sushi", "{ kind: event, event: add_to_cart, filter: 'event.category == \"sushi\"' }", "orders_90d >= 1"),
        offer("loyal", "{ kind: event, event: add_to_cart }", "lifetime_orders >= 10 && contacts_7d < 3"),
    ]);
    let engine = Engine::new(config(0.0), catalog);
    let mut state = MemoryState::default();
    state.put_profile(0, "c", profile()).unwrap();
    // Each call decides a new event on a fresh copy of the state; only the decision is timed.
    let (mut deciding, calls) = (Duration::ZERO, 20_000u32);
    for n in 0..calls {
        let mut s = state.clone();
        let event = add_to_cart(&format!("e{n}"), "c", NOW);
        let t = Instant::now();
        black_box(engine.process(&mut s, 0, &event, NOW).unwrap());
        deciding += t.elapsed();
    }
    let per_call = (deciding / calls).as_secs_f64() * 1e6;
    println!("{:<52} {per_call:>10.2} µs", "decision/add to cart, 3 offers, in-memory state");
}

fn main() {
    encoding();
    features_and_rules();
    candidates();
    decision();
}
