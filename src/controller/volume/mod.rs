//! The Volume controller: one `Volume` object, one cloud volume.

pub mod decide;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{
    CloudCredentialsRef, DeletionPolicy, ManagementPolicy, ObservedVolume, Volume,
    VolumeAttachment, VolumeImage, VolumeStatus,
};
use crate::cloud::model::{CreateVolume, NhnEncryptionRequest, Volume as CloudVolume, VolumeQuery};
use crate::cloud::{BlockStorage, CloudError};
use crate::controller::conditions::Health;
use crate::controller::credentials::{self, LoadError};
use crate::controller::report::finalizing;
use crate::controller::{
    CloudKind, Context, Error, Report, Scope, cloud_error_health, object_ref, with_finalizer,
};
use decide::{DeleteStep, UID_MARK, Wanted, Write, decide, decide_delete, delete_refused};

impl CloudKind for Volume {
    const FINALIZER: &'static str = "cloudvol.dev/volume";

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

/// A Volume is looked at again when a VolumeImage made from it changes (an upload turns the
/// volume `uploading` and back).
pub fn relations(
    controller: Controller<DeserializeGuard<Volume>>,
    scope: &Scope,
) -> Controller<DeserializeGuard<Volume>> {
    controller.watches(
        scope.api::<DeserializeGuard<VolumeImage>>(),
        scope.watch(),
        |image| {
            let object = image.0.ok()?;
            let source = object.spec.resource.as_ref()?.volume_ref.as_ref()?;
            Some(object_ref::<Volume, _>(&source.name, &object))
        },
    )
}

/// Reconciles one Volume.
pub async fn reconcile(volume: Arc<Volume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ctx = &ctx;
    with_finalizer(
        volume,
        ctx,
        |v| async move { Reconcile::new(ctx, &v).apply().await },
        |v| async move { Reconcile::new(ctx, &v).cleanup().await },
    )
    .await
}

/// Where the cloud volume of an object stands.
enum Located {
    Found(Box<CloudVolume>),
    /// No volume carries the object's mark: it was never created.
    NotCreated,
    /// The volume in `status.id` is gone from the cloud.
    Disappeared(String),
    /// An import matched nothing.
    ImportMissing(String),
    /// A filter import matched several volumes.
    Ambiguous(Vec<String>),
}

struct Reconcile<'a> {
    ctx: &'a Context,
    volume: &'a Volume,
    report: Report<'a, Volume>,
    namespace: String,
}

impl<'a> Reconcile<'a> {
    fn new(ctx: &'a Context, volume: &'a Volume) -> Self {
        Reconcile {
            ctx,
            volume,
            report: Report::new(ctx, volume),
            namespace: volume.namespace().unwrap_or_default(),
        }
    }

    fn managed(&self) -> bool {
        self.volume.spec.management_policy == ManagementPolicy::Managed
    }

    fn uid(&self) -> String {
        self.volume.uid().unwrap_or_default()
    }

