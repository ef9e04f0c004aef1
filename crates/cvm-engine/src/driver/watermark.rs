//! Per-partition event-time watermarks over co-partitioned inputs.
//!
//! Purchases and app events arrive on two topics that are read at different
//! speeds. If a partition's clock were the latest event time of either, a
//! timer could fire although an earlier event that cancels it is still
//! unread on the other topic. The watermark is the minimum over the inputs
//! of the latest event time read from each, so it only passes a time once
//! every input has. An input that has sent nothing for the idle timeout (of
//! wall time) no longer holds it back — a quiet topic must not stop time —
//! and when every input is idle the watermark is the latest time seen. It
//! never goes backwards.
//!
//! A partition's clock is committed with its state ([`ClockState`]) and
//! resumed when the partition is gained again — after a restart or on
//! another instance — so that time does not start over: otherwise an input
//! not read since would hold timers back while the other input's later
//! events are applied, and the order of events and timers would change.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a partition's clock needs to resume: the latest event time read
/// from each input, and the highest watermark handed out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockState {
    /// Per input, the latest event time read (if any).
    pub inputs: Vec<Option<i64>>,
    /// The highest watermark handed out.
    pub emitted: Option<i64>,
}

/// Watermarks of every partition seen; see the module docs.
#[derive(Debug, Clone)]
pub struct Watermarks {
    inputs: usize,
    idle_timeout_ms: i64,
    partitions: HashMap<u32, PartitionClock>,
}

#[derive(Debug, Clone)]
struct PartitionClock {
    /// Wall time the partition was first seen: an input never heard from
    /// holds the watermark back until the idle timeout has passed since.
    first_seen_wall: i64,
    /// Per input: (latest event time, wall time of its last event).
    inputs: Vec<Option<(i64, i64)>>,
    /// The highest watermark handed out.
    emitted: Option<i64>,
}

impl Watermarks {
    /// Watermarks over `inputs` inputs with the given idle timeout.
    pub fn new(inputs: usize, idle_timeout_ms: i64) -> Self {
        Self { inputs: inputs.max(1), idle_timeout_ms, partitions: HashMap::new() }
    }

    /// Records an event of `input` on `partition` with event time `at_ms`,
    /// read at wall time `wall_ms`.
    pub fn observe(&mut self, partition: u32, input: usize, at_ms: i64, wall_ms: i64) {
        let n = self.inputs;
        let clock = self.partitions.entry(partition).or_insert_with(|| PartitionClock {
            first_seen_wall: wall_ms,
            inputs: vec![None; n],
            emitted: None,
        });
        if let Some(slot) = clock.inputs.get_mut(input.min(n - 1)) {
            *slot = Some(slot.map_or((at_ms, wall_ms), |(latest, _)| (latest.max(at_ms), wall_ms)));
        }
    }

    /// The state of `partition`'s clock, to commit with its state.
    pub fn state(&self, partition: u32) -> Option<ClockState> {
        let clock = self.partitions.get(&partition)?;
        Some(ClockState { inputs: clock.inputs.iter().map(|i| i.map(|(at, _)| at)).collect(), emitted: clock.emitted })
    }

    /// Resumes `partition`'s clock from a committed state at wall time
    /// `wall_ms`: every input it had read counts as heard from now.
    pub fn resume(&mut self, partition: u32, state: &ClockState, wall_ms: i64) {
        let n = self.inputs;
        let inputs = (0..n).map(|i| state.inputs.get(i).copied().flatten().map(|at| (at, wall_ms))).collect();
        self.partitions.insert(partition, PartitionClock { first_seen_wall: wall_ms, inputs, emitted: state.emitted });
    }

    /// Forgets `partition`'s clock: it moved to another owner and back, and
    /// its time starts again from the events read next.
    pub fn forget(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    /// The latest event time read on `partition` from any input, if any:
    /// the centre of the window a new event's time must fall in.
    pub fn latest(&self, partition: u32) -> Option<i64> {
        let clock = self.partitions.get(&partition)?;
        clock.inputs.iter().flatten().map(|(at, _)| *at).max()
    }

    /// The watermark of `partition` at wall time `wall_ms`, if it has one.
    pub fn get(&mut self, partition: u32, wall_ms: i64) -> Option<i64> {
        let idle = self.idle_timeout_ms;
        let clock = self.partitions.get_mut(&partition)?;
        let is_active = |last_wall: i64| wall_ms.saturating_sub(last_wall) < idle;
        let mut active_min: Option<i64> = None;
        let mut waiting = false;
        let mut latest: Option<i64> = None;
        for input in &clock.inputs {
            match input {
                Some((at, last_wall)) => {
                    latest = Some(latest.map_or(*at, |l| l.max(*at)));
                    if is_active(*last_wall) {
                        active_min = Some(active_min.map_or(*at, |m| m.min(*at)));
                    }
                }
                None => waiting |= is_active(clock.first_seen_wall),
            }
        }
        let current = if waiting { None } else { active_min.or(latest) };
        clock.emitted = match (clock.emitted, current) {
            (Some(e), Some(c)) => Some(e.max(c)),
            (e, c) => e.or(c),
        };
        clock.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: i64 = 1_000;

    #[test]
    fn the_slowest_input_holds_time_back() {
        let mut w = Watermarks::new(2, IDLE);
        w.observe(0, 0, 100, 0);
        assert_eq!(w.get(0, 0), None, "the other input has not been heard from yet");
        w.observe(0, 1, 40, 1);
        assert_eq!(w.get(0, 1), Some(40));
        w.observe(0, 1, 70, 2);
        assert_eq!(w.get(0, 2), Some(70));
        w.observe(0, 1, 150, 3);
        assert_eq!(w.get(0, 3), Some(100));
    }

    #[test]
    fn an_idle_input_stops_holding_time_back_and_time_never_goes_back() {
        let mut w = Watermarks::new(2, IDLE);
        w.observe(0, 0, 100, 0);
        assert_eq!(w.get(0, IDLE - 1), None);
        assert_eq!(w.get(0, IDLE), Some(100), "never-heard input idle after the timeout");
        w.observe(0, 1, 50, IDLE + 1);
        assert_eq!(w.get(0, IDLE + 1), Some(100), "a late input does not move the watermark back");
        w.observe(0, 0, 300, 2 * IDLE);
        assert_eq!(w.get(0, 2 * IDLE), Some(100), "input 1 is active and at 50");
        assert_eq!(w.get(0, 2 * IDLE + 1), Some(300), "input 1 went idle");
    }

    #[test]
    fn a_resumed_clock_continues_where_it_stopped() {
        let mut w = Watermarks::new(2, IDLE);
        w.observe(0, 0, 100, 0);
        w.observe(0, 1, 70, 0);
        assert_eq!(w.get(0, 0), Some(70));
        let state = w.state(0).unwrap();
        let mut resumed = Watermarks::new(2, IDLE);
        resumed.resume(0, &state, 5_000);
        assert_eq!(resumed.get(0, 5_000), Some(70), "both inputs count as heard from: no wait, no jump");
        resumed.observe(0, 1, 90, 5_001);
        assert_eq!(resumed.get(0, 5_001), Some(90), "input 0 still holds at 100");
        assert_eq!(resumed.state(0).unwrap().inputs, vec![Some(100), Some(90)]);
    }

    #[test]
    fn partitions_and_a_single_input_are_independent() {
        let mut w = Watermarks::new(1, 0);
        w.observe(3, 0, 10, 0);
        w.observe(3, 0, 5, 0);
        assert_eq!(w.get(3, 0), Some(10), "one input: the latest time read");
        assert_eq!(w.get(4, 0), None);
    }
}
