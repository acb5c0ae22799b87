//! Cloud credentials from an OpenStack-style `clouds.yaml`.
//!
//! The operator reads the bytes from a Secret (key `clouds.yaml`, plus an
//! optional PEM bundle under `cacert`) and selects one cloud by name. Four
//! `auth_type`s are understood:
//!
//! | auth_type | cloud | `auth:` keys |
//! | --- | --- | --- |
//! | `v2password` | NHN Cloud (Keystone v2.0) | `auth_url`, `tenant_id`, `username`, `password` (the API password) |
//! | `password`, `v3password` | Keystone v3 | `auth_url`, `user_id` or `username` + `user_domain_name`/`user_domain_id`, `password`, `project_id` or `project_name` + `project_domain_name`/`project_domain_id` |
//! | `v3applicationcredential` | Keystone v3 | `auth_url`, `application_credential_id` (or `application_credential_name` + user), `application_credential_secret` |
//! | `scp` | Samsung Cloud Platform | `access_key`, `secret_key`, `account_id`; the image endpoint in `image_endpoint_override` |
//!
//! When `auth_type` is absent it is inferred: application-credential keys mean
//! `v3applicationcredential`, `access_key` means `scp`, an `auth_url` ending in
//! `/v2.0` means `v2password`, and anything else is `password` (the OpenStack
//! default). The generic `password` with a `/v2.0` `auth_url` is also read as
//! `v2password`, as keystoneauth's version discovery would do; `v3password` is
//! always v3.
//!
//! Unknown keys are errors that name the key (with a suggestion when it looks
//! like a typo) rather than being ignored, because a silently ignored
//! `usrname` turns into a confusing 401 later. Secrets are held in
//! [`SecretString`], whose `Debug` prints `<redacted>` and which has no
//! `Display`; error messages name keys, never values.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::CloudError;

/// A secret value (password, secret key, token). `Debug` never shows it and
/// there is no `Display`: read it with [`SecretString::expose`] at the one
/// place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible fingerprint, so that two different secrets
    /// give two cache entries without the secret being kept in a key.
    pub(crate) fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which catalog URL to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Interface {
    #[default]
    Public,
    Internal,
    Admin,
}

impl Interface {
    pub fn as_str(&self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

/// A PEM bundle of extra trusted CAs (from the Secret's `cacert` key).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle(Vec<u8>);

impl CaBundle {
    pub fn pem(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.0);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaBundle({} bytes)", self.0.len())
    }
}

/// Everything needed to talk to one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudCredentials {
    /// The key under `clouds:` this was read from.
    pub cloud_name: String,
    pub auth: Auth,
    /// Picks the catalog endpoints; optional when the catalog has one region.
    pub region_name: Option<String>,
    pub interface: Interface,
    /// Replaces the catalog's block-storage URL. `%(project_id)s` and
    /// `%(tenant_id)s` are replaced by the token's project.
    pub block_storage_endpoint_override: Option<String>,
    /// Replaces the catalog's image URL (required for SCP).
    pub image_endpoint_override: Option<String>,
    /// `verify: false` turns off TLS certificate checks (logged as a warning).
    pub verify: bool,
    pub cacert: Option<CaBundle>,
    /// `auth_type` exactly as the file wrote it (`None` when absent and
    /// inferred); [`CloudCredentials::auth`] holds what it was read as.
    pub auth_type_as_written: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    NhnV2(NhnV2Auth),
    KeystonePassword(KeystonePasswordAuth),
    KeystoneApplicationCredential(KeystoneApplicationCredentialAuth),
    Scp(ScpAuth),
}

impl Auth {
    /// The `auth_type` this reads as (normalised: `password` is `v3password`).
    pub fn auth_type(&self) -> &'static str {
        match self {
            Auth::NhnV2(_) => "v2password",
            Auth::KeystonePassword(_) => "v3password",
            Auth::KeystoneApplicationCredential(_) => "v3applicationcredential",
            Auth::Scp(_) => "scp",
        }
    }

    /// What the auth type means, for people.
    pub fn meaning(&self) -> &'static str {
        match self {
            Auth::NhnV2(_) => "Keystone v2.0 password, NHN Cloud",
            Auth::KeystonePassword(_) => "Keystone v3 password",
            Auth::KeystoneApplicationCredential(_) => "Keystone v3 application credential",
            Auth::Scp(_) => "Samsung Cloud Platform signed requests",
        }
    }
}

