//! End-to-end: events through a broker into the engine, offers and decisions
//! out, with exact expectations. Runs against the in-process broker, and
//! against a real one when `CVM_TEST_BROKERS` is set.

use std::{collections::HashSet, time::Duration};

use cvm_e2e::Harness;
use cvm_engine::{
    features::{EventFacts, Features},
    ids,
    models::Scope,
    Catalog, Engine, EngineConfig, Event, OfferDefinition, Profile,
};
use cvm_proto::{
    decode,
    v1::{AppEvent, AppEventKind, Channel, ConfigStatus, Decision, Offer, Outcome, Purchase, PurchaseLine},
};
use cvm_synth::{Retailer, RetailerConfig};
use cvm_testkit::{add_to_cart, consent_at};

use cvm_engine::time::HOUR_MS as HOUR;
/// 2026-11-01T12:00:00Z: noon, so pushes are outside the default quiet hours.
const T0: i64 = 1_793_534_400_000;

fn cart_offer(version: u32, title: &str) -> String {
    format!(
        r#"{{"id": "cart-sushi", "version": {version}, "campaign_id": "cart",
            "trigger": {{"kind": "event", "event": "add_to_cart", "filter": "event.category == \"sushi\""}},
            "channels": {{"push": {{"title": "{title}", "body": "{{{{discount}}}} off"}}}},
            "reward": {{"percent": 10}}, "category": "sushi", "economics": {{"margin_per_redemption_minor": 450}}}}"#
    )
}

fn consent(customer: &str) -> Event {
    consent_at(customer, T0)
}

/// The `skip`-th customer in (or out of) the global control group and in
/// neither test campaign's holdout.
fn customer(in_global_control: bool, skip: usize) -> String {
    let engine = Engine::new(EngineConfig::default(), Catalog::default());
    (0..)
        .map(|i| format!("cust-{i}"))
        .filter(|c| {
            engine.in_global_control(c) == in_global_control
                && !engine.in_campaign_holdout("cart", c)
                && !engine.in_campaign_holdout("situational", c)
        })
        .nth(skip)
        .unwrap()
}

fn decisions(h: &Harness) -> Vec<Decision> {
    let t = h.topics();
    h.read_all(&t.decisions.name).iter().map(|r| decode(t.decisions.format, &r.payload).unwrap()).collect()
}

