//! Fitting uplift forests ([`cvm_engine::models::forest`] says what they are
//! and how the engine uses them).
//!
//! Each tree cuts directly for uplift: at every node, the cut whose two
//! sides differ most in uplift (treated minus held-out conversion rate)
//! relative to that difference's standard error — whatever combination of
//! features it takes to get there. Each tree chooses its cuts on half of the customers (a new
//! half per tree) and a random subset of the features, then estimates its
//! nodes' conversion rates on the other half, each shrunk toward its
//! parent's: the rates are not fitted to the noise the cuts were chosen on.
//! A calibration line fitted on out-of-sample predictions (the crate docs
//! say how the two periods are cross-fitted) then puts the forest's uplift
//! right in level.
//!
//! The trees are grown here rather than with `linfa-trees`: its classifier
//! has no uplift criterion (the class-variable transformation stands in
//! badly), prunes every cut whose two sides have the same majority class —
//! nearly every cut of an uplift tree, where both sides convert less than
//! half the time — and breaks ties between classes in hash-map order, so
//! the same rows could grow different trees. linfa fits the propensity,
//! control and value models beside the forest.

use cvm_engine::models::{
    artifact::CalibrationBin,
    forest::{Calibration, Floor, Forest, Node, Split, Tree},
    vector::LEN,
};

use crate::{metrics::Draws, Row, TrainError};

/// How forests are grown.
#[derive(Debug, Clone)]
pub struct ForestOptions {
    /// Trees.
    pub trees: usize,
    /// Deepest cut level.
    pub max_depth: usize,
    /// Fewest rows on each side of a cut, as a share of a tree's rows.
    pub min_leaf_share: f64,
    /// Share of the features each tree may cut on. All by default: an
    /// interaction of three traits is found only by a tree that may cut on
    /// all three (with half the features drawn per tree, the interaction
    /// world's engine captured 43–68 % of the oracle's margin on four seeds
    /// of six, 68–89 % with all); the trees differ by the customers they
    /// are grown on.
    pub feature_share: f64,
    /// Pseudo-rows of the parent's rate in each node's rate.
    pub shrinkage: f64,
}

impl Default for ForestOptions {
    fn default() -> Self {
        Self { trees: 60, max_depth: 6, min_leaf_share: 0.03, feature_share: 1.0, shrinkage: 10.0 }
    }
}

/// Grows a forest on `rows` (calibration: identity; see [`calibrate`]).
pub fn grow(rows: &[&Row], options: &ForestOptions, seed: u64) -> Result<Forest, TrainError> {
    let treated = rows.iter().filter(|r| r.treated).count();
    if treated == 0 || treated == rows.len() {
        return Err(TrainError::TooFewRows("an uplift forest needs treated and held-out rows".into()));
    }
    let mut draws = Draws(seed ^ 0x5eed_f0e5_7a11_u64);
    let mut trees = Vec::with_capacity(options.trees);
    for t in 0..options.trees {
        let salt = draws.next();
        let half = |r: &Row| xxhash_rust::xxh3::xxh3_64_with_seed(r.customer.as_bytes(), salt) & 1 == 0;
        let (cut_rows, rate_rows): (Vec<&Row>, Vec<&Row>) = rows.iter().copied().partition(|r| half(r));
        let mut features: Vec<usize> = (0..LEN).filter(|_| draws.uniform() < options.feature_share).collect();
        if features.len() < 2 {
            features = vec![(draws.next() % LEN as u64) as usize, (t + 1) % LEN];
            features.dedup();
        }
        let mut tree = cuts(&cut_rows, &features, options);
        estimate_rates(&mut tree, &rate_rows, options.shrinkage);
        trees.push(tree);
    }
    Ok(Forest {
        trees,
        calibration: Calibration { intercept: 0.0, slope: 1.0, covariance: [0.0; 3], floors: Vec::new() },
    })
}

