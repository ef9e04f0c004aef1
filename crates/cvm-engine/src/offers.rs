//! Offer definitions and the catalog the engine evaluates.
//!
//! This is the minimal document format of the foundation: a trigger (an
//! event kind, optionally narrowed to a category), a list of field
//! conditions, channels with content, a discount and the economics the
//! heuristic score needs. Documents arrive as JSON on the config topic
//! (key = offer id, empty value = delete) or from files (`cvm offers lint`).
//! Every problem is reported with its field path and what to do about it.

use std::{collections::HashMap, sync::Arc, time::Duration};

use cvm_proto::v1::{AppEventKind, Channel};
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// What makes an offer a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A purchase.
    Purchase,
    /// App opened.
    AppOpen,
    /// Product viewed.
    ProductView,
    /// Added to cart.
    AddToCart,
    /// Removed from cart.
    RemoveFromCart,
    /// Searched.
    Search,
    /// Push opened.
    PushOpen,
    /// Story viewed.
    StoryView,
}

impl TriggerEvent {
    /// The trigger an app event kind fires, if any.
    pub fn of_app_event(kind: AppEventKind) -> Option<Self> {
        Some(match kind {
            AppEventKind::AppOpen => Self::AppOpen,
            AppEventKind::ProductView => Self::ProductView,
            AppEventKind::AddToCart => Self::AddToCart,
            AppEventKind::RemoveFromCart => Self::RemoveFromCart,
            AppEventKind::Search => Self::Search,
            AppEventKind::PushOpen => Self::PushOpen,
            AppEventKind::StoryView => Self::StoryView,
            _ => return None,
        })
    }
}

/// The event that makes the offer a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Event kind.
    pub event: TriggerEvent,
    /// Only events in this category (for app events: the event's category;
    /// for purchases: any line's category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// A profile feature a condition can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Days since the last purchase (never bought = infinite).
    DaysSinceLastPurchase,
    /// Orders in the last 30 days.
    #[serde(rename = "orders_30d")]
    Orders30d,
    /// Orders in the last 90 days.
    #[serde(rename = "orders_90d")]
    Orders90d,
    /// Revenue in the last 90 days, minor units.
    #[serde(rename = "revenue_90d_minor")]
    Revenue90dMinor,
    /// Margin in the last 90 days, minor units.
    #[serde(rename = "margin_90d_minor")]
    Margin90dMinor,
    /// Orders since first seen.
    LifetimeOrders,
    /// Share of spend in `category` (0..1); needs `category`.
    CategoryShare,
    /// Lines in the cart.
    CartLines,
    /// 1 if the customer uses the app, else 0.
    HasApp,
    /// 1 if a push can be sent, else 0.
    PushReachable,
}

/// How a feature is compared with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// `feature op value`, e.g. `days_since_last_purchase gte 30`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The feature.
    pub feature: Feature,
    /// For `category_share`: the category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The comparison.
    pub op: Op,
    /// The value compared with.
    pub value: f64,
}

impl Condition {
    /// The feature's value for `profile` at `now_ms`.
    pub fn feature_value(&self, profile: &Profile, now_ms: i64) -> f64 {
        match self.feature {
            Feature::DaysSinceLastPurchase => profile.days_since_last_purchase(now_ms).unwrap_or(f64::INFINITY),
            Feature::Orders30d => f64::from(profile.window(now_ms, 30).orders),
            Feature::Orders90d => f64::from(profile.window(now_ms, 90).orders),
            Feature::Revenue90dMinor => profile.window(now_ms, 90).revenue_minor as f64,
            Feature::Margin90dMinor => profile.window(now_ms, 90).margin_minor as f64,
            Feature::LifetimeOrders => profile.lifetime_orders as f64,
            Feature::CategoryShare => profile.category_share(self.category.as_deref().unwrap_or_default()),
            Feature::CartLines => profile.cart.len() as f64,
            Feature::HasApp => f64::from(u8::from(profile.reach.has_app)),
            Feature::PushReachable => f64::from(u8::from(profile.reach.push())),
        }
    }

