//! The running catalog and the rule for taking in published documents:
//! shared by every source of documents (the config topic, the model
//! directory), so they all accept and refuse alike.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use cvm_proto::v1::ConfigStatus;
use metrics::{counter, gauge};
use tracing::{info, warn};

use super::{document_kind, Catalog, ConfigDocument};
use crate::{offers::OfferError, telemetry};

/// The running catalog, shared between the config-topic reader, the model
/// directory and the ingest loop. Each update bumps a generation so readers
/// notice changes cheaply.
#[derive(Debug, Clone, Default)]
pub struct LiveCatalog {
    inner: Arc<RwLock<Snapshot>>,
    /// Keys whose latest document was rejected (kind, key): what the
    /// `cvm_config_documents_rejected` gauge counts, until a good version
    /// or a deletion follows.
    rejected: Arc<Mutex<BTreeSet<(&'static str, String)>>>,
}

/// One state of a [`LiveCatalog`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bumped by every update.
    pub generation: u64,
    /// The catalog.
    pub catalog: Arc<Catalog>,
}

impl LiveCatalog {
    /// The current generation and catalog.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.read().expect("catalog lock poisoned").clone()
    }

    /// The current catalog.
    pub fn current(&self) -> Arc<Catalog> {
        self.snapshot().catalog
    }

    /// Changes the catalog with `f`: in place while no snapshot of it is
    /// held (e.g. while the config topic is read at start), else in a copy
    /// that replaces it.
    pub fn update(&self, f: impl FnOnce(&mut Catalog)) {
        let mut g = self.inner.write().expect("catalog lock poisoned");
        f(Arc::make_mut(&mut g.catalog));
        gauge!(telemetry::OFFERS_ACTIVE).set(g.catalog.len() as f64);
        g.generation += 1;
    }

    /// Notes whether the latest document under `key` was rejected, and sets
    /// the gauge of rejected documents of its kind.
    fn note_rejected(&self, key: &str, rejected: bool) {
        let kind = document_kind(key);
        let mut keys = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if rejected { keys.insert((kind, key.to_owned())) } else { keys.remove(&(kind, key.to_owned())) };
        if changed || rejected {
            let n = keys.iter().filter(|(k, _)| *k == kind).count();
            gauge!(telemetry::CONFIG_DOCUMENTS_REJECTED, "kind" => kind).set(n as f64);
        }
    }

    /// Takes in the document published under `key` (`None` or empty:
    /// deleted), wherever it came from: parsed and checked, and accepted only
    /// if its version supersedes the running one; a refused document leaves
    /// the last good version running. Returns the status to publish, stamped `at_ms`.
    pub fn apply(&self, key: &str, value: Option<&[u8]>, at_ms: i64) -> ConfigStatus {
        let Some(bytes) = value.filter(|v| !v.is_empty()) else {
            self.update(|c| c.remove(key));
            counter!(telemetry::CONFIG_DOCUMENTS, "kind" => document_kind(key), "result" => "deleted").increment(1);
            self.note_rejected(key, false);
            info!(key, "Config document deleted.");
            return ConfigStatus {
                offer_definition_id: key.to_owned(),
                accepted: true,
                version: 0,
                errors: vec![],
                at_ms,
            };
        };
        let current = self.current();
        let checked = ConfigDocument::parse(key, bytes).and_then(|doc| match current.version_of(key, &doc) {
            Some((running, same)) if doc.version() < running || (doc.version() == running && !same) => {
                Err(OfferError {
                    id: key.to_owned(),
                    errors: vec![format!(
                        "version: {} does not supersede running version {running}; raise the version on every edit",
                        doc.version(),
                    )],
                })
            }
            _ => Ok(doc),
        });
        match checked {
            Ok(doc) => {
                let version = doc.version();
                info!(key, version, "Config document accepted.");
                // Not held while updating, so that it can update in place.
                drop(current);
                if let ConfigDocument::Model(model) = &doc {
                    gauge!(telemetry::MODEL_VERSION, "model" => model.target.clone()).set(f64::from(model.version));
                    // A new artifact starts with a fresh drift monitor.
                    gauge!(telemetry::MODEL_DRIFTED, "model" => model.target.clone()).set(0.0);
                    // From zero, so the series is there before the first fallback.
                    counter!(telemetry::MODEL_FALLBACKS, "model" => model.target.clone()).increment(0);
                }
                self.update(|c| c.insert(doc));
                counter!(telemetry::CONFIG_DOCUMENTS, "kind" => document_kind(key), "result" => "accepted")
                    .increment(1);
                self.note_rejected(key, false);
                ConfigStatus { offer_definition_id: key.to_owned(), accepted: true, version, errors: vec![], at_ms }
            }
            Err(e) => {
                warn!(key, errors = ?e.errors, "Config document rejected; the last good version keeps running.");
                counter!(telemetry::CONFIG_DOCUMENTS, "kind" => document_kind(key), "result" => "rejected")
                    .increment(1);
                self.note_rejected(key, true);
                ConfigStatus {
                    offer_definition_id: key.to_owned(),
                    accepted: false,
                    version: current.running_version(key).unwrap_or(0),
                    errors: e.errors,
                    at_ms,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u32, title: &str) -> Vec<u8> {
        format!(
            "id: o1\nversion: {version}\ncampaign_id: c\ntrigger: {{ kind: event, event: app_open }}\n\
             channels: {{ push: {{ title: \"{title}\", body: hi }} }}\neconomics: {{ margin_per_redemption_minor: 100 }}\n"
        )
        .into_bytes()
    }

    #[test]
    fn bad_document_is_rejected_and_the_good_version_keeps_running() {
        let catalog = LiveCatalog::default();
        assert!(catalog.apply("o1", Some(&doc(1, "hello")), 0).accepted);
        let bad = catalog.apply("o1", Some(&doc(2, "")), 0);
        assert!(!bad.accepted);
        assert_eq!(bad.version, 1, "status names the version still running");
        assert!(bad.errors[0].starts_with("channels.push.title: is empty"), "{:?}", bad.errors);
        let title = |c: &LiveCatalog| c.current().get("o1").unwrap().doc.channels.push.clone().unwrap().title;
        assert_eq!(title(&catalog), "hello");

        let stale = catalog.apply("o1", Some(&doc(1, "changed")), 0);
        assert!(stale.errors[0].starts_with("version:"), "{:?}", stale.errors);
        let wrong_key = catalog.apply("other", Some(&doc(3, "x")), 0);
        assert!(wrong_key.errors[0].starts_with("id:"));

        assert!(catalog.apply("o1", Some(&doc(2, "edited")), 0).accepted);
        assert_eq!(catalog.current().get("o1").unwrap().version(), 2);
        assert_eq!(title(&catalog), "edited");
        assert!(catalog.apply("o1", None, 0).accepted);
        assert!(catalog.current().get("o1").is_none(), "tombstone deletes");
    }

    #[test]
    fn every_document_kind_is_a_label_started_at_zero() {
        for key in ["o1", "campaign/c", "policy/global", "model/offer/o1", "model/campaign/c"] {
            assert!(telemetry::DOCUMENT_KINDS.contains(&document_kind(key)), "{key}");
        }
    }

    #[test]
    fn a_key_counts_as_rejected_until_a_good_version_or_a_deletion_follows() {
        let catalog = LiveCatalog::default();
        let rejected = |c: &LiveCatalog| {
            c.rejected.lock().unwrap().iter().map(|(k, key)| format!("{k} {key}")).collect::<Vec<_>>()
        };
        assert!(catalog.apply("o1", Some(&doc(1, "hello")), 0).accepted);
        assert!(!catalog.apply("o1", Some(&doc(2, "")), 0).accepted);
        assert!(!catalog.apply("campaign/c", Some(b"not: [a campaign"), 0).accepted);
        assert_eq!(rejected(&catalog), ["campaign campaign/c", "offer o1"]);
        assert!(!catalog.apply("o1", Some(&doc(2, "")), 0).accepted, "rejected again: counted once");
        assert_eq!(rejected(&catalog).len(), 2);
        assert!(catalog.apply("o1", Some(&doc(2, "fixed")), 0).accepted);
        assert!(catalog.apply("campaign/c", None, 0).accepted);
        assert!(rejected(&catalog).is_empty());
    }

    #[test]
    fn a_held_snapshot_never_changes_and_updates_reach_the_next_one() {
        use crate::{events::EventKind, features::EventFacts};
        let live = LiveCatalog::default();
        assert!(live.apply("o1", Some(&doc(1, "first")), 0).accepted);
        let held = live.snapshot();
        let triggered = |c: &Catalog| c.triggered_by(EventKind::AppOpen, &EventFacts::default()).len();
        assert_eq!(triggered(&held.catalog), 1, "the index is built from the offers");
        assert!(live.apply("o1", None, 0).accepted);
        assert_eq!(triggered(&held.catalog), 1, "the held catalog is a copy's original");
        assert_eq!(held.catalog.get("o1").unwrap().version(), 1);
        let next = live.snapshot();
        assert!(next.generation > held.generation);
        assert_eq!(triggered(&next.catalog), 0, "the index follows the removal");
        drop((held, next));
        assert!(live.apply("o1", Some(&doc(2, "second")), 0).accepted);
        assert_eq!(triggered(&live.current()), 1, "updated in place, the index too");
    }
}
