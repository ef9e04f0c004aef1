//! `cvm bench-uplift`: what is the engine's own targeting worth, on
//! customers whose response to contact is known?
//!
//! A synthetic retailer runs through the real decision core in one of
//! several worlds ([`cvm_synth::World`]): each makes the increment of a
//! contact depend on the customers' hidden traits its own way. A push
//! campaign with a 50 % holdout sweeps all app users twice (two weeks
//! apart) under rule priority; customers answer by their world. Customers
//! are then split by a hash: `cvm train`'s code learns from the *training*
//! customers' decisions (first sweep trains, second validates — the time
//! split), the model is loaded, and a third sweep lets the engine decide.
//!
//! The engine's decisions about the *held-out* customers are judged by the
//! true expected increment of each customer it chose to contact (treated,
//! or held out by the holdout, which is drawn after the choice):
//! `(p_contacted − p_not) × basket margin − contact cost`. Beside it, at the
//! same population: the **oracle** (contacts exactly those whose traits
//! make a contact pay), **random** and **true propensity** targeting at the
//! engine's volume, and **contacting everyone**.
//!
//! Then the same policies, the **champion** model alone (the engine without
//! its exploration slice) and a **challenger** (the other learner, trained
//! on the same rows and run in shadow beside the champion: scored and
//! logged on each decision, never used), are valued the way a retailer
//! would have to, without knowing anyone's response: off-policy, from the
//! model sweep's logged decisions, their logged probabilities and what the
//! customers bought in the attribution window ([`cvm_train::offpolicy`]).
//! Each estimate, with its interval, is printed beside the value its
//! choices really have — and so is `cvm report --challengers`' paired
//! estimate of challenger minus champion.
//!
//! Last, `cvm report`'s own figures: the model sweep decides in a campaign
//! of its own (its customers have no episode yet), so the report compares
//! the customers the model chose and the holdout drew for treatment with
//! those it drew for control. Its interval for the incremental margin per
//! treated customer is printed beside the truth (the mean true increment
//! of the treated), so repeated worlds show how often it covers.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    path::PathBuf,
    sync::Arc,
};

use cvm_engine::{
    models::{ModelArtifact, ModelSettings, Role, Scope},
    time::DAY_MS,
    Catalog, ConfigDocument, Driver, Engine, EngineConfig, MemoryState, Outbound, Output, Source,
};
use cvm_proto::v1::{Decision, Outcome};
use cvm_report::challengers;
use cvm_synth::{Responsiveness, Retailer, RetailerConfig, Traits, World, WorldResponder};
use cvm_train::{
    dataset::{self, PurchaseLog, Row, Target},
    offpolicy::{self, PolicyValue},
    TrainOptions,
};

const OFFER: &str = r#"
id: uplift-test
version: 1
campaign_id: uplift-test
trigger: { kind: sweep }
eligibility: push_reachable
category: wine
channels:
  push: { title: "A treat for you", body: "Your weekend basket is ready." }
economics: { margin_per_redemption_minor: 1600, contact_cost_minor: 10 }
ttl: 3d
"#;
const CAMPAIGN: &str = "kind: campaign\nid: uplift-test\nversion: 1\nholdout_percent: 50\nattribution_window: 2d\n";
/// The campaign the model sweep decides in.
const MODEL_CAMPAIGN: &str = "uplift-model";
/// Basket the campaign sells: 40.00 at 24.00 cost of goods.
const BASKET: (i64, i64) = (4_000, 2_400);
const CONTACT_COST: f64 = 10.0;
/// The engine's exploration slice in the benchmark, percent.
pub const EXPLORATION_PERCENT: f64 = 5.0;

/// Settings of the benchmark.
#[derive(Debug, Clone)]
pub struct UpliftOptions {
    /// How customers answer.
    pub world: World,
    /// Customers of the synthetic retailer.
    pub customers: u32,
    /// Days of history (sweeps run 30 and 15 days before the end, the
    /// model sweep 3 days before).
    pub days: u32,
    /// Seed of the retailer and of training.
    pub seed: u64,
    /// Train the linear two-model learner instead of the uplift forest.
    pub linear: bool,
    /// Write the trained artifact here.
    pub out: Option<PathBuf>,
}

