//! Uplift forests: who is persuadable, found by trees rather than lines.
//!
//! A linear model cannot say "contact helps wine lovers who use the app but
//! seldom buy, and puts off heavy app users who buy anyway": the sign of the
//! increment depends on several features at once. Each tree of a forest
//! cuts the customers into groups by such combinations; every node holds
//! the conversion rates of the treated and of the held-out customers who
//! reach it, estimated on rows the tree's cuts were not chosen on (so the
//! rates are honest, not fitted to noise). A prediction averages the leaves
//! the customer falls in; a calibration line, fitted on predictions for
//! decisions the trees did not grow on, puts the predicted uplift right in
//! level as well as in rank.
//!
//! The line is straight, and the truth need not be: where contact harms
//! some customers and helps nobody, the line learns its slope from the
//! harmed and extends it past zero, promising the top of the ranking an
//! increment nobody gets. So the treat rule's lower bound is also held
//! under a **floor**: what out-of-sample decisions showed among all customers
//! predicted at least as high, at the same number of standard errors below.
//! The floors are ten tests at once, and the top ones hold few customers:
//! where nobody is persuadable, one of them passing by chance would send
//! its group offers that pay nobody (one seed in twenty of `bench-uplift`'s
//! world without persuadables contacted 13.8 % instead of its 5 %
//! exploration slice). So each floor is held at the family's level: `z`'s
//! one-sided tail shared among the floors (Bonferroni; 1.645 becomes 2.58
//! for ten floors), which keeps the chance that any floor passes by luck
//! at the level `z` asks for.
//! A customer is contacted only if both the line and the customers ranked
//! like them say it pays.
//!
//! Artifacts are input like any other: a forest is checked (node indices
//! point forward and inside the tree, features exist, rates are
//! probabilities, sizes are bounded) before the engine walks it, so a
//! hostile one is refused instead of looping or indexing out of bounds.

use serde::{Deserialize, Serialize};

use super::vector::{Vector, FEATURES, LEN};

/// Most trees a forest may have.
pub const MAX_TREES: usize = 1_000;
/// Most nodes a tree may have.
pub const MAX_NODES: usize = 4_096;
/// Most floors a calibration may have.
pub const MAX_FLOORS: usize = 64;

/// A cut: rows with `x[feature] <= threshold` go left, the others right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Slot in the feature vector.
    pub feature: usize,
    /// Raw (not standardised) value of the cut.
    pub threshold: f64,
    /// Index of the left child; after this node's.
    pub left: usize,
    /// Index of the right child; after this node's.
    pub right: usize,
}

/// A node: the conversion rates of the rows that reach it, and its cut
/// (none at a leaf).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Conversion rate of treated rows reaching the node.
    pub treated: f64,
    /// Conversion rate of held-out rows reaching the node.
    pub control: f64,
    /// The cut; `None` at a leaf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

impl Node {
    fn uplift(&self) -> f64 {
        self.treated - self.control
    }
}

/// One tree; the root is node 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Nodes; children come after their parent.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The nodes from the root to `x`'s leaf. Terminates on a checked tree:
    /// every step moves to a later node.
    fn path<'t>(&'t self, x: &'t Vector) -> impl Iterator<Item = &'t Node> + 't {
        let mut next = Some(0);
        std::iter::from_fn(move || {
            let node = &self.nodes[next?];
            next = node.split.as_ref().map(|s| if x[s.feature] <= s.threshold { s.left } else { s.right });
            Some(node)
        })
    }

    /// The leaf `x` falls in.
    pub fn leaf(&self, x: &Vector) -> &Node {
        let mut node = &self.nodes[0];
        while let Some(s) = &node.split {
            node = &self.nodes[if x[s.feature] <= s.threshold { s.left } else { s.right }];
        }
        node
    }
}

