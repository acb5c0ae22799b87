//! The VolumeImage rules, as pure functions from the spec and what the cloud reported to the
//! next step.

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde_json::Value;

use crate::api::{ImageVisibility, Volume as VolumeObject, VolumeImageResource};
use crate::cloud::CloudError;
use crate::cloud::model::{Image, ImageStatus, PatchOp, UploadToImage, VolumeStatus};
use crate::controller::conditions::{Health, State};
use crate::controller::reasons::Reason;
use crate::controller::states::{StatusClass, image_class, image_reason, volume_class};
use crate::controller::{CloudKind, cloud_error_health, paused, ready_at_generation};

/// The tag that marks an image as made for one Kubernetes object (its UID), so that an upload
/// is never repeated for the same object (docs/design.md §5). Glance tags are free strings; this one
/// avoids `/`, which would have to travel in a URL path.
pub fn uid_tag(uid: &str) -> String {
    format!("{MARK_PREFIX}{uid}")
}

/// Whether a tag is one of cloudvol's marks.
fn is_mark(tag: &str) -> bool {
    tag.starts_with(MARK_PREFIX)
}

/// What every image mark starts with.
const MARK_PREFIX: &str = "cloudvol-uid:";

/// The health an image status alone implies.
pub fn status_health(image: &Image) -> Health {
    let reason = image_reason(&image.status);
    let status = image.status.as_str();
    match image_class(&image.status) {
        StatusClass::Usable => Health::derived(
            State::Ready,
            reason,
            format!("image {} is active", image.id),
        ),
        StatusClass::Transitional => Health::derived(
            State::Reconciling,
            reason,
            format!(
                "image {} is {status}; waiting for the cloud to finish it",
                image.id
            ),
        ),
        StatusClass::NeedsPerson => Health::derived(
            State::Stalled,
            reason,
            match &image.status {
                ImageStatus::Killed => format!(
                    "image {} is killed: the cloud failed to make it; delete this VolumeImage \
                     and create it again",
                    image.id
                ),
                ImageStatus::Unknown(_) => format!(
                    "the cloud reports image {} in status {status:?}, which cloudvol does not \
                     know",
                    image.id
                ),
                _ => format!("image {} is {status}; it cannot be used", image.id),
            },
        ),
    }
}

/// Whether to wait before uploading the source volume; `None` means go ahead. Only states the
/// cloud leaves by itself wait: for every other state (an attached volume without `force`, an
/// error state) the cloud's own refusal is what a person gets to read.
pub fn source_volume_wait(volume_id: &str, status: &VolumeStatus) -> Option<Health> {
    // A volume being deleted will not come back: the cloud's refusal says so.
    let waits =
        volume_class(status) == StatusClass::Transitional && *status != VolumeStatus::Deleting;
    waits.then(|| {
        Health::reconciling(
            Reason::WaitingForVolume,
            format!(
                "volume {volume_id} is {}; the upload starts once it is available",
                status.as_str()
            ),
        )
    })
}

/// The source volume's id from the `Volume` a `volumeRef` names (read from the API), or the
/// health to report while there is none: it must exist and be Ready for its generation.
pub fn source_from_ref(name: &str, volume: Option<&VolumeObject>) -> Result<String, Health> {
    let waiting = |why: String| Health::reconciling(Reason::WaitingForVolume, why);
    let Some(volume) = volume else {
        return Err(waiting(format!("Volume {name} does not exist yet")));
    };
    match volume.status.as_ref().and_then(|s| s.id.clone()) {
        Some(id) if ready_at_generation(volume) => Ok(id),
        _ => Err(waiting(format!("Volume {name} is not Ready yet"))),
    }
}

/// The upload request that makes the image from `volume_id`, or why it waits: the source
/// volume is in a state the cloud leaves by itself, or the object is paused.
pub fn upload_request(
    resource: &VolumeImageResource,
    volume_id: &str,
    volume_status: &VolumeStatus,
    is_paused: bool,
    image_name: String,
) -> Result<UploadToImage, Health> {
    if let Some(health) = source_volume_wait(volume_id, volume_status) {
        return Err(health);
    }
    if is_paused {
        return Err(paused("make the image"));
    }
    Ok(UploadToImage {
        image_name,
        force: resource.force,
        disk_format: Some(resource.disk_format.clone()),
        container_format: Some(resource.container_format.as_str().to_string()),
        // Always said: upstream Cinder makes a `shared` image when none is given, NHN a
        // `private` one. Unset in the spec means private at birth, then left alone.
        visibility: Some(
            match resource.visibility.unwrap_or(ImageVisibility::Private) {
                ImageVisibility::Private => "private",
                ImageVisibility::Shared => "shared",
            }
            .to_string(),
        ),
        // Protection comes with the first patch (the final name and the mark): NHN refuses to
        // change a protected image, so one protected at birth could never be renamed or marked.
        protected: None,
    })
}