/// NHN Cloud: Keystone v2.0 tokens, tenant id, API password.
#[derive(Debug, Clone, PartialEq)]
pub struct NhnV2Auth {
    pub auth_url: String,
    pub tenant_id: String,
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainRef {
    Id(String),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: DomainRef },
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeystonePasswordAuth {
    pub auth_url: String,
    pub user: UserRef,
    pub password: SecretString,
    pub project: ProjectRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApplicationCredentialRef {
    Id(String),
    Name { name: String, user: UserRef },
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeystoneApplicationCredentialAuth {
    pub auth_url: String,
    pub credential: ApplicationCredentialRef,
    pub secret: SecretString,
}

/// Samsung Cloud Platform: every request is HMAC-signed with these.
#[derive(Debug, Clone, PartialEq)]
pub struct ScpAuth {
    pub access_key: String,
    pub secret_key: SecretString,
    pub account_id: String,
}

impl CloudCredentials {
    /// Reads `clouds.yaml` bytes and selects `cloud_name`. `cacert` is the
    /// PEM bundle stored next to it, if any.
    pub fn from_clouds_yaml(
        yaml: &[u8],
        cloud_name: &str,
        cacert: Option<&[u8]>,
    ) -> Result<Self, CloudError> {
        let root = parse_yaml(yaml)?;
        let clouds = clouds_map(&root)?;
        let Some(cloud) = clouds.get(cloud_name) else {
            let mut names: Vec<&str> = clouds.keys().map(String::as_str).collect();
            names.sort_unstable();
            let available = if names.is_empty() {
                "clouds.yaml defines no cloud".to_string()
            } else {
                format!("available: {}", names.join(", "))
            };
            return Err(CloudError::config(format!(
                "cloud `{cloud_name}` not found in clouds.yaml ({available})"
            )));
        };
        let cloud = cloud
            .as_object()
            .ok_or_else(|| CloudError::config(format!("cloud `{cloud_name}` must be a mapping")))?;
        parse_cloud(cloud_name, cloud, cacert)
    }

    /// `auth_type` as the file says it, with what it means:
    /// `password (Keystone v3 password)`, `password (Keystone v2.0 password,
    /// NHN Cloud: the auth_url ends in /v2.0)`, or `not set (read as
    /// v3password: Keystone v3 password)`.
    pub fn auth_type_description(&self) -> String {
        let meaning = self.auth.meaning();
        match self.auth_type_as_written.as_deref() {
            None => format!("not set (read as {}: {meaning})", self.auth.auth_type()),
            Some("password") if matches!(self.auth, Auth::NhnV2(_)) => {
                format!("password ({meaning}: the auth_url ends in /v2.0)")
            }
            Some(written) => format!("{written} ({meaning})"),
        }
    }

    /// Key of the token cache: who logs in where, with a fingerprint of the
    /// secret (never the secret), so that a changed password gets a fresh
    /// entry.
    pub(crate) fn token_cache_key(&self) -> String {
        match &self.auth {
            Auth::NhnV2(a) => format!(
                "v2password|{}|tenant={}|user={}|{}",
                a.auth_url,
                a.tenant_id,
                a.username,
                a.password.fingerprint()
            ),
            Auth::KeystonePassword(a) => format!(
                "v3password|{}|project={:?}|user={:?}|{}",
                a.auth_url,
                a.project,
                a.user,
                a.password.fingerprint()
            ),
            Auth::KeystoneApplicationCredential(a) => format!(
                "v3applicationcredential|{}|{:?}|{}",
                a.auth_url,
                a.credential,
                a.secret.fingerprint()
            ),
            Auth::Scp(a) => format!(
                "scp|account={}|access_key={}|{}",
                a.account_id,
                a.access_key,
                a.secret_key.fingerprint()
            ),
        }
    }

    /// Key of a connection: the token key plus everything that changes how
    /// endpoints are picked and how TLS is checked.
    pub(crate) fn session_key(&self) -> String {
        format!(
            "{}|region={:?}|interface={}|bs={:?}|image={:?}|verify={}|ca={}",
            self.token_cache_key(),
            self.region_name,
            self.interface.as_str(),
            self.block_storage_endpoint_override,
            self.image_endpoint_override,
            self.verify,
            self.cacert
                .as_ref()
                .map(CaBundle::fingerprint)
                .unwrap_or_default()
        )
    }
}

/// The names under `clouds:`, sorted.
pub fn cloud_names(yaml: &[u8]) -> Result<Vec<String>, CloudError> {
    let root = parse_yaml(yaml)?;
    let mut names: Vec<String> = clouds_map(&root)?.keys().cloned().collect();
    names.sort_unstable();
    Ok(names)
}

fn parse_yaml(yaml: &[u8]) -> Result<Value, CloudError> {
    let text = std::str::from_utf8(yaml)
        .map_err(|_| CloudError::config("clouds.yaml is not UTF-8 text"))?;
    // The error is rendered without its source snippet: the snippet would
    // quote the file, passwords included.
    serde_saphyr::from_str::<Value>(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        CloudError::config(format!(
            "clouds.yaml is not valid YAML{location}: {}",
            first_line(&e.without_snippet().to_string())
        ))
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn clouds_map(root: &Value) -> Result<&serde_json::Map<String, Value>, CloudError> {
    let root = root
        .as_object()
        .ok_or_else(|| CloudError::config("clouds.yaml must be a mapping with a `clouds` key"))?;
    match root.get("clouds") {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(CloudError::config(
            "`clouds` in clouds.yaml must be a mapping",
        )),
        None => {
            let hint = root
                .keys()
                .find(|k| suggestion(k, &["clouds"]).is_some())
                .map(|found| format!(" (found `{found}`; did you mean `clouds`?)"))
                .unwrap_or_default();
            Err(CloudError::config(format!(
                "clouds.yaml has no top-level `clouds` key{hint}"
            )))
        }
    }
}

/// Cloud-level keys cloudvol reads.
const CLOUD_KEYS: &[&str] = &[
    "auth_type",
    "auth",
    "region_name",
    "regions",
    "interface",
    "verify",
    "cacert",
    "block_storage_endpoint_override",
    "image_endpoint_override",
];

/// Cloud-level keys that other OpenStack tools read and cloudvol does not
/// need; accepted so that an existing clouds.yaml works unchanged.
const IGNORED_CLOUD_KEYS: &[&str] = &["api_timeout", "display_name", "identity_api_version"];

fn is_ignored_cloud_key(key: &str) -> bool {
    IGNORED_CLOUD_KEYS.contains(&key)
        || key.ends_with("_api_version")
        || key.ends_with("_service_type")
        || key.ends_with("_service_name")
        || key.ends_with("_interface")
        || (key.ends_with("_endpoint_override")
            && key != "block_storage_endpoint_override"
            && key != "image_endpoint_override"
            && key != "volume_endpoint_override")
}

/// Every key any supported auth type reads under `auth:`.
const V2_AUTH_KEYS: &[&str] = &["auth_url", "tenant_id", "username", "password"];
const V3_PASSWORD_AUTH_KEYS: &[&str] = &[
    "auth_url",
    "username",
    "user_id",
    "user_domain_name",
    "user_domain_id",
    "password",
    "project_id",
    "project_name",
    "project_domain_name",
    "project_domain_id",
    "tenant_id",
    "tenant_name",
    "default_domain_id",
    "default_domain_name",
];
const V3_APPCRED_AUTH_KEYS: &[&str] = &[
    "auth_url",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
    "username",
    "user_id",
    "user_domain_name",
    "user_domain_id",
    "default_domain_id",
    "default_domain_name",
];
const SCP_AUTH_KEYS: &[&str] = &["access_key", "secret_key", "account_id"];

const AUTH_TYPES: &[&str] = &[
    "v2password",
    "password",
    "v3password",
    "v3applicationcredential",
    "scp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthType {
    V2Password,
    V3Password,
    V3ApplicationCredential,
    Scp,
}

impl AuthType {
    fn name(self) -> &'static str {
        match self {
            AuthType::V2Password => "v2password",
            AuthType::V3Password => "v3password",
            AuthType::V3ApplicationCredential => "v3applicationcredential",
            AuthType::Scp => "scp",
        }
    }

    fn auth_keys(self) -> &'static [&'static str] {
        match self {
            AuthType::V2Password => V2_AUTH_KEYS,
            AuthType::V3Password => V3_PASSWORD_AUTH_KEYS,
            AuthType::V3ApplicationCredential => V3_APPCRED_AUTH_KEYS,
            AuthType::Scp => SCP_AUTH_KEYS,
        }
    }
}

/// Reads one cloud entry; `ctx` prefixes every message with the cloud name.
struct Reader<'a> {
    cloud: &'a str,
}

impl Reader<'_> {
    fn err(&self, message: impl fmt::Display) -> CloudError {
        CloudError::config(format!("cloud `{}`: {message}", self.cloud))
    }

    /// A string (or number) value; empty strings count as absent. The value
    /// itself never goes into an error.
    fn string(
        &self,
        map: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, CloudError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(self.err(format_args!("`{path}` must be a string"))),
        }
    }

