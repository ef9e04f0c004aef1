//! Applies one event to state and decides what, if anything, to send.

use std::sync::Arc;

use cvm_proto::v1::{
    AppEvent, Channel, Consent, Decision, Discount, Identify, Offer, Outcome, Purchase, RenderedContent, Score,
};
use serde::{Deserialize, Serialize};

use crate::{
    holdout::{self, GLOBAL_SCOPE},
    ids,
    offers::{Catalog, OfferDefinition, TriggerEvent},
    policy::ContactPolicy,
    profile::{OpenDecision, Profile},
    score::score,
    StateTxn, StoreError,
};

/// Candidates listed in a decision.
const SCORES_IN_DECISION: usize = 5;

/// An input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A purchase.
    Purchase(Purchase),
    /// An app event.
    App(AppEvent),
    /// A device identified as a customer.
    Identify(Identify),
    /// A consent or reachability change.
    Consent(Consent),
}

impl Event {
    /// The producer's event id.
    pub fn event_id(&self) -> &str {
        match self {
            Event::Purchase(e) => &e.event_id,
            Event::App(e) => &e.event_id,
            Event::Identify(e) => &e.event_id,
            Event::Consent(e) => &e.event_id,
        }
    }

    /// Event time.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Event::Purchase(e) => e.timestamp_ms,
            Event::App(e) => e.timestamp_ms,
            Event::Identify(e) => e.timestamp_ms,
            Event::Consent(e) => e.timestamp_ms,
        }
    }

    /// Why the event cannot be applied, if it cannot.
    fn invalid_reason(&self) -> Option<&'static str> {
        if self.event_id().is_empty() {
            return Some("event_id is empty; producers must give every event a unique id");
        }
        match self {
            Event::Purchase(p) if p.customer_id.is_empty() => Some("purchase without customer_id"),
            Event::Purchase(p) if p.lines.is_empty() => Some("purchase without lines"),
            Event::App(a) if a.customer_id.is_empty() && a.device_id.is_empty() => {
                Some("app event without customer_id or device_id")
            }
            Event::Identify(i) if i.customer_id.is_empty() || i.device_id.is_empty() => {
                Some("identify needs both customer_id and device_id")
            }
            Event::Consent(c) if c.customer_id.is_empty() => Some("consent without customer_id"),
            _ => None,
        }
    }
}

/// Settings of the decision core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Salt of every holdout hash. Changing it reshuffles all control groups.
    pub holdout_salt: String,
    /// Share of all customers in the global control group, percent.
    pub global_control_percent: f64,
    /// Frequency caps.
    pub contact_policy: ContactPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { holdout_salt: "cvm".into(), global_control_percent: 5.0, contact_policy: ContactPolicy::default() }
    }
}

/// Something to publish, produced by a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// A decision (always emitted when offers were considered).
    Decision(Decision),
    /// An offer to deliver.
    Offer(Offer),
    /// An anonymous app event whose device is now known, re-keyed by customer
    /// so that it reaches the partition that owns the customer.
    Rekeyed(AppEvent),
}

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// Applied to state.
    Applied,
    /// Seen before; ignored.
    Duplicate,
    /// Anonymous device not yet identified; counted, not applied.
    Anonymous,
    /// Re-keyed to its customer (see [`Emit::Rekeyed`]).
    Rekeyed,
    /// Cannot be applied; goes to the dead-letter topic with this reason.
    Invalid(&'static str),
}

/// The result of [`Engine::process`].
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// What happened to the event.
    pub result: EventResult,
    /// What to publish.
    pub emits: Vec<Emit>,
}

impl Processed {
    fn just(result: EventResult) -> Self {
        Self { result, emits: Vec::new() }
    }
}

/// The decision core. Cheap to clone; the catalog is shared.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    catalog: Arc<Catalog>,
}

impl Engine {
    /// An engine with `config` evaluating `catalog`.
    pub fn new(config: EngineConfig, catalog: Catalog) -> Self {
        Self { config, catalog: Arc::new(catalog) }
    }

