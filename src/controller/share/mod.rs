//! The ImageShare controller: the sharing of one image with a set of tenants.
//!
//! observe (the image, its members, the owner's tenant) → [`decide`] → at most one cloud write
//! → report. What this object is about to do (add a member, change the visibility) is written
//! to the status before the cloud call, so that a crash between the call and the status write
//! still knows it was this object's doing (docs/design.md §5).

pub mod decide;

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{CloudCredentialsRef, ImageShare, ImageShareStatus, VolumeImage};
use crate::cloud::model::{Image as CloudImage, Member, MemberStatus, PatchOp, Visibility};
use crate::cloud::{CloudError, Image};
use crate::controller::conditions::Health;
use crate::controller::lifecycle::{Cycle, Reconcile};
use crate::controller::{
    CloudKind, Common, Context, Error, Scope, cloud_error_health, common_spec, object_ref,
};
use decide::{
    DeleteStep, Observed, ShareView, Wanted, Write, claims, counts, decide, decide_delete,
    image_from_ref, image_unreadable, member_credentials_mismatch, moved, no_image_given,
    observed_members, visibility_refused,
};

impl CloudKind for ImageShare {
    const FINALIZER: &'static str = "cloudvol.dev/imageshare";
    const LEFT_ALONE: &'static str = "the image's members and visibility are left as they are";
    fn common(&self) -> Common<'_> {
        common_spec!(self, None)
    }

    fn made_nothing(&self) -> Option<&'static str> {
        self.status
            .as_ref()
            .is_none_or(|s| s.id.is_none())
            .then_some("no image was shared")
    }

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
    crate::controller::lifecycle::reconcile(share, ctx).await
}

impl Reconcile for ImageShare {
    async fn apply(cycle: Cycle<'_, ImageShare>) -> Result<Action, Error> {
        Shell { cycle }.apply().await
    }

    async fn cleanup(cycle: Cycle<'_, ImageShare>) -> Result<Action, Error> {
        Shell { cycle }.cleanup().await
    }
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

/// One reconcile of one ImageShare.
struct Shell<'a> {
    cycle: Cycle<'a, ImageShare>,
}