/// One targeting policy's result on the held-out customers.
#[derive(Debug, Clone)]
pub struct PolicyResult {
    /// `oracle`, `engine`, `random`, `propensity` or `everyone`.
    pub name: &'static str,
    /// Customers it contacts.
    pub contacted: usize,
    /// True expected incremental margin, minor units, summed over them.
    pub margin_minor: f64,
}

/// How customers of one class were treated by the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassCounts {
    /// Customers of the class decided.
    pub customers: usize,
    /// Of them, chosen for contact.
    pub chosen: usize,
    /// Sum of the predicted uplift of the scored ones, and how many.
    pub predicted: (f64, usize),
    /// Sum of the true uplift.
    pub true_uplift: f64,
}

impl ClassCounts {
    /// Share chosen for contact.
    pub fn contact_rate(&self) -> f64 {
        self.chosen as f64 / self.customers.max(1) as f64
    }
}

/// What the benchmark found.
#[derive(Debug)]
pub struct UpliftReport {
    /// The world.
    pub world: World,
    /// The trained artifact.
    pub model: cvm_engine::models::ModelArtifact,
    /// Held-out customers the engine decided about in the model sweep.
    pub held_out: usize,
    /// The policies, oracle first.
    pub policies: Vec<PolicyResult>,
    /// The engine's choices by class of true expected increment: `helped`
    /// (a contact pays), `indifferent`, `harmed` (contact lowers the rate).
    pub classes: BTreeMap<&'static str, ClassCounts>,
    /// The same by hidden type (meaningful in the types world).
    pub types: BTreeMap<Responsiveness, ClassCounts>,
    /// Decisions of the model sweep by outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Off-policy estimates against the realised values.
    pub off_policy: Vec<OffPolicyLine>,
    /// `cvm report` on the model sweep's campaign, against the truth.
    pub report: ReportCheck,
    /// `cvm report --challengers` on the held-out customers' decisions,
    /// and the true difference it estimates (challenger − champion, minor units).
    pub duel: Option<(challengers::Duel, f64)>,
}

/// `cvm report`'s incremental margin per treated customer of the model
/// sweep's campaign (every customer, not only the held-out ones) and the
/// truth it estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportCheck {
    /// Treated customers in the report.
    pub treated: u64,
    /// Control customers.
    pub control: u64,
    /// The report's estimate and 95 % interval, minor units per treated customer.
    pub estimate: (f64, f64, f64),
    /// The mean true expected increment of the treated, minor units.
    pub truth: f64,
}

impl ReportCheck {
    /// Whether the interval covers the truth.
    pub fn covers(&self) -> bool {
        self.estimate.1 <= self.truth && self.truth <= self.estimate.2
    }
}

/// One policy valued off-policy from the model sweep's logged decisions.
#[derive(Debug, Clone)]
pub struct OffPolicyLine {
    /// The policy (as in [`UpliftReport::policies`], or `challenger`).
    pub name: &'static str,
    /// True expected incremental margin of its choices, minor units.
    pub realised_minor: f64,
    /// What the logged decisions say it earns.
    pub estimate: PolicyValue,
}

fn is_training_customer(customer_id: &str, seed: u64) -> bool {
    xxhash_rust::xxh3::xxh3_64_with_seed(customer_id.as_bytes(), seed) % 10 < 7
}

/// The class of a customer by the expected increment of a contact.
fn class_of(expected_value_minor: f64, expected_uplift: f64) -> &'static str {
    if expected_value_minor > 0.0 {
        "helped"
    } else if expected_uplift < 0.0 {
        "harmed"
    } else {
        "indifferent"
    }
}

