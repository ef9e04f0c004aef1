//! The shared test kit, plus firing timers through the driver.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub use cvm_testkit::*;

use cvm_engine::{MemoryState, Outbound};

/// Fires every timer of partition 0 due by `now`, through the driver the
/// ingest loop uses (event time: each at its own due time).
pub fn fire_due(engine: &cvm_engine::Engine, state: &mut MemoryState, now: i64) -> Vec<Outbound> {
    let mut out = cvm_engine::Output::default();
    cvm_engine::Driver::replay(engine.clone()).fire_through(state, 0, now, &mut out).unwrap();
    out.emits
}
