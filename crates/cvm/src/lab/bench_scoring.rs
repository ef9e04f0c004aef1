//! `cvm bench-scoring`: what model scoring costs per customer.
//!
//! One customer, 1,000 eligible candidate offers, each with its own uplift
//! model (treated, control and value models over the full feature vector);
//! a third of them discount ladders of three steps, each step scored. The
//! figure is the arbitration's inner loop: the customer's model vector once,
//! then every candidate's valuation (rule score, three predictions per
//! step, expected incremental value), then the ranking. Target: under
//! 100 µs on one core. A second figure scores the same candidates with
//! uplift forests as `cvm train` grows them (60 trees of six levels), one
//! per campaign (20), as campaign models are shared by their offers.

use std::{hint::black_box, sync::Arc};

use cvm_engine::{
    features::{EventFacts, Features},
    models::{
        self,
        artifact::Histogram,
        forest::{Calibration, Forest, Node, Split, Tree},
        vector, Model, ModelArtifact, Scorer,
    },
    score::score,
    OfferDefinition,
};

use crate::lab::bench_eligibility::{per_iteration, profile, NOW};

fn offer(i: usize) -> OfferDefinition {
    let reward = if i.is_multiple_of(3) { "{ ladder_percent: [5, 10, 15] }" } else { "{ percent: 10 }" };
    let doc = format!(
        "id: s{i:04}\nversion: 1\ncampaign_id: c{}\ncategory: {}\ntrigger: {{ kind: event, event: app_open }}\n\
         eligibility: has_purchased\nchannels: {{ push: {{ title: t, body: b }} }}\nreward: {reward}\n\
         economics: {{ margin_per_redemption_minor: {}, contact_cost_minor: 5 }}\n",
        i % 20,
        ["sushi", "wine", "meat"][i % 3],
        300 + i
    );
    OfferDefinition::parse("bench", doc.as_bytes()).expect("bench offers compile")
}

/// Pseudo-random numbers in −0.5..0.5 (a fixed linear congruence).
fn numbers(seed: usize) -> impl FnMut() -> f64 {
    let mut x = seed as u64 * 2_654_435_761 + 1;
    move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as f64 / f64::from(u32::MAX)) - 0.5
    }
}

/// A forest of 60 full trees of six levels with pseudo-random cuts (around
/// the bench customer's values: both sides are taken) and rates.
fn forest(i: usize) -> Forest {
    let mut next = numbers(i + 7_919);
    let trees = (0..60)
        .map(|_| {
            let nodes = (0..127)
                .map(|n| {
                    let split = (n < 63).then(|| Split {
                        feature: ((next() + 0.5) * (vector::LEN - vector::OFFER_SLOTS) as f64) as usize,
                        threshold: next() * 4.0,
                        left: 2 * n + 1,
                        right: 2 * n + 2,
                    });
                    Node { treated: 0.3 + next() * 0.2, control: 0.3 + next() * 0.2, split }
                })
                .collect();
            Tree { nodes }
        })
        .collect();
    Forest {
        trees,
        calibration: Calibration { intercept: 0.0, slope: 1.0, covariance: [1e-4, 0.0, 1e-3], floors: Vec::new() },
    }
}

/// A model with pseudo-random weights, and with a forest when given one.
fn model(i: usize, forest: Option<Forest>) -> Model {
    let mut next = numbers(i);
    let mut weights = || (0..vector::LEN).map(|_| next()).collect::<Vec<f64>>();
    let (t, c, v) = (weights(), weights(), weights());
    let mut a = ModelArtifact::constant(&format!("s{i:04}"), 1, -1.0, Some(-1.5), 800.0);
    a.treated.weights = t;
    a.control.as_mut().expect("an uplift model").weights = c;
    a.value.weights = v.iter().map(|w| w * 100.0).collect();
    a.features.mean.fill(1.0);
    a.features.scale.fill(2.0);
    a.reference = vec![Histogram { name: "score".into(), edges: vec![0.0], shares: vec![0.5, 0.5] }];
    a.forest = forest;
    Model::new(a)
}

/// Runs the benchmark and prints its figures.
pub fn scoring(iterations: u32) {
    let offers: Vec<Arc<OfferDefinition>> = (0..1_000).map(|i| Arc::new(offer(i))).collect();
    let linear: Vec<Model> = (0..1_000).map(|i| model(i, None)).collect();
    let campaigns: Vec<Model> = (0..20).map(|c| model(c, Some(forest(c)))).collect();
    let forests: Vec<&Model> = (0..1_000).map(|i| &campaigns[i % 20]).collect();
    println!("model scoring benchmark ({iterations} iterations, one core)");
    let (ns, best) = per_customer(iterations, &offers, &linear.iter().collect::<Vec<_>>());
    println!(
        "  1,000 candidates, uplift model each (1/3 three-step ladders), ranked   {:>8.1} us   (target < 100 us; best: s{best:04})",
        ns / 1000.0
    );
    let (ns, best) = per_customer(iterations, &offers, &forests);
    println!(
        "  the same, uplift forests (60 trees × 6 levels, one per campaign)       {:>8.1} us   (best: s{best:04})",
        ns / 1000.0
    );
}

/// Nanoseconds to value and rank `offers` for one customer, each with its
/// model, and the best offer's number.
fn per_customer(iterations: u32, offers: &[Arc<OfferDefinition>], models: &[&Model]) -> (f64, u32) {
    let profile = profile();
    let mut best = 0;
    let ns = per_iteration(iterations, |_| {
        let features = Features::compute(&profile, EventFacts::default(), NOW);
        let customer = models::Customer::of(&features);
        let mut values: Vec<u128> = Vec::with_capacity(offers.len());
        for (i, (d, m)) in offers.iter().zip(models).enumerate() {
            let discount = d.discount(0);
            let rules = || score(d, &features, &discount, NOW);
            let scorer = Scorer::Model { model: m, lower_bound_z: 1.645 };
            let v = models::value(d, &features, &customer, discount, rules, scorer);
            values.push(models::ranking_key(d.doc.priority, v.value, i as u32));
        }
        // The engine's full ranking: priority, value, then id order.
        values.sort_unstable();
        best = values[0] as u32;
        black_box(&values);
    });
    (ns, best)
}
