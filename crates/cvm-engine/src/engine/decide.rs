//! One decision, in named steps over a [`Context`]:
//!
//! 1. [`rank`](Engine::rank): eligibility, valuation (model, bandit or
//!    rules) and the ranking by priority, then value, then id;
//! 2. hold back what an uplift model expects not to pay, and the global
//!    control group, before any channel is looked at;
//! 3. per channel, best offer first, [`arbitrate`](Engine::arbitrate):
//!    reachability, contact policy and the campaign's daily budget (a
//!    blocked offer yields to the next);
//! 4. [`treat`](Engine::treat): campaign holdout, or send — record the
//!    contact, open the attribution episode, set the cascade timer, render.
//!
//! What differs between an event, a timer and a sweep is only the
//! [`Cause`]: which offers are candidates, which channels are open and
//! what the decision's id derives from.

use std::sync::Arc;

use cvm_proto::v1::{Channel, Decision, Offer, Outcome, Score};

use super::{Engine, Outbound};
use crate::{
    attribution::{self, Group},
    budget::{self, Ledger, Opportunity, Refusal, Share},
    features::{EventFacts, Features},
    holdout, ids,
    models::{self, bandit, ArmCounts, ArmKey, ColdStart, Scorer, Source, Valuation},
    offers::OfferDefinition,
    policy::Verdict,
    profile::{contact_hash, Contact, Profile, Response, NO_DECILE},
    score::score,
    telemetry,
    time::millis,
    timers::{Timer, TimerKey, TimerKind},
    StateTxn, StoreError,
};

/// Candidates listed in a decision.
const SCORES_IN_DECISION: usize = 5;

/// The holdout scope whose bucket admits an exploration decision under a budget.
const BUDGET_DRAW_SCOPE: &str = "budget";

/// Why a decision is made: what recorded decisions carry as `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DecisionTrigger {
    /// An event arrived.
    Event,
    /// A durable timer fired: a delayed trigger's wait ended, a customer
    /// lapsed, a push went unopened (the cascade) or quiet hours ended.
    Timer(TimerKind),
    /// A sweep reached the customer.
    Sweep,
}

impl DecisionTrigger {
    /// The name on the decision.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Timer(kind) => kind.name(),
            Self::Sweep => "sweep",
        }
    }
}

/// What a decision is about: where its id comes from and what it records.
pub(super) struct Cause<'a> {
    /// Seed of the decision ids (an event id, or a timer's or sweep's identity).
    pub(super) id: String,
    /// The event recorded as the decision's cause.
    pub(super) event_id: &'a str,
    /// Why the decision is made.
    pub(super) trigger: DecisionTrigger,
    /// For cascades: the decision followed up.
    pub(super) parent_decision_id: &'a str,
    /// Channels allowed (cascades are restricted to their follow-up channel).
    pub(super) channels: &'a [Channel],
}

/// One decision in progress: who, why, when.
pub(super) struct Context<'a> {
    partition: u32,
    customer_id: &'a str,
    cause: &'a Cause<'a>,
    facts: EventFacts<'a>,
    now_ms: i64,
    /// Inside the exploration budget, bandits draw from their posteriors and
    /// uplift models do not hold offers back.
    exploring: bool,
    /// What every decision of this cause records.
    base: Decision,
}

impl<'a> Context<'a> {
    pub(super) fn new(
        engine: &Engine,
        partition: u32,
        customer_id: &'a str,
        cause: &'a Cause<'a>,
        facts: EventFacts<'a>,
        now_ms: i64,
    ) -> Self {
        let exploring = holdout::is_held_out(
            &engine.config.holdout_salt,
            "explore",
            &cause.id,
            engine.config.models.exploration_percent,
        );
        let base = Decision {
            customer_id: customer_id.to_owned(),
            event_id: cause.event_id.to_owned(),
            decided_at_ms: now_ms,
            parent_decision_id: cause.parent_decision_id.to_owned(),
            trigger: cause.trigger.name().to_owned(),
            ..Default::default()
        };
        Self { partition, customer_id, cause, facts, now_ms, exploring, base }
    }

