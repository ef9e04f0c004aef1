//! The one event driver: how events, durable timers and profile scans are
//! fed to the [`Engine`], for every path that runs the decision core — the
//! Kafka ingest loop, `offers simulate`, `train`, the benchmarks, the golden
//! tests.
//!
//! Before it there were five copies of "fire the partition's due timers
//! before each event, each at its own due time; pace sweeps between
//! batches; collect what to publish", each claiming to do exactly what the
//! ingest loop did. Now the ingest loop keeps only what is Kafka's (poll,
//! decode, dead letters, offsets, batching, meters) and hands decoded events
//! to a [`Driver`]; the replays hand it events from files. Same code, same
//! decisions.
//!
//! **Time.** With [`Clock::Wall`] an event is decided at the wall time the
//! caller passes, and due timers fire in [`Driver::tick`]. With
//! [`Clock::EventTime`] an event is decided at its own timestamp, and a
//! partition's clock is a [`watermark`]: the minimum, over the partition's
//! co-partitioned inputs (purchases, app events), of the latest event time
//! read from each. Timers fire only once the watermark has passed their due
//! time, each at its due time, before the event that moved it. So an
//! abandoned-cart push due at 09:00 does not fire while the purchases topic,
//! read more slowly, has only reached 08:00 — the purchase at 08:30 that
//! cancels it is applied first. An input that has sent nothing for
//! [`DriverConfig::idle_timeout_ms`] of wall time stops holding the
//! watermark back.
//!
//! The driver is synchronous and owns no state: it works through a
//! [`StateTxn`] that is also a [`TimerQueue`] (and a [`ProfileScan`] for
//! sweeps), which the caller commits. Call [`Driver::begin`] when a new
//! transaction starts.

pub mod scan;
pub mod watermark;

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    catalog::Catalog,
    engine::{Engine, Outbound},
    events::{Event, EventResult},
    timers::{Timer, TimerKey, TimerKind},
    validation::{validate, TimeWindow},
    StateTxn, StoreError,
};

pub use scan::{ProfileScan, ScanKind, ScanPacing, ScanReport, SweepProgress};
pub use watermark::{ClockState, Watermarks};

/// The time decisions are made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// The wall clock (production).
    #[default]
    Wall,
    /// Each event's own timestamp; timers fire by the partition's watermark
    /// (replay, simulation, the demo).
    EventTime,
}

/// How a [`Driver`] keeps time and paces scans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriverConfig {
    /// Wall clock or event time.
    pub clock: Clock,
    /// Co-partitioned inputs that make up a partition's watermark (the Kafka
    /// edge has two: purchases and app events; a file replay has one).
    pub inputs: usize,
    /// Wall milliseconds after which an input that sent nothing stops
    /// holding its partitions' watermark back.
    pub idle_timeout_ms: i64,
    /// How fast profile scans (sweeps, inactivity backfills) may go.
    pub pacing: ScanPacing,
    /// The most timers events may fire between two [`Driver::begin`]s (one
    /// transaction): a watermark that jumps over a day of due timers must
    /// not make one batch unbounded. The rest fire in later ticks and
    /// batches, each still at its own due time.
    pub timers_per_batch: usize,
    /// In event time, whether the `wall_ms` given is the real wall clock,
    /// which then bounds how far ahead events may lie (`max_event_lead`):
    /// true at the Kafka edge; false in replays of recorded history, whose
    /// events may lie anywhere in time (and whose callers pass no wall time).
    pub real_wall_clock: bool,
}

impl DriverConfig {
    /// A replay of one recorded stream: event time, one input, scans run to
    /// the end at once.
    pub fn replay() -> Self {
        Self {
            clock: Clock::EventTime,
            inputs: 1,
            idle_timeout_ms: 0,
            pacing: ScanPacing::Unlimited,
            timers_per_batch: usize::MAX,
            real_wall_clock: false,
        }
    }

    /// Live on the wall clock, one input, scans at their rates (as the
    /// ingest loop with `kafka.clock = "wall"`): for benchmarks.
    pub fn wall_clock() -> Self {
        Self {
            clock: Clock::Wall,
            inputs: 1,
            idle_timeout_ms: 0,
            pacing: ScanPacing::Rate,
            timers_per_batch: TIMERS_PER_BATCH,
            real_wall_clock: true,
        }
    }
}

/// Timers fired per partition per [`Driver::tick`]; the rest wait for the next.
pub const TIMERS_PER_TICK: usize = 2_000;

/// A default for [`DriverConfig::timers_per_batch`] at the Kafka edge.
pub const TIMERS_PER_BATCH: usize = 20_000;