fn offers(h: &Harness, topic: &str) -> Vec<Offer> {
    h.read_all(topic).iter().map(|r| decode(h.topics().push.format, &r.payload).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_scenario_offer_cap_holdout_and_dead_letter() {
    let h = Harness::new().await;
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(1, "Sushi?").as_bytes()));
    h.flush();
    let pipeline = h.start().await;

    let (alice, bob) = (customer(false, 0), customer(true, 0));
    h.send(&alice, &consent(&alice));
    h.send(&bob, &consent(&bob));
    h.send(&alice, &add_to_cart("a1", &alice, T0 + HOUR));
    h.send(&alice, &add_to_cart("a2", &alice, T0 + 2 * HOUR)); // inside the 24 h push cap
    h.send(&bob, &add_to_cart("b1", &bob, T0 + HOUR)); // global control group
    h.send_raw(&t.purchases.name, &alice, Some(b"\x0a\xff not a protobuf"));
    let purchase = Event::Purchase(Purchase {
        event_id: "p1".into(),
        customer_id: alice.clone(),
        timestamp_ms: T0 + 3 * HOUR,
        lines: vec![PurchaseLine {
            sku: "maki".into(),
            category: "sushi".into(),
            quantity: 2,
            unit_price_minor: 799,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    });
    h.send(&alice, &purchase);
    h.flush();
    h.wait_idle(&pipeline).await;

    // Exactly one push offer: Alice's first cart add.
    let push = offers(&h, &t.push.name);
    assert_eq!(push.len(), 1, "{push:?}");
    let expected_decision = ids::decision_id("a1", Channel::Push);
    assert_eq!(push[0].customer_id, alice);
    assert_eq!(push[0].offer_definition_id, "cart-sushi");
    assert_eq!(push[0].offer_id, ids::offer_id(&expected_decision, "cart-sushi", 1));
    assert_eq!(push[0].content.as_ref().unwrap().title, "Sushi?");
    assert!(offers(&h, &t.stories.name).is_empty());

    // Exactly three decisions: treated, capped, held out.
    let mut got: Vec<(String, String, Outcome)> =
        decisions(&h).into_iter().map(|d| (d.customer_id.clone(), d.event_id.clone(), d.outcome())).collect();
    got.sort();
    let mut want = vec![
        (alice.clone(), "a1".to_owned(), Outcome::Treated),
        (alice.clone(), "a2".to_owned(), Outcome::Capped),
        (bob.clone(), "b1".to_owned(), Outcome::HoldoutGlobal),
    ];
    want.sort();
    assert_eq!(got, want);

    // The garbage message is dead-lettered with its reason; the purchase after it was applied.
    let dlq = h.read_all(&t.dlq);
    assert_eq!(dlq.len(), 1);
    let reason =
        dlq[0].headers.iter().find(|(k, _)| k == "cvm.error").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    assert!(reason.as_deref().is_some_and(|r| r.contains("Purchase")), "{reason:?}");
    assert_eq!(dlq[0].payload, b"\x0a\xff not a protobuf");
    let profile = (0..cvm_e2e::PARTITIONS as u32)
        .find_map(|p| pipeline.store().profile(p, &alice).unwrap())
        .expect("alice has a profile");
    assert_eq!(profile.lifetime_orders, 1);

    let status: Vec<ConfigStatus> =
        h.read_all(&t.config_status.name).iter().map(|r| decode(t.config_status.format, &r.payload).unwrap()).collect();
    assert!(status.iter().any(|s| s.accepted && s.version == 1));
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_documents_reload_live_and_bad_ones_are_rejected() {
    let h = Harness::new().await;
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(1, "First").as_bytes()));
    h.flush();
    let pipeline = h.start().await;
    assert_eq!(pipeline.catalog().current().get("cart-sushi").unwrap().version(), 1, "loaded before start returns");

    // A broken edit is rejected; version 1 keeps serving.
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(2, "").as_bytes()));
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(3, "Third").as_bytes()));
    h.flush();
    h.wait_catalog(&pipeline, |c| c.get("cart-sushi").is_some_and(|d| d.version() == 3)).await;
    let (c1, c2) = (customer(false, 1), customer(false, 2));
    h.send(&c1, &consent(&c1));
    h.send(&c1, &add_to_cart("x1", &c1, T0 + HOUR));
    h.flush();
    h.wait_idle(&pipeline).await;

    // A tombstone deletes the offer: no more decisions for it.
    h.send_raw(&t.offers_config, "cart-sushi", None);
    h.flush();
    h.wait_catalog(&pipeline, |c| c.get("cart-sushi").is_none()).await;
    h.send(&c2, &consent(&c2));
    h.send(&c2, &add_to_cart("x2", &c2, T0 + HOUR));
    h.flush();
    h.wait_idle(&pipeline).await;

    let push = offers(&h, &t.push.name);
    assert_eq!(push.len(), 1);
    assert_eq!((push[0].offer_version, push[0].content.as_ref().unwrap().title.as_str()), (3, "Third"));
    assert!(decisions(&h).iter().all(|d| d.customer_id != c2), "deleted offer still decided");
    let status: Vec<ConfigStatus> =
        h.read_all(&t.config_status.name).iter().map(|r| decode(t.config_status.format, &r.payload).unwrap()).collect();
    let rejected: Vec<_> = status.iter().filter(|s| !s.accepted).collect();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].errors[0].starts_with("channels.push.title: is empty"), "{:?}", rejected[0].errors);
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    let h = Harness::new().await;
    let t = h.topics().clone();
    // The samples triggered right at an event: their decisions are a pure
    // function of the events, which is what this test compares. (Timers and
    // sweeps have their own tests.)
    let samples: Vec<OfferDefinition> = cvm::lab::samples::sample_offers()
        .into_iter()
        .filter(|d| matches!(d.doc.trigger, cvm_engine::offers::Trigger::Event { .. }))
        .collect();
    assert!(samples.len() >= 3);
    for d in &samples {
        h.send_raw(&t.offers_config, d.id(), Some(serde_json::to_string(&d.doc).unwrap().as_bytes()));
    }
    let events: Vec<_> = Retailer::new(RetailerConfig { customers: 400, days: 10, ..Default::default() }).collect();
    let (first, second) = events.split_at(events.len() / 2);
    for e in first {
        h.send(&e.key, &e.event);
    }
    h.flush();

    let pipeline = h.start().await;
    h.wait_idle(&pipeline).await;
    // Stop while the second half is still streaming in.
    let sent_before_stop = second.len() / 3;
    for e in &second[..sent_before_stop] {
        h.send(&e.key, &e.event);
    }
    h.flush();
    tokio::time::sleep(Duration::from_millis(20)).await;
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
    for e in &second[sent_before_stop..] {
        h.send(&e.key, &e.event);
    }
    h.flush();
    // Replay a slice of already-applied events, as a producer retry would.
    for e in &first[..50] {
        h.send(&e.key, &e.event);
    }
    h.flush();

    let pipeline = h.start().await;
    h.wait_idle(&pipeline).await;

    // No event lost or counted twice.
    let purchases = events.iter().filter(|e| matches!(e.event, Event::Purchase(_))).count() as u64;
    let orders: u64 = pipeline.store().profiles().map(|r| r.unwrap().2.lifetime_orders).sum();
    assert_eq!(orders, purchases);

    // Every event that triggers an offer was decided, none twice, each under
    // its deterministic id; every offer was published once, for a treated
    // decision. (Which outcome a decision gets may depend on how purchases and
    // app events from two topics interleave, so outcomes are not compared
    // with a reference run; ids and coverage are order-independent.)
    // The sample filters test only the event, so an empty profile tells
    // which events trigger an offer.
    let catalog = Catalog::new(samples);
    let empty = Profile::default();
    let triggers = |event: &Event| {
        let facts = EventFacts::of(event);
        let features = Features::compute(&empty, facts, event.timestamp_ms());
        facts.kind.is_some_and(|k| catalog.triggered_by(k, &facts).iter().any(|d| d.passes_filter(&features)))
    };
    let triggering: HashSet<&str> = events.iter().filter(|e| triggers(&e.event)).map(|e| e.event.event_id()).collect();
    assert!(triggering.len() > 100, "the scenario must trigger offers");
    let decisions = decisions(&h);
    let decision_ids: HashSet<&str> = decisions.iter().map(|d| d.decision_id.as_str()).collect();
    assert_eq!(decision_ids.len(), decisions.len(), "a decision was published twice");
    assert_eq!(
        decisions.iter().map(|d| d.event_id.as_str()).collect::<HashSet<_>>(),
        triggering,
        "an event was not decided"
    );
    for d in decisions.iter().filter(|d| d.trigger == "event") {
        assert_eq!(d.decision_id, ids::decision_id(&d.event_id, d.channel()));
    }
    let treated: HashSet<&str> =
        decisions.iter().filter(|d| d.outcome() == Outcome::Treated).map(|d| d.offer_id.as_str()).collect();
    let sent: Vec<Offer> = [&t.push.name, &t.stories.name].iter().flat_map(|topic| offers(&h, topic)).collect();
    let sent_ids: HashSet<&str> = sent.iter().map(|o| o.offer_id.as_str()).collect();
    assert!(!sent.is_empty());
    assert_eq!(sent_ids.len(), sent.len(), "an offer id was published twice");
    assert_eq!(sent_ids, treated, "offers and treated decisions differ");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

