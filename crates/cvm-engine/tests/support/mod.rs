//! Event builders and output helpers shared by the engine's integration tests.
#![allow(dead_code, unreachable_pub, unused_imports)]

use cvm_engine::{
    policy::{QuietHours, TimeOfDay},
    Emit, EngineConfig, Event, MemoryState,
};
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Decision, Offer, Outcome, Purchase, PurchaseLine};

pub use cvm_engine::time::{DAY_MS as DAY, HOUR_MS as HOUR};

/// The default configuration without quiet hours and campaign holdouts, for
/// tests about other things (their clocks start at midnight UTC).
pub fn config(global_control_percent: f64) -> EngineConfig {
    let mut c = EngineConfig { global_control_percent, default_holdout_percent: 0.0, ..Default::default() };
    c.contact_policy.quiet_hours = QuietHours { from: TimeOfDay::new(0, 0), to: TimeOfDay::new(0, 0) };
    c
}

pub fn consent(customer: &str) -> Event {
    Event::Consent(Consent {
        event_id: format!("consent-{customer}"),
        customer_id: customer.into(),
        channel: Channel::Push as i32,
        granted: true,
        push_token_present: true,
        ..Default::default()
    })
}

pub fn app(id: &str, customer: &str, at: i64, kind: AppEventKind, category: &str) -> Event {
    Event::App(AppEvent {
        event_id: id.into(),
        customer_id: customer.into(),
        timestamp_ms: at,
        kind: kind as i32,
        sku: format!("{category}-1"),
        category: category.into(),
        ..Default::default()
    })
}

pub fn add_to_cart(id: &str, customer: &str, at: i64) -> Event {
    app(id, customer, at, AppEventKind::AddToCart, "sushi")
}

pub fn push_open(id: &str, customer: &str, at: i64, offer_id: &str) -> Event {
    Event::App(AppEvent {
        event_id: id.into(),
        customer_id: customer.into(),
        timestamp_ms: at,
        kind: AppEventKind::PushOpen as i32,
        offer_id: offer_id.into(),
        ..Default::default()
    })
}

pub fn purchase(id: &str, customer: &str, at: i64, category: &str) -> Event {
    Event::Purchase(Purchase {
        event_id: id.into(),
        customer_id: customer.into(),
        timestamp_ms: at,
        lines: vec![PurchaseLine {
            sku: format!("{category}-1"),
            category: category.into(),
            quantity: 1,
            unit_price_minor: 900,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    })
}

pub fn decisions(emits: &[Emit]) -> Vec<(Channel, Outcome)> {
    decision_list(emits).iter().map(|d| (d.channel(), d.outcome())).collect()
}

pub fn decision_list(emits: &[Emit]) -> Vec<&Decision> {
    emits.iter().filter_map(|e| if let Emit::Decision(d) = e { Some(d) } else { None }).collect()
}

pub fn offers(emits: &[Emit]) -> Vec<&Offer> {
    emits.iter().filter_map(|e| if let Emit::Offer(o) = e { Some(o) } else { None }).collect()
}

/// Fires every timer of partition 0 due by `now`, through the driver the
/// ingest loop uses (event time: each at its own due time).
pub fn fire_due(engine: &cvm_engine::Engine, state: &mut MemoryState, now: i64) -> Vec<Emit> {
    let mut out = cvm_engine::Output::default();
    cvm_engine::Driver::replay(engine.clone()).fire_through(state, 0, now, &mut out).unwrap();
    out.emits
}
