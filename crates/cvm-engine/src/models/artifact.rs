//! The model artifact `cvm train` writes and the engine loads: a JSON
//! document with the fitted coefficients and everything needed to trust
//! them — when and on what data it was trained, which feature layout it
//! expects, how well it ranked and how well it was calibrated on the
//! validation period, and the training distribution the drift monitor
//! compares live traffic with.
//!
//! The artifact is a config document like offers and campaigns (key
//! `model/offer/<id>` or `model/campaign/<id>`): it is published to the
//! config topic or dropped into the model directory, checked, and swapped in
//! atomically with the catalog. One that does not fit (another feature
//! layout, wrong lengths, non-finite numbers) is refused with field paths
//! while the previous one keeps scoring.

use serde::{Deserialize, Serialize};

use super::{
    forest::Forest,
    vector::{self, Vector, LEN},
};

/// Config-topic key prefix of model artifacts.
pub const MODEL_KEY_PREFIX: &str = "model/";
/// Ends the config-topic key of a challenger: `model/offer/<id>/challenger`.
pub const CHALLENGER_KEY_SUFFIX: &str = "/challenger";

/// The `kind` of a model artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Always `model`.
    Model,
}

/// What a model scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One offer.
    Offer,
    /// Every offer of a campaign without a model of its own.
    Campaign,
}

/// What a model is for: deciding, or being judged before it may.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It decides for its offer or campaign.
    #[default]
    Champion,
    /// It runs in shadow beside the champion: scored on each decision and
    /// logged ([`cvm_proto::v1::Decision::challenger_selects`]), never used
    /// to decide. Promotion is publishing it again as the champion.
    Challenger,
}

impl Role {
    fn is_champion(&self) -> bool {
        *self == Role::Champion
    }
}

/// A linear predictor over standardised features: `intercept + Σ wᵢ·zᵢ`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// Intercept.
    pub intercept: f64,
    /// One weight per feature.
    pub weights: Vec<f64>,
}

/// The data a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataWindow {
    /// First decision used, epoch ms.
    pub from_ms: i64,
    /// Last decision used, epoch ms.
    pub to_ms: i64,
    /// Decisions before this trained the model; the rest validated it.
    pub split_at_ms: i64,
    /// Training rows (treated + held out).
    pub train_rows: u64,
    /// Validation rows.
    pub validation_rows: u64,
    /// Seed of the fit (it orders the rows the solver sees).
    pub seed: u64,
}

/// Predicted against observed conversion in one decile of the prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationBin {
    /// Mean predicted probability in the bin.
    pub predicted: f64,
    /// Observed conversion rate in the bin.
    pub observed: f64,
    /// Rows in the bin.
    pub rows: u64,
}

/// Quality on the validation period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Area under the ROC curve of the propensity (treated) model.
    pub auc: f64,
    /// Qini coefficient of the uplift ranking: area between its Qini curve
    /// and random targeting, in incremental conversions per treated row.
    pub qini: Option<f64>,
    /// Its 95 % interval, `[low, high]` (a bootstrap over customers). An
    /// uplift model is used only when `low > 0`: it beats random targeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qini_interval: Option<[f64; 2]>,
    /// Area under the uplift curve, normalised per row.
    pub auuc: Option<f64>,
    /// Calibration of the propensity model by decile of prediction.
    pub calibration: Vec<CalibrationBin>,
    /// Predicted against observed uplift (treated minus held-out rate) by
    /// quintile of predicted uplift, as the model predicts (uplift models).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplift_calibration: Vec<CalibrationBin>,
    /// The same before the forest's calibration line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uplift_calibration_raw: Vec<CalibrationBin>,
}

/// A distribution in the training data: decile edges and each bin's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// Feature name, or `score`.
    pub name: String,
    /// Upper edges of all bins but the last (ascending).
    pub edges: Vec<f64>,
    /// Share of training rows per bin (`edges.len() + 1` bins, summing to 1).
    pub shares: Vec<f64>,
}

impl Histogram {
    /// The bin `x` falls in.
    pub fn bin(&self, x: f64) -> usize {
        self.edges.partition_point(|&e| e < x)
    }
}