/// A linear map of predicted uplift to calibrated uplift:
/// `intercept + slope × uplift`, with the uncertainty of the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Uplift at a prediction of 0.
    pub intercept: f64,
    /// Calibrated uplift per unit of predicted uplift (0 or more).
    pub slope: f64,
    /// Covariance of (intercept, slope) as fitted on out-of-sample predictions
    /// (clustered by customer): `[var intercept, covariance, var slope]`.
    /// Zero: the line is taken as certain.
    #[serde(default)]
    pub covariance: [f64; 3],
    /// The uplift observed out of sample among the customers
    /// predicted at least as high as each floor's start, ascending by start
    /// (see the module docs). Empty: the line alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floors: Vec<Floor>,
}

/// The uplift observed among the validation customers whose raw predicted
/// uplift was at least `from`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Raw predicted uplift where it starts.
    pub from: f64,
    /// Treated minus held-out conversion rate of those customers.
    pub uplift: f64,
    /// Its standard error (clustered by customer).
    pub error: f64,
}

impl Calibration {
    /// The calibrated uplift of a raw prediction and its standard error.
    pub fn apply(&self, raw_uplift: f64) -> (f64, f64) {
        let [va, cov, vb] = self.covariance;
        let variance = va + 2.0 * raw_uplift * cov + raw_uplift * raw_uplift * vb;
        (self.intercept + self.slope * raw_uplift, variance.max(0.0).sqrt())
    }

    /// The calibrated uplift of a raw prediction `z` standard errors below,
    /// held under its floor (`z` of the floor's standard errors below what
    /// the customers predicted at least as high showed; below the first
    /// floor's start, the first floor).
    pub fn lower_bound(&self, raw_uplift: f64, z: f64) -> f64 {
        self.lower_bound_at(raw_uplift, z, family_z(z, self.floors.len()))
    }

    /// [`Calibration::lower_bound`] with the floors' `floor_z` given.
    fn lower_bound_at(&self, raw_uplift: f64, z: f64, floor_z: f64) -> f64 {
        let (uplift, error) = self.apply(raw_uplift);
        let line = uplift - z * error;
        let floor = self.floors.iter().rev().find(|f| f.from <= raw_uplift).or(self.floors.first());
        floor.map_or(line, |f| line.min(f.uplift - floor_z * f.error))
    }

    /// Conversion probabilities (contacted, not) and how far the uplift's
    /// lower bound at `z` lies below it, from a forest's average rates: the
    /// control rate, and that plus the calibrated uplift, within 0..1.
    fn probabilities(&self, treated: f64, control: f64, z: f64, floor_z: f64) -> (f64, f64, f64) {
        let raw = treated - control;
        let uplift = self.apply(raw).0;
        ((control + uplift).clamp(0.0, 1.0), control, uplift - self.lower_bound_at(raw, z, floor_z))
    }
}

