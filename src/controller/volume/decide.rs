//! The Volume rules, as pure functions from the spec and what the cloud reported to the next
//! step. No I/O here: every rule is a row in a table test.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};

use crate::api::{
    MigrationPolicy as SpecMigrationPolicy, Volume as VolumeObject, VolumeImage, VolumeResource,
    VolumeRetype,
};
use crate::cloud::CloudError;
use crate::cloud::model::{
    CreateVolume, Image, MemberStatus, MigrationPolicy, NhnEncryptionRequest, UpdateVolume,
    Visibility, Volume, VolumeStatus,
};
use crate::controller::conditions::{Health, State};
use crate::controller::reasons::Reason;
use crate::controller::states::{StatusClass, image_class, volume_class, volume_reason};
use crate::controller::{CloudKind, cloud_error_health, paused, ready_at_generation};

/// The metadata key that marks a cloud volume as created for one Kubernetes object (its UID),
/// so that a create whose answer was lost is adopted instead of repeated (docs/design.md §5).
pub const UID_MARK: &str = "cloudvol.dev/uid";

/// The health a status alone implies, before comparing with the spec.
pub fn status_health(volume: &Volume) -> Health {
    let reason = volume_reason(&volume.status);
    let status = volume.status.as_str();
    match volume_class(&volume.status) {
        StatusClass::Usable => {
            Health::derived(State::Ready, reason, format!("the volume is {status}"))
        }
        StatusClass::Transitional => Health::derived(
            State::Reconciling,
            reason,
            format!("the cloud reports the volume as {status}; waiting for it to finish"),
        ),
        StatusClass::NeedsPerson => {
            Health::derived(State::Stalled, reason, needs_person_message(volume))
        }
    }
}

fn needs_person_message(volume: &Volume) -> String {
    let status = volume.status.as_str();
    match &volume.status {
        VolumeStatus::AwaitingTransfer => format!(
            "volume {} is awaiting a transfer to another tenant; accept or cancel the transfer",
            volume.id
        ),
        VolumeStatus::Unknown(_) => format!(
            "the cloud reports volume {} in status {status:?}, which cloudvol does not know; \
             check the volume in the cloud console",
            volume.id
        ),
        _ => format!(
            "the cloud reports volume {} in status {status}; fix or delete it in the cloud, \
             then cloudvol continues",
            volume.id
        ),
    }
}

/// The one cloud write a reconcile makes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// `os-extend` to this size in GiB.
    Extend { new_size: u64 },
    /// `PUT` name, description and metadata.
    Update(UpdateVolume),
    /// `os-retype` to this volume type.
    Retype {
        new_type: String,
        policy: MigrationPolicy,
    },
}

/// What to do about an existing volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The write to make now, if any (never while paused or unmanaged).
    pub write: Option<Write>,
    /// The health to report.
    pub health: Health,
}

/// What the object asks of an existing volume.
pub struct Wanted<'a> {
    /// `None` when the object only observes (unmanaged, or an import without `resource`).
    pub resource: Option<&'a VolumeResource>,
    /// The name a created volume gets when the spec gives none: the object's name.
    pub default_name: &'a str,
    /// The `cloudvol.dev/paused` annotation is set.
    pub paused: bool,
    /// The last retype cloudvol asked for (`status.retype`).
    pub retype: Option<&'a VolumeRetype>,
}

/// The cloud's migration policy for the spec's.
pub fn migration_policy(policy: SpecMigrationPolicy) -> MigrationPolicy {
    match policy {
        SpecMigrationPolicy::Never => MigrationPolicy::Never,
        SpecMigrationPolicy::OnDemand => MigrationPolicy::OnDemand,
    }
}

/// Compares the spec with the volume and picks the next step.
pub fn decide(wanted: &Wanted<'_>, volume: &Volume) -> Decision {
    let observed = status_health(volume);
    let Some(resource) = wanted.resource else {
        return Decision {
            write: None,
            health: observed,
        };
    };
    if let Some(mismatch) = immutable_mismatch(resource, volume) {
        return Decision {
            write: None,
            health: Health::stalled(Reason::ImmutableFieldMismatch, mismatch),
        };
    }
    if let Some(size) = resource.size.map(|s| s.max(1) as u64)
        && size < volume.size
    {
        return Decision {
            write: None,
            health: Health::stalled(
                Reason::SizeMismatch,
                format!(
                    "volume {} has {} GiB and spec.resource.size asks for {size}: volumes cannot \
                     shrink; set size to at least {}",
                    volume.id, volume.size, volume.size
                ),
            ),
        };
    }
    if !observed.is_ready() {
        return Decision {
            write: None,
            health: observed,
        };
    }
    let retype = retype_step(wanted, resource, volume);
    let Some(write) = next_write(wanted, resource, volume, &retype) else {
        return Decision {
            write: None,
            // A retype the cloud refused or gave up is not silently dropped: it is what the
            // object reports until the spec changes.
            health: match retype {
                Some(Err(stalled)) => stalled,
                _ => observed,
            },
        };
    };
    let pending = describe(&write, volume);
    if wanted.paused {
        return Decision {
            write: None,
            health: paused(&pending),
        };
    }
    let reason = match write {
        Write::Extend { .. } => Reason::Extending,
        Write::Update(_) => Reason::Updating,
        Write::Retype { .. } => Reason::Retyping,
    };
    Decision {
        write: Some(write),
        health: Health::reconciling(reason, format!("cloudvol is asking the cloud to {pending}")),
    }
}

fn describe(write: &Write, volume: &Volume) -> String {
    match write {
        Write::Extend { new_size } => format!("extend the volume to {new_size} GiB"),
        Write::Retype { new_type, policy } => format!(
            "change the volume's type from {} to {new_type:?} (migrationPolicy: {policy})",
            type_name(volume.volume_type.as_deref())
        ),
        Write::Update(update) => {
            let mut fields = Vec::new();
            if update.name.is_some() {
                fields.push("name");
            }
            if update.description.is_some() {
                fields.push("description");
            }
            if update.metadata.is_some() {
                fields.push("metadata");
            }
            format!("update the volume's {}", fields.join(", "))
        }
    }
}