/// Runs the benchmark.
pub fn run(opts: &UpliftOptions) -> anyhow::Result<UpliftReport> {
    anyhow::ensure!(opts.days >= 35, "--days must be at least 35 (sweeps run 30 and 15 days before the end)");
    let config = RetailerConfig { customers: opts.customers, days: opts.days, seed: opts.seed, ..Default::default() };
    let start_ms = config.start_ms;
    let retailer = Retailer::new(config);
    let traits: HashMap<String, Traits> = retailer.traits().into_iter().collect();
    let world = opts.world;
    // Each sweep is a new version of the offer, so its decisions get new ids.
    // The model sweep's version decides in a campaign of its own, for the report.
    let offer = |version: usize| {
        let mut text = OFFER.replace("version: 1", &format!("version: {version}"));
        if version == 3 {
            text = text.replace("campaign_id: uplift-test", &format!("campaign_id: {MODEL_CAMPAIGN}"));
        }
        ConfigDocument::parse("uplift-test", text.as_bytes())
    };
    let model_campaign = CAMPAIGN.replace("id: uplift-test", &format!("id: {MODEL_CAMPAIGN}"));
    let mut catalog = Catalog::default()
        .with_document(ConfigDocument::parse("campaign/uplift-test", CAMPAIGN.as_bytes())?)
        .with_document(ConfigDocument::parse(&format!("campaign/{MODEL_CAMPAIGN}"), model_campaign.as_bytes())?);
    catalog = catalog.with_document(offer(1)?);
    let mut engine_config = EngineConfig {
        global_control_percent: 0.0,
        models: ModelSettings {
            cold_start: cvm_engine::models::ColdStart::Rules,
            exploration_percent: EXPLORATION_PERCENT,
            // The benchmark judges the model's decisions; drift and its
            // fallback are judged elsewhere (two sweeps of contacts move
            // the contact features by the third).
            drift_window: usize::MAX,
            ..ModelSettings::default()
        },
        ..EngineConfig::default()
    };
    // Three pushes of one campaign within a month would otherwise rest the
    // offer for those who ignored two; here every sweep should decide.
    engine_config.contact_policy.fatigue.ignored = 0;
    let mut driver = Driver::replay(Engine::new(engine_config.clone(), catalog.clone()));
    let responder = WorldResponder::new(opts.seed, BASKET.0, BASKET.1);
    let noon = |day: u32| start_ms + i64::from(day) * DAY_MS + DAY_MS / 2;
    let sweeps = [noon(opts.days - 30), noon(opts.days - 15)];
    let model_sweep = noon(opts.days - 3);

    let mut state = MemoryState::default();
    let mut decisions: Vec<Decision> = Vec::new();
    let mut judged: Vec<Decision> = Vec::new();
    let mut purchases = PurchaseLog::default();
    // Responses wait here until event time reaches them.
    let mut pending: Vec<cvm_proto::v1::Purchase> = Vec::new();
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
            let mine: Vec<Decision> =
                decisions.iter().filter(|d| is_training_customer(&d.customer_id, opts.seed)).cloned().collect();
            let train_rows = dataset::rows(&mine, &mut purchases, Target::Offer("uplift-test"), 2 * DAY_MS);
            let mut options = TrainOptions::new(Scope::Offer, "uplift-test", at);
            options.seed = opts.seed;
            options.progress = true;
            if opts.linear {
                options.forest = None;
            }
            let mut artifact = cvm_train::train(&train_rows, &options)?;
            // The other learner, trained on the same rows, runs in shadow.
            let mut other = options.clone();
            other.progress = false;
            other.forest = opts.linear.then(cvm_train::forest::ForestOptions::default);
            let challenger = ModelArtifact {
                role: Role::Challenger,
                version: artifact.version + 1,
                ..cvm_train::train(&train_rows, &other)?
            };
            if let Some(path) = &opts.out {
                std::fs::write(path, crate::commands::artifact_json(&artifact)?)?;
            }
            // Judge the model's decisions even where it could not show it
            // beats random targeting: that is part of what is measured.
            artifact.force = true;
            let models = catalog
                .with_document(ConfigDocument::Model(Box::new(artifact)))
                .with_document(ConfigDocument::Model(Box::new(challenger)));
            driver.set_catalog(Arc::new(models));
        }
        let offer = driver.engine().catalog().get("uplift-test").expect("published").clone();
        let mut out = Output::default();
        driver.sweep_everyone(&mut state, &[0], &offer, at, &mut out)?;
        for e in out.emits {
            let Outbound::Decision(d) = e else { continue };
            let contacted = d.outcome() == Outcome::Treated;
            if contacted || d.outcome() == Outcome::HoldoutCampaign {
                let response = world.response(&traits[d.customer_id.as_str()]);
                pending.extend(responder.respond(&d.customer_id, response, contacted, &d.offer_id, at));
            }
            if i == 2 {
                judged.push(d.clone());
            }
            decisions.push(d);
        }
    }
    let Some(model) = driver.engine().catalog().models().first().map(|m| Arc::clone(m)) else {
        anyhow::bail!("no model was trained");
    };
    // What the model sweep's customers bought in the attribution window.
    let window = 2 * DAY_MS;
    apply_until(&mut driver, &mut state, &mut events, &mut pending, &mut purchases, model_sweep + window + 1)?;
    let margin = responder.margin_minor() as f64;
    let report = report_check(&state, &judged, world, &traits, margin)?;
    judged.retain(|d| !is_training_customer(&d.customer_id, opts.seed));
    let rows = dataset::rows(&judged, &mut purchases, Target::Offer("uplift-test"), window);
    // What `cvm report --challengers` says of the shadow model against the champion.
    let terms = |_: &str, _: &str| challengers::Terms { window_ms: window, contact_cost_minor: CONTACT_COST };
    let duel = challengers::duels(&mut judged.clone(), &mut purchases, terms).pop();
    let mut result = judge(world, model.artifact().clone(), &judged, &rows, &traits, margin, report);
    result.duel = duel.map(|d| (d, result.realised("challenger") - result.realised("champion")));
    Ok(result)
}