/// The name an upload request gives the image: the spec's name and a suffix unique to the
/// request, so that the image the request made is found by that name alone if the answer is
/// lost, never confused with another image of the same name (DESIGN §5). Cut to Glance's 255
/// characters.
pub fn upload_name(name: &str, attempt: &str) -> String {
    let suffix = format!("-cloudvol-{attempt}");
    let mut keep = 255usize.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &name[..keep])
}

/// An unmanaged object, or one whose import found nothing, has no image to make.
pub fn nothing_to_observe() -> Health {
    Health::stalled(Reason::ImportNotFound, "no image to observe")
}

/// `spec.resource` names no source volume (the API server refuses it).
pub fn no_source_volume() -> Health {
    Health::stalled(
        Reason::InvalidSpec,
        "spec.resource needs volumeRef or volumeID",
    )
}

/// The `volumeRef` Volume could not be read from the API: wait and look again.
pub fn source_unreadable(name: &str, error: &str) -> Health {
    Health::reconciling(
        Reason::WaitingForVolume,
        format!("cannot read Volume {name}: {error}"),
    )
}

/// The source volume is not in the cloud.
pub fn source_volume_missing(volume_id: &str) -> Health {
    Health::stalled(
        Reason::SourceVolumeNotFound,
        format!("the source volume {volume_id} does not exist in the cloud"),
    )
}

/// While cloudvol asks the cloud to make image `name` from `volume_id`.
pub fn upload_asked(name: &str, volume_id: &str) -> Health {
    Health::reconciling(
        Reason::Uploading,
        format!("cloudvol is asking the cloud to make image {name:?} from volume {volume_id}"),
    )
}

/// The cloud accepted the upload, making `image_id` from `volume_id`.
pub fn uploading(image_id: &str, volume_id: &str) -> Health {
    Health::reconciling(
        Reason::Uploading,
        format!("the cloud is making image {image_id} from volume {volume_id}"),
    )
}

/// The cloud refused the upload (HTTP 400), with its words.
pub fn upload_refused(volume_id: &str, message: &str) -> Health {
    Health::stalled(
        Reason::UploadRefused,
        format!("the cloud refused to make the image from volume {volume_id}: {message}"),
    )
}

/// The deletion lifted the protection of `image_id`, as the spec says: it deletes next.
pub fn unprotected(image_id: &str) -> Health {
    Health::reconciling(
        Reason::Unprotecting,
        format!("spec.resource.protected is false: unprotected image {image_id} to delete it"),
    )
}

/// The one cloud write a reconcile makes next on an existing image.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Lift `protected` so that NHN lets the other changes through (re-protected after).
    Unprotect,
    /// One JSON-patch of name, visibility, tags and properties.
    Patch(Vec<PatchOp>),
    /// Set `protected` as the spec asks.
    Protect(bool),
}

/// What to do about an existing image.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub write: Option<Write>,
    pub health: Health,
}

/// What the object asks of an existing image.
pub struct Wanted<'a> {
    /// `None` when the object only observes.
    pub resource: Option<&'a VolumeImageResource>,
    /// The object's mark, for images cloudvol made; `None` for adopted images.
    pub mark: Option<&'a str>,
    pub paused: bool,
}

