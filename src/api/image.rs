//! `VolumeImage`: one image made from a volume (`os-volume_upload_image`), or an imported image.

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

/// An image in the cloud's image service, made from a volume or imported.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "cloudvol.dev",
    version = "v1alpha1",
    kind = "VolumeImage",
    plural = "volumeimages",
    namespaced,
    doc = "An image made from a volume (os-volume_upload_image), or an imported image, in the cloud image service. A protected image is never deleted.",
    status = "VolumeImageStatus",
    shortname = "vimg",
    category = "cloudvol",
    printcolumn(name = "ID", type_ = "string", json_path = ".status.id"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.resource.status",
        description = "The status the cloud last reported"
    ),
    printcolumn(
        name = "Visibility",
        type_ = "string",
        json_path = ".status.resource.visibility"
    ),
    printcolumn(
        name = "Protected",
        type_ = "boolean",
        json_path = ".status.resource.protected"
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
     "message": "a managed VolumeImage needs spec.resource (to make an image from a volume) or spec.import (to adopt one)"},
    {"rule": "self.managementPolicy != 'unmanaged' || has(self.import)",
     "message": "an unmanaged VolumeImage only observes: set spec.import to say which image"},
    {"rule": "self.managementPolicy != 'unmanaged' || !has(self.resource)",
     "message": "an unmanaged VolumeImage never writes to the cloud, so spec.resource is not allowed: remove it or set managementPolicy: managed"},
    {"rule": "has(self.import) || !has(self.resource) || has(self.resource.volumeRef) || has(self.resource.volumeID)",
     "message": "spec.resource needs a source to make the image from: set volumeRef or volumeID"},
    {"rule": "has(self.import) == has(oldSelf.import)",
     "message": "spec.import is immutable: create a new VolumeImage to adopt a different image"}
]))]
pub struct VolumeImageSpec {
    /// The credentials Secret and cloud to use.
    pub cloud_credentials_ref: CloudCredentialsRef,
    /// `managed` (default) lets cloudvol create, change and delete the image; `unmanaged` only
    /// observes the imported image and never writes to the cloud. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "managementPolicy is immutable"}
    ]))]
    pub management_policy: ManagementPolicy,
    /// What deleting this object does to the image: `Delete` (default) or `Orphan`. A protected
    /// image is never deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Adopt an existing image by `id` or by `filter` instead of making one. Required when
    /// `managementPolicy` is `unmanaged`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "has(self.id) != has(self.filter)", "message": "import needs exactly one of id or filter"},
        {"rule": "self == oldSelf", "message": "spec.import is immutable: create a new VolumeImage to adopt a different image"}
    ]))]
    pub import: Option<ImportSpec>,
    /// How often to re-read the image from the cloud when nothing is happening, as a duration
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
    /// The image as it should be in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<VolumeImageResource>,
}