const ABANDONED_CART: &str = r#"
id: abandoned-cart
version: 1
campaign_id: cart
trigger: { kind: delayed, event: add_to_cart, after: 2h, cancel_on: purchase }
channels:
  push: { title: "Still in your cart", body: "{{discount}} off" }
reward: { percent: 5 }
economics: { margin_per_redemption_minor: 400 }
"#;

const SWEEP: &str = r#"
id: storm
version: 1
campaign_id: situational
trigger: { kind: sweep, rate_per_second: 1000 }
eligibility: has_app
channels:
  stories: { template: storm-v1, call_to_action: "Order ahead" }
economics: { margin_per_redemption_minor: 100 }
"#;

/// A delayed trigger set before a restart fires after it, once, when event
/// time passes its due time; a sweep published later reaches every known
/// customer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_timers_survive_a_restart_and_sweeps_reach_every_customer() {
    let mut h = Harness::new().await;
    // After the restart only the app topic moves: the quiet purchases topic
    // holds the watermark back until it has been idle this long.
    h.config.kafka.watermark_idle_timeout = Duration::from_secs(1);
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "abandoned-cart", Some(ABANDONED_CART.as_bytes()));
    let (waits, buys) = (customer(false, 0), customer(false, 1));
    for c in [&waits, &buys] {
        h.send(c, &consent(c));
        h.send(c, &add_to_cart(&format!("cart-{c}"), c, T0 + HOUR));
    }
    h.send(&buys, &purchase_of(&format!("buy-{buys}"), &buys, T0 + 2 * HOUR));
    h.flush();
    let pipeline = h.start().await;
    h.wait_idle(&pipeline).await;
    assert!(offers(&h, &t.push.name).is_empty(), "nothing is due yet");
    assert_eq!(pipeline.store().pending_timers(), 1, "the purchase cancelled the other wait");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();

    // After the restart, a later event on the same partition moves event time past the due time.
    let pipeline = h.start().await;
    h.send(&waits, &add_to_cart_kind(&format!("view-{waits}"), &waits, T0 + 4 * HOUR, AppEventKind::ProductView));
    h.flush();
    h.wait_idle(&pipeline).await;
    let mut push = offers(&h, &t.push.name);
    for _ in 0..50 {
        if !push.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        push = offers(&h, &t.push.name);
    }
    assert_eq!(push.len(), 1, "{push:?}");
    assert_eq!(push[0].customer_id, waits);
    let delayed: Vec<Decision> = decisions(&h).into_iter().filter(|d| d.trigger == "delayed").collect();
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].event_id, format!("cart-{waits}"));
    assert_eq!(delayed[0].decided_at_ms, T0 + 3 * HOUR, "fired at its due time in event time, not at the later event");
    assert_eq!(pipeline.store().pending_timers(), 0);

    h.send_raw(&t.offers_config, "storm", Some(SWEEP.as_bytes()));
    h.flush();
    let mut swept = Vec::new();
    for _ in 0..100 {
        swept = decisions(&h).into_iter().filter(|d| d.trigger == "sweep").collect();
        if swept.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut customers: Vec<&str> = swept.iter().map(|d| d.customer_id.as_str()).collect();
    customers.sort_unstable();
    let mut want = [waits.as_str(), buys.as_str()];
    want.sort_unstable();
    assert_eq!(customers, want, "each known customer once");
    assert_eq!(offers(&h, &t.stories.name).len(), 2);
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

fn add_to_cart_kind(id: &str, customer: &str, at: i64, kind: AppEventKind) -> Event {
    match add_to_cart(id, customer, at) {
        Event::App(a) => Event::App(AppEvent { kind: kind as i32, ..a }),
        other => other,
    }
}

fn purchase_of(id: &str, customer: &str, at: i64) -> Event {
    Event::Purchase(Purchase {
        event_id: id.into(),
        customer_id: customer.into(),
        timestamp_ms: at,
        lines: vec![PurchaseLine {
            sku: "maki".into(),
            category: "sushi".into(),
            quantity: 1,
            unit_price_minor: 800,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    })
}

/// `cvm offers publish` and `cvm offers list` talk to the config topic through these.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_documents_are_listed_latest_first_and_tombstones_as_deleted() {
    let h = Harness::new().await;
    let k = h.config.kafka.clone();
    let v = |n: u32| ABANDONED_CART.replace("version: 1", &format!("version: {n}")).into_bytes();
    let docs = [("abandoned-cart".to_owned(), v(1)), ("storm".to_owned(), SWEEP.as_bytes().to_vec())];
    cvm_kafka::publish_documents(&k, &docs, Duration::from_secs(10)).unwrap();
    cvm_kafka::publish_documents(&k, &[("abandoned-cart".to_owned(), v(2))], Duration::from_secs(10)).unwrap();
    h.send_raw(&k.topics.offers_config, "storm", None);
    h.flush();
    let listed = cvm_kafka::read_documents(&k, Duration::from_secs(10)).unwrap().values;
    let keys: Vec<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["abandoned-cart", "storm"]);
    let live = OfferDefinition::parse("abandoned-cart", listed[0].1.as_deref().unwrap()).unwrap();
    assert_eq!(live.version(), 2, "the latest document per key");
    assert!(listed[1].1.is_none(), "a tombstone lists as deleted");
}

/// The harness itself: every message produced in one burst is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_round_trip_keeps_every_message_of_a_batch() {
    let h = Harness::new().await;
    let topic = h.topics().dlq.clone();
    for i in 0..50 {
        h.send_raw(&topic, &format!("k{}", i % 3), Some(format!("m{i}").as_bytes()));
    }
    h.flush();
    let mut got: Vec<(String, String)> =
        h.read_all(&topic).into_iter().map(|r| (r.key, String::from_utf8(r.payload).unwrap())).collect();
    got.sort();
    let mut want: Vec<(String, String)> = (0..50).map(|i| (format!("k{}", i % 3), format!("m{i}"))).collect();
    want.sort();
    assert_eq!(got, want);
}

