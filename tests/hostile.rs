//! Hostile input through a broker into one running engine: malformed and
//! extreme events end in the dead-letter topic with a machine-readable
//! reason, broken documents on the status topic with theirs; the engine
//! never stops, and a good event after each bad one is applied. Runs against
//! the in-process broker, and against a real one when `CVM_TEST_BROKERS` is set.

use std::time::Duration;

use cvm_e2e::Harness;
use cvm_engine::Event;
use cvm_proto::{
    decode, encode,
    v1::{
        app_envelope, AppEnvelope, AppEvent, AppEventKind, Channel, ConfigStatus, Consent, Decision, EraseRequest,
        Identify, Purchase, PurchaseLine,
    },
};
use cvm_testkit::{add_to_cart, consent_at, MINUTE};

/// 2026-11-01T12:00:00Z.
const T0: i64 = 1_793_534_400_000;

const CART_OFFER: &str = r#"{"id": "cart", "version": 1, "campaign_id": "cart",
    "trigger": {"kind": "event", "event": "add_to_cart"},
    "channels": {"push": {"title": "Cart", "body": "{{discount}} off"}},
    "reward": {"percent": 10}, "economics": {"margin_per_redemption_minor": 450}}"#;

fn purchase(edit: impl FnOnce(&mut Purchase)) -> Vec<u8> {
    let mut p = Purchase {
        event_id: "bad-purchase".into(),
        customer_id: "victim".into(),
        timestamp_ms: T0,
        lines: vec![PurchaseLine {
            sku: "maki".into(),
            category: "sushi".into(),
            quantity: 2,
            unit_price_minor: 799,
            unit_cost_minor: 400,
        }],
        ..Default::default()
    };
    edit(&mut p);
    encode(Default::default(), &p)
}

fn app(event: app_envelope::Event) -> Vec<u8> {
    encode(Default::default(), &AppEnvelope { event: Some(event) })
}

fn app_event(edit: impl FnOnce(&mut AppEvent)) -> Vec<u8> {
    let mut a = AppEvent {
        event_id: "bad-app".into(),
        customer_id: "victim".into(),
        timestamp_ms: T0,
        kind: AppEventKind::AppOpen as i32,
        ..Default::default()
    };
    edit(&mut a);
    app(app_envelope::Event::AppEvent(a))
}

/// Which input topic a case goes to.
#[derive(Clone, Copy)]
enum Input {
    Purchases,
    App,
    Erasure,
}

