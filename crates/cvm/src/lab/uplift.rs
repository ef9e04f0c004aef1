//! `cvm bench-uplift`: does uplift targeting earn more than propensity,
//! rules and chance, on customers whose responsiveness is known?
//!
//! The synthetic retailer gives every customer a hidden type (sure thing,
//! persuadable, lost cause, sleeping dog; [`cvm_synth::Responsiveness`]).
//! Its history runs through the real decision core. A push campaign with a
//! 50 % holdout sweeps all app users twice (two weeks apart) under rule
//! priority; customers answer by their type. Customers are then split by a
//! hash: `cvm train`'s code learns from the *training* customers' decisions
//! (first sweep trains, second validates — the time split), and the four
//! targeting policies are judged on the *held-out* customers' second-sweep
//! decisions:
//!
//! - **incremental margin per 1,000 contacted**, when each policy contacts
//!   its top share of them: the true expected increment of each contacted
//!   customer's type, `(p_contacted − p_not) × basket margin − contact cost`;
//! - **Qini coefficient** of each policy's ranking on the observed,
//!   randomised outcomes.
//!
//! Finally the trained model is loaded into the engine and a third sweep
//! shows what the engine does with it: which types it contacts and which it
//! holds back as not incremental.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    path::PathBuf,
    sync::Arc,
};

use cvm_engine::{
    models::{ModelSettings, Scope},
    time::DAY_MS,
    Catalog, ConfigDocument, Driver, Engine, EngineConfig, MemoryState, Outbound, Output, Source,
};
use cvm_proto::v1::{Decision, Outcome};
use cvm_synth::{Responsiveness, Retailer, RetailerConfig, TypedResponder};
use cvm_train::{
    dataset::{self, PurchaseLog, Target},
    metrics::{qini_auuc, UpliftRow},
    Row, TrainOptions,
};

const OFFER: &str = r#"
id: uplift-test
version: 1
campaign_id: uplift-test
trigger: { kind: sweep }
eligibility: push_reachable
channels:
  push: { title: "A treat for you", body: "Your weekend basket is ready." }
economics: { margin_per_redemption_minor: 1600, contact_cost_minor: 10 }
ttl: 3d
"#;
const CAMPAIGN: &str = "kind: campaign\nid: uplift-test\nversion: 1\nholdout_percent: 50\nattribution_window: 2d\n";
/// Basket the campaign sells: 40.00 at 24.00 cost of goods.
const BASKET: (i64, i64) = (4_000, 2_400);
const CONTACT_COST: f64 = 10.0;

/// Settings of the benchmark.
#[derive(Debug, Clone)]
pub struct UpliftOptions {
    /// Customers of the synthetic retailer.
    pub customers: u32,
    /// Days of history (sweeps run 30 and 15 days before the end, the
    /// model sweep 3 days before).
    pub days: u32,
    /// Seed of the retailer and of training.
    pub seed: u64,
    /// Share of held-out customers each policy contacts, percent.
    pub depth_percent: f64,
    /// Write the trained artifact here.
    pub out: Option<PathBuf>,
}

/// One targeting policy's result.
#[derive(Debug, Clone)]
pub struct PolicyResult {
    /// `random`, `rules`, `propensity` or `uplift`.
    pub name: &'static str,
    /// True expected incremental margin per 1,000 contacted, currency units.
    pub margin_per_1000: f64,
    /// Qini coefficient on observed outcomes.
    pub qini: f64,
    /// Qini coefficient on the true uplift of each customer's type: the
    /// ranking quality without the noise of one draw of outcomes.
    pub true_qini: f64,
}

/// What the benchmark found.
#[derive(Debug)]
pub struct UpliftReport {
    /// The trained artifact.
    pub model: cvm_engine::models::ModelArtifact,
    /// Held-out customers' decisions judged.
    pub held_out_rows: usize,
    /// The four policies, in order random, rules, propensity, uplift.
    pub policies: Vec<PolicyResult>,
    /// Percent of held-out customers each policy contacts.
    pub depth_percent: f64,
    /// With the model: decisions per (type, outcome) in the model sweep.
    pub engine_outcomes: BTreeMap<(Responsiveness, String), usize>,
    /// With the model: (sum of predicted uplift, decisions scored) per type.
    pub predicted_uplift: BTreeMap<Responsiveness, (f64, usize)>,
}

