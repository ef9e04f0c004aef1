//! Property tests over hostile input, on stable Rust: arbitrary bytes as
//! events (protobuf and JSON), generated extreme events, mutated config
//! documents, CEL expressions and model artifacts. The property is always
//! the same: the engine answers — applies, refuses with a reason, rejects
//! the document — and never panics or overflows its stack.
//!
//! Each property runs `PROPTEST_CASES` cases (256 by default; CI's test
//! command uses the default). The checked-in corpus in `tests/corpus/`
//! (every malformed input the hardening issue names, and those found since)
//! is replayed first, every run.

mod support;

use std::{fs, path::Path};

use cvm_engine::{
    driver::{Clock, ScanPacing},
    Catalog, ConfigDocument, Driver, DriverConfig, Engine, Event, EventResult, MemoryState, Output, Source,
};
use cvm_proto::{
    decode,
    v1::{
        app_envelope, recorded_event, AppEnvelope, AppEvent, Consent, EraseRequest, Identify, Purchase, PurchaseLine,
        RecordedEvent,
    },
    Format,
};
use proptest::prelude::*;
use support::*;

/// 2026-11-01T12:00:00Z.
const NOW: i64 = 1_793_534_400_000;

const CART_OFFER: &str = r#"
id: cart
version: 1
campaign_id: cart
trigger: { kind: event, event: add_to_cart, filter: 'event.category == "sushi"' }
eligibility: 'orders_90d >= 0 && category_share("sushi") >= 0.0'
channels:
  push: { title: "{{favourite_category}} for you", body: "{{discount}} off" }
  stories: { template: t, title: "{{favourite_category}}", call_to_action: "go" }
reward: { ladder_percent: [5, 10, 20] }
economics: { margin_formula: 'avg_basket_margin_90d * 0.5', contact_cost_minor: 1 }
category: sushi
ttl: 48h
cascade: { after: 4h, to: stories }
"#;

const INACTIVITY_OFFER: &str = r#"
id: winback
version: 1
campaign_id: winback
trigger: { kind: inactivity, days: 30 }
channels:
  push: { title: "We miss you", body: "{{discount}} off" }
reward: { percent: 15 }
economics: { margin_per_redemption_minor: 600 }
"#;

/// A driver on the real wall clock (the Kafka edge) or in event time, over
/// offers with every kind of trigger, template and formula.
fn driver(clock: Clock) -> Driver {
    let docs = [("cart", CART_OFFER), ("winback", INACTIVITY_OFFER)];
    let defs = docs.map(|(key, doc)| cvm_engine::OfferDefinition::parse(key, doc.as_bytes()).unwrap());
    let mut config = config(0.0);
    config.input = Default::default();
    Driver::new(
        Engine::new(config, Catalog::new(defs)),
        DriverConfig {
            clock,
            inputs: 2,
            idle_timeout_ms: 1_000,
            pacing: ScanPacing::Unlimited,
            timers_per_batch: 10_000,
            real_wall_clock: true,
        },
    )
}

/// Applies `events` through both clocks and lets a year pass; panics are
/// the failure. Returns the results on the wall clock.
fn survive(events: &[Event]) -> Vec<EventResult> {
    let mut results = Vec::new();
    for clock in [Clock::Wall, Clock::EventTime] {
        let mut d = driver(clock);
        let mut state = MemoryState::default();
        let mut out = Output::default();
        for (i, e) in events.iter().enumerate() {
            let source = match e {
                Event::Purchase(_) => Source::Input(0),
                Event::Erase(_) | Event::DeviceLink(_) => Source::Side,
                _ => Source::Input(1),
            };
            let r = d.apply(&mut state, (i % 3) as u32, source, e, NOW + i as i64, &mut out).unwrap();
            if clock == Clock::Wall {
                results.push(r);
            }
        }
        d.tick(&mut state, &[0, 1, 2], NOW + 365 * DAY, &mut out).unwrap();
    }
    results
}

