//! Micro-benchmarks of the store (`cargo bench -p cvm-store`): a batch's
//! atomic commit of profile writes (the decision core's largest cost), and
//! a profile's point read. Each prints the mean time per call.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use cvm_engine::{Profile, StateTxn};
use cvm_proto::v1::{Purchase, PurchaseLine};
use cvm_store::{Store, StoreConfig};

fn profile(i: u32) -> Profile {
    let mut p = Profile::default();
    for d in 0..8 {
        p.apply_purchase(&Purchase {
            timestamp_ms: 1_700_000_000_000 + i64::from(d) * 86_400_000,
            lines: vec![PurchaseLine {
                sku: format!("sku-{}", i % 200),
                category: "sushi".into(),
                quantity: 1,
                unit_price_minor: 1500,
                unit_cost_minor: 900,
            }],
            ..Default::default()
        });
    }
    p
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig { path: dir.path().join("bench"), ..Default::default() }).unwrap();
    const CUSTOMERS: u32 = 100_000;
    for chunk in (0..CUSTOMERS).step_by(10_000) {
        let mut b = store.begin();
        for i in chunk..chunk + 10_000 {
            b.put_profile(i % 8, &format!("c{i:08}"), profile(i)).unwrap();
        }
        b.commit().unwrap();
    }
    let (mut next, mut committing, commits) = (0u32, Duration::ZERO, 500u32);
    for _ in 0..commits {
        let mut batch = store.begin();
        for _ in 0..200 {
            next = (next + 7_919) % CUSTOMERS;
            batch.put_profile(next % 8, &format!("c{next:08}"), profile(next)).unwrap();
        }
        let t = Instant::now();
        batch.commit().unwrap();
        committing += t.elapsed();
    }
    println!("{:<40} {:>10.2} µs", "store/commit of 200 profile writes", (committing / commits).as_secs_f64() * 1e6);
    let (mut i, reads) = (0u32, 200_000u32);
    let t = Instant::now();
    for _ in 0..reads {
        i = (i + 104_729) % CUSTOMERS;
        black_box(store.profile(i % 8, &format!("c{i:08}")).unwrap());
    }
    println!("{:<40} {:>10.2} µs", "store/profile point read", (t.elapsed() / reads).as_secs_f64() * 1e6);
}
