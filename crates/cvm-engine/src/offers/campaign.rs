//! The other documents of the config topic: campaigns (key
//! `campaign/<id>`) and the global contact policy (key `policy/global`).
//!
//! A campaign document sets what is per campaign rather than per offer: the
//! holdout share, the attribution window and contact-policy overrides for
//! all its offers. Offers of a campaign without a document use the engine's
//! defaults. Both kinds are checked like offers: a bad one is rejected with
//! field paths while the last good version keeps running.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{OfferDefinition, OfferError};
use crate::{
    models::{ModelArtifact, MODEL_KEY_PREFIX},
    policy::PolicyOverride,
};

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

/// Any document of the config topic.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigDocument {
    /// An offer (key = its id).
    Offer(Box<OfferDefinition>),
    /// A campaign (key = `campaign/<id>`).
    Campaign(CampaignDocument),
    /// The global contact policy (key = `policy/global`).
    Policy(PolicyDocument),
    /// A trained model (key = `model/offer/<id>` or `model/campaign/<id>`).
    Model(Box<ModelArtifact>),
}

impl ConfigDocument {
    /// Parses and checks the document published under `key`; its kind
    /// follows from the key, and its id must give that key back.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, OfferError> {
        let (doc, mut errors) = if key.starts_with(CAMPAIGN_KEY_PREFIX) {
            let doc: CampaignDocument = parse_document(key, bytes)?;
            let errors = doc.problems();
            (Self::Campaign(doc), errors)
        } else if key.starts_with(MODEL_KEY_PREFIX) {
            let doc: ModelArtifact = parse_document(key, bytes)?;
            let errors = doc.problems();
            (Self::Model(Box::new(doc)), errors)
        } else if key == POLICY_KEY {
            let doc: PolicyDocument = parse_document(key, bytes)?;
            let mut errors = doc.contact_policy.problems("contact_policy");
            errors.extend(version_problem(doc.version));
            (Self::Policy(doc), errors)
        } else {
            (Self::Offer(Box::new(OfferDefinition::parse(key, bytes)?)), Vec::new())
        };
        if doc.key() != key {
            errors.push(format!(
                "id: the document belongs under key \"{}\", not \"{key}\"; publish it under that key",
                doc.key()
            ));
        }
        if errors.is_empty() {
            Ok(doc)
        } else {
            Err(OfferError { id: key.into(), errors })
        }
    }

    /// Parses a document from a file: its `kind` field (`campaign`,
    /// `contact_policy`, or none for an offer) says which it is.
    pub fn parse_file(name: &str, bytes: &[u8]) -> Result<Self, OfferError> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            kind: Option<String>,
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            scope: Option<String>,
            #[serde(default)]
            target: Option<String>,
        }
        let peek: Option<Peek> = std::str::from_utf8(bytes).ok().and_then(|t| serde_norway::from_str(t).ok());
        let (kind, id, scope, target) = peek.map_or((None, None, None, None), |p| (p.kind, p.id, p.scope, p.target));
        let key = match (kind.as_deref(), id) {
            (Some("model"), _) => format!(
                "{MODEL_KEY_PREFIX}{}/{}",
                scope.as_deref().unwrap_or("offer"),
                target.as_deref().unwrap_or(name)
            ),
            (Some("campaign"), Some(id)) => format!("{CAMPAIGN_KEY_PREFIX}{id}"),
            (Some("contact_policy"), _) => POLICY_KEY.to_owned(),
            (_, Some(id)) => id,
            (_, None) => name.to_owned(),
        };
        Self::parse(&key, bytes)
    }

    /// The config-topic key the document is published under.
    pub fn key(&self) -> String {
        match self {
            Self::Offer(d) => d.id().to_owned(),
            Self::Campaign(c) => format!("{CAMPAIGN_KEY_PREFIX}{}", c.id),
            Self::Policy(_) => POLICY_KEY.to_owned(),
            Self::Model(m) => m.key(),
        }
    }

    /// The document's version.
    pub fn version(&self) -> u32 {
        match self {
            Self::Offer(d) => d.version(),
            Self::Campaign(c) => c.version,
            Self::Policy(p) => p.version,
            Self::Model(m) => m.version,
        }
    }
}

