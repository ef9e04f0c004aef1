//! The decision core of cvm: events in, decisions out.
//!
//! This crate is plain synchronous Rust. It knows nothing of Kafka, tokio,
//! HTTP or the wall clock: the caller hands it an event, the time to decide
//! at, and a [`StateTxn`] through which profiles are read and written. That
//! is what makes replay, benchmarks and golden tests possible without a
//! broker: the same events and times always give the same decisions with the
//! same ids.
//!
//! The data path reads in one direction:
//! event → [`Profile`] update → [`timers`] set or cancelled → triggered
//! offers from the [`Catalog`] → [`features`] → eligibility (compiled CEL)
//! → priority and [`score`] → best offer per channel → contact [`policy`]
//! (fatigue, caps, gaps, quiet hours) → [`holdout`] → [`Outbound`]s for the
//! outbox; decisions and purchases feed the [`attribution`] aggregates.
//! Timers and sweeps enter the same path at "triggered offers".
//!
//! ```
//! use cvm_engine::{Engine, EngineConfig, Catalog, MemoryState, Event};
//! use cvm_proto::v1::{AppEvent, AppEventKind};
//!
//! let engine = Engine::new(EngineConfig::default(), Catalog::default());
//! let mut state = MemoryState::default();
//! let open = AppEvent {
//!     event_id: "e1".into(), customer_id: "c1".into(), timestamp_ms: 0,
//!     kind: AppEventKind::AppOpen as i32, ..Default::default()
//! };
//! let out = engine.process(&mut state, 0, &Event::App(open), 0).unwrap();
//! assert!(out.emits.is_empty()); // no offers defined, nothing to decide
//! ```
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod attribution;
pub mod budget;
pub mod catalog;
pub mod driver;
mod engine;
mod error;
pub mod events;
pub mod features;
pub mod holdout;
pub mod ids;
mod memory;
pub mod models;
pub mod offers;
pub mod policy;
pub mod profile;
pub mod score;
mod state;
pub mod stats;
pub mod telemetry;
pub mod time;
pub mod timers;
pub mod validation;

pub use catalog::{Catalog, ConfigDocument};
pub use driver::{Driver, DriverConfig, Output, Source};
pub use engine::{Engine, EngineConfig, EventOutput, Outbound, MAX_HELD_ANONYMOUS};
pub use error::StoreError;
pub use events::{Event, EventKind, EventResult};
pub use memory::MemoryState;
pub use offers::{OfferDefinition, OfferDocument, OfferError};
pub use profile::Profile;
pub use state::StateTxn;
pub use timers::{Timer, TimerKey, TimerKind};
pub use validation::{InputLimits, Reason, Rejection};