/// The desired image.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.volumeRef) && has(self.volumeID))",
     "message": "give exactly one source: volumeRef (a Volume in this namespace) or volumeID, not both"},
    {"rule": "has(self.volumeRef) == has(oldSelf.volumeRef) && has(self.volumeID) == has(oldSelf.volumeID)",
     "message": "the source volume (volumeRef or volumeID) is immutable: create a new VolumeImage for another source"}
]))]
pub struct VolumeImageResource {
    /// The image's name in the cloud, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Make the image from this `Volume` (in the same namespace); cloudvol waits until it is
    /// `Ready`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "the source volume (volumeRef) is immutable: create a new VolumeImage for another source"}
    ]))]
    pub volume_ref: Option<LocalObjectRef>,
    /// Make the image from the cloud volume with this ID. Immutable.
    #[serde(default, rename = "volumeID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "the source volume (volumeID) is immutable: create a new VolumeImage for another source"}
    ]))]
    pub volume_id: Option<String>,
    /// The image's disk format: `raw` (default), `qcow2`, `vmdk` or `vdi`. Immutable.
    #[serde(default = "default_disk_format")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self != 'iso'",
         "message": "diskFormat iso is not supported: the cloud accepts the upload request but never creates the image; use raw, qcow2, vmdk or vdi"},
        {"rule": "self == 'iso' || self in ['raw', 'qcow2', 'vmdk', 'vdi']",
         "message": "diskFormat must be one of raw, qcow2, vmdk or vdi"},
        {"rule": "self == oldSelf",
         "message": "diskFormat is immutable: the image is made once; create a new VolumeImage for another format"}
    ]))]
    #[schemars(length(max = 16))]
    pub disk_format: String,
    /// The image's container format: `bare` (default), `ovf`, `ami`, `aki` or `ari`. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf",
         "message": "containerFormat is immutable: the image is made once; create a new VolumeImage for another format"}
    ]))]
    pub container_format: ContainerFormat,
    /// Make the image even while the volume is attached (`in-use`). Without it the cloud
    /// refuses to upload an attached volume.
    #[serde(default)]
    pub force: bool,
    /// `private` or `shared`. Unset, the image is made `private` and its visibility is then
    /// left as the cloud has it, for an `ImageShare` to manage. A protected image cannot change
    /// visibility on NHN Cloud, so set `shared` here for a protected image that will be shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<ImageVisibility>,
    /// A protected image cannot be deleted (and on NHN Cloud not modified either): cloudvol
    /// refuses to delete it and reports `ImageProtected` until this is set to `false`.
    /// Unset leaves the cloud's value alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// The smallest disk, in GiB, that a volume or server made from the image needs (the
    /// image's `min_disk`). Unset leaves the cloud's value alone (0 for an image made from a
    /// volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65536))]
    pub min_disk: Option<i64>,
    /// The smallest RAM, in MiB, that a server booted from the image needs (the image's
    /// `min_ram`). Unset leaves the cloud's value alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4194304))]
    pub min_ram: Option<i64>,
    /// Tags on the image, each 1 to 255 characters and none starting with `_`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(extend("items" = {
        "type": "string", "minLength": 1, "maxLength": 255,
        "x-kubernetes-validations": [
            {"rule": "!self.startsWith('_')", "message": "tags must not start with _ (the cloud refuses them)"}
        ]
    }))]
    pub tags: Vec<String>,
    /// Custom key/value properties on the image, such as `os_type: linux`. Keys that name the
    /// image's own attributes (`name`, `tags`, `visibility`, ...) are set through their fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(k, size(k) <= 255 && !(k in ['id', 'name', 'status', 'visibility', 'protected', 'tags', 'owner', 'checksum', 'size', 'virtual_size', 'disk_format', 'container_format', 'min_disk', 'min_ram', 'created_at', 'updated_at', 'file', 'self', 'schema', 'locations', 'direct_url', 'os_hidden', 'os_hash_algo', 'os_hash_value']))",
         "message": "properties may not set the image's own attributes (name, tags, visibility, protected, formats, ...): use their fields; keys are at most 255 characters"}
    ]))]
    #[schemars(extend("additionalProperties" = {"type": "string", "maxLength": 255}))]
    pub properties: BTreeMap<String, String>,
}

fn default_disk_format() -> String {
    "raw".into()
}

/// An image container format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    /// No container: the disk image as is.
    #[default]
    Bare,
    /// Open Virtualization Format.
    Ovf,
    /// Amazon machine image.
    Ami,
    /// Amazon kernel image.
    Aki,
    /// Amazon ramdisk image.
    Ari,
}

impl ContainerFormat {
    /// The name the cloud uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerFormat::Bare => "bare",
            ContainerFormat::Ovf => "ovf",
            ContainerFormat::Ami => "ami",
            ContainerFormat::Aki => "aki",
            ContainerFormat::Ari => "ari",
        }
    }
}

// Who can see an image. (No doc comment: for an optional field schemars would put the enum's
// description in place of the field's, and `kubectl explain` would lose the field's text.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageVisibility {
    /// Only the owner tenant.
    Private,
    /// The owner and the tenants added as members.
    Shared,
}

/// What cloudvol last observed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeImageStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The image's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The cloud volume the image was made from.
    #[serde(
        default,
        rename = "sourceVolumeID",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_volume_id: Option<String>,
    /// The tenant and region the cloud resource lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudScope>,
    /// When cloudvol last asked the cloud to make the image, written before the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_requested_at: Option<String>,
    /// The name the last upload request gave the image, unique to that request (the spec's name
    /// and `-cloudvol-` with a random suffix), written before the request: if its answer is
    /// lost, cloudvol finds the image by this name, and only by it. cloudvol renames the image
    /// to `spec.resource.name` once it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_name: Option<String>,
    /// The image as the cloud last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ObservedImage>,
}

/// The image's fields as the cloud reported them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedImage {
    /// The cloud's own status string, for example `queued`, `saving`, `active` or `killed`.
    pub status: String,
    /// Since when cloudvol has seen the image in this status: what the progress deadline of a
    /// transitional status counts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_since: Option<String>,
    /// Name in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `private`, `shared`, `public` or `community`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// Whether the image is protected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// The tenant that owns the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Disk format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    /// Container format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// The smallest disk, in GiB, the image needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<i64>,
    /// The smallest RAM, in MiB, the image needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<i64>,
    /// Checksum of the image data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Tags on the image, including the operator's mark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// When the cloud created the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}