/// Treated and held-out rows and conversions of a group of rows, weighted
/// by [`crate::Assignment::weight`], and the rows themselves.
#[derive(Debug, Clone, Copy, Default)]
struct Arms {
    treated: f64,
    treated_conversions: f64,
    control: f64,
    control_conversions: f64,
    treated_rows: f64,
    control_rows: f64,
}

impl Arms {
    fn add(&mut self, r: &Row) {
        let w = r.assignment.weight();
        let converted = f64::from(u8::from(r.converted));
        if r.treated {
            self.treated += w;
            self.treated_conversions += w * converted;
            self.treated_rows += 1.0;
        } else {
            self.control += w;
            self.control_conversions += w * converted;
            self.control_rows += 1.0;
        }
    }

    fn minus(&self, other: &Arms) -> Arms {
        Arms {
            treated: self.treated - other.treated,
            treated_conversions: self.treated_conversions - other.treated_conversions,
            control: self.control - other.control,
            control_conversions: self.control_conversions - other.control_conversions,
            treated_rows: self.treated_rows - other.treated_rows,
            control_rows: self.control_rows - other.control_rows,
        }
    }

    /// Variance of [`Arms::uplift`] as an estimate (rates smoothed by one
    /// conversion and one non-conversion, so that no side looks certain).
    fn uplift_variance(&self) -> f64 {
        // Rates from the weighted counts, their noise from the rows behind them.
        let rate = |conversions: f64, weight: f64| conversions / weight.max(1e-9);
        let arm = |p: f64, rows: f64| {
            let p = (p * rows + 1.0) / (rows + 2.0);
            p * (1.0 - p) / rows.max(1.0)
        };
        arm(rate(self.treated_conversions, self.treated), self.treated_rows)
            + arm(rate(self.control_conversions, self.control), self.control_rows)
    }

    fn uplift(&self) -> f64 {
        self.treated_conversions / self.treated.max(1.0) - self.control_conversions / self.control.max(1.0)
    }
}

/// The best cut of one node so far: (gain, feature, threshold).
type Best = Option<(f64, usize, f64)>;