/// Pending timers in due order, as the transaction sees them.
pub trait TimerQueue {
    /// Up to `limit` pending timers of `partition` due at or before
    /// `now_ms`, earliest first.
    fn due_timers(&mut self, partition: u32, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError>;
    /// When the earliest pending timer of `partition` is due.
    fn earliest_due(&mut self, partition: u32) -> Result<Option<i64>, StoreError>;
    /// The earliest due time among the timers set on `partition` since the
    /// last call (so a caller can keep a "next timer" hint without a scan).
    fn take_earliest_set(&mut self, partition: u32) -> Option<i64>;
}

/// Where an event came from: one of the watermark's inputs, or a side input
/// (erasure requests) that does not move time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Watermark input number `n` (`0..DriverConfig::inputs`).
    Input(usize),
    /// Not part of the watermark.
    Side,
}

/// What one call of the driver produced, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    /// What to publish: timers' decisions first, then the event's.
    pub emits: Vec<Outbound>,
    /// The partition each of `emits` was decided for (same length): only
    /// that partition's owner may publish it.
    partitions: Vec<u32>,
    /// Timers fired, by [`TimerKind`] (`kind as usize`).
    pub timers_fired: [u64; TimerKind::ALL.len()],
}

impl Output {
    fn fired(&mut self, partition: u32, timer: &Timer, emits: Vec<Outbound>) {
        self.timers_fired[timer.kind as usize] += 1;
        self.add(partition, emits);
    }

    pub(crate) fn add(&mut self, partition: u32, emits: Vec<Outbound>) {
        self.partitions.extend(std::iter::repeat_n(partition, emits.len()));
        self.emits.extend(emits);
    }

    /// Each emit with the partition it was decided for.
    pub fn by_partition(&self) -> impl Iterator<Item = (u32, &Outbound)> {
        self.partitions.iter().copied().zip(&self.emits)
    }

    /// Keeps only the emits `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Outbound) -> bool) {
        let pairs = std::mem::take(&mut self.emits).into_iter().zip(std::mem::take(&mut self.partitions));
        (self.emits, self.partitions) = pairs.filter(|(emit, _)| keep(emit)).unzip();
    }
}

/// Feeds events, timers and scans to the engine; see the module docs.
#[derive(Debug)]
pub struct Driver {
    engine: Engine,
    config: DriverConfig,
    watermarks: Watermarks,
    /// Per partition, no pending timer is due before this; learned lazily,
    /// valid for the current transaction only.
    next_due: HashMap<u32, Option<i64>>,
    /// Timers events may still fire in this transaction.
    timer_budget: usize,
    /// The timer being fired, until its firing returns: if it panics, the
    /// caller learns which one through [`Driver::take_failed_timer`].
    firing: Option<(u32, TimerKey)>,
    scans: scan::Scans,
}

impl Driver {
    /// A driver of `engine`.
    pub fn new(engine: Engine, config: DriverConfig) -> Self {
        Self {
            engine,
            watermarks: Watermarks::new(config.inputs, config.idle_timeout_ms),
            config,
            next_due: HashMap::new(),
            timer_budget: config.timers_per_batch,
            firing: None,
            scans: scan::Scans::default(),
        }
    }

    /// A driver for replaying one recorded stream ([`DriverConfig::replay`]).
    pub fn replay(engine: Engine) -> Self {
        Self::new(engine, DriverConfig::replay())
    }

