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
pub mod vector;

use cvm_proto::v1::{Contribution, Discount, Score};
use serde::{Deserialize, Serialize};

pub use artifact::{ModelArtifact, Scope, MODEL_KEY_PREFIX};
pub use bandit::{ArmCounts, ArmKey};
pub use drift::{DriftCheck, DriftMonitor};
pub use vector::{Vector, FEATURES};

use crate::{features::Features, offers::OfferDefinition, profile::NO_DECILE};
use artifact::{sigmoid, Folded};

/// Typical basket in minor units, for customers with no recent orders.
const DEFAULT_BASKET_MINOR: f64 = 3_000.0;
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
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self { exploration_percent: 10.0, drift_psi_threshold: 0.25, drift_window: 2_000, cold_start: ColdStart::Bandit }
    }
}

impl ModelSettings {
    /// Problems with the settings, with field paths under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !(0.0..=100.0).contains(&self.exploration_percent) {
            out.push(format!("{path}.exploration_percent: must be between 0 and 100"));
        }
        if !(self.drift_psi_threshold > 0.0) {
            out.push(format!("{path}.drift_psi_threshold: must be positive (0.25 is the usual threshold)"));
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
    treated: Folded,
    control: Option<Folded>,
    value: Folded,
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
        let series = artifact
            .reference
            .iter()
            .map(|h| FEATURES.iter().position(|f| f.0 == h.name))
            .collect();
        Self {
            label: artifact.label(),
            treated: Folded::new(&artifact.treated, schema),
            control: artifact.control.as_ref().map(|c| Folded::new(c, schema)),
            value: Folded::new(&artifact.value, schema),
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
        (sigmoid(self.treated.predict(x)), self.control.as_ref().map(|c| sigmoid(c.predict(x))))
    }

    /// Margin of a conversion, minor units.
    pub fn value_minor(&self, x: &Vector) -> f64 {
        self.value.predict(x).max(0.0)
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
    /// for propensity models), largest magnitude first. Computed only for
    /// the candidates a decision lists, not for every one scored.
    pub fn contributions(&self, x: &Vector) -> Vec<Contribution> {
        let mut terms = self.treated.terms(x);
        if let Some(c) = &self.control {
            for (t, c) in terms.iter_mut().zip(c.terms(x)) {
                *t -= c;
            }
        }
        let mut order: Vec<usize> = (0..terms.len()).collect();
        order.sort_by(|&a, &b| terms[b].abs().total_cmp(&terms[a].abs()).then(a.cmp(&b)));
        order
            .into_iter()
            .take(CONTRIBUTIONS)
            .map(|i| Contribution { feature: FEATURES[i].0.to_owned(), value: terms[i] })
            .collect()
    }
}

/// How a candidate is scored.
#[derive(Debug, Clone, Copy)]
pub enum Scorer<'a> {
    /// A healthy model.
    Model(&'a Model),
    /// A drifted model: rule priority.
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

/// A candidate's valuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Valuation {
    /// The score, as decisions list it.
    pub score: Score,
    /// The discount to offer.
    pub discount: Discount,
    /// An uplift model expects the contact not to pay.
    pub not_incremental: bool,
    /// The model features at that discount.
    pub vector: Vector,
    /// Decile of the predicted conversion probability ([`NO_DECILE`] without a model).
    pub decile: u8,
}

/// The discount steps an offer may use: a ladder's steps, or its one reward.
fn steps(offer: &OfferDefinition, ladder_default: &Discount) -> Vec<u32> {
    let ladder = &offer.doc.reward.ladder_percent;
    if ladder.is_empty() {
        vec![ladder_default.percent]
    } else {
        ladder.clone()
    }
}

/// Values `offer` for the customer. `customer` is [`vector::customer`] of
/// `features`; `rules` is the rule score with the ladder's default step
/// `discount` (by contact count), used as the fallback and the bandit prior.
pub fn value(
    offer: &OfferDefinition,
    features: &Features<'_>,
    customer: &Vector,
    rules: Score,
    discount: Discount,
    scorer: Scorer<'_>,
) -> Valuation {
    let weight = offer.doc.weight;
    let contact_cost = offer.doc.economics.contact_cost_minor as f64;
    let vector_at = |percent: u32| vector::for_offer(customer, features, offer, percent);
    match scorer {
        Scorer::Rules => Valuation {
            score: rules,
            vector: vector_at(discount.percent),
            discount,
            not_incremental: false,
            decile: NO_DECILE,
        },
        Scorer::Drifted(model) => Valuation {
            score: Score {
                source: "rules_drift".into(),
                model_version: model.label().to_owned(),
                ..rules
            },
            vector: vector_at(discount.percent),
            discount,
            not_incremental: false,
            decile: NO_DECILE,
        },
        Scorer::Bandit { counts, explore, seed } => {
            let rate = if explore { counts.sample(rules.propensity, seed) } else { counts.mean(rules.propensity) };
            Valuation {
                score: Score {
                    source: if explore { "bandit" } else { "bandit_mean" }.into(),
                    score: weight * (rate * rules.expected_margin_minor - contact_cost),
                    propensity: rate,
                    ..rules
                },
                vector: vector_at(discount.percent),
                discount,
                not_incremental: false,
                decile: NO_DECILE,
            }
        }
        Scorer::Model(model) => {
            let w90 = features.profile().window(features.now_ms(), 90);
            let basket = if w90.orders > 0 {
                w90.revenue_minor as f64 / f64::from(w90.orders)
            } else {
                DEFAULT_BASKET_MINOR
            };
            let fixed = discount.fixed_minor as f64;
            let margin = model.value_minor(&vector_at(0));
            // (value, step, p_t, p_c, vector); the smallest step wins ties.
            let mut best: Option<(f64, u32, f64, Option<f64>, Vector)> = None;
            for step in steps(offer, &discount) {
                let x = vector_at(step);
                let (p_t, p_c) = model.predict(&x);
                let cost = basket * f64::from(step) / 100.0 + fixed;
                let v = p_t * (margin - cost) - p_c.unwrap_or(0.0) * margin - contact_cost;
                if best.as_ref().is_none_or(|b| v > b.0) {
                    best = Some((v, step, p_t, p_c, x));
                }
            }
            let (v, step, p_t, p_c, x) = best.expect("an offer has at least one step");
            let cost = basket * f64::from(step) / 100.0 + fixed;
            Valuation {
                score: Score {
                    offer_definition_id: offer.doc.id.clone(),
                    offer_version: offer.doc.version,
                    score: weight * v,
                    propensity: p_t,
                    expected_margin_minor: margin - cost,
                    source: if p_c.is_some() { "uplift" } else { "propensity" }.into(),
                    model_version: model.label().to_owned(),
                    control_propensity: p_c.unwrap_or(0.0),
                    uplift: p_c.map_or(0.0, |c| p_t - c),
                    discount_percent: step,
                    contributions: Vec::new(),
                },
                discount: Discount { percent: step, fixed_minor: discount.fixed_minor },
                not_incremental: p_c.is_some() && v <= 0.0,
                vector: x,
                decile: ((p_t * 10.0) as u8).min(9),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use artifact::{CalibrationBin, DataWindow, FeatureSchema, Histogram, Linear, Metrics, ModelKind};

    /// A hand-made uplift artifact for `offer`: contact helps customers who
    /// never bought (recency high) and hurts recent buyers; deeper discounts
    /// raise the treated response.
    pub(crate) fn artifact(offer: &str) -> ModelArtifact {
        let n = vector::LEN;
        let mut treated = vec![0.0; n];
        treated[0] = 1.0;
        treated[vector::DISCOUNT_SLOT] = 0.5;
        let mut control = vec![0.0; n];
        control[0] = -1.0;
        let mut mean = vec![0.0; n];
        mean[0] = 3.0;
        mean[vector::DISCOUNT_SLOT] = 10.0;
        let mut scale = vec![1.0; n];
        scale[vector::DISCOUNT_SLOT] = 5.0;
        ModelArtifact {
            kind: ModelKind::Model,
            scope: Scope::Offer,
            target: offer.into(),
            version: 1,
            trained_at_ms: 0,
            data: DataWindow { from_ms: 0, to_ms: 1, split_at_ms: 1, train_rows: 1, validation_rows: 1, seed: 1 },
            features: FeatureSchema {
                hash: vector::schema_hash().into(),
                names: FEATURES.iter().map(|f| f.0.to_owned()).collect(),
                mean,
                scale,
            },
            treated: Linear { intercept: -1.0, weights: treated },
            control: Some(Linear { intercept: -1.0, weights: control }),
            value: Linear { intercept: 1_000.0, weights: vec![0.0; n] },
            metrics: Metrics {
                auc: 0.7,
                qini: Some(0.01),
                auuc: Some(0.02),
                calibration: vec![CalibrationBin { predicted: 0.2, observed: 0.2, rows: 1 }],
            },
            reference: vec![Histogram {
                name: "recency_log_days".into(),
                edges: vec![1.0, 2.0, 3.0, 4.0, 5.0],
                shares: vec![1.0 / 6.0; 6],
            }],
        }
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
        let f = Features::compute(&never, EventFacts::default(), 400 * crate::profile::DAY_MS);
        let customer = vector::customer(&f);
        let rules = crate::score::score(&offer, &f, &offer.discount(0), f.now_ms());
        let v = value(&offer, &f, &customer, rules, offer.discount(0), Scorer::Model(&model));
        assert_eq!(v.score.source, "uplift");
        assert!(v.score.uplift > 0.3 && !v.not_incremental, "{:?}", v.score);
        // 40 % off a 30.00 basket costs more than a 10.00 margin can pay for.
        assert!(v.discount.percent < 40 && v.discount.percent >= 5, "{:?}", v.discount);
        let expected = v.score.propensity * (1_000.0 - 30.0 * f64::from(v.discount.percent))
            - v.score.control_propensity * 1_000.0
            - offer.doc.economics.contact_cost_minor as f64;
        assert!((v.score.score - offer.doc.weight * expected).abs() < 1e-6);
        let why = model.contributions(&v.vector);
        assert_eq!(why[0].feature, "recency_log_days", "{why:?}");
        assert!((why[0].value - 2.0 * (366f64.ln() - 3.0)).abs() < 1e-9, "treated +1, control -1 per unit");
        assert_eq!(v.score.model_version, format!("{}@1", offer.doc.id));
    }
}