/// A campaign document on the config topic sets its holdout live; an erase
/// request on its own topic removes the customer and is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_documents_apply_and_erasure_is_confirmed() {
    let h = Harness::new().await;
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(1, "Sushi?").as_bytes()));
    let everyone_held = "kind: campaign\nid: cart\nversion: 1\nholdout_percent: 50\n";
    h.send_raw(&t.offers_config, "campaign/cart", Some(everyone_held.as_bytes()));
    h.send_raw(&t.offers_config, "campaign/bad", Some(b"kind: campaign\nid: bad\nversion: 1\nholdout_percent: 90\n"));
    h.flush();
    let pipeline = h.start().await;
    let engine = Engine::new(EngineConfig::default(), pipeline.catalog().current().as_ref().clone());
    let held = (0..)
        .map(|i| format!("held-{i}"))
        .find(|c| !engine.in_global_control(c) && engine.in_campaign_holdout("cart", c))
        .unwrap();
    h.send(&held, &consent(&held));
    h.send(&held, &add_to_cart("h1", &held, T0 + HOUR));
    h.flush();
    h.wait_idle(&pipeline).await;
    let d = decisions(&h);
    assert_eq!(d.iter().map(|d| d.outcome()).collect::<Vec<_>>(), [Outcome::HoldoutCampaign], "{d:?}");
    let status: Vec<ConfigStatus> =
        h.read_all(&t.config_status.name).iter().map(|r| decode(t.config_status.format, &r.payload).unwrap()).collect();
    let bad = status.iter().find(|s| s.offer_definition_id == "campaign/bad").unwrap();
    assert!(!bad.accepted && bad.errors[0].starts_with("holdout_percent"), "{bad:?}");

    // A model published on the config topic scores the next decision; one
    // trained on another feature schema is refused and the good one stays.
    let model = cvm_engine::models::ModelArtifact::constant("cart-sushi", 1, 0.0, Some(-2.0), 1_500.0);
    let mut foreign = cvm_engine::models::ModelArtifact { version: 2, ..model.clone() };
    foreign.features.hash = "0000000000000000".into();
    h.send_raw(&t.offers_config, &model.key(), Some(&serde_json::to_vec(&model).unwrap()));
    h.send_raw(&t.offers_config, &model.key(), Some(&serde_json::to_vec(&foreign).unwrap()));
    h.flush();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pipeline.catalog().current().models().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the model was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scored = (0..)
        .map(|i| format!("scored-{i}"))
        .find(|c| !engine.in_global_control(c) && !engine.in_campaign_holdout("cart", c))
        .unwrap();
    h.send(&scored, &consent(&scored));
    h.send(&scored, &add_to_cart("s1", &scored, T0 + HOUR));
    h.flush();
    h.wait_idle(&pipeline).await;
    let d = decisions(&h);
    let d = d.iter().find(|d| d.customer_id == scored).unwrap();
    assert_eq!((d.outcome(), d.model_version.as_str()), (Outcome::Treated, "cart-sushi@1"), "{d:?}");
    assert_eq!(d.scores[0].source, "uplift");
    assert_eq!(d.model_features.len(), cvm_engine::models::vector::LEN);
    let status: Vec<ConfigStatus> =
        h.read_all(&t.config_status.name).iter().map(|r| decode(t.config_status.format, &r.payload).unwrap()).collect();
    let refused = status.iter().rev().find(|s| s.offer_definition_id == model.key()).unwrap();
    assert!(!refused.accepted && refused.version == 1 && refused.errors[0].starts_with("features.hash"), "{refused:?}");

    let erase = Event::Erase(cvm_proto::v1::EraseRequest {
        request_id: "gdpr-1".into(),
        customer_id: held.clone(),
        timestamp_ms: T0 + 2 * HOUR,
    });
    h.send(&held, &erase);
    h.flush();
    h.wait_idle(&pipeline).await;
    let confirmations: Vec<cvm_proto::v1::ErasureConfirmation> = h
        .read_all(&t.erasure_confirmations.name)
        .iter()
        .map(|r| decode(t.erasure_confirmations.format, &r.payload).unwrap())
        .collect();
    assert_eq!(confirmations.len(), 1);
    assert!(confirmations[0].profile_erased && confirmations[0].request_id == "gdpr-1");
    assert!(pipeline.store().profiles().all(|r| r.unwrap().1 != held), "profile still stored");
    let stored = pipeline.store().stats().unwrap();
    assert!(!stored.is_empty(), "aggregates stay");

    // The stats topic carries the same sums (latest message per key), so a
    // report from Kafka equals the report from the store.
    let mut latest = std::collections::BTreeMap::new();
    for r in h.read_all(&t.stats.name) {
        latest.insert(r.key.clone(), cvm_kafka::decode_stats(&t, &r.payload).unwrap());
    }
    let from_topic: Vec<_> = latest.into_values().collect();
    let report = |stats: &[(u32, cvm_engine::attribution::StatsKey, cvm_engine::attribution::Stats)]| {
        cvm_report::Report::from_stats(stats.iter().map(|(_, k, s)| (k, s)))
    };
    assert_eq!(from_topic.len(), stored.len());
    assert_eq!(report(&from_topic), report(&stored));
    assert_eq!(report(&stored).campaigns[0].control.customers, 1, "the held-out customer");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

