//! Model artifacts from a directory, beside the config topic.
//!
//! `cvm train --out DIR/name.json` (or any deployment tool) drops an
//! artifact into the directory; the watcher notices new, changed and
//! removed files and applies them exactly like config-topic documents:
//! checked (feature schema, versions that only go up), swapped into the
//! catalog atomically, the last good version kept when one is refused.
//! Write files atomically (to a temporary name, then rename) so that a
//! half-written file is never read; one that is read anyway fails its
//! check and is retried when it changes again.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use cvm_engine::{catalog::LiveCatalog, ConfigDocument};
use tracing::warn;

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What the watcher has applied from each file: its modification time and key.
#[derive(Debug)]
pub struct ModelDirectory {
    dir: PathBuf,
    applied: HashMap<PathBuf, (SystemTime, Option<String>)>,
}

impl ModelDirectory {
    /// A watcher of `dir` (`*.json` files).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), applied: HashMap::new() }
    }

    /// Applies new, changed and removed artifacts to `catalog`; returns the
    /// number of files whose state changed.
    pub fn scan(&mut self, catalog: &LiveCatalog) -> usize {
        let mut present = HashMap::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "json") {
                        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                            present.insert(path, modified);
                        }
                    }
                }
            }
            Err(e) => warn!(dir = %self.dir.display(), error = %e, "Model directory unreadable; models unchanged."),
        }
        let mut changed = 0;
        let removed: Vec<PathBuf> = self.applied.keys().filter(|p| !present.contains_key(*p)).cloned().collect();
        for path in removed {
            if let Some((_, Some(key))) = self.applied.remove(&path) {
                catalog.apply(&key, None, wall_ms());
                changed += 1;
            }
        }
        for (path, modified) in present {
            if self.applied.get(&path).is_some_and(|(m, _)| *m == modified) {
                continue;
            }
            changed += 1;
            let key = std::fs::read(&path).ok().and_then(|bytes| {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                match ConfigDocument::parse_file(&name, &bytes) {
                    Ok(doc) => {
                        let key = doc.key();
                        let status = catalog.apply(&key, Some(&bytes), wall_ms());
                        status.accepted.then_some(key)
                    }
                    Err(e) => {
                        warn!(file = %path.display(), errors = ?e.errors, "Model artifact refused; the last good model keeps scoring.");
                        None
                    }
                }
            });
            self.applied.insert(path, (modified, key));
        }
        changed
    }

    /// Scans every `every` until `stop`.
    pub fn watch(mut self, catalog: &LiveCatalog, stop: &AtomicBool, every: Duration) {
        while !stop.load(Ordering::Relaxed) {
            let mut waited = Duration::ZERO;
            while waited < every && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            self.scan(catalog);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_applied_swapped_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = LiveCatalog::default();
        let mut watcher = ModelDirectory::new(dir.path());
        assert_eq!(watcher.scan(&catalog), 0);
        let artifact =
            serde_json::to_value(cvm_engine::models::ModelArtifact::constant("o", 1, 0.0, Some(-1.0), 1_000.0))
                .unwrap();
        let file = dir.path().join("o.json");
        std::fs::write(&file, artifact.to_string()).unwrap();
        assert_eq!(watcher.scan(&catalog), 1);
        assert_eq!(catalog.current().running_version("model/offer/o"), Some(1));
        // A newer version swaps in; a file trained on other features is refused.
        let mut v2 = artifact.clone();
        v2["version"] = 2.into();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, v2.to_string()).unwrap();
        watcher.scan(&catalog);
        assert_eq!(catalog.current().running_version("model/offer/o"), Some(2));
        let mut bad = v2.clone();
        bad["version"] = 3.into();
        bad["features"]["hash"] = "0000000000000000".into();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, bad.to_string()).unwrap();
        watcher.scan(&catalog);
        assert_eq!(catalog.current().running_version("model/offer/o"), Some(2), "the last good model keeps scoring");
        std::fs::write(&file, v2.to_string()).unwrap();
        watcher.scan(&catalog);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(watcher.scan(&catalog), 1);
        assert_eq!(catalog.current().running_version("model/offer/o"), None);
    }
}
