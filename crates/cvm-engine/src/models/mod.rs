//! Next-best-offer models: what a candidate offer is worth for this customer.
//!
//! Every eligible candidate gets a valuation, from the best source it has:
//!
//! - **uplift** — a trained artifact with a control model (T-learner):
//!   `value = weight × (p_t·(margin − discount) − p_c·margin − contact cost)`.
//!   The second term is what the customer would have bought anyway; a
//!   deeper discount is paid by them too. Ladders try each step and keep the
//!   smallest one with the highest value. A non-positive value means the
//!   contact does not pay (sure things, lost causes, sleeping dogs): the
//!   offer is not sent, except inside the exploration budget.
//! - **propensity** — an artifact without a control model: `p_t·(margin −
//!   discount) − contact cost`.
//! - **bandit** — no model yet: a Thompson draw (or, outside the exploration
//!   budget, the posterior mean) of the offer × segment conversion rate
//!   ([`bandit`]) in place of `p_t`.
//! - **rules** — the heuristic [`score`](crate::score): with `cold_start:
//!   rules`, and whenever the offer's model has drifted ([`drift`]).
//!
//! Ranking is priority first, then this value: priority is the marketers'
//! tier, the models arbitrate inside it. The scores in each `Decision` say
//! which source was used, which model version, and which features moved the
//! score most.

pub mod artifact;
pub mod bandit;
pub mod drift;
pub mod forest;
pub mod vector;

use cvm_proto::v1::{Contribution, Discount, Score};
use serde::{Deserialize, Serialize};

pub use artifact::{ModelArtifact, Role, Scope, MODEL_KEY_PREFIX};
pub use bandit::{ArmCounts, ArmKey};
pub use drift::{DriftCheck, DriftMonitor};
pub use vector::{Vector, FEATURES};

use crate::{features::Features, offers::OfferDefinition, profile::NO_DECILE};
use artifact::{sigmoid, ScoringWeights};

/// Contributions listed per score.
const CONTRIBUTIONS: usize = 3;

/// What offers without a trained model are scored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdStart {
    /// Thompson sampling on Beta posteriors per offer × segment.
    Bandit,
    /// The heuristic rule score.
    Rules,
}

/// Settings of model scoring (`engine.models` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Share of decisions, percent, that explore: bandits draw from their
    /// posteriors instead of using the mean, and offers an uplift model
    /// finds not incremental are sent anyway (so that the model keeps
    /// seeing what it would otherwise suppress).
    pub exploration_percent: f64,
    /// PSI above which a model counts as drifted and its offer falls back
    /// to rule priority.
    pub drift_psi_threshold: f64,
    /// Decisions per drift check of a model.
    pub drift_window: usize,
    /// Scoring of offers without a model.
    pub cold_start: ColdStart,
    /// Standard errors of the uplift below its expected value at which a
    /// contact must still pay for an uplift model to make it (models whose
    /// calibration carries its uncertainty: `cvm train`'s forests). 1.645
    /// is the lower bound of a one-sided 95 % interval; 0 decides on the
    /// expected value alone.
    pub treat_lower_bound_z: f64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            exploration_percent: 10.0,
            drift_psi_threshold: 0.25,
            drift_window: 2_000,
            cold_start: ColdStart::Bandit,
            treat_lower_bound_z: 1.645,
        }
    }
}

impl ModelSettings {
    /// Problems with the settings, with field paths under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !(0.0..=100.0).contains(&self.exploration_percent) {
            out.push(format!("{path}.exploration_percent: must be between 0 and 100"));
        }
        if self.drift_psi_threshold.is_nan() || self.drift_psi_threshold <= 0.0 {
            out.push(format!("{path}.drift_psi_threshold: must be positive (0.25 is the usual threshold)"));
        }
        if !(0.0..=5.0).contains(&self.treat_lower_bound_z) {
            out.push(format!(
                "{path}.treat_lower_bound_z: must be between 0 and 5 standard errors (1.645: one-sided 95 %)"
            ));
        }
        if self.drift_window < 100 {
            out.push(format!("{path}.drift_window: must be at least 100 decisions for a meaningful PSI"));
        }
        out
    }
}