/// `cvm report` on the model sweep's campaign against the truth: the mean
/// true expected increment of the customers it treated.
fn report_check(
    state: &MemoryState,
    decisions: &[Decision],
    world: World,
    traits: &HashMap<String, Traits>,
    margin: f64,
) -> anyhow::Result<ReportCheck> {
    let stats = state.stats();
    let report = cvm_report::Report::from_stats(stats.iter().map(|(k, s)| (k, s)));
    let Some(r) = report.campaigns.iter().find(|c| c.campaign_id == MODEL_CAMPAIGN) else {
        anyhow::bail!("the model sweep opened no episode");
    };
    let treated: Vec<f64> = decisions
        .iter()
        .filter(|d| d.outcome() == Outcome::Treated)
        .map(|d| world.response(&traits[d.customer_id.as_str()]).uplift() * margin)
        .collect();
    let n = r.treated.customers.max(1) as f64;
    let m = &r.incremental_margin_minor;
    Ok(ReportCheck {
        treated: r.treated.customers,
        control: r.control.customers,
        estimate: (m.value / n, m.low / n, m.high / n),
        truth: treated.iter().sum::<f64>() / treated.len().max(1) as f64,
    })
}

/// A held-out customer the engine decided about.
struct Person {
    /// True expected incremental margin of a contact, minor units.
    value: f64,
    /// What the customer's traits imply it is (the oracle's view).
    expected_value: f64,
    /// What the traits imply their conversion is when contacted.
    propensity: f64,
    /// The engine chose to contact them (treated or held out after the choice).
    chosen: bool,
    /// The champion model chose them (the engine's choice outside its
    /// exploration slice).
    champion: bool,
    /// The challenger in shadow would have (logged on decisions that log
    /// model features).
    challenger: bool,
}

/// A targeting rule over the judged customers: index and person → contact.
type PersonRule<'a> = dyn Fn(usize, &Person) -> bool + 'a;