/// The feature layout a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSchema {
    /// [`vector::schema_hash`] at training.
    pub hash: String,
    /// Feature names, in order.
    pub names: Vec<String>,
    /// Mean of each feature in the training rows.
    pub mean: Vec<f64>,
    /// Standard deviation of each (1 where constant).
    pub scale: Vec<f64>,
}

/// A trained model: response propensity, optional control model (then it is
/// an uplift model), value of a conversion, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtifact {
    /// Always `model`.
    pub kind: ModelKind,
    /// Offer or campaign.
    pub scope: Scope,
    /// The offer or campaign id.
    pub target: String,
    /// Raised on every retraining (`cvm train` uses the training time in minutes).
    pub version: u32,
    /// When it was trained, epoch ms.
    pub trained_at_ms: i64,
    /// The data.
    pub data: DataWindow,
    /// The feature layout and standardisation.
    pub features: FeatureSchema,
    /// Log-odds of converting when contacted (logistic regression).
    pub treated: Linear,
    /// Log-odds of converting when held out; with it, uplift is
    /// `σ(treated) − σ(control)` (a two-model, T-learner, uplift model).
    pub control: Option<Linear>,
    /// Uplift trees; when present they, not the two linear models, give
    /// the conversion probabilities (an uplift model only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forest: Option<Forest>,
    /// Margin of a conversion, minor units (least squares on converters).
    pub value: Linear,
    /// Validation quality.
    pub metrics: Metrics,
    /// Training distributions of the monitored features and of the score.
    pub reference: Vec<Histogram>,
    /// Use the model although its validation did not show that it beats
    /// random targeting (`cvm train --force`, or a hand-made model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Champion (decides) or challenger (shadow); keyed apart, so that one
    /// of each can run for a target.
    #[serde(default, skip_serializing_if = "Role::is_champion")]
    pub role: Role,
}

impl ModelArtifact {
    /// A model of offer `target` that predicts the same for every customer:
    /// log-odds `treated` when contacted and `control` when not (no control
    /// model when `None`), a conversion worth `value_minor`. The smallest
    /// valid artifact: a baseline, and the start of hand-made models in tests.
    pub fn constant(target: &str, version: u32, treated: f64, control: Option<f64>, value_minor: f64) -> Self {
        let zeros = vec![0.0; LEN];
        ModelArtifact {
            kind: ModelKind::Model,
            scope: Scope::Offer,
            target: target.to_owned(),
            version,
            trained_at_ms: 0,
            data: DataWindow { from_ms: 0, to_ms: 0, split_at_ms: 0, train_rows: 0, validation_rows: 0, seed: 0 },
            features: FeatureSchema {
                hash: vector::schema_hash().to_owned(),
                names: vector::FEATURES.iter().map(|f| f.0.to_owned()).collect(),
                mean: zeros.clone(),
                scale: vec![1.0; LEN],
            },
            treated: Linear { intercept: treated, weights: zeros.clone() },
            control: control.map(|c| Linear { intercept: c, weights: zeros.clone() }),
            forest: None,
            value: Linear { intercept: value_minor, weights: zeros },
            metrics: Metrics { auc: 0.5, ..Metrics::default() },
            reference: Vec::new(),
            // Hand-made: nothing was validated.
            force: true,
            role: Role::Champion,
        }
    }

    /// The config-topic key of the artifact.
    pub fn key(&self) -> String {
        let scope = match self.scope {
            Scope::Offer => "offer",
            Scope::Campaign => "campaign",
        };
        let role = match self.role {
            Role::Champion => "",
            Role::Challenger => CHALLENGER_KEY_SUFFIX,
        };
        format!("{MODEL_KEY_PREFIX}{scope}/{}{role}", self.target)
    }

