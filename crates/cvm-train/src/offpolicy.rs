//! What another targeting rule would have earned, estimated from the
//! decisions the engine logged — so that a challenger model is judged
//! before it is promoted, not after.
//!
//! Every decision logs how it was randomised ([`Assignment`]): the
//! probability `s` that it reached the treatment/holdout coin flip (1 when
//! the policy chose the offer, the exploration share when a model held it
//! back) and the probability `t` of treatment there. A row that reached the
//! coin flip therefore stands for `1/s` customers like it, and within those
//! the treated and held-out rows compare by their own chances
//! (Horvitz–Thompson). For a rule that selects a customer with probability
//! `π` (0 or 1 for a deterministic rule), the estimated increment, net of
//! the contact cost `c`, is
//!
//! ```text
//! Σ over rows  (π/s) · (m₁ − m₀ + A·(R − m₁)/t − (1−A)·(R − m₀)/(1−t) − c)
//! ```
//!
//! with `A` whether the row was treated, `R` the margin its customer bought
//! in the window, and `m₁`, `m₀` the arms' mean margins over all rows (a
//! doubly robust estimate whose outcome model is a constant per arm). The
//! means cancel in expectation, so any values would do; they are there
//! because most of what customers buy does not depend on the offer, and
//! without them every treated row would carry `R/t` of it. The estimate is
//! unbiased for the total true increment of the rule's choices, whatever
//! rule made the decisions, wherever `s > 0` — which the exploration slice
//! ensures for customers a model holds back. Where the logging policy and
//! the rule agree (`s = 1`) the weights are small; where the rule selects
//! customers the logging model declined, each explored row weighs `1/s`
//! and the interval says so.
//!
//! The interval: one customer's terms are summed first (a customer is one
//! draw), then the variance is the sum of their squares — conservative by
//! the squared true increments, which are small beside the purchase noise.

use std::collections::HashMap;

use crate::dataset::Row;

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A rule's estimated worth on the logged decisions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyValue {
    /// Customers the rule would contact, estimated (each row counts `1/s`).
    pub contacts: f64,
    /// Incremental margin net of contact cost, minor units, summed.
    pub increment_minor: f64,
    /// Lower end of its 95 % interval.
    pub low_minor: f64,
    /// Upper end of its 95 % interval.
    pub high_minor: f64,
}

impl PolicyValue {
    /// Whether `x` lies inside the interval.
    pub fn covers(&self, x: f64) -> bool {
        self.low_minor <= x && x <= self.high_minor
    }
}

/// The increment of the rule `selects`: for each row, the probability
/// (0..=1) that the rule would select its customer for the campaign —
/// 0 or 1 for a deterministic rule; the row's own selection probability
/// for the logging policy as it ran. `contact_cost_minor` per contact.
pub fn value(rows: &[Row], contact_cost_minor: f64, selects: impl Fn(&Row) -> f64) -> PolicyValue {
    estimate(rows, contact_cost_minor, selects)
}

/// How much more rule `a` earns than rule `b` on the same decisions: a
/// paired estimate, whose interval comes only from the rows where the two
/// differ (`contacts` counts the customers `a` adds, less those it drops).
pub fn difference(
    rows: &[Row],
    contact_cost_minor: f64,
    a: impl Fn(&Row) -> f64,
    b: impl Fn(&Row) -> f64,
) -> PolicyValue {
    estimate(rows, contact_cost_minor, |r| a(r) - b(r))
}

/// A deterministic rule as selection probabilities.
pub fn rule(selects: impl Fn(&Row) -> bool) -> impl Fn(&Row) -> f64 {
    move |r| f64::from(u8::from(selects(r)))
}

/// The rows that can be used: a treatment probability strictly between 0
/// and 1 (the one logged, or the rows' treated share when none was), and
/// a selection probability above 0.
fn usable(rows: &[Row]) -> Vec<(&Row, f64)> {
    let treated_share = rows.iter().filter(|r| r.treated).count() as f64 / rows.len().max(1) as f64;
    rows.iter()
        .map(|r| (r, r.assignment.treatment.unwrap_or(treated_share)))
        .filter(|(r, t)| *t > 0.0 && *t < 1.0 && r.assignment.selection > 0.0)
        .collect()
}

/// Each arm's mean margin, rows weighted by `1/s` (so they describe every customer).
fn arm_means(rows: &[(&Row, f64)]) -> [f64; 2] {
    let mut sums = [(0.0, 0.0); 2];
    for (r, _) in rows {
        let w = 1.0 / r.assignment.selection;
        let arm = &mut sums[usize::from(r.treated)];
        arm.0 += w * r.margin_minor;
        arm.1 += w;
    }
    sums.map(|(sum, weight)| if weight > 0.0 { sum / weight } else { 0.0 })
}