    /// Swaps in a new catalog; decisions after this use it.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The active offers `event` triggers (before eligibility), in id order.
    /// Every event with at least one candidate gets at least one decision.
    pub fn candidates(&self, event: &Event) -> Vec<&Arc<OfferDefinition>> {
        let (trigger, categories): (Option<TriggerEvent>, Vec<&str>) = match event {
            Event::Purchase(p) => (Some(TriggerEvent::Purchase), p.lines.iter().map(|l| l.category.as_str()).collect()),
            Event::App(a) => (TriggerEvent::of_app_event(a.kind()), vec![a.category.as_str()]),
            Event::Identify(_) | Event::Consent(_) => (None, Vec::new()),
        };
        let Some(trigger) = trigger else { return Vec::new() };
        self.catalog.triggered_by(trigger).iter().filter(|d| d.trigger_matches(categories.iter().copied())).collect()
    }

    /// Applies `event` (read from `partition`) and decides at `now_ms`.
    pub fn process(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        event: &Event,
        now_ms: i64,
    ) -> Result<Processed, StoreError> {
        if let Some(reason) = event.invalid_reason() {
            return Ok(Processed::just(EventResult::Invalid(reason)));
        }
        if let Event::App(app) = event {
            if app.customer_id.is_empty() {
                return Ok(match txn.customer_of_device(partition, &app.device_id)? {
                    Some(customer_id) => Processed {
                        result: EventResult::Rekeyed,
                        emits: vec![Emit::Rekeyed(AppEvent { customer_id, ..app.clone() })],
                    },
                    None => Processed::just(EventResult::Anonymous),
                });
            }
        }
        if !txn.first_sighting(partition, event.event_id())? {
            return Ok(Processed::just(EventResult::Duplicate));
        }
        let customer_id = match event {
            Event::Identify(i) => {
                txn.link_device(partition, &i.device_id, &i.customer_id)?;
                return Ok(Processed::just(EventResult::Applied));
            }
            Event::Purchase(p) => &p.customer_id,
            Event::App(a) => &a.customer_id,
            Event::Consent(c) => &c.customer_id,
        };
        let mut profile = txn.profile(partition, customer_id)?.unwrap_or_default();
        match event {
            Event::Purchase(p) => profile.apply_purchase(p),
            Event::App(a) => profile.apply_app_event(a),
            Event::Consent(c) => profile.apply_consent(c),
            Event::Identify(_) => unreachable!("handled above"),
        }
        let candidates = self.candidates(event);
        let emits = self.decide(&mut profile, customer_id, event.event_id(), &candidates, now_ms);
        txn.put_profile(partition, customer_id, profile)?;
        Ok(Processed { result: EventResult::Applied, emits })
    }