    async fn apply(&self) -> Result<Action, Error> {
        let storage = match self.connect().await {
            Ok(storage) => storage,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => return self.finish(None, &health, false).await,
        };
        if self.volume.needs_cloud_to_delete() {
            let secret = &self.volume.spec.cloud_credentials_ref.secret_name;
            credentials::hold(&self.ctx.client, &self.namespace, secret).await?;
        }
        let current_id = self.volume.status.as_ref().and_then(|s| s.id.clone());
        let located = match self.locate(storage.as_ref(), current_id.as_deref()).await {
            Ok(located) => located,
            Err(err) => {
                return self
                    .finish(
                        None,
                        &cloud_error_health("cannot read the volume", &err),
                        false,
                    )
                    .await;
            }
        };
        let cloud_volume = match located {
            Located::Found(v) => *v,
            Located::Ambiguous(ids) => {
                let health = Health::stalled(
                    "AmbiguousImport",
                    format!(
                        "spec.import.filter matches {} volumes ({}); cloudvol never guesses: import \
                         by id instead",
                        ids.len(),
                        ids.join(", ")
                    ),
                );
                return self.finish(None, &health, false).await;
            }
            Located::ImportMissing(what) => {
                let health = Health::stalled(
                    "ImportNotFound",
                    format!("no volume matches spec.import ({what}); check the id or the name"),
                );
                return self.finish(None, &health, false).await;
            }
            Located::Disappeared(id) if !self.managed() || self.volume.spec.import.is_some() => {
                let health = Health::stalled(
                    "VolumeNotFound",
                    format!("the imported volume {id} no longer exists in the cloud"),
                );
                return self.finish(None, &health, false).await;
            }
            Located::Disappeared(id) => {
                // A volume cloudvol made was deleted behind its back: say so loudly, then make
                // it again, as the spec asks.
                self.report
                    .event(
                        EventType::Warning,
                        "VolumeDisappeared",
                        &format!(
                            "volume {id} was deleted outside cloudvol; creating a new, empty one"
                        ),
                        "Recreate",
                    )
                    .await;
                return self.create(storage.as_ref()).await;
            }
            Located::NotCreated => return self.create(storage.as_ref()).await,
        };
        let wanted = Wanted {
            resource: if self.managed() {
                self.volume.spec.resource.as_ref()
            } else {
                None
            },
            default_name: &self.volume.name_any(),
            paused: self.volume.paused(),
        };
        let decision = decide(&wanted, &cloud_volume);
        let Some(write) = decision.write else {
            return self
                .finish(Some(&cloud_volume), &decision.health, false)
                .await;
        };
        let (result, action, done) = match &write {
            Write::Extend { new_size } => (
                storage.extend_volume(&cloud_volume.id, *new_size).await,
                "Extend",
                "Extended",
            ),
            Write::Update(update) => (
                storage
                    .update_volume(&cloud_volume.id, update)
                    .await
                    .map(drop),
                "Update",
                "Updated",
            ),
        };
        match result {
            Ok(()) => {
                self.report
                    .event(EventType::Normal, done, decision.health.message(), action)
                    .await;
                self.finish(Some(&cloud_volume), &decision.health, true)
                    .await
            }
            Err(err) => {
                let health = cloud_error_health(
                    &format!("the cloud refused to {}", action.to_lowercase()),
                    &err,
                );
                self.finish(Some(&cloud_volume), &health, false).await
            }
        }
    }

    /// Loads the credentials and picks the block-storage client. A problem a person must fix
    /// comes back as the health to report.
    async fn connect(&self) -> Result<Arc<dyn BlockStorage>, LoadError> {
        let reference = &self.volume.spec.cloud_credentials_ref;
        let creds = credentials::load(&self.ctx.client, &self.namespace, reference).await?;
        self.ctx.connector.block_storage(&creds).map_err(|err| {
            LoadError::Stalled(cloud_error_health(
                "cannot use these credentials for block storage",
                &err,
            ))
        })
    }

    /// Finds the cloud volume: by `status.id`, by the import, or by the object's mark.
    async fn locate(
        &self,
        storage: &dyn BlockStorage,
        current_id: Option<&str>,
    ) -> Result<Located, CloudError> {
        let import = self.volume.spec.import.as_ref();
        if let Some(id) = current_id {
            match storage.show_volume(id).await {
                Ok(v) => return Ok(Located::Found(Box::new(v))),
                // An import by name follows the name: look again below.
                Err(CloudError::NotFound { .. }) if import.is_some_and(|i| i.filter.is_some()) => {}
                Err(CloudError::NotFound { .. }) => {
                    return Ok(Located::Disappeared(id.to_string()));
                }
                Err(err) => return Err(err),
            }
        }
        if let Some(import) = import {
            if let Some(id) = &import.id {
                return match storage.show_volume(id).await {
                    Ok(v) => Ok(Located::Found(Box::new(v))),
                    Err(CloudError::NotFound { .. }) => {
                        Ok(Located::ImportMissing(format!("id {id}")))
                    }
                    Err(err) => Err(err),
                };
            }
            if let Some(filter) = &import.filter {
                let query = VolumeQuery {
                    name: Some(filter.name.clone()),
                    ..Default::default()
                };
                let mut found = storage.list_volumes_detail(&query).await?;
                return Ok(match found.len() {
                    0 => Located::ImportMissing(format!("name {:?}", filter.name)),
                    1 => Located::Found(Box::new(found.remove(0))),
                    _ => Located::Ambiguous(found.into_iter().map(|v| v.id).collect()),
                });
            }
        }
        self.find_marked(storage).await
    }

