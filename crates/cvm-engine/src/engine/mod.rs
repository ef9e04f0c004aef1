//! Applies one event to state and decides what, if anything, to send; fires
//! timers; runs sweeps.
//!
//! Every decision goes through one path (`decide`, in its own module):
//! candidates →
//! eligibility → priority and score → global control group → per channel:
//! reachability → contact policy (fatigue, cooldown, caps, gap, quiet hours;
//! a blocked offer yields to the next candidate) → campaign holdout → render.
//! What differs between an event, a timer and a sweep is only which offers
//! are candidates, which channels are open and what the decision's id is
//! derived from. Decisions open attribution episodes and purchases add to
//! them ([`attribution`]).

use std::sync::Arc;

use std::time::Duration;

use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Decision, DeviceLink, EraseRequest, ErasureConfirmation, Offer};
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{self, Group},
    budget::Budget,
    catalog::Catalog,
    events::{Event, EventKind, EventResult},
    features::{EventFacts, Features},
    holdout::{self, GLOBAL_SCOPE},
    models::{vector, ArmCounts, ArmKey, ModelSettings},
    offers::{OfferDefinition, Trigger},
    policy::{ContactPolicy, OfferPolicy},
    profile::{Profile, NO_DECILE},
    telemetry,
    time::{duration_problem, millis, DAY_MS},
    timers::{Timer, TimerKey, TimerKind},
    validation::InputLimits,
    StateTxn, StoreError,
};

/// Settings of the decision core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Salt of every holdout hash. Changing it reshuffles all control groups.
    pub holdout_salt: String,
    /// Share of all customers in the global control group, percent.
    pub global_control_percent: f64,
    /// Holdout share, percent, of campaigns without a campaign document.
    pub default_holdout_percent: f64,
    /// Attribution window of campaigns without a campaign document.
    #[serde(with = "humantime_serde")]
    pub default_attribution_window: Duration,
    /// Global contact policy (a `policy/global` document overrides it).
    pub contact_policy: ContactPolicy,
    /// Model scoring, exploration and drift.
    pub models: ModelSettings,
    /// Bounds every input event is validated against ([`crate::validation`]).
    pub input: InputLimits,
}

impl EngineConfig {
    /// Every problem serde cannot see, as `path: problem; fix`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0.0..=50.0).contains(&self.global_control_percent) {
            errors.push(format!("{path}.global_control_percent: must be between 0 and 50"));
        }
        if self.holdout_salt.is_empty() {
            errors.push(format!(
                "{path}.holdout_salt: is empty; set any fixed string (changing it reshuffles control groups)"
            ));
        }
        if !(0.0..=50.0).contains(&self.default_holdout_percent) {
            errors.push(format!("{path}.default_holdout_percent: must be between 0 and 50"));
        }
        if self.default_attribution_window.is_zero() {
            errors.push(format!("{path}.default_attribution_window: is zero; use e.g. \"7d\""));
        }
        errors.extend(duration_problem(&format!("{path}.default_attribution_window"), self.default_attribution_window));
        errors.extend(self.contact_policy.problems(&format!("{path}.contact_policy")));
        errors.extend(self.models.problems(&format!("{path}.models")));
        errors.extend(self.input.problems(&format!("{path}.input")));
        errors
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            holdout_salt: "cvm".into(),
            global_control_percent: 5.0,
            default_holdout_percent: 10.0,
            default_attribution_window: Duration::from_secs(7 * 86_400),
            contact_policy: ContactPolicy::default(),
            models: ModelSettings::default(),
            input: InputLimits::default(),
        }
    }
}

/// Something to publish, produced by a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A decision (always emitted when offers were considered).
    Decision(Decision),
    /// An offer to deliver.
    Offer(Offer),
    /// An anonymous app event whose device is now known, re-keyed by customer
    /// so that it reaches the partition that owns the customer.
    Rekeyed(AppEvent),
    /// A customer was erased.
    Erased(ErasureConfirmation),
    /// A device's link to its customer (or its end), keyed by device id so
    /// that it reaches the partition the device's anonymous events land in.
    DeviceLink(DeviceLink),
}

/// Anonymous app events held per device until its link arrives (the oldest
/// are dropped beyond).
pub const MAX_HELD_ANONYMOUS: usize = 32;

/// The result of [`Engine::process`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventOutput {
    /// What happened to the event.
    pub result: EventResult,
    /// What to publish.
    pub emits: Vec<Outbound>,
}

