//! Golden decision tests: scripted events in, the exact decisions out.

mod support;

use cvm_engine::{
    offers::OfferDefinition, Catalog, Engine, EngineConfig, Event, EventResult, MemoryState, OfferDocument, Outbound,
    StateTxn,
};
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Identify, Outcome, Purchase, PurchaseLine};
use support::*;

const OFFER: &str = r#"
id: cart-sushi
version: 3
campaign_id: cart
trigger: { kind: event, event: add_to_cart, filter: 'event.category == "sushi"' }
eligibility: has_app
channels:
  push: { title: "Your {{favourite_category}} is waiting", body: "{{discount}} off" }
  stories: { template: cart-v1, call_to_action: "{{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 500 }
category: sushi
"#;

fn offer() -> OfferDefinition {
    OfferDefinition::parse("cart-sushi", OFFER.as_bytes()).unwrap()
}

fn with_doc(change: impl FnOnce(&mut OfferDocument)) -> OfferDefinition {
    let mut doc = offer().doc;
    change(&mut doc);
    OfferDefinition::compile(doc).unwrap()
}

fn engine(global_control_percent: f64) -> Engine {
    Engine::new(config(global_control_percent), Catalog::new([offer()]))
}

/// A customer id outside (or inside) the default global control group.
fn customer(in_control: bool) -> String {
    let e = engine(5.0);
    (0..).map(|i| format!("c{i}")).find(|c| e.in_global_control(c) == in_control).unwrap()
}

#[test]
fn cart_add_sends_push_and_story_then_caps_the_second_push() {
    let e = engine(5.0);
    let c = customer(false);
    let mut s = MemoryState::default();
    apply(&e, &mut s, &consent(&c), 0);
    let bought_sushi = Event::Purchase(Purchase {
        event_id: "p0".into(),
        customer_id: c.clone(),
        lines: vec![PurchaseLine {
            sku: "nigiri".into(),
            category: "sushi".into(),
            quantity: 1,
            unit_price_minor: 900,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    });
    assert!(apply(&e, &mut s, &bought_sushi, 0).emits.is_empty(), "no offer is triggered by purchases");

    let first = apply(&e, &mut s, &add_to_cart("a1", &c, HOUR), HOUR);
    assert_eq!(decisions(&first.emits), vec![(Channel::Push, Outcome::Treated), (Channel::Stories, Outcome::Treated)]);
    let sent = offers(&first.emits);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].content.as_ref().unwrap().title, "Your sushi is waiting");
    assert_eq!(sent[0].content.as_ref().unwrap().body, "10% off");
    assert_eq!(sent[1].content.as_ref().unwrap().story_template_id, "cart-v1");
    assert_eq!(sent[0].offer_version, 3);
    assert_eq!(sent[0].expires_at_ms, HOUR + 48 * HOUR);

    // Two hours later: push is capped (1 a day), stories still have room (5 a day).
    let second = apply(&e, &mut s, &add_to_cart("a2", &c, 3 * HOUR), 3 * HOUR);
    assert_eq!(decisions(&second.emits), vec![(Channel::Push, Outcome::Capped), (Channel::Stories, Outcome::Treated)]);
    assert!(offers(&second.emits).iter().all(|o| o.channel() == Channel::Stories));

    // A day later the push window has slid past the first contact.
    let third = apply(&e, &mut s, &add_to_cart("a3", &c, 26 * HOUR), 26 * HOUR);
    assert_eq!(decisions(&third.emits)[0], (Channel::Push, Outcome::Treated));
}

#[test]
fn global_control_gets_a_decision_and_no_offer() {
    let e = engine(5.0);
    let c = customer(true);
    let mut s = MemoryState::default();
    apply(&e, &mut s, &consent(&c), 0);
    let out = apply(&e, &mut s, &add_to_cart("a1", &c, HOUR), HOUR);
    assert_eq!(decisions(&out.emits), vec![(Channel::Unspecified, Outcome::HoldoutGlobal)]);
    assert!(offers(&out.emits).is_empty());
    let profile = s.profile(0, &c).unwrap().unwrap();
    assert_eq!(profile.exposures.len(), 1, "held-out decisions open an attribution episode");
    assert_eq!(profile.exposures[0].group, cvm_engine::attribution::Group::GlobalControl);
    assert!(profile.contacts.is_empty());
}

#[test]
fn campaign_holdout_is_per_campaign() {
    let e = Engine::new(EngineConfig { default_holdout_percent: 50.0, ..config(0.0) }, Catalog::new([offer()]));
    let mut outcomes = std::collections::HashMap::new();
    for i in 0..400 {
        let c = format!("h{i}");
        let mut s = MemoryState::default();
        apply(&e, &mut s, &consent(&c), 0);
        let out = apply(&e, &mut s, &add_to_cart(&format!("x{i}"), &c, HOUR), HOUR);
        let (_, outcome) = decisions(&out.emits)[0];
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    let held = outcomes[&Outcome::HoldoutCampaign];
    assert!((150..=250).contains(&held), "{outcomes:?}");
    assert_eq!(held + outcomes[&Outcome::Treated], 400);
}

#[test]
fn ineligible_and_unreachable_are_decisions_with_reasons() {
    let e = engine(0.0);
    let mut s = MemoryState::default();
    // Without consent the push channel is unreachable; stories work once the app is used.
    let out = apply(&e, &mut s, &add_to_cart("a1", "u1", HOUR), HOUR);
    assert_eq!(
        decisions(&out.emits),
        vec![(Channel::Push, Outcome::Unreachable), (Channel::Stories, Outcome::Treated)]
    );

    let strict = with_doc(|d| d.eligibility = Some("has_app && orders_90d >= 2".into()));
    let e = Engine::new(config(0.0), Catalog::new([strict]));
    let out = apply(&e, &mut s, &add_to_cart("a2", "u1", HOUR), HOUR);
    let Outbound::Decision(d) = &out.emits[0] else { panic!() };
    assert_eq!(d.outcome(), Outcome::Ineligible);
    assert!(d.reason.contains("cart-sushi v3: `orders_90d >= 2` is false"), "{}", d.reason);
    assert_eq!(d.offer_version, 3, "decisions record the offer version");
}

#[test]
fn replayed_events_are_not_applied_twice_and_ids_are_deterministic() {
    let e = engine(0.0);
    let mut s = MemoryState::default();
    let buy = Event::Purchase(Purchase {
        event_id: "p1".into(),
        customer_id: "c".into(),
        timestamp_ms: HOUR,
        lines: vec![PurchaseLine {
            sku: "s".into(),
            category: "sushi".into(),
            quantity: 1,
            unit_price_minor: 900,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    });
    assert_eq!(apply(&e, &mut s, &buy, HOUR).result, EventResult::Applied);
    assert_eq!(apply(&e, &mut s, &buy, HOUR).result, EventResult::Duplicate);
    assert_eq!(s.profile(0, "c").unwrap().unwrap().lifetime_orders, 1);

    // The same event decided on two fresh states yields identical output.
    let run = || apply(&e, &mut MemoryState::default(), &add_to_cart("same", "c", HOUR), HOUR).emits;
    assert_eq!(run(), run());
}

#[test]
fn anonymous_devices_are_rekeyed_once_identified() {
    let e = engine(0.0);
    let mut s = MemoryState::default();
    let anon = Event::App(AppEvent {
        event_id: "v1".into(),
        device_id: "d1".into(),
        kind: AppEventKind::ProductView as i32,
        ..Default::default()
    });
    assert_eq!(apply(&e, &mut s, &anon, 0).result, EventResult::Anonymous);
    let id = Event::Identify(Identify {
        event_id: "i1".into(),
        device_id: "d1".into(),
        customer_id: "c9".into(),
        timestamp_ms: 0,
    });
    apply(&e, &mut s, &id, 0);
    let out = apply(&e, &mut s, &anon, 0);
    assert_eq!(out.result, EventResult::Rekeyed);
    assert!(matches!(&out.emits[..], [Outbound::Rekeyed(a)] if a.customer_id == "c9" && a.event_id == "v1"));
}

#[test]
fn invalid_events_are_reported_not_applied() {
    let e = engine(0.0);
    let mut s = MemoryState::default();
    let no_id = Event::Purchase(Purchase { customer_id: "c".into(), ..Default::default() });
    assert!(matches!(apply(&e, &mut s, &no_id, 0).result, EventResult::Invalid(r) if r.detail.contains("event_id")));
    assert_eq!(s.profile_count(), 0);
}

#[test]
fn a_devices_link_reaches_its_partition_and_brings_its_anonymous_history_to_the_customer() {
    use cvm_proto::v1::{DeviceLink, EraseRequest};
    let e = engine(0.0);
    let mut s = MemoryState::default();
    // The customer lives in partition 0; the device's events land in partition 1.
    let (customer_p, device_p) = (0, 1);
    let view = |id: &str| {
        Event::App(AppEvent {
            event_id: id.into(),
            device_id: "d1".into(),
            kind: AppEventKind::ProductView as i32,
            ..Default::default()
        })
    };
    let before = e.process(&mut s, device_p, &view("v1"), 0).unwrap();
    assert_eq!(before.result, EventResult::Anonymous);

    let id = Event::Identify(Identify {
        event_id: "i1".into(),
        device_id: "d1".into(),
        customer_id: "c9".into(),
        timestamp_ms: 5,
    });
    let identified = e.process(&mut s, customer_p, &id, 5).unwrap();
    let links: Vec<&DeviceLink> =
        identified.emits.iter().filter_map(|o| if let Outbound::DeviceLink(l) = o { Some(l) } else { None }).collect();
    assert_eq!(links.len(), 1, "{:?}", identified.emits);
    assert_eq!((links[0].device_id.as_str(), links[0].customer_id.as_str(), links[0].unlink), ("d1", "c9", false));

    // The link, routed to the device's partition, releases the held history to the customer.
    let link = Event::DeviceLink(links[0].clone());
    let linked = e.process(&mut s, device_p, &link, 6).unwrap();
    assert!(
        matches!(&linked.emits[..], [Outbound::Rekeyed(a)] if a.customer_id == "c9" && a.event_id == "v1"),
        "{:?}",
        linked.emits
    );
    assert_eq!(e.process(&mut s, device_p, &link, 6).unwrap().result, EventResult::Duplicate, "a replayed link");
    let later = e.process(&mut s, device_p, &view("v2"), 7).unwrap();
    assert!(matches!(&later.emits[..], [Outbound::Rekeyed(a)] if a.customer_id == "c9"));
    assert!(s.profile(device_p, "c9").unwrap().is_none(), "no shadow profile in the device's partition");
    assert!(s.profile(customer_p, "c9").unwrap().is_some());

    // Erasing the customer unlinks the device in its partition too.
    let erase = Event::Erase(EraseRequest { request_id: "r1".into(), customer_id: "c9".into(), timestamp_ms: 8 });
    let erased = e.process(&mut s, customer_p, &erase, 8).unwrap();
    let unlink = erased
        .emits
        .iter()
        .find_map(|o| if let Outbound::DeviceLink(l) = o { Some(l.clone()) } else { None })
        .expect("an unlink for the device");
    assert!(unlink.unlink && unlink.device_id == "d1" && unlink.customer_id == "c9");
    e.process(&mut s, device_p, &Event::DeviceLink(unlink), 9).unwrap();
    assert_eq!(e.process(&mut s, device_p, &view("v3"), 10).unwrap().result, EventResult::Anonymous);

    // An unlink of another customer leaves a newer link alone.
    let relink =
        DeviceLink { event_id: "l2".into(), device_id: "d1".into(), customer_id: "c7".into(), ..Default::default() };
    e.process(&mut s, device_p, &Event::DeviceLink(relink), 11).unwrap();
    let stale = DeviceLink {
        event_id: "u2".into(),
        device_id: "d1".into(),
        customer_id: "c9".into(),
        unlink: true,
        ..Default::default()
    };
    e.process(&mut s, device_p, &Event::DeviceLink(stale), 12).unwrap();
    assert_eq!(s.customer_of_device(device_p, "d1").unwrap().as_deref(), Some("c7"));
}

#[test]
fn a_device_holds_only_its_latest_anonymous_events() {
    let e = engine(0.0);
    let mut s = MemoryState::default();
    let n = cvm_engine::MAX_HELD_ANONYMOUS + 5;
    for i in 0..n {
        let view = Event::App(AppEvent {
            event_id: format!("v{i}"),
            device_id: "d1".into(),
            kind: AppEventKind::ProductView as i32,
            ..Default::default()
        });
        e.process(&mut s, 1, &view, i as i64).unwrap();
    }
    let held = s.held_anonymous(1, "d1").unwrap();
    assert_eq!(held.len(), cvm_engine::MAX_HELD_ANONYMOUS);
    assert_eq!(held[0].event_id, "v5", "the oldest are dropped");
}
