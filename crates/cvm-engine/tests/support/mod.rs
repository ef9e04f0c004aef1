//! The shared test kit, plus applying events and firing timers through the
//! driver the ingest loop uses.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use cvm_testkit::*;

use cvm_engine::{
    driver::{Clock, ScanPacing},
    Driver, DriverConfig, Engine, Event, EventOutput, MemoryState, Outbound, Output, Source,
};

/// Applies `event` to partition 0 at `at` through the driver (on the wall
/// clock, here `at`: no timer fires before the event).
pub fn apply(engine: &Engine, state: &mut MemoryState, event: &Event, at: i64) -> EventOutput {
    let config = DriverConfig {
        clock: Clock::Wall,
        inputs: 2,
        idle_timeout_ms: 0,
        pacing: ScanPacing::Rate,
        timers_per_batch: usize::MAX,
        real_wall_clock: true,
    };
    let mut out = Output::default();
    let result = Driver::new(engine.clone(), config).apply(state, 0, Source::Input(0), event, at, &mut out).unwrap();
    EventOutput { result, emits: out.emits }
}

/// Fires every timer of partition 0 due by `now`, through the driver (event
/// time: each at its own due time, cascades due already included).
pub fn fire_due(engine: &Engine, state: &mut MemoryState, now: i64) -> Vec<Outbound> {
    let mut out = Output::default();
    Driver::replay(engine.clone()).fire_through(state, 0, now, &mut out).unwrap();
    out.emits
}
