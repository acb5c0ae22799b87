//! The emulator's configuration: region, tenants with their users and keys,
//! how long each asynchronous transition takes, and how long tokens live.

use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Everything the emulator needs to start. Build it with [`Config::demo`] or
/// [`Config::from_yaml`], then adjust with the `with_*` setters or the public
/// fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    /// Region name used in every service catalog entry (e.g. `KR1`).
    pub region: String,
    /// Availability zone given to volumes created without one.
    pub availability_zone: String,
    pub tenants: Vec<TenantConfig>,
    pub transitions: Transitions,
    /// How long an issued token stays valid.
    pub token_lifetime: Duration,
    /// How far an SCP request's `Scp-Timestamp` may be from the emulator's
    /// clock, either way.
    pub scp_clock_skew: Duration,
}

/// One tenant (NHN) / project (Keystone v3) / account (SCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// 32 lower-case hex characters, like NHN's and Keystone's IDs.
    pub id: String,
    /// Project name in Keystone v3 (domain `Default`).
    pub name: String,
    pub users: Vec<UserConfig>,
    pub scp: Option<ScpConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// Keystone user ID; derived from the tenant and username when omitted.
    pub id: String,
    pub username: String,
    pub password: String,
    pub application_credentials: Vec<AppCredential>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCredential {
    pub id: String,
    pub secret: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScpConfig {
    pub access_key: String,
    pub secret_key: String,
    pub account_id: String,
}

/// How long each asynchronous transition takes. `Duration::ZERO` makes a
/// transition complete before the next request is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transitions {
    /// `creating` -> `available` (or `downloading`, for a volume made from
    /// an image).
    pub volume_create: Duration,
    /// `downloading` -> `available`: copying the image into a volume made
    /// from one.
    pub volume_download: Duration,
    /// `retyping` -> back to `available` / `in-use`.
    pub volume_retype: Duration,
    /// `deleting` -> gone.
    pub volume_delete: Duration,
    /// `extending` -> `available`.
    pub volume_extend: Duration,
    /// `attaching` -> `in-use` (admin API).
    pub volume_attach: Duration,
    /// `detaching` -> `available` (admin API).
    pub volume_detach: Duration,
    /// Image `queued` -> `saving` during an upload from a volume.
    pub image_queued: Duration,
    /// Image `saving` -> `active` (upload from a volume, or a file upload).
    /// A volume being uploaded stays `uploading` for `image_queued +
    /// image_saving`.
    pub image_saving: Duration,
}

impl Transitions {
    /// Every transition takes `d`.
    pub fn uniform(d: Duration) -> Transitions {
        Transitions {
            volume_create: d,
            volume_download: d,
            volume_retype: d,
            volume_delete: d,
            volume_extend: d,
            volume_attach: d,
            volume_detach: d,
            image_queued: d,
            image_saving: d,
        }
    }
}

impl Default for Transitions {
    fn default() -> Self {
        Transitions::uniform(DEFAULT_TRANSITION)
    }
}

pub const DEFAULT_TRANSITION: Duration = Duration::from_millis(300);
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
pub const DEFAULT_SCP_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Keystone v3 domain of every user and project.
pub const DOMAIN_ID: &str = "default";
pub const DOMAIN_NAME: &str = "Default";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// The two demo tenants `demo` and `partner` (see the README).
    pub fn demo() -> Config {
        let tenant = |id: &str, name: &str, appcreds: Vec<AppCredential>| TenantConfig {
            id: id.to_string(),
            name: name.to_string(),
            users: vec![UserConfig {
                id: derived_user_id(id, name),
                username: name.to_string(),
                password: format!("{name}-password"),
                application_credentials: appcreds,
            }],
            scp: Some(ScpConfig {
                access_key: format!("{name}-access-key"),
                secret_key: format!("{name}-secret-key"),
                account_id: format!("{name}-account"),
            }),
        };
        Config {
            region: "KR1".to_string(),
            availability_zone: "kr-pub-a".to_string(),
            tenants: vec![
                tenant(
                    "6cdebe3eb0094910bc41f1d42ebe4cb7",
                    "demo",
                    vec![AppCredential {
                        id: "demo-appcred".to_string(),
                        secret: "demo-appcred-secret".to_string(),
                        name: Some("demo-appcred".to_string()),
                    }],
                ),
                tenant("8989447062e04a818baf9e073fd04fa7", "partner", vec![]),
            ],
            transitions: Transitions::default(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            scp_clock_skew: DEFAULT_SCP_CLOCK_SKEW,
        }
    }

    pub fn from_yaml(s: &str) -> Result<Config, ConfigError> {
        serde_saphyr::from_str::<Config>(s).map_err(|e| ConfigError::Yaml(e.to_string()))
    }

    /// Every asynchronous transition takes `d` (`Duration::ZERO`: immediate).
    pub fn with_transitions(mut self, d: Duration) -> Config {
        self.transitions = Transitions::uniform(d);
        self
    }

    pub fn with_token_lifetime(mut self, d: Duration) -> Config {
        self.token_lifetime = d;
        self
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.id == id)
    }
}