    fn required(
        &self,
        map: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
        auth_type: AuthType,
    ) -> Result<String, CloudError> {
        self.string(map, key, path)?.ok_or_else(|| {
            self.err(format_args!(
                "missing `{path}` (required by auth_type {})",
                auth_type.name()
            ))
        })
    }

    fn url(&self, value: String, path: &str) -> Result<String, CloudError> {
        match reqwest::Url::parse(&value) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                Ok(value.trim_end_matches('/').to_string())
            }
            Ok(_) => Err(self.err(format_args!("`{path}` must be an http or https URL"))),
            Err(e) => Err(self.err(format_args!("`{path}` is not a valid URL: {e}"))),
        }
    }
}

type Map = serde_json::Map<String, Value>;

/// Reads one cloud entry: the cloud-level keys, then `auth:` with the reader
/// of its auth type, then the settings every auth type shares.
fn parse_cloud(
    cloud_name: &str,
    cloud: &Map,
    cacert: Option<&[u8]>,
) -> Result<CloudCredentials, CloudError> {
    let r = Reader { cloud: cloud_name };
    check_cloud_keys(&r, cloud)?;
    let auth = match cloud.get("auth") {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(r.err("`auth` must be a mapping")),
        None => return Err(r.err("missing `auth`")),
    };
    let auth_type = read_auth_type(&r, cloud, auth)?;
    check_auth_keys(&r, auth, auth_type)?;
    let auth = match auth_type {
        AuthType::V2Password => read_v2password(&r, auth)?,
        AuthType::V3Password => read_v3password(&r, auth)?,
        AuthType::V3ApplicationCredential => read_v3applicationcredential(&r, auth)?,
        AuthType::Scp => read_scp(&r, auth)?,
    };

    let region_name = match r.string(cloud, "region_name", "region_name")? {
        Some(region) => Some(region),
        None => first_region(&r, cloud)?,
    };
    let block_storage_endpoint_override =
        read_url_key(&r, cloud, "block_storage_endpoint_override")?;
    let image_endpoint_override = read_url_key(&r, cloud, "image_endpoint_override")?;
    if auth_type == AuthType::Scp && image_endpoint_override.is_none() {
        return Err(r.err(
            "missing `image_endpoint_override` (required by auth_type scp: SCP has no service catalog; e.g. https://virtualserver.<region>.<domain>)",
        ));
    }
    Ok(CloudCredentials {
        cloud_name: cloud_name.to_string(),
        auth,
        region_name,
        interface: read_interface(&r, cloud)?,
        block_storage_endpoint_override,
        image_endpoint_override,
        verify: read_verify(&r, cloud)?,
        cacert: read_cacert(&r, cloud, cacert)?,
        auth_type_as_written: r.string(cloud, "auth_type", "auth_type")?,
    })
}