    fn decide(
        &self,
        profile: &mut Profile,
        customer_id: &str,
        event_id: &str,
        candidates: &[&Arc<OfferDefinition>],
        now_ms: i64,
    ) -> Vec<Emit> {
        let Some(first) = candidates.first() else {
            return Vec::new();
        };
        let base = Decision {
            customer_id: customer_id.to_owned(),
            event_id: event_id.to_owned(),
            decided_at_ms: now_ms,
            ..Default::default()
        };
        let mut eligible: Vec<(&OfferDefinition, Score)> = candidates
            .iter()
            .filter(|d| d.failing_condition(profile, now_ms).is_none())
            .map(|d| (d.as_ref(), score(d, profile, now_ms)))
            .collect();
        if eligible.is_empty() {
            let cond = first.failing_condition(profile, now_ms).expect("ineligible offers fail a condition");
            let reason = format!(
                "{} of {} offer(s) eligible; {}: {:?} {:?} {} failed (value {})",
                0,
                candidates.len(),
                first.id,
                cond.feature,
                cond.op,
                cond.value,
                cond.feature_value(profile, now_ms)
            );
            return vec![Emit::Decision(Decision {
                decision_id: ids::decision_id(event_id, Channel::Unspecified),
                outcome: Outcome::Ineligible as i32,
                reason,
                ..base
            })];
        }
        eligible.sort_by(|(a, sa), (b, sb)| sb.score.total_cmp(&sa.score).then_with(|| a.id.cmp(&b.id)));
        let scores: Vec<Score> = eligible.iter().take(SCORES_IN_DECISION).map(|(_, s)| s.clone()).collect();
        let with_offer = |d: &OfferDefinition, decision: Decision| Decision {
            campaign_id: d.campaign_id.clone(),
            offer_definition_id: d.id.clone(),
            offer_version: d.version,
            scores: scores.clone(),
            ..decision
        };

        if holdout::is_held_out(
            &self.config.holdout_salt,
            GLOBAL_SCOPE,
            customer_id,
            self.config.global_control_percent,
        ) {
            let best = eligible[0].0;
            let decision_id = ids::decision_id(event_id, Channel::Unspecified);
            profile.record_open_decision(OpenDecision {
                decision_id: decision_id.clone(),
                campaign_id: best.campaign_id.clone(),
                outcome: Outcome::HoldoutGlobal as i32,
                at_ms: now_ms,
            });
            let d = Decision {
                decision_id,
                outcome: Outcome::HoldoutGlobal as i32,
                reason: format!("in the global control group ({} %)", self.config.global_control_percent),
                ..base.clone()
            };
            return vec![Emit::Decision(with_offer(best, d))];
        }

        let mut emits = Vec::new();
        for channel in [Channel::Push, Channel::Stories] {
            let Some((best, _)) = eligible.iter().find(|(d, _)| d.channels.iter().any(|c| c.channel() == channel))
            else {
                continue;
            };
            let decision_id = ids::decision_id(event_id, channel);
            let decision = Decision { decision_id: decision_id.clone(), channel: channel as i32, ..base.clone() };
            let (outcome, reason) = if !profile.reach.reaches(channel) {
                (
                    Outcome::Unreachable,
                    format!("{} not reachable (app, token or consent missing)", channel.as_str_name()),
                )
            } else if holdout::is_held_out(
                &self.config.holdout_salt,
                &best.campaign_id,
                customer_id,
                best.holdout_percent,
            ) {
                (
                    Outcome::HoldoutCampaign,
                    format!("in the holdout of campaign {} ({} %)", best.campaign_id, best.holdout_percent),
                )
            } else if let Some(rule) = self.config.contact_policy.blocking_rule(profile, channel, now_ms) {
                (
                    Outcome::Capped,
                    format!("cap {:?}: {} in {}", rule.scope, rule.max, humantime::format_duration(rule.window)),
                )
            } else {
                (Outcome::Treated, String::new())
            };
            let mut decision = with_offer(best, Decision { outcome: outcome as i32, reason, ..decision });
            if matches!(outcome, Outcome::Treated | Outcome::HoldoutCampaign) {
                profile.record_open_decision(OpenDecision {
                    decision_id: decision_id.clone(),
                    campaign_id: best.campaign_id.clone(),
                    outcome: outcome as i32,
                    at_ms: now_ms,
                });
            }
            if outcome == Outcome::Treated {
                profile.record_contact(channel, now_ms, self.config.contact_policy.horizon_ms());
                let offer = render_offer(best, profile, customer_id, &decision_id, channel, now_ms);
                decision.offer_id.clone_from(&offer.offer_id);
                emits.push(Emit::Decision(decision));
                emits.push(Emit::Offer(offer));
            } else {
                emits.push(Emit::Decision(decision));
            }
        }
        emits
    }
}

fn render_offer(
    d: &OfferDefinition,
    profile: &Profile,
    customer_id: &str,
    decision_id: &str,
    channel: Channel,
    now_ms: i64,
) -> Offer {
    Offer {
        offer_id: ids::offer_id(decision_id, &d.id, d.version),
        decision_id: decision_id.to_owned(),
        customer_id: customer_id.to_owned(),
        campaign_id: d.campaign_id.clone(),
        offer_definition_id: d.id.clone(),
        offer_version: d.version,
        channel: channel as i32,
        content: Some(RenderedContent {
            title: d.render(&d.content.title, profile),
            body: d.render(&d.content.body, profile),
            deep_link: d.content.deep_link.clone(),
            image_url: d.content.image_url.clone(),
        }),
        discount: Some(Discount { percent: d.discount.percent, fixed_minor: d.discount.fixed_minor }),
        created_at_ms: now_ms,
        expires_at_ms: now_ms + d.ttl.as_millis() as i64,
    }
}