/// The estimate of the module docs, `weight(row)` being `π`.
fn estimate(rows: &[Row], contact_cost_minor: f64, weight: impl Fn(&Row) -> f64) -> PolicyValue {
    let rows = usable(rows);
    let [m0, m1] = arm_means(&rows);
    let mut by_customer: HashMap<&str, f64> = HashMap::new();
    let (mut contacts, mut total) = (0.0, 0.0);
    for (r, t) in rows {
        let w = weight(r);
        if w == 0.0 {
            continue;
        }
        let stands_for = w / r.assignment.selection;
        let arm = if r.treated { (r.margin_minor - m1) / t } else { -(r.margin_minor - m0) / (1.0 - t) };
        let term = stands_for * (m1 - m0 + arm - contact_cost_minor);
        contacts += stands_for;
        total += term;
        *by_customer.entry(r.customer.as_str()).or_default() += term;
    }
    let half = Z95 * by_customer.values().map(|t| t * t).sum::<f64>().sqrt();
    PolicyValue { contacts, increment_minor: total, low_minor: total - half, high_minor: total + half }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dataset::Assignment, metrics::Draws};

    /// Customer `i`'s conversion rate without and with a contact: half are
    /// helped (+20 pp), half harmed (−10 pp), by the first feature.
    fn rates(helped: bool) -> (f64, f64) {
        if helped {
            (0.10, 0.30)
        } else {
            (0.20, 0.10)
        }
    }

    /// Selection probability per row.
    type Policy<'a> = dyn Fn(&Row) -> f64 + 'a;

    const MARGIN: f64 = 1_000.0;
    const COST: f64 = 10.0;

    /// A log of `n` customers decided by a model that chose the helped ones
    /// and explored the others at `explore`, with a 50 % holdout; each
    /// converts by their own rate. Returns the rows and who was helped.
    fn logged(n: usize, explore: f64, seed: u64) -> Vec<Row> {
        let mut u = Draws(seed);
        let mut rows = Vec::new();
        for i in 0..n {
            let helped = i % 2 == 0;
            let selection = if helped { 1.0 } else { explore };
            if u.uniform() >= selection {
                continue; // held back by the model, not explored: no coin flip, no row
            }
            let treated = u.uniform() < 0.5;
            let (p0, p1) = rates(helped);
            let converted = u.uniform() < if treated { p1 } else { p0 };
            let mut x = [0.0; cvm_engine::models::vector::LEN];
            x[0] = f64::from(u8::from(helped));
            rows.push(Row {
                decision: i,
                customer: format!("c{i}"),
                at_ms: 0,
                treated,
                x,
                converted,
                margin_minor: if converted { MARGIN } else { 0.0 },
                assignment: Assignment { selection, treatment: Some(0.5) },
            });
        }
        rows
    }

    /// The true total increment of contacting the helped customers of `n`
    /// with probability `helped`, the harmed with probability `harmed`.
    fn truth(n: usize, helped: f64, harmed: f64) -> f64 {
        let per = |h: bool| {
            let (p0, p1) = rates(h);
            (p1 - p0) * MARGIN - COST
        };
        let half = (n / 2) as f64;
        half * (helped * per(true) + harmed * per(false))
    }

    #[test]
    fn intervals_cover_the_true_increment_of_rules_the_logging_policy_did_not_follow() {
        let (n, explore) = (4_000, 0.1);
        let helped = |r: &Row| r.x[0] == 1.0;
        let as_it_ran = |r: &Row| r.assignment.selection;
        let policies: [(&str, &Policy<'_>, f64); 4] = [
            ("the model's choices", &rule(helped), truth(n, 1.0, 0.0)),
            ("the logging policy as it ran, exploration included", &as_it_ran, truth(n, 1.0, explore)),
            ("everyone", &rule(|_| true), truth(n, 1.0, 1.0)),
            ("only the harmed", &rule(|r| !helped(r)), truth(n, 0.0, 1.0)),
        ];
        for (name, policy, truth) in policies {
            let covered = (0..200).filter(|seed| value(&logged(n, explore, *seed), COST, policy).covers(truth)).count();
            assert!((180..=200).contains(&covered), "{name}: {covered} of 200 intervals cover {truth}");
        }
    }

    #[test]
    fn contacts_are_counted_for_the_whole_population_and_agreement_costs_no_variance() {
        let rows = logged(20_000, 0.1, 1);
        let helped = rule(|r| r.x[0] == 1.0);
        let everyone = value(&rows, COST, rule(|_| true));
        assert!((everyone.contacts - 20_000.0).abs() < 1_000.0, "{}", everyone.contacts);
        let same = difference(&rows, COST, &helped, &helped);
        assert_eq!((same.increment_minor, same.low_minor, same.high_minor), (0.0, 0.0, 0.0));
        // Adding the harmed to the helped loses money, and the estimate sees it.
        let worse = difference(&rows, COST, rule(|_| true), &helped);
        assert!(worse.high_minor < 0.0, "{worse:?}");
    }

    #[test]
    fn the_arms_baseline_narrows_the_interval_when_most_spend_does_not_depend_on_the_offer() {
        let mut rows = logged(4_000, 0.1, 3);
        let narrow = value(&rows, COST, rule(|_| true));
        // Everyone also buys 5,000 a window whatever happens: the same increment, in the noise.
        for r in &mut rows {
            r.margin_minor += 5_000.0;
        }
        let shifted = value(&rows, COST, rule(|_| true));
        assert!(
            (shifted.increment_minor - narrow.increment_minor).abs() < 1e-6 * narrow.increment_minor.abs().max(1.0)
        );
        assert!((shifted.high_minor - shifted.low_minor) < 1.01 * (narrow.high_minor - narrow.low_minor));
    }

    #[test]
    fn rows_without_a_usable_treatment_probability_are_left_out() {
        let mut rows = logged(1_000, 0.1, 2);
        for r in &mut rows {
            r.assignment.treatment = Some(1.0);
        }
        let v = value(&rows, COST, rule(|_| true));
        assert_eq!((v.contacts, v.increment_minor), (0.0, 0.0));
    }
}