/// A type name as messages show it.
fn type_name(volume_type: Option<&str>) -> String {
    match volume_type {
        Some(name) => format!("{name:?}"),
        None => "the default type".to_string(),
    }
}

/// What the spec's `volumeType` asks of the volume: nothing (`None`), a retype to ask for
/// (`Ok`), or the health of a retype that the cloud refused or gave up (`Err`), which is not
/// asked for again with the same type and policy: a person decides.
pub fn retype_step(
    wanted: &Wanted<'_>,
    resource: &VolumeResource,
    volume: &Volume,
) -> Option<Result<Write, Health>> {
    let new_type = resource.volume_type.as_deref()?;
    if volume.volume_type.as_deref() == Some(new_type) {
        return None;
    }
    let policy = migration_policy(resource.migration_policy);
    let retype = Write::Retype {
        new_type: new_type.to_string(),
        policy,
    };
    let Some(last) = wanted.retype.filter(|last| {
        last.volume_type == new_type && last.migration_policy == resource.migration_policy
    }) else {
        return Some(Ok(retype));
    };
    let current = type_name(volume.volume_type.as_deref());
    let back =
        format!("set spec.resource.volumeType back to {current} to keep the volume as it is");
    if let Some(refusal) = &last.refusal {
        return Some(Err(Health::stalled(
            Reason::RetypeRefused,
            format!(
                "the cloud refused to change volume {}'s type from {current} to {new_type:?} \
                 (migrationPolicy: {policy}): {refusal}; fix spec.resource.volumeType or \
                 migrationPolicy as the cloud says, or {back}",
                volume.id
            ),
        )));
    }
    if !last.accepted {
        // The request's answer never came (a lost answer, a crash): ask again.
        return Some(Ok(retype));
    }
    // Accepted, over, and the type did not change: Cinder gives a retype up this way when the
    // new type needs another back end and the policy forbids moving the data, or when no back
    // end can serve the type.
    let advice = match resource.migration_policy {
        SpecMigrationPolicy::Never => format!(
            "a retype that needs another back end is given up with migrationPolicy: never; set \
             migrationPolicy: on-demand to let the cloud move the data, or {back}"
        ),
        SpecMigrationPolicy::OnDemand => format!(
            "no back end of the cloud could take the volume with the new type; check the type \
             with the cloud's operator, or {back}"
        ),
    };
    Some(Err(Health::stalled(
        Reason::RetypeNotApplied,
        format!(
            "the cloud accepted the request to change volume {}'s type from {} to {new_type:?} \
             (migrationPolicy: {policy}), then gave it up: the volume is {} with type {current}; \
             {advice}",
            volume.id,
            type_name(last.from_volume_type.as_deref()),
            volume.status.as_str()
        ),
    )))
}

/// Growing comes first (it needs the volume `available`); then the type; then name,
/// description and metadata. Metadata keys the spec lists are set; other keys on the volume
/// are kept.
fn next_write(
    wanted: &Wanted<'_>,
    resource: &VolumeResource,
    volume: &Volume,
    retype: &Option<Result<Write, Health>>,
) -> Option<Write> {
    if let Some(size) = resource.size.map(|s| s.max(1) as u64)
        && size > volume.size
    {
        return Some(Write::Extend { new_size: size });
    }
    if let Some(Ok(write)) = retype {
        return Some(write.clone());
    }
    let name = resource.name.as_deref().unwrap_or(wanted.default_name);
    let update = UpdateVolume {
        name: (volume.name.as_deref() != Some(name)).then(|| name.to_string()),
        description: resource
            .description
            .as_ref()
            .filter(|d| volume.description.as_ref() != Some(*d))
            .cloned(),
        metadata: merged_metadata(&volume.metadata, &resource.metadata),
    };
    (update != UpdateVolume::default()).then_some(Write::Update(update))
}

/// The volume's metadata with the spec's keys set, or `None` when nothing would change.
fn merged_metadata(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let missing = wanted.iter().any(|(k, v)| current.get(k) != Some(v));
    missing.then(|| {
        let mut merged = current.clone();
        merged.extend(wanted.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    })
}

/// Fields the cloud cannot change on an existing volume, set in the spec but different in the
/// cloud (only possible for an adopted volume). The volume type is not one: a retype changes
/// it.
fn immutable_mismatch(resource: &VolumeResource, volume: &Volume) -> Option<String> {
    // The cloud names the source image only once the volume is made (and not every cloud
    // does): compared only when it says.
    let image_id = resource.image.as_ref().and_then(|i| i.id.clone());
    let source_image = volume
        .source_image_id()
        .map(str::to_string)
        .or_else(|| image_id.clone());
    let checks = [
        ("image.id", &image_id, &source_image),
        (
            "availabilityZone",
            &resource.availability_zone,
            &volume.availability_zone,
        ),
        ("snapshotID", &resource.snapshot_id, &volume.snapshot_id),
        (
            "sourceVolumeID",
            &resource.source_volume_id,
            &volume.source_volid,
        ),
    ];
    let differences: Vec<String> = checks
        .iter()
        .filter_map(|(field, wanted, actual)| {
            let wanted = wanted.as_ref()?;
            (actual.as_ref() != Some(wanted)).then(|| {
                format!(
                    "{field} is {wanted:?} in the spec but {:?} in the cloud",
                    actual.as_deref().unwrap_or("")
                )
            })
        })
        .collect();
    (!differences.is_empty()).then(|| {
        format!(
            "volume {}: {}; these cannot change after creation, so fix the spec",
            volume.id,
            differences.join(", ")
        )
    })
}

/// The image to make the volume from, from the `VolumeImage` an `image.ref` names (read from
/// the API), or the health to report while there is none: it must exist, not be on its way
/// out, and be Ready for its generation with an image ID.
pub fn image_from_ref(name: &str, image: Option<&VolumeImage>) -> Result<String, Health> {
    let waiting = |why: String| Health::reconciling(Reason::WaitingForImage, why);
    let Some(image) = image else {
        return Err(waiting(format!(
            "VolumeImage {name} does not exist yet; the volume is made from its image once it \
             is Ready"
        )));
    };
    if image.meta().deletion_timestamp.is_some() {
        return Err(Health::stalled(
            Reason::ImageDeleting,
            format!(
                "VolumeImage {name} is being deleted, so cloudvol does not make a volume from its \
                 image; name another image in spec.resource.image (recreate this Volume: the \
                 source is immutable)"
            ),
        ));
    }
    match image.status.as_ref().and_then(|s| s.id.clone()) {
        Some(id) if ready_at_generation(image) => Ok(id),
        _ => Err(waiting(format!(
            "VolumeImage {name} is not Ready yet; the volume is made from its image once it is"
        ))),
    }
}

/// How the Volume's tenant stands towards a `shared` image of another tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// The tenant is a member, in this status.
    Member(MemberStatus),
    /// The tenant is not a member of the image.
    NotMember,
}

