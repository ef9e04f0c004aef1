//! Models in the decision core: what decisions record, hot swap, the
//! not-incremental hold-back, drift fallback and bandit learning.

mod support;

use std::sync::Arc;

use cvm_engine::{
    models::{artifact::Histogram, vector, ModelArtifact, ModelSettings, Role},
    Catalog, ConfigDocument, Engine, EngineConfig, MemoryState,
};
use cvm_proto::v1::{AppEventKind, Decision, Outcome};
use support::*;

fn offer(id: &str) -> ConfigDocument {
    let doc = format!(
        "id: {id}\nversion: 1\ncampaign_id: camp-{id}\ntrigger: {{ kind: event, event: app_open }}\n\
         eligibility: push_reachable\nchannels:\n  push: {{ title: t, body: b }}\n\
         economics: {{ margin_per_redemption_minor: 1000, contact_cost_minor: 1 }}\n"
    );
    ConfigDocument::parse(id, doc.as_bytes()).unwrap()
}

/// An uplift model for `offer`: log-odds `treated` when contacted and
/// `control` when not, whatever the features (all weights zero but
/// recency's), with the training distribution of recency all in its
/// lowest bin unless `reference_recency_high`.
fn model(offer: &str, version: u32, treated: f64, control: f64, reference_recency_high: bool) -> ConfigDocument {
    let mut artifact = ModelArtifact::constant(offer, version, treated, Some(control), 1_500.0);
    artifact.treated.weights[0] = 0.01;
    let shares = if reference_recency_high { [0.0, 1.0] } else { [1.0, 0.0] };
    artifact.reference = vec![Histogram { name: "recency_log_days".into(), edges: vec![3.0], shares: shares.to_vec() }];
    ConfigDocument::parse(&artifact.key(), &serde_json::to_vec(&artifact).unwrap()).unwrap()
}

fn engine(docs: Vec<ConfigDocument>, models: ModelSettings) -> Engine {
    let catalog = docs.into_iter().fold(Catalog::default(), |c, d| c.with_document(d));
    Engine::new(EngineConfig { models, ..config(0.0) }, catalog)
}

/// A new customer (never bought: recency ln 366) opens the app; their decision.
fn open(engine: &Engine, state: &mut MemoryState, customer: &str, at: i64) -> Decision {
    apply(engine, state, &consent(customer), at);
    let emits =
        engine.process(state, 0, &app(&format!("open-{customer}-{at}"), customer, at, AppEventKind::AppOpen, ""), at);
    decision_list(&emits.unwrap().emits)[0].clone()
}

fn no_exploration() -> ModelSettings {
    ModelSettings { exploration_percent: 0.0, ..ModelSettings::default() }
}

#[test]
fn decisions_carry_model_version_scores_contributions_and_features_and_a_new_model_swaps_in() {
    let mut engine = engine(vec![offer("o"), model("o", 1, 0.0, -2.0, true)], no_exploration());
    let mut state = MemoryState::default();
    let d = open(&engine, &mut state, "c1", DAY);
    assert_eq!(d.outcome(), Outcome::Treated, "{d:?}");
    assert_eq!(d.model_version, "o@1");
    let s = &d.scores[0];
    assert_eq!(s.source, "uplift");
    assert!((s.propensity - 0.515).abs() < 0.001 && (s.control_propensity - 0.119).abs() < 0.001, "{s:?}");
    assert!((s.uplift - (s.propensity - s.control_propensity)).abs() < 1e-12);
    assert_eq!(s.contributions.len(), 1, "only features that moved the score: {:?}", s.contributions);
    assert_eq!(s.contributions[0].feature, "recency_log_days");
    assert_eq!(d.model_features.len(), vector::LEN);

    // A retrained model arrives (as from the config topic or the model
    // directory): the next decision uses it, with no restart.
    let next = engine.catalog().with_document(model("o", 2, 1.0, -2.0, true));
    engine.set_catalog(Arc::new(next));
    let d = open(&engine, &mut state, "c2", DAY);
    assert_eq!(d.model_version, "o@2");
    assert!(d.scores[0].propensity > 0.7);
}

