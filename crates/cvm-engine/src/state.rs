//! The store interface the decision core reads and writes state through.

use cvm_proto::v1::AppEvent;

use crate::{
    budget::Ledger,
    error::StoreError,
    models::{ArmCounts, ArmKey},
    profile::Profile,
    stats::{Stats, StatsKey},
    timers::{Timer, TimerKey},
};

/// One unit of state work: reads see the writes made earlier in the same
/// transaction; nothing is durable until the owner commits it (together with
/// the consumed offsets and the outbox, in the Kafka edge).
///
/// Every key is scoped by the Kafka `partition` the event came from, so the
/// state of a partition can move with it.
pub trait StateTxn {
    /// The profile of `customer_id`, if one exists.
    fn profile(&mut self, partition: u32, customer_id: &str) -> Result<Option<Profile>, StoreError>;
    /// Stores `profile` for `customer_id`.
    fn put_profile(&mut self, partition: u32, customer_id: &str, profile: Profile) -> Result<(), StoreError>;
    /// Records that `event_id` was applied; returns `false` when it already
    /// was (a replay or a duplicate send), in which case the caller must not
    /// apply it again.
    fn first_sighting(&mut self, partition: u32, event_id: &str) -> Result<bool, StoreError>;
    /// The customer a device was identified as, if any.
    fn customer_of_device(&mut self, partition: u32, device_id: &str) -> Result<Option<String>, StoreError>;
    /// Links `device_id` to `customer_id`.
    fn link_device(&mut self, partition: u32, device_id: &str, customer_id: &str) -> Result<(), StoreError>;
    /// Sets `timer`, replacing a pending timer with the same key.
    fn set_timer(&mut self, partition: u32, timer: Timer) -> Result<(), StoreError>;
    /// When the pending timer `key` is due, if one is pending.
    fn timer_due(&mut self, partition: u32, key: &TimerKey) -> Result<Option<i64>, StoreError>;
    /// Cancels the pending timer `key`; returns whether one was pending.
    fn cancel_timer(&mut self, partition: u32, key: &TimerKey) -> Result<bool, StoreError>;
    /// The keys of `customer_id`'s pending timers.
    fn timers_of(&mut self, partition: u32, customer_id: &str) -> Result<Vec<TimerKey>, StoreError>;
    /// Removes `customer_id`'s profile.
    fn delete_profile(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError>;
    /// Removes the link of `device_id` to its customer.
    fn unlink_device(&mut self, partition: u32, device_id: &str) -> Result<(), StoreError>;
    /// The anonymous app events of `device_id` held until its link
    /// arrives, oldest first.
    fn held_anonymous(&mut self, partition: u32, device_id: &str) -> Result<Vec<AppEvent>, StoreError>;
    /// Replaces them (empty: none held).
    fn hold_anonymous(&mut self, partition: u32, device_id: &str, events: Vec<AppEvent>) -> Result<(), StoreError>;
    /// Marks `customer_id` as erased just now, for as long as applied event
    /// ids are remembered (`store.dedup_retention`), so that events still
    /// on their way on other topics do not re-create the customer.
    fn mark_erased(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError>;
    /// Whether `customer_id` was erased within that time.
    fn was_erased(&mut self, partition: u32, customer_id: &str) -> Result<bool, StoreError>;
    /// Adds `delta` to the attribution aggregate `key` of `partition`.
    fn add_stats(&mut self, partition: u32, key: StatsKey, delta: &Stats) -> Result<(), StoreError>;
    /// What bandit arm `key` of `partition` has seen.
    fn arm(&mut self, partition: u32, key: &ArmKey) -> Result<ArmCounts, StoreError>;
    /// Adds `delta` to bandit arm `key` of `partition`.
    fn add_arm(&mut self, partition: u32, key: &ArmKey, delta: ArmCounts) -> Result<(), StoreError>;
    /// The budget ledger of the campaign with contact hash `campaign` in
    /// `partition` (empty when it has none).
    fn budget(&mut self, partition: u32, campaign: u64) -> Result<Ledger, StoreError>;
    /// Replaces that ledger.
    fn put_budget(&mut self, partition: u32, campaign: u64, ledger: Ledger) -> Result<(), StoreError>;
}