/// Every cloud-level key is one cloudvol reads or knowingly ignores.
fn check_cloud_keys(r: &Reader<'_>, cloud: &Map) -> Result<(), CloudError> {
    for key in cloud.keys() {
        if CLOUD_KEYS.contains(&key.as_str()) || is_ignored_cloud_key(key) {
            continue;
        }
        let message = match key.as_str() {
            "profile" => "`profile` (vendor profiles) is not supported; write `auth_url` and the endpoints out in full".to_string(),
            "cert" | "key" => format!("`{key}` (TLS client certificates) is not supported"),
            "volume_endpoint_override" => "unknown key `volume_endpoint_override`; did you mean `block_storage_endpoint_override`?".to_string(),
            _ => unknown_key_message(key, "the cloud entry", CLOUD_KEYS),
        };
        return Err(r.err(message));
    }
    Ok(())
}

/// `auth_type` as written (with its aliases), or inferred from the keys.
fn read_auth_type(r: &Reader<'_>, cloud: &Map, auth: &Map) -> Result<AuthType, CloudError> {
    let Some(written) = r.string(cloud, "auth_type", "auth_type")? else {
        return Ok(infer_auth_type(auth));
    };
    Ok(match written.as_str() {
        "v2password" => AuthType::V2Password,
        "password" if looks_v2(auth) => AuthType::V2Password,
        "password" | "v3password" => AuthType::V3Password,
        "v3applicationcredential" | "applicationcredential" => AuthType::V3ApplicationCredential,
        "scp" => AuthType::Scp,
        other => {
            let hint = suggestion(other, AUTH_TYPES)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(r.err(format_args!(
                "unsupported auth_type `{other}`; {hint}supported: {}",
                AUTH_TYPES.join(", ")
            )));
        }
    })
}

/// Every key under `auth:` is one `auth_type` reads; a key of another auth
/// type says which.
fn check_auth_keys(r: &Reader<'_>, auth: &Map, auth_type: AuthType) -> Result<(), CloudError> {
    let allowed = auth_type.auth_keys();
    for key in auth.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let used_elsewhere = [
            AuthType::V2Password,
            AuthType::V3Password,
            AuthType::V3ApplicationCredential,
            AuthType::Scp,
        ]
        .into_iter()
        .filter(|t| t.auth_keys().contains(&key.as_str()))
        .map(AuthType::name)
        .collect::<Vec<_>>();
        let message = if used_elsewhere.is_empty() {
            unknown_key_message(key, "`auth`", allowed)
        } else {
            format!(
                "key `auth.{key}` is not used by auth_type {} (it belongs to {})",
                auth_type.name(),
                used_elsewhere.join(", ")
            )
        };
        return Err(r.err(message));
    }
    Ok(())
}

fn read_auth_url(r: &Reader<'_>, auth: &Map, auth_type: AuthType) -> Result<String, CloudError> {
    let auth_url = r.required(auth, "auth_url", "auth.auth_url", auth_type)?;
    r.url(auth_url, "auth.auth_url")
}

/// `v2password`: NHN Cloud's Keystone v2.0.
fn read_v2password(r: &Reader<'_>, auth: &Map) -> Result<Auth, CloudError> {
    let t = AuthType::V2Password;
    Ok(Auth::NhnV2(NhnV2Auth {
        auth_url: read_auth_url(r, auth, t)?,
        tenant_id: r.required(auth, "tenant_id", "auth.tenant_id", t)?,
        username: r.required(auth, "username", "auth.username", t)?,
        password: SecretString(r.required(auth, "password", "auth.password", t)?),
    }))
}

/// `password` / `v3password`: Keystone v3, a user and a project.
fn read_v3password(r: &Reader<'_>, auth: &Map) -> Result<Auth, CloudError> {
    let t = AuthType::V3Password;
    Ok(Auth::KeystonePassword(KeystonePasswordAuth {
        auth_url: read_auth_url(r, auth, t)?,
        user: user_ref(r, auth, t)?,
        password: SecretString(r.required(auth, "password", "auth.password", t)?),
        project: project_ref(r, auth)?,
    }))
}

/// `v3applicationcredential`: by id, or by name with its user.
fn read_v3applicationcredential(r: &Reader<'_>, auth: &Map) -> Result<Auth, CloudError> {
    let t = AuthType::V3ApplicationCredential;
    let auth_url = read_auth_url(r, auth, t)?;
    let by_id = r.string(
        auth,
        "application_credential_id",
        "auth.application_credential_id",
    )?;
    let credential = match by_id {
        Some(id) => ApplicationCredentialRef::Id(id),
        None => match r.string(
            auth,
            "application_credential_name",
            "auth.application_credential_name",
        )? {
            Some(name) => ApplicationCredentialRef::Name {
                name,
                user: user_ref(r, auth, t)?,
            },
            None => {
                return Err(r.err(
                    "missing `auth.application_credential_id` (or `auth.application_credential_name` with the user)",
                ));
            }
        },
    };
    Ok(Auth::KeystoneApplicationCredential(
        KeystoneApplicationCredentialAuth {
            auth_url,
            credential,
            secret: SecretString(r.required(
                auth,
                "application_credential_secret",
                "auth.application_credential_secret",
                t,
            )?),
        },
    ))
}

