//! The decision core away from production: the embedded quickstart,
//! benchmarks, simulation, recorded events, synthetic data and training.
//! Every replay goes through the [`Driver`](cvm_engine::Driver).

pub mod bench;
pub mod bench_eligibility;
pub mod bench_restore;
pub mod bench_scoring;
pub mod bench_sweep;
pub mod demo;
pub mod recorded;
pub mod samples;
pub mod simulate;
pub mod train;
pub mod uplift;
