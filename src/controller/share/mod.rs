//! The ImageShare controller: the sharing of one image with a set of tenants.
//!
//! observe (the image, its members, the owner's tenant) → [`decide`] → at most one cloud write
//! → report. What this object is about to do (add a member, change the visibility) is written
//! to the status before the cloud call, so that a crash between the call and the status write
//! still knows it was this object's doing (DESIGN.md §5).

pub mod decide;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{
    CloudCredentialsRef, DeletionPolicy, ImageShare, ImageShareStatus, ManagementPolicy,
    VolumeImage,
};
use crate::cloud::model::{Image as CloudImage, Member, MemberStatus, PatchOp, Visibility};
use crate::cloud::{CloudError, Image};
use crate::controller::conditions::Health;
use crate::controller::credentials::{self, LoadError};
use crate::controller::report::finalizing;
use crate::controller::{
    CloudKind, Context, Error, Report, Scope, cloud_error_health, object_ref, with_finalizer,
};
use decide::{
    DeleteStep, Observed, Wanted, Write, counts, decide, decide_delete, image_from_ref,
    image_unreadable, member_credentials_mismatch, observed_members, visibility_refused,
};

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

/// An ImageShare also reconciles when the VolumeImage its `imageRef` names changes: it waits
/// for that VolumeImage to be Ready, and shares its image then.
pub fn relations(
    controller: Controller<DeserializeGuard<ImageShare>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<ImageShare>> {
    let store = controller.store();
    controller.watches(
        scope.api::<DeserializeGuard<VolumeImage>>(),
        scope.watch(),
        move |image| {
            let Ok(image) = image.0 else {
                return Vec::new();
            };
            let name = image.name_any();
            store
                .state()
                .iter()
                .filter_map(|share| share.0.as_ref().ok())
                .filter(|share| share.namespace() == image.namespace())
                .filter(|share| {
                    share
                        .spec
                        .image_ref
                        .as_ref()
                        .is_some_and(|r| r.name == name)
                })
                .map(|share| object_ref::<ImageShare, _>(&share.name_any(), share))
                .collect()
        },
    )
}

/// Reconciles one ImageShare.
pub async fn reconcile(share: Arc<ImageShare>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx = &ctx;
    with_finalizer(
        share,
        ctx,
        |s| async move { Reconcile::new(ctx, &s).apply().await },
        |s| async move { Reconcile::new(ctx, &s).cleanup().await },
    )
    .await
}

/// What the owner's credentials saw of the image.
struct Seen {
    image: CloudImage,
    /// Empty unless the image is `shared` (Glance has members only on shared images).
    members: Vec<Member>,
    /// The tenant the owner's credentials act as, when the cloud says.
    project_id: Option<String>,
}

impl Seen {
    fn observed<'a>(&'a self, status: &'a ImageShareStatus) -> Observed<'a> {
        Observed {
            image: &self.image,
            project_id: self.project_id.as_deref(),
            members: &self.members,
            recorded: &status.members,
            previous_visibility: status.previous_visibility.as_deref(),
        }
    }

    /// Puts `member` in place of the entry for the same tenant.
    fn upsert(&mut self, member: Member) {
        self.members.retain(|m| m.member_id != member.member_id);
        self.members.push(member);
    }
}

/// What this object is about to do, recorded in the status before the cloud call.
#[derive(Default)]
struct Intent<'a> {
    /// The tenant about to be added as a member.
    adding: Option<&'a str>,
    /// The visibility the image had before this object changes it.
    previous_visibility: Option<String>,
}

struct Reconcile<'a> {
    ctx: &'a Context,
    share: &'a ImageShare,
    report: Report<'a, ImageShare>,
    namespace: String,
    /// The status as last written, `status` until this reconcile writes one.
    recorded: ImageShareStatus,
}

impl<'a> Reconcile<'a> {
    fn new(ctx: &'a Context, share: &'a ImageShare) -> Self {
        Reconcile {
            ctx,
            share,
            report: Report::new(ctx, share),
            namespace: share.namespace().unwrap_or_default(),
            recorded: share.status.clone().unwrap_or_default(),
        }
    }

