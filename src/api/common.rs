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
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Parses a Go-style duration such as `1h30m` or `500ms`, as accepted by `resyncPeriod`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, seconds) = if rest.starts_with("ms") {
            ("ms", 0.001)
        } else if rest.starts_with('s') {
            ("s", 1.0)
        } else if rest.starts_with('m') {
            ("m", 60.0)
        } else if rest.starts_with('h') {
            ("h", 3600.0)
        } else {
            return None;
        };
        rest = &rest[unit.len()..];
        total += number * seconds;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("10m", Some(Duration::from_secs(600))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("45s", Some(Duration::from_secs(45))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5h", Some(Duration::from_secs(5400))),
            ("", None),
            ("10", None),
            ("m", None),
            ("10d", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
    }
}