impl EventOutput {
    fn just(result: EventResult) -> Self {
        Self { result, emits: Vec::new() }
    }
}

const ALL_CHANNELS: [Channel; 2] = [Channel::Push, Channel::Stories];

mod decide;

use decide::{Cause, Context, DecisionTrigger};

/// The decision core. Cheap to clone; the catalog is shared.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    catalog: Arc<Catalog>,
    /// The configured policy with the catalog's `policy/global` applied.
    policy: ContactPolicy,
    /// Partitions the customers are spread over: each spends its share of
    /// a campaign budget.
    partitions: u32,
}

/// A campaign's settings: from its document, or the engine's defaults.
struct CampaignSettings<'a> {
    holdout_percent: f64,
    window_ms: i64,
    policy: Option<&'a crate::policy::PolicyOverride>,
    budget: Budget,
}

impl Engine {
    /// An engine with `config` evaluating `catalog`.
    pub fn new(config: EngineConfig, catalog: Catalog) -> Self {
        let mut engine =
            Self { policy: config.contact_policy.clone(), config, catalog: Arc::new(catalog), partitions: 1 };
        engine.set_catalog(engine.catalog.clone());
        engine
    }

    /// The engine for one of `partitions` input partitions (default 1): a
    /// campaign budget is shared out among them.
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Swaps in a new catalog; decisions after this use it.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.policy = match catalog.policy() {
            Some(doc) => self.config.contact_policy.overridden(&doc.contact_policy),
            None => self.config.contact_policy.clone(),
        };
        self.catalog = catalog;
    }

    /// The global contact policy in force.
    pub fn policy(&self) -> &ContactPolicy {
        &self.policy
    }

    fn campaign(&self, campaign_id: &str) -> CampaignSettings<'_> {
        match self.catalog.campaign(campaign_id) {
            Some(c) => CampaignSettings {
                holdout_percent: c.holdout_percent,
                window_ms: millis(c.attribution_window),
                policy: Some(&c.contact_policy),
                budget: c.budget,
            },
            None => CampaignSettings {
                holdout_percent: self.config.default_holdout_percent,
                window_ms: millis(self.config.default_attribution_window),
                policy: None,
                budget: Budget::default(),
            },
        }
    }

    /// How long after a decision of `campaign_id` its purchases count.
    pub fn attribution_window_ms(&self, campaign_id: &str) -> i64 {
        self.campaign(campaign_id).window_ms
    }

    /// Whether the customer is in the global control group.
    pub fn in_global_control(&self, customer_id: &str) -> bool {
        holdout::is_held_out(&self.config.holdout_salt, GLOBAL_SCOPE, customer_id, self.config.global_control_percent)
    }

    /// Whether the customer is in `campaign_id`'s holdout.
    pub fn in_campaign_holdout(&self, campaign_id: &str, customer_id: &str) -> bool {
        let share = self.campaign(campaign_id).holdout_percent;
        holdout::is_held_out(&self.config.holdout_salt, campaign_id, customer_id, share)
    }

    fn programme_group(&self, customer_id: &str) -> Group {
        if self.in_global_control(customer_id) {
            Group::GlobalControl
        } else {
            Group::Treated
        }
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The settings in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies `event` (read from `partition`) and decides at `now_ms`:
    /// offers the event triggers are decided now; delayed triggers,
    /// inactivity checks and cascades are scheduled or cancelled as timers.
    /// The event must have passed [`crate::validation`] (the [`Driver`]
    /// validates; generated input may come here directly).
    ///
    /// [`Driver`]: crate::Driver
    pub fn process(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        event: &Event,
        now_ms: i64,
    ) -> Result<EventOutput, StoreError> {
        if !self.admit(txn, partition, event)? {
            return Ok(EventOutput::just(EventResult::Duplicate));
        }
        self.apply_admitted(txn, partition, event, now_ms)
    }

    /// Marks `event` as seen; `false` if it was seen before (a replay, to be
    /// ignored). Anonymous app events and erase requests are not tracked:
    /// the first is re-keyed and comes back, the second is idempotent.
    pub fn admit(&self, txn: &mut impl StateTxn, partition: u32, event: &Event) -> Result<bool, StoreError> {
        match event {
            Event::App(app) if app.customer_id.is_empty() => Ok(true),
            Event::Erase(_) => Ok(true),
            _ => txn.first_sighting(partition, event.event_id()),
        }
    }

    /// [`Engine::process`] after [`Engine::admit`] said the event is new.
    pub fn apply_admitted(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        event: &Event,
        now_ms: i64,
    ) -> Result<EventOutput, StoreError> {
        if let Event::App(app) = event {
            if app.customer_id.is_empty() {
                return Ok(match txn.customer_of_device(partition, &app.device_id)? {
                    Some(customer_id) => EventOutput {
                        result: EventResult::Rekeyed,
                        emits: vec![Outbound::Rekeyed(AppEvent { customer_id, ..app.clone() })],
                    },
                    None => {
                        let mut held = txn.held_anonymous(partition, &app.device_id)?;
                        held.push(app.clone());
                        let excess = held.len().saturating_sub(MAX_HELD_ANONYMOUS);
                        held.drain(..excess);
                        txn.hold_anonymous(partition, &app.device_id, held)?;
                        EventOutput::just(EventResult::Anonymous)
                    }
                });
            }
        }
        if let Event::DeviceLink(link) = event {
            return Ok(EventOutput { result: EventResult::Applied, emits: Self::apply_link(txn, partition, link)? });
        }
        if let Event::Erase(request) = event {
            // Erasure is idempotent: a repeated request erases (nothing) and confirms again.
            let emits = self.erase(txn, partition, request, now_ms)?;
            return Ok(EventOutput { result: EventResult::Applied, emits });
        }
        let customer_id = match event {
            Event::Identify(i) => &i.customer_id,
            Event::Purchase(p) => &p.customer_id,
            Event::App(a) => &a.customer_id,
            Event::Consent(c) => &c.customer_id,
            Event::Erase(_) | Event::DeviceLink(_) => unreachable!("handled above"),
        };
        let stored = txn.profile(partition, customer_id)?;
        if stored.is_none() && txn.was_erased(partition, customer_id)? {
            return Ok(EventOutput::just(EventResult::Erased));
        }
        if stored.is_none() {
            attribution::new_customer(txn, partition, self.programme_group(customer_id), event.timestamp_ms())?;
        }
        let mut profile = stored.unwrap_or_default();
        let mut links = Vec::new();
        match event {
            Event::Purchase(p) => {
                self.learn_conversions(txn, partition, &mut profile, p.timestamp_ms)?;
                let totals = profile.apply_purchase(p);
                let group = self.programme_group(customer_id);
                attribution::purchase(txn, partition, &mut profile, group, &totals, p.timestamp_ms)?;
            }
            Event::App(a) => profile.apply_app_event(a),
            Event::Consent(c) => profile.apply_consent(c),
            Event::Identify(i) => {
                txn.link_device(partition, &i.device_id, &i.customer_id)?;
                // The device's anonymous events land in the device's partition:
                // the link goes there too (it may be this one).
                links.push(Outbound::DeviceLink(DeviceLink {
                    event_id: format!("{}/link", i.event_id),
                    device_id: i.device_id.clone(),
                    customer_id: customer_id.clone(),
                    unlink: false,
                    timestamp_ms: i.timestamp_ms,
                }));
                // A profile lists its last MAX_DEVICES devices; an older one is
                // unlinked, so that every link can be found (and erased) from it.
                if let Some(dropped) = profile.add_device(&i.device_id) {
                    if txn.customer_of_device(partition, &dropped)?.as_deref() == Some(customer_id) {
                        txn.unlink_device(partition, &dropped)?;
                    }
                    links.push(unlink(&format!("{}/unlink", i.event_id), &dropped, customer_id, i.timestamp_ms));
                }
            }
            Event::Erase(_) | Event::DeviceLink(_) => unreachable!("handled above"),
        }
        let facts = EventFacts::of(event);
        let mut emits = links;
        if let Some(kind) = facts.kind {
            let candidates: Vec<&Arc<OfferDefinition>> = {
                let features = Features::compute(&profile, facts, now_ms);
                self.update_timers(txn, partition, customer_id, event, &features, kind, now_ms)?;
                let triggered = self.catalog.triggered_by(kind, &facts).into_iter();
                triggered.filter(|d| d.is_live(now_ms) && d.passes_filter(&features)).collect()
            };
            let cause = Cause {
                id: event.event_id().to_owned(),
                event_id: event.event_id(),
                trigger: DecisionTrigger::Event,
                parent_decision_id: "",
                channels: &ALL_CHANNELS,
            };
            let ctx = Context::new(self, partition, customer_id, &cause, facts, now_ms);
            emits = self.decide(txn, &mut profile, &ctx, &candidates)?;
        }
        txn.put_profile(partition, customer_id, profile)?;
        Ok(EventOutput { result: EventResult::Applied, emits })
    }

    /// Counts the contacts a purchase at `at_ms` converts as bandit
    /// successes and in the calibration metrics.
    fn learn_conversions(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        profile: &mut Profile,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        for c in profile.convert_contacts(at_ms) {
            txn.add_arm(
                partition,
                &ArmKey { offer: c.offer, segment: c.segment },
                ArmCounts { trials: 0, successes: 1 },
            )?;
            if c.decile != NO_DECILE {
                if let Some(d) = self.catalog.by_hash(c.offer) {
                    metrics::counter!(telemetry::MODEL_CONVERSIONS, "offer" => d.id().to_owned(), "decile" => c.decile.to_string())
                        .increment(1);
                }
            }
        }
        Ok(())
    }

    /// Schedules and cancels the timers an event of `kind` affects;
    /// `features` are the customer's after the event was applied.
    #[allow(clippy::too_many_arguments)]
    fn update_timers(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        customer_id: &str,
        event: &Event,
        features: &Features<'_>,
        kind: EventKind,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let profile = features.profile();
        let timer = |kind: TimerKind, def: &OfferDefinition, due_ms: i64| {
            let key = TimerKey::new(customer_id, kind, def.id());
            Timer::new(key, due_ms, def.id(), event.event_id(), features.event())
        };
        if let Event::App(a) = event {
            if a.kind() == AppEventKind::PushOpen && !a.offer_id.is_empty() {
                txn.cancel_timer(partition, &TimerKey::new(customer_id, TimerKind::Cascade, &a.offer_id))?;
            }
        }
        if let Event::Purchase(p) = event {
            for d in self.catalog.inactivity() {
                if let Trigger::Inactivity { days } = d.doc.trigger {
                    let last = profile.last_purchase_ms.unwrap_or(p.timestamp_ms);
                    txn.set_timer(
                        partition,
                        timer(TimerKind::Inactivity, d, last.saturating_add(i64::from(days) * DAY_MS)),
                    )?;
                }
            }
        }
        let cancelling = self.catalog.delayed_cancelled_by(kind);
        let starting = self.catalog.delayed_started_by(kind, &features.event());
        // Purchases and app events arrive on two topics, so a cancelling event
        // can be applied before the event that started the wait. In event
        // time that order is visible: a wait is cancelled only by an event at
        // or after its start, and a wait for a purchase is not started when a
        // purchase at or after the start is already known.
        for d in cancelling {
            if let Trigger::Delayed { after, .. } = d.doc.trigger {
                let key = TimerKey::new(customer_id, TimerKind::Delayed, d.id());
                if !d.cancels(kind, features) {
                    continue;
                }
                let started = txn.timer_due(partition, &key)?.map(|due| due.saturating_sub(millis(after)));
                if started.is_some_and(|s| s <= now_ms) {
                    txn.cancel_timer(partition, &key)?;
                }
            }
        }
        for d in starting {
            if let Trigger::Delayed { after, cancel_on, .. } = d.doc.trigger {
                let already_bought = cancel_on == EventKind::Purchase
                    && kind != EventKind::Purchase
                    && profile.last_purchase_ms.is_some_and(|t| t >= now_ms);
                if d.is_live(now_ms) && d.passes_filter(features) && !already_bought {
                    let due = now_ms.saturating_add(millis(after));
                    txn.set_timer(partition, timer(TimerKind::Delayed, d, due))?;
                }
            }
        }
        Ok(())
    }

    /// Sets inactivity offer `def`'s timer for a customer who is already
    /// known, due `days` after their last purchase (at once if that has
    /// passed). Purchases set these timers as they happen; this covers the
    /// customers who lapsed before the offer was published. Run it once per
    /// offer (the ingest loop's backfill does): a timer that has fired is
    /// not pending any more, and setting it again would repeat the offer
    /// for the same lapse. Returns whether a timer was set.
    pub fn schedule_inactivity(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        customer_id: &str,
        def: &OfferDefinition,
    ) -> Result<bool, StoreError> {
        let Trigger::Inactivity { days } = def.doc.trigger else { return Ok(false) };
        let Some(last) = txn.profile(partition, customer_id)?.and_then(|p| p.last_purchase_ms) else {
            return Ok(false);
        };
        let key = TimerKey::new(customer_id, TimerKind::Inactivity, def.id());
        if txn.timer_due(partition, &key)?.is_some() {
            return Ok(false);
        }
        let timer = Timer::new(key, last + i64::from(days) * DAY_MS, def.id(), "", EventFacts::default());
        txn.set_timer(partition, timer)?;
        Ok(true)
    }

    /// Fires `timer` (read from `partition`'s pending timers) at `now_ms`:
    /// removes it and decides its offer. A timer that was cancelled or
    /// rescheduled since it was read does nothing, so each fires once.
    pub fn fire(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        timer: &Timer,
        now_ms: i64,
    ) -> Result<Vec<Outbound>, StoreError> {
        let key = timer.key();
        if txn.timer_due(partition, &key)? != Some(timer.due_ms) {
            return Ok(Vec::new());
        }
        txn.cancel_timer(partition, &key)?;
        let Some(def) = self.catalog.get(&timer.offer_id).filter(|d| d.is_live(now_ms)) else {
            return Ok(Vec::new());
        };
        let Some(mut profile) = txn.profile(partition, &timer.customer_id)? else {
            return Ok(Vec::new());
        };
        if let (TimerKind::Inactivity, Trigger::Inactivity { days }) = (timer.kind, &def.doc.trigger) {
            // A purchase since the timer was set moved it; this is a stale copy.
            if profile.last_purchase_ms.is_some_and(|t| t + i64::from(*days) * DAY_MS > now_ms) {
                return Ok(Vec::new());
            }
        }
        let cascade_channels = def.doc.cascade.as_ref().map(|c| [c.to.channel()]);
        let channels: &[Channel] = match (timer.kind, &cascade_channels) {
            (TimerKind::Cascade, Some(to)) => to,
            (TimerKind::Cascade, None) => return Ok(Vec::new()),
            (TimerKind::Deferred, _) => &[Channel::Push],
            _ => &ALL_CHANNELS,
        };
        let facts = timer.facts();
        let mut id =
            format!("timer\x1f{}\x1f{}\x1f{}", timer.kind.name(), String::from_utf8_lossy(&key.encode()), timer.due_ms);
        if timer.kind == TimerKind::Deferred {
            // Two deferrals of one offer to the same due time (the end of
            // the same quiet hours) are two decisions: the cause is the
            // decision that deferred, itself derived from its event.
            id.push('\x1f');
            id.push_str(&timer.parent_decision_id);
        }
        let cause = Cause {
            id,
            event_id: &timer.cause_event_id,
            trigger: DecisionTrigger::Timer(timer.kind),
            parent_decision_id: &timer.parent_decision_id,
            channels,
        };
        let ctx = Context::new(self, partition, &timer.customer_id, &cause, facts, now_ms);
        let emits = self.decide(txn, &mut profile, &ctx, &[def])?;
        txn.put_profile(partition, &timer.customer_id, profile)?;
        Ok(emits)
    }

    /// Decides sweep offer `def` for `customer_id` at `now_ms`. The decision
    /// id derives from the offer version and the customer, so re-running a
    /// sweep (after a crash) reproduces the same ids.
    pub fn sweep(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        customer_id: &str,
        def: &Arc<OfferDefinition>,
        now_ms: i64,
    ) -> Result<Vec<Outbound>, StoreError> {
        if !def.is_live(now_ms) {
            return Ok(Vec::new());
        }
        let Some(mut profile) = txn.profile(partition, customer_id)? else {
            return Ok(Vec::new());
        };
        let id = format!("sweep\x1f{}\x1f{}\x1f{customer_id}", def.id(), def.version());
        let cause = Cause {
            id,
            event_id: "",
            trigger: DecisionTrigger::Sweep,
            parent_decision_id: "",
            channels: &ALL_CHANNELS,
        };
        let ctx = Context::new(self, partition, customer_id, &cause, EventFacts::default(), now_ms);
        let emits = self.decide(txn, &mut profile, &ctx, &[def])?;
        txn.put_profile(partition, customer_id, profile)?;
        Ok(emits)
    }

    /// Feeds `offer`'s model (if it has one) the vector of a decision it
    /// acted on; at the end of a drift window, reports and logs the check.
    fn observe_drift(&self, offer: &OfferDefinition, x: &vector::Vector) {
        let Some(model) = self.catalog.model_for(offer) else { return };
        let Some(check) = model.observe(x, &self.config.models) else { return };
        for (series, psi) in &check.psi {
            metrics::gauge!(telemetry::MODEL_PSI, "model" => model.artifact().target.clone(), "series" => series.clone())
                .set(*psi);
        }
        metrics::gauge!(telemetry::MODEL_DRIFTED, "model" => model.artifact().target.clone())
            .set(f64::from(u8::from(check.drifted)));
        let worst = check.worst().map_or(String::new(), |(n, v)| format!("{n} PSI {v:.2}"));
        match (check.drifted, check.changed) {
            (true, true) => {
                tracing::warn!(model = model.label(), %worst, "model drifted; its offers fall back to rule priority")
            }
            (false, true) => {
                tracing::info!(model = model.label(), %worst, "model back within drift threshold; scoring with it again")
            }
            _ => tracing::debug!(model = model.label(), %worst, drifted = check.drifted, "drift check"),
        }
    }

    /// The contact policy for `offer`: global, its campaign's and its own.
    fn resolve<'a>(&'a self, offer: &'a OfferDefinition) -> OfferPolicy<'a> {
        OfferPolicy {
            global: &self.policy,
            campaign: self.campaign(&offer.doc.campaign_id).policy,
            offer: &offer.doc.contact_policy,
        }
    }

    /// Erases everything kept about a customer: profile (with contact
    /// history and attribution episodes), device links and pending timers.
    /// Aggregates stay: they hold no customer data. Returns the confirmation.
    pub fn erase(
        &self,
        txn: &mut impl StateTxn,
        partition: u32,
        request: &EraseRequest,
        now_ms: i64,
    ) -> Result<Vec<Outbound>, StoreError> {
        let customer_id = &request.customer_id;
        let profile = txn.profile(partition, customer_id)?;
        let devices = profile.as_ref().map_or(&[][..], |p| p.devices.as_slice());
        let mut emits = Vec::with_capacity(devices.len() + 1);
        for device in devices {
            txn.unlink_device(partition, device)?;
            emits.push(unlink(&format!("{}/unlink", request.request_id), device, customer_id, request.timestamp_ms));
        }
        if profile.is_some() {
            txn.delete_profile(partition, customer_id)?;
        }
        let timers = txn.timers_of(partition, customer_id)?;
        for key in &timers {
            txn.cancel_timer(partition, key)?;
        }
        txn.mark_erased(partition, customer_id)?;
        emits.push(Outbound::Erased(ErasureConfirmation {
            request_id: request.request_id.clone(),
            customer_id: customer_id.clone(),
            erased_at_ms: now_ms,
            profile_erased: profile.is_some(),
            timers_removed: timers.len() as u32,
            devices_unlinked: devices.len() as u32,
        }));
        Ok(emits)
    }

    /// A device link in the device's partition: links it (and re-keys the
    /// anonymous events it held to the customer), or unlinks it if it is
    /// still the customer's.
    fn apply_link(txn: &mut impl StateTxn, partition: u32, link: &DeviceLink) -> Result<Vec<Outbound>, StoreError> {
        if link.unlink {
            if txn.customer_of_device(partition, &link.device_id)?.as_deref() == Some(link.customer_id.as_str()) {
                txn.unlink_device(partition, &link.device_id)?;
            }
            return Ok(Vec::new());
        }
        txn.link_device(partition, &link.device_id, &link.customer_id)?;
        let held = txn.held_anonymous(partition, &link.device_id)?;
        if !held.is_empty() {
            txn.hold_anonymous(partition, &link.device_id, Vec::new())?;
        }
        let customer_id = &link.customer_id;
        Ok(held.into_iter().map(|e| Outbound::Rekeyed(AppEvent { customer_id: customer_id.clone(), ..e })).collect())
    }
}

/// The unlink of `device` from `customer_id`, caused by event `cause`.
fn unlink(cause: &str, device: &str, customer_id: &str, timestamp_ms: i64) -> Outbound {
    Outbound::DeviceLink(DeviceLink {
        event_id: format!("{cause}/{device}"),
        device_id: device.to_owned(),
        customer_id: customer_id.to_owned(),
        unlink: true,
        timestamp_ms,
    })
}
