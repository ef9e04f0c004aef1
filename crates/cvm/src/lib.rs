//! The cvm application, in two parts with one job each:
//!
//! - [`service`]: the engine as it runs in production — configuration,
//!   wiring of the components into a running [`Pipeline`], the operations
//!   endpoint, the per-campaign gauges, the model directory.
//! - [`lab`]: everything that runs the decision core away from production
//!   Kafka — the embedded quickstart (`demo`), benchmarks, offer simulation,
//!   recorded-event files, synthetic recording and training — all through
//!   the same [`Driver`](cvm_engine::Driver) the ingest loop uses.
//!
//! The binary (`main.rs`) parses the command line and dispatches to
//! [`commands`], which hold what the marketer and operator tools do.

pub mod commands;
pub mod lab;
pub mod service;

pub use service::{config::Config, pipeline::Pipeline};