/// A stable user ID, so that the same config always yields the same IDs.
fn derived_user_id(tenant_id: &str, username: &str) -> String {
    let digest = Sha256::digest(format!("user:{tenant_id}:{username}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

// ---- YAML form -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_region")]
    region: String,
    #[serde(default)]
    availability_zone: Option<String>,
    tenants: Vec<RawTenant>,
    #[serde(default)]
    transitions: RawTransitions,
    #[serde(default)]
    token_lifetime: Option<RawDuration>,
    #[serde(default)]
    scp_clock_skew: Option<RawDuration>,
}

fn default_region() -> String {
    "KR1".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    id: String,
    name: String,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    scp: Option<ScpConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    #[serde(default)]
    id: Option<String>,
    username: String,
    password: String,
    #[serde(default)]
    application_credentials: Vec<AppCredential>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransitions {
    default: Option<RawDuration>,
    volume_create: Option<RawDuration>,
    volume_download: Option<RawDuration>,
    volume_retype: Option<RawDuration>,
    volume_delete: Option<RawDuration>,
    volume_extend: Option<RawDuration>,
    volume_attach: Option<RawDuration>,
    volume_detach: Option<RawDuration>,
    image_queued: Option<RawDuration>,
    image_saving: Option<RawDuration>,
}

/// A duration in YAML: a number of milliseconds, or a string with a unit
/// (`250ms`, `2s`, `5m`, `1h`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Millis(u64),
    Text(String),
}

impl RawDuration {
    fn parse(&self, field: &str) -> Result<Duration, ConfigError> {
        match self {
            RawDuration::Millis(ms) => Ok(Duration::from_millis(*ms)),
            RawDuration::Text(s) => parse_duration(s).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{field}: {s:?} is not a duration (use e.g. 300ms, 2s, 5m, 1h, or a number of milliseconds)"
                ))
            }),
        }
    }
}

pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let base = raw
            .transitions
            .default
            .as_ref()
            .map(|d| d.parse("transitions.default"))
            .transpose()?
            .unwrap_or(DEFAULT_TRANSITION);
        let pick = |v: &Option<RawDuration>, name: &str| -> Result<Duration, ConfigError> {
            v.as_ref()
                .map(|d| d.parse(&format!("transitions.{name}")))
                .transpose()
                .map(|d| d.unwrap_or(base))
        };
        let t = &raw.transitions;
        let transitions = Transitions {
            volume_create: pick(&t.volume_create, "volume_create")?,
            volume_download: pick(&t.volume_download, "volume_download")?,
            volume_retype: pick(&t.volume_retype, "volume_retype")?,
            volume_delete: pick(&t.volume_delete, "volume_delete")?,
            volume_extend: pick(&t.volume_extend, "volume_extend")?,
            volume_attach: pick(&t.volume_attach, "volume_attach")?,
            volume_detach: pick(&t.volume_detach, "volume_detach")?,
            image_queued: pick(&t.image_queued, "image_queued")?,
            image_saving: pick(&t.image_saving, "image_saving")?,
        };

        let mut tenants = Vec::new();
        for rt in raw.tenants {
            if !is_hex32(&rt.id) {
                return Err(ConfigError::Invalid(format!(
                    "tenant {:?}: id {:?} must be 32 hex characters",
                    rt.name, rt.id
                )));
            }
            let id = rt.id.to_ascii_lowercase();
            let users = rt
                .users
                .into_iter()
                .map(|u| UserConfig {
                    id: u.id.unwrap_or_else(|| derived_user_id(&id, &u.username)),
                    username: u.username,
                    password: u.password,
                    application_credentials: u.application_credentials,
                })
                .collect();
            tenants.push(TenantConfig {
                id,
                name: rt.name,
                users,
                scp: rt.scp,
            });
        }
        let config = Config {
            region: raw.region,
            availability_zone: raw
                .availability_zone
                .unwrap_or_else(|| "kr-pub-a".to_string()),
            tenants,
            transitions,
            token_lifetime: raw
                .token_lifetime
                .map(|d| d.parse("token_lifetime"))
                .transpose()?
                .unwrap_or(DEFAULT_TOKEN_LIFETIME),
            scp_clock_skew: raw
                .scp_clock_skew
                .map(|d| d.parse("scp_clock_skew"))
                .transpose()?
                .unwrap_or(DEFAULT_SCP_CLOCK_SKEW),
        };
        config.check_unique()?;
        Ok(config)
    }
}