/// Compares the spec with the image and picks the next write.
pub fn decide(wanted: &Wanted<'_>, image: &Image) -> Decision {
    let observed = status_health(image);
    let Some(resource) = wanted.resource else {
        return Decision {
            write: None,
            health: observed,
        };
    };
    if !observed.is_ready() {
        return Decision {
            write: None,
            health: observed,
        };
    }
    let mut ops = patch_ops(resource, wanted.mark, image);
    let protect = resource.protected.filter(|p| *p != image.protected);
    let write = if !ops.is_empty() {
        // NHN refuses to modify a protected image, except to unprotect it. With `protected:
        // true` cloudvol lifts it, then changes and protects again in one patch; with `false`
        // it unprotects first for good; unset, it tries the change as is (upstream Glance
        // allows it) and reports NHN's refusal, since it could not know to protect again.
        match (image.protected, resource.protected) {
            (true, Some(true)) => Some(Write::Unprotect),
            (true, Some(false)) => Some(Write::Protect(false)),
            (false, Some(true)) => {
                // Protection lands with the change, so the image is never left unprotected
                // between two writes.
                ops.push(PatchOp::replace("protected", true));
                Some(Write::Patch(ops))
            }
            _ => Some(Write::Patch(ops)),
        }
    } else {
        protect.map(Write::Protect)
    };
    let Some(write) = write else {
        return Decision {
            write: None,
            health: observed,
        };
    };
    let pending = match &write {
        Write::Unprotect => "lift protected to change the image, then protect it again".to_string(),
        Write::Patch(ops) => format!("change the image's {}", fields(ops)),
        Write::Protect(true) => "protect the image".to_string(),
        Write::Protect(false) => "unprotect the image".to_string(),
    };
    if wanted.paused {
        return Decision {
            write: None,
            health: paused(&pending),
        };
    }
    Decision {
        write: Some(write),
        health: Health::reconciling(
            Reason::Updating,
            format!("cloudvol is asking the cloud to {pending}"),
        ),
    }
}

/// Whether `write` would make the image private, which no ImageShare of it may see happen: the
/// ImageShare would share it again, and the two would flip it for ever. One owner for the
/// visibility: the VolumeImage stalls, naming the ImageShares (`shares`, those not done).
pub fn visibility_conflict(
    write: &Write,
    image_id: &str,
    shares: &[(String, bool)],
) -> Option<Health> {
    let Write::Patch(ops) = write else {
        return None;
    };
    let unshares = ops.iter().any(|op| {
        matches!(op, PatchOp::Replace { path, value } if path == "/visibility" && value == "private")
    });
    if !unshares || shares.is_empty() {
        return None;
    }
    let names: Vec<&str> = shares.iter().map(|(n, _)| n.as_str()).collect();
    Some(Health::stalled(
        Reason::VisibilityConflict,
        format!(
            "spec.resource.visibility is private, but ImageShare {} shares image {image_id}; one \
             object owns an image's visibility, so cloudvol does not make it private: remove \
             visibility from this spec (or set it to shared), or delete the ImageShare",
            names.join(", ")
        ),
    ))
}

/// The health of a change the cloud refused. NHN refuses every change to a protected image:
/// say what works instead.
pub fn update_refused(image: &Image, err: &CloudError) -> Health {
    match err {
        CloudError::Forbidden { message } if image.protected => Health::stalled(
            Reason::ImageProtected,
            format!(
                "image {} is protected and the cloud refuses to change it: {message}; set \
                 spec.resource.protected: true to let cloudvol lift the protection around \
                 changes, or false to drop it",
                image.id
            ),
        ),
        other => cloud_error_health("the cloud refused to change the image", other),
    }
}

fn fields(ops: &[PatchOp]) -> String {
    let names: BTreeSet<&str> = ops
        .iter()
        .map(|op| match op {
            PatchOp::Add { path, .. }
            | PatchOp::Replace { path, .. }
            | PatchOp::Remove { path } => match path.as_str() {
                "/name" => "name",
                "/visibility" => "visibility",
                "/tags" => "tags",
                "/protected" => "protection",
                "/min_disk" => "minDisk",
                "/min_ram" => "minRam",
                _ => "properties",
            },
        })
        .collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// The JSON-patch that brings name, visibility, tags, `min_disk`, `min_ram` and properties to
/// the spec. Tags: an
/// image cloudvol made carries exactly the spec's tags and its mark; an adopted image keeps
/// tags it already had. Properties: the spec's are set; others (the cloud's own, such as
/// `os_type`) are kept.
fn patch_ops(resource: &VolumeImageResource, mark: Option<&str>, image: &Image) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    if image.name.as_deref() != Some(resource.name.as_str()) {
        ops.push(PatchOp::replace("name", resource.name.clone()));
    }
    if let Some(visibility) = resource.visibility {
        let wanted = match visibility {
            ImageVisibility::Private => "private",
            ImageVisibility::Shared => "shared",
        };
        if image.visibility.as_str() != wanted {
            ops.push(PatchOp::replace("visibility", wanted));
        }
    }
    let current: BTreeSet<&str> = image.tags.iter().map(String::as_str).collect();
    let mut tags: BTreeSet<&str> = resource.tags.iter().map(String::as_str).collect();
    match mark {
        Some(mark) => {
            tags.insert(mark);
            // Marks of other objects are not ours to drop.
            tags.extend(current.iter().filter(|t| is_mark(t) && **t != mark));
        }
        None => tags.extend(current.iter()),
    }
    if tags != current {
        ops.push(PatchOp::replace(
            "tags",
            tags.into_iter().collect::<Vec<_>>(),
        ));
    }
    // Glance's own attributes, set like any other field: after the upload, by the patch.
    if let Some(min_disk) = resource.min_disk.filter(|m| *m >= 0)
        && image.min_disk != min_disk as u64
    {
        ops.push(PatchOp::replace("min_disk", min_disk));
    }
    if let Some(min_ram) = resource.min_ram.filter(|m| *m >= 0)
        && image.min_ram != min_ram as u64
    {
        ops.push(PatchOp::replace("min_ram", min_ram));
    }
    for (key, value) in &resource.properties {
        match image.properties.get(key) {
            Some(Value::String(v)) if v == value => {}
            Some(_) => ops.push(PatchOp::replace(key, value.clone())),
            None => ops.push(PatchOp::add(key, value.clone())),
        }
    }
    ops
}