/// A loaded artifact, ready to score, with its drift monitor.
#[derive(Debug)]
pub struct Model {
    artifact: ModelArtifact,
    label: String,
    treated: ScoringWeights,
    control: Option<ScoringWeights>,
    value: ScoringWeights,
    /// The three models' weights side by side per feature, in single
    /// precision with a zero fourth lane, so that a feature's products are
    /// one SIMD multiplication: [`Model::log_odds_and_value`].
    fused: [[f32; 4]; vector::LEN],
    /// The artifact's forest laid out for scoring.
    walker: Option<forest::Walker>,
    /// For each reference series: the vector slot it watches (`None` = the score).
    series: Vec<Option<usize>>,
    monitor: DriftMonitor,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        self.artifact == other.artifact
    }
}

impl Model {
    /// Prepares a checked artifact (see [`ModelArtifact::problems`]).
    pub fn new(artifact: ModelArtifact) -> Self {
        let schema = &artifact.features;
        let series = artifact.reference.iter().map(|h| FEATURES.iter().position(|f| f.0 == h.name)).collect();
        let treated = ScoringWeights::new(&artifact.treated, schema);
        let control = artifact.control.as_ref().map(|c| ScoringWeights::new(c, schema));
        let value = ScoringWeights::new(&artifact.value, schema);
        let mut fused = [[0.0; 4]; vector::LEN];
        for (i, f) in fused.iter_mut().enumerate() {
            let weights = [treated.slope(i), control.as_ref().map_or(0.0, |c| c.slope(i)), value.slope(i), 0.0];
            *f = weights.map(|w| w as f32);
        }
        Self {
            walker: artifact.forest.as_ref().map(forest::Walker::new),
            label: artifact.label(),
            treated,
            control,
            value,
            fused,
            series,
            monitor: DriftMonitor::new(artifact.reference.clone()),
            artifact,
        }
    }

    /// The artifact.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// `target@version`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The drift monitor.
    pub fn monitor(&self) -> &DriftMonitor {
        &self.monitor
    }

    /// Conversion probability when contacted, and when not (uplift models).
    pub fn predict(&self, x: &Vector) -> (f64, Option<f64>) {
        if let Some(walker) = &self.walker {
            let (p_t, p_c, _) = walker.predict_with_shortfall(x, 0.0);
            return (p_t, Some(p_c));
        }
        (sigmoid(self.treated.predict(x)), self.control.as_ref().map(|c| sigmoid(c.predict(x))))
    }

    /// Treated log-odds, control log-odds (uplift models) and conversion
    /// margin for the customer's vector completed with an offer's part, in
    /// one pass and without building the vector: the scoring hot path. In
    /// single precision (about seven digits, plenty for log-odds of a few
    /// units), four lanes at a time.
    #[inline]
    fn log_odds_and_value(&self, customer: &Customer, part: &[f64; vector::OFFER_SLOTS]) -> (f64, Option<f64>, f64) {
        let split = vector::LEN - vector::OFFER_SLOTS;
        let mut acc = [0.0f32; 4];
        for (w, x) in self.fused[..split].iter().zip(&customer.single) {
            for k in 0..4 {
                acc[k] += w[k] * x;
            }
        }
        for (w, x) in self.fused[split..].iter().zip(part) {
            let x = *x as f32;
            for k in 0..4 {
                acc[k] += w[k] * x;
            }
        }
        let control = self.control.as_ref().map(|c| c.intercept() + f64::from(acc[1]));
        (self.treated.intercept() + f64::from(acc[0]), control, self.value.intercept() + f64::from(acc[2]))
    }

    /// The score series the drift monitor watches: uplift, or propensity.
    fn score_of(p_t: f64, p_c: Option<f64>) -> f64 {
        p_c.map_or(p_t, |c| p_t - c)
    }