/// The Kafka pipeline and the driver on `MemoryState`, fed the same events
/// in the same order per partition, make the same decisions with the same
/// ids and send the same offers. Each day of a synthetic retailer is sent as
/// two phases — its app events, then (read later, as from a slower topic)
/// its purchases — and each phase is consumed before the next is sent, so
/// both see one order; the watermark over the two topics makes delayed
/// offers wait for the purchases that cancel them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_pipeline_and_driver_decide_identically() {
    use cvm_engine::{
        driver::{Clock, ScanPacing},
        offers::Trigger,
        Driver, DriverConfig, MemoryState, Outbound, Output, Source,
    };
    let mut h = Harness::new().await;
    h.config.kafka.watermark_idle_timeout = Duration::from_secs(3600);
    let t = h.topics().clone();
    // Sweeps and inactivity backfills run on the wall clock's schedule, not
    // at a point in the event order; everything else is compared.
    let samples: Vec<OfferDefinition> = cvm::lab::samples::sample_offers()
        .into_iter()
        .filter(|d| !matches!(d.doc.trigger, Trigger::Sweep { .. } | Trigger::Inactivity { .. }))
        .collect();
    for d in &samples {
        h.send_raw(&t.offers_config, d.id(), Some(serde_json::to_string(&d.doc).unwrap().as_bytes()));
    }
    h.flush();
    let pipeline = h.start().await;
    h.wait_catalog(&pipeline, |c| c.all().len() == samples.len()).await;

    let engine = Engine::new(h.config.engine.clone(), Catalog::new(samples.clone()));
    let idle_timeout_ms = HOUR;
    let mut driver = Driver::new(
        engine,
        DriverConfig {
            clock: Clock::EventTime,
            inputs: 2,
            idle_timeout_ms,
            pacing: ScanPacing::Rate,
            timers_per_batch: usize::MAX,
            real_wall_clock: false,
        },
    );
    let mut state = MemoryState::default();
    let mut expected = Output::default();

    let config = RetailerConfig { customers: 300, days: 8, ..Default::default() };
    let start = config.start_ms;
    let events: Vec<_> = Retailer::new(config).filter(|e| !e.key.is_empty()).collect();
    let partition_of = |key: &str| (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % cvm_e2e::PARTITIONS as u64) as i32;
    let mut sent = 0;
    for day in 0..=8 {
        let today: Vec<_> =
            events.iter().filter(|e| (e.event.timestamp_ms() - start).div_euclid(24 * HOUR) == day).collect();
        for purchases in [false, true] {
            for e in today.iter().filter(|e| matches!(e.event, Event::Purchase(_)) == purchases) {
                let partition = partition_of(&e.key);
                h.send_to(partition, &e.key, &e.event);
                let source = if purchases { Source::Input(0) } else { Source::Input(1) };
                driver.apply(&mut state, partition as u32, source, &e.event, 0, &mut expected).unwrap();
                sent += 1;
            }
            h.flush();
            h.wait_consumed(&pipeline, sent).await;
        }
    }
    h.wait_idle(&pipeline).await;

    let key = |d: &Decision| (d.decision_id.clone(), d.outcome(), d.offer_id.clone());
    let mut want: Vec<_> =
        expected.emits.iter().filter_map(|e| if let Outbound::Decision(d) = e { Some(key(d)) } else { None }).collect();
    let mut got: Vec<_> = decisions(&h).iter().map(key).collect();
    want.sort();
    got.sort();
    assert!(want.iter().any(|(_, _, offer)| !offer.is_empty()), "the scenario must send offers");
    assert!(
        decisions(&h).iter().any(|d| d.trigger == "delayed") && decisions(&h).iter().any(|d| d.trigger == "cascade"),
        "the scenario must fire delayed and cascade timers"
    );
    assert_eq!(got.len(), want.len(), "decision counts differ");
    assert_eq!(got, want, "decisions differ between the Kafka pipeline and the driver");
    let mut sent_ids: Vec<String> =
        [&t.push.name, &t.stories.name].iter().flat_map(|topic| offers(&h, topic)).map(|o| o.offer_id).collect();
    let mut want_ids: Vec<String> = expected
        .emits
        .iter()
        .filter_map(|e| if let Outbound::Offer(o) = e { Some(o.offer_id.clone()) } else { None })
        .collect();
    sent_ids.sort();
    want_ids.sort();
    assert_eq!(sent_ids, want_ids, "offers differ");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();

    // `cvm train --brokers` learns from what the pipeline logged: the rows
    // it reads from the decisions and purchases topics are those of the
    // driver's decisions and the purchases sent.
    let options = cvm_train::TrainOptions::new(Scope::Campaign, "abandoned-cart", start);
    let (kafka, limits) = (&h.config.kafka, &h.config.engine.input);
    let mut logged = cvm::lab::train::read_logged(kafka, limits, Duration::from_secs(60)).unwrap();
    assert_eq!(logged.decisions.len(), want.len());
    let window = 7 * 24 * HOUR;
    let from_topics = cvm::lab::train::logged_rows(&mut logged, &options, window);
    let mut replayed = cvm::lab::train::Logged::default();
    replayed.decisions = expected
        .emits
        .iter()
        .filter_map(|e| if let Outbound::Decision(d) = e { Some(d.clone()) } else { None })
        .collect();
    for e in &events {
        if let Event::Purchase(p) = &e.event {
            replayed.purchases.add(p);
        }
    }
    let from_driver = cvm::lab::train::logged_rows(&mut replayed, &options, window);
    let comparable = |rows: Vec<cvm_train::dataset::Row>| {
        rows.into_iter().map(|r| cvm_train::dataset::Row { decision: 0, ..r }).collect::<Vec<_>>()
    };
    assert!(from_driver.iter().any(|r| r.converted) && from_driver.iter().any(|r| !r.treated), "{from_driver:?}");
    assert_eq!(comparable(from_topics), comparable(from_driver), "rows differ between the topics and the driver");
}

