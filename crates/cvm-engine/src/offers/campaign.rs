//! The other documents of the config topic: campaigns (key
//! `campaign/<id>`) and the global contact policy (key `policy/global`).
//!
//! A campaign document sets what is per campaign rather than per offer: the
//! holdout share, the attribution window, contact-policy overrides for
//! all its offers and daily budgets. Offers of a campaign without a document use the engine's
//! defaults. Both kinds are checked like offers: a bad one is rejected with
//! field paths while the last good version keeps running.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::OfferError;
use crate::{budget::Budget, policy::PolicyOverride, time::duration_problem};

/// Config-topic key prefix of campaign documents.
pub const CAMPAIGN_KEY_PREFIX: &str = "campaign/";
/// Config-topic key of the global contact policy.
pub const POLICY_KEY: &str = "policy/global";

/// The `kind` of a campaign document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKind {
    /// Always `campaign`.
    Campaign,
}

/// A campaign: its holdout, attribution window and contact policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cvm campaign document")]
pub struct CampaignDocument {
    /// Always `campaign`.
    pub kind: CampaignKind,
    /// The campaign id offers name in `campaign_id`.
    pub id: String,
    /// Raised on every edit.
    pub version: u32,
    /// Percent (0-50) of the campaign's customers held out as its control
    /// group. Raising it only adds customers to the holdout.
    pub holdout_percent: f64,
    /// How long after a customer's first decision their purchases count
    /// toward the campaign (e.g. `7d`).
    #[serde(default = "seven_days", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub attribution_window: Duration,
    /// Contact-policy settings for all the campaign's offers.
    #[serde(default)]
    pub contact_policy: PolicyOverride,
    /// Daily limits on contacts or discount, spent on the opportunities
    /// with the highest expected value ([`crate::budget`]).
    #[serde(default, skip_serializing_if = "is_unlimited")]
    pub budget: Budget,
}

fn is_unlimited(budget: &Budget) -> bool {
    !budget.is_limited()
}

fn seven_days() -> Duration {
    Duration::from_secs(7 * 86_400)
}

/// The `kind` of the global policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Always `contact_policy`.
    ContactPolicy,
}

/// The global contact policy, overriding the engine's configured defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cvm global contact policy")]
pub struct PolicyDocument {
    /// Always `contact_policy`.
    pub kind: PolicyKind,
    /// Raised on every edit.
    pub version: u32,
    /// The settings; caps given here replace the configured global caps.
    pub contact_policy: PolicyOverride,
}

impl CampaignDocument {
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = self.contact_policy.problems("contact_policy");
        out.extend(self.budget.problems("budget"));
        out.extend(version_problem(self.version));
        if !(0.0..=50.0).contains(&self.holdout_percent) {
            out.push("holdout_percent: must be between 0 and 50".into());
        }
        if self.attribution_window.is_zero() {
            out.push("attribution_window: is zero; purchases could never be attributed; use e.g. \"7d\"".into());
        }
        out.extend(duration_problem("attribution_window", self.attribution_window));
        out
    }
}

/// The largest config document accepted, in bytes (a trained model is tens
/// of kilobytes; an offer a few hundred bytes).
pub const MAX_DOCUMENT_BYTES: usize = 512 << 10;

/// The deepest nesting of `[` and `{` a document may have: real documents
/// nest three or four deep; the YAML scanner slows down quadratically with
/// depth, so a megabyte of brackets would stall the config reader.
pub const MAX_DOCUMENT_NESTING: usize = 64;

/// Refuses a document larger than [`MAX_DOCUMENT_BYTES`] or nested deeper
/// than [`MAX_DOCUMENT_NESTING`] before it is parsed.
pub(crate) fn check_document_bounds(key: &str, bytes: &[u8]) -> Result<(), OfferError> {
    let fail = |message: String| Err(OfferError { id: key.to_owned(), errors: vec![message] });
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return fail(format!(
            "document: is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted; split it into several documents",
            bytes.len()
        ));
    }
    // Brackets inside quoted strings (CEL lists, say) count too: an
    // over-estimate that real documents stay far below.
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in bytes {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_DOCUMENT_NESTING {
        return fail(format!("document: brackets are nested {deepest} deep; at most {MAX_DOCUMENT_NESTING}"));
    }
    Ok(())
}

/// The problem with a document version, if it has one.
pub(crate) fn version_problem(version: u32) -> Option<String> {
    (version == 0).then(|| "version: must be at least 1; raise it on every edit".to_owned())
}

/// Deserializes a document (JSON when it starts with `{`, else YAML) with
/// field paths in errors; `key` names it in errors.
pub(crate) fn parse_document<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, OfferError> {
    let fail = |msg: String| OfferError { id: key.to_owned(), errors: vec![msg] };
    check_document_bounds(key, bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|e| fail(format!("document: not UTF-8 ({e}); save it as UTF-8")))?;
    let hint = "fix the document (schemas: schema/) and publish it again";
    let at = |path: String| if path == "." { "document".to_owned() } else { path };
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = at(e.path().to_string());
            fail(format!("{path}: {}; {hint}", e.into_inner()))
        })
    } else {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = at(e.path().to_string());
            fail(format!("{path}: {}; {hint}", e.into_inner()))
        })
    }
}