    /// Whether the condition holds.
    pub fn holds(&self, profile: &Profile, now_ms: i64) -> bool {
        let v = self.feature_value(profile, now_ms);
        match self.op {
            Op::Lt => v < self.value,
            Op::Lte => v <= self.value,
            Op::Gt => v > self.value,
            Op::Gte => v >= self.value,
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
        }
    }
}

/// Lifecycle of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being written; never evaluated.
    Draft,
    /// Live.
    #[default]
    Active,
    /// Temporarily off.
    Paused,
}

/// Message content. `{favourite_category}` and `{discount}` are replaced
/// with the customer's strongest category and the discount text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Push title / story headline.
    pub title: String,
    /// Push body / story text.
    #[serde(default)]
    pub body: String,
    /// Where a tap leads in the app.
    #[serde(default)]
    pub deep_link: String,
    /// Image for stories.
    #[serde(default)]
    pub image_url: String,
}

/// The reward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountSpec {
    /// Percent off (0..=90).
    #[serde(default)]
    pub percent: u32,
    /// Fixed reward in minor units.
    #[serde(default)]
    pub fixed_minor: i64,
}

fn default_ttl() -> Duration {
    Duration::from_secs(48 * 3600)
}

/// One offer document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferDefinition {
    /// Unique id; also the config-topic key.
    pub id: String,
    /// Version, raised on every edit; recorded in every decision.
    pub version: u32,
    /// The campaign the offer belongs to (holdouts and reports are per campaign).
    pub campaign_id: String,
    /// Lifecycle status.
    #[serde(default)]
    pub status: Status,
    /// What makes it a candidate.
    pub trigger: Trigger,
    /// All must hold.
    #[serde(default)]
    pub eligibility: Vec<Condition>,
    /// Channels it may be sent on.
    pub channels: Vec<ChannelName>,
    /// What the customer sees.
    pub content: Content,
    /// The reward.
    #[serde(default)]
    pub discount: DiscountSpec,
    /// The category the offer promotes; the score uses the customer's affinity to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Margin earned per redemption before the discount, minor units.
    pub expected_margin_minor: i64,
    /// Cost of one contact, minor units.
    #[serde(default)]
    pub contact_cost_minor: i64,
    /// Share of the campaign's customers held out, in percent.
    #[serde(default)]
    pub holdout_percent: f64,
    /// How long the offer stays valid after sending.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Multiplies the score, to favour an offer over others.
    #[serde(default = "one")]
    pub priority: f64,
}

fn one() -> f64 {
    1.0
}

/// A channel by name in documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    /// Mobile push.
    Push,
    /// In-app stories.
    Stories,
}

impl ChannelName {
    /// The wire enum.
    pub fn channel(self) -> Channel {
        match self {
            ChannelName::Push => Channel::Push,
            ChannelName::Stories => Channel::Stories,
        }
    }
}

/// A rejected offer document: every problem found, with its field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("offer {id:?} rejected:\n  {}", errors.join("\n  "))]
pub struct OfferError {
    /// The document's id (or its key, when the id is unreadable).
    pub id: String,
    /// One line per problem: `<path>: <problem>; <what to do>`.
    pub errors: Vec<String>,
}

impl OfferDefinition {
    /// Parses and validates a JSON document. `key` names it in errors when
    /// the document itself is unreadable.
    pub fn parse(key: &str, json: &[u8]) -> Result<Self, OfferError> {
        let def: OfferDefinition = serde_json::from_slice(json).map_err(|e| OfferError {
            id: key.to_owned(),
            errors: vec![format!("line {} column {}: {e}; fix the JSON and publish again", e.line(), e.column())],
        })?;
        def.validate()?;
        Ok(def)
    }