/// Every event a payload decodes to, in every format and input type.
fn decode_all(bytes: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    for format in [Format::Protobuf, Format::Json] {
        if let Ok(p) = decode::<Purchase>(format, bytes) {
            events.push(Event::Purchase(p));
        }
        if let Ok(e) = decode::<EraseRequest>(format, bytes) {
            events.push(Event::Erase(e));
        }
        if let Ok(AppEnvelope { event: Some(e) }) = decode::<AppEnvelope>(format, bytes) {
            events.push(match e {
                app_envelope::Event::AppEvent(a) => Event::App(a),
                app_envelope::Event::Identify(i) => Event::Identify(i),
                app_envelope::Event::Consent(c) => Event::Consent(c),
            });
        }
    }
    events
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(-1),
        Just(0),
        Just(1),
        Just(i64::MAX),
        Just(NOW),
        (NOW - 400 * DAY..NOW + 400 * DAY),
        any::<i64>(),
        (0..1_000_000_000_000i64),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(u32::MAX), any::<u32>(), (0..100u32)]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("sushi".to_owned()),
        "[a-z]{1,8}",
        "\\PC{0,40}",
        (0..3usize).prop_map(|i| "x".repeat([300, 2_000, 70_000][i])),
    ]
}

fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![(0..12i32), Just(-1), Just(i32::MAX), any::<i32>()]
}

fn purchase() -> impl Strategy<Value = Event> {
    let line = (text(), text(), extreme_u32(), extreme_i64(), extreme_i64()).prop_map(
        |(sku, category, quantity, unit_price_minor, unit_cost_minor)| PurchaseLine {
            sku,
            category,
            quantity,
            unit_price_minor,
            unit_cost_minor,
        },
    );
    (
        text(),
        prop_oneof![Just("c1".to_owned()), text()],
        extreme_i64(),
        enum_value(),
        prop::collection::vec(line, 0..4),
        text(),
    )
        .prop_map(|(event_id, customer_id, timestamp_ms, channel, lines, offer_id)| {
            Event::Purchase(Purchase {
                event_id,
                customer_id,
                timestamp_ms,
                channel,
                lines,
                offer_id,
                ..Default::default()
            })
        })
}

fn app_side() -> impl Strategy<Value = Event> {
    let app = (
        text(),
        prop_oneof![Just("c1".to_owned()), text()],
        text(),
        extreme_i64(),
        enum_value(),
        text(),
        text(),
        extreme_u32(),
    )
        .prop_map(|(event_id, customer_id, device_id, timestamp_ms, kind, sku, category, quantity)| {
            Event::App(AppEvent {
                event_id,
                customer_id,
                device_id,
                timestamp_ms,
                kind,
                sku,
                category,
                quantity,
                ..Default::default()
            })
        });
    let consent = (text(), text(), extreme_i64(), enum_value(), any::<bool>(), text(), any::<i32>()).prop_map(
        |(event_id, customer_id, timestamp_ms, channel, granted, time_zone, utc_offset_minutes)| {
            Event::Consent(Consent {
                event_id,
                customer_id,
                timestamp_ms,
                channel,
                granted,
                push_token_present: granted,
                time_zone,
                utc_offset_minutes,
            })
        },
    );
    let identify =
        (text(), text(), text(), extreme_i64()).prop_map(|(event_id, customer_id, device_id, timestamp_ms)| {
            Event::Identify(Identify { event_id, customer_id, device_id, timestamp_ms })
        });
    let erase = (text(), text(), extreme_i64()).prop_map(|(request_id, customer_id, timestamp_ms)| {
        Event::Erase(EraseRequest { request_id, customer_id, timestamp_ms })
    });
    prop_oneof![3 => app, 1 => consent, 1 => identify, 1 => erase]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![purchase(), app_side()]
}

/// Fragments that break documents in the ways the hardening issue lists.
fn hostile_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("18446744073709551615d".to_owned()),
        Just("99999999999999999999h".to_owned()),
        Just("1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("\u{0}".to_owned()),
        (1..3000usize).prop_map(|n| "(".repeat(n)),
        (1..3000usize).prop_map(|n| "[".repeat(n)),
        (1..200usize).prop_map(|n| format!("{}x{}", "(".repeat(n), ")".repeat(n))),
        "\\PC{0,30}",
        Just("{{".to_owned()),
        Just("? :".to_owned()),
        Just("&&||!".to_owned()),
    ]
}