#[test]
fn an_uplift_model_holds_back_customers_it_expects_to_lose_except_when_exploring() {
    // Contact halves the chance of buying: a sleeping dog.
    let docs = vec![offer("o"), model("o", 1, -1.0, 0.0, true)];
    let mut state = MemoryState::default();
    let d = open(&engine(docs.clone(), no_exploration()), &mut state, "c1", DAY);
    assert_eq!(d.outcome(), Outcome::NotIncremental, "{d:?}");
    assert!(
        d.reason.starts_with("not incremental: expected value -") && d.reason.contains("model o@1"),
        "{}",
        d.reason
    );
    assert!(d.scores[0].uplift < -0.2);
    // Logged for training: only the exploration slice (none here) would
    // have sent it; once sent, it is treated outside the holdout and the
    // global control group: 80 % × 90 %.
    assert_eq!(d.selection_probability, 0.0);
    let catalog = docs.iter().cloned().fold(Catalog::default(), |c, d| c.with_document(d));
    let config = EngineConfig { models: no_exploration(), default_holdout_percent: 20.0, ..config(10.0) };
    let d = open(&Engine::new(config, catalog), &mut state, "c4", DAY);
    assert_eq!(d.outcome(), Outcome::NotIncremental);
    assert!((d.treatment_probability - 0.72).abs() < 1e-12, "{d:?}");
    let everyone_explores = ModelSettings { exploration_percent: 100.0, ..ModelSettings::default() };
    let d = open(&engine(docs.clone(), everyone_explores), &mut state, "c2", DAY);
    assert_eq!(d.outcome(), Outcome::Treated, "inside the exploration budget the model does not hold back");
    assert_eq!(d.selection_probability, 1.0);
    let some_explore = ModelSettings { exploration_percent: 5.0, ..ModelSettings::default() };
    let d = open(&engine(docs, some_explore), &mut state, "c3", DAY);
    assert!((d.selection_probability - 0.05).abs() < 1e-12, "{d:?}");
}

/// The model `model(…)` makes, as a challenger in shadow.
fn challenger(offer: &str, version: u32, treated: f64, control: f64) -> ConfigDocument {
    let ConfigDocument::Model(mut artifact) = model(offer, version, treated, control, true) else { unreachable!() };
    artifact.role = Role::Challenger;
    // A challenger need not have shown it beats random targeting: it only runs in shadow.
    artifact.force = false;
    artifact.metrics.qini_interval = Some([-0.01, 0.01]);
    let key = artifact.key();
    assert_eq!(key, "model/offer/o/challenger");
    ConfigDocument::parse(&key, &serde_json::to_vec(&artifact).unwrap()).unwrap()
}

#[test]
fn a_challenger_in_shadow_is_logged_on_each_decision_and_decides_nothing_until_promoted() {
    // The champion contacts everyone; the challenger sees sleeping dogs.
    let champion = model("o", 1, 0.0, -2.0, true);
    let mut engine = engine(vec![offer("o"), champion, challenger("o", 2, -1.0, 0.0)], no_exploration());
    let mut state = MemoryState::default();
    let d = open(&engine, &mut state, "c1", DAY);
    assert_eq!(d.outcome(), Outcome::Treated, "the champion decides: {d:?}");
    assert_eq!(d.model_version, "o@1");
    assert_eq!((d.challenger_version.as_str(), d.challenger_selects), ("o@2", false));

    // Where the champion holds back, the challenger's choice is logged too.
    let sleeping = model("o", 3, -1.0, 0.0, true);
    let helping = challenger("o", 4, 0.0, -2.0);
    engine.set_catalog(Arc::new(engine.catalog().with_document(sleeping).with_document(helping)));
    let d = open(&engine, &mut state, "c2", DAY);
    assert_eq!(d.outcome(), Outcome::NotIncremental, "{d:?}");
    assert_eq!((d.challenger_version.as_str(), d.challenger_selects), ("o@4", true));

    // Promotion is a config change: the challenger's artifact published as
    // the champion, the shadow key deleted.
    let ConfigDocument::Model(mut promoted) = challenger("o", 4, 0.0, -2.0) else { unreachable!() };
    promoted.role = Role::Champion;
    promoted.force = true;
    let promoted = ConfigDocument::parse(&promoted.key(), &serde_json::to_vec(&promoted).unwrap()).unwrap();
    let next = engine.catalog().with_document(promoted).without_key("model/offer/o/challenger");
    engine.set_catalog(Arc::new(next));
    let d = open(&engine, &mut state, "c3", DAY);
    assert_eq!((d.outcome(), d.model_version.as_str()), (Outcome::Treated, "o@4"), "{d:?}");
    assert_eq!((d.challenger_version.as_str(), d.challenger_selects), ("", false));
}