/// Whether the image is shared by another tenant than `tenant`, so that the tenant's member
/// status decides whether it may use it.
pub fn needs_membership(image: &Image, tenant: Option<&str>) -> bool {
    image.visibility == Visibility::Shared && tenant.is_some() && image.owner.as_deref() != tenant
}

/// GiB, rounded up, of a size in bytes.
fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 30)
}

/// The refusals cloudvol can tell before asking the cloud to make a volume of `size` GiB from
/// image `id`, as the Volume's credentials (`who`) see it: `image` is `None` when the image
/// API answers 404, `membership` is the tenant's standing when [`needs_membership`]. `None`:
/// go ahead (and the cloud may still refuse).
pub fn source_image_refusal(
    who: &str,
    id: &str,
    image: Option<&Image>,
    membership: Option<&Membership>,
    size: u64,
) -> Option<Health> {
    let Some(image) = image else {
        return Some(Health::stalled(
            Reason::ImageNotAvailable,
            format!(
                "image {id} is not visible to {who}: there is no such image, or it is another \
                 tenant's and neither public nor shared with this tenant; fix \
                 spec.resource.image, or share the image with this tenant"
            ),
        ));
    };
    let share = |state: &str, what: &str| {
        Health::stalled(
            Reason::ImageNotAvailable,
            format!(
                "image {id} belongs to tenant {} and is shared with {who}, but the share is \
                 {state}: {what}; cloudvol makes volumes only from images the tenant accepted",
                image.owner.as_deref().unwrap_or("(unknown)")
            ),
        )
    };
    match membership {
        None | Some(Membership::Member(MemberStatus::Accepted)) => {}
        Some(Membership::Member(MemberStatus::Pending)) => {
            return Some(share(
                "pending",
                "accept it with this tenant's credentials (an ImageShare with \
                 memberCredentialsRef does), and cloudvol goes on",
            ));
        }
        Some(Membership::Member(MemberStatus::Rejected)) => {
            return Some(share(
                "rejected",
                "this tenant rejected it; accept it again if that was a mistake",
            ));
        }
        Some(Membership::Member(MemberStatus::Unknown(status))) => {
            return Some(share(
                &format!("in status {status:?}"),
                "check the membership in the cloud",
            ));
        }
        Some(Membership::NotMember) => {
            return Some(Health::stalled(
                Reason::ImageNotAvailable,
                format!(
                    "image {id} is shared by tenant {}, but not with {who}: add this tenant as a \
                     member (an ImageShare does), then accept it",
                    image.owner.as_deref().unwrap_or("(unknown)")
                ),
            ));
        }
    }
    match image_class(&image.status) {
        StatusClass::Usable => {}
        StatusClass::Transitional => {
            return Some(Health::reconciling(
                Reason::ImageNotActive,
                format!(
                    "image {id} is {}; the volume is made from it once it is active",
                    image.status.as_str()
                ),
            ));
        }
        StatusClass::NeedsPerson => {
            return Some(Health::stalled(
                Reason::ImageUnusable,
                format!(
                    "image {id} is {}, and a volume can only be made from an active image; name \
                     another image (recreate this Volume: the source is immutable)",
                    image.status.as_str()
                ),
            ));
        }
    }
    let data = gib(image.size.unwrap_or(0)).max(gib(image.virtual_size.unwrap_or(0)));
    let needed = image.min_disk.max(data);
    (size < needed).then(|| {
        let mut why = Vec::new();
        if image.min_disk > size {
            why.push(format!("its minDisk is {} GiB", image.min_disk));
        }
        if data > size {
            why.push(format!("its data takes {data} GiB"));
        }
        Health::stalled(
            Reason::VolumeTooSmall,
            format!(
                "spec.resource.size is {size} GiB, but image {id} needs a volume of at least \
                 {needed} GiB ({}); set size to at least {needed}",
                why.join(", ")
            ),
        )
    })
}

/// The health of a create the cloud refused. For a volume made from an image, Cinder's 400s
/// about the image say what cloudvol checks beforehand, when it could not see it itself.
pub fn create_refused(image_id: Option<&str>, err: &CloudError) -> Health {
    if let (Some(id), CloudError::BadRequest { message }) = (image_id, err) {
        let reason = if message.contains("Invalid image identifier") {
            Some(Reason::ImageNotAvailable)
        } else if message.contains("minDisk")
            || message.contains("is larger than volume size")
            || message.contains("doesn't fit in a volume")
        {
            Some(Reason::VolumeTooSmall)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Health::stalled(
                reason,
                format!("the cloud refused to make the volume from image {id}: {message}"),
            );
        }
    }
    cloud_error_health("the cloud refused to create the volume", err)
}

/// The create request for `volume`: its spec's resource, named after the object unless the
/// spec names it, and marked with the object's UID so that a create whose answer is lost is
/// adopted instead of repeated; from `image_id`, when the spec names an image. Refused while
/// paused, and for an object that only observes.
pub fn create_request(
    volume: &VolumeObject,
    image_id: Option<&str>,
) -> Result<CreateVolume, Health> {
    let Some(resource) = volume.spec.resource.as_ref().filter(|_| volume.managed()) else {
        // The schema requires import or resource; an import that found nothing is reported
        // by locate, so this is only reachable by an unmanaged object.
        return Err(Health::stalled(
            Reason::ImportNotFound,
            "no volume to observe",
        ));
    };
    if volume.paused() {
        return Err(paused("create the volume"));
    }
    let mut metadata = resource.metadata.clone();
    metadata.insert(UID_MARK.to_string(), volume.uid().unwrap_or_default());
    Ok(CreateVolume {
        size: resource.size.unwrap_or(1).max(1) as u64,
        name: Some(resource.name.clone().unwrap_or_else(|| volume.name_any())),
        description: resource.description.clone(),
        volume_type: resource.volume_type.clone(),
        availability_zone: resource.availability_zone.clone(),
        snapshot_id: resource.snapshot_id.clone(),
        source_volid: resource.source_volume_id.clone(),
        image_ref: image_id.map(str::to_string),
        metadata,
        nhn_encryption: resource.encryption.as_ref().map(|e| NhnEncryptionRequest {
            skm_appkey: e.skm_app_key.clone(),
            skm_key_id: e.skm_key_id.clone(),
        }),
    })
}