    /// `target@version`, as decisions quote it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.target, self.version)
    }

    /// Why an uplift model has not shown it beats random targeting on its
    /// validation period (`None` when it has, when it is a propensity model,
    /// or when `force` is set): a model that cannot rank who is persuadable
    /// better than chance would hold back customers for nothing.
    /// A challenger need not: it only runs in shadow, to be judged.
    pub fn unproven(&self) -> Option<String> {
        if self.force || self.control.is_none() || self.role == Role::Challenger {
            return None;
        }
        let fix = "train on more decisions (a longer window, more customers, a larger holdout), \
                   or set \"force\": true to score with it anyway";
        match (self.metrics.qini, self.metrics.qini_interval) {
            (Some(q), Some([low, high])) if low.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) => {
                Some(format!(
                "metrics.qini: {q:.4} on validation, 95 % interval {low:.4} to {high:.4}: not shown to beat random \
                 targeting (the interval must lie above 0); {fix}"
            ))
            }
            (Some(_), Some(_)) => None,
            _ => Some(
                "metrics.qini_interval: missing, so the model has not shown it beats random targeting; retrain it \
                 with this version's `cvm train`, or set \"force\": true to score with it anyway"
                    .into(),
            ),
        }
    }

    /// Everything that keeps this engine from using the artifact, with
    /// field paths.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.version == 0 {
            out.push("version: must be at least 1; raise it on every retraining".into());
        }
        if self.features.hash != vector::schema_hash() {
            out.push(format!(
                "features.hash: the model was trained on feature schema {}, this engine computes {}; retrain it with this version's `cvm train`",
                self.features.hash,
                vector::schema_hash()
            ));
        }
        let names: Vec<&str> = vector::FEATURES.iter().map(|f| f.0).collect();
        if self.features.names != names {
            out.push(format!("features.names: expected {names:?}; retrain the model with this version's `cvm train`"));
        }
        let mut lengths = vec![("features.mean", &self.features.mean), ("features.scale", &self.features.scale)];
        lengths.push(("treated.weights", &self.treated.weights));
        lengths.push(("value.weights", &self.value.weights));
        if let Some(c) = &self.control {
            lengths.push(("control.weights", &c.weights));
        }
        for (path, v) in lengths {
            if v.len() != LEN {
                out.push(format!("{path}: has {} numbers, the feature vector has {LEN}", v.len()));
            } else if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                out.push(format!("{path}[{i}]: is not a finite number"));
            }
        }
        if let Some(i) = self.features.scale.iter().position(|s| *s <= 0.0) {
            out.push(format!("features.scale[{i}]: must be positive"));
        }
        match (&self.forest, &self.control) {
            (Some(_), None) => out.push("forest: an uplift forest needs the control model beside it".into()),
            (Some(forest), Some(_)) => out.extend(forest.problems("forest")),
            (None, _) => {}
        }
        if let Some(problem) = self.unproven() {
            out.push(problem);
        }
        for (i, h) in self.reference.iter().enumerate() {
            if h.shares.len() != h.edges.len() + 1 || h.edges.windows(2).any(|w| w[0] > w[1]) {
                out.push(format!("reference[{i}]: needs ascending edges and one share more than edges"));
            }
        }
        out
    }
}

/// An artifact ready to score: standardisation folded into the weights, so a
/// prediction is one dot product over the raw vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScoringWeights {
    intercept: f64,
    weights: Vector,
}

impl ScoringWeights {
    pub(crate) fn new(linear: &Linear, schema: &FeatureSchema) -> Self {
        let mut weights = [0.0; LEN];
        let mut intercept = linear.intercept;
        for (i, w) in weights.iter_mut().enumerate() {
            *w = linear.weights[i] / schema.scale[i];
            intercept -= *w * schema.mean[i];
        }
        Self { intercept, weights }
    }

    /// `intercept + Σ wᵢ·zᵢ` for the raw vector `x`.
    #[inline]
    pub(crate) fn predict(&self, x: &Vector) -> f64 {
        self.intercept + self.weights.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
    }

    /// The prediction at the zero vector.
    #[inline]
    pub(crate) fn intercept(&self) -> f64 {
        self.intercept
    }

    /// The change of the prediction per unit of feature `i`.
    #[inline]
    pub(crate) fn slope(&self, i: usize) -> f64 {
        self.weights[i]
    }

    /// Each feature's term `wᵢ·zᵢ` for `x`, given the training means.
    pub(crate) fn terms(&self, x: &Vector, mean: &[f64]) -> Vector {
        let mut out = [0.0; LEN];
        for i in 0..LEN {
            out[i] = self.weights[i] * (x[i] - mean[i]);
        }
        out
    }
}

/// The logistic function.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
