//! The ImageShare controller: the sharing of one image with a set of tenants.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{CloudCredentialsRef, DeletionPolicy, ImageShare, ManagementPolicy};
use crate::controller::CloudKind;

impl CloudKind for ImageShare {
    const FINALIZER: &'static str = "cloudvol.dev/imageshare";

    /// The owner's credentials and every member's.
    fn credentials_refs(&self) -> Vec<&CloudCredentialsRef> {
        std::iter::once(&self.spec.cloud_credentials_ref)
            .chain(
                self.spec
                    .members
                    .iter()
                    .filter_map(|m| m.member_credentials_ref.as_ref()),
            )
            .collect()
    }
    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }
    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }
    fn resync_period(&self) -> Option<&str> {
        self.spec.resync_period.as_deref()
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }
}
