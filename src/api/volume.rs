//! `Volume`: one block-storage volume.

// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CloudCredentialsRef, CloudScope, Conditions, DeletionPolicy, ImportSpec, LocalObjectRef,
    ManagementPolicy, conditions_schema,
};

/// A block-storage volume in an NHN Cloud, OpenStack or Samsung Cloud Platform tenant.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "cloudvol.dev",
    version = "v1alpha1",
    kind = "Volume",
    plural = "volumes",
    namespaced,
    doc = "A block-storage volume in an NHN Cloud, OpenStack or Samsung Cloud Platform tenant, created or adopted by cloudvol.",
    status = "VolumeStatus",
    shortname = "cvol",
    category = "cloudvol",
    printcolumn(name = "ID", type_ = "string", json_path = ".status.id"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.resource.status",
        description = "The status the cloud last reported"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.resource.size",
        description = "Size in GiB the cloud last reported"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.managementPolicy != 'managed' || has(self.resource) || has(self.import)",
     "message": "a managed Volume needs spec.resource (to create a volume) or spec.import (to adopt one)"},
    {"rule": "self.managementPolicy != 'unmanaged' || has(self.import)",
     "message": "an unmanaged Volume only observes: set spec.import to say which volume"},
    {"rule": "self.managementPolicy != 'unmanaged' || !has(self.resource)",
     "message": "an unmanaged Volume never writes to the cloud, so spec.resource is not allowed: remove it or set managementPolicy: managed"},
    {"rule": "has(self.import) || !has(self.resource) || has(self.resource.size)",
     "message": "spec.resource.size is required to create a volume"},
    {"rule": "has(self.import) == has(oldSelf.import)",
     "message": "spec.import is immutable: create a new Volume to adopt a different volume"}
]))]
pub struct VolumeSpec {
    /// The credentials Secret and cloud to use.
    pub cloud_credentials_ref: CloudCredentialsRef,
    /// `managed` (default) lets cloudvol create, change and delete the volume; `unmanaged`
    /// only observes the imported volume and never writes to the cloud. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "managementPolicy is immutable"}
    ]))]
    pub management_policy: ManagementPolicy,
    /// What deleting this object does to the cloud volume: `Delete` (default) or `Orphan`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Adopt an existing volume by `id` or by `filter` instead of creating one. Required when
    /// `managementPolicy` is `unmanaged`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "has(self.id) != has(self.filter)", "message": "import needs exactly one of id or filter"},
        {"rule": "self == oldSelf", "message": "spec.import is immutable: create a new Volume to adopt a different volume"}
    ]))]
    pub import: Option<ImportSpec>,
    /// How often to re-read the volume from the cloud when nothing is happening, as a duration
    /// such as `10m` or `1h`, at most `24h`. Defaults to the operator's `--resync-period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,5}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "duration(self) <= duration('24h')",
         "message": "resyncPeriod is at most 24h"}
    ]))]
    pub resync_period: Option<String>,
    /// The volume as it should be in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<VolumeResource>,
}

/// The desired volume. `name`, `description`, `size`, `volumeType`, `migrationPolicy` and
/// `metadata` may change; the other fields are immutable once set, and the source (`image`,
/// `snapshotID` or `sourceVolumeID`) is immutable.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.image) ? 1 : 0) + (has(self.snapshotID) ? 1 : 0) + (has(self.sourceVolumeID) ? 1 : 0) <= 1",
     "message": "give at most one source: image, snapshotID or sourceVolumeID; a volume starts from an image, a snapshot, another volume, or empty"},
    {"rule": "has(self.image) == has(oldSelf.image)",
     "message": "spec.resource.image is immutable: a volume is made from its image once; create a new Volume for another image"},
    {"rule": "!has(oldSelf.size) || has(self.size)", "message": "size cannot be removed once set"},
    {"rule": "!has(oldSelf.volumeType) || has(self.volumeType)", "message": "volumeType cannot be removed once set: set it to the type the volume should have"},
    {"rule": "!has(oldSelf.availabilityZone) || has(self.availabilityZone)", "message": "availabilityZone is immutable once set"},
    {"rule": "!has(oldSelf.snapshotID) || has(self.snapshotID)", "message": "snapshotID is immutable once set"},
    {"rule": "!has(oldSelf.sourceVolumeID) || has(self.sourceVolumeID)", "message": "sourceVolumeID is immutable once set"},
    {"rule": "!has(oldSelf.encryption) || has(self.encryption)", "message": "encryption is immutable once set"}
]))]
pub struct VolumeResource {
    /// The volume's name in the cloud. Defaults to the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub name: Option<String>,
    /// A description of the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub description: Option<String>,
    /// Size in GiB, at least 1. It may grow (applied with the cloud's extend action) and never
    /// shrink. Required unless the volume is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= oldSelf", "message": "size can only grow: volumes cannot shrink; create a new, smaller Volume instead"}
    ]))]
    pub size: Option<i32>,
    /// The volume type, for example `General HDD` or `General SSD` on NHN Cloud. Defaults to
    /// the cloud's default type. Changing it retypes the volume (the cloud's `os-retype`
    /// action), as `migrationPolicy` allows; it cannot be removed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub volume_type: Option<String>,
    /// Whether the cloud may move the volume's data to another back end to change its type:
    /// `never` (default: a retype that needs a move is refused, or given up by the cloud) or
    /// `on-demand`.
    #[serde(default)]
    pub migration_policy: MigrationPolicy,
    /// The availability zone, for example `kr-pub-a`. Immutable once set. Defaults to the
    /// cloud's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "availabilityZone is immutable once set"}
    ]))]
    pub availability_zone: Option<String>,
    /// Create the volume from an image: a `VolumeImage` in this namespace (`ref`), or the ID of
    /// an image these credentials can see (`id`: their own, a public one, or one shared with
    /// their tenant and accepted). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "has(self.ref) != has(self.id)",
         "message": "image needs exactly one of ref (a VolumeImage in this namespace) or id (an image ID)"},
        {"rule": "self == oldSelf",
         "message": "spec.resource.image is immutable: a volume is made from its image once; create a new Volume for another image"}
    ]))]
    pub image: Option<VolumeImageSource>,
    /// Create the volume from this snapshot. Immutable once set.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "snapshotID is immutable once set"}
    ]))]
    pub snapshot_id: Option<String>,
    /// Create the volume as a copy of this volume. Immutable once set.
    #[serde(
        default,
        rename = "sourceVolumeID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "sourceVolumeID is immutable once set"}
    ]))]
    pub source_volume_id: Option<String>,
    /// Key/value metadata on the cloud volume. Keys starting with `cloudvol.dev/` are reserved
    /// for the operator's own marks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[schemars(extend("additionalProperties" = {"type": "string", "maxLength": 255}))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(k, size(k) <= 255 && !k.startsWith('cloudvol.dev/'))",
         "message": "metadata keys must be at most 255 characters and must not start with cloudvol.dev/ (reserved for the operator)"}
    ]))]
    pub metadata: BTreeMap<String, String>,
    /// Encrypt the volume with a key from NHN Cloud's Secure Key Manager. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "encryption is immutable once set"}
    ]))]
    pub encryption: Option<VolumeEncryption>,
}

