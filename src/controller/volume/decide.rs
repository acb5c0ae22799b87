//! The Volume rules, as pure functions from the spec and what the cloud reported to the next
//! step. No I/O here: every rule is a row in a table test.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::{Volume as VolumeObject, VolumeResource};
use crate::cloud::model::{CreateVolume, NhnEncryptionRequest, UpdateVolume, Volume, VolumeStatus};
use crate::controller::conditions::{Health, State};
use crate::controller::reasons::Reason;
use crate::controller::states::{StatusClass, volume_class, volume_reason};
use crate::controller::{CloudKind, paused};

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
    let Some(write) = next_write(wanted, resource, volume) else {
        return Decision {
            write: None,
            health: observed,
        };
    };
    let pending = describe(&write);
    if wanted.paused {
        return Decision {
            write: None,
            health: paused(&pending),
        };
    }
    let reason = match write {
        Write::Extend { .. } => Reason::Extending,
        Write::Update(_) => Reason::Updating,
    };
    Decision {
        write: Some(write),
        health: Health::reconciling(reason, format!("cloudvol is asking the cloud to {pending}")),
    }
}

fn describe(write: &Write) -> String {
    match write {
        Write::Extend { new_size } => format!("extend the volume to {new_size} GiB"),
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

/// Growing comes first (it needs the volume `available`); then name, description and
/// metadata. Metadata keys the spec lists are set; other keys on the volume are kept.
fn next_write(wanted: &Wanted<'_>, resource: &VolumeResource, volume: &Volume) -> Option<Write> {
    if let Some(size) = resource.size.map(|s| s.max(1) as u64)
        && size > volume.size
    {
        return Some(Write::Extend { new_size: size });
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
/// cloud (only possible for an adopted volume).
fn immutable_mismatch(resource: &VolumeResource, volume: &Volume) -> Option<String> {
    let checks = [
        ("volumeType", &resource.volume_type, &volume.volume_type),
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

/// The create request for `volume`: its spec's resource, named after the object unless the
/// spec names it, and marked with the object's UID so that a create whose answer is lost is
/// adopted instead of repeated. Refused while paused, and for an object that only observes.
pub fn create_request(volume: &VolumeObject) -> Result<CreateVolume, Health> {
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
        image_ref: None,
        metadata,
        nhn_encryption: resource.encryption.as_ref().map(|e| NhnEncryptionRequest {
            skm_appkey: e.skm_app_key.clone(),
            skm_key_id: e.skm_key_id.clone(),
        }),
    })
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
                r(&|r| r.volume_type = Some("General SSD".into())),
                typed.clone(),
                false,
                None,
                "ImmutableFieldMismatch",
            ),
            (
                "immutable field matches",
                r(&|r| r.volume_type = Some("General HDD".into())),
                typed,
                false,
                None,
                "Available",
            ),
        ];
        for (name, resource, volume, paused, write, reason) in cases {
            let wanted = Wanted {
                resource: Some(&resource),
                default_name: "object-name",
                paused,
            };
            let d = decide(&wanted, &volume);
            assert_eq!(d.write, write, "{name}");
            assert_eq!(d.health.reason(), reason, "{name}: {:?}", d.health);
        }
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