/// Judges the model sweep's decisions about the held-out customers
/// (`judged`), on its own and off-policy from their `rows`; `report` is
/// the report's check, already made.
#[allow(clippy::too_many_arguments)]
fn judge(
    world: World,
    model: cvm_engine::models::ModelArtifact,
    judged: &[Decision],
    rows: &[Row],
    traits: &HashMap<String, Traits>,
    margin: f64,
    report: ReportCheck,
) -> UpliftReport {
    let mut outcomes = BTreeMap::new();
    for d in judged {
        *outcomes.entry(d.outcome().as_str_name().to_owned()).or_insert(0) += 1;
    }
    let chose = [Outcome::Treated, Outcome::HoldoutCampaign, Outcome::HoldoutGlobal];
    let mut people: Vec<Person> = Vec::new();
    let mut classes: BTreeMap<&'static str, ClassCounts> = BTreeMap::new();
    let mut types: BTreeMap<Responsiveness, ClassCounts> = BTreeMap::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for d in judged.iter().filter(|d| d.outcome() != Outcome::Ineligible) {
        let t = &traits[d.customer_id.as_str()];
        let (own, expected) = (world.response(t), world.expected(t));
        let value = own.uplift() * margin - CONTACT_COST;
        let expected_value = expected.uplift() * margin - CONTACT_COST;
        let chosen = chose.contains(&d.outcome());
        let challenger = !d.challenger_version.is_empty() && d.challenger_selects;
        let champion = chosen && d.selection_probability >= 1.0;
        index.insert(d.customer_id.as_str(), people.len());
        people.push(Person { value, expected_value, propensity: expected.contacted, chosen, champion, challenger });
        let predicted = d.scores.first().filter(|s| s.source == "uplift").map(|s| s.uplift);
        for counts in [
            classes.entry(class_of(expected_value, expected.uplift())).or_default(),
            types.entry(t.responsiveness).or_default(),
        ] {
            counts.customers += 1;
            counts.chosen += usize::from(chosen);
            counts.true_uplift += own.uplift();
            if let Some(p) = predicted {
                counts.predicted.0 += p;
                counts.predicted.1 += 1;
            }
        }
    }
    let engine_volume = people.iter().filter(|p| p.chosen).count();
    let total = |keep: &dyn Fn(&Person) -> bool| -> (usize, f64) {
        let chosen: Vec<f64> = people.iter().filter(|p| keep(p)).map(|p| p.value).collect();
        (chosen.len(), chosen.iter().sum())
    };
    let mut by_propensity: Vec<usize> = (0..people.len()).collect();
    by_propensity.sort_by(|a, b| people[*b].propensity.total_cmp(&people[*a].propensity));
    let mut top_propensity = vec![false; people.len()];
    for &i in by_propensity.iter().take(engine_volume) {
        top_propensity[i] = true;
    }
    let propensity: f64 = (0..people.len()).filter(|i| top_propensity[*i]).map(|i| people[i].value).sum();
    let everyone: f64 = people.iter().map(|p| p.value).sum();
    let mean = if people.is_empty() { 0.0 } else { everyone / people.len() as f64 };
    let (oracle_n, oracle) = total(&|p| p.expected_value > 0.0);
    let (engine_n, engine) = total(&|p| p.chosen);
    let policies = vec![
        PolicyResult { name: "oracle", contacted: oracle_n, margin_minor: oracle },
        PolicyResult { name: "engine", contacted: engine_n, margin_minor: engine },
        PolicyResult { name: "random", contacted: engine_volume, margin_minor: mean * engine_volume as f64 },
        PolicyResult { name: "propensity", contacted: engine_volume, margin_minor: propensity },
        PolicyResult { name: "everyone", contacted: people.len(), margin_minor: everyone },
    ];
    let person = |r: &Row| index.get(r.customer.as_str()).map(|&i| (i, &people[i]));
    let rules: [(&'static str, &PersonRule<'_>); 6] = [
        ("engine", &|_, p| p.chosen),
        ("champion", &|_, p| p.champion),
        ("challenger", &|_, p| p.challenger),
        ("oracle", &|_, p| p.expected_value > 0.0),
        ("propensity", &|i, _| top_propensity[i]),
        ("everyone", &|_, _| true),
    ];
    let off_policy = rules
        .iter()
        .map(|(name, rule)| {
            let realised_minor = people.iter().enumerate().filter(|(i, p)| rule(*i, p)).map(|(_, p)| p.value).sum();
            let estimate = if *name == "engine" {
                // The engine as it ran: its exploration slice selected the
                // explored rows with their logged probability.
                offpolicy::value(rows, CONTACT_COST, |r| r.assignment.selection)
            } else {
                offpolicy::value(rows, CONTACT_COST, offpolicy::rule(|r| person(r).is_some_and(|(i, p)| rule(i, p))))
            };
            OffPolicyLine { name, realised_minor, estimate }
        })
        .collect();
    UpliftReport {
        world,
        model,
        held_out: people.len(),
        policies,
        classes,
        types,
        outcomes,
        off_policy,
        report,
        duel: None,
    }
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
        let _ = writeln!(out, "world `{}`", self.world.name());
        let _ = writeln!(
            out,
            "  model {}@{}: {} training / {} validation rows, AUC {:.3}, Qini {:.4} (95 % interval {low:.4} to \
             {high:.4}: {})",
            self.model.target,
            self.model.version,
            self.model.data.train_rows,
            self.model.data.validation_rows,
            m.auc,
            m.qini.unwrap_or(f64::NAN),
            if m.qini_interval.is_some_and(|[low, _]| low > 0.0) {
                "beats random targeting"
            } else {
                "not shown to beat random targeting; used anyway, to measure it"
            },
        );
        let cal: Vec<String> = m.calibration.iter().map(|b| format!("{:.2}→{:.2}", b.predicted, b.observed)).collect();
        let _ = writeln!(out, "  conversion if contacted, by decile of predicted (validation): {}", cal.join("  "));
        let uplift_bins = |bins: &[cvm_engine::models::artifact::CalibrationBin]| {
            let text: Vec<String> =
                bins.iter().map(|b| format!("{:+.1}/{:+.1}", b.predicted * 100.0, b.observed * 100.0)).collect();
            text.join("  ")
        };
        let _ = writeln!(
            out,
            "  uplift by quintile of predicted, predicted/observed pp (validation): raw {}; calibrated {}",
            uplift_bins(&m.uplift_calibration_raw),
            uplift_bins(&m.uplift_calibration)
        );
        if let Some(forest) = &self.model.forest {
            let used: Vec<String> =
                forest.features_used().iter().take(6).map(|(name, n)| format!("{name} {n}")).collect();
            let c = &forest.calibration;
            let floors: Vec<String> =
                c.floors.iter().map(|f| format!("{:+.1}±{:.1}", f.uplift * 100.0, f.error * 100.0)).collect();
            let _ = writeln!(
                out,
                "  forest: {} trees, calibration {:+.3} + {:.2} × uplift, floors (pp, bottom up) {}; cuts on {}",
                forest.trees.len(),
                c.intercept,
                c.slope,
                floors.join(" "),
                used.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "  {} held-out customers decided in the model sweep ({})",
            self.held_out,
            self.outcomes
                .iter()
                .map(|(o, n)| format!("{} {n}", o.trim_start_matches("OUTCOME_").to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let oracle = self.margin_of("oracle");
        let _ = writeln!(
            out,
            "  {:<11} {:>10} {:>14} {:>24} {:>10}",
            "policy", "contacted", "share", "incr. margin / 1,000", "of oracle"
        );
        for p in &self.policies {
            let per_1000 = p.margin_minor / self.held_out.max(1) as f64 * 1000.0 / 100.0;
            let of_oracle = if oracle > 0.0 { format!("{:.0} %", p.margin_minor / oracle * 100.0) } else { "-".into() };
            let _ = writeln!(
                out,
                "  {:<11} {:>10} {:>13.1}% {:>24.2} {:>10}",
                p.name,
                p.contacted,
                p.contacted as f64 / self.held_out.max(1) as f64 * 100.0,
                per_1000,
                of_oracle
            );
        }
        let line = |out: &mut String, name: &str, c: &ClassCounts| {
            let predicted = c.predicted.0 / c.predicted.1.max(1) as f64;
            let _ = writeln!(
                out,
                "    {:<14} {:>6} customers, contacted {:>5.1} %, predicted uplift {:+5.1} pp (true {:+5.1} pp)",
                name,
                c.customers,
                c.contact_rate() * 100.0,
                predicted * 100.0,
                c.true_uplift / c.customers.max(1) as f64 * 100.0
            );
        };
        let _ = writeln!(out, "  the engine's choices by what a contact does to the customer:");
        for (name, c) in &self.classes {
            line(&mut out, name, c);
        }
        let _ = writeln!(
            out,
            "  off-policy, from the logged decisions and purchases (incr. margin / 1,000, 95 % interval) against \
             the true value of the same choices:"
        );
        let per_1000 = |minor: f64| minor / self.held_out.max(1) as f64 * 1000.0 / 100.0;
        for line in &self.off_policy {
            let e = &line.estimate;
            let _ = writeln!(
                out,
                "    {:<11} estimate {:>9.2} ({:>9.2} to {:>9.2}), true {:>9.2}{}",
                line.name,
                per_1000(e.increment_minor),
                per_1000(e.low_minor),
                per_1000(e.high_minor),
                per_1000(line.realised_minor),
                if e.covers(line.realised_minor) { "" } else { "  (outside the interval)" }
            );
        }
        let r = &self.report;
        let _ = writeln!(
            out,
            "  cvm report on the model sweep's campaign ({} treated, {} held out, all customers): incremental \
             margin per treated {:.2} ({:.2} to {:.2}), true {:.2}{}",
            r.treated,
            r.control,
            r.estimate.0 / 100.0,
            r.estimate.1 / 100.0,
            r.estimate.2 / 100.0,
            r.truth / 100.0,
            if r.covers() { "" } else { "  (outside the interval)" }
        );
        if let Some((d, truth)) = &self.duel {
            let e = &d.difference_minor;
            let _ = writeln!(
                out,
                "  cvm report --challengers: challenger {} − champion {} (incr. margin / 1,000) {:.2} ({:.2} to \
                 {:.2}), true {:.2}{}; {}",
                d.challenger,
                d.champion,
                per_1000(e.value),
                per_1000(e.low),
                per_1000(e.high),
                per_1000(*truth),
                if e.contains(*truth) { "" } else { "  (outside the interval)" },
                d.verdict
            );
        }
        if self.world == World::Types {
            let _ = writeln!(out, "  by hidden type:");
            for (kind, c) in &self.types {
                line(&mut out, kind.name(), c);
            }
        }
        out
    }

    /// One line for a run among repeated ones (`cvm bench-uplift --repeat`).
    pub fn summary_line(&self, seed: u64) -> String {
        let oracle = self.margin_of("oracle");
        let of_oracle = |name| self.margin_of(name) / oracle * 100.0;
        let targeting = if oracle > 0.0 {
            format!("engine {:>5.0} % of oracle (propensity {:>5.0} %)", of_oracle("engine"), of_oracle("propensity"))
        } else {
            let contacted = self.policy("engine").map_or(0, |p| p.contacted);
            format!(
                "engine contacts {:.1} % (the oracle nobody)",
                contacted as f64 / self.held_out.max(1) as f64 * 100.0
            )
        };
        let r = &self.report;
        let engine = self.off_policy.iter().find(|l| l.name == "engine");
        format!(
            "{} seed {seed:>3}: {targeting}; report per treated {:>7.2} ({:>7.2} to {:>7.2}) true {:>7.2} {}; \
             off-policy engine {}; challenger − champion {}",
            self.world.name(),
            r.estimate.0 / 100.0,
            r.estimate.1 / 100.0,
            r.estimate.2 / 100.0,
            r.truth / 100.0,
            if r.covers() { "covered" } else { "MISSED" },
            engine.map_or("-", |l| if l.estimate.covers(l.realised_minor) { "covered" } else { "MISSED" }),
            self.duel.as_ref().map_or("-", |(d, truth)| if d.difference_minor.contains(*truth) {
                "covered"
            } else {
                "MISSED"
            }),
        )
    }

    /// The true value of what off-policy line `name` chose (0 for none).
    fn realised(&self, name: &str) -> f64 {
        self.off_policy.iter().find(|l| l.name == name).map_or(0.0, |l| l.realised_minor)
    }

    /// The true incremental margin of policy `name`'s choices (0 for none).
    fn margin_of(&self, name: &str) -> f64 {
        self.policy(name).map_or(0.0, |p| p.margin_minor)
    }

    /// The result of policy `name`.
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The engine's incremental margin as a share of the oracle's.
    pub fn engine_capture(&self) -> f64 {
        self.margin_of("engine") / self.margin_of("oracle")
    }
}

/// How often, over repeated runs, the report's interval and each
/// off-policy interval covered the truth.
pub fn coverage(runs: &[UpliftReport]) -> String {
    let mut out = String::new();
    let n = runs.len();
    let report = runs.iter().filter(|r| r.report.covers()).count();
    let _ = writeln!(out, "  over {n} runs: cvm report's 95 % interval covered the truth in {report}");
    let names: Vec<&str> = runs.first().map_or(Vec::new(), |r| r.off_policy.iter().map(|l| l.name).collect());
    for name in names {
        let covered = runs
            .iter()
            .filter(|r| r.off_policy.iter().any(|l| l.name == name && l.estimate.covers(l.realised_minor)))
            .count();
        let _ = writeln!(out, "    off-policy {name:<11} covered in {covered}");
    }
    let duels = runs.iter().filter_map(|r| r.duel.as_ref()).collect::<Vec<_>>();
    let covered = duels.iter().filter(|(d, truth)| d.difference_minor.contains(*truth)).count();
    let _ = writeln!(out, "    challenger − champion covered in {covered} of {}", duels.len());
    out
}
