//! The live [`Catalog`]: every offer, campaign, the global policy and every
//! model, indexed for the decision path; and [`ConfigDocument`], any
//! document of the config topic, which a catalog takes in.

mod live;
mod trigger_index;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use serde::Deserialize;

pub use live::{LiveCatalog, Snapshot};
use trigger_index::TriggerIndex;

use crate::{
    events::EventKind,
    features::EventFacts,
    models::{artifact::CHALLENGER_KEY_SUFFIX, Model, ModelArtifact, Role, Scope, MODEL_KEY_PREFIX},
    offers::{
        campaign::{check_document_bounds, parse_document, version_problem},
        CampaignDocument, OfferDefinition, OfferError, PolicyDocument, Status, Trigger, CAMPAIGN_KEY_PREFIX,
        POLICY_KEY,
    },
};

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

/// The kind of document published under `key` (`offer`, `campaign`,
/// `policy` or `model`: [`crate::telemetry::DOCUMENT_KINDS`]), which the
/// key decides: a metric label that stays meaningful when the document
/// itself cannot be parsed.
pub fn document_kind(key: &str) -> &'static str {
    if key.starts_with(CAMPAIGN_KEY_PREFIX) {
        "campaign"
    } else if key.starts_with(MODEL_KEY_PREFIX) {
        "model"
    } else if key == POLICY_KEY {
        "policy"
    } else {
        "offer"
    }
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
        check_document_bounds(name, bytes)?;
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
            #[serde(default)]
            role: Option<String>,
        }
        let peek: Option<Peek> = std::str::from_utf8(bytes).ok().and_then(|t| serde_norway::from_str(t).ok());
        let (kind, id, scope, target, role) =
            peek.map_or((None, None, None, None, None), |p| (p.kind, p.id, p.scope, p.target, p.role));
        let key = match (kind.as_deref(), id) {
            (Some("model"), _) => format!(
                "{MODEL_KEY_PREFIX}{}/{}{}",
                scope.as_deref().unwrap_or("offer"),
                target.as_deref().unwrap_or(name),
                if role.as_deref() == Some("challenger") { CHALLENGER_KEY_SUFFIX } else { "" }
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

/// The live set of offers, indexed so that an event only looks at the offers
/// it can trigger or cancel. Shared immutably: a reload changes a copy (or
/// the catalog itself when nobody else holds it, see [`LiveCatalog`]) and
/// swaps it in. Only `active` offers are indexed; validity windows are
/// checked at decision time. The index is built when first used after a
/// change, so taking in 30,000 documents one by one does not rebuild it
/// 30,000 times.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    offers: HashMap<String, Arc<OfferDefinition>>,
    index: OnceLock<OfferIndex>,
    campaigns: HashMap<String, Arc<CampaignDocument>>,
    policy: Option<Arc<PolicyDocument>>,
    /// Models by config-topic key, and by what they score.
    models: HashMap<String, Arc<Model>>,
    offer_models: HashMap<String, Arc<Model>>,
    campaign_models: HashMap<String, Arc<Model>>,
    /// Challengers (shadow models) by what they score.
    offer_challengers: HashMap<String, Arc<Model>>,
    campaign_challengers: HashMap<String, Arc<Model>>,
}

/// What the decision path looks offers up by, derived from the offers.
#[derive(Debug, Clone, Default)]
struct OfferIndex {
    on_event: HashMap<EventKind, TriggerIndex>,
    delayed_by_start: HashMap<EventKind, TriggerIndex>,
    delayed_by_cancel: HashMap<EventKind, Vec<Arc<OfferDefinition>>>,
    inactivity: Vec<Arc<OfferDefinition>>,
    sweeps: Vec<Arc<OfferDefinition>>,
    /// Offers by [`crate::profile::contact_hash`] of their id.
    by_hash: HashMap<u64, Arc<OfferDefinition>>,
}

impl OfferIndex {
    fn build(offers: &HashMap<String, Arc<OfferDefinition>>) -> Self {
        let mut index = OfferIndex {
            by_hash: offers.values().map(|d| (d.subject().offer, d.clone())).collect(),
            ..Default::default()
        };
        let mut live: Vec<_> = offers.values().filter(|d| d.doc.status == Status::Active).cloned().collect();
        live.sort_by(|a, b| a.doc.id.cmp(&b.doc.id));
        for (rank, d) in (0..).zip(live) {
            match &d.doc.trigger {
                Trigger::Event { event, .. } => {
                    index.on_event.entry(*event).or_default().add(rank, d.clone(), d.filter())
                }
                Trigger::Delayed { event, cancel_on, .. } => {
                    index.delayed_by_start.entry(*event).or_default().add(rank, d.clone(), d.filter());
                    index.delayed_by_cancel.entry(*cancel_on).or_default().push(d);
                }
                Trigger::Inactivity { .. } => index.inactivity.push(d),
                Trigger::Sweep { .. } => index.sweeps.push(d),
            }
        }
        index
    }
}

impl Catalog {
    /// Builds a catalog from definitions (later duplicates replace earlier ones).
    pub fn new(defs: impl IntoIterator<Item = OfferDefinition>) -> Self {
        let mut catalog = Catalog::default();
        for d in defs {
            catalog.offers.insert(d.doc.id.clone(), Arc::new(d));
        }
        catalog
    }

    fn index(&self) -> &OfferIndex {
        self.index.get_or_init(|| OfferIndex::build(&self.offers))
    }

    /// A copy with `def` added or replaced.
    pub fn with(&self, def: OfferDefinition) -> Self {
        let mut next = self.clone();
        next.insert(ConfigDocument::Offer(Box::new(def)));
        next
    }

    /// A copy without offer `id`.
    pub fn without(&self, id: &str) -> Self {
        let mut next = self.clone();
        next.remove(id);
        next
    }

    /// A copy with `doc` added or replaced.
    pub fn with_document(&self, doc: ConfigDocument) -> Self {
        let mut next = self.clone();
        next.insert(doc);
        next
    }

    /// Adds or replaces `doc`.
    pub fn insert(&mut self, doc: ConfigDocument) {
        match doc {
            ConfigDocument::Offer(d) => {
                self.offers.insert(d.doc.id.clone(), Arc::new(*d));
                self.index = OnceLock::new();
            }
            ConfigDocument::Campaign(c) => {
                self.campaigns.insert(c.id.clone(), Arc::new(c));
            }
            ConfigDocument::Policy(p) => self.policy = Some(Arc::new(p)),
            ConfigDocument::Model(m) => {
                self.models.insert(m.key(), Arc::new(Model::new(*m)));
                self.index_models();
            }
        }
    }

    /// Removes the document published under config-topic `key`, if any.
    pub fn remove(&mut self, key: &str) {
        if let Some(id) = key.strip_prefix(CAMPAIGN_KEY_PREFIX) {
            self.campaigns.remove(id);
        } else if key == POLICY_KEY {
            self.policy = None;
        } else if key.starts_with(MODEL_KEY_PREFIX) {
            self.models.remove(key);
            self.index_models();
        } else if self.offers.remove(key).is_some() {
            self.index = OnceLock::new();
        }
    }

    fn index_models(&mut self) {
        for index in [
            &mut self.offer_models,
            &mut self.campaign_models,
            &mut self.offer_challengers,
            &mut self.campaign_challengers,
        ] {
            index.clear();
        }
        for m in self.models.values() {
            let a = m.artifact();
            let index = match (a.role, a.scope) {
                (Role::Champion, Scope::Offer) => &mut self.offer_models,
                (Role::Champion, Scope::Campaign) => &mut self.campaign_models,
                (Role::Challenger, Scope::Offer) => &mut self.offer_challengers,
                (Role::Challenger, Scope::Campaign) => &mut self.campaign_challengers,
            };
            index.insert(a.target.clone(), m.clone());
        }
    }

    /// The model that scores `offer`: its own, else its campaign's.
    pub fn model_for(&self, offer: &OfferDefinition) -> Option<&Arc<Model>> {
        self.offer_models.get(offer.id()).or_else(|| self.campaign_models.get(&offer.doc.campaign_id))
    }

    /// The challenger running in shadow for `offer`: its own, else its campaign's.
    pub fn challenger_for(&self, offer: &OfferDefinition) -> Option<&Arc<Model>> {
        self.offer_challengers.get(offer.id()).or_else(|| self.campaign_challengers.get(&offer.doc.campaign_id))
    }

    /// All models, in key order.
    pub fn models(&self) -> Vec<&Arc<Model>> {
        let mut v: Vec<_> = self.models.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, m)| m).collect()
    }

    /// A copy without the document published under config-topic `key`.
    pub fn without_key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.remove(key);
        next
    }

    /// The document under config-topic `key`, as `(version, same as doc)`.
    pub fn version_of(&self, key: &str, doc: &ConfigDocument) -> Option<(u32, bool)> {
        match doc {
            ConfigDocument::Offer(d) => self.get(key).map(|r| (r.version(), **r == **d)),
            ConfigDocument::Campaign(c) => {
                let id = key.strip_prefix(CAMPAIGN_KEY_PREFIX)?;
                self.campaigns.get(id).map(|r| (r.version, **r == *c))
            }
            ConfigDocument::Policy(p) => self.policy.as_ref().map(|r| (r.version, **r == *p)),
            ConfigDocument::Model(m) => self.models.get(key).map(|r| (r.artifact().version, r.artifact() == &**m)),
        }
    }

    /// The version running under config-topic `key`, if any.
    pub fn running_version(&self, key: &str) -> Option<u32> {
        if let Some(id) = key.strip_prefix(CAMPAIGN_KEY_PREFIX) {
            return self.campaigns.get(id).map(|c| c.version);
        }
        if key == POLICY_KEY {
            return self.policy.as_ref().map(|p| p.version);
        }
        if key.starts_with(MODEL_KEY_PREFIX) {
            return self.models.get(key).map(|m| m.artifact().version);
        }
        self.get(key).map(|d| d.version())
    }

    /// A campaign's document, if one was published.
    pub fn campaign(&self, id: &str) -> Option<&CampaignDocument> {
        self.campaigns.get(id).map(Arc::as_ref)
    }

    /// All campaign documents, in id order.
    pub fn campaigns(&self) -> Vec<&CampaignDocument> {
        let mut v: Vec<_> = self.campaigns.values().map(Arc::as_ref).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The global policy document, if one was published.
    pub fn policy(&self) -> Option<&PolicyDocument> {
        self.policy.as_deref()
    }

    /// Active offers an event of `kind` with `facts` may trigger at once,
    /// in id order: those whose filter could accept it (still to be tested).
    pub fn triggered_by(&self, kind: EventKind, facts: &EventFacts<'_>) -> Vec<&Arc<OfferDefinition>> {
        self.index().on_event.get(&kind).map_or_else(Vec::new, |index| index.candidates(facts))
    }

    /// Active delayed offers whose wait an event of `kind` with `facts` may
    /// start, in id order (their filters still to be tested).
    pub fn delayed_started_by(&self, kind: EventKind, facts: &EventFacts<'_>) -> Vec<&Arc<OfferDefinition>> {
        self.index().delayed_by_start.get(&kind).map_or_else(Vec::new, |index| index.candidates(facts))
    }

    /// Active delayed offers whose wait an event of `kind` may cancel.
    pub fn delayed_cancelled_by(&self, kind: EventKind) -> &[Arc<OfferDefinition>] {
        self.index().delayed_by_cancel.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// Active inactivity offers.
    pub fn inactivity(&self) -> &[Arc<OfferDefinition>] {
        &self.index().inactivity
    }

    /// Active sweep offers.
    pub fn sweeps(&self) -> &[Arc<OfferDefinition>] {
        &self.index().sweeps
    }

    /// An offer by the hash contacts store (any status).
    pub fn by_hash(&self, offer: u64) -> Option<&Arc<OfferDefinition>> {
        self.index().by_hash.get(&offer)
    }

    /// An offer by id (any status).
    pub fn get(&self, id: &str) -> Option<&Arc<OfferDefinition>> {
        self.offers.get(id)
    }

    /// Offers of any status.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether there are no offers.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// All offers, in id order.
    pub fn all(&self) -> Vec<&OfferDefinition> {
        let mut v: Vec<_> = self.offers.values().map(Arc::as_ref).collect();
        v.sort_by(|a, b| a.doc.id.cmp(&b.doc.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offers::{definition, OfferDocument, Status};

    #[test]
    fn catalog_indexes_active_offers_by_trigger() {
        let d = definition::tests::sample();
        let paused =
            OfferDefinition::compile(OfferDocument { id: "p".into(), status: Status::Paused, ..d.doc.clone() })
                .unwrap();
        let c = Catalog::new([d.clone(), paused]);
        let any = EventFacts::default();
        assert_eq!(c.triggered_by(EventKind::AppOpen, &any).len(), 1);
        assert!(c.triggered_by(EventKind::Purchase, &any).is_empty());
        assert!(c.without("sushi-comeback").triggered_by(EventKind::AppOpen, &any).is_empty());
        assert_eq!(c.all().len(), 2);
    }

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
        assert!(e.errors.iter().any(|x| x.starts_with("treated.weights: has 19 numbers")), "{e}");
        let e = ConfigDocument::parse("model/offer/other", &good).unwrap_err();
        assert!(e.errors[0].starts_with("id: the document belongs under key \"model/offer/sushi-comeback\""), "{e}");
    }

    #[test]
    fn an_uplift_model_must_show_it_beats_random_targeting_unless_forced() {
        let parse =
            |m: &ModelArtifact| ConfigDocument::parse("model/offer/sushi-comeback", &serde_json::to_vec(m).unwrap());
        let mut trained = crate::models::tests::artifact("sushi-comeback");
        trained.force = false;
        trained.metrics.qini = Some(-0.003);
        trained.metrics.qini_interval = Some([-0.011, 0.004]);
        let e = parse(&trained).unwrap_err();
        assert!(
            e.errors[0].starts_with("metrics.qini: -0.0030 on validation, 95 % interval -0.0110 to 0.0040: not shown to beat random targeting"),
            "{e}"
        );
        assert!(e.errors[0].contains("\"force\": true"), "says how to override: {e}");
        trained.metrics.qini_interval = None;
        assert!(parse(&trained).unwrap_err().errors[0].starts_with("metrics.qini_interval: missing"));
        trained.metrics.qini = Some(0.012);
        trained.metrics.qini_interval = Some([0.002, 0.021]);
        assert!(parse(&trained).is_ok(), "the interval lies above 0");
        trained.force = true;
        assert!(parse(&trained).is_ok(), "forced");
        // A propensity model (no control arm) has no uplift to show.
        let propensity = ModelArtifact { control: None, force: false, ..trained };
        assert!(parse(&propensity).is_ok());
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
        let offer = crate::offers::definition::tests::SAMPLE_YAML.as_bytes();
        assert!(ConfigDocument::parse("sushi-comeback", offer).is_ok());
        let e = ConfigDocument::parse("other-offer", offer).unwrap_err();
        assert!(e.errors[0].starts_with("id: the document belongs under key \"sushi-comeback\""), "{e}");
    }
}