/// While cloudvol asks the cloud to create the volume (from `image`, if given).
pub fn creating(image: Option<&str>) -> Health {
    Health::reconciling(
        Reason::Creating,
        match image {
            Some(image) => {
                format!("cloudvol is asking the cloud to make the volume from image {image}")
            }
            None => "cloudvol is asking the cloud to create the volume".to_string(),
        },
    )
}

/// The cloud accepted the create of volume `id`.
pub fn being_created(id: &str) -> Health {
    Health::reconciling(
        Reason::Creating,
        format!("the cloud is creating volume {id}"),
    )
}

/// The cloud accepted the delete of volume `id`, or is at it already.
pub fn deleting(id: &str) -> Health {
    Health::reconciling(
        Reason::Deleting,
        format!("the cloud is deleting volume {id}"),
    )
}

/// `spec.resource.image` with neither `ref` nor `id` (the API server refuses it).
pub fn image_source_missing() -> Health {
    Health::stalled(Reason::InvalidSpec, "spec.resource.image needs ref or id")
}

/// What to do about the cloud volume when the object is deleted (docs/design.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteStep {
    /// The volume is gone (or was never made): remove the finalizer.
    Done,
    /// Ask the cloud to delete it.
    Delete,
    /// Wait: it is transitional, or being deleted. Proceeds by itself.
    Wait(Health),
    /// A rule holds the deletion until a person acts.
    Blocked(Health),
}

/// Cinder deletes a volume only in these states (and only when it is not attached and has no
/// snapshots).
fn deletable(status: &VolumeStatus) -> bool {
    matches!(
        status,
        VolumeStatus::Available
            | VolumeStatus::Error
            | VolumeStatus::ErrorRestoring
            | VolumeStatus::ErrorExtending
    ) || matches!(status, VolumeStatus::Unknown(s) if s == "error_managing")
}

/// How many times an `error_deleting` volume is deleted again before cloudvol asks a person.
pub const DELETE_RETRIES: u32 = 3;

/// The deletion rules. `delete_attempts` counts earlier delete calls that left the volume in
/// `error_deleting`.
pub fn decide_delete(volume: Option<&Volume>, is_paused: bool, delete_attempts: u32) -> DeleteStep {
    let Some(volume) = volume else {
        return DeleteStep::Done;
    };
    let servers = volume.attached_servers();
    if volume.status == VolumeStatus::InUse || !servers.is_empty() {
        let servers = if servers.is_empty() {
            "a server".to_string()
        } else {
            format!("server {}", servers.join(", "))
        };
        return DeleteStep::Blocked(Health::stalled(
            Reason::VolumeInUse,
            format!(
                "volume {} is attached to {servers}; detach it before deleting, and cloudvol \
                 deletes it then",
                volume.id
            ),
        ));
    }
    if volume.status == VolumeStatus::Deleting {
        return DeleteStep::Wait(Health::reconciling(
            Reason::Deleting,
            format!("the cloud is deleting volume {}", volume.id),
        ));
    }
    if is_paused {
        return DeleteStep::Blocked(paused("delete the volume"));
    }
    if volume.status == VolumeStatus::ErrorDeleting {
        if delete_attempts >= DELETE_RETRIES {
            return DeleteStep::Blocked(Health::stalled(
                Reason::DeleteFailed,
                format!(
                    "the cloud failed to delete volume {} {delete_attempts} times (status \
                     error_deleting); ask the cloud's support, or delete it in the cloud console",
                    volume.id
                ),
            ));
        }
        return DeleteStep::Delete;
    }
    if deletable(&volume.status) {
        return DeleteStep::Delete;
    }
    match volume_class(&volume.status) {
        StatusClass::Transitional => DeleteStep::Wait(Health::derived(
            State::Reconciling,
            volume_reason(&volume.status),
            format!(
                "volume {} is {}; cloudvol deletes it once that finishes",
                volume.id,
                volume.status.as_str()
            ),
        )),
        _ => DeleteStep::Blocked(Health::stalled(
            Reason::DeleteBlocked,
            format!(
                "volume {} is {}, and the cloud deletes a volume only when it is available or in \
                 an error state; fix it in the cloud, then cloudvol deletes it",
                volume.id,
                volume.status.as_str()
            ),
        )),
    }
}