/// A challenger published beside the champion runs in shadow: the engine
/// acts on the champion and logs the challenger's choice on each decision,
/// and `cvm report --challengers` values the two from the topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenger_in_shadow_is_logged_and_valued_from_the_topics() {
    use cvm_engine::models::{ModelArtifact, Role};
    let h = Harness::new().await;
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart-sushi", Some(cart_offer(1, "Sushi?").as_bytes()));
    // The champion expects a contact to pay for everyone; the challenger for no one.
    let champion = ModelArtifact::constant("cart-sushi", 1, 0.0, Some(-2.0), 1_000.0);
    let challenger =
        ModelArtifact { role: Role::Challenger, ..ModelArtifact::constant("cart-sushi", 2, -2.0, Some(0.0), 1_000.0) };
    for m in [&champion, &challenger] {
        h.send_raw(&t.offers_config, &m.key(), Some(&serde_json::to_vec(m).unwrap()));
    }
    h.flush();
    let pipeline = h.start().await;
    h.wait_catalog(&pipeline, |c| c.models().len() == 2).await;
    for i in 0..40 {
        let c = format!("c{i}");
        h.send(&c, &consent(&c));
        h.send(&c, &add_to_cart(&format!("cart-{i}"), &c, T0 + HOUR));
        if i % 3 == 0 {
            h.send(&c, &purchase_of(&format!("buy-{i}"), &c, T0 + 2 * HOUR));
        }
    }
    h.flush();
    h.wait_idle(&pipeline).await;
    let acted = [Outcome::Treated, Outcome::HoldoutCampaign, Outcome::HoldoutGlobal];
    let logged: Vec<Decision> = decisions(&h).into_iter().filter(|d| acted.contains(&d.outcome())).collect();
    assert!(logged.iter().any(|d| d.outcome() == Outcome::Treated), "the champion decides: {logged:?}");
    for d in &logged {
        let shadow = (d.model_version.as_str(), d.challenger_version.as_str(), d.challenger_selects);
        assert_eq!(shadow, ("cart-sushi@1", "cart-sushi@2", false), "{d:?}");
    }
    let duels = cvm::commands::challenger_duels(&h.config).unwrap();
    assert_eq!(duels.len(), 1, "{duels:?}");
    let d = &duels[0];
    assert_eq!(
        (d.champion.as_str(), d.challenger.as_str(), d.decisions),
        ("cart-sushi@1", "cart-sushi@2", logged.len())
    );
    assert_eq!((d.champion_contacts, d.challenger_contacts), (logged.len() as f64, 0.0), "{d:?}");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