impl Config {
    fn check_unique(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tenants {
            for key in [
                format!("tenant id {}", t.id),
                format!("tenant name {}", t.name),
            ] {
                if !seen.insert(key.clone()) {
                    return Err(ConfigError::Invalid(format!("duplicate {key}")));
                }
            }
            for u in &t.users {
                for key in [
                    format!("username {}", u.username),
                    format!("user id {}", u.id),
                ] {
                    if !seen.insert(key.clone()) {
                        return Err(ConfigError::Invalid(format!("duplicate {key}")));
                    }
                }
                for ac in &u.application_credentials {
                    let key = format!("application credential {}", ac.id);
                    if !seen.insert(key.clone()) {
                        return Err(ConfigError::Invalid(format!("duplicate {key}")));
                    }
                }
            }
            if let Some(scp) = &t.scp {
                let key = format!("scp access key {}", scp.access_key);
                if !seen.insert(key.clone()) {
                    return Err(ConfigError::Invalid(format!("duplicate {key}")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_defaults_and_overrides() {
        let yaml = r#"
region: KR2
tenants:
  - id: 6CDEBE3EB0094910BC41F1D42EBE4CB7
    name: one
    users:
      - {username: alice, password: pw, application_credentials: [{id: ac, secret: s}]}
    scp: {access_key: ak, secret_key: sk, account_id: acc}
  - id: 8989447062e04a818baf9e073fd04fa7
    name: two
transitions:
  default: 0
  volume_create: 2s
  volume_retype: 5s
token_lifetime: 1h
"#;
        let c = Config::from_yaml(yaml).expect("valid config");
        assert_eq!(c.region, "KR2");
        assert_eq!(c.tenants[0].id, "6cdebe3eb0094910bc41f1d42ebe4cb7");
        assert_eq!(c.tenants[0].users[0].application_credentials[0].id, "ac");
        assert_eq!(c.tenants[1].scp, None);
        assert_eq!(c.transitions.volume_create, Duration::from_secs(2));
        assert_eq!(c.transitions.volume_delete, Duration::ZERO);
        assert_eq!(c.transitions.volume_download, Duration::ZERO);
        assert_eq!(c.transitions.volume_retype, Duration::from_secs(5));
        assert_eq!(c.token_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn a_tenant_id_that_is_not_32_hex_is_refused() {
        let err = Config::from_yaml("tenants: [{id: abc, name: x}]").unwrap_err();
        assert!(err.to_string().contains("32 hex"), "{err}");
    }

    #[test]
    fn a_bad_duration_is_refused() {
        let yaml = "tenants: []\ntransitions: {volume_create: soon}";
        assert!(Config::from_yaml(yaml).is_err());
    }

    #[test]
    fn demo_has_the_documented_tenants() {
        let c = Config::demo();
        assert_eq!(c.region, "KR1");
        assert_eq!(c.tenants[0].id, "6cdebe3eb0094910bc41f1d42ebe4cb7");
        assert_eq!(c.tenants[1].id, "8989447062e04a818baf9e073fd04fa7");
        assert_eq!(c.tenants[0].users[0].password, "demo-password");
        assert_eq!(c.transitions, Transitions::uniform(DEFAULT_TRANSITION));
        assert!(c.check_unique().is_ok());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("12"), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("x"), None);
    }
}