    /// Feeds the drift monitor one decision's vector; returns the check
    /// when it completed a window.
    pub fn observe(&self, x: &Vector, settings: &ModelSettings) -> Option<DriftCheck> {
        let (p_t, p_c) = self.predict(x);
        let score = Self::score_of(p_t, p_c);
        let values: Vec<f64> = self.series.iter().map(|s| s.map_or(score, |i| x[i])).collect();
        self.monitor.observe(&values, settings.drift_window, settings.drift_psi_threshold)
    }

    /// The largest terms of treated-minus-control log-odds (treated only
    /// for propensity models; a forest's shares of the uplift), largest
    /// magnitude first. Computed only for the candidates a decision lists,
    /// not for every one scored.
    pub fn contributions(&self, x: &Vector) -> Vec<Contribution> {
        let mean = &self.artifact.features.mean;
        let terms = match (&self.artifact.forest, &self.control) {
            (Some(forest), _) => forest.contributions(x),
            (None, control) => {
                let mut terms = self.treated.terms(x, mean);
                if let Some(c) = control {
                    for (t, c) in terms.iter_mut().zip(c.terms(x, mean)) {
                        *t -= c;
                    }
                }
                terms
            }
        };
        let mut order: Vec<usize> = (0..terms.len()).collect();
        order.sort_by(|&a, &b| terms[b].abs().total_cmp(&terms[a].abs()).then(a.cmp(&b)));
        order
            .into_iter()
            .filter(|&i| terms[i] != 0.0)
            .take(CONTRIBUTIONS)
            .map(|i| Contribution { feature: FEATURES[i].0.to_owned(), value: terms[i] })
            .collect()
    }
}

/// The customer's part of the model vector, once per decision: as computed
/// ([`vector::customer`]) and in single precision for the scoring loop.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The vector (offer slots zero).
    pub vector: Vector,
    single: [f32; vector::LEN - vector::OFFER_SLOTS],
}

impl Customer {
    /// The customer of `features`.
    pub fn of(features: &Features<'_>) -> Self {
        let vector = vector::customer(features);
        let mut single = [0.0; vector::LEN - vector::OFFER_SLOTS];
        for (s, x) in single.iter_mut().zip(&vector) {
            *s = *x as f32;
        }
        Self { vector, single }
    }
}

/// How a candidate is scored.
#[derive(Debug, Clone, Copy)]
pub enum Scorer<'a> {
    /// A healthy model.
    Model {
        /// The model.
        model: &'a Model,
        /// [`ModelSettings::treat_lower_bound_z`].
        lower_bound_z: f64,
    },
    /// A drifted model: rule priority — and, for an uplift model, only
    /// inside the exploration budget: outside it the candidate counts as
    /// not incremental, since the model that decided who is worth a contact
    /// can no longer be trusted and contacting everyone is the riskiest
    /// policy of all (it reaches the customers contact harms).
    Drifted(&'a Model),
    /// No model: a bandit arm's counts; draw from the posterior when `explore`.
    Bandit {
        /// The arm's counts.
        counts: ArmCounts,
        /// Draw (inside the exploration budget) or take the mean.
        explore: bool,
        /// Seed of the draw.
        seed: u64,
    },
    /// No model: the rule score.
    Rules,
}

/// Where a valuation came from (`Score.source` in decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Uplift model.
    Uplift,
    /// Model without a control arm.
    Propensity,
    /// Thompson draw.
    Bandit,
    /// Posterior mean (outside the exploration budget).
    BanditMean,
    /// Rule score, no model.
    Rules,
    /// Rule score because the model drifted.
    RulesDrift,
}

impl Source {
    /// The name decisions use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Uplift => "uplift",
            Source::Propensity => "propensity",
            Source::Bandit => "bandit",
            Source::BanditMean => "bandit_mean",
            Source::Rules => "rules",
            Source::RulesDrift => "rules_drift",
        }
    }

    /// Whether a model's predictions made the value.
    pub fn is_model(self) -> bool {
        matches!(self, Source::Uplift | Source::Propensity)
    }
}