/// `scp`: Samsung Cloud Platform's signing keys.
fn read_scp(r: &Reader<'_>, auth: &Map) -> Result<Auth, CloudError> {
    let t = AuthType::Scp;
    Ok(Auth::Scp(ScpAuth {
        access_key: r.required(auth, "access_key", "auth.access_key", t)?,
        secret_key: SecretString(r.required(auth, "secret_key", "auth.secret_key", t)?),
        account_id: r.required(auth, "account_id", "auth.account_id", t)?,
    }))
}

fn read_interface(r: &Reader<'_>, cloud: &Map) -> Result<Interface, CloudError> {
    let Some(written) = r.string(cloud, "interface", "interface")? else {
        return Ok(Interface::Public);
    };
    match written.as_str() {
        "public" | "publicURL" => Ok(Interface::Public),
        "internal" | "internalURL" => Ok(Interface::Internal),
        "admin" | "adminURL" => Ok(Interface::Admin),
        other => Err(r.err(format_args!(
            "`interface` is `{other}`; expected public, internal or admin"
        ))),
    }
}

fn read_url_key(r: &Reader<'_>, cloud: &Map, key: &str) -> Result<Option<String>, CloudError> {
    r.string(cloud, key, key)?
        .map(|u| r.url(u, key))
        .transpose()
}

fn read_verify(r: &Reader<'_>, cloud: &Map) -> Result<bool, CloudError> {
    match cloud.get("verify") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(r.err(
            "`verify` must be true or false (put a custom CA in the Secret under `cacert` instead of a path)",
        )),
    }
}

/// The Secret's PEM bundle; `cacert` in the file itself is a path the
/// operator cannot read.
fn read_cacert(
    r: &Reader<'_>,
    cloud: &Map,
    cacert: Option<&[u8]>,
) -> Result<Option<CaBundle>, CloudError> {
    match cacert {
        Some(pem) if !pem.iter().all(u8::is_ascii_whitespace) => {
            let has_cert = std::str::from_utf8(pem)
                .map(|t| t.contains("-----BEGIN CERTIFICATE-----"))
                .unwrap_or(false);
            if !has_cert {
                return Err(
                    r.err("`cacert` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
                );
            }
            Ok(Some(CaBundle(pem.to_vec())))
        }
        _ if cloud.contains_key("cacert") => Err(r.err(
            "`cacert` in clouds.yaml is a file path the operator cannot read; put the PEM bundle in the Secret under the key `cacert` (or pass --cacert)",
        )),
        _ => Ok(None),
    }
}

fn looks_v2(auth: &serde_json::Map<String, Value>) -> bool {
    auth.get("auth_url")
        .and_then(Value::as_str)
        .map(|u| u.trim_end_matches('/').ends_with("/v2.0"))
        .unwrap_or(false)
}

fn infer_auth_type(auth: &serde_json::Map<String, Value>) -> AuthType {
    if auth.contains_key("application_credential_secret")
        || auth.contains_key("application_credential_id")
    {
        AuthType::V3ApplicationCredential
    } else if auth.contains_key("access_key") {
        AuthType::Scp
    } else if looks_v2(auth) {
        AuthType::V2Password
    } else {
        AuthType::V3Password
    }
}

fn domain_ref(
    r: &Reader<'_>,
    auth: &serde_json::Map<String, Value>,
    prefix: &str,
) -> Result<Option<DomainRef>, CloudError> {
    let id_key = format!("{prefix}_domain_id");
    let name_key = format!("{prefix}_domain_name");
    if let Some(id) = r.string(auth, &id_key, &format!("auth.{id_key}"))? {
        return Ok(Some(DomainRef::Id(id)));
    }
    if let Some(name) = r.string(auth, &name_key, &format!("auth.{name_key}"))? {
        return Ok(Some(DomainRef::Name(name)));
    }
    if let Some(id) = r.string(auth, "default_domain_id", "auth.default_domain_id")? {
        return Ok(Some(DomainRef::Id(id)));
    }
    if let Some(name) = r.string(auth, "default_domain_name", "auth.default_domain_name")? {
        return Ok(Some(DomainRef::Name(name)));
    }
    Ok(None)
}

fn user_ref(
    r: &Reader<'_>,
    auth: &serde_json::Map<String, Value>,
    auth_type: AuthType,
) -> Result<UserRef, CloudError> {
    if let Some(id) = r.string(auth, "user_id", "auth.user_id")? {
        return Ok(UserRef::Id(id));
    }
    let Some(name) = r.string(auth, "username", "auth.username")? else {
        return Err(r.err(format_args!(
            "missing `auth.username` (or `auth.user_id`), required by auth_type {}",
            auth_type.name()
        )));
    };
    let domain = domain_ref(r, auth, "user")?.ok_or_else(|| {
        r.err("missing `auth.user_domain_name` (or `auth.user_domain_id`): Keystone v3 needs the domain of `auth.username`, e.g. Default")
    })?;
    Ok(UserRef::Name { name, domain })
}

fn project_ref(
    r: &Reader<'_>,
    auth: &serde_json::Map<String, Value>,
) -> Result<ProjectRef, CloudError> {
    if let Some(id) = r.string(auth, "project_id", "auth.project_id")? {
        return Ok(ProjectRef::Id(id));
    }
    if let Some(id) = r.string(auth, "tenant_id", "auth.tenant_id")? {
        return Ok(ProjectRef::Id(id));
    }
    let name = match r.string(auth, "project_name", "auth.project_name")? {
        Some(name) => name,
        None => match r.string(auth, "tenant_name", "auth.tenant_name")? {
            Some(name) => name,
            None => {
                return Err(r.err(
                    "missing `auth.project_id` (or `auth.project_name` with `auth.project_domain_name`): the token must be scoped to a project",
                ));
            }
        },
    };
    let domain = domain_ref(r, auth, "project")?.ok_or_else(|| {
        r.err("missing `auth.project_domain_name` (or `auth.project_domain_id`): Keystone v3 needs the domain of `auth.project_name`, e.g. Default")
    })?;
    Ok(ProjectRef::Name { name, domain })
}

fn first_region(
    r: &Reader<'_>,
    cloud: &serde_json::Map<String, Value>,
) -> Result<Option<String>, CloudError> {
    match cloud.get("regions") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => match items.first() {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Object(o)) => match o.get("name") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(r.err("`regions` entries need a `name`")),
            },
            Some(_) => Err(r.err("`regions` must be a list of names")),
        },
        Some(_) => Err(r.err("`regions` must be a list of names")),
    }
}

