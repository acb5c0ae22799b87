//! `ImageShare`: the sharing of one image with a set of tenants.

// kube's printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CloudCredentialsRef, Conditions, DeletionPolicy, LocalObjectRef, ManagementPolicy,
    conditions_schema,
};

/// Shares one image with other tenants: sets its visibility to `shared`, adds each tenant as a
/// member and, where the member's credentials are given, accepts the share on its behalf.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "cloudvol.dev",
    version = "v1alpha1",
    kind = "ImageShare",
    plural = "imageshares",
    namespaced,
    doc = "The sharing of one image with other tenants: visibility shared, members added, and acceptance on the members' behalf.",
    status = "ImageShareStatus",
    shortname = "ishare",
    category = "cloudvol",
    printcolumn(name = "Image", type_ = "string", json_path = ".status.id"),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.memberCount",
        description = "Members present on the image"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "integer",
        json_path = ".status.acceptedCount",
        description = "Members that accepted the share"
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
    {"rule": "has(self.imageRef) != has(self.imageID)",
     "message": "give exactly one image: imageRef (a VolumeImage in this namespace) or imageID"},
    {"rule": "has(self.imageRef) == has(oldSelf.imageRef) && has(self.imageID) == has(oldSelf.imageID)",
     "message": "the image (imageRef or imageID) is immutable: create a new ImageShare to share another image"}
]))]
pub struct ImageShareSpec {
    /// The image owner's credentials Secret and cloud.
    pub cloud_credentials_ref: CloudCredentialsRef,
    /// `managed` (default) lets cloudvol change the image's visibility and members; `unmanaged`
    /// only observes the members and never writes to the cloud. Immutable.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "managementPolicy is immutable"}
    ]))]
    pub management_policy: ManagementPolicy,
    /// What deleting this object does: `Delete` (default) removes the members this object
    /// added and restores the visibility it changed; `Orphan` leaves everything as it is.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How often to re-read the members from the cloud when nothing is happening, as a
    /// duration such as `10m` or `1h`, at most `24h`. Defaults to the operator's `--resync-period`.
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
    /// Share the image of this `VolumeImage` (in the same namespace); cloudvol waits until it
    /// is `Ready`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "the image (imageRef) is immutable: create a new ImageShare to share another image"}
    ]))]
    pub image_ref: Option<LocalObjectRef>,
    /// Share the image with this ID. Immutable.
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "the image (imageID) is immutable: create a new ImageShare to share another image"}
    ]))]
    pub image_id: Option<String>,
    /// The tenants to share the image with, keyed by `tenantID`. At least one.
    #[schemars(length(min = 1, max = 128))]
    #[schemars(extend("x-kubernetes-list-type" = "map"))]
    #[schemars(extend("x-kubernetes-list-map-keys" = ["tenantID"]))]
    pub members: Vec<ShareMember>,
}

/// One tenant to share the image with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareMember {
    /// The member tenant's (project's) ID, as the cloud names it; not its name.
    #[serde(rename = "tenantID")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub tenant_id: String,
    /// The member tenant's own credentials. With them cloudvol accepts the share on the
    /// member's behalf (only the member tenant may do so); without them the member stays
    /// `pending` until that tenant accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_credentials_ref: Option<CloudCredentialsRef>,
}

/// What cloudvol last observed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageShareStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// The shared image's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The image's visibility as the cloud last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// The visibility the image had before this object set it to `shared`; set only when this
    /// object changed it, so that deletion restores exactly that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_visibility: Option<String>,
    /// The listed members as the cloud reports them, then the members this object added that
    /// the spec no longer lists, until they are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ObservedMember>,
    /// How many listed members are present on the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i32>,
    /// How many listed members accepted the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_count: Option<i32>,
}

/// One member as the cloud reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedMember {
    /// The member tenant's ID.
    #[serde(rename = "tenantID")]
    pub tenant_id: String,
    /// `pending`, `accepted` or `rejected`, as the cloud reports it; `absent` while the tenant
    /// is not a member of the image.
    pub status: String,
    /// Whether this object added the member (and so removes it on deletion). Recorded before
    /// the member is added, so that a crash in between cannot lose it.
    #[serde(default)]
    pub added_by_this_object: bool,
    /// When the member was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the member's status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}