impl CampaignDocument {
    fn problems(&self) -> Vec<String> {
        let mut out = self.contact_policy.problems("contact_policy");
        out.extend(version_problem(self.version));
        if !(0.0..=50.0).contains(&self.holdout_percent) {
            out.push("holdout_percent: must be between 0 and 50".into());
        }
        if self.attribution_window.is_zero() {
            out.push("attribution_window: is zero; purchases could never be attributed; use e.g. \"7d\"".into());
        }
        out
    }
}

/// The problem with a document version, if it has one.
fn version_problem(version: u32) -> Option<String> {
    (version == 0).then(|| "version: must be at least 1; raise it on every edit".to_owned())
}

/// Deserializes a document (JSON when it starts with `{`, else YAML) with
/// field paths in errors; `key` names it in errors.
pub(crate) fn parse_document<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, OfferError> {
    let fail = |msg: String| OfferError { id: key.to_owned(), errors: vec![msg] };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_artifacts_from_another_feature_schema_are_refused() {
        let mut model = crate::models::tests::artifact("sushi-comeback");
        let good = serde_json::to_vec(&model).unwrap();
        let doc = ConfigDocument::parse("model/offer/sushi-comeback", &good).unwrap();
        assert_eq!(doc.key(), "model/offer/sushi-comeback");
        assert_eq!(ConfigDocument::parse_file("m.json", &good).unwrap().key(), doc.key());
        model.features.hash = "0123456789abcdef".into();
        model.treated.weights.pop();
        let e = ConfigDocument::parse("model/offer/sushi-comeback", &serde_json::to_vec(&model).unwrap()).unwrap_err();
        assert!(
            e.errors[0].starts_with("features.hash: the model was trained on feature schema 0123456789abcdef"),
            "{e}"
        );
        assert!(e.errors.iter().any(|x| x.starts_with("treated.weights: has 18 numbers")), "{e}");
        let e = ConfigDocument::parse("model/offer/other", &good).unwrap_err();
        assert!(e.errors[0].starts_with("id: the document belongs under key \"model/offer/sushi-comeback\""), "{e}");
    }

    #[test]
    fn campaign_documents_are_checked_with_field_paths() {
        let good = "kind: campaign\nid: spring\nversion: 1\nholdout_percent: 10\ncontact_policy:\n  caps: [{channel: push, max: 2, window: 7d}]\n  quiet_hours: {from: \"22:00\", to: \"07:30\"}\n";
        let ConfigDocument::Campaign(c) = ConfigDocument::parse("campaign/spring", good.as_bytes()).unwrap() else {
            panic!("not a campaign")
        };
        assert_eq!(c.contact_policy.caps[0].max, 2);
        assert_eq!(ConfigDocument::parse_file("x.yaml", good.as_bytes()).unwrap().key(), "campaign/spring");
        let bad = good.replace("holdout_percent: 10", "holdout_percent: 80").replace("07:30", "7:30");
        let e = ConfigDocument::parse("campaign/spring", bad.as_bytes()).unwrap_err();
        assert!(e.errors[0].starts_with("contact_policy.quiet_hours.to: "), "{e}");
        let e = ConfigDocument::parse("campaign/spring", good.replace("10", "80").as_bytes()).unwrap_err();
        assert_eq!(e.errors, vec!["holdout_percent: must be between 0 and 50".to_string()]);
        let e = ConfigDocument::parse("campaign/other", good.as_bytes()).unwrap_err();
        assert!(e.errors[0].starts_with("id: "), "{e}");
        // Offers too: the key must be the id.
        let offer = super::super::definition::tests::SAMPLE_YAML.as_bytes();
        assert!(ConfigDocument::parse("sushi-comeback", offer).is_ok());
        let e = ConfigDocument::parse("other-offer", offer).unwrap_err();
        assert!(e.errors[0].starts_with("id: the document belongs under key \"sushi-comeback\""), "{e}");
    }
}