/// Explains a delete the cloud refused (HTTP 400) of `volume`, which cloudvol saw deletable
/// (or `error_deleting`) and not attached just before. Cinder answers every such refusal with
/// one message listing all its rules (snapshots, a group, a transfer, a migration, an attach
/// that raced the delete), and NHN Cloud documents no snapshot API to check: so the reason
/// claims nothing the cloud did not say, and the message gives the cloud's own words.
pub fn delete_refused(volume: &Volume, cloud_message: &str) -> Health {
    Health::stalled(
        Reason::DeleteRefused,
        format!(
            "the cloud refused to delete volume {} (it was {} and not attached when cloudvol \
             asked). The cloud said: {}. Check what its rule names (snapshots, a \
             group, a transfer, an attachment made meanwhile); cloudvol asks again with backoff",
            volume.id,
            volume.status.as_str(),
            cloud_message.trim_end_matches('.')
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VolumeImageSource;
    use crate::cloud::model::Attachment;

    fn volume(status: &str) -> Volume {
        Volume {
            id: "vol-1".into(),
            name: Some("data".into()),
            size: 10,
            status: VolumeStatus::parse(status),
            ..Default::default()
        }
    }

    fn resource(size: i32) -> VolumeResource {
        VolumeResource {
            name: Some("data".into()),
            size: Some(size),
            ..Default::default()
        }
    }

    fn wanted(resource: Option<&VolumeResource>) -> Wanted<'_> {
        Wanted {
            resource,
            default_name: "object-name",
            paused: false,
            retype: None,
        }
    }

    /// Every status of NHN's Block Storage API (docs/sources.md), and one it does not list.
    const STATUS_TABLE: &[(&str, StatusClass, &str)] = &[
        ("creating", StatusClass::Transitional, "Creating"),
        ("available", StatusClass::Usable, "Available"),
        ("attaching", StatusClass::Transitional, "Attaching"),
        ("detaching", StatusClass::Transitional, "Detaching"),
        ("in-use", StatusClass::Usable, "InUse"),
        ("reserved", StatusClass::Usable, "Reserved"),
        ("maintenance", StatusClass::Transitional, "Maintenance"),
        ("deleting", StatusClass::Transitional, "Deleting"),
        (
            "awaiting-transfer",
            StatusClass::NeedsPerson,
            "AwaitingTransfer",
        ),
        ("error", StatusClass::NeedsPerson, "Error"),
        ("error_deleting", StatusClass::NeedsPerson, "ErrorDeleting"),
        ("backing-up", StatusClass::Transitional, "BackingUp"),
        (
            "restoring-backup",
            StatusClass::Transitional,
            "RestoringBackup",
        ),
        (
            "error_backing-up",
            StatusClass::NeedsPerson,
            "ErrorBackingUp",
        ),
        (
            "error_restoring",
            StatusClass::NeedsPerson,
            "ErrorRestoring",
        ),
        (
            "error_extending",
            StatusClass::NeedsPerson,
            "ErrorExtending",
        ),
        ("downloading", StatusClass::Transitional, "Downloading"),
        ("uploading", StatusClass::Transitional, "Uploading"),
        ("retyping", StatusClass::Transitional, "Retyping"),
        ("extending", StatusClass::Transitional, "Extending"),
        ("exploding", StatusClass::NeedsPerson, "UnknownStatus"),
    ];

    #[test]
    fn every_seed_status_maps_to_one_condition() {
        assert_eq!(STATUS_TABLE.len(), VolumeStatus::KNOWN.len() + 1);
        for (status, class, reason) in STATUS_TABLE {
            let v = volume(status);
            assert_eq!(&volume_class(&v.status), class, "{status}");
            let health = status_health(&v);
            assert_eq!(health.reason(), *reason, "{status}");
            let expected = match class {
                StatusClass::Usable => health.is_ready(),
                StatusClass::Transitional => health.is_reconciling(),
                StatusClass::NeedsPerson => health.is_stalled(),
            };
            assert!(expected, "{status} gave {health:?}");
            assert!(health.message().contains(status) || health.message().contains("vol-1"));
        }
    }

    #[test]
    fn a_matching_usable_volume_is_ready_and_needs_no_write() {
        for status in ["available", "in-use", "reserved"] {
            let r = resource(10);
            let d = decide(&wanted(Some(&r)), &volume(status));
            assert_eq!(d.write, None, "{status}");
            assert!(d.health.is_ready(), "{status}: {:?}", d.health);
        }
    }

    #[test]
    fn decide_table() {
        let mut in_use = volume("in-use");
        in_use.attachments = vec![Attachment {
            server_id: Some("srv-1".into()),
            ..Default::default()
        }];
        let mut typed = volume("available");
        typed.volume_type = Some("General HDD".into());
        let r = |f: &dyn Fn(&mut VolumeResource)| {
            let mut r = resource(10);
            f(&mut r);
            r
        };
        type Case = (
            &'static str,
            VolumeResource,
            Volume,
            bool,
            Option<Write>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "grow",
                resource(20),
                volume("available"),
                false,
                Some(Write::Extend { new_size: 20 }),
                "Extending",
            ),
            (
                "grow while attached: the cloud decides",
                resource(20),
                in_use.clone(),
                false,
                Some(Write::Extend { new_size: 20 }),
                "Extending",
            ),
            (
                "grow waits for a transitional state",
                resource(20),
                volume("creating"),
                false,
                None,
                "Creating",
            ),
            (
                "shrink of an adopted volume",
                resource(5),
                volume("available"),
                false,
                None,
                "SizeMismatch",
            ),
            (
                "error state wins over spec changes",
                resource(20),
                volume("error"),
                false,
                None,
                "Error",
            ),
            (
                "rename",
                r(&|r| r.name = Some("new".into())),
                volume("available"),
                false,
                Some(Write::Update(UpdateVolume {
                    name: Some("new".into()),
                    ..Default::default()
                })),
                "Updating",
            ),
            (
                "description",
                r(&|r| r.description = Some("d".into())),
                volume("available"),
                false,
                Some(Write::Update(UpdateVolume {
                    description: Some("d".into()),
                    ..Default::default()
                })),
                "Updating",
            ),
            (
                "metadata keeps other keys",
                r(&|r| {
                    r.metadata.insert("team".into(), "a".into());
                }),
                {
                    let mut v = volume("available");
                    v.metadata.insert(UID_MARK.into(), "uid-1".into());
                    v
                },
                false,
                Some(Write::Update(UpdateVolume {
                    metadata: Some(
                        [
                            (UID_MARK.into(), "uid-1".into()),
                            ("team".into(), "a".into()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                })),
                "Updating",
            ),
            (
                "paused holds writes",
                resource(20),
                volume("available"),
                true,
                None,
                "Paused",
            ),
            (
                "paused with nothing to do is ready",
                resource(10),
                volume("available"),
                true,
                None,
                "Available",
            ),
            (
                "immutable field differs",
                r(&|r| r.availability_zone = Some("kr-pub-b".into())),
                {
                    let mut v = volume("available");
                    v.availability_zone = Some("kr-pub-a".into());
                    v
                },
                false,
                None,
                "ImmutableFieldMismatch",
            ),
            (
                "the image an adopted volume was made from differs",
                r(&|r| {
                    r.image = Some(VolumeImageSource {
                        id: Some("img-2".into()),
                        ..Default::default()
                    })
                }),
                from_image("available", "img-1"),
                false,
                None,
                "ImmutableFieldMismatch",
            ),
            (
                "made from the image the spec names",
                r(&|r| {
                    r.image = Some(VolumeImageSource {
                        id: Some("img-1".into()),
                        ..Default::default()
                    })
                }),
                from_image("available", "img-1"),
                false,
                None,
                "Available",
            ),
            (
                "downloading: the cloud does not name the image yet",
                r(&|r| {
                    r.image = Some(VolumeImageSource {
                        id: Some("img-1".into()),
                        ..Default::default()
                    })
                }),
                volume("downloading"),
                false,
                None,
                "Downloading",
            ),
            (
                "the type matches",
                r(&|r| r.volume_type = Some("General HDD".into())),
                typed.clone(),
                false,
                None,
                "Available",
            ),
            (
                "a new type is a retype, never by default",
                r(&|r| r.volume_type = Some("General SSD".into())),
                typed.clone(),
                false,
                Some(Write::Retype {
                    new_type: "General SSD".into(),
                    policy: MigrationPolicy::Never,
                }),
                "Retyping",
            ),
            (
                "a retype with on-demand",
                r(&|r| {
                    r.volume_type = Some("General SSD".into());
                    r.migration_policy = SpecMigrationPolicy::OnDemand;
                }),
                typed.clone(),
                false,
                Some(Write::Retype {
                    new_type: "General SSD".into(),
                    policy: MigrationPolicy::OnDemand,
                }),
                "Retyping",
            ),
            (
                "an attached volume is retyped too: the cloud decides",
                r(&|r| r.volume_type = Some("General SSD".into())),
                {
                    let mut v = in_use.clone();
                    v.volume_type = Some("General HDD".into());
                    v
                },
                false,
                Some(Write::Retype {
                    new_type: "General SSD".into(),
                    policy: MigrationPolicy::Never,
                }),
                "Retyping",
            ),
            (
                "retyping waits",
                r(&|r| r.volume_type = Some("General SSD".into())),
                {
                    let mut v = volume("retyping");
                    v.volume_type = Some("General HDD".into());
                    v
                },
                false,
                None,
                "Retyping",
            ),
            (
                "growing comes before the retype",
                {
                    let mut r = resource(20);
                    r.volume_type = Some("General SSD".into());
                    r
                },
                typed.clone(),
                false,
                Some(Write::Extend { new_size: 20 }),
                "Extending",
            ),
            (
                "paused holds a retype",
                r(&|r| r.volume_type = Some("General SSD".into())),
                typed,
                true,
                None,
                "Paused",
            ),
        ];
        for (name, resource, volume, paused, write, reason) in cases {
            let wanted = Wanted {
                resource: Some(&resource),
                default_name: "object-name",
                paused,
                retype: None,
            };
            let d = decide(&wanted, &volume);
            assert_eq!(d.write, write, "{name}");
            assert_eq!(d.health.reason(), reason, "{name}: {:?}", d.health);
        }
    }

    fn from_image(status: &str, image_id: &str) -> Volume {
        let mut v = volume(status);
        v.volume_image_metadata = Some(crate::cloud::model::VolumeImageMetadata {
            image_id: Some(image_id.into()),
            ..Default::default()
        });
        v
    }

    fn record(to: &str, policy: SpecMigrationPolicy, accepted: bool) -> VolumeRetype {
        VolumeRetype {
            volume_type: to.into(),
            migration_policy: policy,
            from_volume_type: Some("General HDD".into()),
            requested_at: "2026-01-01T00:00:00Z".into(),
            accepted,
            refusal: None,
        }
    }

    /// A retype the cloud refused (400), or accepted and then gave up (Cinder 29 with
    /// `migration_policy: never` when the type needs another back end), is reported with a
    /// true message, and not asked again for the same type and policy.
    #[test]
    fn a_refused_or_given_up_retype_stalls_and_is_not_asked_again() {
        let mut hdd = volume("available");
        hdd.volume_type = Some("General HDD".into());
        let mut attached = volume("in-use");
        attached.volume_type = Some("General HDD".into());
        let to_ssd = |policy| VolumeResource {
            volume_type: Some("General SSD".into()),
            migration_policy: policy,
            ..resource(10)
        };
        let refused = VolumeRetype {
            refusal: Some(
                "Invalid volume: Retype needs volume to be in available or in-use state".into(),
            ),
            ..record("General SSD", SpecMigrationPolicy::Never, false)
        };
        let given_up = record("General SSD", SpecMigrationPolicy::Never, true);
        let given_up_on_demand = record("General SSD", SpecMigrationPolicy::OnDemand, true);
        let unanswered = record("General SSD", SpecMigrationPolicy::Never, false);
        let other_type = record("Archive HDD", SpecMigrationPolicy::Never, true);
        type Case<'a> = (
            &'a str,
            VolumeResource,
            &'a Volume,
            Option<&'a VolumeRetype>,
            &'a str,
            &'a [&'a str],
        );
        let never = SpecMigrationPolicy::Never;
        let on_demand = SpecMigrationPolicy::OnDemand;
        let cases: Vec<Case<'_>> = vec![
            (
                "refused: the cloud's words",
                to_ssd(never),
                &hdd,
                Some(&refused),
                "RetypeRefused",
                &["Retype needs volume", "\"General HDD\" to \"General SSD\""],
            ),
            (
                "accepted, then back on the old type",
                to_ssd(never),
                &hdd,
                Some(&given_up),
                "RetypeNotApplied",
                &["then gave it up", "migrationPolicy: on-demand", "available"],
            ),
            (
                "attached, accepted, then back on the old type",
                to_ssd(never),
                &attached,
                Some(&given_up),
                "RetypeNotApplied",
                &["in-use", "migrationPolicy: on-demand"],
            ),
            (
                "given up with on-demand: no back end takes it",
                to_ssd(on_demand),
                &hdd,
                Some(&given_up_on_demand),
                "RetypeNotApplied",
                &["no back end"],
            ),
            (
                "a new policy is a new request",
                to_ssd(on_demand),
                &hdd,
                Some(&given_up),
                "Retyping",
                &[],
            ),
            (
                "a lost answer: ask again",
                to_ssd(never),
                &hdd,
                Some(&unanswered),
                "Retyping",
                &[],
            ),
            (
                "a record of another type is stale",
                to_ssd(never),
                &hdd,
                Some(&other_type),
                "Retyping",
                &[],
            ),
        ];
        for (name, resource, volume, retype, reason, words) in cases {
            let wanted = Wanted {
                resource: Some(&resource),
                default_name: "data",
                paused: false,
                retype,
            };
            let d = decide(&wanted, volume);
            assert_eq!(d.health.reason(), reason, "{name}: {:?}", d.health);
            assert_eq!(
                d.write.is_some(),
                reason == "Retyping",
                "{name}: {:?}",
                d.write
            );
            if reason != "Retyping" {
                assert!(d.health.is_stalled(), "{name}");
            }
            for word in words {
                assert!(
                    d.health.message().contains(word),
                    "{name}: {}",
                    d.health.message()
                );
            }
        }
        // A stalled retype does not hold back the other changes.
        let mut renamed = to_ssd(never);
        renamed.name = Some("new".into());
        let wanted = Wanted {
            resource: Some(&renamed),
            default_name: "data",
            paused: false,
            retype: Some(&given_up),
        };
        assert!(matches!(
            decide(&wanted, &hdd).write,
            Some(Write::Update(_))
        ));
    }

    fn shared_image(owner: &str) -> Image {
        Image {
            id: "img-1".into(),
            status: crate::cloud::model::ImageStatus::Active,
            visibility: Visibility::Shared,
            owner: Some(owner.into()),
            size: Some(1 << 30),
            ..Default::default()
        }
    }

    #[test]
    fn source_image_refusals_before_the_create() {
        let who = "the credentials of cloud \"partner\" (tenant partner-t)";
        let active = shared_image("owner-t");
        let mut queued = active.clone();
        queued.status = crate::cloud::model::ImageStatus::Queued;
        let mut killed = active.clone();
        killed.status = crate::cloud::model::ImageStatus::Killed;
        let mut min_disk = active.clone();
        min_disk.min_disk = 3;
        let mut big = active.clone();
        big.size = Some((1 << 30) + 1);
        let mut virtual_big = active.clone();
        virtual_big.virtual_size = Some(5 << 30);
        let accepted = Membership::Member(MemberStatus::Accepted);
        let pending = Membership::Member(MemberStatus::Pending);
        let rejected = Membership::Member(MemberStatus::Rejected);
        type Case<'a> = (
            &'a str,
            Option<&'a Image>,
            Option<&'a Membership>,
            u64,
            Option<&'a str>,
            &'a [&'a str],
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "accepted, big enough",
                Some(&active),
                Some(&accepted),
                1,
                None,
                &[],
            ),
            (
                "owned or public: no membership",
                Some(&active),
                None,
                1,
                None,
                &[],
            ),
            (
                "not visible",
                None,
                None,
                1,
                Some("ImageNotAvailable"),
                &["img-1", "not visible", "partner-t"],
            ),
            (
                "pending",
                Some(&active),
                Some(&pending),
                1,
                Some("ImageNotAvailable"),
                &["pending", "owner-t", "accept"],
            ),
            (
                "rejected",
                Some(&active),
                Some(&rejected),
                1,
                Some("ImageNotAvailable"),
                &["rejected"],
            ),
            (
                "not a member",
                Some(&active),
                Some(&Membership::NotMember),
                1,
                Some("ImageNotAvailable"),
                &["not with"],
            ),
            (
                "queued",
                Some(&queued),
                None,
                1,
                Some("ImageNotActive"),
                &["queued"],
            ),
            (
                "killed",
                Some(&killed),
                None,
                1,
                Some("ImageUnusable"),
                &["killed"],
            ),
            (
                "below minDisk: both numbers",
                Some(&min_disk),
                None,
                2,
                Some("VolumeTooSmall"),
                &["2 GiB", "at least 3 GiB", "minDisk is 3 GiB"],
            ),
            ("at minDisk", Some(&min_disk), None, 3, None, &[]),
            (
                "data larger than the volume, rounded up",
                Some(&big),
                None,
                1,
                Some("VolumeTooSmall"),
                &["1 GiB", "at least 2 GiB", "data takes 2 GiB"],
            ),
            (
                "virtual size larger than the volume",
                Some(&virtual_big),
                None,
                4,
                Some("VolumeTooSmall"),
                &["at least 5 GiB"],
            ),
        ];
        for (name, image, membership, size, want, words) in cases {
            let got = source_image_refusal(who, "img-1", image, membership, size);
            assert_eq!(got.as_ref().map(|h| h.reason()), want, "{name}: {got:?}");
            if let Some(health) = got {
                let reconciling = want == Some("ImageNotActive");
                assert_eq!(health.is_reconciling(), reconciling, "{name}");
                assert_eq!(health.is_stalled(), !reconciling, "{name}");
                for word in words {
                    assert!(
                        health.message().contains(word),
                        "{name}: {}",
                        health.message()
                    );
                }
            }
        }
    }

    #[test]
    fn only_another_tenants_shared_image_needs_a_membership() {
        let shared = shared_image("owner-t");
        assert!(needs_membership(&shared, Some("partner-t")));
        assert!(!needs_membership(&shared, Some("owner-t")));
        assert!(!needs_membership(&shared, None));
        let public = Image {
            visibility: Visibility::Public,
            ..shared.clone()
        };
        assert!(!needs_membership(&public, Some("partner-t")));
    }

    #[test]
    fn cinders_image_refusals_name_what_is_wrong() {
        let bad = |message: &str| CloudError::BadRequest {
            message: message.into(),
        };
        let cases = [
            (
                "Invalid image identifier or unable to access requested image.",
                "ImageNotAvailable",
            ),
            (
                "Invalid input received: Volume size 2GB cannot be smaller than the image minDisk size 3GB.",
                "VolumeTooSmall",
            ),
            (
                "Invalid input received: Size of specified image 2GB is larger than volume size 1GB.",
                "VolumeTooSmall",
            ),
            (
                "Image x is unacceptable: Image virtual size is 2GB and doesn't fit in a volume of size 1GB.",
                "VolumeTooSmall",
            ),
            ("Invalid input received: something else", "CloudBadRequest"),
        ];
        for (message, reason) in cases {
            let health = create_refused(Some("img-1"), &bad(message));
            assert_eq!(health.reason(), reason, "{message}");
            assert!(health.message().contains(message));
        }
        // Without an image, a 400 is the cloud's as it is.
        assert_eq!(
            create_refused(None, &bad("Invalid image identifier")).reason(),
            "CloudBadRequest"
        );
    }

    fn image_object(id: Option<&str>, ready: bool, deleting: bool) -> VolumeImage {
        use crate::api::condition_type::READY;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let mut image = VolumeImage::new(
            "golden",
            serde_json::from_value(serde_json::json!({
                "cloudCredentialsRef": {"secretName": "s", "cloudName": "c"},
                "resource": {"name": "golden", "volumeID": "v"}
            }))
            .expect("a spec"),
        );
        image.metadata.generation = Some(2);
        if deleting {
            image.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        image.status = Some(crate::api::VolumeImageStatus {
            id: id.map(str::to_string),
            conditions: vec![Condition {
                type_: READY.into(),
                status: if ready { "True" } else { "False" }.into(),
                observed_generation: Some(2),
                reason: "Active".into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
            }],
            ..Default::default()
        });
        image
    }

    #[test]
    fn a_volume_waits_for_its_volume_image() {
        let ready = image_object(Some("img-1"), true, false);
        assert_eq!(image_from_ref("golden", Some(&ready)), Ok("img-1".into()));
        let cases = [
            (None, "WaitingForImage"),
            (
                Some(image_object(Some("img-1"), false, false)),
                "WaitingForImage",
            ),
            (Some(image_object(None, true, false)), "WaitingForImage"),
            (
                Some(image_object(Some("img-1"), true, true)),
                "ImageDeleting",
            ),
        ];
        for (image, reason) in cases {
            let health = image_from_ref("golden", image.as_ref()).expect_err("waits");
            assert_eq!(health.reason(), reason);
            assert!(health.message().contains("golden"));
        }
        let mut stale = ready.clone();
        stale.metadata.generation = Some(3);
        assert!(
            image_from_ref("golden", Some(&stale)).is_err(),
            "Ready for an older generation"
        );
    }

    #[test]
    fn the_object_name_is_the_default_volume_name() {
        let r = VolumeResource {
            size: Some(10),
            ..Default::default()
        };
        let d = decide(&wanted(Some(&r)), &volume("available"));
        assert_eq!(
            d.write,
            Some(Write::Update(UpdateVolume {
                name: Some("object-name".into()),
                ..Default::default()
            }))
        );
    }

    #[test]
    fn observe_only_never_writes() {
        let d = decide(&wanted(None), &volume("available"));
        assert_eq!(d.write, None);
        assert!(d.health.is_ready());
    }

    #[test]
    fn deleting_an_attached_volume_waits_for_detach_and_names_the_servers() {
        let mut v = volume("in-use");
        v.attachments = vec![
            Attachment {
                server_id: Some("3f2a".into()),
                ..Default::default()
            },
            Attachment {
                server_id: Some("9b1c".into()),
                ..Default::default()
            },
        ];
        let DeleteStep::Blocked(health) = decide_delete(Some(&v), false, 0) else {
            panic!("an attached volume must not be deleted");
        };
        assert_eq!(health.reason(), "VolumeInUse");
        assert!(
            health.message().contains("3f2a, 9b1c"),
            "{}",
            health.message()
        );
    }

    #[test]
    fn a_refused_delete_claims_nothing_the_cloud_did_not_say() {
        for status in ["available", "error", "error_deleting"] {
            let health = delete_refused(&volume(status), "Invalid volume: rules.");
            assert_eq!(health.reason(), "DeleteRefused", "{status}");
            assert!(health.is_stalled());
            assert!(
                health.message().contains(&format!("it was {status}"))
                    && health
                        .message()
                        .contains("The cloud said: Invalid volume: rules. Check"),
                "{}",
                health.message()
            );
        }
    }

    #[test]
    fn delete_table() {
        let cases: Vec<(Option<&str>, bool, u32, &str)> = vec![
            (None, false, 0, "Done"),
            (Some("available"), false, 0, "Delete"),
            (Some("error"), false, 0, "Delete"),
            (Some("error_restoring"), false, 0, "Delete"),
            (Some("error_extending"), false, 0, "Delete"),
            (Some("error_managing"), false, 0, "Delete"),
            (Some("in-use"), false, 0, "Blocked:VolumeInUse"),
            (Some("creating"), false, 0, "Wait:Creating"),
            (Some("extending"), false, 0, "Wait:Extending"),
            (Some("uploading"), false, 0, "Wait:Uploading"),
            (Some("detaching"), false, 0, "Wait:Detaching"),
            (Some("deleting"), false, 0, "Wait:Deleting"),
            (Some("error_deleting"), false, 0, "Delete"),
            (Some("error_deleting"), false, DELETE_RETRIES - 1, "Delete"),
            (
                Some("error_deleting"),
                false,
                DELETE_RETRIES,
                "Blocked:DeleteFailed",
            ),
            (Some("reserved"), false, 0, "Blocked:DeleteBlocked"),
            (Some("awaiting-transfer"), false, 0, "Blocked:DeleteBlocked"),
            (Some("error_backing-up"), false, 0, "Blocked:DeleteBlocked"),
            (Some("exploding"), false, 0, "Blocked:DeleteBlocked"),
            (Some("available"), true, 0, "Blocked:Paused"),
            (Some("deleting"), true, 0, "Wait:Deleting"),
        ];
        for (status, paused, attempts, want) in cases {
            let v = status.map(volume);
            let got = match decide_delete(v.as_ref(), paused, attempts) {
                DeleteStep::Done => "Done".to_string(),
                DeleteStep::Delete => "Delete".to_string(),
                DeleteStep::Wait(h) => format!("Wait:{}", h.reason()),
                DeleteStep::Blocked(h) => format!("Blocked:{}", h.reason()),
            };
            assert_eq!(got, want, "{status:?} paused={paused} attempts={attempts}");
        }
    }
}