/// A targeting policy: a customer's score, higher contacted first.
type Targeting<'a> = Box<dyn Fn(&Decision, &Row) -> f64 + 'a>;

fn is_training_customer(customer_id: &str, seed: u64) -> bool {
    xxhash_rust::xxh3::xxh3_64_with_seed(customer_id.as_bytes(), seed) % 10 < 7
}

/// Runs the benchmark.
pub fn run(opts: &UpliftOptions) -> anyhow::Result<UpliftReport> {
    anyhow::ensure!(opts.days >= 35, "--days must be at least 35 (sweeps run 30 and 15 days before the end)");
    let config = RetailerConfig { customers: opts.customers, days: opts.days, seed: opts.seed, ..Default::default() };
    let start_ms = config.start_ms;
    let retailer = Retailer::new(config);
    let types: HashMap<String, Responsiveness> = retailer.responsiveness().into_iter().collect();
    // Each sweep is a new version of the offer, so its decisions get new ids.
    let offer = |version: usize| {
        let text = OFFER.replace("version: 1", &format!("version: {version}"));
        ConfigDocument::parse("uplift-test", text.as_bytes())
    };
    let mut catalog =
        Catalog::default().with_document(ConfigDocument::parse("campaign/uplift-test", CAMPAIGN.as_bytes())?);
    catalog = catalog.with_document(offer(1)?);
    let mut engine_config = EngineConfig {
        global_control_percent: 0.0,
        models: ModelSettings { cold_start: cvm_engine::models::ColdStart::Rules, ..ModelSettings::default() },
        ..EngineConfig::default()
    };
    // Three pushes of one campaign within a month would otherwise rest the
    // offer for those who ignored two; here every sweep should decide.
    engine_config.contact_policy.fatigue.ignored = 0;
    let mut driver = Driver::replay(Engine::new(engine_config.clone(), catalog.clone()));
    let responder = TypedResponder::new(opts.seed, BASKET.0, BASKET.1);
    let noon = |day: u32| start_ms + i64::from(day) * DAY_MS + DAY_MS / 2;
    let sweeps = [noon(opts.days - 30), noon(opts.days - 15)];
    let model_sweep = noon(opts.days - 3);

    let mut state = MemoryState::default();
    let mut decisions: Vec<Decision> = Vec::new();
    let mut purchases = PurchaseLog::default();
    // Responses wait here until event time reaches them.
    let mut pending: Vec<cvm_proto::v1::Purchase> = Vec::new();
    let mut engine_outcomes = BTreeMap::new();
    let mut predicted_uplift: BTreeMap<Responsiveness, (f64, usize)> = BTreeMap::new();
    let mut events = retailer.peekable();
    let mut moments: Vec<i64> = sweeps.to_vec();
    moments.push(model_sweep);
    for (i, &at) in moments.iter().enumerate() {
        // Apply history (and due responses) up to the sweep.
        apply_until(&mut driver, &mut state, &mut events, &mut pending, &mut purchases, at)?;
        catalog = catalog.with_document(offer(i + 1)?);
        driver.set_catalog(Arc::new(catalog.clone()));
        if i == 2 {
            // Train on what the first two sweeps taught, load the model, sweep again.
            let train_rows = rows_of(&decisions, &mut purchases, |c| is_training_customer(c, opts.seed));
            let mut options = TrainOptions::new(Scope::Offer, "uplift-test", at);
            options.seed = opts.seed;
            options.progress = true;
            let artifact = cvm_train::train(&train_rows, &options)?;
            if let Some(path) = &opts.out {
                std::fs::write(path, serde_json::to_vec_pretty(&artifact)?)?;
            }
            driver.set_catalog(Arc::new(catalog.with_document(ConfigDocument::Model(Box::new(artifact)))));
        }
        let offer = driver.engine().catalog().get("uplift-test").expect("published").clone();
        let mut out = Output::default();
        driver.sweep_everyone(&mut state, &[0], &offer, at, &mut out)?;
        for e in out.emits {
            let Outbound::Decision(d) = e else { continue };
            let kind = types[d.customer_id.as_str()];
            if i == 2 {
                *engine_outcomes.entry((kind, d.outcome().as_str_name().to_owned())).or_insert(0) += 1;
                if let Some(s) = d.scores.first().filter(|s| s.source == "uplift") {
                    let e = predicted_uplift.entry(kind).or_default();
                    e.0 += s.uplift;
                    e.1 += 1;
                }
            }
            let contacted = d.outcome() == Outcome::Treated;
            if contacted || d.outcome() == Outcome::HoldoutCampaign {
                pending.extend(responder.respond(&d.customer_id, kind, contacted, &d.offer_id, at));
            }
            decisions.push(d);
        }
    }
    let end = start_ms + i64::from(opts.days) * DAY_MS + 10 * DAY_MS;
    apply_until(&mut driver, &mut state, &mut events, &mut pending, &mut purchases, end)?;

    let Some(model) = driver.engine().catalog().models().first().map(|m| Arc::clone(m)) else {
        anyhow::bail!("no model was trained");
    };
    // The held-out customers' decisions of the second sweep, with outcomes.
    let held_out: Vec<Decision> = decisions
        .into_iter()
        .filter(|d| d.decided_at_ms == sweeps[1] && !is_training_customer(&d.customer_id, opts.seed))
        .collect();
    let rows = dataset::rows(&held_out, &mut purchases, Target::Offer("uplift-test"), 2 * DAY_MS);
    let by_row: Vec<(&Decision, &Row)> = rows.iter().map(|r| (&held_out[r.decision], r)).collect();
    let margin = responder.margin_minor() as f64;
    let truth = |d: &Decision| types[d.customer_id.as_str()].uplift() * margin - CONTACT_COST;
    let policies: [(&'static str, Targeting<'_>); 4] = [
        ("random", Box::new(|d: &Decision, _: &Row| xxhash_rust::xxh3::xxh3_64(d.customer_id.as_bytes()) as f64)),
        ("rules", Box::new(|d: &Decision, _: &Row| d.scores.first().map_or(0.0, |s| s.score))),
        ("propensity", Box::new(|_: &Decision, r: &Row| model.predict(&r.x).0)),
        (
            "uplift",
            Box::new(|_: &Decision, r: &Row| {
                let (t, c) = model.predict(&r.x);
                t - c.unwrap_or(0.0)
            }),
        ),
    ];
    let contacted = ((by_row.len() as f64) * opts.depth_percent / 100.0).round().max(1.0) as usize;
    let results = policies
        .iter()
        .map(|(name, score)| {
            let mut ranked: Vec<(f64, &Decision, &Row)> = by_row.iter().map(|(d, r)| (score(d, r), *d, *r)).collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.customer_id.cmp(&b.1.customer_id)));
            let total: f64 = ranked.iter().take(contacted).map(|(_, d, _)| truth(d)).sum();
            let uplift_rows: Vec<UpliftRow> = ranked
                .iter()
                .map(|(s, _, r)| UpliftRow { score: *s, treated: r.treated, converted: r.converted })
                .collect();
            let true_uplift: Vec<f64> = ranked.iter().map(|(_, d, _)| types[d.customer_id.as_str()].uplift()).collect();
            PolicyResult {
                name,
                margin_per_1000: total / contacted as f64 * 1000.0 / 100.0,
                qini: qini_auuc(&uplift_rows).0,
                true_qini: true_qini(&true_uplift),
            }
        })
        .collect();
    Ok(UpliftReport {
        model: model.artifact().clone(),
        held_out_rows: by_row.len(),
        policies: results,
        depth_percent: opts.depth_percent,
        engine_outcomes,
        predicted_uplift,
    })
}