/// The offsets the engine commits to the group (for lag monitoring; its
/// own are in the store) are the next offsets to read, not one past them:
/// lag is zero once everything is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_groups_committed_offsets_are_the_next_offsets_to_read() {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig, Offset, TopicPartitionList,
    };
    let h = Harness::new().await;
    let t = h.topics().clone();
    let pipeline = h.start().await;
    for i in 0..40 {
        let c = format!("c{i}");
        h.send(&c, &consent(&c));
    }
    h.flush();
    h.wait_idle(&pipeline).await;
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", h.broker.bootstrap())
        .set("group.id", &h.config.kafka.group_id)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..cvm_e2e::PARTITIONS {
        tpl.add_partition(&t.app.name, p);
    }
    let stored: Vec<i64> =
        (0..cvm_e2e::PARTITIONS).map(|p| pipeline.store().next_offset(&t.app.name, p).unwrap().unwrap_or(0)).collect();
    assert_eq!(stored.iter().sum::<i64>(), 40);
    // Auto-commit runs every 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let committed = group.committed_offsets(tpl.clone(), Duration::from_secs(5)).unwrap();
        let got: Vec<i64> = (0..cvm_e2e::PARTITIONS)
            .map(|p| match committed.find_partition(&t.app.name, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            })
            .collect();
        for (g, s) in got.iter().zip(&stored) {
            assert!(g <= s, "committed {got:?} past the stored next offsets {stored:?}");
        }
        if got == stored {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "committed {got:?}, stored next offsets {stored:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_transactions_is_refused_at_start_with_the_fix() {
    if !cvm_e2e::on_tansu() {
        eprintln!("skipped: the in-process broker serves transactions; tansu 0.6.0 (CVM_TANSU) does not");
        return;
    }
    let mut h = Harness::new().await;
    h.config.kafka.delivery = cvm_kafka::Delivery::ExactlyOnce;
    let refused = match cvm::Pipeline::start(&h.config, cvm::service::ops::Health::default()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("exactly-once delivery started on a broker that cannot commit a transaction"),
    };
    assert!(refused.contains("kafka.delivery = \"at_least_once\""), "the error says what to do: {refused}");
}

