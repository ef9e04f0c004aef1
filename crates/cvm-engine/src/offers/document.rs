//! The offer document as marketers write it (YAML or JSON).
//!
//! These types are the contract of the config topic: `deploy/offers/` has
//! examples and `schema/offer.schema.json` is generated from them (a test
//! keeps it in sync). Every field is documented here because those doc
//! comments become the JSON Schema's descriptions, which editors show.

use std::time::Duration;

use cvm_proto::v1::Channel;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{events::EventKind, policy::PolicyOverride};

/// One offer: who gets it, when, on which channel, with what reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cvm offer document")]
pub struct OfferDocument {
    /// Unique id (letters, digits, `-`, `_`, `.`); also the config-topic key.
    pub id: String,
    /// Raised on every edit; every decision records the version it used.
    pub version: u32,
    /// The campaign the offer belongs to: holdouts and reports are per campaign.
    pub campaign_id: String,
    /// `draft` and `paused` offers are never evaluated.
    #[serde(default)]
    pub status: Status,
    /// Start of validity, RFC 3339 (e.g. `2026-11-27T00:00:00Z`); absent = now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// End of validity, RFC 3339; absent = open-ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// What makes the offer a candidate.
    pub trigger: Trigger,
    /// CEL condition over the customer's features, e.g.
    /// `days_since_last_purchase > 30 && category_share("sushi") > 0.3`.
    /// Absent = everyone the trigger reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligibility: Option<String>,
    /// Content per channel; the offer may be sent on the channels present.
    pub channels: Channels,
    /// The customer's reward.
    #[serde(default)]
    pub reward: Reward,
    /// What a redemption earns and a contact costs.
    pub economics: Economics,
    /// The category the offer promotes; the score uses the customer's affinity to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Rule priority: among eligible offers, a higher priority wins before scores are compared.
    #[serde(default)]
    pub priority: i32,
    /// Business weight multiplying the offer's score (1 = neutral).
    #[serde(default = "one")]
    pub weight: f64,
    /// Contact-policy settings for this offer: caps counting its own
    /// contacts, and settings replacing the campaign's and global ones.
    #[serde(default, skip_serializing_if = "is_default")]
    pub contact_policy: PolicyOverride,
    /// How long a sent offer stays redeemable (e.g. `48h`).
    #[serde(default = "two_days", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
    /// If the push is not opened in time, follow up on another channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Cascade>,
}

fn one() -> f64 {
    1.0
}

fn is_default(p: &PolicyOverride) -> bool {
    *p == PolicyOverride::default()
}

fn two_days() -> Duration {
    Duration::from_secs(2 * 86_400)
}

fn hundred() -> u32 {
    100
}

/// Lifecycle of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being written; never evaluated.
    Draft,
    /// Live.
    #[default]
    Active,
    /// Temporarily off; pending timers of the offer fire as no-ops.
    Paused,
}

/// What makes an offer a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Right when an event arrives.
    Event {
        /// The event kind.
        event: EventKind,
        /// CEL condition on the event and profile, e.g. `event.category == "sushi"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// Some time after an event, unless a cancelling event comes first
    /// (abandoned cart: `add_to_cart`, then no `purchase` within 2 h). A new
    /// triggering event restarts the wait.
    Delayed {
        /// The event kind that starts the wait.
        event: EventKind,
        /// CEL condition on the starting event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// How long to wait, e.g. `2h`.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "String")]
        after: Duration,
        /// The event kind that cancels the wait.
        cancel_on: EventKind,
        /// CEL condition the cancelling event must meet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_filter: Option<String>,
    },
    /// When a customer has not purchased for `days` days. A timer is set at
    /// every purchase, so nobody is scanned.
    Inactivity {
        /// Days without a purchase.
        days: u32,
    },
    /// Once, for every known customer: a scan of the profiles of the
    /// partitions this instance owns, paced by a rate limit.
    Sweep {
        /// When to start, RFC 3339; absent = as soon as the offer is published.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// Profiles scanned per second, per instance.
        #[serde(default = "hundred")]
        rate_per_second: u32,
    },
}

/// Content per channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    /// Mobile push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushContent>,
    /// In-app stories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stories: Option<StoryContent>,
}

/// A push notification. Texts may use `{{variable}}` (any string or number
/// variable, e.g. `{{favourite_category}}`) and `{{discount}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushContent {
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Where a tap leads in the app.
    #[serde(default)]
    pub deep_link: String,
}

/// An in-app story, rendered by the app from a template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoryContent {
    /// The app's story template id.
    pub template: String,
    /// Headline (templated like push texts).
    #[serde(default)]
    pub title: String,
    /// Image URL.
    #[serde(default)]
    pub image_url: String,
    /// Call-to-action label (templated).
    pub call_to_action: String,
    /// Where the call to action leads.
    #[serde(default)]
    pub deep_link: String,
}

/// The reward: at most one of `percent`, `ladder_percent`, `fixed_minor`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reward {
    /// Percent off, 1-90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Discount steps in percent, ascending (e.g. `[5, 10, 15, 20]`): each
    /// renewed contact of the offer to a customer goes one step deeper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ladder_percent: Vec<u32>,
    /// A fixed reward (voucher, points) in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_minor: Option<i64>,
}

/// The economics the score and reports use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Economics {
    /// Margin of one redemption before the reward, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_per_redemption_minor: Option<i64>,
    /// CEL formula of the margin of one redemption in currency units, e.g.
    /// `avg_basket_margin_90d * 0.8`; instead of `margin_per_redemption_minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_formula: Option<String>,
    /// Cost of one contact (push fee, production), minor units.
    #[serde(default)]
    pub contact_cost_minor: i64,
}

/// "If the push is not opened within `after`, show it on `to` instead."
/// The follow-up is its own decision, linked to the push's, and obeys caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cascade {
    /// How long to wait for the push to be opened, e.g. `4h`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub after: Duration,
    /// The follow-up channel (needs content under `channels`).
    pub to: ChannelName,
}

/// A channel by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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

/// The JSON Schemas of the config topic's documents, pretty-printed:
/// `(file name, schema)` for offers, campaigns and the global policy.
pub fn json_schemas() -> [(&'static str, String); 3] {
    let pretty = |s: schemars::Schema| serde_json::to_string_pretty(&s).expect("schemas serialize") + "\n";
    [
        ("offer.schema.json", pretty(schemars::schema_for!(OfferDocument))),
        ("campaign.schema.json", pretty(schemars::schema_for!(super::campaign::CampaignDocument))),
        ("policy.schema.json", pretty(schemars::schema_for!(super::campaign::PolicyDocument))),
    ]
}

#[cfg(test)]
mod tests {
    /// `schema/*.schema.json` is what tools and editors validate against;
    /// it must match the types. Regenerate with
    /// `UPDATE_SCHEMA=1 cargo test -p cvm-engine committed_json_schema`.
    #[test]
    fn committed_json_schemas_are_current() {
        for (name, current) in super::json_schemas() {
            let path = format!("{}/../../schema/{name}", env!("CARGO_MANIFEST_DIR"));
            if std::env::var_os("UPDATE_SCHEMA").is_some() {
                std::fs::write(&path, &current).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == current,
                "schema/{name} is stale: run `UPDATE_SCHEMA=1 cargo test -p cvm-engine committed_json_schema`"
            );
        }
    }
}