/// Qini coefficient of a ranking from each ranked customer's true uplift:
/// the mean gap between the cumulative uplift of targeting in this order
/// and of targeting at random, per customer.
fn true_qini(ranked_uplift: &[f64]) -> f64 {
    let n = ranked_uplift.len() as f64;
    let total: f64 = ranked_uplift.iter().sum();
    let mut cumulative = 0.0;
    let mut gap = 0.0;
    for (k, u) in ranked_uplift.iter().enumerate() {
        cumulative += u;
        gap += cumulative - total * (k + 1) as f64 / n;
    }
    gap / (n * n)
}

/// Training rows of the customers `keep` selects.
fn rows_of(decisions: &[Decision], purchases: &mut PurchaseLog, keep: impl Fn(&str) -> bool) -> Vec<Row> {
    let mine: Vec<Decision> = decisions.iter().filter(|d| keep(&d.customer_id)).cloned().collect();
    dataset::rows(&mine, purchases, Target::Offer("uplift-test"), 2 * DAY_MS)
}

/// Applies history events and due responses in time order up to `until_ms`.
fn apply_until(
    driver: &mut Driver,
    state: &mut MemoryState,
    events: &mut std::iter::Peekable<Retailer>,
    pending: &mut Vec<cvm_proto::v1::Purchase>,
    purchases: &mut PurchaseLog,
    until_ms: i64,
) -> anyhow::Result<()> {
    pending.sort_by_key(|p| std::cmp::Reverse(p.timestamp_ms));
    loop {
        let next_event = events.peek().map(|e| e.event.timestamp_ms()).filter(|&t| t < until_ms);
        let next_response = pending.last().map(|p| p.timestamp_ms).filter(|&t| t < until_ms);
        let event = match (next_event, next_response) {
            (None, None) => return Ok(()),
            (Some(e), Some(r)) if r < e => cvm_engine::Event::Purchase(pending.pop().expect("peeked")),
            (None, Some(_)) => cvm_engine::Event::Purchase(pending.pop().expect("peeked")),
            _ => events.next().expect("peeked").event,
        };
        if let cvm_engine::Event::Purchase(p) = &event {
            purchases.add(p);
        }
        driver.apply(state, 0, Source::Input(0), &event, 0, &mut Output::default())?;
    }
}

