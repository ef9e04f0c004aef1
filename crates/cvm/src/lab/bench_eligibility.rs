//! `cvm bench-eligibility`: what offer eligibility costs on this machine.
//!
//! Two figures, against the targets of the offers design: one compiled
//! four-clause CEL rule evaluated against a prepared feature vector
//! (target ≤ 100 ns), and one event against a catalog of 1,000 active offers
//! of which 50 share the event's trigger (target ≤ 5 µs): feature
//! computation, trigger index lookup, filters and eligibility of the 50.
//! The full decision for that event (scoring, ranking, holdouts, caps,
//! rendering, state) is printed beside it for context.

use std::{hint::black_box, time::Instant};

use cvm_engine::{
    features::{schema, EventFacts, Features},
    offers::EventKind,
    Catalog, Engine, EngineConfig, Event, MemoryState, OfferDefinition, Profile,
};
use cvm_expr::compile_predicate;
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Purchase, PurchaseLine};

use cvm_engine::time::DAY_MS;
pub(crate) const NOW: i64 = 1_793_491_200_000;
const KINDS: [&str; 6] = ["purchase", "app_open", "product_view", "search", "story_view", "remove_from_cart"];

/// The rule measured alone: four clauses over numbers, a function and a flag.
pub const RULE: &str =
    r#"days_since_last_purchase > 3 && orders_90d >= 2 && category_share("sushi") > 0.2 && push_reachable"#;

fn offer(i: usize, kind: &str) -> OfferDefinition {
    let rules = [
        RULE.to_owned(),
        format!("orders_90d >= {} && revenue_90d > {}.0", i % 5, i % 40),
        format!(r#"category_share("{}") >= 0.1 || in_cart("sku-{i}")"#, ["sushi", "wine", "meat"][i % 3]),
        "has_app && local_hour >= 8 && local_hour < 21 && contacts_7d < 3".to_owned(),
    ];
    let doc = format!(
        "id: o{i:04}\nversion: 1\ncampaign_id: c{}\ntrigger: {{ kind: event, event: {kind}, filter: 'event.category != \"x{i}\"' }}\n\
         eligibility: '{}'\nchannels: {{ push: {{ title: t, body: b }}, stories: {{ template: s, call_to_action: go }} }}\n\
         economics: {{ margin_per_redemption_minor: {} }}\n",
        i % 20,
        rules[(i / 20 + i) % rules.len()],
        300 + i
    );
    OfferDefinition::parse("bench", doc.as_bytes()).expect("bench offers compile")
}

pub(crate) fn profile() -> Profile {
    let mut p = Profile::default();
    for d in 0..8 {
        p.apply_purchase(&Purchase {
            event_id: format!("p{d}"),
            customer_id: "c".into(),
            timestamp_ms: NOW - (5 + d * 9) * DAY_MS,
            lines: vec![PurchaseLine {
                sku: "sku-1".into(),
                category: ["sushi", "wine", "meat"][d as usize % 3].into(),
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
    p.apply_app_event(&AppEvent {
        kind: AppEventKind::AppOpen as i32,
        timestamp_ms: NOW - DAY_MS,
        ..Default::default()
    });
    p
}

pub(crate) fn per_iteration(iterations: u32, mut f: impl FnMut(u32)) -> f64 {
    let warm = (iterations / 10).max(1);
    for i in 0..warm {
        f(i);
    }
    let started = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// Runs the benchmark and prints its figures.
pub fn eligibility(iterations: u32) {
    let profile = profile();
    let rule = compile_predicate(RULE, schema()).expect("the bench rule compiles");
    let features = Features::compute(&profile, EventFacts::default(), NOW);
    assert!(rule.eval(&features), "the bench rule should hold, so every clause is evaluated");
    let rule_ns = per_iteration(iterations, |_| {
        black_box(rule.eval(black_box(&features)));
    });
    let features_ns = per_iteration(iterations / 10, |_| {
        black_box(Features::compute(black_box(&profile), EventFacts::default(), NOW));
    });

    // 1,000 active offers; 50 triggered by add_to_cart, the rest spread over other kinds.
    let defs: Vec<OfferDefinition> = (0..1_000)
        .map(|i| if i % 20 == 0 { offer(i, "add_to_cart") } else { offer(i, KINDS[i % KINDS.len()]) })
        .collect();
    let catalog = Catalog::new(defs);
    let add = Event::App(AppEvent {
        event_id: "bench".into(),
        customer_id: "c".into(),
        timestamp_ms: NOW,
        kind: AppEventKind::AddToCart as i32,
        sku: "sku-9".into(),
        category: "sushi".into(),
        ..Default::default()
    });
    assert_eq!(catalog.triggered_by(EventKind::AddToCart, &EventFacts::of(&add)).len(), 50);
    let mut eligible = 0;
    let event_ns = per_iteration(iterations / 20, |_| {
        let f = Features::compute(&profile, EventFacts::of(&add), NOW);
        eligible = catalog
            .triggered_by(EventKind::AddToCart, &EventFacts::of(&add))
            .into_iter()
            .filter(|d| d.is_live(NOW) && d.passes_filter(&f) && d.eligible(&f))
            .count();
        black_box(eligible);
    });

    let engine = Engine::new(EngineConfig { global_control_percent: 0.0, ..Default::default() }, catalog);
    let mut state = MemoryState::default();
    cvm_engine::StateTxn::put_profile(&mut state, 0, "c", profile.clone()).expect("memory state");
    let decide_ns = per_iteration(iterations / 100, |i| {
        let mut s = state.clone();
        let event = match &add {
            Event::App(a) => Event::App(AppEvent { event_id: format!("e{i}"), ..a.clone() }),
            other => other.clone(),
        };
        black_box(engine.process(&mut s, 0, &event, NOW).expect("memory state"));
    });

    println!("eligibility benchmark ({iterations} iterations)");
    println!("  rule `{RULE}`");
    println!("  one compiled rule, prepared features     {rule_ns:>9.1} ns   (target <= 100 ns)");
    println!("  feature vector computation               {features_ns:>9.1} ns");
    println!(
        "  event vs 1,000 offers (50 triggered)     {:>9.2} us   (target <= 5 us; {eligible} eligible)",
        event_ns / 1000.0
    );
    println!(
        "  full decision for that event             {:>9.2} us   (scoring, caps, render, state copy)",
        decide_ns / 1000.0
    );
}
