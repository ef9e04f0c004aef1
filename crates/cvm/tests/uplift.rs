//! The benchmark's claims, checked at a smaller size on one seed: in each
//! world the engine's own decisions about held-out customers earn more than
//! contacting at random at the same volume, and it contacts the customers
//! contact harms less often than those it helps.

use cvm::lab::uplift::{run, UpliftOptions};
use cvm_synth::World;

fn bench(world: World) -> cvm::lab::uplift::UpliftReport {
    run(&UpliftOptions { world, customers: 15_000, days: 50, seed: 7, linear: false, out: None }).unwrap()
}

#[test]
fn the_engines_own_targeting_beats_chance_and_spares_the_customers_contact_harms() {
    let report = bench(World::Interactions);
    let margin = |name: &str| report.policy(name).unwrap().margin_minor;
    assert!(margin("engine") > margin("random"), "{}", report.render());
    let rate = |class: &str| report.classes[class].contact_rate();
    assert!(rate("harmed") < rate("helped"), "{}", report.render());
    assert!(report.model.control.is_some() && report.model.metrics.qini.is_some());
}
