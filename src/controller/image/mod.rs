//! The VolumeImage controller: one `VolumeImage` object, one image.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{CloudCredentialsRef, DeletionPolicy, ManagementPolicy, VolumeImage};
use crate::controller::CloudKind;

impl CloudKind for VolumeImage {
    const FINALIZER: &'static str = "cloudvol.dev/volumeimage";

    fn credentials_refs(&self) -> Vec<&CloudCredentialsRef> {
        vec![&self.spec.cloud_credentials_ref]
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