    /// A decision of this cause on no channel, about `offer`.
    fn unspecified(&self, outcome: Outcome, reason: String, offer: &OfferDefinition) -> Decision {
        Decision {
            decision_id: ids::decision_id(&self.cause.id, Channel::Unspecified),
            outcome: outcome as i32,
            reason,
            offer_definition_id: offer.id().to_owned(),
            offer_version: offer.version(),
            campaign_id: offer.doc.campaign_id.clone(),
            ..self.base.clone()
        }
    }
}

/// The eligible candidates, best first, each with its valuation.
struct Ranking<'c> {
    eligible: Vec<(&'c OfferDefinition, Valuation)>,
    /// The first [`SCORES_IN_DECISION`], as decisions list them.
    scores: Vec<Score>,
    customer: models::Customer,
    segment: u8,
    /// The customer's typical basket, minor units: what a percent discount
    /// is expected to cost.
    basket_minor: f64,
}

/// The budget ledgers of the ranked campaigns that have a budget: read at
/// the start of a decision, written back at its end.
struct Budgets {
    ledgers: Vec<BudgetEntry>,
    /// The decision's uniform draw in [0, 1) that admits it when it explores
    /// (a salted holdout bucket of its cause; 0 without ledgers).
    draw: f64,
}

struct BudgetEntry {
    campaign: u64,
    ledger: Ledger,
    share: Share,
    /// Of the customers the budget admits, the share sent an offer (the
    /// rest are in the campaign holdout).
    treated_share: f64,
    /// Counted as an opportunity in this decision (once per campaign).
    observed: bool,
}

impl Budgets {
    fn entry(&mut self, d: &OfferDefinition) -> Option<&mut BudgetEntry> {
        self.ledgers.iter_mut().find(|e| e.campaign == d.subject().campaign)
    }

    /// Whether `d`'s campaign budget admits it, valued `v`.
    fn admit(&mut self, ctx: &Context<'_>, d: &OfferDefinition, v: &Valuation, basket: f64) -> Result<(), Refusal> {
        let draw = self.draw;
        let Some(e) = self.entry(d) else {
            return Ok(());
        };
        let discount_minor = budget::expected_discount_minor(&v.discount, v.propensity, basket);
        let o = Opportunity { value: v.value, discount_minor, exploring: ctx.exploring, draw };
        if !e.observed {
            e.ledger.observe(o.value, ctx.now_ms);
            e.observed = true;
        }
        e.ledger.check(&o, &e.share, ctx.now_ms, e.treated_share)
    }

    /// Records `d` sent, valued `v`.
    fn spend(&mut self, d: &OfferDefinition, v: &Valuation, basket: f64) {
        if let Some(e) = self.entry(d) {
            e.ledger.spend(budget::expected_discount_minor(&v.discount, v.propensity, basket));
        }
    }

    fn save(self, txn: &mut impl StateTxn, partition: u32) -> Result<(), StoreError> {
        for e in self.ledgers.into_iter().filter(|e| e.observed) {
            txn.put_budget(partition, e.campaign, e.ledger)?;
        }
        Ok(())
    }
}

/// What the contact policy allows on one channel.
enum Arbitration<'r, 'c> {
    /// Nothing goes out (unreachable, capped, suppressed); the decision about
    /// `candidate` says why.
    Withhold { candidate: &'r (&'c OfferDefinition, Valuation), outcome: Outcome, reason: String },
    /// The best allowed offer waits for the end of quiet hours.
    Defer { candidate: &'r (&'c OfferDefinition, Valuation), until_ms: i64, reason: String },
    /// The best allowed offer goes to treatment.
    Send(&'r (&'c OfferDefinition, Valuation)),
}

