//! `cvm.toml`: one file for every component, with `CVM__<SECTION>__<KEY>`
//! environment overrides (e.g. `CVM__KAFKA__BROKERS=kafka:9092`). Unknown
//! keys are rejected with their path; [`Config::validate`] reports every
//! remaining problem at once.

use std::{net::SocketAddr, path::Path};

use cvm_engine::EngineConfig;
use cvm_kafka::KafkaConfig;
use cvm_store::StoreConfig;
use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Format.
    pub format: LogFormat,
    /// `tracing` filter, e.g. "info" or "cvm_kafka=debug,info"; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// The operations endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address serving `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9898)) }
    }
}

/// Model artifacts read from a directory (beside the config topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelDirConfig {
    /// Directory of `*.json` artifacts (`cvm train --out`); none by default.
    pub path: Option<std::path::PathBuf>,
    /// How often it is checked for new, changed and removed files.
    #[serde(with = "humantime_serde")]
    pub poll_interval: std::time::Duration,
}

impl Default for ModelDirConfig {
    fn default() -> Self {
        Self { path: None, poll_interval: std::time::Duration::from_secs(10) }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Brokers, topics, batching.
    pub kafka: KafkaConfig,
    /// RocksDB.
    pub store: StoreConfig,
    /// Decision core: holdouts, contact policy, model scoring.
    pub engine: EngineConfig,
    /// Model artifacts from a directory.
    pub model_dir: ModelDirConfig,
    /// Operations endpoint.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {source}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("{origin}: `{field}`: {message}")]
    Field {
        /// File or environment.
        origin: String,
        /// Path of the offending key.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Values are well-typed but unusable.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

const ENV_PREFIX: &str = "CVM__";

impl Config {
    /// Reads `path` (if given), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let origin = path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        let mut table: toml::Table = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: origin.clone(), source })?;
                text.parse().map_err(|source| ConfigError::Syntax { path: origin.clone(), source: Box::new(source) })?
            }
            None => toml::Table::new(),
        };
        let overrides: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        apply_overrides(&mut table, &overrides);
        let origin = if overrides.is_empty() { origin } else { format!("{origin} + CVM__ environment") };
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Field { origin, field: e.path().to_string(), message: e.inner().to_string() })?;
        match config.problems() {
            errors if errors.is_empty() => Ok(config),
            errors => Err(ConfigError::Invalid(errors)),
        }
    }

    /// Every problem serde cannot see, as `path: problem; fix`. Each
    /// section checks itself the same way (`problems(path)`).
    pub fn problems(&self) -> Vec<String> {
        let mut errors = self.kafka.problems("kafka");
        errors.extend(self.engine.problems("engine"));
        errors.extend(self.store.problems("store"));
        errors.extend(self.model_dir.problems("model_dir"));
        errors
    }
}

impl ModelDirConfig {
    /// Every problem, as `path: problem; fix`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.poll_interval.is_zero() {
            errors.push(format!("{path}.poll_interval: is zero; use e.g. \"10s\""));
        }
        errors
    }
}

/// `CVM__KAFKA__BROKERS=x` sets `kafka.brokers = "x"`. Values that parse as
/// TOML (numbers, booleans, arrays) keep their type; anything else is a string.
fn apply_overrides(table: &mut toml::Table, vars: &[(String, String)]) {
    for (key, raw) in vars {
        let path: Vec<String> = key[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut node = &mut *table;
        for part in &path[..path.len() - 1] {
            node = node
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("override path goes through a table");
        }
        node.insert(path[path.len() - 1].clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cvm.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(Some(&p))
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = parse("[kafka.topics.push]\nname = \"p\"\nformt = \"json\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kafka.topics.push"), "{msg}");
        assert!(msg.contains("formt"), "{msg}");
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let err =
            parse("[kafka]\npartitions = 0\nbrokers = \"\"\n[engine]\nglobal_control_percent = 80.0\n[engine.models]\nexploration_percent = 150.0\ndrift_window = 10\n").unwrap_err();
        let ConfigError::Invalid(errors) = err else { panic!("{err}") };
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("kafka.partitions:")));
        assert!(errors.iter().any(|e| e.starts_with("engine.models.exploration_percent: must be between 0 and 100")));
        assert!(errors.iter().any(|e| e.starts_with("engine.models.drift_window: must be at least 100")));
    }

    #[test]
    fn extreme_values_are_refused_with_their_path_not_a_panic() {
        let err = parse(
            "[store]\nblock_cache_mb = 9223372036854775807\nmemtable_budget_mb = 1\n\
             [engine.input]\nmax_event_age = \"0s\"\nmax_lines = 0\n\
             [engine.contact_policy]\ndefault_utc_offset_minutes = -2147483648\n",
        )
        .unwrap_err();
        let ConfigError::Invalid(errors) = err else { panic!("{err}") };
        for path in ["store:", "engine.input.max_event_age:", "engine.input.max_lines:", "default_utc_offset_minutes:"]
        {
            assert!(errors.iter().any(|e| e.contains(path)), "{path} missing in {errors:?}");
        }
    }

    #[test]
    fn managed_librdkafka_options_are_refused() {
        let err = parse("[kafka.consumer]\n\"enable.auto.offset.store\" = \"true\"\n").unwrap_err();
        assert!(err.to_string().contains("managed by cvm"), "{err}");
    }

    #[test]
    fn example_config_in_deploy_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cvm.toml");
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.kafka.topics.app.format, cvm_proto::Format::Json);
        assert_eq!(c.engine, EngineConfig::default());
        assert_eq!(c.store.path, StoreConfig::default().path);
        assert_eq!(c.kafka.batch_max_wait, KafkaConfig::default().batch_max_wait);
        assert_eq!(c.kafka.watermark_idle_timeout, KafkaConfig::default().watermark_idle_timeout);
        assert_eq!(c.model_dir, ModelDirConfig::default());
    }

    /// The `cvm.toml` of deploy/k8s/configmap.yaml: the indented block
    /// under its `cvm.toml: |` key.
    fn kubernetes_config() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/configmap.yaml");
        let yaml = std::fs::read_to_string(path).unwrap();
        let block = yaml.split_once("cvm.toml: |\n").expect("configmap has a cvm.toml block").1;
        block
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| l.trim_start_matches("    "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn kubernetes_config_is_valid_and_fits_the_pod() {
        let c = parse(&kubernetes_config()).unwrap();
        assert_eq!(
            c.store.path,
            Path::new("/var/lib/cvm/state"),
            "the StatefulSet's volume is mounted at /var/lib/cvm"
        );
        assert_eq!(c.http.listen.port(), 9898, "the probes and scrapes use port 9898");
        assert!(c.http.listen.ip().is_unspecified(), "the kubelet and Prometheus reach the pod from outside");
        // The memory limit (1536Mi) holds the RocksDB budget plus ~300 MiB.
        assert!(c.store.block_cache_mb + 300 <= 1536 * 9 / 10, "{}", c.store.block_cache_mb);
    }

    #[test]
    fn environment_overrides_keep_types() {
        let mut t: toml::Table = "[kafka]\nbrokers = \"a:1\"\n".parse().unwrap();
        apply_overrides(
            &mut t,
            &[("CVM__KAFKA__BROKERS".into(), "b:2".into()), ("CVM__KAFKA__PARTITIONS".into(), "3".into())],
        );
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!((c.kafka.brokers.as_str(), c.kafka.partitions), ("b:2", 3));
    }
}
