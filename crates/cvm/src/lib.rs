//! The cvm application: configuration, wiring of the components into a
//! running [`Pipeline`], the operations endpoint, and the `demo` and `bench`
//! commands. The binary (`main.rs`) only parses the command line.

pub mod bench;
pub mod config;
pub mod demo;
pub mod ops;
pub mod pipeline;
pub mod samples;

pub use config::Config;
pub use pipeline::Pipeline;