/// What to do about the image when the object is deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteStep {
    Done,
    Delete,
    /// The spec unprotected the image: apply that first.
    Unprotect,
    Wait(Health),
    Blocked(Health),
}

/// The Volumes among `volumes` that are still being made from this VolumeImage's image: they
/// name it (`image.ref` to `image_name`, or `image.id`, or the `status.sourceImageID` they
/// recorded, which is what counts once recorded) and their volume is `creating` or
/// `downloading`, or their create request is in flight (the image recorded, no volume seen
/// yet). A volume that is made no longer needs the image.
pub fn volumes_in_creation(
    image_name: &str,
    image_id: Option<&str>,
    volumes: &[VolumeObject],
) -> Vec<String> {
    let mut names: Vec<String> = volumes
        .iter()
        .filter(|volume| {
            let status = volume.status.as_ref();
            let recorded = status.and_then(|s| s.source_image_id.as_deref());
            let source = volume.spec.resource.as_ref().and_then(|r| r.image.as_ref());
            let names_it = match recorded {
                Some(recorded) => Some(recorded) == image_id,
                None => source.is_some_and(|source| {
                    source
                        .reference
                        .as_ref()
                        .is_some_and(|r| r.name == image_name)
                        || (image_id.is_some() && source.id.as_deref() == image_id)
                }),
            };
            let observed = status.and_then(|s| s.resource.as_ref());
            let in_creation = match observed {
                Some(observed) => ["creating", "downloading"].contains(&observed.status.as_str()),
                None => recorded.is_some(),
            };
            names_it && in_creation && !volume.done_with_cloud()
        })
        .map(|volume| volume.name_any())
        .collect();
    names.sort();
    names
}