/// The number of standard errors that holds each of `tests` one-sided
/// tests at the level `z` holds one (Bonferroni: `z`'s upper tail divided
/// among them). `z` itself for one test, or for `z` ≤ 0 (deciding on the
/// expected value).
pub fn family_z(z: f64, tests: usize) -> f64 {
    if z <= 0.0 || tests <= 1 || !z.is_finite() {
        return z;
    }
    -normal_quantile(0.5 * erfc(z / std::f64::consts::SQRT_2) / tests as f64)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The standard normal quantile of `p` in (0, 0.5] (Acklam's rational
/// approximation, relative error below 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_287_766_562e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_248e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let p = p.clamp(f64::MIN_POSITIVE, 0.5);
    if p < 0.024_25 {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// An ensemble of uplift trees with its calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forest {
    /// The trees.
    pub trees: Vec<Tree>,
    /// Applied to the average of the trees' uplift.
    pub calibration: Calibration,
}

impl Forest {
    /// The trees' average (treated, control) conversion rates at `x`, before calibration.
    pub fn raw(&self, x: &Vector) -> (f64, f64) {
        let (mut t, mut c) = (0.0, 0.0);
        for tree in &self.trees {
            let leaf = tree.leaf(x);
            t += leaf.treated;
            c += leaf.control;
        }
        let n = self.trees.len().max(1) as f64;
        (t / n, c / n)
    }

    /// Conversion probabilities (contacted, not) at `x`: the control rate
    /// of the leaves, and that plus the calibrated uplift, within 0..1.
    pub fn predict(&self, x: &Vector) -> (f64, f64) {
        let (p_t, p_c, _) = self.predict_with_shortfall(x, 0.0);
        (p_t, p_c)
    }

    /// [`Forest::predict`] and how far below the uplift its lower bound at
    /// `z` standard errors lies ([`Calibration::lower_bound`]).
    pub fn predict_with_shortfall(&self, x: &Vector, z: f64) -> (f64, f64, f64) {
        let (t, c) = self.raw(x);
        self.calibration.probabilities(t, c, z, family_z(z, self.calibration.floors.len()))
    }

    /// Each feature's share of the calibrated uplift at `x`: along every
    /// tree's path, the change of uplift at a cut goes to the cut's feature
    /// (the trees' own decomposition of their prediction).
    pub fn contributions(&self, x: &Vector) -> Vector {
        let mut out = [0.0; LEN];
        let weight = self.calibration.slope / self.trees.len().max(1) as f64;
        for tree in &self.trees {
            let mut parent: Option<&Node> = None;
            for node in tree.path(x) {
                if let Some(p) = parent {
                    let feature = p.split.as_ref().expect("a parent has a cut").feature;
                    out[feature] += weight * (node.uplift() - p.uplift());
                }
                parent = Some(node);
            }
        }
        out
    }

    /// What keeps the engine from walking the forest, with field paths
    /// under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.trees.is_empty() || self.trees.len() > MAX_TREES {
            out.push(format!("{path}.trees: has {} trees; needs 1 to {MAX_TREES}", self.trees.len()));
        }
        let c = &self.calibration;
        if !c.intercept.is_finite() || !c.slope.is_finite() || c.slope < 0.0 {
            out.push(format!("{path}.calibration: needs a finite intercept and a finite slope of 0 or more"));
        }
        let [va, cov, vb] = c.covariance;
        if ![va, cov, vb].iter().all(|v| v.is_finite()) || va < 0.0 || vb < 0.0 {
            out.push(format!("{path}.calibration.covariance: needs finite numbers and variances of 0 or more"));
        }
        if c.floors.len() > MAX_FLOORS {
            out.push(format!("{path}.calibration.floors: has {}; at most {MAX_FLOORS}", c.floors.len()));
        }
        for (i, f) in c.floors.iter().enumerate() {
            if ![f.from, f.uplift, f.error].iter().all(|v| v.is_finite()) || f.error < 0.0 {
                out.push(format!("{path}.calibration.floors[{i}]: needs finite numbers and an error of 0 or more"));
            }
            if i > 0 && c.floors[i - 1].from >= f.from {
                out.push(format!("{path}.calibration.floors[{i}].from: must be above the previous floor's"));
            }
        }
        for (t, tree) in self.trees.iter().enumerate().take(MAX_TREES) {
            let at = format!("{path}.trees[{t}]");
            let n = tree.nodes.len();
            if n == 0 || n > MAX_NODES {
                out.push(format!("{at}.nodes: has {n} nodes; needs 1 to {MAX_NODES}"));
                continue;
            }
            for (i, node) in tree.nodes.iter().enumerate() {
                let at = format!("{at}.nodes[{i}]");
                if ![node.treated, node.control].iter().all(|p| (0.0..=1.0).contains(p)) {
                    out.push(format!("{at}: treated and control are conversion rates, between 0 and 1"));
                }
                let Some(s) = &node.split else { continue };
                if s.feature >= LEN {
                    out.push(format!("{at}.split.feature: {} is not a slot of the {LEN} features", s.feature));
                }
                if !s.threshold.is_finite() {
                    out.push(format!("{at}.split.threshold: is not a finite number"));
                }
                for (side, child) in [("left", s.left), ("right", s.right)] {
                    if child <= i || child >= n {
                        out.push(format!("{at}.split.{side}: {child} must be a later node of the tree (< {n})"));
                    }
                }
            }
        }
        out
    }

    /// The features the trees cut on, by name, most used first.
    pub fn features_used(&self) -> Vec<(&'static str, usize)> {
        let mut counts = [0usize; LEN];
        for node in self.trees.iter().flat_map(|t| &t.nodes) {
            if let Some(s) = node.split.as_ref().filter(|s| s.feature < LEN) {
                counts[s.feature] += 1;
            }
        }
        let mut used: Vec<(&'static str, usize)> =
            counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (FEATURES[i].0, *n)).collect();
        used.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        used
    }
}