    fn managed(&self) -> bool {
        self.share.spec.management_policy == ManagementPolicy::Managed
    }

    async fn apply(&mut self) -> Result<Action, Error> {
        let image_id = match self.image_id().await? {
            Ok(id) => id,
            Err(health) => return self.finish(None, None, &health, false).await,
        };
        let owner = match self.connect(&self.share.spec.cloud_credentials_ref).await {
            Ok(client) => client,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => {
                return self.finish(Some(&image_id), None, &health, false).await;
            }
        };
        if self.share.needs_cloud_to_delete() {
            let secret = &self.share.spec.cloud_credentials_ref.secret_name;
            credentials::hold(&self.ctx.client, &self.namespace, secret).await?;
        }
        let mut seen = match self.observe(owner.as_ref(), &image_id).await {
            Ok(seen) => seen,
            Err(err) => {
                let health = image_unreadable(&image_id, &err);
                return self.finish(Some(&image_id), None, &health, false).await;
            }
        };
        let share = self.share;
        let wanted = Wanted {
            members: &share.spec.members,
            managed: self.managed(),
            paused: share.paused(),
        };
        let decision = decide(&wanted, &seen.observed(&self.recorded));
        let Some(write) = decision.write else {
            return self
                .finish(Some(&image_id), Some(&seen), &decision.health, false)
                .await;
        };
        let health = decision.health;
        let what = write.describe(&image_id);
        let result = match &write {
            Write::SetVisibility => {
                let intent = Intent {
                    previous_visibility: Some(seen.image.visibility.as_str().to_string()),
                    ..Default::default()
                };
                self.record_intent(&image_id, &seen, &health, &intent)
                    .await?;
                match owner
                    .update_image(&image_id, &[PatchOp::replace("visibility", "shared")])
                    .await
                {
                    Ok(image) => {
                        seen.image = image;
                        Ok(())
                    }
                    Err(err) => Err(visibility_refused(&seen.image, &err)),
                }
            }
            Write::AddMember(tenant) => {
                let intent = Intent {
                    adding: Some(tenant.as_str()),
                    ..Default::default()
                };
                self.record_intent(&image_id, &seen, &health, &intent)
                    .await?;
                match owner.add_member(&image_id, tenant).await {
                    Ok(member) => {
                        seen.upsert(member);
                        Ok(())
                    }
                    // 409: already a member, e.g. an add whose answer was lost. That is success.
                    Err(CloudError::Conflict { .. }) => {
                        if let Ok(member) = owner.show_member(&image_id, tenant).await {
                            seen.upsert(member);
                        }
                        Ok(())
                    }
                    Err(err) => Err(cloud_error_health(
                        &format!("the cloud refused to add tenant {tenant} as a member"),
                        &err,
                    )),
                }
            }
            Write::AcceptAs(tenant) => self.accept_as(&image_id, tenant, &mut seen).await?,
            Write::RemoveMember(tenant) => match owner.delete_member(&image_id, tenant).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {
                    seen.members.retain(|m| &m.member_id != tenant);
                    Ok(())
                }
                Err(err) => Err(cloud_error_health(
                    &format!("the cloud refused to remove member {tenant}"),
                    &err,
                )),
            },
            // Only deletion restores the visibility.
            Write::RestoreVisibility(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                self.report
                    .event(EventType::Normal, write.reason(), &what, write.reason())
                    .await;
                // Look again at once: the next write (or Ready) follows from the new state.
                let next = decide(&wanted, &seen.observed(&self.recorded));
                let health = if next.write.is_some() {
                    health
                } else {
                    next.health
                };
                self.finish(Some(&image_id), Some(&seen), &health, true)
                    .await
            }
            Err(health) => {
                self.finish(Some(&image_id), Some(&seen), &health, false)
                    .await
            }
        }
    }

    /// The image to share: `spec.imageID`, or the ID of the `VolumeImage` in `spec.imageRef`
    /// once it is Ready. `Ok(Err(health))` while there is none.
    async fn image_id(&self) -> Result<Result<String, Health>, Error> {
        if let Some(id) = &self.share.spec.image_id {
            return Ok(Ok(id.clone()));
        }
        let Some(reference) = &self.share.spec.image_ref else {
            // The schema requires exactly one of imageRef and imageID.
            return Ok(Err(Health::stalled(
                "InvalidSpec",
                "give exactly one image: imageRef or imageID",
            )));
        };
        let api: Api<VolumeImage> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let volume_image = api.get_opt(&reference.name).await?;
        Ok(image_from_ref(&reference.name, volume_image.as_ref()))
    }

    /// Loads credentials and picks the image client.
    async fn connect(&self, reference: &CloudCredentialsRef) -> Result<Arc<dyn Image>, LoadError> {
        let creds = credentials::load(&self.ctx.client, &self.namespace, reference).await?;
        self.ctx.connector.image(&creds).map_err(|err| {
            LoadError::Stalled(cloud_error_health(
                &format!(
                    "cannot use the credentials of cloud {:?} in Secret {} for images",
                    reference.cloud_name, reference.secret_name
                ),
                &err,
            ))
        })
    }

    /// Reads the image, its members (if it is shared) and, for a managed object, the tenant the
    /// owner's credentials act as.
    async fn observe(&self, client: &dyn Image, image_id: &str) -> Result<Seen, CloudError> {
        let image = client.show_image(image_id).await?;
        let members = if image.visibility == Visibility::Shared {
            client.list_members(image_id).await?
        } else {
            Vec::new()
        };
        let project_id = if self.managed() {
            client.project_id().await?
        } else {
            None
        };
        Ok(Seen {
            image,
            members,
            project_id,
        })
    }

    /// Accepts the share with the member tenant's own credentials: only the member may change
    /// its status, and the owner's token gets 403. `Err` only for a Kubernetes API failure.
    async fn accept_as(
        &self,
        image_id: &str,
        tenant: &str,
        seen: &mut Seen,
    ) -> Result<Result<(), Health>, Error> {
        let Some(reference) = self
            .share
            .spec
            .members
            .iter()
            .find(|m| m.tenant_id == tenant)
            .and_then(|m| m.member_credentials_ref.as_ref())
        else {
            return Ok(Ok(()));
        };
        let member = match self.connect(reference).await {
            Ok(client) => client,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => return Ok(Err(health)),
        };
        let doing = format!("cannot accept the share as tenant {tenant}");
        match member.project_id().await {
            Ok(project) => {
                if let Some(health) = member_credentials_mismatch(tenant, project.as_deref()) {
                    return Ok(Err(health));
                }
            }
            Err(err) => return Ok(Err(cloud_error_health(&doing, &err))),
        }
        Ok(
            match member
                .update_member_status(image_id, tenant, MemberStatus::Accepted)
                .await
            {
                Ok(accepted) => {
                    seen.upsert(accepted);
                    Ok(())
                }
                Err(err) => Err(cloud_error_health(&doing, &err)),
            },
        )
    }

    /// Writes what this object is about to do into the status, before the cloud call.
    async fn record_intent(
        &mut self,
        image_id: &str,
        seen: &Seen,
        health: &Health,
        intent: &Intent<'_>,
    ) -> Result<(), Error> {
        let status = self.status(Some(image_id), Some(seen), health, intent);
        self.report
            .write_status(Some(&self.recorded), &status)
            .await?;
        self.recorded = status;
        Ok(())
    }

    /// Writes the status for `health` (with what the cloud reported, if anything) and picks
    /// the requeue.
    async fn finish(
        &mut self,
        image_id: Option<&str>,
        seen: Option<&Seen>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.status(image_id, seen, health, &Intent::default());
        self.report
            .finish(Some(&self.recorded), &status, health)
            .await?;
        self.recorded = status;
        Ok(self.report.requeue(health, progressed))
    }

    fn status(
        &self,
        image_id: Option<&str>,
        seen: Option<&Seen>,
        health: &Health,
        intent: &Intent<'_>,
    ) -> ImageShareStatus {
        let previous = &self.recorded;
        let spec = &self.share.spec.members;
        let (visibility, members, member_count, accepted_count) = match seen {
            Some(seen) => {
                let (present, accepted) = counts(spec, &seen.members);
                (
                    Some(seen.image.visibility.as_str().to_string()),
                    observed_members(spec, &seen.members, &previous.members, intent.adding),
                    Some(present),
                    Some(accepted),
                )
            }
            // Nothing new from the cloud: keep what was last seen.
            None => (
                previous.visibility.clone(),
                previous.members.clone(),
                previous.member_count,
                previous.accepted_count,
            ),
        };
        ImageShareStatus {
            observed_generation: self.share.metadata.generation,
            conditions: self.report.conditions(health),
            id: image_id.map(str::to_string).or_else(|| previous.id.clone()),
            visibility,
            previous_visibility: previous
                .previous_visibility
                .clone()
                .or_else(|| intent.previous_visibility.clone()),
            members,
            member_count,
            accepted_count,
        }
    }

    async fn cleanup(&mut self) -> Result<Action, Error> {
        if !self.share.needs_cloud_to_delete() {
            let why = if self.managed() {
                "deletionPolicy is Orphan: the image's members and visibility are left as they are"
            } else {
                "managementPolicy is unmanaged: the image's members and visibility are left as \
                 they are"
            };
            return self.done(why).await;
        }
        let Some(image_id) = self.recorded.id.clone() else {
            return self.done("no image was shared").await;
        };
        let owner = match self.connect(&self.share.spec.cloud_credentials_ref).await {
            Ok(client) => client,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => return self.hold(None, &health, false).await,
        };
        let mut seen = match self.observe(owner.as_ref(), &image_id).await {
            Ok(seen) => Some(seen),
            Err(CloudError::NotFound { .. }) => None,
            Err(err) => {
                let health = cloud_error_health("cannot read the image", &err);
                return self.hold(None, &health, false).await;
            }
        };
        let step = decide_delete(
            seen.as_ref().map(|s| s.observed(&self.recorded)).as_ref(),
            self.share.paused(),
        );
        let (write, health) = match step {
            DeleteStep::Done(why) => {
                return self.done(&format!("{why}; nothing more to undo")).await;
            }
            DeleteStep::Blocked(health) => return self.hold(seen.as_ref(), &health, false).await,
            DeleteStep::Write(write, health) => (write, health),
        };
        let Some(seen_now) = seen.as_mut() else {
            return self.done("the image is gone").await;
        };
        let result = match &write {
            Write::RemoveMember(tenant) => match owner.delete_member(&image_id, tenant).await {
                Ok(()) | Err(CloudError::NotFound { .. }) => {
                    seen_now.members.retain(|m| &m.member_id != tenant);
                    Ok(())
                }
                Err(err) => Err(cloud_error_health(
                    &format!("the cloud refused to remove member {tenant}"),
                    &err,
                )),
            },
            Write::RestoreVisibility(visibility) => match owner
                .update_image(
                    &image_id,
                    &[PatchOp::replace("visibility", visibility.as_str())],
                )
                .await
            {
                Ok(image) => {
                    seen_now.image = image;
                    Ok(())
                }
                Err(err) => Err(visibility_refused(&seen_now.image, &err)),
            },
            // Deletion only removes and restores.
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                let what = write.describe(&image_id);
                self.report
                    .event(EventType::Normal, write.reason(), &what, "Delete")
                    .await;
                self.hold(seen.as_ref(), &health, true).await
            }
            Err(refused) => self.hold(seen.as_ref(), &refused, false).await,
        }
    }

    /// Reports a deletion that waits or is blocked, and keeps the finalizer.
    async fn hold(
        &mut self,
        seen: Option<&Seen>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.status(None, seen, health, &Intent::default());
        self.report
            .finish(Some(&self.recorded), &status, health)
            .await?;
        self.recorded = status;
        Err(self.report.hold(health, progressed))
    }

    /// The object no longer needs the cloud: say so, release the credentials Secrets if no one
    /// else needs them, and let the finalizer go.
    async fn done(&mut self, why: &str) -> Result<Action, Error> {
        let status = self.status(None, None, &finalizing(why), &Intent::default());
        self.report
            .write_status(Some(&self.recorded), &status)
            .await?;
        self.recorded = status;
        self.report.release().await
    }
}
