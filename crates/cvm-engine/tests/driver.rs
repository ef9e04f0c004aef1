//! The driver's clock: timers fire by the partition's watermark over its
//! inputs, so an offer is not sent because one topic is read ahead of the
//! other; replays through the driver are deterministic.

mod support;

use cvm_engine::{
    driver::{Clock, ScanPacing},
    Catalog, Driver, DriverConfig, Engine, Event, MemoryState, OfferDefinition, Output, Source,
};
use cvm_proto::v1::{AppEventKind, Channel, Outcome};
use support::*;

const ABANDONED_CART: &str = r#"
id: abandoned-cart
version: 1
campaign_id: cart
trigger: { kind: delayed, event: add_to_cart, after: 2h, cancel_on: purchase }
channels:
  push: { title: "Still hungry?", body: "{{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 500 }
"#;

const PURCHASES: Source = Source::Input(0);
const APP: Source = Source::Input(1);
const IDLE_MS: i64 = 60_000;

fn driver(inputs: usize) -> Driver {
    let def = OfferDefinition::parse("abandoned-cart", ABANDONED_CART.as_bytes()).unwrap();
    let engine = Engine::new(config(0.0), Catalog::new([def]));
    Driver::new(
        engine,
        DriverConfig {
            clock: Clock::EventTime,
            inputs,
            idle_timeout_ms: IDLE_MS,
            pacing: ScanPacing::Unlimited,
            timers_per_batch: usize::MAX,
            real_wall_clock: false,
        },
    )
}

/// Applies `events` (source, event, wall time) in order; returns the push decisions.
fn run(driver: &mut Driver, events: &[(Source, Event, i64)]) -> Vec<(String, Outcome)> {
    let mut state = MemoryState::default();
    let mut out = Output::default();
    for (source, event, wall) in events {
        driver.apply(&mut state, 0, *source, event, *wall, &mut out).unwrap();
    }
    decision_list(&out.emits)
        .into_iter()
        .filter(|d| d.channel() == Channel::Push)
        .map(|d| (d.customer_id.clone(), d.outcome()))
        .collect()
}

/// The app topic is read up to 10:00 before the purchases topic reaches
/// 01:30, when the customer bought what was in the cart at 01:00.
fn app_topic_ahead() -> Vec<(Source, Event, i64)> {
    vec![
        (APP, consent("c"), 0),
        (APP, add_to_cart("cart", "c", HOUR), 1),
        (APP, app("open", "c", 10 * HOUR, AppEventKind::AppOpen, ""), 2),
        (PURCHASES, purchase("bought", "c", HOUR + HOUR / 2, "sushi"), 3),
        (PURCHASES, purchase("later", "other", 11 * HOUR, "wine"), 4),
    ]
}

#[test]
fn a_timer_waits_for_the_slower_input_so_a_purchase_read_late_still_cancels_it() {
    assert_eq!(run(&mut driver(2), &app_topic_ahead()), [], "the purchase at 01:30 cancelled the 03:00 push");
    // With one clock for both topics (the latest time read), the push fires
    // at 10:00, before the purchase is read: the defect the watermark fixes.
    assert_eq!(run(&mut driver(1), &app_topic_ahead()), [("c".to_owned(), Outcome::Treated)]);
}

#[test]
fn a_quiet_input_stops_holding_time_back_after_the_idle_timeout() {
    let events = [
        (APP, consent("c"), 0),
        (APP, add_to_cart("cart", "c", HOUR), 1),
        (APP, app("open", "c", 10 * HOUR, AppEventKind::AppOpen, ""), 2),
    ];
    assert_eq!(run(&mut driver(2), &events), [], "purchases never heard from: wait");
    let mut later = events.to_vec();
    later.push((APP, app("open2", "c", 11 * HOUR, AppEventKind::AppOpen, ""), IDLE_MS + 10));
    assert_eq!(run(&mut driver(2), &later), [("c".to_owned(), Outcome::Treated)], "purchases idle: time moves");
}

#[test]
fn replays_are_deterministic_and_each_timer_fires_once() {
    let events: Vec<_> = (0..40)
        .flat_map(|i| {
            let c = format!("c{i}");
            let at = i64::from(i) * HOUR / 4;
            [(APP, consent(&c), at), (APP, add_to_cart(&format!("a{i}"), &c, at), at)]
        })
        .collect();
    let first = run(&mut driver(1), &events);
    assert_eq!(first, run(&mut driver(1), &events));
    let mut ids: Vec<&String> = first.iter().map(|(c, _)| c).collect();
    ids.dedup();
    assert_eq!(ids.len(), first.len(), "a customer was decided twice: {first:?}");
    assert!(first.len() >= 30, "timers due before the last event fired: {}", first.len());
}