/// Every malformed input: (name, topic, payload, expected reason code).
fn cases() -> Vec<(&'static str, Input, Option<Vec<u8>>, &'static str)> {
    use Input::*;
    let valid = purchase(|_| {});
    vec![
        ("garbage bytes", Purchases, Some(b"\x0a\xff not a protobuf".to_vec()), "undecodable"),
        ("no payload", Purchases, None, "undecodable"),
        ("truncated protobuf", Purchases, Some(valid[..valid.len() / 2].to_vec()), "undecodable"),
        (
            "varint overflow",
            Purchases,
            Some(b"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec()),
            "undecodable",
        ),
        ("timestamp i64::MIN", Purchases, Some(purchase(|p| p.timestamp_ms = i64::MIN)), "timestamp_out_of_window"),
        ("timestamp i64::MAX", Purchases, Some(purchase(|p| p.timestamp_ms = i64::MAX)), "timestamp_out_of_window"),
        ("timestamp 0", Purchases, Some(purchase(|p| p.timestamp_ms = 0)), "timestamp_out_of_window"),
        ("year 9999", Purchases, Some(purchase(|p| p.timestamp_ms = 253_402_300_799_000)), "timestamp_out_of_window"),
        (
            "a year before the stream",
            Purchases,
            Some(purchase(|p| p.timestamp_ms = T0 - 365 * 24 * 60 * MINUTE)),
            "timestamp_out_of_window",
        ),
        (
            "price i64::MAX × 2",
            Purchases,
            Some(purchase(|p| p.lines[0].unit_price_minor = i64::MAX)),
            "amount_out_of_range",
        ),
        (
            "price i64::MIN",
            Purchases,
            Some(purchase(|p| p.lines[0].unit_price_minor = i64::MIN)),
            "amount_out_of_range",
        ),
        ("negative cost", Purchases, Some(purchase(|p| p.lines[0].unit_cost_minor = -1)), "amount_out_of_range"),
        (
            "quantity u32::MAX at a large price",
            Purchases,
            Some(purchase(|p| {
                p.lines[0].quantity = u32::MAX;
                p.lines[0].unit_price_minor = 9_000_000_000;
            })),
            "quantity_out_of_range",
        ),
        ("no lines", Purchases, Some(purchase(|p| p.lines.clear())), "line_count"),
        ("2,000 lines", Purchases, Some(purchase(|p| p.lines = vec![p.lines[0].clone(); 2_000])), "line_count"),
        ("no event id", Purchases, Some(purchase(|p| p.event_id.clear())), "missing_field"),
        ("no customer id", Purchases, Some(purchase(|p| p.customer_id.clear())), "missing_field"),
        ("300-byte customer id", Purchases, Some(purchase(|p| p.customer_id = "c".repeat(300))), "too_long"),
        ("2 KB category", Purchases, Some(purchase(|p| p.lines[0].category = "x".repeat(2_000))), "too_long"),
        ("unknown purchase channel", Purchases, Some(purchase(|p| p.channel = 9)), "unknown_enum"),
        // Field 9 (unknown) only: decodes, but carries no event.
        ("envelope without event", App, Some(b"\x48\x01".to_vec()), "undecodable"),
        ("unknown app event kind", App, Some(app_event(|a| a.kind = 42)), "unknown_enum"),
        ("unspecified app event kind", App, Some(app_event(|a| a.kind = 0)), "unknown_enum"),
        ("neither customer nor device", App, Some(app_event(|a| a.customer_id.clear())), "missing_field"),
        ("100 KB search query", App, Some(app_event(|a| a.query = "q".repeat(100_000))), "too_long"),
        (
            "a year after the stream",
            App,
            Some(app_event(|a| a.timestamp_ms = T0 + 365 * 24 * 60 * MINUTE)),
            "timestamp_out_of_window",
        ),
        (
            "identify without device",
            App,
            Some(app(app_envelope::Event::Identify(Identify {
                event_id: "bad-identify".into(),
                customer_id: "victim".into(),
                timestamp_ms: T0,
                ..Default::default()
            }))),
            "missing_field",
        ),
        (
            "UTC offset i32::MIN",
            App,
            Some(app(app_envelope::Event::Consent(Consent {
                event_id: "bad-consent".into(),
                customer_id: "victim".into(),
                timestamp_ms: T0,
                channel: Channel::Push as i32,
                utc_offset_minutes: i32::MIN,
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            }))),
            "out_of_range",
        ),
        (
            "unknown consent channel",
            App,
            Some(app(app_envelope::Event::Consent(Consent {
                event_id: "bad-consent-2".into(),
                customer_id: "victim".into(),
                timestamp_ms: T0,
                channel: 77,
                ..Default::default()
            }))),
            "unknown_enum",
        ),
        ("erasure garbage", Erasure, Some(b"\xff\xff\xff".to_vec()), "undecodable"),
        (
            "erasure without customer",
            Erasure,
            Some(encode(
                Default::default(),
                &EraseRequest { request_id: "r1".into(), timestamp_ms: T0, ..Default::default() },
            )),
            "missing_field",
        ),
        (
            "erasure with a 10 KB request id",
            Erasure,
            Some(encode(
                Default::default(),
                &EraseRequest { request_id: "r".repeat(10_000), customer_id: "victim".into(), timestamp_ms: T0 },
            )),
            "too_long",
        ),
    ]
}

fn header(record: &cvm_e2e::Record, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_event_is_dead_lettered_with_its_reason_and_the_engine_goes_on() {
    let mut h = Harness::new().await;
    // The dead-letter copy of an oversized input exceeds what the producer may send.
    h.config.kafka.producer.insert("message.max.bytes".into(), "150000".into());
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart", Some(CART_OFFER.as_bytes()));
    h.flush();
    let pipeline = h.start().await;

    // Every partition has seen a good event on each input first: its clock is set.
    for p in 0..cvm_e2e::PARTITIONS {
        let c = format!("warm-{p}");
        h.send_to(p, &c, &consent_at(&c, T0));
        h.send_to(
            p,
            &c,
            &Event::Purchase(Purchase {
                event_id: format!("warm-buy-{p}"),
                customer_id: c.clone(),
                ..decode(Default::default(), &purchase(|_| {})).unwrap()
            }),
        );
    }
    h.flush();
    h.wait_consumed(&pipeline, 2 * i64::from(cvm_e2e::PARTITIONS)).await;
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (i, (name, input, payload, _)) in cases.iter().enumerate() {
        let topic = match input {
            Input::Purchases => &t.purchases.name,
            Input::App => &t.app.name,
            Input::Erasure => &t.erasure.name,
        };
        h.send_raw(topic, &format!("case-{i}"), payload.as_deref());
        // A good event after each bad one, on the same key (so the same partition).
        let good = format!("case-{i}");
        h.send(&good, &consent_at(&good, T0 + i as i64 * MINUTE));
        h.send(&good, &add_to_cart(&format!("cart-{i}"), &good, T0 + i as i64 * MINUTE + 1));
        eprintln!("sent {name}");
    }
    // A message whose dead-letter copy the producer refuses: parked, not retried forever.
    h.send_raw(&t.purchases.name, "oversized", Some(&vec![0xff; 300_000]));
    h.send("after-oversized", &consent_at("after-oversized", T0 + HOUR_AFTER));
    h.flush();
    h.wait_consumed(&pipeline, 2 * i64::from(cvm_e2e::PARTITIONS) + 3 * cases.len() as i64 + 2).await;
    h.wait_idle(&pipeline).await;
    assert!(!pipeline.ingest_failed(), "the engine never stopped");

    let dlq = h.read_all(&t.dlq);
    for (i, (name, _, payload, reason)) in cases.iter().enumerate() {
        let key = format!("case-{i}");
        // Matched by payload: tansu 0.6.0 can return a record of a produced
        // batch with the key of another record of that batch.
        let payload = payload.as_deref().unwrap_or_default();
        let dead: Vec<_> = dlq.iter().filter(|r| r.payload == payload).collect();
        assert_eq!(dead.len(), 1, "{name}: one dead letter, got {}", dead.len());
        assert_eq!(header(dead[0], "cvm.error.code"), *reason, "{name}: {}", header(dead[0], "cvm.error"));
        assert!(!header(dead[0], "cvm.error").is_empty(), "{name}: a reason for people too");
        let profile = (0..cvm_e2e::PARTITIONS as u32).find_map(|p| pipeline.store().profile(p, &key).unwrap());
        let keyed: Vec<(String, String, String)> = dlq
            .iter()
            .filter(|r| r.key == key)
            .map(|r| (header(r, "cvm.error.code"), header(r, "cvm.error"), header(r, "cvm.source.offset")))
            .collect();
        assert!(
            profile.as_ref().is_some_and(|p| !p.cart.is_empty()),
            "{name}: the good events after it were applied: {profile:?}; dead letters keyed {key}: {keyed:?}"
        );
    }
    assert!(
        (0..cvm_e2e::PARTITIONS as u32).all(|p| pipeline.store().profile(p, "victim").unwrap().is_none()),
        "no malformed event created a profile"
    );
    let parked = pipeline.store().parked(10).unwrap();
    assert_eq!(parked.len(), 1, "the oversized dead letter is parked");
    assert_eq!(parked[0].1.topic, t.dlq);
    assert!(parked[0].1.headers.iter().any(|(k, v)| k == "cvm.parked.reason" && !v.is_empty()));
    assert!((0..cvm_e2e::PARTITIONS as u32).any(|p| pipeline.store().profile(p, "after-oversized").unwrap().is_some()));
    let decided: Vec<Decision> =
        h.read_all(&t.decisions.name).iter().map(|r| decode(t.decisions.format, &r.payload).unwrap()).collect();
    for i in 0..cases.len() {
        let cart = format!("cart-{i}");
        assert_eq!(decided.iter().filter(|d| d.event_id == cart).count(), 1, "the good cart add {i} is decided once");
    }
    assert!(decided.iter().all(|d| d.customer_id != "victim"), "no bad event was decided");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

const HOUR_AFTER: i64 = 60 * MINUTE;

fn eligibility_doc(id: &str, eligibility: &str) -> String {
    format!(
        "id: {id}\nversion: 1\ncampaign_id: c\ntrigger: {{ kind: event, event: app_open }}\neligibility: '{eligibility}'\n\
         channels:\n  push: {{ title: t, body: b }}\neconomics: {{ margin_per_redemption_minor: 1 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_documents_are_rejected_on_the_status_topic_and_the_engine_restarts_over_them() {
    let h = Harness::new().await;
    let t = h.topics().clone();
    let deep = format!("{}orders_90d{} > 1", "(".repeat(20_000), ")".repeat(20_000));
    let nested = format!("{}orders_90d{} > 1", "(".repeat(500), ")".repeat(500));
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deep", eligibility_doc("deep", &deep).into_bytes(), "bytes; at most 4096"),
        ("nested", eligibility_doc("nested", &nested).into_bytes(), "nested 500 deep"),
        ("bomb", format!("id: {}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), "nested 100000 deep"),
        ("huge", format!("id: huge\n#{}", " ".repeat(600_000)).into_bytes(), "at most 524288"),
        ("binary", vec![0xff, 0xfe, 0x00, 0x01], "not UTF-8"),
        (
            "caps",
            format!(
                "{}contact_policy: {{ caps: [{{ max: 1000, window: 7d }}] }}\n",
                eligibility_doc("caps", "orders_90d > 1")
            )
            .into_bytes(),
            "caps[0].max: is 1000",
        ),
        (
            "forever",
            eligibility_doc("forever", "orders_90d > 1").replace("version: 1", "version: 1\nttl: 100000d").into_bytes(),
            "ttl: is longer than 3650d",
        ),
    ];
    h.send_raw(&t.offers_config, "cart", Some(CART_OFFER.as_bytes()));
    for (key, doc, _) in &broken[..3] {
        h.send_raw(&t.offers_config, key, Some(doc));
    }
    h.flush();
    // Published before start: read at start.
    let pipeline = h.start().await;
    // Published while running: read live.
    for (key, doc, _) in &broken[3..] {
        h.send_raw(&t.offers_config, key, Some(doc));
    }
    h.flush();
    let expect_statuses = |h: &Harness| {
        let statuses: Vec<ConfigStatus> = h
            .read_all(&t.config_status.name)
            .iter()
            .map(|r| decode(t.config_status.format, &r.payload).unwrap())
            .collect();
        for (key, _, needle) in &broken {
            let status = statuses.iter().rev().find(|s| s.offer_definition_id == *key);
            let status = status.unwrap_or_else(|| panic!("no status for {key}"));
            assert!(!status.accepted, "{key} rejected");
            assert!(status.errors.iter().any(|e| e.contains(needle)), "{key}: {:?} lacks {needle:?}", status.errors);
        }
        assert!(statuses.iter().any(|s| s.offer_definition_id == "cart" && s.accepted));
    };
    for _ in 0..100 {
        let n = h.read_all(&t.config_status.name).len();
        if n > broken.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    expect_statuses(&h);
    assert_eq!(pipeline.catalog().current().all().len(), 1, "only the good offer is live");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();

    // A restart reads them all again at start: it stays up, with the good offer.
    let pipeline = h.start().await;
    assert_eq!(pipeline.catalog().current().all().len(), 1);
    h.send(
        "after",
        &Event::App(AppEvent {
            event_id: "after".into(),
            customer_id: "after".into(),
            timestamp_ms: T0,
            kind: AppEventKind::AppOpen as i32,
            ..Default::default()
        }),
    );
    h.flush();
    h.wait_idle(&pipeline).await;
    assert!(!pipeline.ingest_failed());
    expect_statuses(&h);
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

/// The broker stops taking what the engine publishes (every produce request
/// fails, fetches still work): ingest pauses at the outbox bound and is not
/// ready; once the broker takes offers again, everything is delivered and
/// nothing was lost. Needs the in-process broker's fault injection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_refuses_offers_pauses_ingest_at_the_outbox_bound_then_everything_is_delivered() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mut h = Harness::new().await;
    let cvm_e2e::Broker::Mock(mock) = &h.broker else {
        eprintln!("skipped: needs the in-process broker's fault injection (the outage script covers a real broker)");
        return;
    };
    let bound = 600;
    h.config.kafka.outbox_max_entries = bound;
    h.config.kafka.producer.insert("message.timeout.ms".into(), "1000".into());
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart", Some(CART_OFFER.as_bytes()));
    let customers = 1_500;
    for i in 0..customers {
        let c = format!("c{i}");
        h.send(&c, &consent_at(&c, T0 + i));
        h.send(&c, &add_to_cart(&format!("cart-{i}"), &c, T0 + i + 1));
    }
    h.flush();
    let sent = 2 * customers;

    mock.request_errors(
        RDKafkaApiKey::Produce,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 1_000_000],
    );
    let health = cvm::service::ops::Health::default();
    let pipeline = h.start_with(health.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while health.not_ready_reason().is_none_or(|r| !r.contains("paused")) {
        assert!(std::time::Instant::now() < deadline, "ingest never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each worker pauses before its next batch: let the others notice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let consumed_at_pause = h.consumed(&pipeline);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = pipeline.store().outbox_pending();
    assert_eq!(h.consumed(&pipeline), consumed_at_pause, "paused: nothing more is consumed");
    assert!(consumed_at_pause < sent, "paused before the end of the input");
    // Past the bound by at most one batch per worker: its events' offers,
    // decisions and dead letters, and the changelog of what they changed.
    let per_batch = 8 * h.config.kafka.batch_max_events as u64;
    let workers = h.config.kafka.worker_count() as u64;
    assert!(pending > bound && pending < bound + workers * per_batch, "{pending}");
    assert!(!health.is_ready());

    mock.clear_request_errors(RDKafkaApiKey::Produce);
    h.wait_consumed(&pipeline, sent).await;
    h.wait_idle(&pipeline).await;
    assert!(health.is_ready(), "ready again once the outbox drained");
    let decided: Vec<Decision> =
        h.read_all(&t.decisions.name).iter().map(|r| decode(t.decisions.format, &r.payload).unwrap()).collect();
    let mut carts: Vec<&str> = decided.iter().map(|d| d.event_id.as_str()).filter(|e| e.starts_with("cart-")).collect();
    carts.sort_unstable();
    carts.dedup();
    assert_eq!(carts.len(), customers as usize, "every cart add was decided and published");
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}

/// A tansu broker this test owns, storing in SQLite so that it keeps its
/// topics across a kill and restart.
struct OwnBroker {
    binary: String,
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl OwnBroker {
    fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Self::spawn(binary, dir.path(), port);
        Self { binary: binary.to_owned(), dir, port, child }
    }

    fn spawn(binary: &str, dir: &std::path::Path, port: u16) -> std::process::Child {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = std::process::Command::new(binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not listen on {port}");
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        self.child = Self::spawn(&self.binary, self.dir.path(), self.port);
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok());
    kb.unwrap_or(0) / 1024
}

/// The broker is killed (SIGKILL) while the engine works through a
/// backlog, and restarted on its storage while a producer keeps sending:
/// ingest pauses at the outbox bound and is not ready, then recovers fully
/// and no event is lost. Runs when `CVM_TANSU` names a tansu binary (the
/// test script sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_restarted_under_load_pauses_ingest_then_nothing_is_lost() {
    let Ok(binary) = std::env::var("CVM_TANSU") else {
        eprintln!("skipped: set CVM_TANSU to a tansu binary (scripts/test.sh does)");
        return;
    };
    let mut broker = OwnBroker::start(&binary);
    let mut h = Harness::on(cvm_e2e::Broker::External(broker.bootstrap())).await;
    let bound = 400;
    h.config.kafka.outbox_max_entries = bound;
    h.config.kafka.producer.insert("message.timeout.ms".into(), "300000".into());
    let t = h.topics().clone();
    h.send_raw(&t.offers_config, "cart", Some(CART_OFFER.as_bytes()));
    let (backlog, more) = (2_000, 500);
    let wave = |h: &Harness, from: i64, to: i64| {
        for i in from..to {
            let c = format!("c{i}");
            h.send(&c, &consent_at(&c, T0 + i));
            h.send(&c, &add_to_cart(&format!("cart-{i}"), &c, T0 + i + 1));
        }
    };
    wave(&h, 0, backlog);
    h.flush();
    let health = cvm::service::ops::Health::default();
    let pipeline = h.start_with(health.clone()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while h.consumed(&pipeline) < 100 {
        assert!(std::time::Instant::now() < deadline, "nothing consumed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    broker.kill();
    let mut peak_outbox = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while health.not_ready_reason().is_none_or(|r| !r.contains("paused")) {
        peak_outbox = peak_outbox.max(pipeline.store().outbox_pending());
        assert!(std::time::Instant::now() < deadline, "ingest never paused (outbox {peak_outbox})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More load while the broker is down: the producer holds it.
    wave(&h, backlog, backlog + more);
    for _ in 0..100 {
        peak_outbox = peak_outbox.max(pipeline.store().outbox_pending());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!health.is_ready());
    assert!(
        peak_outbox < bound + 4 * h.config.kafka.batch_max_events as u64,
        "the outbox stays bounded: {peak_outbox}"
    );

    broker.restart();
    h.flush();
    let sent = 2 * (backlog + more);
    h.wait_consumed(&pipeline, sent).await;
    h.wait_idle(&pipeline).await;
    // Readiness follows the workers' own loops (a worker resumes on its next
    // batch; a partition regained after the outage restores first), so it
    // is awaited, not sampled the instant the input is consumed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Some(reason) = health.not_ready_reason() {
        assert!(std::time::Instant::now() < deadline, "not ready 60 s after catching up: {reason}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pipeline.ingest_failed(), "recovered");
    let decided: Vec<Decision> =
        h.read_all(&t.decisions.name).iter().map(|r| decode(t.decisions.format, &r.payload).unwrap()).collect();
    let mut carts: Vec<&str> = decided.iter().map(|d| d.event_id.as_str()).filter(|e| e.starts_with("cart-")).collect();
    carts.sort_unstable();
    carts.dedup();
    assert_eq!(carts.len(), (backlog + more) as usize, "every cart add was decided and published");
    eprintln!(
        "outage: peak outbox {peak_outbox} entries (bound {bound}), peak RSS of the test process {} MiB",
        peak_rss_mib()
    );
    pipeline.shutdown(Duration::from_secs(30)).await.unwrap();
}