impl Engine {
    /// Decides among `candidates` for the customer of `ctx`; see the module docs.
    pub(super) fn decide(
        &self,
        txn: &mut impl StateTxn,
        profile: &mut Profile,
        ctx: &Context<'_>,
        candidates: &[&Arc<OfferDefinition>],
    ) -> Result<Vec<Outbound>, StoreError> {
        let Some(first) = candidates.first() else {
            return Ok(Vec::new());
        };
        let mut ranking = match self.rank(txn, profile, ctx, candidates)? {
            Ok(ranking) => ranking,
            Err(reason) => {
                return Ok(vec![Outbound::Decision(ctx.unspecified(Outcome::Ineligible, reason, first))]);
            }
        };
        if let Some(held_back) = self.hold_back_not_incremental(ctx, &mut ranking) {
            return Ok(vec![held_back]);
        }
        if self.in_global_control(ctx.customer_id) {
            let (best, v) = &ranking.eligible[0];
            self.observe_drift(best, &v.vector(&ranking.customer));
            let window_ms = self.campaign(&best.doc.campaign_id).window_ms;
            let campaign_id = &best.doc.campaign_id;
            attribution::expose(txn, ctx.partition, profile, campaign_id, Group::GlobalControl, ctx.now_ms, window_ms)?;
            let reason = format!("in the global control group ({} %)", self.config.global_control_percent);
            let decision = ctx.unspecified(Outcome::HoldoutGlobal, reason, best);
            return Ok(vec![Outbound::Decision(self.annotate(&ranking, best, v, decision))]);
        }
        let earlier = profile.contacts.len();
        let mut emits = Vec::new();
        let mut observed = false;
        let mut budgets = self.budgets(txn, ctx, &ranking)?;
        for (first, channel) in self.channel_order(profile, ctx, &ranking) {
            match self.arbitrate(profile, ctx, &ranking, &mut budgets, first, channel, earlier) {
                Arbitration::Withhold { candidate: (d, v), outcome, reason } => {
                    let decision = self.on_channel(ctx, channel, outcome, reason);
                    emits.push(Outbound::Decision(self.annotate(&ranking, d, v, decision)));
                }
                Arbitration::Defer { candidate: (d, v), until_ms, reason } => {
                    let decision_id = ids::decision_id(&ctx.cause.id, channel);
                    let key = TimerKey::new(ctx.customer_id, TimerKind::Deferred, d.id());
                    let timer = Timer::new(key, until_ms, d.id(), ctx.cause.event_id, ctx.facts);
                    txn.set_timer(ctx.partition, Timer { parent_decision_id: decision_id.clone(), ..timer })?;
                    let decision = self.on_channel(ctx, channel, Outcome::Deferred, reason);
                    emits.push(Outbound::Decision(self.annotate(&ranking, d, v, decision)));
                }
                Arbitration::Send((best, valuation)) => {
                    if !observed {
                        self.observe_drift(best, &valuation.vector(&ranking.customer));
                        observed = true;
                    }
                    let treated = self.treat(txn, profile, ctx, &ranking, best, valuation, channel)?;
                    if treated.iter().any(|o| matches!(o, Outbound::Offer(_))) {
                        budgets.spend(best, valuation, ranking.basket_minor);
                    }
                    emits.extend(treated);
                }
            }
        }
        budgets.save(txn, ctx.partition)?;
        Ok(emits)
    }

    /// The budget ledgers of the ranked campaigns that have a budget, as of now.
    fn budgets(
        &self,
        txn: &mut impl StateTxn,
        ctx: &Context<'_>,
        ranking: &Ranking<'_>,
    ) -> Result<Budgets, StoreError> {
        let mut ledgers: Vec<BudgetEntry> = Vec::new();
        for (d, _) in &ranking.eligible {
            let campaign = d.subject().campaign;
            let settings = self.campaign(&d.doc.campaign_id);
            if !settings.budget.is_limited() || ledgers.iter().any(|e| e.campaign == campaign) {
                continue;
            }
            ledgers.push(BudgetEntry {
                campaign,
                ledger: txn.budget(ctx.partition, campaign)?.at(ctx.now_ms),
                share: settings.budget.share(ctx.partition, self.partitions),
                treated_share: 1.0 - settings.holdout_percent / 100.0,
                observed: false,
            });
        }
        let draw = if ledgers.is_empty() {
            0.0
        } else {
            let bucket = holdout::bucket(&self.config.holdout_salt, BUDGET_DRAW_SCOPE, &ctx.cause.id);
            bucket as f64 / holdout::BUCKETS as f64
        };
        Ok(Budgets { ledgers, draw })
    }

