//! Training rows: recorded decisions joined with the purchases that followed.
//!
//! A treated or held-out decision records the model feature vector of its
//! offer (`Decision.model_features`). Its label is whether the customer
//! bought within the campaign's attribution window after it, and its value
//! the margin they bought — the same definition the incrementality report
//! uses, so a model is trained on what the report will judge it by.

use std::collections::{HashMap, HashSet};

use cvm_engine::models::vector::{Vector, LEN};
use cvm_proto::v1::{Decision, Outcome, Purchase};

/// One training row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index of its decision in the slice given to [`rows`].
    pub decision: usize,
    /// The customer decided about: validation intervals draw a customer's
    /// rows together.
    pub customer: String,
    /// Decision time, epoch ms.
    pub at_ms: i64,
    /// Contacted (else held out).
    pub treated: bool,
    /// The model features at decision time.
    pub x: Vector,
    /// Bought within the window.
    pub converted: bool,
    /// Margin bought within the window, minor units.
    pub margin_minor: f64,
    /// How the decision was randomised, as it logged (see [`Assignment`]).
    pub assignment: Assignment,
}

/// How a decision was randomised: the probabilities it logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment {
    /// Probability that a decision like it reached the treatment/holdout
    /// coin flip (1 when the policy chose the offer, the exploration share
    /// when a model expected the contact not to pay).
    pub selection: f64,
    /// Probability of treatment once selected; `None` when the decision did
    /// not log it (then the rows' own treated share stands in).
    pub treatment: Option<f64>,
}

impl Default for Assignment {
    fn default() -> Self {
        Self { selection: 1.0, treatment: None }
    }
}

impl Assignment {
    /// The row's weight in training: one over its selection probability, so
    /// that the explored customers a model did not choose stand for all of
    /// them and the rows describe every eligible customer, not only those
    /// the model liked.
    pub fn weight(&self) -> f64 {
        1.0 / self.selection
    }

    fn of(d: &Decision) -> Self {
        // Decisions written before these fields existed logged 0: chosen by
        // the policy, treated at the rows' own share.
        let selection =
            if d.selection_probability > 0.0 && d.selection_probability <= 1.0 { d.selection_probability } else { 1.0 };
        let treatment =
            (d.treatment_probability > 0.0 && d.treatment_probability < 1.0).then_some(d.treatment_probability);
        Self { selection, treatment }
    }
}

/// Which decisions a model learns from.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Decisions about one offer.
    Offer(&'a str),
    /// Decisions about any offer of a campaign.
    Campaign(&'a str),
}

impl Target<'_> {
    fn matches(&self, d: &Decision) -> bool {
        match self {
            Target::Offer(id) => d.offer_definition_id == *id,
            Target::Campaign(id) => d.campaign_id == *id,
        }
    }
}

/// Purchases by customer, in time order, as (time, margin).
#[derive(Debug, Default)]
pub struct PurchaseLog {
    by_customer: HashMap<String, Vec<(i64, i64)>>,
}

impl PurchaseLog {
    /// Records a purchase.
    pub fn add(&mut self, p: &Purchase) {
        let margin = p.lines.iter().fold(0i64, |sum, l| {
            let unit = l.unit_price_minor.saturating_sub(l.unit_cost_minor);
            sum.saturating_add(unit.saturating_mul(i64::from(l.quantity.max(1))))
        });
        self.by_customer.entry(p.customer_id.clone()).or_default().push((p.timestamp_ms, margin));
    }

    /// Purchases recorded.
    pub fn len(&self) -> usize {
        self.by_customer.values().map(Vec::len).sum()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_customer.is_empty()
    }

    /// Conversions and margin of `customer` in `(from_ms, to_ms]`.
    fn after(&mut self, customer: &str, from_ms: i64, to_ms: i64) -> (bool, i64) {
        let Some(list) = self.by_customer.get_mut(customer) else { return (false, 0) };
        if !list.is_sorted() {
            list.sort_unstable();
        }
        let start = list.partition_point(|&(t, _)| t <= from_ms);
        let inside = list[start..].iter().take_while(|&&(t, _)| t <= to_ms);
        let (mut any, mut margin) = (false, 0);
        for (_, m) in inside {
            any = true;
            margin += m;
        }
        (any, margin)
    }
}

/// Puts decisions read from a topic in time and id order, so that the
/// rows built from them do not depend on the order the topic's partitions
/// were read in (a decision logged on two channels is then one row either way).
pub fn in_decision_order(decisions: &mut [Decision]) {
    decisions.sort_by(|a, b| (a.decided_at_ms, &a.decision_id).cmp(&(b.decided_at_ms, &b.decision_id)));
}

/// The training rows for `target` among `decisions`, labelled from
/// `purchases` within `window_ms` of each decision. A decision made on
/// several channels at once counts once.
pub fn rows(decisions: &[Decision], purchases: &mut PurchaseLog, target: Target<'_>, window_ms: i64) -> Vec<Row> {
    let acted = [Outcome::Treated, Outcome::HoldoutCampaign, Outcome::HoldoutGlobal];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        if !acted.contains(&d.outcome()) || d.model_features.len() != LEN || !target.matches(d) {
            continue;
        }
        if !seen.insert((d.customer_id.clone(), d.decided_at_ms, d.offer_definition_id.clone())) {
            continue;
        }
        let (converted, margin) = purchases.after(&d.customer_id, d.decided_at_ms, d.decided_at_ms + window_ms);
        let mut x = [0.0; LEN];
        x.copy_from_slice(&d.model_features);
        out.push(Row {
            decision: i,
            customer: d.customer_id.clone(),
            at_ms: d.decided_at_ms,
            treated: d.outcome() == Outcome::Treated,
            x,
            converted,
            margin_minor: margin as f64,
            assignment: Assignment::of(d),
        });
    }
    out
}
