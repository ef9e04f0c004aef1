//! Training on rows with a known effect: determinism, what it learns, and
//! what it refuses.

use cvm_engine::models::{vector::LEN, Model, Scope};
use cvm_train::{train, Row, TrainError, TrainOptions};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use cvm_engine::time::DAY_MS as DAY;
/// Slot of `app_opens_30d` in the model vector.
const APP_OPENS: usize = 9;

/// Half the rows treated. Engaged customers (app opens > 2) convert 45 %
/// when contacted and 8 % when not; the rest 10 % either way.
fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut x = [0.0; LEN];
            for v in x.iter_mut() {
                *v = rng.random_range(0.0..1.0);
            }
            x[APP_OPENS] = rng.random_range(0.0..5.0);
            let treated = rng.random_bool(0.5);
            let engaged = x[APP_OPENS] > 2.0;
            let p = match (engaged, treated) {
                (true, true) => 0.45,
                (true, false) => 0.08,
                _ => 0.10,
            };
            let converted = rng.random_bool(p);
            Row {
                decision: i,
                customer: format!("c{i}"),
                at_ms: (i as i64 * 100 / n as i64) * DAY,
                treated,
                x,
                converted,
                margin_minor: if converted { 1_500.0 + rng.random_range(-200.0..200.0) } else { 0.0 },
                assignment: Default::default(),
            }
        })
        .collect()
}

fn options(seed: u64) -> TrainOptions {
    TrainOptions { seed, ..TrainOptions::new(Scope::Offer, "o", 1_800_000_000_000) }
}

#[test]
fn the_same_rows_and_seed_give_the_same_artifact() {
    let data = rows(6_000, 1);
    let a = train(&data, &options(7)).unwrap();
    let b = train(&data, &options(7)).unwrap();
    assert_eq!(a, b);
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    // Another seed orders the rows the solvers see and grows other trees:
    // the linear models are the same up to rounding, the forest another
    // draw of the same finding.
    let c = train(&data, &options(8)).unwrap();
    let close = a.treated.weights.iter().zip(&c.treated.weights).all(|(x, y)| (x - y).abs() < 1e-3);
    assert!(close, "{:?} vs {:?}", a.treated.weights, c.treated.weights);
    assert_ne!(a.forest, c.forest);
    assert!(
        (a.metrics.qini.unwrap() - c.metrics.qini.unwrap()).abs() < 0.02,
        "{:?} {:?}",
        a.metrics.qini,
        c.metrics.qini
    );
}

#[test]
fn it_learns_who_is_persuadable_and_reports_its_quality() {
    let data = rows(8_000, 2);
    let artifact = train(&data, &options(7)).unwrap();
    assert!(artifact.control.is_some(), "enough held-out rows for an uplift model");
    assert_eq!(artifact.data.train_rows + artifact.data.validation_rows, 8_000);
    assert!(artifact.data.split_at_ms > artifact.data.from_ms && artifact.data.split_at_ms <= artifact.data.to_ms);
    let m = &artifact.metrics;
    assert!(m.auc > 0.6, "AUC {}", m.auc);
    assert!(m.qini.unwrap() > 0.01, "Qini {:?}", m.qini);
    let [low, high] = m.qini_interval.expect("an uplift model carries its Qini interval");
    assert!(low > 0.0 && low < m.qini.unwrap() && m.qini.unwrap() < high, "{low} {:?} {high}", m.qini);
    assert!(!artifact.force && artifact.unproven().is_none(), "it beats random targeting: the engine takes it");
    assert_eq!(m.calibration.len(), 10);
    let model = Model::new(artifact.clone());
    let uplift = |opens: f64| {
        let mut x = [0.5; LEN];
        x[APP_OPENS] = opens;
        let (t, c) = model.predict(&x);
        t - c.unwrap()
    };
    assert!(uplift(4.0) > 0.2 && uplift(0.5).abs() < 0.08, "{} vs {}", uplift(4.0), uplift(0.5));
    assert!((artifact.value.intercept - 1_500.0).abs() < 30.0, "value of a conversion: {:?}", artifact.value.intercept);
    assert!(artifact.reference.iter().any(|h| h.name == "score"));
    assert!(artifact.problems().is_empty(), "{:?}", artifact.problems());
}

#[test]
fn too_few_rows_or_decisions_at_one_moment_are_refused_with_a_reason() {
    let e = train(&rows(40, 3), &options(7)).unwrap_err();
    assert!(matches!(e, TrainError::TooFewRows(_)), "{e}");
    let same_time: Vec<Row> = rows(2_000, 4).into_iter().map(|r| Row { at_ms: 0, ..r }).collect();
    let e = train(&same_time, &options(7)).unwrap_err().to_string();
    assert!(e.contains("decisions must be spread over time"), "{e}");
}

#[test]
fn a_model_of_an_offer_that_changes_nothing_is_not_shown_to_beat_random_targeting() {
    // The same rows, but contact changes nothing: whether a customer buys
    // depends on their engagement only.
    let no_effect: Vec<Row> = rows(8_000, 11)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let p = if r.x[APP_OPENS] > 2.0 { 0.3 } else { 0.1 };
            let converted = (xorshift(i as u64) % 1_000) as f64 / 1_000.0 < p;
            Row { converted, ..r }
        })
        .collect();
    let artifact = train(&no_effect, &options(5)).unwrap();
    let [low, high] = artifact.metrics.qini_interval.unwrap();
    assert!(low <= 0.0 && high >= 0.0, "{low} {high}");
    let why = artifact.unproven().expect("the engine refuses it");
    assert!(why.starts_with("metrics.qini:") && why.contains("not shown to beat random targeting"), "{why}");
    assert_eq!(artifact.problems(), [why]);
}

/// A fixed pseudo-random draw per row.
fn xorshift(mut x: u64) -> u64 {
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}