/// The cuts of one tree, chosen on `rows` over the `features` slots, level
/// by level: at each node the cut that separates uplift most, by the gain
/// `(uplift_left − uplift_right)² / (var_left + var_right)` (the squared
/// gap over its variance, so that noise on a small side does not win),
/// with at least `min_arm` treated and
/// `min_arm` held-out rows on each side. One pass over the rows per
/// feature and level, in an order sorted once: ties and all, the same rows
/// give the same tree.
fn cuts(rows: &[&Row], features: &[usize], options: &ForestOptions) -> Tree {
    let min_arm = (rows.len() as f64 * options.min_leaf_share / 2.0).max(10.0);
    let sorted: Vec<Vec<u32>> = features
        .iter()
        .map(|&f| {
            let mut order: Vec<u32> = (0..rows.len() as u32).collect();
            order.sort_by(|&a, &b| rows[a as usize].x[f].total_cmp(&rows[b as usize].x[f]).then(a.cmp(&b)));
            order
        })
        .collect();
    let mut root = Arms::default();
    rows.iter().for_each(|r| root.add(r));
    let mut nodes = vec![Node { treated: 0.0, control: 0.0, split: None }];
    // The node each row is in, while that node may still be cut.
    const SETTLED: usize = usize::MAX;
    let mut node_of = vec![0usize; rows.len()];
    let mut frontier: Vec<(usize, Arms)> = vec![(0, root)];
    for _ in 0..options.max_depth {
        if frontier.is_empty() {
            break;
        }
        let slot: std::collections::HashMap<usize, usize> =
            frontier.iter().enumerate().map(|(i, (node, _))| (*node, i)).collect();
        let mut best: Vec<Best> = vec![None; frontier.len()];
        for (j, order) in sorted.iter().enumerate() {
            let f = features[j];
            let mut left = vec![Arms::default(); frontier.len()];
            let mut last: Vec<Option<f64>> = vec![None; frontier.len()];
            for &i in order {
                let r = rows[i as usize];
                let Some(&k) = slot.get(&node_of[i as usize]) else { continue };
                let x = r.x[f];
                if let Some(previous) = last[k].filter(|&p| x > p) {
                    let total = frontier[k].1;
                    let right = total.minus(&left[k]);
                    let enough = |a: &Arms| a.treated_rows >= min_arm && a.control_rows >= min_arm;
                    if enough(&left[k]) && enough(&right) {
                        let gap = left[k].uplift() - right.uplift();
                        let gain = gap * gap / (left[k].uplift_variance() + right.uplift_variance());
                        if best[k].is_none_or(|(g, _, _)| gain > g) {
                            best[k] = Some((gain, f, (previous + x) / 2.0));
                        }
                    }
                }
                left[k].add(r);
                last[k] = Some(x);
            }
        }
        let mut next = Vec::new();
        let mut children: Vec<Option<(usize, usize, usize, f64)>> = vec![None; frontier.len()];
        for (k, (node, _)) in frontier.iter().enumerate() {
            if let Some((_, feature, threshold)) = best[k] {
                // Six significant digits are plenty and keep the artifact small.
                let threshold = format!("{threshold:.5e}").parse().unwrap_or(threshold);
                let (l, r) = (nodes.len(), nodes.len() + 1);
                nodes.push(Node { treated: 0.0, control: 0.0, split: None });
                nodes.push(Node { treated: 0.0, control: 0.0, split: None });
                nodes[*node].split = Some(Split { feature, threshold, left: l, right: r });
                children[k] = Some((l, r, feature, threshold));
                next.push((l, Arms::default()));
                next.push((r, Arms::default()));
            }
        }
        let next_slot: std::collections::HashMap<usize, usize> =
            next.iter().enumerate().map(|(i, (node, _))| (*node, i)).collect();
        for (i, r) in rows.iter().enumerate() {
            let Some(&k) = slot.get(&node_of[i]) else { continue };
            node_of[i] = match children[k] {
                Some((l, right, feature, threshold)) => {
                    let child = if r.x[feature] <= threshold { l } else { right };
                    next[next_slot[&child]].1.add(r);
                    child
                }
                None => SETTLED,
            };
        }
        frontier = next;
    }
    Tree { nodes }
}

/// Sets every node's rates from `rows` (rows the cuts were not chosen on):
/// `(conversions + k × parent's rate) / (rows + k)`, the root shrunk toward
/// the rows' overall rates.
fn estimate_rates(tree: &mut Tree, rows: &[&Row], k: f64) {
    // (treated weight, treated conversions, held-out weight, held-out conversions) per node.
    let mut counts = vec![[0.0f64; 4]; tree.nodes.len()];
    let mut overall = [0.0f64; 4];
    for r in rows {
        let arm = if r.treated { 0 } else { 2 };
        let w = r.assignment.weight();
        let converted = w * f64::from(u8::from(r.converted));
        overall[arm] += w;
        overall[arm + 1] += converted;
        let mut at = 0;
        loop {
            counts[at][arm] += w;
            counts[at][arm + 1] += converted;
            match &tree.nodes[at].split {
                Some(s) => at = if r.x[s.feature] <= s.threshold { s.left } else { s.right },
                None => break,
            }
        }
    }
    let rate = |conversions: f64, n: f64| if n > 0.0 { conversions / n } else { 0.0 };
    let mut parent_rates = vec![(rate(overall[1], overall[0]), rate(overall[3], overall[2])); tree.nodes.len()];
    for i in 0..tree.nodes.len() {
        let (pt, pc) = parent_rates[i];
        let c = counts[i];
        // Rates to six decimals: plenty, and the artifact stays small.
        let round = |p: f64| (p * 1e6).round() / 1e6;
        let treated = round((c[1] + k * pt) / (c[0] + k));
        let control = round((c[3] + k * pc) / (c[2] + k));
        tree.nodes[i].treated = treated;
        tree.nodes[i].control = control;
        if let Some(s) = &tree.nodes[i].split {
            parent_rates[s.left] = (treated, control);
            parent_rates[s.right] = (treated, control);
        }
    }
}