    /// Checks the rules serde cannot express; returns every violation.
    pub fn validate(&self) -> Result<(), OfferError> {
        let mut errors = Vec::new();
        let mut bad = |path: &str, msg: &str| errors.push(format!("{path}: {msg}"));
        if self.id.trim().is_empty() {
            bad("id", "is empty; give the offer a unique id");
        }
        if self.campaign_id.trim().is_empty() {
            bad("campaign_id", "is empty; name the campaign this offer belongs to");
        }
        if self.version == 0 {
            bad("version", "must be at least 1; raise it on every edit");
        }
        if self.channels.is_empty() {
            bad("channels", "is empty; list at least one of \"push\", \"stories\"");
        }
        if self.content.title.trim().is_empty() {
            bad("content.title", "is empty; every channel needs a title");
        }
        if self.discount.percent > 90 {
            bad("discount.percent", "is above 90; use a fixed reward for giveaways");
        }
        if self.discount.percent > 0 && self.discount.fixed_minor > 0 {
            bad("discount", "sets both percent and fixed_minor; keep one");
        }
        if !(0.0..=50.0).contains(&self.holdout_percent) {
            bad("holdout_percent", "must be between 0 and 50");
        }
        if self.ttl.is_zero() {
            bad("ttl", "is zero; offers need a validity, e.g. \"48h\"");
        }
        if self.priority <= 0.0 || !self.priority.is_finite() {
            bad("priority", "must be a positive number");
        }
        for (i, c) in self.eligibility.iter().enumerate() {
            if (c.feature == Feature::CategoryShare) != c.category.is_some() {
                bad(
                    &format!("eligibility[{i}].category"),
                    "is required for category_share and not allowed for other features",
                );
            }
            if !c.value.is_finite() {
                bad(&format!("eligibility[{i}].value"), "must be a finite number");
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(OfferError { id: self.id.clone(), errors })
        }
    }

    /// Whether `category` (of the triggering event) passes the trigger filter.
    pub fn trigger_matches<'a>(&self, mut categories: impl Iterator<Item = &'a str>) -> bool {
        match &self.trigger.category {
            None => true,
            Some(want) => categories.any(|c| c == want),
        }
    }

    /// The first condition that fails, if any.
    pub fn failing_condition(&self, profile: &Profile, now_ms: i64) -> Option<&Condition> {
        self.eligibility.iter().find(|c| !c.holds(profile, now_ms))
    }

    /// Renders `text` for `profile`.
    pub fn render(&self, text: &str, profile: &Profile) -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        let discount = if self.discount.percent > 0 {
            format!("{}%", self.discount.percent)
        } else {
            format!("{:.2}", self.discount.fixed_minor as f64 / 100.0)
        };
        text.replace("{favourite_category}", profile.favourite_category().unwrap_or("favourites"))
            .replace("{discount}", &discount)
    }
}

/// The live set of offers, indexed by trigger so an event only evaluates the
/// offers it can trigger. Immutable: a reload builds a new catalog and swaps it in.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    offers: HashMap<String, Arc<OfferDefinition>>,
    by_trigger: HashMap<TriggerEvent, Vec<Arc<OfferDefinition>>>,
}

impl Catalog {
    /// Builds a catalog from definitions (later duplicates replace earlier ones).
    pub fn new(defs: impl IntoIterator<Item = OfferDefinition>) -> Self {
        let mut catalog = Catalog::default();
        for d in defs {
            catalog.offers.insert(d.id.clone(), Arc::new(d));
        }
        catalog.reindex();
        catalog
    }

    fn reindex(&mut self) {
        self.by_trigger.clear();
        let mut live: Vec<_> = self.offers.values().filter(|d| d.status == Status::Active).cloned().collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        for d in live {
            self.by_trigger.entry(d.trigger.event).or_default().push(d);
        }
    }

