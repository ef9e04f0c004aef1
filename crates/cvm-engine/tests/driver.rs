//! The driver's clock: timers fire by the partition's watermark over its
//! inputs, so an offer is not sent because one topic is read ahead of the
//! other; replays through the driver are deterministic.

mod support;

use cvm_engine::{
    driver::{Clock, ScanPacing},
    Catalog, Driver, DriverConfig, Engine, Event, MemoryState, OfferDefinition, Output, Source,
};
use cvm_proto::v1::{AppEventKind, Channel, Outcome};
use support::*;

const ABANDONED_CART: &str = r#"
id: abandoned-cart
version: 1
campaign_id: cart
trigger: { kind: delayed, event: add_to_cart, after: 2h, cancel_on: purchase }
channels:
  push: { title: "Still hungry?", body: "{{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 500 }
"#;

const PURCHASES: Source = Source::Input(0);
const APP: Source = Source::Input(1);
const IDLE_MS: i64 = 60_000;

fn driver(inputs: usize) -> Driver {
    let def = OfferDefinition::parse("abandoned-cart", ABANDONED_CART.as_bytes()).unwrap();
    let engine = Engine::new(config(0.0), Catalog::new([def]));
    Driver::new(
        engine,
        DriverConfig {
            clock: Clock::EventTime,
            inputs,
            idle_timeout_ms: IDLE_MS,
            pacing: ScanPacing::Unlimited,
            timers_per_batch: usize::MAX,
            real_wall_clock: false,
        },
    )
}

/// Applies `events` (source, event, wall time) in order; returns the push decisions.
fn run(driver: &mut Driver, events: &[(Source, Event, i64)]) -> Vec<(String, Outcome)> {
    let mut state = MemoryState::default();
    let mut out = Output::default();
    for (source, event, wall) in events {
        driver.apply(&mut state, 0, *source, event, *wall, &mut out).unwrap();
    }
    decision_list(&out.emits)
        .into_iter()
        .filter(|d| d.channel() == Channel::Push)
        .map(|d| (d.customer_id.clone(), d.outcome()))
        .collect()
}

/// The app topic is read up to 10:00 before the purchases topic reaches
/// 01:30, when the customer bought what was in the cart at 01:00.
fn app_topic_ahead() -> Vec<(Source, Event, i64)> {
    vec![
        (APP, consent("c"), 0),
        (APP, add_to_cart("cart", "c", HOUR), 1),
        (APP, app("open", "c", 10 * HOUR, AppEventKind::AppOpen, ""), 2),
        (PURCHASES, purchase("bought", "c", HOUR + HOUR / 2, "sushi"), 3),
        (PURCHASES, purchase("later", "other", 11 * HOUR, "wine"), 4),
    ]
}

#[test]
fn a_timer_waits_for_the_slower_input_so_a_purchase_read_late_still_cancels_it() {
    assert_eq!(run(&mut driver(2), &app_topic_ahead()), [], "the purchase at 01:30 cancelled the 03:00 push");
    // With one clock for both topics (the latest time read), the push fires
    // at 10:00, before the purchase is read: the defect the watermark fixes.
    assert_eq!(run(&mut driver(1), &app_topic_ahead()), [("c".to_owned(), Outcome::Treated)]);
}

#[test]
fn a_quiet_input_stops_holding_time_back_after_the_idle_timeout() {
    let events = [
        (APP, consent("c"), 0),
        (APP, add_to_cart("cart", "c", HOUR), 1),
        (APP, app("open", "c", 10 * HOUR, AppEventKind::AppOpen, ""), 2),
    ];
    assert_eq!(run(&mut driver(2), &events), [], "purchases never heard from: wait");
    let mut later = events.to_vec();
    later.push((APP, app("open2", "c", 11 * HOUR, AppEventKind::AppOpen, ""), IDLE_MS + 10));
    assert_eq!(run(&mut driver(2), &later), [("c".to_owned(), Outcome::Treated)], "purchases idle: time moves");
}

#[test]
fn replays_are_deterministic_and_each_timer_fires_once() {
    let events: Vec<_> = (0..40)
        .flat_map(|i| {
            let c = format!("c{i}");
            let at = i64::from(i) * HOUR / 4;
            [(APP, consent(&c), at), (APP, add_to_cart(&format!("a{i}"), &c, at), at)]
        })
        .collect();
    let first = run(&mut driver(1), &events);
    assert_eq!(first, run(&mut driver(1), &events));
    let mut ids: Vec<&String> = first.iter().map(|(c, _)| c).collect();
    ids.dedup();
    assert_eq!(ids.len(), first.len(), "a customer was decided twice: {first:?}");
    assert!(first.len() >= 30, "timers due before the last event fired: {}", first.len());
}

/// A store whose profile writes for one customer panic once armed: a bug
/// that only shows when a timer of that customer fires.
struct PanicsOnWrite {
    inner: MemoryState,
    customer: &'static str,
    armed: bool,
}

mod faulty {
    use cvm_engine::{
        driver::TimerQueue,
        models::{ArmCounts, ArmKey},
        stats::{Stats, StatsKey},
        timers::{Timer, TimerKey},
        Profile, StateTxn, StoreError,
    };

    use super::PanicsOnWrite;

    impl StateTxn for PanicsOnWrite {
        fn profile(&mut self, p: u32, c: &str) -> Result<Option<Profile>, StoreError> {
            self.inner.profile(p, c)
        }
        fn put_profile(&mut self, p: u32, c: &str, profile: Profile) -> Result<(), StoreError> {
            assert!(!(self.armed && c == self.customer), "injected fault writing {c}");
            self.inner.put_profile(p, c, profile)
        }
        fn first_sighting(&mut self, p: u32, e: &str) -> Result<bool, StoreError> {
            self.inner.first_sighting(p, e)
        }
        fn customer_of_device(&mut self, p: u32, d: &str) -> Result<Option<String>, StoreError> {
            self.inner.customer_of_device(p, d)
        }
        fn held_anonymous(&mut self, p: u32, d: &str) -> Result<Vec<cvm_proto::v1::AppEvent>, StoreError> {
            self.inner.held_anonymous(p, d)
        }
        fn hold_anonymous(&mut self, p: u32, d: &str, e: Vec<cvm_proto::v1::AppEvent>) -> Result<(), StoreError> {
            self.inner.hold_anonymous(p, d, e)
        }
        fn link_device(&mut self, p: u32, d: &str, c: &str) -> Result<(), StoreError> {
            self.inner.link_device(p, d, c)
        }
        fn set_timer(&mut self, p: u32, t: Timer) -> Result<(), StoreError> {
            self.inner.set_timer(p, t)
        }
        fn timer_due(&mut self, p: u32, k: &TimerKey) -> Result<Option<i64>, StoreError> {
            self.inner.timer_due(p, k)
        }
        fn cancel_timer(&mut self, p: u32, k: &TimerKey) -> Result<bool, StoreError> {
            self.inner.cancel_timer(p, k)
        }
        fn timers_of(&mut self, p: u32, c: &str) -> Result<Vec<TimerKey>, StoreError> {
            self.inner.timers_of(p, c)
        }
        fn delete_profile(&mut self, p: u32, c: &str) -> Result<(), StoreError> {
            self.inner.delete_profile(p, c)
        }
        fn unlink_device(&mut self, p: u32, d: &str) -> Result<(), StoreError> {
            self.inner.unlink_device(p, d)
        }
        fn mark_erased(&mut self, p: u32, c: &str) -> Result<(), StoreError> {
            self.inner.mark_erased(p, c)
        }
        fn was_erased(&mut self, p: u32, c: &str) -> Result<bool, StoreError> {
            self.inner.was_erased(p, c)
        }
        fn add_stats(&mut self, p: u32, k: StatsKey, d: &Stats) -> Result<(), StoreError> {
            self.inner.add_stats(p, k, d)
        }
        fn arm(&mut self, p: u32, k: &ArmKey) -> Result<ArmCounts, StoreError> {
            self.inner.arm(p, k)
        }
        fn add_arm(&mut self, p: u32, k: &ArmKey, d: ArmCounts) -> Result<(), StoreError> {
            self.inner.add_arm(p, k, d)
        }
        fn budget(&mut self, p: u32, c: u64) -> Result<cvm_engine::budget::Ledger, StoreError> {
            self.inner.budget(p, c)
        }
        fn put_budget(&mut self, p: u32, c: u64, l: cvm_engine::budget::Ledger) -> Result<(), StoreError> {
            self.inner.put_budget(p, c, l)
        }
    }

    impl TimerQueue for PanicsOnWrite {
        fn due_timers(&mut self, p: u32, now: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
            self.inner.due_timers(p, now, limit)
        }
        fn earliest_due(&mut self, p: u32) -> Result<Option<i64>, StoreError> {
            self.inner.earliest_due(p)
        }
        fn take_earliest_set(&mut self, p: u32) -> Option<i64> {
            self.inner.take_earliest_set(p)
        }
    }
}

#[test]
fn a_timer_whose_firing_panics_is_named_so_that_it_can_be_cancelled() {
    let mut d = driver(1);
    let mut state = PanicsOnWrite { inner: MemoryState::default(), customer: "c", armed: false };
    let mut out = Output::default();
    d.apply(&mut state, 0, Source::Input(0), &consent("c"), 0, &mut out).unwrap();
    d.apply(&mut state, 0, Source::Input(0), &add_to_cart("cart", "c", HOUR), 0, &mut out).unwrap();
    assert_eq!(d.take_failed_timer(), None, "nothing failed yet");

    state.armed = true;
    let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.fire_through(&mut state, 0, 10 * HOUR, &mut Output::default())
    }));
    assert!(fired.is_err(), "the injected fault panics inside the timer's firing");
    let (partition, key) = d.take_failed_timer().expect("the failing timer is named");
    assert_eq!((partition, key.customer_id.as_str(), key.subject.as_str()), (0, "c", "abandoned-cart"));
    assert_eq!(d.take_failed_timer(), None, "taken once");

    // The caller drops the transaction and cancels it (MemoryState has no
    // rollback: the timer was taken already); time goes on without it.
    use cvm_engine::StateTxn;
    state.cancel_timer(partition, &key).unwrap();
    d.begin();
    let mut later = Output::default();
    d.fire_through(&mut state, 0, 10 * HOUR, &mut later).unwrap();
    assert!(later.emits.is_empty() && d.take_failed_timer().is_none());
}