/// The partition librdkafka's default partitioner (`consistent_random`)
/// gives a key: its CRC-32 modulo the partition count — where the engine's
/// own producer sends a device's link, and the test producer its events.
fn librdkafka_partition(key: &str) -> u32 {
    let mut crc = !0u32;
    for byte in key.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc % cvm_e2e::PARTITIONS as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_identified_as_a_customer_of_another_partition_brings_its_history_and_leaves_no_shadow() {
    let h = Harness::new().await;
    let customer = "shopper-1";
    let customer_p = librdkafka_partition(customer);
    let device = (0..).map(|i| format!("phone-{i}")).find(|d| librdkafka_partition(d) != customer_p).unwrap();
    let device_p = librdkafka_partition(&device);
    let anonymous_cart = |i: i64| {
        Event::App(AppEvent {
            event_id: format!("anon-cart-{i}"),
            device_id: device.clone(),
            kind: AppEventKind::AddToCart as i32,
            sku: format!("sku-{i}"),
            category: "sushi".into(),
            quantity: 1,
            timestamp_ms: T0 + i,
            ..Default::default()
        })
    };
    let pipeline = h.start().await;
    for i in 0..3 {
        h.send(&device, &anonymous_cart(i));
    }
    h.send(customer, &consent_at(customer, T0));
    h.send(
        customer,
        &Event::Identify(cvm_proto::v1::Identify {
            event_id: "login-1".into(),
            customer_id: customer.into(),
            device_id: device.clone(),
            timestamp_ms: T0 + 10,
        }),
    );
    h.flush();
    let store = pipeline.store().clone();
    let cart = |s: &cvm_store::Store| s.profile(customer_p, customer).unwrap().map_or(0, |p| p.cart.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cart(&store) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the anonymous cart never reached the customer: {}",
            cart(&store)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Browsing after the login goes to the customer directly through the link.
    h.send(&device, &anonymous_cart(20));
    h.flush();
    while cart(&store) < 4 {
        assert!(std::time::Instant::now() < deadline, "a later anonymous event never reached the customer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.profile(device_p, customer).unwrap(), None, "no shadow profile in the device's partition");
    assert_eq!(store.profile(customer_p, customer).unwrap().unwrap().devices, vec![device.clone()]);

    // Erasure reaches the link in the device's partition.
    h.send(
        customer,
        &Event::Erase(cvm_proto::v1::EraseRequest {
            request_id: "forget-me".into(),
            customer_id: customer.into(),
            timestamp_ms: T0 + 30,
        }),
    );
    h.flush();
    let linked = |s: &cvm_store::Store| {
        use cvm_engine::StateTxn;
        s.begin().customer_of_device(device_p, &device).unwrap()
    };
    while linked(&store).is_some() {
        assert!(std::time::Instant::now() < deadline, "the device's link outlived the erasure");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}
