//! The cvm application: configuration, wiring of the components into a
//! running [`Pipeline`], the operations endpoint, and the `demo` and `bench`
//! commands. The binary (`main.rs`) only parses the command line.

pub mod bench;
pub mod bench_eligibility;
pub mod bench_scoring;
pub mod config;
pub mod demo;
pub mod gauges;
pub mod model_dir;
pub mod ops;
pub mod pipeline;
pub mod recorded;
pub mod samples;
pub mod simulate;
pub mod train;
pub mod uplift;

pub use config::Config;
pub use pipeline::Pipeline;