/// The image a volume is made from. Give exactly one of `ref` and `id`.
// Its validation rules sit on the `image` field, because a field's rules replace those of its
// type in the generated schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct VolumeImageSource {
    /// A `VolumeImage` in the same namespace: cloudvol waits until it is `Ready`, then makes
    /// the volume from its image (`status.id`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<LocalObjectRef>,
    /// The ID of an image the Volume's credentials can see: their tenant's own, a public one,
    /// or one shared with their tenant and accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub id: Option<String>,
}

/// What the cloud may do when a new volume type needs the volume on another back end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum MigrationPolicy {
    /// Never move the data: a retype that needs a move does not happen.
    #[default]
    #[serde(rename = "never")]
    Never,
    /// Move the data to a back end of the new type when needed.
    #[serde(rename = "on-demand")]
    OnDemand,
}

impl MigrationPolicy {
    /// The name the cloud and the spec use.
    pub fn as_str(&self) -> &'static str {
        match self {
            MigrationPolicy::Never => "never",
            MigrationPolicy::OnDemand => "on-demand",
        }
    }
}

/// NHN Cloud volume encryption through Secure Key Manager (`nhn_encryption`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEncryption {
    /// The Secure Key Manager appkey.
    #[schemars(length(min = 1, max = 255))]
    pub skm_app_key: String,
    /// The ID of the Secure Key Manager symmetric key that encrypts the volume.
    #[serde(rename = "skmKeyID")]
    #[schemars(length(min = 1, max = 255))]
    pub skm_key_id: String,
}

/// What cloudvol last observed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The cloud volume's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tenant and region the cloud resource lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudScope>,
    /// When cloudvol last asked the cloud to create the volume, written before the request: a
    /// deletion of an object that never asked needs no cloud at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_requested_at: Option<String>,
    /// The volume as the cloud last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ObservedVolume>,
    /// The servers the volume is attached to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<VolumeAttachment>,
    /// The image cloudvol asked the cloud to make the volume from, written before the create
    /// request.
    #[serde(
        default,
        rename = "sourceImageID",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_image_id: Option<String>,
    /// The last change of volume type cloudvol asked for, until the volume has the type the
    /// spec asks for: what tells a retype the cloud refused or gave up from one still to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retype: Option<VolumeRetype>,
}

/// A change of volume type cloudvol asked for (`os-retype`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRetype {
    /// The type asked for.
    pub volume_type: String,
    /// The migration policy asked with.
    pub migration_policy: MigrationPolicy,
    /// The type the volume had when cloudvol asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_volume_type: Option<String>,
    /// When cloudvol asked, written before the request.
    pub requested_at: String,
    /// The cloud accepted the request (HTTP 202).
    #[serde(default)]
    pub accepted: bool,
    /// The cloud's words when it refused the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// The volume's fields as the cloud reported them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedVolume {
    /// The cloud's own status string, for example `available`, `in-use` or `error`.
    pub status: String,
    /// Since when cloudvol has seen the volume in this status: what the progress deadline of a
    /// transitional status counts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_since: Option<String>,
    /// Name in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Size in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Volume type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Snapshot the volume was created from.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Volume the volume was copied from.
    #[serde(
        default,
        rename = "sourceVolumeID",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_volume_id: Option<String>,
    /// The image the volume was made from, as the cloud reports it (once the volume is
    /// made).
    #[serde(
        default,
        rename = "sourceImageID",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_image_id: Option<String>,
    /// Whether the volume is bootable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootable: Option<bool>,
    /// Whether the volume is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Metadata on the cloud volume, including the operator's marks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// When the cloud created the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// One attachment of the volume to a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAttachment {
    /// The server (instance) the volume is attached to.
    #[serde(rename = "serverID")]
    pub server_id: String,
    /// The attachment's ID.
    #[serde(
        default,
        rename = "attachmentID",
        skip_serializing_if = "Option::is_none"
    )]
    pub attachment_id: Option<String>,
    /// The device name inside the server, for example `/dev/vdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}
