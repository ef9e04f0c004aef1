//! Event builders and output helpers shared by cvm's tests (engine,
//! end-to-end) and benchmarks, so a scenario reads the same everywhere:
//! `add_to_cart("a1", "c1", HOUR)` is a sushi cart of customer `c1` at 01:00.
//! Every builder takes its event time explicitly.

use cvm_engine::{
    policy::{QuietHours, TimeOfDay},
    EngineConfig, Event, InputLimits, Outbound,
};
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Decision, Offer, Outcome, Purchase, PurchaseLine};

pub use cvm_engine::time::{DAY_MS as DAY, HOUR_MS as HOUR, MINUTE_MS as MINUTE};

/// The default configuration without quiet hours and campaign holdouts, for
/// tests about other things (their clocks start at the epoch, so events
/// from 1970 are accepted).
pub fn config(global_control_percent: f64) -> EngineConfig {
    let mut c = EngineConfig { global_control_percent, default_holdout_percent: 0.0, ..Default::default() };
    c.contact_policy.quiet_hours = QuietHours { from: TimeOfDay::new(0, 0), to: TimeOfDay::new(0, 0) };
    c.input = epoch_input();
    c
}

/// Input limits for scripted clocks that start at the epoch: any event
/// time from 1970 on, up to ten years from the partition's clock.
pub fn epoch_input() -> InputLimits {
    InputLimits {
        earliest_timestamp_ms: 0,
        max_event_age: std::time::Duration::from_secs(3_650 * 86_400),
        ..InputLimits::default()
    }
}

/// Push consent with a push token, granted at the epoch.
pub fn consent(customer: &str) -> Event {
    consent_at(customer, 0)
}

/// Push consent with a push token, granted at `at`.
pub fn consent_at(customer: &str, at: i64) -> Event {
    Event::Consent(Consent {
        event_id: format!("consent-{customer}"),
        customer_id: customer.into(),
        timestamp_ms: at,
        channel: Channel::Push as i32,
        granted: true,
        push_token_present: true,
        ..Default::default()
    })
}

/// An app event of `kind` on a product of `category` (sku `<category>-1`).
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

/// A sushi item added to the cart.
pub fn add_to_cart(id: &str, customer: &str, at: i64) -> Event {
    app(id, customer, at, AppEventKind::AddToCart, "sushi")
}

/// The push of `offer_id` opened.
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

/// One item of `category` at 9.00 (cost 4.00).
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

/// (channel, outcome) of every decision among `emits`.
pub fn decisions(emits: &[Outbound]) -> Vec<(Channel, Outcome)> {
    decision_list(emits).iter().map(|d| (d.channel(), d.outcome())).collect()
}

/// Every decision among `emits`.
pub fn decision_list(emits: &[Outbound]) -> Vec<&Decision> {
    emits.iter().filter_map(|e| if let Outbound::Decision(d) = e { Some(d) } else { None }).collect()
}

/// Every offer among `emits`.
pub fn offers(emits: &[Outbound]) -> Vec<&Offer> {
    emits.iter().filter_map(|e| if let Outbound::Offer(o) = e { Some(o) } else { None }).collect()
}