/// A sample document with a hostile fragment spliced in at some position.
fn mutated_document() -> impl Strategy<Value = (String, Vec<u8>)> {
    let model = serde_json::to_string(&cvm_engine::models::ModelArtifact::constant("cart", 1, -1.0, Some(-1.5), 900.0))
        .unwrap();
    let samples: Vec<(String, String)> = vec![
        ("cart".into(), CART_OFFER.into()),
        ("winback".into(), INACTIVITY_OFFER.into()),
        ("model/offer/cart".into(), model),
        ("policy/global".into(), "kind: contact_policy\nversion: 1\ncontact_policy: { caps: [{ channel: push, max: 2, window: 7d }], min_gap: 4h }\n".into()),
        ("campaign/cart".into(), "kind: campaign\nid: cart\nversion: 1\nholdout_percent: 10\nattribution_window: 7d\n".into()),
    ];
    (0..samples.len(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), hostile_fragment(), any::<bool>())
        .prop_map(move |(which, at, len, fragment, replace)| {
            let (key, doc) = &samples[which];
            let bytes = doc.as_bytes();
            let start = at.index(bytes.len() + 1);
            let end = if replace { (start + len.index(12)).min(bytes.len()) } else { start };
            let mut out = bytes[..start].to_vec();
            out.extend_from_slice(fragment.as_bytes());
            out.extend_from_slice(&bytes[end..]);
            (key.clone(), out)
        })
}

/// CEL-ish token soup: identifiers, literals, operators and brackets.
fn expression() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("orders_90d"),
        Just("category_share(\"sushi\")"),
        Just("event.category"),
        Just("has_app"),
        Just("1"),
        Just("2.5"),
        Just("\"x\""),
        Just(" && "),
        Just(" || "),
        Just(" >= "),
        Just(" == "),
        Just(" + "),
        Just(" / "),
        Just("!"),
        Just("-"),
        Just(" ? "),
        Just(" : "),
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just(", "),
        Just(" in "),
        Just("size("),
    ];
    prop::collection::vec(token, 0..400).prop_map(|t| t.concat())
}

fn parse_never_panics(key: &str, bytes: &[u8]) {
    let _ = ConfigDocument::parse(key, bytes);
    let _ = ConfigDocument::parse_file(key, bytes);
}

proptest! {
    #[test]
    fn arbitrary_bytes_as_events_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        survive(&decode_all(&bytes));
    }

    #[test]
    fn extreme_events_are_applied_or_refused_never_panic(events in prop::collection::vec(event(), 1..12)) {
        for r in survive(&events) {
            if let EventResult::Invalid(rejection) = r {
                prop_assert!(!rejection.detail.is_empty());
            }
        }
    }

    #[test]
    fn mutated_documents_are_accepted_or_rejected_never_panic((key, doc) in mutated_document()) {
        parse_never_panics(&key, &doc);
    }

    #[test]
    fn cel_token_soup_compiles_or_is_rejected(expr in expression()) {
        let doc = CART_OFFER.replace("'orders_90d >= 0 && category_share(\"sushi\") >= 0.0'", &format!("'{}'", expr.replace('\'', "")));
        parse_never_panics("cart", doc.as_bytes());
    }
}

/// Every file of the corpus: `events/*` are payloads (any format, any
/// input type), `documents/<key with / as %>` are config documents.
#[test]
fn the_corpus_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in fs::read_dir(root.join("events")).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        let mut events = decode_all(&bytes);
        // JSON lines of recorded events, as `cvm offers simulate` reads them.
        for line in bytes.split(|b| *b == b'\n') {
            if let Ok(RecordedEvent { event: Some(e) }) = decode::<RecordedEvent>(Format::Json, line) {
                events.push(match e {
                    recorded_event::Event::Purchase(p) => Event::Purchase(p),
                    recorded_event::Event::Erase(e) => Event::Erase(e),
                    recorded_event::Event::DeviceLink(e) => Event::DeviceLink(e),
                    recorded_event::Event::App(AppEnvelope { event: Some(app_envelope::Event::AppEvent(a)) }) => {
                        Event::App(a)
                    }
                    recorded_event::Event::App(AppEnvelope { event: Some(app_envelope::Event::Consent(c)) }) => {
                        Event::Consent(c)
                    }
                    recorded_event::Event::App(AppEnvelope { event: Some(app_envelope::Event::Identify(i)) }) => {
                        Event::Identify(i)
                    }
                    recorded_event::Event::App(AppEnvelope { event: None }) => continue,
                });
            }
        }
        let results = survive(&events);
        assert!(
            results.iter().all(|r| matches!(r, EventResult::Invalid(_))),
            "every corpus event is malformed and must be refused: {results:?}"
        );
        seen += 1;
    }
    for entry in fs::read_dir(root.join("documents")).unwrap() {
        let path = entry.unwrap().path();
        let key = path.file_stem().unwrap().to_string_lossy().replace('%', "/");
        let bytes = fs::read(&path).unwrap();
        assert!(ConfigDocument::parse(&key, &bytes).is_err(), "{} must be rejected", path.display());
        seen += 1;
    }
    assert!(seen >= 30, "the corpus holds {seen} cases");
}