/// A candidate's valuation. Plain numbers, so that scoring a thousand
/// candidates allocates nothing; [`Valuation::score`] builds the `Score`
/// a decision lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Valuation {
    /// Expected incremental value × weight (the ranking key), minor units.
    pub value: f64,
    /// The value with the uplift at the lower bound of its interval
    /// (equal to `value` without one): an uplift model contacts only when
    /// it is positive.
    pub value_low: f64,
    /// Where it came from.
    pub source: Source,
    /// Conversion probability when contacted.
    pub propensity: f64,
    /// Conversion probability when not (uplift models only).
    pub control_propensity: Option<f64>,
    /// Margin of a conversion net of the discount, minor units.
    pub expected_margin_minor: f64,
    /// The discount to offer.
    pub discount: Discount,
    /// An uplift model expects the contact not to pay.
    pub not_incremental: bool,
    /// The offer's part of the model features ([`vector::complete`] with
    /// the customer's part gives the vector), at that discount.
    pub offer_part: [f64; vector::OFFER_SLOTS],
    /// Decile of the predicted conversion probability ([`NO_DECILE`] without a model).
    pub decile: u8,
    /// Whether the challenger running in shadow for the offer would select
    /// it (expects the contact to pay); `None` without a challenger.
    pub challenger_selects: Option<bool>,
}

impl Valuation {
    /// The model features of the valuation.
    pub fn vector(&self, customer: &Customer) -> Vector {
        vector::complete(&customer.vector, &self.offer_part)
    }

    /// The `Score` of `offer` as decisions list it; `model` (the offer's,
    /// if any) adds its version and, for model sources, the top feature
    /// contributions at `customer`'s vector.
    pub fn score(&self, offer: &OfferDefinition, model: Option<&Model>, customer: &Customer) -> Score {
        let model = model.filter(|_| self.source.is_model() || self.source == Source::RulesDrift);
        Score {
            offer_definition_id: offer.doc.id.clone(),
            offer_version: offer.doc.version,
            score: self.value,
            score_low: self.value_low,
            propensity: self.propensity,
            expected_margin_minor: self.expected_margin_minor,
            source: self.source.name().to_owned(),
            model_version: model.map_or(String::new(), |m| m.label().to_owned()),
            control_propensity: self.control_propensity.unwrap_or(0.0),
            uplift: self.control_propensity.map_or(0.0, |c| self.propensity - c),
            discount_percent: self.discount.percent,
            contributions: match model {
                Some(m) if self.source.is_model() => m.contributions(&self.vector(customer)),
                _ => Vec::new(),
            },
        }
    }
}

/// The ranking of a candidate as one integer, smaller first: priority
/// (higher first), then value (higher first), then `position` (the
/// candidate's place in id order). One integer compares in a single
/// instruction, so ranking a thousand candidates costs a few microseconds.
pub fn ranking_key(priority: i32, value: f64, position: u32) -> u128 {
    let priority = !((priority as u32) ^ 0x8000_0000);
    let bits = value.to_bits();
    // f64 bits in ascending total order, then inverted for descending.
    let ascending = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    (u128::from(priority) << 96) | (u128::from(!ascending) << 32) | u128::from(position)
}

/// The discount steps an offer may use: a ladder's steps, or its one reward.
fn steps<'a>(offer: &'a OfferDefinition, ladder_default: &'a Discount) -> &'a [u32] {
    let ladder = &offer.doc.reward.ladder_percent;
    if ladder.is_empty() {
        std::slice::from_ref(&ladder_default.percent)
    } else {
        ladder
    }
}