    /// The engine driven.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Swaps in a reloaded catalog.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.engine.set_catalog(catalog);
    }

    /// The timer whose firing did not return (it panicked), if any: the
    /// caller drops the transaction and cancels this timer in the next, so
    /// a bug costs one timer, not a crash loop.
    pub fn take_failed_timer(&mut self) -> Option<(u32, TimerKey)> {
        self.firing.take()
    }

    /// Call when `partition` is gained (its state may come from another
    /// owner's history): its event-time clock resumes from `clock`, the
    /// state committed with it ([`Driver::clock_state`]), or starts afresh.
    pub fn gain_partition(&mut self, partition: u32, clock: Option<&ClockState>, wall_ms: i64) {
        self.next_due.remove(&partition);
        match clock {
            Some(state) => self.watermarks.resume(partition, state, wall_ms),
            None => self.watermarks.forget(partition),
        }
    }

    /// The state of `partition`'s event-time clock, to commit with its state.
    pub fn clock_state(&self, partition: u32) -> Option<ClockState> {
        self.watermarks.state(partition)
    }

    /// Call when a new transaction starts: what the driver learned of the
    /// last one's pending timers may have been committed or thrown away.
    pub fn begin(&mut self) {
        self.next_due.clear();
        self.timer_budget = self.config.timers_per_batch;
    }

    /// The clock of `partition` at wall time `wall_ms`: the wall time, or
    /// the partition's watermark (`None` until it has one).
    pub fn clock(&mut self, partition: u32, wall_ms: i64) -> Option<i64> {
        match self.config.clock {
            Clock::Wall => Some(wall_ms),
            Clock::EventTime => self.watermarks.get(partition, wall_ms),
        }
    }

    /// Applies one decoded event of `partition` read from `source` at wall
    /// time `wall_ms`: validates it against the engine's
    /// [`InputLimits`](crate::InputLimits) and the partition's clock, drops
    /// it if seen before, and only then — in event time — lets it move the
    /// watermark and fires the timers that lets pass, before the event.
    /// An invalid or repeated event does not move time.
    pub fn apply<S: StateTxn + TimerQueue>(
        &mut self,
        state: &mut S,
        partition: u32,
        source: Source,
        event: &Event,
        wall_ms: i64,
        out: &mut Output,
    ) -> Result<EventResult, StoreError> {
        let limits = &self.engine.config().input;
        let window = match self.config.clock {
            Clock::Wall => TimeWindow::around_wall(limits, wall_ms),
            Clock::EventTime => TimeWindow::in_event_time(
                limits,
                self.watermarks.latest(partition),
                self.config.real_wall_clock.then_some(wall_ms),
            ),
        };
        if let Err(rejection) = validate(event, limits, window) {
            return Ok(EventResult::Invalid(rejection));
        }
        if !self.engine.admit(state, partition, event)? {
            return Ok(EventResult::Duplicate);
        }
        let now = match self.config.clock {
            Clock::Wall => wall_ms,
            Clock::EventTime => {
                if let Source::Input(input) = source {
                    self.watermarks.observe(partition, input, event.timestamp_ms(), wall_ms);
                }
                if let Some(watermark) = self.watermarks.get(partition, wall_ms) {
                    self.fire_through(state, partition, watermark, out)?;
                }
                event.timestamp_ms()
            }
        };
        let processed = self.engine.apply_admitted(state, partition, event, now)?;
        self.learn_timers_set(state, partition);
        out.add(partition, processed.emits);
        Ok(processed.result)
    }

    /// Fires up to [`TIMERS_PER_TICK`] due timers of each of `partitions` by
    /// their clocks; returns whether any fired. The Kafka edge calls it
    /// between batches: on the wall clock it is what fires timers at all; in
    /// event time it catches up with a watermark moved by an input going idle.
    pub fn tick<S: StateTxn + TimerQueue>(
        &mut self,
        state: &mut S,
        partitions: &[u32],
        wall_ms: i64,
        out: &mut Output,
    ) -> Result<bool, StoreError> {
        let mut fired = false;
        for &partition in partitions {
            if let Some(now) = self.clock(partition, wall_ms) {
                fired |= self.fire_page(state, partition, now, TIMERS_PER_TICK, out)? > 0;
            }
        }
        Ok(fired)
    }

    /// Fires every timer of `partition` due by `until_ms`, including those
    /// that firing sets (cascades) when they are due already, within what is
    /// left of [`DriverConfig::timers_per_batch`]. Replays call it to let
    /// time pass after the last event.
    pub fn fire_through<S: StateTxn + TimerQueue>(
        &mut self,
        state: &mut S,
        partition: u32,
        until_ms: i64,
        out: &mut Output,
    ) -> Result<(), StoreError> {
        let hint = match self.next_due.get(&partition) {
            Some(hint) => *hint,
            None => *self.next_due.entry(partition).or_insert(state.earliest_due(partition)?),
        };
        if hint.is_none_or(|due| due > until_ms) {
            return Ok(());
        }
        while self.timer_budget > 0 {
            let fired = self.fire_page(state, partition, until_ms, TIMERS_PER_TICK.min(self.timer_budget), out)?;
            if fired == 0 {
                break;
            }
            self.timer_budget -= fired;
        }
        self.next_due.insert(partition, state.earliest_due(partition)?);
        Ok(())
    }

    /// Fires up to `limit` timers of `partition` due by `now`, earliest
    /// first; returns how many. In event time each fires at its own due
    /// time, as in the original run; on the wall clock, now.
    fn fire_page<S: StateTxn + TimerQueue>(
        &mut self,
        state: &mut S,
        partition: u32,
        now: i64,
        limit: usize,
        out: &mut Output,
    ) -> Result<usize, StoreError> {
        let due = state.due_timers(partition, now, limit)?;
        for timer in &due {
            let at = match self.config.clock {
                Clock::EventTime => timer.due_ms,
                Clock::Wall => now,
            };
            self.firing = Some((partition, timer.key()));
            let fired = self.engine.fire(state, partition, timer, at);
            self.firing = None;
            out.fired(partition, timer, fired?);
        }
        if !due.is_empty() {
            self.learn_timers_set(state, partition);
        }
        Ok(due.len())
    }

    /// Keeps the "next timer" hint of `partition` exact after the engine set timers.
    fn learn_timers_set<S: TimerQueue>(&mut self, state: &mut S, partition: u32) {
        if let Some(set) = state.take_earliest_set(partition) {
            if let Some(hint) = self.next_due.get_mut(&partition) {
                *hint = Some(hint.map_or(set, |h| h.min(set)));
            }
        }
    }
}