    /// The eligible candidates valued and ranked: priority (the marketers'
    /// tier) first, then expected value, then id; or, if none is eligible,
    /// why (the first candidate's failing clause).
    fn rank<'c>(
        &self,
        txn: &mut impl StateTxn,
        profile: &Profile,
        ctx: &Context<'_>,
        candidates: &[&'c Arc<OfferDefinition>],
    ) -> Result<Result<Ranking<'c>, String>, StoreError> {
        let settings = &self.config.models;
        let features = Features::compute(profile, ctx.facts, ctx.now_ms);
        let customer = models::Customer::of(&features);
        let segment = bandit::segment(&features);
        let mut eligible: Vec<(&OfferDefinition, Valuation)> = Vec::with_capacity(candidates.len());
        for d in candidates.iter().copied().filter(|d| d.eligible(&features)) {
            let discount = d.discount(profile.offer_contacts_since(d.subject().offer, i64::MIN));
            let rules = || score(d, &features, &discount, ctx.now_ms);
            let scorer = match self.catalog.model_for(d) {
                Some(m) if m.monitor().drifted() => Scorer::Drifted(m),
                Some(m) => Scorer::Model { model: m, lower_bound_z: settings.treat_lower_bound_z },
                None if settings.cold_start == ColdStart::Bandit => Scorer::Bandit {
                    counts: txn.arm(ctx.partition, &ArmKey { offer: d.subject().offer, segment })?,
                    explore: ctx.exploring,
                    seed: xxhash_rust::xxh3::xxh3_64_with_seed(ctx.cause.id.as_bytes(), d.subject().offer),
                },
                None => Scorer::Rules,
            };
            // A challenger is valued the way it would decide, at the same
            // customer and discount, and only logged.
            let challenger_selects = self.catalog.challenger_for(d).map(|model| {
                let scorer = Scorer::Model { model, lower_bound_z: settings.treat_lower_bound_z };
                !models::value(d, &features, &customer, discount.clone(), rules, scorer).not_incremental
            });
            let valuation = models::value(d, &features, &customer, discount, rules, scorer);
            eligible.push((d.as_ref(), Valuation { challenger_selects, ..valuation }));
        }
        if let ([], Some(first)) = (eligible.as_slice(), candidates.first()) {
            return Ok(Err(format!(
                "none of {} offer(s) eligible; {} v{}: `{}` is false",
                candidates.len(),
                first.id(),
                first.version(),
                first.failing_clause(&features).unwrap_or("eligibility")
            )));
        }
        // Candidates come in id order, so their position breaks ties by id.
        let mut order: Vec<u128> = eligible
            .iter()
            .enumerate()
            .map(|(i, (d, v))| models::ranking_key(d.doc.priority, v.value, i as u32))
            .collect();
        order.sort_unstable();
        let mut slots: Vec<Option<(&OfferDefinition, Valuation)>> = eligible.into_iter().map(Some).collect();
        let eligible: Vec<(&OfferDefinition, Valuation)> =
            order.iter().map(|k| slots[(*k as u32) as usize].take().expect("each position once")).collect();
        let scores = eligible
            .iter()
            .take(SCORES_IN_DECISION)
            .map(|(d, v)| v.score(d, self.catalog.model_for(d).map(AsRef::as_ref), &customer))
            .collect();
        let basket_minor = crate::score::typical_basket_minor(&features);
        Ok(Ok(Ranking { eligible, scores, customer, segment, basket_minor }))
    }

    /// When an uplift model expects no candidate to pay (outside the
    /// exploration budget), the decision that holds them back; otherwise
    /// drops the ones it expects not to pay.
    fn hold_back_not_incremental(&self, ctx: &Context<'_>, ranking: &mut Ranking<'_>) -> Option<Outbound> {
        if ctx.exploring {
            return None;
        }
        if ranking.eligible.iter().all(|(_, v)| v.not_incremental) {
            let (best, v) = &ranking.eligible[0];
            let features = v.vector(&ranking.customer);
            self.observe_drift(best, &features);
            let s = &ranking.scores[0];
            let drifted = self.catalog.model_for(best).filter(|_| v.source == Source::RulesDrift);
            let reason = if let Some(m) = drifted {
                metrics::counter!(telemetry::MODEL_FALLBACKS, "model" => m.artifact().target.clone()).increment(1);
                format!(
                    "held back: model {} drifted ({}); until it recovers or is retrained, its offers go only to the \
                     exploration slice, by rule priority",
                    m.label(),
                    m.monitor().reason()
                )
            } else {
                let value = if s.score_low < s.score {
                    format!(
                        "expected value {:.2}, {:.2} at the uplift's lower bound ({} standard errors below), <= 0",
                        s.score / 100.0,
                        s.score_low / 100.0,
                        self.config.models.treat_lower_bound_z
                    )
                } else {
                    format!("expected value {:.2} <= 0", s.score / 100.0)
                };
                format!(
                    "not incremental: {value} (uplift {:+.1} pp: {:.1} % if contacted, {:.1} % if not; model {})",
                    s.uplift * 100.0,
                    s.propensity * 100.0,
                    s.control_propensity * 100.0,
                    s.model_version
                )
            };
            let decision = Decision {
                model_version: s.model_version.clone(),
                scores: ranking.scores.clone(),
                // What a challenger would have done here is judged from these.
                model_features: features.to_vec(),
                selection_probability: self.selection_probability(v),
                treatment_probability: self.treatment_probability(&best.doc.campaign_id),
                ..self.shadow(best, v, true, ctx.unspecified(Outcome::NotIncremental, reason, best))
            };
            return Some(Outbound::Decision(decision));
        }
        ranking.eligible.retain(|(_, v)| !v.not_incremental);
        None
    }

    /// Whether `offer` may go out on `channel` in this decision: a cascade's
    /// follow-up channel is held back for the follow-up, unless the push
    /// cannot reach the customer at all.
    fn offers_on(ctx: &Context<'_>, push_reachable: bool, offer: &OfferDefinition, channel: Channel) -> bool {
        let held_for_cascade = ctx.cause.trigger != DecisionTrigger::Timer(TimerKind::Cascade)
            && offer.doc.cascade.as_ref().is_some_and(|c| c.to.channel() == channel)
            && push_reachable;
        offer.channels().any(|c| c == channel) && !held_for_cascade
    }

    /// The open channels with the rank of their best offer, best first:
    /// when both compete for the last slot of a cross-channel cap, the
    /// higher expected value wins (ties: push before stories).
    fn channel_order(&self, profile: &Profile, ctx: &Context<'_>, ranking: &Ranking<'_>) -> Vec<(usize, Channel)> {
        let mut channels: Vec<(usize, Channel)> = ctx
            .cause
            .channels
            .iter()
            .filter_map(|&ch| {
                let push_reachable = profile.reach.push();
                ranking
                    .eligible
                    .iter()
                    .position(|(d, _)| Self::offers_on(ctx, push_reachable, d, ch))
                    .map(|rank| (rank, ch))
            })
            .collect();
        channels.sort_by_key(|&(rank, ch)| (rank, ch as i32));
        channels
    }

    /// The best offer from rank `first` on that `channel` reaches and the
    /// contact policy and its campaign's budget allow; a blocked offer
    /// yields to the next. `earlier` is the number of contacts made before
    /// this decision.
    #[allow(clippy::too_many_arguments)]
    fn arbitrate<'r, 'c>(
        &self,
        profile: &mut Profile,
        ctx: &Context<'_>,
        ranking: &'r Ranking<'c>,
        budgets: &mut Budgets,
        first: usize,
        channel: Channel,
        earlier: usize,
    ) -> Arbitration<'r, 'c> {
        if !profile.reach.reaches(channel) {
            let reason = format!("{} not reachable (app, token or consent missing)", channel.as_str_name());
            return Arbitration::Withhold {
                candidate: &ranking.eligible[first],
                outcome: Outcome::Unreachable,
                reason,
            };
        }
        let mut blocked: Option<(&(&OfferDefinition, Valuation), Outcome, String)> = None;
        let push_reachable = profile.reach.push();
        let on_channel = |(d, _): &&(&OfferDefinition, Valuation)| Self::offers_on(ctx, push_reachable, d, channel);
        for candidate in ranking.eligible[first..].iter().filter(on_channel) {
            let d = candidate.0;
            match self.resolve(d).check(profile, d.subject(), channel, ctx.now_ms, earlier) {
                Verdict::Block { outcome, reason, suppressed_until_ms } => {
                    if let Some(until) = suppressed_until_ms {
                        profile.suppress(d.subject().offer, until, ctx.now_ms);
                    }
                    blocked.get_or_insert((candidate, outcome, reason));
                }
                Verdict::Defer { until_ms, reason } => return Arbitration::Defer { candidate, until_ms, reason },
                Verdict::Allow => match budgets.admit(ctx, d, &candidate.1, ranking.basket_minor) {
                    Ok(()) => return Arbitration::Send(candidate),
                    Err(refusal) => {
                        let reason = format!("campaign {}: {refusal}", d.doc.campaign_id);
                        blocked.get_or_insert((candidate, Outcome::OverBudget, reason));
                    }
                },
            }
        }
        let (candidate, outcome, reason) = blocked.expect("the channel has at least one candidate");
        Arbitration::Withhold { candidate, outcome, reason }
    }

    /// Treats the customer with `best` on `channel`: the campaign holdout
    /// keeps it back, or the offer is rendered and sent, the contact
    /// recorded, the attribution episode opened and a cascade timer set.
    #[allow(clippy::too_many_arguments)]
    fn treat(
        &self,
        txn: &mut impl StateTxn,
        profile: &mut Profile,
        ctx: &Context<'_>,
        ranking: &Ranking<'_>,
        best: &OfferDefinition,
        valuation: &Valuation,
        channel: Channel,
    ) -> Result<Vec<Outbound>, StoreError> {
        let (partition, now_ms) = (ctx.partition, ctx.now_ms);
        let campaign_id = &best.doc.campaign_id;
        let campaign = self.campaign(campaign_id);
        if holdout::is_held_out(&self.config.holdout_salt, campaign_id, ctx.customer_id, campaign.holdout_percent) {
            let group = Group::CampaignControl;
            attribution::expose(txn, partition, profile, campaign_id, group, now_ms, campaign.window_ms)?;
            let reason = format!("in the holdout of campaign {campaign_id} ({} %)", campaign.holdout_percent);
            let decision = self.on_channel(ctx, channel, Outcome::HoldoutCampaign, reason);
            return Ok(vec![Outbound::Decision(self.annotate(ranking, best, valuation, decision))]);
        }
        attribution::expose(txn, partition, profile, campaign_id, Group::Treated, now_ms, campaign.window_ms)?;
        attribution::contact(txn, partition, campaign_id, best.doc.economics.contact_cost_minor, now_ms)?;
        let decision_id = ids::decision_id(&ctx.cause.id, channel);
        let offer = {
            let features = Features::compute(profile, ctx.facts, now_ms);
            let discount = valuation.discount;
            Offer {
                offer_id: ids::offer_id(&decision_id, best.id(), best.version()),
                decision_id: decision_id.clone(),
                customer_id: ctx.customer_id.to_owned(),
                campaign_id: campaign_id.clone(),
                offer_definition_id: best.doc.id.clone(),
                offer_version: best.doc.version,
                channel: channel as i32,
                content: Some(best.render(channel, &features, &discount)),
                discount: Some(discount),
                created_at_ms: now_ms,
                expires_at_ms: now_ms.saturating_add(millis(best.doc.ttl)),
            }
        };
        let key = best.subject();
        profile.record_contact(Contact {
            at_ms: now_ms,
            channel: channel as i32,
            offer: key.offer,
            campaign: key.campaign,
            sent: contact_hash(&offer.offer_id),
            respond_by_ms: offer.expires_at_ms,
            response: Response::None,
            convert_by_ms: now_ms + campaign.window_ms,
            converted: false,
            segment: ranking.segment,
            decile: valuation.decile,
        });
        let arm = ArmKey { offer: key.offer, segment: ranking.segment };
        txn.add_arm(partition, &arm, ArmCounts { trials: 1, successes: 0 })?;
        if valuation.decile != NO_DECILE {
            metrics::counter!(telemetry::MODEL_CONTACTS, "offer" => best.id().to_owned(), "decile" => valuation.decile.to_string())
                .increment(1);
        }
        if let (Channel::Push, Some(cascade)) = (channel, &best.doc.cascade) {
            let key = TimerKey::new(ctx.customer_id, TimerKind::Cascade, &offer.offer_id);
            let due = now_ms.saturating_add(millis(cascade.after));
            let timer = Timer::new(key, due, best.id(), ctx.cause.event_id, ctx.facts);
            txn.set_timer(partition, Timer { parent_decision_id: decision_id.clone(), ..timer })?;
        }
        let decision = Decision {
            offer_id: offer.offer_id.clone(),
            ..self.on_channel(ctx, channel, Outcome::Treated, String::new())
        };
        Ok(vec![Outbound::Decision(self.annotate(ranking, best, valuation, decision)), Outbound::Offer(offer)])
    }

    /// A decision of this cause on `channel`.
    fn on_channel(&self, ctx: &Context<'_>, channel: Channel, outcome: Outcome, reason: String) -> Decision {
        Decision {
            decision_id: ids::decision_id(&ctx.cause.id, channel),
            channel: channel as i32,
            outcome: outcome as i32,
            reason,
            ..ctx.base.clone()
        }
    }

    /// `decision` about offer `d`: its ids, the ranking's scores, the model
    /// and (when the decision acted) the features it acted on, and the
    /// drift fallback in the reason.
    fn annotate(&self, ranking: &Ranking<'_>, d: &OfferDefinition, v: &Valuation, decision: Decision) -> Decision {
        let acted = [Outcome::Treated, Outcome::HoldoutCampaign, Outcome::HoldoutGlobal].contains(&decision.outcome());
        let model = self.catalog.model_for(d).filter(|_| v.source.is_model() || v.source == Source::RulesDrift);
        let fallback = (v.source == Source::RulesDrift).then(|| {
            let m = model.expect("a drifted source has a model");
            metrics::counter!(telemetry::MODEL_FALLBACKS, "model" => m.artifact().target.clone()).increment(1);
            format!("rule priority: model {} drifted ({})", m.label(), m.monitor().reason())
        });
        let reason = match (fallback, decision.reason.is_empty()) {
            (Some(f), true) => f,
            (Some(f), false) => format!("{}; {f}", decision.reason),
            (None, _) => decision.reason.clone(),
        };
        Decision {
            campaign_id: d.doc.campaign_id.clone(),
            offer_definition_id: d.doc.id.clone(),
            offer_version: d.doc.version,
            scores: ranking.scores.clone(),
            model_version: model.map_or(String::new(), |m| m.label().to_owned()),
            model_features: if acted { v.vector(&ranking.customer).to_vec() } else { Vec::new() },
            reason,
            selection_probability: self.selection_probability(v),
            treatment_probability: self.treatment_probability(&d.doc.campaign_id),
            ..self.shadow(d, v, acted, decision)
        }
    }

    /// `decision` with what the challenger of `d` would have done, where
    /// the decision logs model features (`logs_features`).
    fn shadow(&self, d: &OfferDefinition, v: &Valuation, logs_features: bool, decision: Decision) -> Decision {
        match (self.catalog.challenger_for(d), v.challenger_selects) {
            (Some(challenger), Some(selects)) if logs_features => {
                Decision { challenger_version: challenger.label().to_owned(), challenger_selects: selects, ..decision }
            }
            _ => decision,
        }
    }

    /// [`Decision::selection_probability`] of a candidate valued `v`.
    fn selection_probability(&self, v: &Valuation) -> f64 {
        if v.not_incremental {
            self.config.models.exploration_percent / 100.0
        } else {
            1.0
        }
    }

    /// [`Decision::treatment_probability`] in `campaign_id`.
    fn treatment_probability(&self, campaign_id: &str) -> f64 {
        let holdout = self.campaign(campaign_id).holdout_percent / 100.0;
        (1.0 - holdout) * (1.0 - self.config.global_control_percent / 100.0)
    }
}
