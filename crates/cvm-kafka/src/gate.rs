//! Which partitions' outbox entries this instance may publish.
//!
//! The outbox is this instance's, but what it holds for a partition is only
//! valid while the instance owns the partition. After a crash, entries of a
//! partition that another instance has since taken over (restoring it from
//! the changelog and deciding its input again, under the same ids) must
//! never be sent: they would repeat offers the new owner sent. So an entry
//! is published only once its partition is **open**: assigned to one of this
//! instance's workers and restored (a restore that finds another writer's
//! history drops this instance's entries of the partition).
//!
//! A revoke closes its partitions and then waits for the publishing round in
//! flight to end, so that no transaction carrying them commits after the
//! partition was released. Entries of a closed partition stay in the
//! outbox: if the partition comes back without anyone else having written
//! it, they are still the truth and are sent then.

use std::{
    collections::BTreeSet,
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

/// The open partitions, shared by the workers (which open and close them)
/// and the publisher (which reads them at the start of each round).
#[derive(Debug, Default)]
pub struct PublishGate {
    state: Mutex<GateState>,
    round_ended: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    open: BTreeSet<u32>,
    /// Bumped whenever a partition opens: the publisher then looks again
    /// at entries it skipped.
    opened: u64,
    /// The round in flight, if any (rounds are numbered from 1).
    in_flight: Option<u64>,
    rounds: u64,
}

/// What the publisher may send in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Round {
    open: BTreeSet<u32>,
    /// [`GateState::opened`] when the round began.
    pub(crate) opened: u64,
}

impl Round {
    /// Whether an entry queued by `source` may be sent in this round
    /// (entries of no partition, from older stores, always may).
    pub(crate) fn admits(&self, source: Option<u32>) -> bool {
        source.is_none_or(|p| self.open.contains(&p))
    }
}

impl PublishGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens `partitions`: assigned and restored.
    pub fn open(&self, partitions: impl IntoIterator<Item = u32>) {
        let mut s = self.lock();
        s.open.extend(partitions);
        s.opened += 1;
    }

    /// Closes `partitions`, then waits (at most `wait`) until a round that
    /// began while they were open has ended; returns whether it did.
    pub fn close(&self, partitions: impl IntoIterator<Item = u32>, wait: Duration) -> bool {
        let mut s = self.lock();
        for p in partitions {
            s.open.remove(&p);
        }
        let Some(round) = s.in_flight else { return true };
        let deadline = Instant::now() + wait;
        while s.in_flight == Some(round) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.round_ended.wait_timeout(s, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// Whether `partition` is open.
    pub fn is_open(&self, partition: u32) -> bool {
        self.lock().open.contains(&partition)
    }

    /// Starts a publishing round with the partitions open now.
    pub(crate) fn begin_round(&self) -> Round {
        let mut s = self.lock();
        s.rounds += 1;
        s.in_flight = Some(s.rounds);
        Round { open: s.open.clone(), opened: s.opened }
    }

    /// Ends the round in flight.
    pub(crate) fn end_round(&self) {
        self.lock().in_flight = None;
        self.round_ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_round_admits_what_was_open_when_it_began() {
        let gate = PublishGate::default();
        gate.open([1, 2]);
        let round = gate.begin_round();
        gate.end_round();
        assert!(round.admits(Some(1)) && round.admits(None) && !round.admits(Some(3)));
        assert!(gate.close([1], Duration::ZERO), "no round in flight: closing is immediate");
        assert!(!gate.begin_round().admits(Some(1)));
    }

    #[test]
    fn closing_waits_for_the_round_in_flight() {
        let gate = Arc::new(PublishGate::default());
        gate.open([4]);
        let opened = gate.begin_round().opened;
        assert!(!gate.close([4], Duration::from_millis(20)), "the round has not ended");
        let ender = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                gate.end_round();
            })
        };
        gate.open([4]);
        assert!(gate.close([4], Duration::from_secs(5)), "it ends within the wait");
        ender.join().unwrap();
        assert!(gate.begin_round().opened > opened, "opening again tells the publisher to look back");
    }
}
