//! An in-memory [`StateTxn`], [`TimerQueue`] and [`ProfileScan`], for
//! tests, simulation, training and examples: the [`Driver`](crate::driver::Driver)
//! runs on it exactly as on the RocksDB store.

use std::collections::{BTreeMap, HashMap, HashSet};

use cvm_proto::v1::AppEvent;

use crate::{
    attribution::{Stats, StatsKey},
    budget::Ledger,
    driver::{ProfileScan, SweepProgress, TimerQueue},
    models::{ArmCounts, ArmKey},
    profile::Profile,
    timers::{Timer, TimerKey},
    StateTxn, StoreError,
};

/// State held in hash maps; every write is immediately visible and nothing
/// is durable.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    profiles: HashMap<(u32, String), Profile>,
    seen: HashSet<(u32, String)>,
    erased: HashSet<(u32, String)>,
    devices: HashMap<(u32, String), String>,
    held: HashMap<(u32, String), Vec<AppEvent>>,
    timers: BTreeMap<(u32, Vec<u8>), Timer>,
    stats: HashMap<(u32, StatsKey), Stats>,
    arms: HashMap<(u32, ArmKey), ArmCounts>,
    budgets: HashMap<(u32, u64), Ledger>,
    /// Per partition, the earliest due time set since it was last taken.
    earliest_set: HashMap<u32, i64>,
    sweeps: HashMap<(String, u32, u32), SweepProgress>,
}

impl MemoryState {
    /// Number of stored profiles.
    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    /// Every stored profile of `partition` with its customer id, in id order.
    pub fn profiles(&self, partition: u32) -> Vec<(String, Profile)> {
        let mut v: Vec<_> = self
            .profiles
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .map(|((_, c), p)| (c.clone(), p.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Attribution aggregates summed over partitions, in key order.
    pub fn stats(&self) -> Vec<(StatsKey, Stats)> {
        let mut merged: BTreeMap<StatsKey, Stats> = BTreeMap::new();
        for ((_, key), s) in &self.stats {
            merged.entry(key.clone()).or_default().add(s);
        }
        merged.into_iter().collect()
    }

    /// Bandit arms summed over partitions, in key order.
    pub fn arms(&self) -> Vec<(ArmKey, ArmCounts)> {
        let mut merged: BTreeMap<ArmKey, ArmCounts> = BTreeMap::new();
        for ((_, key), c) in &self.arms {
            merged.entry(*key).or_default().add(*c);
        }
        merged.into_iter().collect()
    }

    /// Whether `device_id` is linked to a customer on `partition`.
    pub fn device_linked(&self, partition: u32, device_id: &str) -> bool {
        self.devices.contains_key(&(partition, device_id.to_owned()))
    }
}

impl StateTxn for MemoryState {
    fn profile(&mut self, partition: u32, customer_id: &str) -> Result<Option<Profile>, StoreError> {
        Ok(self.profiles.get(&(partition, customer_id.to_owned())).cloned())
    }
    fn put_profile(&mut self, partition: u32, customer_id: &str, profile: Profile) -> Result<(), StoreError> {
        self.profiles.insert((partition, customer_id.to_owned()), profile);
        Ok(())
    }
    fn first_sighting(&mut self, partition: u32, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.seen.insert((partition, event_id.to_owned())))
    }
    fn mark_erased(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError> {
        self.erased.insert((partition, customer_id.to_owned()));
        Ok(())
    }
    fn was_erased(&mut self, partition: u32, customer_id: &str) -> Result<bool, StoreError> {
        Ok(self.erased.contains(&(partition, customer_id.to_owned())))
    }
    fn customer_of_device(&mut self, partition: u32, device_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.devices.get(&(partition, device_id.to_owned())).cloned())
    }
    fn link_device(&mut self, partition: u32, device_id: &str, customer_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), customer_id.to_owned());
        Ok(())
    }
    fn set_timer(&mut self, partition: u32, timer: Timer) -> Result<(), StoreError> {
        let earliest = self.earliest_set.entry(partition).or_insert(timer.due_ms);
        *earliest = (*earliest).min(timer.due_ms);
        self.timers.insert((partition, timer.key().encode()), timer);
        Ok(())
    }
    fn timer_due(&mut self, partition: u32, key: &TimerKey) -> Result<Option<i64>, StoreError> {
        Ok(self.timers.get(&(partition, key.encode())).map(|t| t.due_ms))
    }
    fn cancel_timer(&mut self, partition: u32, key: &TimerKey) -> Result<bool, StoreError> {
        Ok(self.timers.remove(&(partition, key.encode())).is_some())
    }
    fn timers_of(&mut self, partition: u32, customer_id: &str) -> Result<Vec<TimerKey>, StoreError> {
        let prefix = TimerKey::customer_prefix(customer_id);
        Ok(self
            .timers
            .iter()
            .filter(|((p, k), _)| *p == partition && k.starts_with(&prefix))
            .map(|(_, t)| t.key())
            .collect())
    }
    fn delete_profile(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError> {
        self.profiles.remove(&(partition, customer_id.to_owned()));
        Ok(())
    }
    fn unlink_device(&mut self, partition: u32, device_id: &str) -> Result<(), StoreError> {
        self.devices.remove(&(partition, device_id.to_owned()));
        Ok(())
    }

    fn held_anonymous(&mut self, partition: u32, device_id: &str) -> Result<Vec<AppEvent>, StoreError> {
        Ok(self.held.get(&(partition, device_id.to_owned())).cloned().unwrap_or_default())
    }

    fn hold_anonymous(&mut self, partition: u32, device_id: &str, events: Vec<AppEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            self.held.remove(&(partition, device_id.to_owned()));
        } else {
            self.held.insert((partition, device_id.to_owned()), events);
        }
        Ok(())
    }
    fn add_stats(&mut self, partition: u32, key: StatsKey, delta: &Stats) -> Result<(), StoreError> {
        self.stats.entry((partition, key)).or_default().add(delta);
        Ok(())
    }
    fn arm(&mut self, partition: u32, key: &ArmKey) -> Result<ArmCounts, StoreError> {
        Ok(self.arms.get(&(partition, *key)).copied().unwrap_or_default())
    }
    fn add_arm(&mut self, partition: u32, key: &ArmKey, delta: ArmCounts) -> Result<(), StoreError> {
        self.arms.entry((partition, *key)).or_default().add(delta);
        Ok(())
    }
    fn budget(&mut self, partition: u32, campaign: u64) -> Result<Ledger, StoreError> {
        Ok(self.budgets.get(&(partition, campaign)).cloned().unwrap_or_default())
    }
    fn put_budget(&mut self, partition: u32, campaign: u64, ledger: Ledger) -> Result<(), StoreError> {
        self.budgets.insert((partition, campaign), ledger);
        Ok(())
    }
}