    /// The volume carrying this object's mark: made by an earlier create whose answer (or
    /// status write) was lost.
    async fn find_marked(&self, storage: &dyn BlockStorage) -> Result<Located, CloudError> {
        let query = VolumeQuery {
            metadata: [(UID_MARK.to_string(), self.uid())].into(),
            ..Default::default()
        };
        let mut marked = storage.list_volumes_detail(&query).await?;
        marked.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(match marked.into_iter().next() {
            Some(v) => Located::Found(Box::new(v)),
            None => Located::NotCreated,
        })
    }

    /// Creates the volume, marked with the object's UID, and records its ID at once.
    async fn create(&self, storage: &dyn BlockStorage) -> Result<Action, Error> {
        let Some(resource) = self
            .volume
            .spec
            .resource
            .as_ref()
            .filter(|_| self.managed())
        else {
            // The schema requires import or resource; an import that found nothing is
            // reported by locate, so this is only reachable by an unmanaged object.
            let health = Health::stalled("ImportNotFound", "no volume to observe");
            return self.finish(None, &health, false).await;
        };
        if self.volume.paused() {
            let health = Health::stalled(
                "Paused",
                "the annotation cloudvol.dev/paused is \"true\", so cloudvol does not create the \
                 volume; remove the annotation to continue",
            );
            return self.finish(None, &health, false).await;
        }
        let mut metadata = resource.metadata.clone();
        metadata.insert(UID_MARK.to_string(), self.uid());
        let request = CreateVolume {
            size: resource.size.unwrap_or(1).max(1) as u64,
            name: Some(
                resource
                    .name
                    .clone()
                    .unwrap_or_else(|| self.volume.name_any()),
            ),
            description: resource.description.clone(),
            volume_type: resource.volume_type.clone(),
            availability_zone: resource.availability_zone.clone(),
            snapshot_id: resource.snapshot_id.clone(),
            source_volid: resource.source_volume_id.clone(),
            image_ref: None,
            metadata,
            nhn_encryption: resource.encryption.as_ref().map(|e| NhnEncryptionRequest {
                skm_appkey: e.skm_app_key.clone(),
                skm_key_id: e.skm_key_id.clone(),
            }),
        };
        match storage.create_volume(&request).await {
            Ok(created) => {
                let health = Health::reconciling(
                    "Creating",
                    format!("the cloud is creating volume {}", created.id),
                );
                self.report
                    .event(
                        EventType::Normal,
                        "Created",
                        &format!("created volume {}", created.id),
                        "Create",
                    )
                    .await;
                self.finish(Some(&created), &health, true).await
            }
            Err(err) => {
                let health = cloud_error_health("the cloud refused to create the volume", &err);
                self.finish(None, &health, false).await
            }
        }
    }

    /// Writes the status for `health` (with what the cloud reported, if anything) and picks
    /// the requeue.
    async fn finish(
        &self,
        cloud_volume: Option<&CloudVolume>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.status(cloud_volume, health);
        self.report
            .finish(self.volume.status.as_ref(), &status, health)
            .await?;
        Ok(self.report.requeue(health, progressed))
    }

    fn status(&self, cloud_volume: Option<&CloudVolume>, health: &Health) -> VolumeStatus {
        let previous = self.volume.status.clone().unwrap_or_default();
        let (id, resource, attachments) = match cloud_volume {
            Some(v) => (Some(v.id.clone()), Some(observed(v)), attachments(v)),
            // Nothing new from the cloud: keep what was last seen.
            None => (previous.id, previous.resource, previous.attachments),
        };
        VolumeStatus {
            observed_generation: self.volume.metadata.generation,
            conditions: self.report.conditions(health),
            id,
            resource,
            attachments,
        }
    }