/// Groups of validation rows the calibration line is fitted to.
const CALIBRATION_BINS: usize = 10;
/// Bootstrap draws of the line's covariance.
const CALIBRATION_RESAMPLES: usize = 200;

/// The calibration line of predicted uplift on `rows` (each with the
/// forest's raw uplift). The rows are cut into ten groups by prediction;
/// in each, the observed uplift is the treated minus the held-out
/// conversion rate, each row weighted by its selection weight over the
/// probability of the arm it was in (its logged treatment probability, or
/// the rows' treated share) — so a group mixing customers treated at
/// different rates compares like with like. The line is weighted least
/// squares of observed on predicted over the groups (groups, not rows: a
/// few extreme predictions cannot tilt it), its slope kept at 0 or more (a
/// forest that ranks backwards predicts the average uplift for everyone).
/// Its covariance comes from redrawing customers, all rows of one
/// customer together, since they are not independent.
///
/// The floors: for each group, the observed uplift of that group and all
/// groups above it (everyone predicted at least as high), with its
/// standard error from the same redraws — what the treat rule's lower
/// bound is held under where the line extends a slope past what was seen.
pub fn calibrate(rows: &[(&Row, f64)], seed: u64) -> Calibration {
    let treated = rows.iter().filter(|(r, _)| r.treated).count();
    if rows.is_empty() || treated == 0 || treated == rows.len() {
        return Calibration { intercept: 0.0, slope: 1.0, covariance: [0.0; 3], floors: Vec::new() };
    }
    let share = treated as f64 / rows.len() as f64;
    // Each row's group (by prediction) and its weight in its arm.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[a].1.total_cmp(&rows[b].1).then(a.cmp(&b)));
    let mut group = vec![0usize; rows.len()];
    for (rank, &i) in order.iter().enumerate() {
        group[i] = rank * CALIBRATION_BINS / rows.len();
    }
    let weight: Vec<f64> = rows
        .iter()
        .map(|(r, _)| {
            let e = r.assignment.treatment.unwrap_or(share);
            r.assignment.weight() / if r.treated { e } else { 1.0 - e }
        })
        .collect();
    let fit = |count: &dyn Fn(usize) -> f64| {
        // Per group: weight and conversions of each arm, weighted prediction.
        let mut sums = [[0.0f64; 6]; CALIBRATION_BINS];
        for (i, (r, u)) in rows.iter().enumerate() {
            let (k, w) = (count(i), weight[i]);
            if k == 0.0 {
                continue;
            }
            let s = &mut sums[group[i]];
            let arm = if r.treated { 0 } else { 2 };
            s[arm] += k * w;
            s[arm + 1] += k * w * f64::from(u8::from(r.converted));
            s[4] += k * r.assignment.weight() * u;
            s[5] += k * r.assignment.weight();
        }
        let points: Vec<(f64, f64, f64)> = sums
            .iter()
            .filter(|s| s[0] > 0.0 && s[2] > 0.0)
            .map(|s| (s[4] / s[5], s[1] / s[0] - s[3] / s[2], s[5]))
            .collect();
        // Each group and those above it, summed from the top.
        let mut above = [0.0f64; 4];
        let mut floors = [None; CALIBRATION_BINS];
        for g in (0..CALIBRATION_BINS).rev() {
            for k in 0..4 {
                above[k] += sums[g][k];
            }
            if above[0] > 0.0 && above[2] > 0.0 {
                floors[g] = Some(above[1] / above[0] - above[3] / above[2]);
            }
        }
        (line(&points), floors)
    };
    let ((intercept, slope), observed) = fit(&|_| 1.0);
    // Redraw customers: each draw counts every row of a drawn customer once
    // per time the customer was drawn.
    let mut customers: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let customer_of: Vec<usize> = rows
        .iter()
        .map(|(r, _)| {
            let next = customers.len();
            *customers.entry(r.customer.as_str()).or_insert(next)
        })
        .collect();
    let mut draws = Draws(seed ^ 0x00ca_11b7_a7e5_eed5_u64);
    let mut lines = Vec::with_capacity(CALIBRATION_RESAMPLES);
    let mut redrawn_floors = Vec::with_capacity(CALIBRATION_RESAMPLES);
    for _ in 0..CALIBRATION_RESAMPLES {
        let mut times = vec![0.0f64; customers.len()];
        for _ in 0..customers.len() {
            times[(draws.next() % customers.len() as u64) as usize] += 1.0;
        }
        let (line, floors) = fit(&|i| times[customer_of[i]]);
        lines.push(line);
        redrawn_floors.push(floors);
    }
    let n = lines.len() as f64;
    let (ma, mb) = (lines.iter().map(|l| l.0).sum::<f64>() / n, lines.iter().map(|l| l.1).sum::<f64>() / n);
    let mut covariance = [0.0; 3];
    for (a, b) in &lines {
        covariance[0] += (a - ma) * (a - ma) / (n - 1.0);
        covariance[1] += (a - ma) * (b - mb) / (n - 1.0);
        covariance[2] += (b - mb) * (b - mb) / (n - 1.0);
    }
    // Where each group starts: its lowest raw prediction.
    let mut starts = [f64::NAN; CALIBRATION_BINS];
    for &i in order.iter().rev() {
        starts[group[i]] = rows[i].1;
    }
    let floors = (0..CALIBRATION_BINS)
        .filter_map(|g| {
            let uplift = observed[g]?;
            let draws: Vec<f64> = redrawn_floors.iter().filter_map(|f| f[g]).collect();
            let mean = draws.iter().sum::<f64>() / draws.len().max(1) as f64;
            let variance =
                draws.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / (draws.len() as f64 - 1.0).max(1.0);
            Some(Floor { from: starts[g], uplift, error: variance.sqrt() })
        })
        .filter(|f| f.from.is_finite())
        .fold(Vec::<Floor>::new(), |mut floors, f| {
            // Ties of predictions can start two groups at one value: the higher group's set is the one.
            if floors.last().is_some_and(|last| last.from >= f.from) {
                floors.pop();
            }
            floors.push(f);
            floors
        });
    Calibration { intercept, slope, covariance, floors }
}

