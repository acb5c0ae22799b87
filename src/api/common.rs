//! Spec and status pieces that every kind shares, with the same names and meaning.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the object's own namespace holding a `clouds.yaml` (key `clouds.yaml`, and
/// optionally a `cacert` PEM bundle), and the cloud in it to use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudCredentialsRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key under `clouds:` in the Secret's `clouds.yaml` that selects the cloud, tenant and
    /// region, as for `openstack --os-cloud`.
    #[schemars(length(min = 1, max = 255))]
    pub cloud_name: String,
}

/// Whether cloudvol may write to the cloud resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ManagementPolicy {
    /// cloudvol creates (or adopts), updates and deletes the cloud resource.
    #[default]
    #[serde(rename = "managed")]
    Managed,
    /// cloudvol only observes the imported resource and never writes to the cloud.
    #[serde(rename = "unmanaged")]
    Unmanaged,
}

/// What deleting the Kubernetes object does to the cloud resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the cloud resource too (subject to the deletion rules).
    #[default]
    Delete,
    /// Leave the cloud resource as it is.
    Orphan,
}

/// Adopt an existing cloud resource instead of creating one. Give exactly one of `id` or
/// `filter`. Immutable.
// Its validation rules sit on the `import` field of each kind, because a field's rules replace
// those of its type in the generated schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ImportSpec {
    /// The cloud ID of the resource to adopt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub id: Option<String>,
    /// Find the resource to adopt by its fields. Exactly one resource must match: a filter that
    /// matches several is an error, never a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ImportFilter>,
}

/// Fields a resource to adopt must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ImportFilter {
    /// The resource's exact name in the cloud.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
}

/// A reference to another cloudvol object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the object, in the same namespace as this one.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where a cloud resource lives, as the credentials' token said when cloudvol made or adopted
/// it: a tenant (project) and a region. If the credentials later point elsewhere, cloudvol
/// neither creates nor deletes anything there (`CredentialsChanged`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudScope {
    /// The tenant (project) ID.
    #[serde(rename = "tenantID")]
    pub tenant_id: String,
    /// The region of the credentials (`region_name`), if they name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The condition list every kind carries. The types are `Ready`, `Reconciling` and `Stalled`,
/// following kstatus, so `kubectl wait --for=condition=Ready`, Flux and Argo CD understand them.
pub type Conditions = Vec<Condition>;

/// Schema for `status.conditions`: a map list keyed by `type`.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// The condition types cloudvol writes.
pub mod condition_type {
    /// The cloud resource exists, matches the spec of the current generation, and is usable.
    pub const READY: &str = "Ready";
    /// Work is in flight and will finish without human help.
    pub const RECONCILING: &str = "Reconciling";
    /// Progress needs a human.
    pub const STALLED: &str = "Stalled";
}

/// The annotation that stops all cloud writes for one object while it is `"true"`.
pub const PAUSED_ANNOTATION: &str = "cloudvol.dev/paused";

/// Go-style duration pattern accepted by `resyncPeriod` (for example `10m`, `1h30m`, `45s`).
/// Each number has at most five digits, so that no value the pattern and [`MAX_DURATION_LEN`]
/// admit can overflow the API server's CEL durations.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}(\.[0-9]{1,9})?(ms|s|m|h))+$";

/// The longest duration text a spec may hold.
pub const MAX_DURATION_LEN: usize = 32;

/// The longest duration a spec may ask for (`resyncPeriod`): a day.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why a duration text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration such as 30s, 10m or 1h30m")]
    Malformed(String),
    #[error("{0:?} is longer than the longest allowed, 24h")]
    TooLong(String),
}

/// Parses a Go-style duration such as `1h30m`, `1.5h` or `500ms`, as accepted by
/// `resyncPeriod`: at most [`MAX_DURATION_LEN`] characters and at most [`MAX_DURATION`]. Never
/// panics: the arithmetic is in integer nanoseconds, checked.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.chars().take(64).collect());
    if text.is_empty() || text.len() > MAX_DURATION_LEN {
        return Err(malformed());
    }
    let max_nanos = MAX_DURATION.as_nanos();
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let whole_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if whole_len == 0 {
            return Err(malformed());
        }
        let whole: u128 = rest[..whole_len].parse().map_err(|_| malformed())?;
        rest = &rest[whole_len..];
        // Up to nine fraction digits: nanoseconds of the unit, scaled below.
        let mut fraction: u128 = 0;
        let mut fraction_digits = 0u32;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            if len == 0 || len > 9 {
                return Err(malformed());
            }
            fraction = after_dot[..len].parse().map_err(|_| malformed())?;
            fraction_digits = len as u32;
            rest = &after_dot[len..];
        }
        let (unit, nanos_per_unit): (&str, u128) = if rest.starts_with("ms") {
            ("ms", 1_000_000)
        } else if rest.starts_with('s') {
            ("s", 1_000_000_000)
        } else if rest.starts_with('m') {
            ("m", 60_000_000_000)
        } else if rest.starts_with('h') {
            ("h", 3_600_000_000_000)
        } else {
            return Err(malformed());
        };
        rest = &rest[unit.len()..];
        let segment = whole
            .checked_mul(nanos_per_unit)
            .and_then(|n| {
                n.checked_add(fraction.checked_mul(nanos_per_unit)? / 10u128.pow(fraction_digits))
            })
            .ok_or_else(malformed)?;
        total = total.checked_add(segment).ok_or_else(malformed)?;
        if total > max_nanos {
            return Err(DurationError::TooLong(text.to_string()));
        }
    }
    // total <= MAX_DURATION's nanoseconds, which fit in u64.
    Ok(std::time::Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::{DurationError, parse_duration};
    use std::time::Duration;

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("10m", Some(Duration::from_secs(600))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("45s", Some(Duration::from_secs(45))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5h", Some(Duration::from_secs(5400))),
            ("0.000000001s", Some(Duration::from_nanos(1))),
            ("24h", Some(Duration::from_secs(86400))),
            ("23h59m60s", Some(Duration::from_secs(86400))),
            ("", None),
            ("10", None),
            ("m", None),
            ("10d", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn hostile_durations_are_refused_without_panicking() {
        let long = "1s".repeat(17);
        let cases = [
            ("99999999999999999999h", "too long"),
            ("24h1ms", "too long"),
            ("86401s", "too long"),
            ("1e400s", "malformed"),
            ("1.s", "malformed"),
            (".5s", "malformed"),
            ("1.0000000001s", "malformed"),
            ("1ss", "malformed"),
            ("1h-1m", "malformed"),
            ("340282366920938463463374607431768211456h", "malformed"),
            ("NaNs", "malformed"),
            ("infh", "malformed"),
            (long.as_str(), "malformed"),
        ];
        for (text, want) in cases {
            let got = match parse_duration(text) {
                Ok(d) => format!("accepted {d:?}"),
                Err(DurationError::TooLong(_)) => "too long".to_string(),
                Err(DurationError::Malformed(_)) => "malformed".to_string(),
            };
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn the_pattern_admits_nothing_the_parser_cannot_read() {
        // Five digits per number and 32 characters: the largest admitted value is finite.
        let largest = "99999h99999h99999h99999h99999h";
        assert!(largest.len() <= super::MAX_DURATION_LEN);
        assert!(matches!(
            parse_duration(largest),
            Err(DurationError::TooLong(_))
        ));
    }
}