impl UpliftReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.model.metrics;
        let [low, high] = m.qini_interval.unwrap_or([f64::NAN; 2]);
        let _ = writeln!(
            out,
            "model {}@{}: {} training / {} validation rows (split at {}), AUC {:.3}, Qini {:.4} (95 % interval {low:.4} \
             to {high:.4}: {}), AUUC {:.4}",
            self.model.target,
            self.model.version,
            self.model.data.train_rows,
            self.model.data.validation_rows,
            self.model.data.split_at_ms,
            m.auc,
            m.qini.unwrap_or(f64::NAN),
            if self.model.unproven().is_none() { "beats random targeting" } else { "not shown to beat random" },
            m.auuc.unwrap_or(f64::NAN)
        );
        let _ = writeln!(out, "calibration (validation, by decile of predicted): predicted → observed");
        let cal: Vec<String> = m.calibration.iter().map(|b| format!("{:.2}→{:.2}", b.predicted, b.observed)).collect();
        let _ = writeln!(out, "  {}", cal.join("  "));
        let _ = writeln!(
            out,
            "held-out customers: {} second-sweep decisions; each policy contacts its top {} %",
            self.held_out_rows, self.depth_percent
        );
        let _ = writeln!(
            out,
            "{:<11} {:>31} {:>15} {:>11}",
            "targeting", "incr. margin / 1,000 contacted", "Qini (observed)", "Qini (true)"
        );
        for p in &self.policies {
            let _ = writeln!(out, "{:<11} {:>31.2} {:>15.4} {:>11.4}", p.name, p.margin_per_1000, p.qini, p.true_qini);
        }
        let _ = writeln!(out, "the engine with the model (third sweep, all customers):");
        for kind in Responsiveness::ALL {
            let counts: Vec<String> = self
                .engine_outcomes
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, o), n)| format!("{} {n}", o.trim_start_matches("OUTCOME_").to_lowercase()))
                .collect();
            let predicted = self.predicted_uplift.get(&kind).map_or(0.0, |(sum, n)| sum / (*n).max(1) as f64);
            let _ = writeln!(
                out,
                "  {:<14} predicted uplift {:+5.1} pp (true {:+5.1} pp): {}",
                kind.name(),
                predicted * 100.0,
                kind.uplift() * 100.0,
                counts.join(", ")
            );
        }
        out
    }

    /// The result of policy `name`.
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }
}
