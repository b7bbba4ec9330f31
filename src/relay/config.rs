//! The relay's configuration: the `STAGEGATE_*` variables of docs/integration-protocol.md §1.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::delivery::signature::WebhookSecret;
use crate::manifest::Manifest;

/// Deliberate defects, for proving that the gate catches them. Never set in
/// production; `stagegate run` reports them when set.
pub const FAULTS_VARIABLE: &str = "STAGEGATE_RELAY_FAULTS";

/// Moves the relay's breaker across the protocol's tolerances (tests of the gate only);
/// see [`super::breaker::BreakerTuning`].
pub const TUNING_VARIABLE: &str = "STAGEGATE_RELAY_TUNING";

/// The defects the relay can be told to have, by name. Test-only, like the variable;
/// the kill-switch ones break it in known ways:
///
/// - `never_trip`: no breaker; keeps hammering the ATS through an outage, tells nobody;
/// - `drop_undeliverable`: forgets an event after a few failed attempts;
/// - `trip_low`: trips at a tenth of the thresholds, on the first failures;
/// - `volatile_queue`: wipes its state folder at start, losing the queue on restart.
pub const KNOWN_FAULTS: &[&str] = &[
    "no_dedupe",
    "no_signature_check",
    "slow_ack",
    "no_stale_check",
    "ignore_canary",
    "rewrite_key",
    "log_pii",
    "no_log_fields",
    "drop_events",
    "never_trip",
    "drop_undeliverable",
    "trip_low",
    "volatile_queue",
    "flip_outcome",
    "shadow_missing_field",
    "shadow_bad_enum",
    "shadow_future_time",
    "shadow_unknown_type",
    "grant_before_result",
    "grant_on_failed",
    "no_stage_dedupe",
    "wrong_exception_owner",
    "no_step_up_exception",
    "slow_fanout",
    "no_ats_signature_check",
    "reconcile_from_webhooks",
    "pause_gates",
];

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable is not set.
    #[error(
        "{name} is not set (see docs/integration-protocol.md §1 for every STAGEGATE_* variable)"
    )]
    Missing {
        /// The variable.
        name: &'static str,
    },
    /// A variable's value is wrong.
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value (never a secret's).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest does not load.
    #[error("STAGEGATE_MANIFEST: cannot load {}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::manifest::ManifestError>,
    },
    /// The hiring policy does not load.
    #[error("STAGEGATE_POLICY: cannot load {}", path.display())]
    Policy {
        /// The policy.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::manifest::ManifestError>,
    },
    /// The state folder cannot be created.
    #[error("STAGEGATE_STATE_DIR: cannot create {}", path.display())]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// A mapper for `create_dir_all` failures on `path`.
    pub fn state_dir(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
        move |source| ConfigError::StateDir {
            path: path.to_owned(),
            source,
        }
    }
}

/// Everything the relay needs to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The ATS's base URL.
    pub ats_url: String,
    /// The ATS's bearer token.
    pub ats_token: String,
    /// The vendor's base URL.
    pub vendor_url: String,
    /// The vendor's bearer token.
    pub vendor_token: String,
    /// The vendor's webhook secret.
    pub vendor_secret: WebhookSecret,
    /// The ATS's webhook secret.
    pub ats_secret: WebhookSecret,
    /// The notification sink's base URL.
    pub notify_url: String,
    /// The manifest (canary scope, kill switch, log fields).
    pub manifest: Arc<Manifest>,
    /// The durable state folder.
    pub state_dir: PathBuf,
    /// How much faster than real time policy windows pass.
    pub time_scale: f64,
    /// Deliberate defects (tests of the gate only).
    pub faults: BTreeSet<String>,
    /// The breaker moved off its defaults (tests of the gate only).
    pub tuning: super::breaker::BreakerTuning,
    /// The hiring policy and its stages, when `STAGEGATE_POLICY` is set.
    pub policy: Option<Arc<RelayPolicy>>,
}

/// The hiring policy the relay enforces (`STAGEGATE_POLICY`, `STAGEGATE_POLICY_STAGES`).
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    /// The policy.
    pub policy: crate::manifest::policy::HiringPolicy,
    /// The stages in order.
    pub stages: Vec<String>,
}