    /// A copy with `def` added or replaced.
    pub fn with(&self, def: OfferDefinition) -> Self {
        let mut next = self.clone();
        next.offers.insert(def.id.clone(), Arc::new(def));
        next.reindex();
        next
    }

    /// A copy without offer `id`.
    pub fn without(&self, id: &str) -> Self {
        let mut next = self.clone();
        next.offers.remove(id);
        next.reindex();
        next
    }

    /// Active offers triggered by `event`, in id order.
    pub fn triggered_by(&self, event: TriggerEvent) -> &[Arc<OfferDefinition>] {
        self.by_trigger.get(&event).map_or(&[], Vec::as_slice)
    }

    /// An offer by id.
    pub fn get(&self, id: &str) -> Option<&OfferDefinition> {
        self.offers.get(id).map(Arc::as_ref)
    }

    /// All offers, in id order.
    pub fn all(&self) -> Vec<&OfferDefinition> {
        let mut v: Vec<_> = self.offers.values().map(Arc::as_ref).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_json() -> &'static str {
        r#"{
          "id": "sushi-comeback", "version": 1, "campaign_id": "reactivation",
          "trigger": {"event": "app_open"},
          "eligibility": [{"feature": "days_since_last_purchase", "op": "gte", "value": 21},
                          {"feature": "category_share", "category": "sushi", "op": "gte", "value": 0.2}],
          "channels": ["push", "stories"],
          "content": {"title": "Missing {favourite_category}?", "body": "{discount} off tonight"},
          "discount": {"percent": 10}, "category": "sushi",
          "expected_margin_minor": 600, "contact_cost_minor": 1, "holdout_percent": 10, "ttl": "48h"
        }"#
    }

    #[test]
    fn parses_a_valid_document() {
        let d = OfferDefinition::parse("k", sample_json().as_bytes()).unwrap();
        assert_eq!(d.ttl, Duration::from_secs(48 * 3600));
        assert_eq!(d.eligibility.len(), 2);
        let mut p = Profile::default();
        p.categories.push(crate::profile::CategoryAffinity { category: "sushi".into(), score: 1.0, as_of_day: 0 });
        assert_eq!(d.render(&d.content.title, &p), "Missing sushi?");
        assert_eq!(d.render(&d.content.body, &p), "10% off tonight");
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let json = sample_json()
            .replace(r#""version": 1"#, r#""version": 0"#)
            .replace(r#""percent": 10"#, r#""percent": 95"#)
            .replace(r#""category": "sushi", "op""#, r#""op""#);
        let err = OfferDefinition::parse("k", json.as_bytes()).unwrap_err();
        assert_eq!(err.id, "sushi-comeback");
        let joined = err.errors.join("\n");
        for path in ["version:", "discount.percent:", "eligibility[1].category:"] {
            assert!(joined.contains(path), "missing {path} in\n{joined}");
        }
        assert_eq!(err.errors.len(), 3);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_position() {
        let json = sample_json().replace(r#""ttl""#, r#""tll": "1h", "ttl""#);
        let err = OfferDefinition::parse("key-1", json.as_bytes()).unwrap_err();
        assert_eq!(err.id, "key-1");
        assert!(err.errors[0].contains("unknown field `tll`"), "{:?}", err.errors);
    }

    #[test]
    fn catalog_indexes_active_offers_by_trigger() {
        let d = OfferDefinition::parse("k", sample_json().as_bytes()).unwrap();
        let paused = OfferDefinition { id: "p".into(), status: Status::Paused, ..d.clone() };
        let c = Catalog::new([d.clone(), paused]);
        assert_eq!(c.triggered_by(TriggerEvent::AppOpen).len(), 1);
        assert!(c.triggered_by(TriggerEvent::Purchase).is_empty());
        assert!(c.without("sushi-comeback").triggered_by(TriggerEvent::AppOpen).is_empty());
        assert_eq!(c.all().len(), 2);
    }
}