    async fn cleanup(&self) -> Result<Action, Error> {
        if !self.volume.needs_cloud_to_delete() {
            let why = if self.managed() {
                "deletionPolicy is Orphan: the cloud volume is left as it is"
            } else {
                "managementPolicy is unmanaged: the cloud volume is left as it is"
            };
            return self.done(why).await;
        }
        let storage = match self.connect().await {
            Ok(storage) => storage,
            Err(LoadError::Api(err)) => return Err(err),
            Err(LoadError::Stalled(health)) => return self.hold(None, &health, false).await,
        };
        let current_id = self.volume.status.as_ref().and_then(|s| s.id.clone());
        let cloud_volume = match self.locate(storage.as_ref(), current_id.as_deref()).await {
            Ok(Located::Found(v)) => Some(*v),
            Ok(_) => None,
            Err(err) => {
                return self
                    .hold(
                        None,
                        &cloud_error_health("cannot read the volume", &err),
                        false,
                    )
                    .await;
            }
        };
        let delete_key = format!("{}/delete", self.volume.key());
        let step = decide_delete(
            cloud_volume.as_ref(),
            self.volume.paused(),
            self.ctx.attempts.current(&delete_key),
        );
        match step {
            DeleteStep::Done => {
                self.ctx.attempts.reset(&delete_key);
                self.done("the cloud volume is deleted").await
            }
            DeleteStep::Wait(health) | DeleteStep::Blocked(health) => {
                self.hold(cloud_volume.as_ref(), &health, false).await
            }
            DeleteStep::Delete => {
                let Some(v) = cloud_volume else {
                    return self.done("the cloud volume is deleted").await;
                };
                // Only deletes that the cloud failed (error_deleting) use up the retries.
                if v.status == crate::cloud::model::VolumeStatus::ErrorDeleting {
                    self.ctx.attempts.next(&delete_key);
                }
                match storage.delete_volume(&v.id).await {
                    Ok(()) | Err(CloudError::NotFound { .. }) => {
                        let health = Health::reconciling(
                            "Deleting",
                            format!("the cloud is deleting volume {}", v.id),
                        );
                        self.report
                            .event(
                                EventType::Normal,
                                "Deleting",
                                &format!("deleting volume {}", v.id),
                                "Delete",
                            )
                            .await;
                        self.hold(Some(&v), &health, true).await
                    }
                    Err(CloudError::BadRequest { message }) => {
                        self.hold(Some(&v), &delete_refused(&v.id, &message), false)
                            .await
                    }
                    Err(err) => {
                        let health =
                            cloud_error_health("the cloud refused to delete the volume", &err);
                        self.hold(Some(&v), &health, false).await
                    }
                }
            }
        }
    }

    /// Reports a deletion that waits or is blocked, and keeps the finalizer.
    async fn hold(
        &self,
        cloud_volume: Option<&CloudVolume>,
        health: &Health,
        progressed: bool,
    ) -> Result<Action, Error> {
        let status = self.status(cloud_volume, health);
        self.report
            .finish(self.volume.status.as_ref(), &status, health)
            .await?;
        Err(self.report.hold(health, progressed))
    }

    /// The object no longer needs the cloud: say so, release the credentials Secret if no one
    /// else needs it, and let the finalizer go.
    async fn done(&self, why: &str) -> Result<Action, Error> {
        let status = self.status(None, &finalizing(why));
        self.report
            .write_status(self.volume.status.as_ref(), &status)
            .await?;
        self.report.release().await
    }
}

fn observed(v: &CloudVolume) -> ObservedVolume {
    ObservedVolume {
        status: v.status.as_str().to_string(),
        name: v.name.clone(),
        description: v.description.clone(),
        size: Some(v.size as i64),
        volume_type: v.volume_type.clone(),
        availability_zone: v.availability_zone.clone(),
        snapshot_id: v.snapshot_id.clone(),
        source_volume_id: v.source_volid.clone(),
        bootable: Some(v.bootable),
        encrypted: Some(v.encrypted),
        metadata: v.metadata.clone(),
        created_at: v.created_at.clone(),
    }
}

fn attachments(v: &CloudVolume) -> Vec<VolumeAttachment> {
    v.attachments
        .iter()
        .filter_map(|a| {
            Some(VolumeAttachment {
                server_id: a.server_id.clone()?,
                attachment_id: a.attachment_id.clone(),
                device: a.device.clone(),
            })
        })
        .collect()
}
