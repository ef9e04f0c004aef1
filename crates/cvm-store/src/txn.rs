//! The decision core's view of a [`Batch`]: reads see the batch's own
//! writes over the committed state.

use cvm_engine::{
    attribution::{Stats, StatsKey},
    budget::Ledger,
    models::{ArmCounts, ArmKey},
    Profile, StateTxn, StoreError, Timer, TimerKey,
};
use cvm_proto::{decode, encode, v1::AppEvent, Format};
use rocksdb::IteratorMode;

use crate::{backend, batch::Batch, keys::*};

impl StateTxn for Batch<'_> {
    fn profile(&mut self, partition: u32, customer_id: &str) -> Result<Option<Profile>, StoreError> {
        let key = (partition, customer_id.to_owned());
        match (self.profiles.get(&key), self.scanned.get(&key)) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(scanned)) => Profile::decode(scanned).map(Some),
            (None, None) => self.store.profile(partition, customer_id),
        }
    }

    fn put_profile(&mut self, partition: u32, customer_id: &str, profile: Profile) -> Result<(), StoreError> {
        self.profiles.insert((partition, customer_id.to_owned()), Some(profile));
        Ok(())
    }

    fn first_sighting(&mut self, partition: u32, event_id: &str) -> Result<bool, StoreError> {
        let key = (partition, event_id.to_owned());
        if self.seen.contains(&key) {
            return Ok(false);
        }
        let stored = self
            .store
            .db
            .get_pinned_cf(self.store.cf(CF_EVENTS), partition_key(partition, event_id))
            .map_err(backend)?;
        if stored.is_some() {
            return Ok(false);
        }
        self.seen.insert(key);
        Ok(true)
    }

    fn customer_of_device(&mut self, partition: u32, device_id: &str) -> Result<Option<String>, StoreError> {
        if let Some(c) = self.devices.get(&(partition, device_id.to_owned())) {
            return Ok(c.clone());
        }
        let v = self
            .store
            .db
            .get_pinned_cf(self.store.cf(CF_DEVICES), partition_key(partition, device_id))
            .map_err(backend)?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn link_device(&mut self, partition: u32, device_id: &str, customer_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), Some(customer_id.to_owned()));
        Ok(())
    }

    fn set_timer(&mut self, partition: u32, timer: Timer) -> Result<(), StoreError> {
        let key = timer.key().encode();
        let due = timer.due_ms;
        self.timer_change(partition, key)?.next = Some(timer);
        let earliest = self.earliest_set.entry(partition).or_insert(due);
        *earliest = (*earliest).min(due);
        Ok(())
    }

    fn timer_due(&mut self, partition: u32, key: &TimerKey) -> Result<Option<i64>, StoreError> {
        Ok(self.timer_change(partition, key.encode())?.next.as_ref().map(|t| t.due_ms))
    }

    fn cancel_timer(&mut self, partition: u32, key: &TimerKey) -> Result<bool, StoreError> {
        Ok(self.timer_change(partition, key.encode())?.next.take().is_some())
    }

    fn timers_of(&mut self, partition: u32, customer_id: &str) -> Result<Vec<TimerKey>, StoreError> {
        let prefix = timer_index_key(partition, &TimerKey::customer_prefix(customer_id));
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let index = self.store.cf(CF_TIMER_INDEX);
        for r in self.store.db.iterator_cf(index, IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (k, _) = r.map_err(backend)?;
            if !k.starts_with(&prefix) {
                break;
            }
            keys.push(k[4..].to_vec());
        }
        let customer_prefix = &prefix[4..];
        keys.extend(
            self.timers
                .keys()
                .filter(|(p, k)| *p == partition && k.starts_with(customer_prefix))
                .map(|(_, k)| k.clone()),
        );
        keys.sort();
        keys.dedup();
        let mut pending = Vec::new();
        for k in keys {
            if let Some(t) = &self.timer_change(partition, k)?.next {
                pending.push(t.key());
            }
        }
        Ok(pending)
    }

    fn mark_erased(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError> {
        self.erased.insert((partition, customer_id.to_owned()));
        Ok(())
    }

    fn was_erased(&mut self, partition: u32, customer_id: &str) -> Result<bool, StoreError> {
        if self.erased.contains(&(partition, customer_id.to_owned())) {
            return Ok(true);
        }
        let key = erased_key(partition, customer_id);
        Ok(self.store.db.get_pinned_cf(self.store.cf(CF_EVENTS), key).map_err(backend)?.is_some())
    }

    fn delete_profile(&mut self, partition: u32, customer_id: &str) -> Result<(), StoreError> {
        self.profiles.insert((partition, customer_id.to_owned()), None);
        Ok(())
    }

    fn unlink_device(&mut self, partition: u32, device_id: &str) -> Result<(), StoreError> {
        self.devices.insert((partition, device_id.to_owned()), None);
        Ok(())
    }

    fn held_anonymous(&mut self, partition: u32, device_id: &str) -> Result<Vec<AppEvent>, StoreError> {
        let encoded = match self.held.get(&(partition, device_id.to_owned())) {
            Some(v) => v.clone(),
            None => self
                .store
                .db
                .get_cf(self.store.cf(CF_DEVICES), held_key(partition, device_id))
                .map_err(backend)?
                .unwrap_or_default(),
        };
        if encoded.is_empty() {
            return Ok(Vec::new());
        }
        let corrupt = |detail: String| StoreError::Corrupt { what: "held anonymous events", detail };
        let events: Vec<Vec<u8>> = postcard::from_bytes(&encoded).map_err(|e| corrupt(e.to_string()))?;
        events.iter().map(|e| decode(Format::Protobuf, e).map_err(|e| corrupt(e.to_string()))).collect()
    }

    fn hold_anonymous(&mut self, partition: u32, device_id: &str, events: Vec<AppEvent>) -> Result<(), StoreError> {
        let encoded = if events.is_empty() {
            Vec::new()
        } else {
            let each: Vec<Vec<u8>> = events.iter().map(|e| encode(Format::Protobuf, e)).collect();
            postcard::to_stdvec(&each).expect("byte strings serialize")
        };
        self.held.insert((partition, device_id.to_owned()), encoded);
        Ok(())
    }

    fn arm(&mut self, partition: u32, key: &ArmKey) -> Result<ArmCounts, StoreError> {
        Ok(self.arm_entry(partition, key)?.0)
    }

    fn add_arm(&mut self, partition: u32, key: &ArmKey, delta: ArmCounts) -> Result<(), StoreError> {
        let entry = self.arm_entry(partition, key)?;
        entry.0.add(delta);
        entry.1 = true;
        Ok(())
    }

    fn budget(&mut self, partition: u32, campaign: u64) -> Result<Ledger, StoreError> {
        if let Some(ledger) = self.budgets.get(&(partition, campaign)) {
            return Ok(ledger.clone());
        }
        let stored =
            self.store.db.get_pinned_cf(self.store.cf(CF_BUDGETS), budget_key(partition, campaign)).map_err(backend)?;
        match stored {
            Some(v) => postcard::from_bytes(&v)
                .map_err(|e| StoreError::Corrupt { what: "budget ledger", detail: e.to_string() }),
            None => Ok(Ledger::default()),
        }
    }

    fn put_budget(&mut self, partition: u32, campaign: u64, ledger: Ledger) -> Result<(), StoreError> {
        self.budgets.insert((partition, campaign), ledger);
        Ok(())
    }

    fn add_stats(&mut self, partition: u32, key: StatsKey, delta: &Stats) -> Result<(), StoreError> {
        assert!(!self.stats_resolved, "stats added after stats_totals; publish totals last, just before commit");
        self.stats.entry((partition, key)).or_default().add(delta);
        Ok(())
    }
}
