//! `cvm bench-sweep`: the engine's own ceiling for a sweep over every
//! profile, and the store's footprint at that size.
//!
//! Loads synthetic profiles over 8 partitions, compacts the store and
//! reports its size per profile and the process's peak memory. Then a sweep
//! offer with no practical rate limit is decided for every customer by
//! worker threads that each own a share of the partitions, as the scale-out
//! workers do: a page of customers per call and one commit per page, as the
//! ingest loop runs them (the decisions are counted, not published). A
//! sweep's `rate_per_second` stays the marketers' limit; this is what the
//! engine could do without it.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use cvm_engine::{Catalog, Driver, DriverConfig, Engine, EngineConfig, OfferDefinition, Outbound, Output};
use cvm_store::{Store, StoreConfig};
use rand::{rngs::SmallRng, SeedableRng};

use crate::lab::bench::load_profiles;

const PARTITIONS: u32 = 8;

/// A sweep every loaded profile can qualify for, at no practical rate limit.
const SWEEP: &str = r#"
id: bench-sweep
version: 1
campaign_id: bench
trigger: { kind: sweep, rate_per_second: 1000000000 }
eligibility: push_reachable && orders_365d >= 1
channels: { push: { title: "A treat for you", body: "{{discount}} off your favourites" } }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 400, contact_cost_minor: 1 }
ttl: 1d
"#;

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Peak resident memory of this process so far, bytes (0 where unknown).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().strip_suffix("kB"));
    kib.and_then(|v| v.trim().parse::<u64>().ok()).map_or(0, |k| k * 1024)
}

/// Runs the benchmark and prints its figures.
pub fn run(profiles: u32, workers: u32, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::ensure!((1..=PARTITIONS).contains(&workers), "--workers must be 1 to {PARTITIONS}");
    let tmp = tempfile::tempdir()?;
    let path = data_dir.unwrap_or_else(|| tmp.path().join("sweep"));
    let store = Store::open(&StoreConfig { path, ..Default::default() })?;
    let mut rng = SmallRng::seed_from_u64(7);
    let t = Instant::now();
    load_profiles(&store, &mut rng, profiles, PARTITIONS, 10_000)?;
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.compact()?;
    let compact = t.elapsed().as_secs_f64();
    let sst = store.live_sst_bytes()?;

    let catalog = Arc::new(Catalog::new([OfferDefinition::parse("bench-sweep", SWEEP.as_bytes())?]));
    let t = Instant::now();
    let results: Vec<anyhow::Result<(usize, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (store, catalog) = (store.clone(), catalog.clone());
                let owned: Vec<u32> = (0..PARTITIONS).filter(|p| p % workers == w).collect();
                scope.spawn(move || sweep(&store, catalog, &owned))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("sweep worker panicked")).collect()
    });
    let seconds = t.elapsed().as_secs_f64();
    let (mut scanned, mut offers) = (0, 0);
    for r in results {
        let (s, o) = r?;
        scanned += s;
        offers += o;
    }
    anyhow::ensure!(scanned == profiles as usize, "the sweep visited {scanned} of {profiles} profiles");

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("=== cvm bench-sweep: {profiles} profiles, {PARTITIONS} partitions, {workers} workers ===");
    println!("  {:<40}{:>12.0}", "loaded profiles/s", f64::from(profiles) / load);
    println!("  {:<40}{:>12.1}", "full compaction seconds", compact);
    println!("  {:<40}{:>12.0}", "SST bytes per profile (compacted)", sst as f64 / f64::from(profiles.max(1)));
    println!("  {:<40}{:>12.0}", "store SST MiB", mib(sst));
    println!("  {:<40}{:>12.1}", "sweep seconds", seconds);
    println!("  {:<40}{:>12.0}", "sweep profiles/s", scanned as f64 / seconds);
    println!("  {:<40}{:>12}", "offers decided to send", offers);
    println!("  {:<40}{:>12.0}", "peak RSS MiB", mib(peak_rss_bytes()));
    Ok(())
}

/// Sweeps `partitions` to the end; returns customers visited and offers.
fn sweep(store: &Store, catalog: Arc<Catalog>, partitions: &[u32]) -> anyhow::Result<(usize, u64)> {
    let engine = Engine::new(EngineConfig::default(), Catalog::clone(&catalog));
    let mut driver = Driver::new(engine, DriverConfig::wall_clock());
    let (mut scanned, mut offers) = (0, 0);
    loop {
        let mut b = store.begin();
        driver.begin();
        let mut out = Output::default();
        let reports = driver.advance_scans(&mut b, partitions, wall_ms(), &mut out)?;
        b.commit()?;
        scanned += reports.iter().map(|r| r.scanned).sum::<usize>();
        offers += out.emits.iter().filter(|e| matches!(e, Outbound::Offer(_))).count() as u64;
        if reports.iter().all(|r| r.partitions_done == partitions.len()) {
            return Ok((scanned, offers));
        }
    }
}