impl Shell<'_> {
    fn managed(&self) -> bool {
        self.cycle.object.managed()
    }

    async fn apply(&self) -> Result<Action, Error> {
        let image_id = match self.image_id().await? {
            Ok(id) => id,
            Err(health) => return self.close(None, None, &health, false).await,
        };
        let owner = match self.cycle.images() {
            Ok(client) => client,
            Err(health) => return self.close(Some(&image_id), None, &health, false).await,
        };
        let mut seen = match self.observe(owner.as_ref(), &image_id).await {
            Ok(seen) => seen,
            Err(err) => {
                let health = image_unreadable(&image_id, &err);
                return self.close(Some(&image_id), None, &health, false).await;
            }
        };
        let share = self.cycle.object;
        let moving = self
            .cycle
            .report
            .recorded()
            .id
            .filter(|old| *old != image_id && self.managed());
        if let Some(old) = moving
            && let Some(action) = self.move_from(owner.as_ref(), &old, &image_id).await?
        {
            return Ok(action);
        }
        let claimed = if self.managed() {
            self.claimed(&image_id).await?
        } else {
            Vec::new()
        };
        let wanted = Wanted {
            members: &share.spec.members,
            claimed: &claimed,
            managed: self.managed(),
            paused: share.paused(),
        };
        let recorded = self.cycle.report.recorded();
        let decision = decide(&wanted, &seen.observed(&recorded));
        let Some(write) = decision.write else {
            return self
                .close(Some(&image_id), Some(&seen), &decision.health, false)
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
            Write::RemoveMember(tenant) => {
                self.remove_member(owner.as_ref(), &image_id, tenant, &mut seen)
                    .await
            }
            // Only deletion restores the visibility.
            Write::RestoreVisibility(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                let reason = write.reason();
                self.cycle
                    .report
                    .event(EventType::Normal, reason.as_str(), &what, reason.as_str())
                    .await;
                // Look again at once: the next write (or Ready) follows from the new state.
                let recorded = self.cycle.report.recorded();
                let next = decide(&wanted, &seen.observed(&recorded));
                let health = if next.write.is_some() {
                    health
                } else {
                    next.health
                };
                self.close(Some(&image_id), Some(&seen), &health, true)
                    .await
            }
            Err(health) => {
                self.close(Some(&image_id), Some(&seen), &health, false)
                    .await
            }
        }
    }

    /// The image to share: `spec.imageID`, or the ID of the `VolumeImage` in `spec.imageRef`
    /// once it is Ready. `Ok(Err(health))` while there is none.
    async fn image_id(&self) -> Result<Result<String, Health>, Error> {
        let spec = &self.cycle.object.spec;
        if let Some(id) = &spec.image_id {
            return Ok(Ok(id.clone()));
        }
        let Some(reference) = &spec.image_ref else {
            // The schema requires exactly one of imageRef and imageID.
            return Ok(Err(no_image_given()));
        };
        let api: Api<VolumeImage> =
            Api::namespaced(self.cycle.ctx.client.clone(), &self.cycle.namespace);
        let volume_image = api.get_opt(&reference.name).await?;
        Ok(image_from_ref(&reference.name, volume_image.as_ref()))
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
            .cycle
            .object
            .spec
            .members
            .iter()
            .find(|m| m.tenant_id == tenant)
            .and_then(|m| m.member_credentials_ref.as_ref())
        else {
            return Ok(Ok(()));
        };
        let member = match self.cycle.images_of(reference).await? {
            Ok(client) => client,
            Err(health) => return Ok(Err(health)),
        };
        let doing = format!("cannot accept the share as tenant {tenant}");
        // A problem with the member's credentials names the member's Secret.
        let failed = |err: &CloudError| {
            crate::controller::secret::explain(
                cloud_error_health(&doing, err),
                &self.cycle.namespace,
                reference,
            )
        };
        match member.project_id().await {
            Ok(project) => {
                if let Some(health) = member_credentials_mismatch(tenant, project.as_deref()) {
                    return Ok(Err(health));
                }
            }
            Err(err) => return Ok(Err(failed(&err))),
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
                Err(err) => Err(failed(&err)),
            },
        )
    }

    /// Removes a member this object added.
    async fn remove_member(
        &self,
        owner: &dyn Image,
        image_id: &str,
        tenant: &str,
        seen: &mut Seen,
    ) -> Result<(), Health> {
        match owner.delete_member(image_id, tenant).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {
                seen.members.retain(|m| m.member_id != tenant);
                Ok(())
            }
            Err(err) => Err(cloud_error_health(
                &format!("the cloud refused to remove member {tenant}"),
                &err,
            )),
        }
    }

    /// Writes what this object is about to do into the status, before the cloud call.
    async fn record_intent(
        &self,
        image_id: &str,
        seen: &Seen,
        health: &Health,
        intent: &Intent<'_>,
    ) -> Result<(), Error> {
        let status = self.status(Some(image_id), Some(seen), intent);
        self.cycle.report.record(status, health).await
    }

    /// Closes the reconcile for `health`, with what the cloud reported, if anything.
    async fn close(
        &self,
        image_id: Option<&str>,
        seen: Option<&Seen>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.status(image_id, seen, &Intent::default());
        self.cycle.close(status, health, progressed).await
    }

    fn status(
        &self,
        image_id: Option<&str>,
        seen: Option<&Seen>,
        intent: &Intent<'_>,
    ) -> ImageShareStatus {
        let mut status = self.cycle.report.recorded();
        let spec = &self.cycle.object.spec.members;
        if let Some(seen) = seen {
            let (present, accepted) = counts(spec, &seen.members);
            status.visibility = Some(seen.image.visibility.as_str().to_string());
            status.members = observed_members(spec, &seen.members, &status.members, intent.adding);
            status.member_count = Some(present);
            status.accepted_count = Some(accepted);
        }
        if let Some(id) = image_id {
            status.id = Some(id.to_string());
        }
        if status.previous_visibility.is_none() {
            status.previous_visibility = intent.previous_visibility.clone();
        }
        status
    }

    async fn cleanup(&self) -> Result<Action, Error> {
        let Some(image_id) = self.cycle.report.recorded().id else {
            return self.cycle.finalize("no image was shared").await;
        };
        let owner = match self.cycle.images() {
            Ok(client) => client,
            Err(health) => return self.close(None, None, &health, false).await,
        };
        match self.undo(owner.as_ref(), &image_id, "Delete").await? {
            Undone::Done(why) => {
                self.cycle
                    .finalize(&format!("{why}; nothing more to undo"))
                    .await
            }
            Undone::Closed(result) => Ok(result),
        }
    }

    /// One step of undoing what this object did to `image_id` — remove a member it added,
    /// then restore the visibility it changed (docs/design.md §4) — and its report; or what
    /// is left to say once nothing is left to undo.
    async fn undo(&self, owner: &dyn Image, image_id: &str, action: &str) -> Result<Undone, Error> {
        let mut seen = match self.observe(owner, image_id).await {
            Ok(seen) => Some(seen),
            Err(CloudError::NotFound { .. }) => None,
            Err(err) => {
                let health = cloud_error_health("cannot read the image", &err);
                return Ok(Undone::Closed(
                    self.close(None, None, &health, false).await?,
                ));
            }
        };
        let recorded = self.cycle.report.recorded();
        let step = decide_delete(
            seen.as_ref().map(|s| s.observed(&recorded)).as_ref(),
            self.cycle.object.paused(),
        );
        let (write, health) = match step {
            DeleteStep::Done(why) => return Ok(Undone::Done(why)),
            DeleteStep::Blocked(health) => {
                let closed = self.close(None, seen.as_ref(), &health, false).await?;
                return Ok(Undone::Closed(closed));
            }
            DeleteStep::Write(write, health) => (write, health),
        };
        let Some(seen_now) = seen.as_mut() else {
            return Ok(Undone::Done("the image is gone".into()));
        };
        let result = match &write {
            Write::RemoveMember(tenant) => {
                self.remove_member(owner, image_id, tenant, seen_now).await
            }
            Write::RestoreVisibility(visibility) => match owner
                .update_image(
                    image_id,
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
            // Undoing only removes and restores.
            _ => Ok(()),
        };
        let closed = match result {
            Ok(()) => {
                let what = write.describe(image_id);
                self.cycle
                    .report
                    .event(EventType::Normal, write.reason().as_str(), &what, action)
                    .await;
                self.close(None, seen.as_ref(), &health, true).await?
            }
            Err(refused) => self.close(None, seen.as_ref(), &refused, false).await?,
        };
        Ok(Undone::Closed(closed))
    }

    /// The image to share changed (the VolumeImage made a new one): what this object did to the
    /// old one is undone first, so that no member it added is left behind there. `None` once
    /// there is nothing left to undo and the status has forgotten the old image.
    async fn move_from(
        &self,
        owner: &dyn Image,
        old: &str,
        new: &str,
    ) -> Result<Option<Action>, Error> {
        match self.undo(owner, old, "Move").await? {
            Undone::Closed(result) => Ok(Some(result)),
            Undone::Done(_) => {
                let mut status = self.cycle.report.recorded();
                status.id = Some(new.to_string());
                status.members.retain(|m| !m.added_by_this_object);
                status.previous_visibility = None;
                self.cycle.report.record(status, &moved(old, new)).await?;
                Ok(None)
            }
        }
    }

    /// Listed tenants another ImageShare of `image_id` in the namespace owns.
    async fn claimed(&self, image_id: &str) -> Result<Vec<(String, String)>, Error> {
        let api: Api<ImageShare> =
            Api::namespaced(self.cycle.ctx.client.clone(), &self.cycle.namespace);
        let all = api.list(&Default::default()).await?.items;
        let created: Vec<Option<String>> = all
            .iter()
            .map(|s| {
                s.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .collect();
        let others: Vec<ShareView<'_>> = all
            .iter()
            .zip(&created)
            .filter(|(s, _)| !s.done_with_cloud())
            .map(|(s, c)| share_view(s, s.status.as_ref(), c.as_deref()))
            .collect();
        let me = self.cycle.object;
        let recorded = self.cycle.report.recorded();
        let my_created = me
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        let mine = share_view(me, Some(&recorded), my_created.as_deref());
        Ok(claims(&mine, image_id, &others))
    }
}

/// What [`claims`] reads of `share`, whose status is `recorded`.
fn share_view<'a>(
    share: &'a ImageShare,
    recorded: Option<&'a ImageShareStatus>,
    created: Option<&'a str>,
) -> ShareView<'a> {
    ShareView {
        name: share.metadata.name.as_deref().unwrap_or_default(),
        created,
        listed: &share.spec.members,
        recorded: recorded.map(|s| s.members.as_slice()).unwrap_or_default(),
        image_id: recorded
            .and_then(|s| s.id.as_deref())
            .or(share.spec.image_id.as_deref()),
    }
}

/// Where undoing stands.
enum Undone {
    /// Nothing (more) to undo, and why.
    Done(String),
    /// A step was made or is blocked; the reconcile is closed with this.
    Closed(Action),
}