/// A checked forest laid out for scoring: every tree's nodes in one array
/// of 16-byte steps, a cut's two children side by side. The artifact's
/// nodes (56 bytes, children anywhere) are for reading and checking; this
/// is for the hot path, where a candidate walks every tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Walker {
    steps: Vec<Step>,
    /// Each tree's root step.
    roots: Vec<u32>,
    /// Control rates of the leaves, by [`Step::next`] of a leaf.
    controls: Vec<f64>,
    calibration: Calibration,
    /// `(z, family_z(z, floors))` for the first `z` asked for: the engine's
    /// setting, which does not change while a model is loaded, so the hot
    /// path does not compute a normal quantile per candidate.
    floor_z: std::sync::OnceLock<(f64, f64)>,
}

/// A cut (`x[feature] <= value` goes to `next`, else `next + 1`) or a leaf
/// (`feature` = [`Step::LEAF`], `value` its treated rate, `next` its control rate's index).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    value: f64,
    next: u32,
    feature: u16,
}

impl Step {
    const LEAF: u16 = u16::MAX;
}

impl Walker {
    /// Lays out a forest that passed [`Forest::problems`].
    pub fn new(forest: &Forest) -> Self {
        let mut w = Walker {
            steps: Vec::new(),
            roots: Vec::new(),
            controls: Vec::new(),
            calibration: forest.calibration.clone(),
            floor_z: std::sync::OnceLock::new(),
        };
        for tree in &forest.trees {
            w.roots.push(w.steps.len() as u32);
            // (node in the tree, its step), breadth first.
            let mut queue = std::collections::VecDeque::from([(0usize, w.steps.len())]);
            w.steps.push(Step { value: 0.0, next: 0, feature: Step::LEAF });
            while let Some((node, at)) = queue.pop_front() {
                let n = &tree.nodes[node];
                w.steps[at] = match &n.split {
                    Some(s) => {
                        let children = w.steps.len();
                        w.steps.push(Step { value: 0.0, next: 0, feature: Step::LEAF });
                        w.steps.push(Step { value: 0.0, next: 0, feature: Step::LEAF });
                        queue.push_back((s.left, children));
                        queue.push_back((s.right, children + 1));
                        Step { value: s.threshold, next: children as u32, feature: s.feature as u16 }
                    }
                    None => {
                        w.controls.push(n.control);
                        Step { value: n.treated, next: (w.controls.len() - 1) as u32, feature: Step::LEAF }
                    }
                };
            }
        }
        w
    }

    fn floor_z(&self, z: f64) -> f64 {
        let floors = self.calibration.floors.len();
        match self.floor_z.get_or_init(|| (z, family_z(z, floors))) {
            (at, floor_z) if *at == z => *floor_z,
            _ => family_z(z, floors),
        }
    }