fn unknown_key_message(key: &str, place: &str, known: &[&str]) -> String {
    match suggestion(key, known) {
        Some(s) => format!("unknown key `{key}` under {place}; did you mean `{s}`?"),
        None => format!(
            "unknown key `{key}` under {place}; expected one of: {}",
            known.join(", ")
        ),
    }
}

/// The closest known key, when it is close enough to be a typo.
fn suggestion<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NHN: &str = r#"
clouds:
  nhn:
    auth_type: v2password
    auth:
      auth_url: https://api-identity-infrastructure.nhncloudservice.com/v2.0
      tenant_id: 6cdebe3eb0094910bc41f1d42ebe4cb7
      username: demo@example.com
      password: nhn-api-password-1
    region_name: KR1
"#;

    fn parse(yaml: &str, name: &str) -> Result<CloudCredentials, CloudError> {
        CloudCredentials::from_clouds_yaml(yaml.as_bytes(), name, None)
    }

    fn config_message(result: Result<CloudCredentials, CloudError>) -> String {
        match result {
            Err(CloudError::Config { message }) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn nhn_v2password_is_read() {
        let c = parse(NHN, "nhn").unwrap();
        assert_eq!(c.cloud_name, "nhn");
        assert_eq!(c.region_name.as_deref(), Some("KR1"));
        assert_eq!(c.interface, Interface::Public);
        assert!(c.verify);
        let Auth::NhnV2(a) = &c.auth else {
            panic!("{c:?}")
        };
        assert_eq!(
            a.auth_url,
            "https://api-identity-infrastructure.nhncloudservice.com/v2.0"
        );
        assert_eq!(a.tenant_id, "6cdebe3eb0094910bc41f1d42ebe4cb7");
        assert_eq!(a.username, "demo@example.com");
        assert_eq!(a.password.expose(), "nhn-api-password-1");
    }

    #[test]
    fn v2password_is_inferred_from_a_v2_auth_url() {
        let yaml = NHN.replace("    auth_type: v2password\n", "");
        assert!(matches!(parse(&yaml, "nhn").unwrap().auth, Auth::NhnV2(_)));
        let yaml = NHN.replace("v2password", "password");
        assert!(matches!(parse(&yaml, "nhn").unwrap().auth, Auth::NhnV2(_)));
    }

    #[test]
    fn keystone_v3_password_with_project_id() {
        let yaml = r#"
clouds:
  os:
    auth:
      auth_url: https://keystone.example.com:5000/v3
      username: alice
      user_domain_name: Default
      password: v3-secret-pw
      project_id: 0123abcd
    region_name: RegionOne
    interface: internal
"#;
        let c = parse(yaml, "os").unwrap();
        assert_eq!(c.interface, Interface::Internal);
        let Auth::KeystonePassword(a) = c.auth else {
            panic!()
        };
        assert_eq!(
            a.user,
            UserRef::Name {
                name: "alice".into(),
                domain: DomainRef::Name("Default".into())
            }
        );
        assert_eq!(a.project, ProjectRef::Id("0123abcd".into()));
    }

    #[test]
    fn keystone_v3_password_with_project_name_and_domain() {
        let yaml = r#"
clouds:
  os:
    auth_type: v3password
    auth:
      auth_url: https://keystone.example.com/identity
      user_id: u-1
      password: v3-secret-pw
      project_name: demo
      project_domain_id: default
"#;
        let Auth::KeystonePassword(a) = parse(yaml, "os").unwrap().auth else {
            panic!()
        };
        assert_eq!(a.user, UserRef::Id("u-1".into()));
        assert_eq!(
            a.project,
            ProjectRef::Name {
                name: "demo".into(),
                domain: DomainRef::Id("default".into())
            }
        );
        assert_eq!(a.auth_url, "https://keystone.example.com/identity");
    }

    #[test]
    fn default_domain_fills_user_and_project_domains() {
        let yaml = r#"
clouds:
  os:
    auth:
      auth_url: https://k/v3
      username: alice
      password: pw-xyz
      project_name: demo
      default_domain_id: default
"#;
        let Auth::KeystonePassword(a) = parse(yaml, "os").unwrap().auth else {
            panic!()
        };
        assert_eq!(
            a.project,
            ProjectRef::Name {
                name: "demo".into(),
                domain: DomainRef::Id("default".into())
            }
        );
    }

    #[test]
    fn application_credentials_by_id_and_by_name() {
        let yaml = r#"
clouds:
  byid:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://k/v3
      application_credential_id: demo-appcred
      application_credential_secret: appcred-secret-1
  byname:
    auth:
      auth_url: https://k/v3
      application_credential_name: ci
      username: alice
      user_domain_id: default
      application_credential_secret: appcred-secret-2
"#;
        let Auth::KeystoneApplicationCredential(a) = parse(yaml, "byid").unwrap().auth else {
            panic!()
        };
        assert_eq!(
            a.credential,
            ApplicationCredentialRef::Id("demo-appcred".into())
        );
        assert_eq!(a.secret.expose(), "appcred-secret-1");
        let Auth::KeystoneApplicationCredential(a) = parse(yaml, "byname").unwrap().auth else {
            panic!()
        };
        assert_eq!(
            a.credential,
            ApplicationCredentialRef::Name {
                name: "ci".into(),
                user: UserRef::Name {
                    name: "alice".into(),
                    domain: DomainRef::Id("default".into())
                }
            }
        );
    }

    #[test]
    fn scp_needs_keys_and_an_image_endpoint() {
        let yaml = r#"
clouds:
  scp:
    auth_type: scp
    auth:
      access_key: demo-access-key
      secret_key: scp-secret-key-1
      account_id: demo-account
    region_name: KR-WEST-1
    image_endpoint_override: https://virtualserver.example.com/
"#;
        let c = parse(yaml, "scp").unwrap();
        let Auth::Scp(a) = &c.auth else { panic!() };
        assert_eq!(a.access_key, "demo-access-key");
        assert_eq!(a.account_id, "demo-account");
        assert_eq!(
            c.image_endpoint_override.as_deref(),
            Some("https://virtualserver.example.com")
        );
        let without = yaml.replace(
            "    image_endpoint_override: https://virtualserver.example.com/\n",
            "",
        );
        let m = config_message(parse(&without, "scp"));
        assert!(m.contains("image_endpoint_override"), "{m}");
    }

    #[test]
    fn a_misspelt_auth_key_is_named_with_a_suggestion() {
        let yaml = NHN.replace("username:", "usrname:");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(m.contains("`usrname`"), "{m}");
        assert!(m.contains("did you mean `username`"), "{m}");
        assert!(m.contains("cloud `nhn`"), "{m}");
    }

    #[test]
    fn a_misspelt_cloud_key_is_named_with_a_suggestion() {
        let yaml = NHN.replace("region_name:", "region_nme:");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(
            m.contains("`region_nme`") && m.contains("`region_name`"),
            "{m}"
        );
        let yaml = NHN.replace("region_name: KR1", "image_endpoint_overide: http://x");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(m.contains("image_endpoint_override"), "{m}");
    }

    #[test]
    fn a_key_of_another_auth_type_is_explained() {
        let yaml = NHN.replace("tenant_id:", "project_name: demo\n      tenant_id:");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(
            m.contains("auth.project_name") && m.contains("v3password"),
            "{m}"
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let yaml = NHN.replace("      password: nhn-api-password-1\n", "");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(m.contains("`auth.password`"), "{m}");
        let yaml = NHN.replace("      tenant_id: 6cdebe3eb0094910bc41f1d42ebe4cb7\n", "");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(m.contains("`auth.tenant_id`"), "{m}");

        let v3 = "clouds:\n  os:\n    auth:\n      auth_url: https://k/v3\n      username: a\n      password: p\n      project_id: x\n";
        let m = config_message(parse(v3, "os"));
        assert!(m.contains("auth.user_domain_name"), "{m}");
        let v3 = "clouds:\n  os:\n    auth:\n      auth_url: https://k/v3\n      user_id: a\n      password: p\n";
        let m = config_message(parse(v3, "os"));
        assert!(m.contains("auth.project_id"), "{m}");
        let v3 = "clouds:\n  os:\n    auth:\n      auth_url: https://k/v3\n      user_id: a\n      password: p\n      project_name: x\n";
        let m = config_message(parse(v3, "os"));
        assert!(m.contains("auth.project_domain_name"), "{m}");
        let ac = "clouds:\n  os:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: https://k/v3\n      application_credential_id: x\n";
        let m = config_message(parse(ac, "os"));
        assert!(m.contains("auth.application_credential_secret"), "{m}");
        let no_auth = "clouds:\n  os:\n    region_name: x\n";
        let m = config_message(parse(no_auth, "os"));
        assert!(m.contains("`auth`"), "{m}");
    }

    #[test]
    fn an_unknown_cloud_lists_the_available_names() {
        let yaml = format!("{NHN}  other:\n    auth:\n      auth_url: https://k/v3\n");
        let m = config_message(parse(&yaml, "prod"));
        assert!(m.contains("`prod`") && m.contains("nhn, other"), "{m}");
    }

    #[test]
    fn unsupported_auth_types_and_bad_values_are_explained() {
        let yaml = NHN.replace("v2password", "v2pasword");
        let m = config_message(parse(&yaml, "nhn"));
        assert!(
            m.contains("v2pasword") && m.contains("did you mean `v2password`"),
            "{m}"
        );
        let yaml = NHN.replace("region_name: KR1", "interface: outside");
        assert!(config_message(parse(&yaml, "nhn")).contains("interface"));
        let yaml = NHN.replace("https://api-identity", "ftp://api-identity");
        assert!(config_message(parse(&yaml, "nhn")).contains("auth.auth_url"));
        let yaml = NHN.replace("region_name: KR1", "verify: /etc/ssl/ca.pem");
        assert!(config_message(parse(&yaml, "nhn")).contains("cacert"));
        let yaml = NHN.replace("region_name: KR1", "cacert: /etc/ssl/ca.pem");
        assert!(config_message(parse(&yaml, "nhn")).contains("Secret"));
        assert!(config_message(parse("cloud:\n  x: 1\n", "x")).contains("did you mean `clouds`"));
    }

    #[test]
    fn verify_false_regions_and_ignored_keys() {
        let yaml = NHN.replace(
            "region_name: KR1",
            "verify: false\n    regions:\n      - name: KR2\n    identity_api_version: 2\n    volume_api_version: 2\n    compute_endpoint_override: http://x",
        );
        let c = parse(&yaml, "nhn").unwrap();
        assert!(!c.verify);
        assert_eq!(c.region_name.as_deref(), Some("KR2"));
    }

    #[test]
    fn a_cacert_must_be_pem() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let c = CloudCredentials::from_clouds_yaml(NHN.as_bytes(), "nhn", Some(pem)).unwrap();
        assert_eq!(c.cacert.as_ref().map(|c| c.pem().len()), Some(pem.len()));
        let e = CloudCredentials::from_clouds_yaml(NHN.as_bytes(), "nhn", Some(b"garbage"));
        assert!(config_message(e).contains("PEM"));
    }

    #[test]
    fn yaml_syntax_errors_do_not_quote_the_file() {
        let yaml = "clouds:\n  nhn:\n    auth:\n      password: top-secret-value\n     username: [unclosed\n";
        let m = config_message(parse(yaml, "nhn"));
        assert!(m.contains("not valid YAML"), "{m}");
        assert!(!m.contains("top-secret-value"), "{m}");
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let secrets = [
            "nhn-api-password-1",
            "v3-secret-pw",
            "appcred-secret-1",
            "scp-secret-key-1",
        ];
        let yaml = format!(
            r#"{NHN}
  v3:
    auth:
      auth_url: https://k/v3
      username: alice
      user_domain_name: Default
      password: v3-secret-pw
      project_id: p
  ac:
    auth:
      auth_url: https://k/v3
      application_credential_id: id
      application_credential_secret: appcred-secret-1
  scp:
    auth:
      access_key: ak
      secret_key: scp-secret-key-1
      account_id: acc
    image_endpoint_override: https://scp.example.com
"#
        );
        let mut printed = Vec::new();
        for name in ["nhn", "v3", "ac", "scp"] {
            let c = parse(&yaml, name).unwrap();
            printed.push(format!("{c:?}"));
            printed.push(format!("{:?}", c.auth));
            printed.push(c.token_cache_key());
            printed.push(c.session_key());
        }
        // Errors raised while the secrets are in the file.
        let broken = [
            yaml.replace("username: alice", "usrname: alice"),
            yaml.replace("account_id: acc", "acount_id: acc"),
            yaml.replace("      application_credential_id: id\n", ""),
            yaml.replace("    image_endpoint_override: https://scp.example.com\n", ""),
            yaml.replace("password: v3-secret-pw", "password: [v3-secret-pw"),
            yaml.replace("password: v3-secret-pw", "password: {v3-secret-pw: 1}"),
        ];
        for (i, b) in broken.iter().enumerate() {
            for name in ["nhn", "v3", "ac", "scp", "missing"] {
                if let Err(e) = parse(b, name) {
                    printed.push(format!("{e}"));
                    printed.push(format!("{e:?}"));
                } else {
                    assert!(i > 0 || name != "v3", "broken[{i}] parsed for {name}");
                }
            }
        }
        for text in &printed {
            for s in secrets {
                assert!(!text.contains(s), "secret leaked in: {text}");
            }
        }
    }

    #[test]
    fn auth_type_is_described_as_written() {
        let described = |yaml: &str| parse(yaml, "nhn").unwrap().auth_type_description();
        assert_eq!(
            described(NHN),
            "v2password (Keystone v2.0 password, NHN Cloud)"
        );
        assert_eq!(
            described(&NHN.replace("v2password", "password")),
            "password (Keystone v2.0 password, NHN Cloud: the auth_url ends in /v2.0)"
        );
        assert_eq!(
            described(&NHN.replace("    auth_type: v2password\n", "")),
            "not set (read as v2password: Keystone v2.0 password, NHN Cloud)"
        );
        let v3 = "clouds:\n  nhn:\n    auth_type: password\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n      project_id: x\n";
        assert_eq!(described(v3), "password (Keystone v3 password)");
        assert_eq!(
            described(&v3.replace("auth_type: password", "auth_type: v3password")),
            "v3password (Keystone v3 password)"
        );
        assert_eq!(
            parse(v3, "nhn").unwrap().auth.auth_type(),
            "v3password",
            "the normalised name stays available"
        );
    }

    #[test]
    fn cloud_names_are_listed() {
        assert_eq!(cloud_names(NHN.as_bytes()).unwrap(), vec!["nhn"]);
    }

    #[test]
    fn token_cache_key_changes_with_the_secret_but_hides_it() {
        let a = parse(NHN, "nhn").unwrap();
        let b = parse(&NHN.replace("nhn-api-password-1", "other-password"), "nhn").unwrap();
        assert_ne!(a.token_cache_key(), b.token_cache_key());
        assert!(
            a.token_cache_key()
                .contains("6cdebe3eb0094910bc41f1d42ebe4cb7")
        );
        assert!(a.token_cache_key().contains("demo@example.com"));
    }
}
