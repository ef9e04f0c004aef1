//! Durable timers: delayed triggers, inactivity checks and cascades.
//!
//! A timer is state like a profile: it is set and cancelled through the
//! [`StateTxn`](crate::StateTxn) of the event that caused it, so it is
//! committed atomically with that event's offsets, and it fires through
//! [`Engine::fire`](crate::Engine::fire) in a transaction that deletes it
//! and publishes its decisions together — once, even across restarts.
//!
//! Timers are identified by [`TimerKey`] (customer, kind, subject): setting a
//! timer with the key of a pending one replaces it (a new add-to-cart
//! restarts the abandoned-cart wait; a new purchase moves the inactivity
//! check). The owner fires timers whose `due_ms` has passed on its clock:
//! the wall clock live, the partition's event time in replays.

use serde::{Deserialize, Serialize};

use crate::{events::EventKind, features::EventFacts};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// A delayed trigger (e.g. abandoned cart); subject = offer id.
    Delayed,
    /// No purchase for N days; subject = offer id.
    Inactivity,
    /// Follow-up of an unopened push; subject = the push's offer id.
    Cascade,
    /// A push deferred out of the customer's quiet hours; subject = offer id.
    Deferred,
}

impl TimerKind {
    /// Every kind, in discriminant order.
    pub const ALL: [TimerKind; 4] =
        [TimerKind::Delayed, TimerKind::Inactivity, TimerKind::Cascade, TimerKind::Deferred];

    /// Lower-case name, for ids, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Delayed => "delayed",
            TimerKind::Inactivity => "inactivity",
            TimerKind::Cascade => "cascade",
            TimerKind::Deferred => "deferred",
        }
    }
}

/// Identifies a pending timer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimerKey {
    /// The customer.
    pub customer_id: String,
    /// The kind.
    pub kind: TimerKind,
    /// Offer id (delayed, inactivity) or sent push offer id (cascade).
    pub subject: String,
}

impl TimerKey {
    /// The key of `customer_id`'s timer of `kind` for `subject`.
    pub fn new(customer_id: &str, kind: TimerKind, subject: &str) -> Self {
        Self { customer_id: customer_id.to_owned(), kind, subject: subject.to_owned() }
    }

    /// The prefix of [`encode`](Self::encode) shared by all of a customer's timers.
    pub fn customer_prefix(customer_id: &str) -> Vec<u8> {
        let mut k = customer_id.as_bytes().to_vec();
        k.push(0);
        k
    }

    /// A byte encoding that sorts by customer (for storage keys).
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.customer_id.len() + self.subject.len() + 3);
        k.extend_from_slice(self.customer_id.as_bytes());
        k.push(0);
        k.push(self.kind as u8);
        k.push(0);
        k.extend_from_slice(self.subject.as_bytes());
        k
    }
}

/// A pending timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// When it fires (ms since the epoch, on the owner's clock).
    pub due_ms: i64,
    /// The customer.
    pub customer_id: String,
    /// The kind.
    pub kind: TimerKind,
    /// See [`TimerKey::subject`].
    pub subject: String,
    /// The offer to decide when it fires.
    pub offer_id: String,
    /// The event that set it (recorded in the decision).
    pub cause_event_id: String,
    /// Cascade: the decision it follows up.
    pub parent_decision_id: String,
    /// The setting event's kind, category and product, so eligibility and
    /// templates at fire time can still refer to `event.*`.
    pub event_kind: Option<EventKind>,
    /// See `event_kind`.
    pub event_category: String,
    /// See `event_kind`.
    pub event_sku: String,
}

impl Timer {
    /// A timer for `key`, due at `due_ms`, that decides `offer_id`. It was set
    /// by event `cause_event_id`, whose facts it keeps for `event.*`.
    pub fn new(key: TimerKey, due_ms: i64, offer_id: &str, cause_event_id: &str, facts: EventFacts<'_>) -> Self {
        Self {
            due_ms,
            customer_id: key.customer_id,
            kind: key.kind,
            subject: key.subject,
            offer_id: offer_id.to_owned(),
            cause_event_id: cause_event_id.to_owned(),
            parent_decision_id: String::new(),
            event_kind: facts.kind,
            event_category: facts.category.to_owned(),
            event_sku: facts.sku.to_owned(),
        }
    }

    /// The facts of the event that set it, for eligibility and templates at fire time.
    pub fn facts(&self) -> EventFacts<'_> {
        EventFacts {
            kind: self.event_kind,
            category: &self.event_category,
            sku: &self.event_sku,
            ..EventFacts::default()
        }
    }

    /// The key identifying it.
    pub fn key(&self) -> TimerKey {
        TimerKey { customer_id: self.customer_id.clone(), kind: self.kind, subject: self.subject.clone() }
    }

    /// Encodes the timer for storage.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("timers serialize")
    }

    /// Decodes a stored timer.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::StoreError> {
        postcard::from_bytes(bytes).map_err(|e| crate::StoreError::Corrupt { what: "timer", detail: e.to_string() })
    }
}
