//! The engine as it runs against a Kafka cluster: settings, wiring, the
//! operations endpoint and what it samples, gauges and the model directory.

pub mod config;
pub mod gauges;
pub mod model_dir;
pub mod ops;
pub mod pipeline;
pub mod process;
