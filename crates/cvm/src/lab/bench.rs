//! `cvm bench`: decision-core throughput and latency over a RocksDB store of
//! synthetic profiles, beside the bare RocksDB read-modify-write rate of the
//! same machine in the same run, so the engine's cost is seen against the
//! ceiling it sits on.

use std::{path::PathBuf, time::Instant};

use cvm_engine::{
    driver::{Clock, ScanPacing, TIMERS_PER_BATCH},
    Driver, DriverConfig, Engine, EngineConfig, Event, Output, Profile, Source, StateTxn,
};
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Purchase, PurchaseLine};
use cvm_store::{Store, StoreConfig};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::lab::samples::sample_catalog;

/// Options of the benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Profiles loaded before measuring.
    pub profiles: u32,
    /// Events measured.
    pub events: u32,
    /// Events per committed batch (as the ingest loop does).
    pub batch: usize,
    /// Store directory (temporary when `None`).
    pub data_dir: Option<PathBuf>,
}

const PARTITIONS: u32 = 8;
use cvm_engine::time::DAY_MS;
const NOW: i64 = 1_793_491_200_000;
const CATEGORIES: [&str; 6] = ["sushi", "meat", "wine", "beauty", "bakery", "dairy"];

fn customer(i: u32) -> (u32, String) {
    (i % PARTITIONS, format!("c{i:08}"))
}

/// A synthetic profile: a few purchases, an app open, a push consent.
pub(crate) fn seed_profile(rng: &mut SmallRng) -> Profile {
    let mut p = Profile::default();
    for _ in 0..rng.random_range(1..12) {
        let cat = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        p.apply_purchase(&Purchase {
            timestamp_ms: NOW - rng.random_range(1..200) * DAY_MS,
            lines: vec![PurchaseLine {
                sku: format!("{cat}-1"),
                category: cat.into(),
                quantity: 1,
                unit_price_minor: 1500,
                unit_cost_minor: 900,
            }],
            ..Default::default()
        });
    }
    p.apply_app_event(&AppEvent {
        timestamp_ms: NOW - DAY_MS,
        kind: AppEventKind::AppOpen as i32,
        ..Default::default()
    });
    p.apply_consent(&Consent {
        channel: Channel::Push as i32,
        granted: rng.random_bool(0.7),
        push_token_present: true,
        ..Default::default()
    });
    p
}

fn random_event(rng: &mut SmallRng, n: u32, profiles: u32, at: i64) -> (u32, Event) {
    let (partition, customer_id) = customer(rng.random_range(0..profiles));
    let event_id = format!("bench-{n}");
    let cat = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    let event = if rng.random_bool(0.15) {
        Event::Purchase(Purchase {
            event_id,
            customer_id,
            timestamp_ms: at,
            lines: vec![PurchaseLine {
                sku: format!("{cat}-2"),
                category: cat.into(),
                quantity: 2,
                unit_price_minor: 999,
                unit_cost_minor: 600,
            }],
            ..Default::default()
        })
    } else {
        let kind = [AppEventKind::AppOpen, AppEventKind::ProductView, AppEventKind::AddToCart, AppEventKind::StoryView]
            [rng.random_range(0..4)];
        Event::App(AppEvent {
            event_id,
            customer_id,
            timestamp_ms: at,
            kind: kind as i32,
            sku: format!("{cat}-3"),
            category: cat.into(),
            ..Default::default()
        })
    };
    (partition, event)
}

/// Runs the benchmark and prints its figures.
pub fn run(opts: &BenchOptions) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = opts.data_dir.clone().unwrap_or_else(|| tmp.path().join("bench"));
    let store = Store::open(&StoreConfig { path, ..Default::default() })?;
    let mut rng = SmallRng::seed_from_u64(7);

    let t = Instant::now();
    for chunk_start in (0..opts.profiles).step_by(10_000) {
        let mut b = store.begin();
        for i in chunk_start..(chunk_start + 10_000).min(opts.profiles) {
            let (p, c) = customer(i);
            b.put_profile(p, &c, seed_profile(&mut rng))?;
        }
        b.commit()?;
    }
    store.flush()?;
    let load = t.elapsed().as_secs_f64();
    println!("loaded {} profiles in {:.1}s ({:.0}/s)", opts.profiles, load, f64::from(opts.profiles) / load);

    // Bare RocksDB: read a profile, change it, write it back, one WriteBatch per batch.
    let t = Instant::now();
    let mut i = 0;
    while i < opts.events {
        let mut b = store.begin();
        for _ in 0..opts.batch.min((opts.events - i) as usize) {
            let (p, c) = customer(rng.random_range(0..opts.profiles));
            let mut profile = b.profile(p, &c)?.unwrap_or_default();
            profile.lifetime_orders += 1;
            b.put_profile(p, &c, profile)?;
            i += 1;
        }
        b.commit()?;
    }
    let rmw_rate = f64::from(opts.events) / t.elapsed().as_secs_f64();

    // Through the driver, as the ingest loop runs it on the wall clock (here
    // each event's time): timers are the maintenance pass's, not measured.
    let engine = Engine::new(EngineConfig::default(), sample_catalog());
    let mut driver = Driver::new(
        engine,
        DriverConfig {
            clock: Clock::Wall,
            inputs: 1,
            idle_timeout_ms: 0,
            pacing: ScanPacing::Rate,
            timers_per_batch: TIMERS_PER_BATCH,
            real_wall_clock: true,
        },
    );
    let mut hist = Histogram::<u64>::new(3)?;
    let (mut decisions, mut offers) = (0u64, 0u64);
    let t = Instant::now();
    let mut n = 0;
    while n < opts.events {
        let mut b = store.begin();
        driver.begin();
        for _ in 0..opts.batch.min((opts.events - n) as usize) {
            let at = NOW + i64::from(n) * 50;
            let (partition, event) = random_event(&mut rng, n, opts.profiles, at);
            let s = Instant::now();
            let mut out = Output::default();
            driver.apply(&mut b, partition, Source::Input(0), &event, at, &mut out)?;
            hist.record(s.elapsed().as_nanos() as u64)?;
            for e in &out.emits {
                match e {
                    cvm_engine::Outbound::Decision(_) => decisions += 1,
                    cvm_engine::Outbound::Offer(_) => offers += 1,
                    cvm_engine::Outbound::Rekeyed(_)
                    | cvm_engine::Outbound::Erased(_)
                    | cvm_engine::Outbound::DeviceLink(_) => {}
                }
            }
            n += 1;
        }
        b.commit()?;
    }
    let engine_rate = f64::from(opts.events) / t.elapsed().as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!("\n=== cvm bench: {} profiles, {} events, batches of {} ===", opts.profiles, opts.events, opts.batch);
    println!("  bare RocksDB read-modify-write   {rmw_rate:>10.0} ops/s");
    println!(
        "  decision core (apply + decide)   {engine_rate:>10.0} events/s  ({:.0} % of bare RMW)",
        100.0 * engine_rate / rmw_rate
    );
    println!(
        "  per-event latency (excl. commit) p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
    println!("  decisions {decisions}, offers {offers}");
    Ok(())
}