    /// [`Forest::predict_with_shortfall`], the same numbers.
    #[inline]
    pub fn predict_with_shortfall(&self, x: &Vector, z: f64) -> (f64, f64, f64) {
        let (mut t, mut c) = (0.0, 0.0);
        for &root in &self.roots {
            let mut step = self.steps[root as usize];
            while step.feature != Step::LEAF {
                // As the artifact's trees: `<=` goes left (a NaN goes right).
                let right = if x[usize::from(step.feature)] <= step.value { 0 } else { 1 };
                step = self.steps[(step.next + right) as usize];
            }
            t += step.value;
            c += self.controls[step.next as usize];
        }
        let n = self.roots.len().max(1) as f64;
        self.calibration.probabilities(t / n, c / n, z, self.floor_z(z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(treated: f64, control: f64) -> Node {
        Node { treated, control, split: None }
    }

    /// Contact helps (40 pp) where feature 2 is at most 1, else harms (−20 pp).
    fn forest() -> Forest {
        let root =
            Node { treated: 0.3, control: 0.2, split: Some(Split { feature: 2, threshold: 1.0, left: 1, right: 2 }) };
        Forest {
            trees: vec![Tree { nodes: vec![root, leaf(0.5, 0.1), leaf(0.2, 0.4)] }],
            calibration: Calibration { intercept: 0.0, slope: 1.0, covariance: [0.0; 3], floors: Vec::new() },
        }
    }

    #[test]
    fn a_customer_gets_their_leafs_rates_and_the_cut_gets_the_credit() {
        let f = forest();
        assert!(f.problems("forest").is_empty(), "{:?}", f.problems("forest"));
        let mut x = [0.0; LEN];
        x[2] = 1.0;
        let (t, c) = f.predict(&x);
        assert!((t - 0.5).abs() < 1e-12 && (c - 0.1).abs() < 1e-12);
        assert!((f.contributions(&x)[2] - 0.3).abs() < 1e-12, "0.4 at the leaf against 0.1 at the root");
        x[2] = 1.5;
        let (t, c) = f.predict(&x);
        assert!((t - 0.2).abs() < 1e-12 && (c - 0.4).abs() < 1e-12);
        // Calibration moves the level; probabilities stay within 0..1.
        let halved = Forest {
            calibration: Calibration { intercept: -0.5, slope: 0.5, covariance: [0.01, 0.0, 0.04], floors: Vec::new() },
            ..forest()
        };
        assert_eq!(halved.predict(&x).0, 0.0);
        // Uplift −0.2 before calibration: variance 0.01 + 0.2² × 0.04, two errors below.
        let (_, _, shortfall) = halved.predict_with_shortfall(&x, 2.0);
        assert!((shortfall - 2.0 * (0.01f64 + 0.04 * 0.04).sqrt()).abs() < 1e-12, "{shortfall}");
        assert_eq!(f.features_used(), vec![(FEATURES[2].0, 1)]);
    }

    #[test]
    fn floors_are_held_at_the_familys_level() {
        assert_eq!(family_z(1.645, 1), 1.645);
        assert_eq!(family_z(0.0, 10), 0.0, "deciding on the expected value");
        for (z, n, want) in [(1.645, 10, 2.5758), (1.96, 10, 2.8070), (1.0, 4, 1.7545), (1.645, 64, 3.1634)] {
            assert!((family_z(z, n) - want).abs() < 2e-3, "{z} over {n}: {} not {want}", family_z(z, n));
        }
    }

    #[test]
    fn the_lower_bound_is_held_under_what_customers_ranked_alike_showed() {
        // A line learnt from the harmed, extended past zero: +10 pp at a raw +5 pp.
        let line = Calibration { intercept: 0.0, slope: 2.0, covariance: [0.0; 3], floors: Vec::new() };
        assert!((line.lower_bound(0.05, 1.645) - 0.1).abs() < 1e-12);
        // The validation period saw +1 pp (± 1 pp) among those predicted above +3 pp.
        let floored = Calibration {
            floors: vec![
                Floor { from: -0.2, uplift: -0.01, error: 0.002 },
                Floor { from: 0.03, uplift: 0.01, error: 0.01 },
            ],
            ..line
        };
        // Two floors: each at 1.645's tail halved, 1.96 standard errors.
        assert!((floored.lower_bound(0.05, 1.645) - (0.01 - family_z(1.645, 2) * 0.01)).abs() < 1e-12);
        assert!((family_z(1.645, 2) - 1.96).abs() < 1e-3, "{}", family_z(1.645, 2));
        assert!((floored.lower_bound(0.05, 0.0) - 0.01).abs() < 1e-12, "z = 0: the floor's own uplift");
        // Below the first floor's start, the first floor; where the line is lower, the line.
        assert!((floored.lower_bound(-0.5, 0.0) - (-1.0)).abs() < 1e-12);
        assert!((floored.lower_bound(-0.3, 0.0) - (-0.6)).abs() < 1e-12);
        assert!((floored.lower_bound(0.0, 0.0) - (-0.01)).abs() < 1e-12);
        // The point prediction is the line's.
        let f = Forest { calibration: floored, ..forest() };
        let mut x = [0.0; LEN];
        x[2] = 1.0;
        let (t, c, shortfall) = f.predict_with_shortfall(&x, 0.0);
        assert!((t - c - 0.8).abs() < 1e-12 && (shortfall - (0.8 - 0.01)).abs() < 1e-12, "{t} {c} {shortfall}");
    }

    #[test]
    fn the_walker_predicts_what_the_forest_does() {
        // Two trees, the second cutting twice; children listed out of order.
        let mut f = forest();
        let nodes = vec![
            Node { treated: 0.3, control: 0.2, split: Some(Split { feature: 0, threshold: 0.5, left: 3, right: 1 }) },
            Node { treated: 0.4, control: 0.1, split: Some(Split { feature: 1, threshold: -1.0, left: 2, right: 4 }) },
            leaf(0.9, 0.05),
            leaf(0.1, 0.3),
            leaf(0.35, 0.35),
        ];
        f.trees.push(Tree { nodes });
        f.calibration = Calibration {
            intercept: 0.01,
            slope: 1.2,
            covariance: [0.001, 0.0001, 0.01],
            floors: vec![
                Floor { from: -0.1, uplift: 0.02, error: 0.01 },
                Floor { from: 0.2, uplift: 0.3, error: 0.05 },
            ],
        };
        assert!(f.problems("f").is_empty(), "{:?}", f.problems("f"));
        let walker = Walker::new(&f);
        let cases = [
            (0.0, 0.0, 0.0),
            (1.0, -2.0, 1.0),
            (1.0, 0.0, 2.0),
            (0.5, -1.0, 0.5),
            (0.7, 3.0, -1.0),
            (f64::NAN, 0.0, 9.0),
        ];
        for (a, b, c) in cases {
            let mut x = [0.0; LEN];
            (x[0], x[1], x[2]) = (a, b, c);
            assert_eq!(walker.predict_with_shortfall(&x, 1.645), f.predict_with_shortfall(&x, 1.645), "{a} {b} {c}");
        }
    }

    #[test]
    fn hostile_forests_are_refused_with_field_paths() {
        let mut f = forest();
        f.trees[0].nodes[0].split.as_mut().unwrap().left = 0;
        f.trees[0].nodes[1].treated = 1.5;
        f.trees[0].nodes[0].split.as_mut().unwrap().feature = LEN;
        f.calibration.slope = f64::NAN;
        f.calibration.covariance[0] = -1.0;
        f.calibration.floors =
            vec![Floor { from: 0.1, uplift: 0.0, error: -1.0 }, Floor { from: 0.1, uplift: 0.0, error: 0.0 }];
        let problems = f.problems("forest");
        for expected in [
            "forest.trees[0].nodes[0].split.left: 0 must be a later node",
            "forest.trees[0].nodes[1]: treated and control",
            "forest.trees[0].nodes[0].split.feature",
            "forest.calibration:",
            "forest.calibration.covariance",
            "forest.calibration.floors[0]: needs finite numbers",
            "forest.calibration.floors[1].from: must be above",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected}: {problems:?}");
        }
        let mut loops = forest();
        loops.trees[0].nodes[2].split = Some(Split { feature: 0, threshold: 0.0, left: 1, right: 9 });
        assert_eq!(loops.problems("f").len(), 2, "{:?}", loops.problems("f"));
        assert!(!Forest { trees: Vec::new(), ..forest() }.problems("f").is_empty());
    }
}
