//! The benchmark's claim, checked at a smaller size: on customers whose
//! responsiveness is known, uplift targeting earns more than propensity
//! targeting, rule priority and chance, and ranks best.

use cvm::lab::uplift::{run, UpliftOptions};

#[test]
fn uplift_targeting_beats_propensity_rules_and_chance_on_held_out_customers() {
    let report = run(&UpliftOptions { customers: 15_000, days: 50, seed: 7, depth_percent: 30.0, out: None }).unwrap();
    let margin = |name: &str| report.policy(name).unwrap().margin_per_1000;
    let uplift = margin("uplift");
    for other in ["random", "rules", "propensity"] {
        assert!(uplift > margin(other), "uplift {uplift:.0} vs {other} {:.0}\n{}", margin(other), report.render());
    }
    let true_qini = |name: &str| report.policy(name).unwrap().true_qini;
    assert!(
        ["random", "rules", "propensity"].iter().all(|p| true_qini("uplift") > true_qini(p)),
        "{}",
        report.render()
    );
    assert!(report.model.control.is_some() && report.model.metrics.qini.is_some());
    // The engine scored the third sweep with the model.
    assert!(report.predicted_uplift.values().map(|(_, n)| n).sum::<usize>() > 1_000, "{}", report.render());
}