/// Values `offer` for the customer. `customer` is [`Customer::of`]
/// `features`; `discount` is the reward by contact count (a ladder's
/// default step); `rules` computes the rule score with it, needed only for
/// the rule, drift and bandit sources.
pub fn value(
    offer: &OfferDefinition,
    features: &Features<'_>,
    customer: &Customer,
    discount: Discount,
    rules: impl FnOnce() -> Score,
    scorer: Scorer<'_>,
) -> Valuation {
    let weight = offer.doc.weight;
    let contact_cost = offer.doc.economics.contact_cost_minor as f64;
    let part_at = |percent: u32| vector::offer_part(features.profile(), offer, percent);
    let by_rules = |source: Source, rules: Score, value: f64, propensity: f64| Valuation {
        value,
        value_low: value,
        source,
        propensity,
        control_propensity: None,
        expected_margin_minor: rules.expected_margin_minor,
        offer_part: part_at(discount.percent),
        discount,
        not_incremental: false,
        decile: NO_DECILE,
        challenger_selects: None,
    };
    match scorer {
        Scorer::Rules => {
            let r = rules();
            let (score, propensity) = (r.score, r.propensity);
            by_rules(Source::Rules, r, score, propensity)
        }
        Scorer::Drifted(model) => {
            let r = rules();
            let (score, propensity) = (r.score, r.propensity);
            Valuation { not_incremental: model.control.is_some(), ..by_rules(Source::RulesDrift, r, score, propensity) }
        }
        Scorer::Bandit { counts, explore, seed } => {
            let r = rules();
            let rate = if explore { counts.sample(r.propensity, seed) } else { counts.mean(r.propensity) };
            let value = weight * (rate * r.expected_margin_minor - contact_cost);
            by_rules(if explore { Source::Bandit } else { Source::BanditMean }, r, value, rate)
        }
        Scorer::Model { model, lower_bound_z } => {
            let basket = crate::score::typical_basket_minor(features);
            let fixed = discount.fixed_minor as f64;
            let steps = steps(offer, &discount);
            // One vector and one dot product per model; each ladder step
            // only moves the discount slot, a linear term of the log-odds.
            let mut part = part_at(steps[0]);
            let first = f64::from(steps[0]);
            let (t0, c0, v0) = model.log_odds_and_value(customer, &part);
            let margin = (v0 - model.value.slope(vector::DISCOUNT_SLOT) * first).max(0.0);
            let t_slope = model.treated.slope(vector::DISCOUNT_SLOT);
            let c_slope = model.control.as_ref().map_or(0.0, |c| c.slope(vector::DISCOUNT_SLOT));
            // (value, value low, step, p_t, p_c); the smallest step wins ties.
            let mut best: Option<(f64, f64, u32, f64, Option<f64>)> = None;
            for &step in steps {
                let shift = f64::from(step) - first;
                let (p_t, p_c, shortfall) = match &model.walker {
                    Some(walker) => {
                        part[vector::OFFER_SLOTS - 1] = f64::from(step);
                        let x = vector::complete(&customer.vector, &part);
                        let (p_t, p_c, shortfall) = walker.predict_with_shortfall(&x, lower_bound_z);
                        (p_t, Some(p_c), shortfall)
                    }
                    None => (sigmoid(t0 + t_slope * shift), c0.map(|c| sigmoid(c + c_slope * shift)), 0.0),
                };
                let cost = basket * f64::from(step) / 100.0 + fixed;
                let v = p_t * (margin - cost) - p_c.unwrap_or(0.0) * margin - contact_cost;
                // The value moves by (margin − discount) per unit of uplift.
                let v_low = v - shortfall * (margin - cost).max(0.0);
                if best.is_none_or(|b| v > b.0) {
                    best = Some((v, v_low, step, p_t, p_c));
                }
            }
            let (v, v_low, step, p_t, p_c) = best.expect("an offer has at least one step");
            part[vector::OFFER_SLOTS - 1] = f64::from(step);
            Valuation {
                value: weight * v,
                value_low: weight * v_low,
                source: if p_c.is_some() { Source::Uplift } else { Source::Propensity },
                propensity: p_t,
                control_propensity: p_c,
                expected_margin_minor: margin - (basket * f64::from(step) / 100.0 + fixed),
                discount: Discount { percent: step, fixed_minor: discount.fixed_minor },
                not_incremental: p_c.is_some() && v_low <= 0.0,
                offer_part: part,
                decile: ((p_t * 10.0) as u8).min(9),
                challenger_selects: None,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-made uplift artifact for `offer`: contact helps customers who
    /// never bought (recency high) and hurts recent buyers; deeper discounts
    /// raise the treated response.
    pub(crate) fn artifact(offer: &str) -> ModelArtifact {
        let mut a = ModelArtifact::constant(offer, 1, -1.0, Some(-1.0), 1_000.0);
        a.treated.weights[0] = 1.0;
        a.treated.weights[vector::DISCOUNT_SLOT] = 0.5;
        a.control.as_mut().expect("uplift").weights[0] = -1.0;
        a.features.mean[0] = 3.0;
        a.features.mean[vector::DISCOUNT_SLOT] = 10.0;
        a.features.scale[vector::DISCOUNT_SLOT] = 5.0;
        a.reference = vec![artifact::Histogram {
            name: "recency_log_days".into(),
            edges: vec![1.0, 2.0, 3.0, 4.0, 5.0],
            shares: vec![1.0 / 6.0; 6],
        }];
        a
    }

    #[test]
    fn ranking_keys_order_by_priority_then_value_then_position() {
        let mut keys = [
            (ranking_key(0, 5.0, 0), "low priority"),
            (ranking_key(10, -1.0, 1), "high priority, negative value"),
            (ranking_key(10, 3.0, 3), "high priority, best value, later id"),
            (ranking_key(10, 3.0, 2), "high priority, best value"),
            (ranking_key(-5, 100.0, 4), "negative priority"),
        ];
        keys.sort();
        let order: Vec<&str> = keys.iter().map(|k| k.1).collect();
        assert_eq!(
            order,
            [
                "high priority, best value",
                "high priority, best value, later id",
                "high priority, negative value",
                "low priority",
                "negative priority"
            ]
        );
    }

    #[test]
    fn uplift_values_the_increment_and_picks_the_smallest_best_step() {
        use crate::{features::EventFacts, profile::Profile};
        let mut doc = crate::offers::definition::tests::sample().doc;
        doc.reward.percent = None;
        doc.reward.ladder_percent = vec![5, 10, 15, 40];
        let offer = OfferDefinition::compile(doc).unwrap();
        let model = Model::new(artifact(&offer.doc.id));
        assert!(model.artifact().problems().is_empty(), "{:?}", model.artifact().problems());
        let never = Profile::default();
        let f = Features::compute(&never, EventFacts::default(), 400 * crate::time::DAY_MS);
        let customer = Customer::of(&f);
        let value_by = |model: &Model| {
            let rules = || crate::score::score(&offer, &f, &offer.discount(0), f.now_ms());
            value(&offer, &f, &customer, offer.discount(0), rules, Scorer::Model { model, lower_bound_z: 1.645 })
        };
        let v = value_by(&model);
        let score = v.score(&offer, Some(&model), &customer);
        assert_eq!(score.source, "uplift");
        assert!(score.uplift > 0.3 && !v.not_incremental, "{score:?}");
        // Each step buys a little more response but costs 0.30 per percent
        // on a 30.00 basket, paid by every converter: with a 10.00 margin
        // the first step is best.
        assert_eq!(v.discount.percent, 5, "{:?}", v.discount);
        let expected = score.propensity * (1_000.0 - 30.0 * f64::from(v.discount.percent))
            - score.control_propensity * 1_000.0
            - offer.doc.economics.contact_cost_minor as f64;
        assert!((score.score - offer.doc.weight * expected).abs() < 1e-6);
        let why = &score.contributions;
        assert_eq!(why[0].feature, "recency_log_days", "{why:?}");
        assert!((why[0].value - 2.0 * (366f64.ln() - 3.0)).abs() < 1e-9, "treated +1, control -1 per unit");
        assert_eq!(score.model_version, format!("{}@1", offer.doc.id));
        // Worth 100.00 a conversion, the extra response of 15 % off pays for
        // itself; 40 % off does not add enough response to pay its cost.
        let mut rich = artifact(&offer.doc.id);
        rich.value.intercept = 10_000.0;
        let v = value_by(&Model::new(rich));
        assert_eq!(v.discount.percent, 15, "{:?}", v.discount);
    }
}