impl TimerQueue for MemoryState {
    fn due_timers(&mut self, partition: u32, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let mut due: Vec<&Timer> =
            self.timers.iter().filter(|((p, _), t)| *p == partition && t.due_ms <= now_ms).map(|(_, t)| t).collect();
        due.sort_by_key(|t| (t.due_ms, t.key().encode()));
        Ok(due.into_iter().take(limit).cloned().collect())
    }
    fn earliest_due(&mut self, partition: u32) -> Result<Option<i64>, StoreError> {
        Ok(self.timers.iter().filter(|((p, _), _)| *p == partition).map(|(_, t)| t.due_ms).min())
    }
    fn take_earliest_set(&mut self, partition: u32) -> Option<i64> {
        self.earliest_set.remove(&partition)
    }
}

impl ProfileScan for MemoryState {
    fn customers_after(&mut self, partition: u32, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<&String> =
            self.profiles.keys().filter(|(p, c)| *p == partition && c.as_str() > after).map(|(_, c)| c).collect();
        ids.sort_unstable();
        Ok(ids.into_iter().take(limit).cloned().collect())
    }
    fn sweep_progress(
        &mut self,
        offer_id: &str,
        version: u32,
        partition: u32,
    ) -> Result<Option<SweepProgress>, StoreError> {
        Ok(self.sweeps.get(&(offer_id.to_owned(), version, partition)).cloned())
    }
    fn set_sweep_progress(&mut self, offer_id: &str, version: u32, partition: u32, progress: SweepProgress) {
        self.sweeps.insert((offer_id.to_owned(), version, partition), progress);
    }
}