impl RelayConfig {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<RelayConfig, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing { name })
        };
        let listen_text = match get(crate::protocol::env::LISTEN).filter(|v| !v.is_empty()) {
            Some(listen) => listen,
            None => format!("127.0.0.1:{}", required("PORT")?),
        };
        let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            name: crate::protocol::env::LISTEN,
            value: listen_text.clone(),
            reason: "expected IP:PORT such as 127.0.0.1:8080".into(),
        })?;
        let secret = |name: &'static str| -> Result<WebhookSecret, ConfigError> {
            required(name)?
                .parse()
                .map_err(
                    |err: crate::delivery::signature::SecretError| ConfigError::Invalid {
                        name,
                        value: "(secret not shown)".into(),
                        reason: err.to_string(),
                    },
                )
        };
        let manifest_path = PathBuf::from(required(crate::protocol::env::MANIFEST)?);
        let manifest = Manifest::load(&manifest_path)
            .map_err(|source| ConfigError::Manifest {
                path: manifest_path.clone(),
                source: Box::new(source),
            })?
            .value;
        let time_scale = match get(crate::protocol::env::TIME_SCALE).filter(|v| !v.is_empty()) {
            None => 1.0,
            Some(text) => match text.parse::<f64>() {
                Ok(scale) if scale.is_finite() && scale > 0.0 => scale,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: crate::protocol::env::TIME_SCALE,
                        value: text,
                        reason: "expected a number above 0, such as 60".into(),
                    });
                }
            },
        };
        let mut faults = BTreeSet::new();
        for fault in get(FAULTS_VARIABLE)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            if !KNOWN_FAULTS.contains(&fault) {
                return Err(ConfigError::Invalid {
                    name: FAULTS_VARIABLE,
                    value: fault.to_owned(),
                    reason: format!("known faults are {}", KNOWN_FAULTS.join(", ")),
                });
            }
            faults.insert(fault.to_owned());
        }
        let tuning_text = get(TUNING_VARIABLE).unwrap_or_default();
        let tuning = tuning_text.parse().map_err(|reason| ConfigError::Invalid {
            name: TUNING_VARIABLE,
            value: tuning_text.clone(),
            reason,
        })?;
        let policy = match get(crate::protocol::env::POLICY).filter(|v| !v.is_empty()) {
            None => None,
            Some(path) => {
                let path = PathBuf::from(path);
                let loaded =
                    crate::manifest::load_policy(&path).map_err(|source| ConfigError::Policy {
                        path: path.clone(),
                        source: Box::new(source),
                    })?;
                let stages =
                    match get(crate::protocol::env::POLICY_STAGES).filter(|v| !v.is_empty()) {
                        Some(text) => text.split(',').map(|s| s.trim().to_owned()).collect(),
                        None => crate::run::policy::DEFAULT_STAGES
                            .iter()
                            .map(|s| (*s).to_owned())
                            .collect(),
                    };
                Some(Arc::new(RelayPolicy {
                    policy: loaded.value,
                    stages,
                }))
            }
        };
        Ok(RelayConfig {
            listen,
            ats_url: required(crate::protocol::env::ATS_URL)?
                .trim_end_matches('/')
                .to_owned(),
            ats_token: required(crate::protocol::env::ATS_TOKEN)?,
            vendor_url: required(crate::protocol::env::VENDOR_URL)?
                .trim_end_matches('/')
                .to_owned(),
            vendor_token: required(crate::protocol::env::VENDOR_TOKEN)?,
            vendor_secret: secret(crate::protocol::env::VENDOR_WEBHOOK_SECRET)?,
            ats_secret: secret(crate::protocol::env::ATS_WEBHOOK_SECRET)?,
            notify_url: required(crate::protocol::env::NOTIFY_URL)?
                .trim_end_matches('/')
                .to_owned(),
            manifest: Arc::new(manifest),
            state_dir: PathBuf::from(required(crate::protocol::env::STATE_DIR)?),
            time_scale,
            faults,
            tuning,
            policy,
        })
    }

    /// Whether a deliberate defect is switched on.
    pub fn has_fault(&self, name: &str) -> bool {
        self.faults.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(dir: &Path) -> HashMap<&'static str, String> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/release-gate.yaml");
        HashMap::from([
            (crate::protocol::env::LISTEN, "127.0.0.1:0".to_owned()),
            (
                crate::protocol::env::ATS_URL,
                "http://127.0.0.1:1/".to_owned(),
            ),
            (crate::protocol::env::ATS_TOKEN, "a".to_owned()),
            (
                crate::protocol::env::VENDOR_URL,
                "http://127.0.0.1:2".to_owned(),
            ),
            (crate::protocol::env::VENDOR_TOKEN, "v".to_owned()),
            (
                crate::protocol::env::VENDOR_WEBHOOK_SECRET,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            ),
            (
                crate::protocol::env::ATS_WEBHOOK_SECRET,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            ),
            (
                crate::protocol::env::NOTIFY_URL,
                "http://127.0.0.1:3".to_owned(),
            ),
            (
                crate::protocol::env::MANIFEST,
                manifest.display().to_string(),
            ),
            (crate::protocol::env::STATE_DIR, dir.display().to_string()),
        ])
    }

    #[test]
    fn reads_the_protocol_variables() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vars = env(dir.path());
        let config = RelayConfig::from_env(|k| vars.get(k).cloned()).expect("complete");
        assert_eq!(
            config.ats_url, "http://127.0.0.1:1",
            "trailing slashes are trimmed"
        );
        assert_eq!(config.time_scale, 1.0, "real time when unset");
        assert!(config.faults.is_empty());
    }

    #[test]
    fn problems_name_the_variable() {
        let dir = tempfile::tempdir().expect("temp dir");
        // (variable, value or None to unset, expected message, why)
        let rows: [(&str, Option<&str>, &str, &str); 5] = [
            (
                crate::protocol::env::ATS_TOKEN,
                None,
                "STAGEGATE_ATS_TOKEN is not set",
                "a missing variable",
            ),
            (
                crate::protocol::env::LISTEN,
                Some("localhost"),
                "expected IP:PORT",
                "not a socket address",
            ),
            (
                crate::protocol::env::VENDOR_WEBHOOK_SECRET,
                Some("plain"),
                "(secret not shown)",
                "a secret is never echoed",
            ),
            (
                crate::protocol::env::TIME_SCALE,
                Some("0"),
                "above 0",
                "time cannot stop",
            ),
            (
                FAULTS_VARIABLE,
                Some("no_dedup"),
                "known faults are",
                "a misspelt defect",
            ),
        ];
        for (name, value, expected, why) in rows {
            let mut vars = env(dir.path());
            match value {
                Some(v) => {
                    vars.insert(name, v.to_owned());
                }
                None => {
                    vars.remove(name);
                }
            }
            let err = RelayConfig::from_env(|k| vars.get(k).cloned())
                .expect_err(why)
                .to_string();
            assert!(err.contains(expected), "{why}: {err}");
            assert!(
                !err.contains("MfKQ9r8G"),
                "{why}: secrets stay out of messages"
            );
        }
    }
}
