//! An in-memory [`StateTxn`], for tests, simulation and examples.

use std::collections::{HashMap, HashSet};

use crate::{profile::Profile, StateTxn, StoreError};

/// State held in hash maps; every write is immediately visible and nothing
/// is durable.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    profiles: HashMap<(u32, String), Profile>,
    seen: HashSet<(u32, String)>,
    devices: HashMap<(u32, String), String>,
}

impl MemoryState {
    /// Number of stored profiles.
    pub fn profile_count(&self) -> usize {
        self.profiles.len()
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
    fn customer_of_device(&mut self, partition: u32, device_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.devices.get(&(partition, device_id.to_owned())).cloned())
    }
    fn link_device(&mut self, partition: u32, device_id: &str, customer_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), customer_id.to_owned());
        Ok(())
    }
}