/// The deletion rules (docs/design.md §4): while Volumes are still being made from the image
/// (`in_creation`, from [`volumes_in_creation`]), wait for them; never delete a protected
/// image; once the spec sets `protected: false`, apply it, then delete. `shares` names the
/// ImageShares that still share the image, with whether each is itself being deleted.
pub fn decide_delete(
    image: Option<&Image>,
    spec_protected: Option<bool>,
    in_creation: &[String],
    shares: &[(String, bool)],
    is_paused: bool,
) -> DeleteStep {
    let Some(image) = image else {
        return DeleteStep::Done;
    };
    // First, because it passes by itself: the cloud is copying the image into these volumes,
    // and deleting it under them would fail them. Once made, they no longer need it, and the
    // image's own rules below apply.
    if !in_creation.is_empty() {
        let (noun, verb) = if in_creation.len() == 1 {
            ("Volume", "is")
        } else {
            ("Volumes", "are")
        };
        return DeleteStep::Wait(Health::reconciling(
            Reason::ImageInUse,
            format!(
                "{noun} {} {verb} still being made from image {}; the image's deletion goes on \
                 once {}",
                in_creation.join(", "),
                image.id,
                if in_creation.len() == 1 {
                    "it is made"
                } else {
                    "they are made"
                }
            ),
        ));
    }
    if !shares.is_empty() {
        let names: Vec<&str> = shares.iter().map(|(n, _)| n.as_str()).collect();
        let all_leaving = shares.iter().all(|(_, deleting)| *deleting);
        let message = format!(
            "ImageShare {} still shares image {}; the image is deleted after {}",
            names.join(", "),
            image.id,
            if all_leaving {
                "they finish"
            } else {
                "they are deleted: delete them first"
            }
        );
        return if all_leaving {
            DeleteStep::Wait(Health::reconciling(Reason::WaitingForImageShares, message))
        } else {
            DeleteStep::Blocked(Health::stalled(Reason::ReferencedByImageShare, message))
        };
    }
    if is_paused {
        return DeleteStep::Blocked(paused("delete the image"));
    }
    // The spec's word counts as much as the cloud's: an image cloudvol itself unprotected for
    // a change (or not protected yet) is not deleted while the spec says protected.
    if image.protected || spec_protected == Some(true) {
        if spec_protected == Some(false) {
            return DeleteStep::Unprotect;
        }
        return DeleteStep::Blocked(Health::stalled(
            Reason::ImageProtected,
            format!(
                "image {} is protected, so cloudvol does not delete it; set \
                 spec.resource.protected: false to let the deletion proceed",
                image.id
            ),
        ));
    }
    match image.status {
        ImageStatus::Queued
        | ImageStatus::Saving
        | ImageStatus::Uploading
        | ImageStatus::Importing => DeleteStep::Wait(Health::derived(
            State::Reconciling,
            image_reason(&image.status),
            format!(
                "image {} is {}; cloudvol deletes it once the cloud finishes",
                image.id,
                image.status.as_str()
            ),
        )),
        ImageStatus::Deleted | ImageStatus::PendingDelete => DeleteStep::Done,
        _ => DeleteStep::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::Visibility;

    fn image(status: &str) -> Image {
        Image {
            id: "img-1".into(),
            name: Some("golden".into()),
            status: ImageStatus::parse(status),
            visibility: Visibility::Private,
            tags: vec![uid_tag("u1")],
            ..Default::default()
        }
    }

    fn resource() -> VolumeImageResource {
        VolumeImageResource {
            name: "golden".into(),
            volume_id: Some("vol-1".into()),
            disk_format: "raw".into(),
            ..Default::default()
        }
    }

    fn wanted<'a>(resource: &'a VolumeImageResource, mark: Option<&'a str>) -> Wanted<'a> {
        Wanted {
            resource: Some(resource),
            mark,
            paused: false,
        }
    }

    /// Every status of NHN's Image API (docs/sources.md; and the ones Glance adds), and one nobody lists.
    const STATUS_TABLE: &[(&str, StatusClass, &str)] = &[
        ("queued", StatusClass::Transitional, "Queued"),
        ("saving", StatusClass::Transitional, "Saving"),
        ("active", StatusClass::Usable, "Active"),
        ("killed", StatusClass::NeedsPerson, "Killed"),
        ("deleted", StatusClass::NeedsPerson, "Deleted"),
        ("pending_delete", StatusClass::NeedsPerson, "PendingDelete"),
        ("deactivated", StatusClass::NeedsPerson, "Deactivated"),
        ("uploading", StatusClass::Transitional, "Uploading"),
        ("importing", StatusClass::Transitional, "Importing"),
        ("melting", StatusClass::NeedsPerson, "UnknownStatus"),
    ];

    #[test]
    fn every_image_status_maps_to_one_condition() {
        assert_eq!(STATUS_TABLE.len(), ImageStatus::KNOWN.len() + 1);
        for (status, class, reason) in STATUS_TABLE {
            let img = image(status);
            assert_eq!(&image_class(&img.status), class, "{status}");
            let health = status_health(&img);
            assert_eq!(health.reason(), *reason);
            let expected = match class {
                StatusClass::Usable => health.is_ready(),
                StatusClass::Transitional => health.is_reconciling(),
                StatusClass::NeedsPerson => health.is_stalled(),
            };
            assert!(expected, "{status}: {health:?}");
        }
    }

    #[test]
    fn a_matching_active_image_is_ready() {
        let r = resource();
        let mark = uid_tag("u1");
        let d = decide(&wanted(&r, Some(&mark)), &image("active"));
        assert_eq!(d.write, None);
        assert!(d.health.is_ready(), "{:?}", d.health);
    }

    #[test]
    fn changes_are_one_patch_and_protection_comes_last() {
        let mut r = resource();
        r.name = "golden-2".into();
        r.visibility = Some(ImageVisibility::Shared);
        r.tags = vec!["base".into()];
        r.properties.insert("os_type".into(), "linux".into());
        r.protected = Some(true);
        let mark = uid_tag("u1");
        let img = image("active");
        let d = decide(&wanted(&r, Some(&mark)), &img);
        let Some(Write::Patch(ops)) = d.write else {
            panic!("a patch first: {:?}", d.write)
        };
        assert_eq!(
            ops,
            vec![
                PatchOp::replace("name", "golden-2"),
                PatchOp::replace("visibility", "shared"),
                PatchOp::replace("tags", vec!["base".to_string(), mark.clone()]),
                PatchOp::add("os_type", "linux"),
                PatchOp::replace("protected", true),
            ]
        );
        assert_eq!(d.health.reason(), "Updating");
        // The patch protects too: once it is in, nothing is left to do.
        let mut patched = img.clone();
        patched.name = Some("golden-2".into());
        patched.visibility = Visibility::Shared;
        patched.tags = vec!["base".into(), mark.clone()];
        patched.properties.insert("os_type".into(), "linux".into());
        patched.protected = true;
        assert!(decide(&wanted(&r, Some(&mark)), &patched).health.is_ready());
    }

    #[test]
    fn a_protected_image_is_unprotected_before_a_change_and_protected_again() {
        let mut r = resource();
        r.protected = Some(true);
        r.tags = vec!["new".into()];
        let mark = uid_tag("u1");
        let mut img = image("active");
        img.protected = true;
        assert_eq!(
            decide(&wanted(&r, Some(&mark)), &img).write,
            Some(Write::Unprotect)
        );
        // Lifted: the change and the protection go in one patch.
        img.protected = false;
        let Some(Write::Patch(ops)) = decide(&wanted(&r, Some(&mark)), &img).write else {
            panic!("the change comes next");
        };
        assert_eq!(ops.last(), Some(&PatchOp::replace("protected", true)));
        img.tags = vec!["new".into(), mark.clone()];
        img.protected = true;
        assert!(decide(&wanted(&r, Some(&mark)), &img).health.is_ready());
    }

    #[test]
    fn an_adopted_image_keeps_its_own_tags_and_other_objects_marks_stay() {
        let mut r = resource();
        r.tags = vec!["mine".into()];
        let mut img = image("active");
        img.tags = vec!["theirs".into()];
        let Some(Write::Patch(ops)) = decide(&wanted(&r, None), &img).write else {
            panic!()
        };
        assert_eq!(
            ops,
            vec![PatchOp::replace(
                "tags",
                vec!["mine".to_string(), "theirs".to_string()]
            )]
        );

        let mut img = image("active");
        img.tags = vec![uid_tag("u1"), uid_tag("other"), "stale".into()];
        let mark = uid_tag("u1");
        let Some(Write::Patch(ops)) = decide(&wanted(&r, Some(&mark)), &img).write else {
            panic!()
        };
        assert_eq!(
            ops,
            vec![PatchOp::replace(
                "tags",
                vec![uid_tag("other"), mark.clone(), "mine".to_string()]
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
            )]
        );
    }

    #[test]
    fn a_change_to_a_protected_image_with_protected_unset_is_tried_as_is() {
        let mut r = resource();
        r.tags = vec!["new".into()];
        let mark = uid_tag("u1");
        let mut img = image("active");
        img.protected = true;
        assert!(matches!(
            decide(&wanted(&r, Some(&mark)), &img).write,
            Some(Write::Patch(_))
        ));
        r.protected = Some(false);
        assert_eq!(
            decide(&wanted(&r, Some(&mark)), &img).write,
            Some(Write::Protect(false))
        );
    }

    #[test]
    fn unset_visibility_and_protected_are_left_alone() {
        let r = resource();
        let mark = uid_tag("u1");
        let mut img = image("active");
        img.visibility = Visibility::Shared;
        img.protected = true;
        assert_eq!(decide(&wanted(&r, Some(&mark)), &img).write, None);
    }

    #[test]
    fn paused_and_observe_only_never_write() {
        let mut r = resource();
        r.name = "renamed".into();
        let mark = uid_tag("u1");
        let paused = Wanted {
            resource: Some(&r),
            mark: Some(&mark),
            paused: true,
        };
        let d = decide(&paused, &image("active"));
        assert_eq!((d.write, d.health.reason()), (None, "Paused"));
        let observe = Wanted {
            resource: None,
            mark: None,
            paused: false,
        };
        assert_eq!(decide(&observe, &image("active")).write, None);
    }

    #[test]
    fn min_disk_and_min_ram_are_patched_after_the_upload_like_other_fields() {
        let mut r = resource();
        r.min_disk = Some(3);
        r.min_ram = Some(512);
        let mark = uid_tag("u1");
        let img = image("active");
        let d = decide(&wanted(&r, Some(&mark)), &img);
        assert_eq!(
            d.write,
            Some(Write::Patch(vec![
                PatchOp::replace("min_disk", 3),
                PatchOp::replace("min_ram", 512),
            ]))
        );
        assert!(
            d.health.message().contains("minDisk, minRam"),
            "{}",
            d.health.message()
        );
        // Not before the image is active: the cloud is still making it.
        assert_eq!(
            decide(&wanted(&r, Some(&mark)), &image("saving")).write,
            None
        );
        let mut done = img.clone();
        done.min_disk = 3;
        done.min_ram = 512;
        assert!(decide(&wanted(&r, Some(&mark)), &done).health.is_ready());
        // Unset leaves the cloud's value alone.
        assert_eq!(decide(&wanted(&resource(), Some(&mark)), &done).write, None);
        // NHN: a protected image is unprotected around the change, as for every field.
        r.protected = Some(true);
        let mut protected = img.clone();
        protected.protected = true;
        assert_eq!(
            decide(&wanted(&r, Some(&mark)), &protected).write,
            Some(Write::Unprotect)
        );
    }

    fn volume_object(
        name: &str,
        spec: serde_json::Value,
        status: serde_json::Value,
    ) -> VolumeObject {
        let mut volume = VolumeObject::new(
            name,
            serde_json::from_value(serde_json::json!({
                "cloudCredentialsRef": {"secretName": "s", "cloudName": "c"},
                "resource": spec,
            }))
            .expect("a spec"),
        );
        volume.status = serde_json::from_value(status).expect("a status");
        volume
    }

    #[test]
    fn volumes_still_being_made_from_the_image_are_found_by_ref_id_or_record() {
        let by_ref = serde_json::json!({"size": 1, "image": {"ref": {"name": "golden"}}});
        let by_id = serde_json::json!({"size": 1, "image": {"id": "img-1"}});
        let other = serde_json::json!({"size": 1, "image": {"id": "img-9"}});
        let blank = serde_json::json!({"size": 1});
        let seen = |status: &str| serde_json::json!({"id": "vol", "sourceImageID": "img-1", "resource": {"status": status}});
        let volumes = vec![
            volume_object("downloading", by_ref.clone(), seen("downloading")),
            volume_object("creating", by_id.clone(), seen("creating")),
            volume_object("made", by_ref.clone(), seen("available")),
            volume_object(
                "asked",
                by_id.clone(),
                serde_json::json!({"sourceImageID": "img-1"}),
            ),
            volume_object("waiting", by_ref.clone(), serde_json::json!(null)),
            volume_object(
                "other-image",
                other,
                serde_json::json!({"sourceImageID": "img-9", "resource": {"status": "downloading"}}),
            ),
            volume_object(
                // Made from an earlier image of the same VolumeImage: the record counts.
                "earlier-image",
                by_ref,
                serde_json::json!({"sourceImageID": "img-0", "resource": {"status": "downloading"}}),
            ),
            volume_object(
                "blank",
                blank,
                serde_json::json!({"resource": {"status": "creating"}}),
            ),
        ];
        assert_eq!(
            volumes_in_creation("golden", Some("img-1"), &volumes),
            vec!["asked", "creating", "downloading"]
        );
    }

    #[test]
    fn deleting_an_image_waits_for_the_volumes_being_made_from_it_first() {
        let mut img = image("active");
        img.protected = true;
        let shares = vec![("share-a".to_string(), false)];
        let downloading = vec!["data".to_string()];
        let DeleteStep::Wait(health) =
            decide_delete(Some(&img), Some(true), &downloading, &shares, false)
        else {
            panic!("waits for the download");
        };
        assert_eq!(health.reason(), "ImageInUse");
        assert!(health.is_reconciling());
        assert!(
            health
                .message()
                .contains("Volume data is still being made from image img-1"),
            "{}",
            health.message()
        );
        let two = vec!["a".to_string(), "b".to_string()];
        let DeleteStep::Wait(health) = decide_delete(Some(&img), None, &two, &[], true) else {
            panic!("waits, paused or not: nothing is written");
        };
        assert!(
            health.message().contains("Volumes a, b are"),
            "{}",
            health.message()
        );
        // Once made, the image's own rules apply.
        assert!(matches!(
            decide_delete(Some(&img), Some(true), &[], &shares, false),
            DeleteStep::Blocked(h) if h.reason() == "ReferencedByImageShare"
        ));
        assert!(matches!(
            decide_delete(Some(&img), Some(true), &[], &[], false),
            DeleteStep::Blocked(h) if h.reason() == "ImageProtected"
        ));
        assert_eq!(
            decide_delete(Some(&image("active")), None, &[], &[], false),
            DeleteStep::Delete
        );
    }

    #[test]
    fn source_volume_table() {
        let cases = [
            ("available", None),
            ("in-use", None),
            ("error", None),
            ("creating", Some("WaitingForVolume")),
            ("uploading", Some("WaitingForVolume")),
            ("extending", Some("WaitingForVolume")),
            ("detaching", Some("WaitingForVolume")),
        ];
        for (status, want) in cases {
            let got = source_volume_wait("vol-1", &VolumeStatus::parse(status));
            assert_eq!(got.as_ref().map(|h| h.reason()), want, "{status}");
        }
    }

    #[test]
    fn upload_names_are_unique_to_the_request_and_fit_glance() {
        assert_eq!(
            upload_name("golden", "1a2b3c4d5e6f"),
            "golden-cloudvol-1a2b3c4d5e6f"
        );
        let long = "가".repeat(200);
        let name = upload_name(&long, "1a2b3c4d5e6f");
        assert!(name.len() <= 255, "{}", name.len());
        assert!(name.ends_with("-cloudvol-1a2b3c4d5e6f"));
        assert_ne!(upload_name("golden", "a"), upload_name("golden", "b"));
    }

    #[test]
    fn a_private_visibility_does_not_fight_an_imageshare() {
        let private = Write::Patch(vec![
            PatchOp::replace("name", "x"),
            PatchOp::replace("visibility", "private"),
        ]);
        let shared = Write::Patch(vec![PatchOp::replace("visibility", "shared")]);
        let shares = vec![("share-a".to_string(), false)];
        let health = visibility_conflict(&private, "img-1", &shares).expect("a conflict");
        assert_eq!(health.reason(), "VisibilityConflict");
        assert!(health.message().contains("ImageShare share-a"));
        assert_eq!(visibility_conflict(&private, "img-1", &[]), None);
        assert_eq!(visibility_conflict(&shared, "img-1", &shares), None);
        assert_eq!(
            visibility_conflict(&Write::Protect(true), "img-1", &shares),
            None
        );
    }

    #[test]
    fn delete_table() {
        let protected = |status: &str| {
            let mut i = image(status);
            i.protected = true;
            i
        };
        let leaving = vec![("share-a".to_string(), true)];
        let staying = vec![
            ("share-a".to_string(), true),
            ("share-b".to_string(), false),
        ];
        type Case = (
            Option<Image>,
            Option<bool>,
            Vec<(String, bool)>,
            bool,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (None, None, vec![], false, "Done"),
            (Some(image("active")), None, vec![], false, "Delete"),
            (Some(image("killed")), None, vec![], false, "Delete"),
            (Some(image("queued")), None, vec![], false, "Wait:Queued"),
            (Some(image("saving")), None, vec![], false, "Wait:Saving"),
            (Some(image("deleted")), None, vec![], false, "Done"),
            (
                Some(protected("active")),
                None,
                vec![],
                false,
                "Blocked:ImageProtected",
            ),
            (
                Some(protected("active")),
                Some(true),
                vec![],
                false,
                "Blocked:ImageProtected",
            ),
            (
                Some(protected("active")),
                Some(false),
                vec![],
                false,
                "Unprotect",
            ),
            (
                // Unprotected by cloudvol itself for a change, or not protected yet: the spec
                // says protected, so it is not deleted.
                Some(image("active")),
                Some(true),
                vec![],
                false,
                "Blocked:ImageProtected",
            ),
            (
                Some(image("active")),
                None,
                leaving,
                false,
                "Wait:WaitingForImageShares",
            ),
            (
                Some(image("active")),
                None,
                staying,
                false,
                "Blocked:ReferencedByImageShare",
            ),
            (Some(image("active")), None, vec![], true, "Blocked:Paused"),
        ];
        for (img, spec_protected, shares, paused, want) in cases {
            let got = match decide_delete(img.as_ref(), spec_protected, &[], &shares, paused) {
                DeleteStep::Done => "Done".to_string(),
                DeleteStep::Delete => "Delete".to_string(),
                DeleteStep::Unprotect => "Unprotect".to_string(),
                DeleteStep::Wait(h) => format!("Wait:{}", h.reason()),
                DeleteStep::Blocked(h) => format!("Blocked:{}", h.reason()),
            };
            assert_eq!(
                got,
                want,
                "{:?} {spec_protected:?} {shares:?}",
                img.map(|i| i.status)
            );
        }
    }
}