#[test]
fn a_forest_decides_by_the_customer_and_treats_only_what_pays_at_its_lower_bound() {
    use cvm_engine::models::forest::{Calibration, Forest, Node, Split, Tree};
    // Customers who never bought (recency ln 366 ≈ 5.9) gain `gain` from
    // a contact; recent buyers lose 30 pp. The line is uncertain by 3 pp.
    let forest_model = |gain: f64| {
        let mut artifact = ModelArtifact::constant("o", 1, 0.0, Some(0.0), 1_500.0);
        let root =
            Node { treated: 0.3, control: 0.3, split: Some(Split { feature: 0, threshold: 3.0, left: 1, right: 2 }) };
        let recent = Node { treated: 0.2, control: 0.5, split: None };
        let never = Node { treated: 0.1 + gain, control: 0.1, split: None };
        artifact.forest = Some(Forest {
            trees: vec![Tree { nodes: vec![root, recent, never] }],
            calibration: Calibration { intercept: 0.0, slope: 1.0, covariance: [0.0009, 0.0, 0.0], floors: Vec::new() },
        });
        ConfigDocument::parse(&artifact.key(), &serde_json::to_vec(&artifact).unwrap()).unwrap()
    };
    let mut state = MemoryState::default();
    let d = open(&engine(vec![offer("o"), forest_model(0.2)], no_exploration()), &mut state, "c1", DAY);
    assert_eq!(d.outcome(), Outcome::Treated, "{d:?}");
    let s = &d.scores[0];
    assert!((s.uplift - 0.2).abs() < 1e-9 && (s.control_propensity - 0.1).abs() < 1e-9, "{s:?}");
    assert_eq!(s.contributions[0].feature, "recency_log_days", "the cut that made the difference");
    // 15.00 × (0.2 − 1.645 × 0.03) − 0.01 > 0.
    assert!(s.score_low > 0.0 && s.score_low < s.score, "{s:?}");
    // A 2 pp gain pays on average (30 − 1 > 0) but not at the lower bound.
    let d = open(&engine(vec![offer("o"), forest_model(0.02)], no_exploration()), &mut state, "c2", DAY);
    assert_eq!(d.outcome(), Outcome::NotIncremental, "{d:?}");
    assert!(d.scores[0].score > 0.0 && d.scores[0].score_low < 0.0);
    assert!(d.reason.contains("at the uplift's lower bound (1.645 standard errors below)"), "{}", d.reason);
    // Deciding on the expected value alone, it is sent.
    let on_average = ModelSettings { treat_lower_bound_z: 0.0, ..no_exploration() };
    let d = open(&engine(vec![offer("o"), forest_model(0.02)], on_average), &mut state, "c3", DAY);
    assert_eq!(d.outcome(), Outcome::Treated, "{d:?}");
}

#[test]
fn a_drifted_uplift_model_falls_back_to_rule_priority_in_the_exploration_slice_only() {
    // Trained on recent buyers (recency below 3); live traffic is customers
    // who never bought (recency ln 366): every one lands in the other bin.
    let drifted_engine = |exploration_percent| {
        let settings = ModelSettings { drift_window: 100, exploration_percent, ..ModelSettings::default() };
        let engine = engine(vec![offer("o"), model("o", 1, 0.0, -2.0, false)], settings);
        let mut state = MemoryState::default();
        for i in 0..100 {
            let d = open(&engine, &mut state, &format!("c{i}"), DAY);
            assert_eq!(d.scores[0].source, "uplift", "healthy until the first window closes");
        }
        assert!(engine.catalog().models()[0].monitor().drifted());
        (engine, state)
    };
    // Outside the exploration slice: held back, not contacted by rules.
    let (engine, mut state) = drifted_engine(0.0);
    let d = open(&engine, &mut state, "late", DAY);
    assert_eq!(d.outcome(), Outcome::NotIncremental);
    assert_eq!(d.scores[0].source, "rules_drift");
    assert_eq!(d.model_version, "o@1");
    assert!(
        d.reason.starts_with("held back: model o@1 drifted (PSI ") && d.reason.contains("exploration slice"),
        "{}",
        d.reason
    );
    // Inside it: rule priority, and the decision says why.
    let (engine, mut state) = drifted_engine(100.0);
    let d = open(&engine, &mut state, "late", DAY);
    assert_eq!(d.outcome(), Outcome::Treated);
    assert_eq!(d.scores[0].source, "rules_drift");
    assert!(
        d.reason.starts_with("rule priority: model o@1 drifted (PSI ")
            && d.reason.contains("on recency_log_days > 0.25"),
        "{}",
        d.reason
    );
}

#[test]
fn the_bandit_learns_from_conversions_which_offer_converts() {
    // Two offers without models; customers buy after "b" three times as
    // often as after "a". Every decision draws from the posteriors.
    let settings = ModelSettings { exploration_percent: 100.0, ..ModelSettings::default() };
    let engine = engine(vec![offer("a"), offer("b")], settings);
    let mut state = MemoryState::default();
    let mut late_b = 0;
    for i in 0..1_500u64 {
        let customer = format!("c{i}");
        let at = DAY + i as i64 * 60_000;
        let d = open(&engine, &mut state, &customer, at);
        let rate = if d.offer_definition_id == "b" { 0.45 } else { 0.15 };
        let draw = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < rate {
            let bought = purchase(&format!("buy-{customer}"), &customer, at + HOUR, "sushi");
            apply(&engine, &mut state, &bought, at + HOUR);
        }
        if i >= 1_300 && d.offer_definition_id == "b" {
            late_b += 1;
        }
    }
    assert!(late_b > 160, "b wins most of the last 200 decisions: {late_b}");
    let arms = state.arms();
    let b = arms.iter().find(|(k, _)| k.offer == cvm_engine::profile::contact_hash("b")).unwrap().1;
    assert!((b.successes as f64 / b.trials as f64 - 0.45).abs() < 0.06, "{b:?}");
}