/// Weighted least squares of `y` on `x` over `(x, y, weight)` points, the
/// slope kept at 0 or more (then the line is the weighted mean of `y`).
fn line(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let total: f64 = points.iter().map(|p| p.2).sum();
    if total <= 0.0 {
        return (0.0, 0.0);
    }
    let mx = points.iter().map(|p| p.2 * p.0).sum::<f64>() / total;
    let my = points.iter().map(|p| p.2 * p.1).sum::<f64>() / total;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 1e-12 { (sxy / sxx).max(0.0) } else { 0.0 };
    (my - slope * mx, slope)
}

/// Each row with the forest's uncalibrated uplift at its features.
pub fn raw_uplifts<'r>(forest: &Forest, rows: &[&'r Row]) -> Vec<(&'r Row, f64)> {
    rows.iter()
        .map(|r| {
            let (t, c) = forest.raw(&r.x);
            (*r, t - c)
        })
        .collect()
}

/// Predicted against observed uplift (treated rate − held-out rate) in
/// `bins` equal groups of rows by predicted uplift.
pub fn uplift_calibration(rows: &[(&Row, f64)], bins: usize) -> Vec<CalibrationBin> {
    let mut sorted: Vec<&(&Row, f64)> = rows.iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let per_bin = sorted.len().div_ceil(bins.max(1)).max(1);
    sorted
        .chunks(per_bin)
        .map(|chunk| {
            let predicted = chunk.iter().map(|(_, u)| u).sum::<f64>() / chunk.len() as f64;
            let arm = |treated: bool| {
                let arm: Vec<bool> =
                    chunk.iter().filter(|(r, _)| r.treated == treated).map(|(r, _)| r.converted).collect();
                arm.iter().filter(|c| **c).count() as f64 / arm.len().max(1) as f64
            };
            CalibrationBin { predicted, observed: arm(true) - arm(false), rows: chunk.len() as u64 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where contact helps (+40 pp) only when features 0 and 1 are
    /// both above 0.5 and harms (−30 pp) when both are below: an
    /// interaction no single feature shows. Half are treated.
    fn rows(n: usize, seed: u64) -> Vec<Row> {
        let mut d = Draws(seed);
        (0..n)
            .map(|i| {
                let mut x = [0.0; LEN];
                for v in x.iter_mut().take(4) {
                    *v = d.uniform();
                }
                let treated = d.uniform() < 0.5;
                let base = 0.3;
                let uplift = match (x[0] > 0.5, x[1] > 0.5) {
                    (true, true) => 0.4,
                    (false, false) => -0.3,
                    _ => 0.0,
                };
                let p = if treated { base + uplift } else { base };
                Row {
                    decision: i,
                    customer: format!("c{i}"),
                    at_ms: i as i64,
                    treated,
                    x,
                    converted: d.uniform() < p,
                    margin_minor: 0.0,
                    assignment: Default::default(),
                }
            })
            .collect()
    }

    /// Row `i` of customer `c{i}`, all features 0 (the tests give it its prediction).
    fn featureless(i: usize, treated: bool, converted: bool, assignment: crate::Assignment) -> Row {
        Row {
            decision: i,
            customer: format!("c{i}"),
            at_ms: 0,
            treated,
            x: [0.0; LEN],
            converted,
            margin_minor: 0.0,
            assignment,
        }
    }

    #[test]
    fn where_contact_helps_nobody_the_floor_holds_the_top_of_the_ranking_down() {
        // Half harmed (−20 pp, predicted −5 pp), half indifferent with
        // predictions spread over 0 to +6 pp that mean nothing.
        let mut d = Draws(11);
        let rows: Vec<Row> = (0..8_000)
            .map(|i| {
                let treated = d.uniform() < 0.5;
                let harmed = i % 2 == 0;
                let p = if harmed && treated {
                    0.1
                } else if harmed {
                    0.3
                } else {
                    0.2
                };
                featureless(i, treated, d.uniform() < p, Default::default())
            })
            .collect();
        let raw: Vec<(&Row, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r, if i % 2 == 0 { -0.05 } else { 0.06 * (i % 100) as f64 / 100.0 }))
            .collect();
        let c = calibrate(&raw, 3);
        // The line, its slope learnt from the harmed, promises the top +5 pp and more…
        let (line, error) = c.apply(0.06);
        assert!(c.slope > 1.0 && line - 1.645 * error > 0.02, "{c:?}");
        // …which the customers ranked alike did not show.
        assert!(c.lower_bound(0.06, 1.645) < 0.005, "{c:?}");
        assert!(c.floors.windows(2).all(|w| w[0].from < w[1].from), "{c:?}");
        // Where the harmed are, line and floor agree that contact harms.
        assert!(c.lower_bound(-0.05, 1.645) < -0.1, "{c:?}");
    }

    #[test]
    fn a_forest_finds_an_interaction_and_calibration_keeps_its_level() {
        let train = rows(8_000, 1);
        let refs: Vec<&Row> = train.iter().collect();
        let mut forest = grow(&refs, &ForestOptions::default(), 7).unwrap();
        assert!(forest.problems("forest").is_empty(), "{:?}", forest.problems("forest"));
        let validation = rows(4_000, 2);
        let raw = raw_uplifts(&forest, &validation.iter().collect::<Vec<_>>());
        forest.calibration = calibrate(&raw, 7);
        assert!(forest.calibration.slope > 0.5, "{:?}", forest.calibration);
        let at = |a: f64, b: f64| {
            let mut x = [0.0; LEN];
            x[0] = a;
            x[1] = b;
            x[2] = 0.5;
            x[3] = 0.5;
            let (t, c) = forest.predict(&x);
            t - c
        };
        assert!(at(0.8, 0.8) > 0.2, "helped: {}", at(0.8, 0.8));
        assert!(at(0.2, 0.2) < -0.1, "harmed: {}", at(0.2, 0.2));
        assert!(at(0.8, 0.2).abs() < 0.15 && at(0.2, 0.8).abs() < 0.15, "{} {}", at(0.8, 0.2), at(0.2, 0.8));
        let bins = uplift_calibration(&raw, 5);
        assert_eq!(bins.iter().map(|b| b.rows).sum::<u64>(), 4_000);
        assert!(bins[0].observed < 0.0 && bins[4].observed > 0.2, "{bins:?}");
    }

    #[test]
    fn a_forest_of_noise_is_calibrated_flat_at_the_average_uplift() {
        // Rows whose driving features (0 and 1) are hidden.
        let hidden = |rows: Vec<Row>| -> Vec<Row> {
            rows.into_iter()
                .map(|mut r| {
                    r.x[0] = 0.0;
                    r.x[1] = 0.0;
                    r
                })
                .collect()
        };
        let noise = hidden(rows(6_000, 3));
        let refs: Vec<&Row> = noise.iter().collect();
        let forest = grow(&refs, &ForestOptions::default(), 7).unwrap();
        let validation = hidden(rows(4_000, 4));
        let raw = raw_uplifts(&forest, &validation.iter().collect::<Vec<_>>());
        let c = calibrate(&raw, 7);
        // The features that drove the outcomes are hidden: what the trees
        // cut on is noise, and the calibrated forest predicts about the
        // average uplift, ¼ × 40 − ¼ × 30 = 2.5 pp, for everyone.
        assert!(c.slope < 0.6, "{c:?}");
        let mean = raw.iter().map(|(_, u)| c.intercept + c.slope * u).sum::<f64>() / raw.len() as f64;
        assert!((mean - 0.025).abs() < 0.04, "{mean}");
        // The interval of the level covers the truth: within three errors.
        let (level, error) = c.apply(raw.iter().map(|(_, u)| u).sum::<f64>() / raw.len() as f64);
        assert!(error > 0.005 && error < 0.05 && (level - 0.025).abs() < 3.0 * error, "{level} ± {error}");
    }

    #[test]
    fn logged_propensities_make_the_rows_a_model_chose_stand_for_everyone() {
        // A model contacted everyone it liked (contact helps them +30 pp,
        // 80 % treated) and 10 % of the others as exploration (contact
        // harms them −20 pp, 50 % treated). Half the population is each:
        // the true average uplift is +5 pp. The features that tell them
        // apart are hidden, so the calibrated forest predicts the average.
        let mut d = Draws(11);
        let mut rows = Vec::new();
        for i in 0..40_000 {
            let liked = i % 2 == 0;
            let assignment = if liked {
                crate::Assignment { selection: 1.0, treatment: Some(0.8) }
            } else {
                crate::Assignment { selection: 0.1, treatment: Some(0.5) }
            };
            if d.uniform() >= assignment.selection {
                continue;
            }
            let treated = d.uniform() < assignment.treatment.unwrap();
            let p = match (liked, treated) {
                (true, true) => 0.5,
                (true, false) => 0.2,
                (false, true) => 0.1,
                (false, false) => 0.3,
            };
            rows.push(featureless(i, treated, d.uniform() < p, assignment));
        }
        let level = |rows: &[Row]| {
            let refs: Vec<&Row> = rows.iter().collect();
            let forest = grow(&refs, &ForestOptions::default(), 3).unwrap();
            let raw = raw_uplifts(&forest, &refs);
            calibrate(&raw, 7).apply(raw[0].1).0
        };
        let weighted = level(&rows);
        assert!((weighted - 0.05).abs() < 0.04, "{weighted}");
        // Without the logged probabilities the rows describe the liked
        // customers (and their treated share, taken as the overall one,
        // biases the rest): the level is far off.
        let unlogged: Vec<Row> = rows.into_iter().map(|r| Row { assignment: Default::default(), ..r }).collect();
        let naive = level(&unlogged);
        assert!(naive > 0.15, "{naive}");
    }
}
