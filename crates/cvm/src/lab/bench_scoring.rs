//! `cvm bench-scoring`: what model scoring costs per customer.
//!
//! One customer, 1,000 eligible candidate offers, each with its own uplift
//! model (treated, control and value models over the full feature vector);
//! a third of them discount ladders of three steps, each step scored. The
//! figure is the arbitration's inner loop: the customer's model vector once,
//! then every candidate's valuation (rule score, three predictions per
//! step, expected incremental value), then the ranking. Target: under
//! 100 µs on one core.

use std::{hint::black_box, sync::Arc};

use cvm_engine::{
    features::{EventFacts, Features},
    models::{self, artifact::Histogram, vector, Model, ModelArtifact, Scorer},
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

/// A model with pseudo-random weights (a fixed linear congruence).
fn model(i: usize) -> Model {
    let mut x = i as u64 * 2_654_435_761 + 1;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as f64 / f64::from(u32::MAX)) - 0.5
    };
    let mut weights = || (0..vector::LEN).map(|_| next()).collect::<Vec<f64>>();
    let (t, c, v) = (weights(), weights(), weights());
    let mut a = ModelArtifact::constant(&format!("s{i:04}"), 1, -1.0, Some(-1.5), 800.0);
    a.treated.weights = t;
    a.control.as_mut().expect("an uplift model").weights = c;
    a.value.weights = v.iter().map(|w| w * 100.0).collect();
    a.features.mean.fill(1.0);
    a.features.scale.fill(2.0);
    a.reference = vec![Histogram { name: "score".into(), edges: vec![0.0], shares: vec![0.5, 0.5] }];
    Model::new(a)
}

/// Runs the benchmark and prints its figure.
pub fn scoring(iterations: u32) {
    let profile = profile();
    let offers: Vec<Arc<OfferDefinition>> = (0..1_000).map(|i| Arc::new(offer(i))).collect();
    let models: Vec<Model> = (0..1_000).map(model).collect();
    let mut best = 0;
    let ns = per_iteration(iterations, |_| {
        let features = Features::compute(&profile, EventFacts::default(), NOW);
        let customer = models::Customer::of(&features);
        let mut values: Vec<u128> = Vec::with_capacity(offers.len());
        for (i, (d, m)) in offers.iter().zip(&models).enumerate() {
            let discount = d.discount(0);
            let rules = || score(d, &features, &discount, NOW);
            let v = models::value(
                d,
                &features,
                &customer,
                discount,
                rules,
                Scorer::Model { model: m, lower_bound_z: 1.645 },
            );
            values.push(models::ranking_key(d.doc.priority, v.value, i as u32));
        }
        // The engine's full ranking: priority, value, then id order.
        values.sort_unstable();
        best = values[0] as u32;
        black_box(&values);
    });
    println!("model scoring benchmark ({iterations} iterations, one core)");
    println!(
        "  1,000 candidates, uplift model each (1/3 three-step ladders), ranked   {:>8.1} us   (target < 100 us; best: s{best:04})",
        ns / 1000.0
    );
}
