//! The operator end to end, one suite with two backends: each scenario is written once, over a
//! [`Harness`] (a namespace of its own on the real kube-apiserver, the credentials Secret
//! `cloud`, and the operator in-process watching only that namespace), and runs twice:
//!
//! - `<scenario>::emulator`: against a fresh `cloudvol-emulator` (NHN Cloud's dialect, clouds
//!   `demo` and `partner`);
//! - `<scenario>::openstack`: against real Keystone 30, Glance 33 and Cinder 29 started by
//!   `hack/openstack.sh` (Keystone v3 provider, clouds `project-a` and `project-b`). When it
//!   cannot start, these fail with the script's reason; they never skip.
//!
//! The operator runs the same way on both; only the Secret differs. The test reads the cloud
//! straight (the emulator's admin API, or raw Cinder/Glance calls) to check what the
//! operator did. The OpenStack outlives the tests and serves them in parallel, so every cloud
//! name starts with the test's own (random) namespace, every test deletes what it made and
//! checks that nothing named after it is left, and a failed test sweeps its leftovers.
//!
//! `cargo test --test e2e emulator` runs only the emulator half, `... openstack` the other.

mod support;

#[path = "support/openstack.rs"]
mod openstack_support;

#[path = "e2e/openstack.rs"]
mod openstack_backend;

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Instant;

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use futures::FutureExt;
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{
    Backend, Harness, SECRET, condition_matches, image_manifest, manifest, volume_manifest,
};

/// Runs each scenario against both backends, as `<scenario>::emulator` and
/// `<scenario>::openstack`, each in its own namespace with its own operator.
macro_rules! e2e {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn emulator() {
                super::epoch();
                super::run(stringify!($name), super::Backend::Emulator, |h| {
                    Box::pin(super::$name(h))
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn openstack() {
                super::epoch();
                let backend = super::openstack_backend::backend().await;
                super::run(stringify!($name), backend, |h| Box::pin(super::$name(h))).await;
            }
        }
    )*};
}

e2e!(
    volume_lifecycle,
    image_protected_lifecycle,
    image_share_with_member_credentials,
    volume_import_by_id_and_filter,
    golden_image_across_tenants,
    volume_from_image_ref_and_retype,
);

/// When the first test of this binary started: the offsets printed below give each half's
/// wall time.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One scenario on one backend: its harness, then the scenario; on success nothing named
/// after the test may be left in the cloud, on failure the cloud is swept and the panic goes
/// on.
async fn run<F>(scenario: &str, backend: Backend, body: F)
where
    F: for<'h> FnOnce(&'h Harness) -> futures::future::LocalBoxFuture<'h, ()>,
{
    let epoch = epoch();
    let start = Instant::now();
    let prefix = format!("e2e-{}-{}", backend.name(), scenario.replace('_', "-"));
    let mut h = Harness::on(&prefix, &backend).await;
    let outcome = AssertUnwindSafe(body(&h)).catch_unwind().await;
    let took = start.elapsed();
    match outcome {
        Ok(()) => {
            let left = h.leftovers().await;
            assert!(
                left.is_empty(),
                "{scenario} on {} left these in the cloud: {left:#?}",
                backend.name()
            );
            let end = epoch.elapsed().as_secs_f64();
            eprintln!(
                "e2e {scenario}::{}: passed in {:.1}s (from {:.1}s to {end:.1}s after the first \
                 test began)",
                backend.name(),
                took.as_secs_f64(),
                end - took.as_secs_f64(),
            );
        }
        Err(panic) => {
            eprintln!(
                "e2e {scenario}::{}: failed after {:.1}s in namespace {}; sweeping the cloud",
                backend.name(),
                took.as_secs_f64(),
                h.namespace
            );
            h.sweep().await;
            std::panic::resume_unwind(panic);
        }
    }
}

// ---- helpers -----------------------------------------------------------------------------

fn share_manifest(name: &str, cloud: &str, spec: Value) -> Value {
    manifest("ImageShare", name, cloud, spec)
}

fn id_of<K: serde::Serialize>(object: &K) -> String {
    let value = serde_json::to_value(object).expect("serializable");
    value["status"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("status.id is set: {}", value["status"]))
        .to_string()
}

/// The message of the object's condition `type_`.
fn message_of<K: serde::Serialize>(object: &K, type_: &str) -> String {
    let value = serde_json::to_value(object).expect("serializable");
    value["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_else(|| panic!("no {type_} condition: {}", value["status"]))
        .to_string()
}

/// Ready=True for the object's current generation.
fn is_ready<K: serde::Serialize>(object: &K) -> bool {
    condition_matches(
        &serde_json::to_value(object).expect("serializable"),
        "Ready",
        "True",
        None,
    )
}

/// A managed Volume `name` of 1 GiB, Ready; returns its cloud ID.
async fn ready_volume(h: &Harness, name: &str) -> String {
    let cloud_name = h.unique_name(name);
    h.create::<Volume>(volume_manifest(
        name,
        &h.owner().cloud,
        json!({"resource": {"size": 1, "name": cloud_name}}),
    ))
    .await;
    let ready: Volume = h
        .wait_condition(name, "Ready", "True", Some("Available"))
        .await;
    id_of(&ready)
}

/// Deletes the Volume `name` and waits until the object and the cloud volume `id` are gone.
async fn delete_volume(h: &Harness, name: &str, id: &str) {
    h.delete::<Volume>(name).await;
    h.wait_gone::<Volume>(name).await;
    h.wait_cloud(&format!("cloud volume {id} gone"), || async {
        h.read_volume(id).await.is_none().then_some(())
    })
    .await;
}

/// A managed VolumeImage `name` made from the Volume `volume`, Ready (active); returns it.
async fn ready_image(h: &Harness, name: &str, volume: &str, extra: Value) -> VolumeImage {
    let mut resource = json!({
        "name": h.unique_name(name),
        "volumeRef": {"name": volume},
        "diskFormat": "qcow2",
    });
    if let (Some(target), Some(extra)) = (resource.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    h.create::<VolumeImage>(image_manifest(
        name,
        &h.owner().cloud,
        json!({ "resource": resource }),
    ))
    .await;
    h.wait_condition(name, "Ready", "True", Some("Active"))
        .await
}

/// Deletes the VolumeImage `name` and waits until the object and the image `id` are gone.
async fn delete_image(h: &Harness, name: &str, id: &str) {
    h.delete::<VolumeImage>(name).await;
    h.wait_gone::<VolumeImage>(name).await;
    h.wait_cloud(&format!("image {id} gone"), || async {
        h.read_image(id).await.is_none().then_some(())
    })
    .await;
}

// ---- scenarios ---------------------------------------------------------------------------

/// Volume: create → Ready with status.id; grow 1 → 2 GiB; attached, a deletion waits
/// (Stalled/VolumeInUse naming the server, the volume stays); detached, it finishes.
async fn volume_lifecycle(h: &Harness) {
    let owner = h.owner();
    let cloud_name = h.unique_name("data");
    let created: Volume = h
        .create(volume_manifest(
            "data",
            &owner.cloud,
            json!({"resource": {"size": 1, "name": cloud_name}}),
        ))
        .await;
    let ready: Volume = h
        .wait_condition("data", "Ready", "True", Some("Available"))
        .await;
    let id = id_of(&ready);
    let observed = ready
        .status
        .clone()
        .unwrap()
        .resource
        .expect("status.resource");
    assert_eq!(
        (observed.status.as_str(), observed.size),
        ("available", Some(1))
    );
    assert_eq!(
        observed
            .metadata
            .get("cloudvol.dev/uid")
            .map(String::as_str),
        created.uid().as_deref(),
        "the cloud volume carries the object's mark"
    );
    let seen = h.read_volume(&id).await.expect("the cloud volume exists");
    assert_eq!(
        (seen.status.as_str(), seen.size, seen.name.as_deref()),
        ("available", 1, Some(cloud_name.as_str()))
    );

    // Grow 1 → 2 GiB.
    h.patch::<Volume>("data", json!({"spec": {"resource": {"size": 2}}}))
        .await;
    let grown: Volume = h
        .wait_object("data", "Ready at 2 GiB for generation 2", |v: &Volume| {
            is_ready(v)
                && v.status
                    .as_ref()
                    .and_then(|s| s.resource.as_ref())
                    .is_some_and(|r| r.size == Some(2) && r.status == "available")
        })
        .await;
    assert_eq!(grown.metadata.generation, Some(2));
    assert_eq!(id_of(&grown), id, "extended in place");
    assert_eq!(h.read_volume(&id).await.expect("the volume").size, 2);
    h.wait_event("data", "Extended").await;

    // A server uses it: deleting the object waits, naming the server.
    let server = uuid::Uuid::new_v4().to_string();
    h.attach(&id, &server).await;
    h.delete::<Volume>("data").await;
    let held: Volume = h
        .wait_condition("data", "Stalled", "True", Some("VolumeInUse"))
        .await;
    let message = message_of(&held, "Stalled");
    assert!(message.contains(&server), "names the server: {message}");
    let note = h.wait_event("data", "VolumeInUse").await;
    assert!(note.contains("detach"), "{note}");
    let seen = h
        .read_volume(&id)
        .await
        .expect("the attached volume still exists");
    assert_eq!(seen.status, "in-use");
    assert_eq!(seen.servers, vec![server.clone()]);

    // The server lets go: the deletion finishes by itself.
    h.detach(&id).await;
    h.wait_gone::<Volume>("data").await;
    h.wait_cloud("the cloud volume deleted", || async {
        h.read_volume(&id).await.is_none().then_some(())
    })
    .await;
}

/// VolumeImage: from a volumeRef → Ready/active and protected; deleting it stalls with
/// ImageProtected and the image stays; `protected: false` in the spec lets it go. The source
/// volume is untouched.
async fn image_protected_lifecycle(h: &Harness) {
    let owner = h.owner();
    let volume_id = ready_volume(h, "data").await;
    let ready = ready_image(h, "golden", "data", json!({"protected": true})).await;
    let status = ready.status.clone().expect("a status");
    let id = id_of(&ready);
    assert_eq!(status.source_volume_id.as_deref(), Some(volume_id.as_str()));
    let observed = status.resource.expect("status.resource");
    assert_eq!(observed.status, "active");
    assert_eq!(observed.protected, Some(true));
    let image = h.read_image(&id).await.expect("the image exists");
    assert_eq!(image.status, "active");
    assert!(image.protected, "{image:?}");
    assert_eq!(image.owner.as_deref(), Some(owner.id.as_str()));
    assert_eq!(image.name, Some(h.unique_name("golden")));
    let mark = format!("cloudvol-uid:{}", ready.uid().unwrap());
    assert!(image.tags.contains(&mark), "the mark: {:?}", image.tags);

    // Protected: the deletion is held, and the image stays.
    h.delete::<VolumeImage>("golden").await;
    let held: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("ImageProtected"))
        .await;
    let message = message_of(&held, "Stalled");
    assert!(
        message.contains("spec.resource.protected: false"),
        "says what to do: {message}"
    );
    let note = h.wait_event("golden", "ImageProtected").await;
    assert!(note.contains(&id), "{note}");
    let image = h.read_image(&id).await.expect("the image is still there");
    assert!(image.protected && image.status == "active", "{image:?}");

    // The spec lifts the protection: the operator applies it, then deletes.
    h.patch::<VolumeImage>(
        "golden",
        json!({"spec": {"resource": {"protected": false}}}),
    )
    .await;
    h.wait_gone::<VolumeImage>("golden").await;
    h.wait_cloud("the image deleted", || async {
        h.read_image(&id).await.is_none().then_some(())
    })
    .await;

    // The source volume is untouched.
    let volume = h.read_volume(&volume_id).await.expect("the volume stays");
    assert_eq!((volume.status.as_str(), volume.size), ("available", 1));
    h.wait_condition::<Volume>("data", "Ready", "True", Some("Available"))
        .await;
    delete_volume(h, "data", &volume_id).await;
}

/// ImageShare: the image of a VolumeImage shared with the second tenant, which cloudvol
/// accepts with that tenant's credentials; the tenant lists it. Deleting the share removes
/// the member and restores the visibility.
async fn image_share_with_member_credentials(h: &Harness) {
    let member = h.member();
    let volume_id = ready_volume(h, "data").await;
    let image = ready_image(h, "golden", "data", json!({})).await;
    let id = id_of(&image);
    let before = h.read_image(&id).await.expect("the image exists");
    assert_eq!(
        before.visibility, "private",
        "cloudvol makes images private unless the spec says shared"
    );
    assert!(!h.member_image_ids().await.contains(&id));

    h.create::<ImageShare>(share_manifest(
        "to-member",
        &h.owner().cloud,
        json!({
            "imageRef": {"name": "golden"},
            "members": [{
                "tenantID": member.id,
                "memberCredentialsRef": {"secretName": SECRET, "cloudName": member.cloud},
            }],
        }),
    ))
    .await;
    let ready: ImageShare = h
        .wait_condition("to-member", "Ready", "True", Some("Shared"))
        .await;
    let status = ready.status.clone().expect("a status");
    assert_eq!(status.id.as_deref(), Some(id.as_str()));
    assert_eq!(status.visibility.as_deref(), Some("shared"));
    assert_eq!(status.previous_visibility.as_deref(), Some("private"));
    let m = status
        .members
        .iter()
        .find(|m| m.tenant_id == member.id)
        .unwrap_or_else(|| panic!("status.members: {:?}", status.members));
    assert_eq!(m.status, "accepted");
    assert!(m.added_by_this_object);
    assert_eq!(
        (status.member_count, status.accepted_count),
        (Some(1), Some(1))
    );

    assert_eq!(
        h.read_members(&id).await,
        vec![(member.id.clone(), "accepted".to_string())]
    );
    assert_eq!(
        h.read_image(&id).await.expect("the image").visibility,
        "shared"
    );
    assert!(
        h.member_image_ids().await.contains(&id),
        "the second tenant lists the image"
    );

    // Deleting the share removes the member and restores the visibility it changed.
    h.delete::<ImageShare>("to-member").await;
    h.wait_gone::<ImageShare>("to-member").await;
    assert_eq!(h.read_members(&id).await, vec![]);
    assert_eq!(
        h.read_image(&id).await.expect("the image stays").visibility,
        "private"
    );
    assert!(!h.member_image_ids().await.contains(&id));

    delete_image(h, "golden", &id).await;
    delete_volume(h, "data", &volume_id).await;
}

/// Volume import, unmanaged, by id and by filter, of a volume made outside cloudvol: both
/// Ready with its ID; deleting them leaves the volume.
async fn volume_import_by_id_and_filter(h: &Harness) {
    let owner = h.owner();
    let cloud_name = h.unique_name("existing");
    let id = h.create_cloud_volume(&cloud_name, 1).await;

    h.create::<Volume>(volume_manifest(
        "by-id",
        &owner.cloud,
        json!({"managementPolicy": "unmanaged", "import": {"id": id}}),
    ))
    .await;
    let by_id: Volume = h.wait_condition("by-id", "Ready", "True", None).await;
    assert_eq!(id_of(&by_id), id);
    let observed = by_id.status.unwrap().resource.expect("status.resource");
    assert_eq!(observed.name.as_deref(), Some(cloud_name.as_str()));
    assert_eq!(observed.size, Some(1));

    h.create::<Volume>(volume_manifest(
        "by-filter",
        &owner.cloud,
        json!({"managementPolicy": "unmanaged", "import": {"filter": {"name": cloud_name}}}),
    ))
    .await;
    let by_filter: Volume = h.wait_condition("by-filter", "Ready", "True", None).await;
    assert_eq!(id_of(&by_filter), id);

    // Unmanaged objects go without touching the volume.
    h.delete::<Volume>("by-id").await;
    h.delete::<Volume>("by-filter").await;
    h.wait_gone::<Volume>("by-id").await;
    h.wait_gone::<Volume>("by-filter").await;
    let seen = h.read_volume(&id).await.expect("unmanaged never deletes");
    assert_eq!(seen.status, "available");

    h.delete_cloud_volume(&id).await;
}

/// The golden-image loop across tenants: the owner makes an image from a volume and shares
/// it; the member, with its own credentials, makes a volume from it by ID (the cloud copies
/// the image into it: `downloading`, then `available`, bootable, made from the image). Then
/// the image's deletion while another volume is being made from it: the image goes only once
/// that volume is made, and the volume is fine.
async fn golden_image_across_tenants(h: &Harness) {
    let member = h.member();
    let volume_id = ready_volume(h, "data").await;
    let image = ready_image(h, "golden", "data", json!({"minDisk": 1})).await;
    let image_id = id_of(&image);
    assert_eq!(
        image.status.clone().unwrap().resource.unwrap().min_disk,
        Some(1),
        "minDisk set through the image API"
    );
    h.create::<ImageShare>(share_manifest(
        "to-member",
        &h.owner().cloud,
        json!({
            "imageRef": {"name": "golden"},
            "members": [{
                "tenantID": member.id,
                "memberCredentialsRef": {"secretName": SECRET, "cloudName": member.cloud},
            }],
        }),
    ))
    .await;
    h.wait_condition::<ImageShare>("to-member", "Ready", "True", Some("Shared"))
        .await;

    let copy_name = h.unique_name("member-copy");
    h.create::<Volume>(volume_manifest(
        "member-copy",
        &member.cloud,
        json!({"resource": {"size": 1, "name": copy_name, "image": {"id": image_id}}}),
    ))
    .await;
    let ready: Volume = h
        .wait_condition("member-copy", "Ready", "True", Some("Available"))
        .await;
    let copy_id = id_of(&ready);
    let status = ready.status.clone().unwrap();
    assert_eq!(status.source_image_id.as_deref(), Some(image_id.as_str()));
    let observed = status.resource.expect("status.resource");
    assert_eq!(observed.source_image_id.as_deref(), Some(image_id.as_str()));
    assert_eq!(observed.bootable, Some(true));
    let seen = h
        .read_member_volume(&copy_id)
        .await
        .expect("the member's volume exists");
    assert_eq!(
        (seen.status.as_str(), seen.source_image_id.as_deref()),
        ("available", Some(image_id.as_str()))
    );
    // (The emulator's admin API reads every tenant's volumes, so only upstream tells.)
    if let Backend::Remote(_) = h.backend() {
        assert!(
            h.read_volume(&copy_id).await.is_none(),
            "made in the member's tenant, not the owner's"
        );
    }

    // Made, the member's volume does not depend on the share any more.
    h.delete::<ImageShare>("to-member").await;
    h.wait_gone::<ImageShare>("to-member").await;
    let seen = h.read_member_volume(&copy_id).await.expect("still there");
    assert_eq!(seen.status, "available");

    // Another volume from the image, and at once the image's deletion: the image is not
    // deleted under the volume being made from it.
    let second_name = h.unique_name("second");
    h.create::<Volume>(volume_manifest(
        "second",
        &h.owner().cloud,
        json!({"resource": {"size": 1, "name": second_name, "image": {"ref": {"name": "golden"}}}}),
    ))
    .await;
    h.wait_object("second", "a create asked for", |v: &Volume| {
        v.status
            .as_ref()
            .is_some_and(|s| s.source_image_id.is_some())
    })
    .await;
    h.delete::<VolumeImage>("golden").await;
    h.wait_gone::<VolumeImage>("golden").await;
    // Whether the deletion met the volume still being made depends on the cloud's speed;
    // say which happened (the emulator tests pin ImageInUse itself).
    let waited = h
        .events("golden")
        .await
        .into_iter()
        .find(|(_, reason, _)| reason == "ImageInUse");
    eprintln!(
        "e2e golden_image_across_tenants::{}: the image's deletion {}",
        h.backend().name(),
        match &waited {
            Some((_, _, note)) => format!("waited: {note}"),
            None => "found the volume already made".to_string(),
        }
    );
    let second: Volume = h.api().get("second").await.expect("the Volume");
    let second_id = id_of(&second);
    let seen = h
        .read_volume(&second_id)
        .await
        .expect("the second volume exists");
    assert_eq!(
        seen.status, "available",
        "the image went only once the volume was made: {seen:?}"
    );
    h.wait_condition::<Volume>("second", "Ready", "True", Some("Available"))
        .await;
    h.wait_cloud("the image deleted", || async {
        h.read_image(&image_id).await.is_none().then_some(())
    })
    .await;

    // The volumes do not depend on the image any more.
    h.delete::<Volume>("member-copy").await;
    h.wait_gone::<Volume>("member-copy").await;
    h.wait_cloud(&format!("member volume {copy_id} gone"), || async {
        h.read_member_volume(&copy_id).await.is_none().then_some(())
    })
    .await;
    delete_volume(h, "second", &second_id).await;
    delete_volume(h, "data", &volume_id).await;
}

/// A volume from a VolumeImage in the same tenant, then retyped: to a type its back end
/// serves (in place), then to one it does not with `never` (the cloud accepts and gives it
/// up: `RetypeNotApplied`, not asked again), then with `on-demand` (the emulator moves it;
/// the test OpenStack has no back end for the type, so Cinder gives it up again).
async fn volume_from_image_ref_and_retype(h: &Harness) {
    h.ensure_volume_type("cloudvol-hdd", json!({})).await;
    h.ensure_volume_type(
        "cloudvol-ssd",
        json!({"volume_backend_name": "ssd_general"}),
    )
    .await;
    let volume_id = ready_volume(h, "data").await;
    let image = ready_image(h, "golden", "data", json!({})).await;
    let image_id = id_of(&image);
    let copy_name = h.unique_name("copy");
    h.create::<Volume>(volume_manifest(
        "copy",
        &h.owner().cloud,
        json!({"resource": {"size": 1, "name": copy_name, "image": {"ref": {"name": "golden"}}}}),
    ))
    .await;
    let ready: Volume = h
        .wait_condition("copy", "Ready", "True", Some("Available"))
        .await;
    let copy_id = id_of(&ready);
    let seen = h.read_volume(&copy_id).await.expect("the copy exists");
    assert_eq!(seen.source_image_id.as_deref(), Some(image_id.as_str()));

    let typed = |name: &'static str| {
        move |v: &Volume| {
            is_ready(v)
                && v.status
                    .as_ref()
                    .and_then(|s| s.resource.as_ref())
                    .is_some_and(|r| r.volume_type.as_deref() == Some(name))
        }
    };
    // The same back end: in place.
    h.patch::<Volume>(
        "copy",
        json!({"spec": {"resource": {"volumeType": "cloudvol-hdd"}}}),
    )
    .await;
    h.wait_object("copy", "Ready as cloudvol-hdd", typed("cloudvol-hdd"))
        .await;
    assert_eq!(
        h.read_volume(&copy_id)
            .await
            .unwrap()
            .volume_type
            .as_deref(),
        Some("cloudvol-hdd")
    );
    h.wait_event("copy", "Retyped").await;

    // Another back end, `never`: accepted, then given up by the cloud.
    h.patch::<Volume>(
        "copy",
        json!({"spec": {"resource": {"volumeType": "cloudvol-ssd"}}}),
    )
    .await;
    let given_up: Volume = h
        .wait_condition("copy", "Stalled", "True", Some("RetypeNotApplied"))
        .await;
    let message = message_of(&given_up, "Stalled");
    assert!(
        message.contains("then gave it up") && message.contains("\"cloudvol-hdd\""),
        "{message}"
    );
    let seen = h.read_volume(&copy_id).await.unwrap();
    assert_eq!(
        (seen.status.as_str(), seen.volume_type.as_deref()),
        ("available", Some("cloudvol-hdd"))
    );

    // `on-demand`: the emulator moves the volume; this OpenStack has no back end that serves
    // cloudvol-ssd, so Cinder gives it up again, and cloudvol says so.
    h.patch::<Volume>(
        "copy",
        json!({"spec": {"resource": {"migrationPolicy": "on-demand"}}}),
    )
    .await;
    match h.backend() {
        Backend::Emulator => {
            h.wait_object("copy", "Ready as cloudvol-ssd", typed("cloudvol-ssd"))
                .await;
        }
        Backend::Remote(_) => {
            let given_up: Volume = h
                .wait_object("copy", "given up with on-demand", |v: &Volume| {
                    v.status
                        .as_ref()
                        .and_then(|s| s.retype.as_ref())
                        .is_some_and(|r| {
                            r.accepted
                                && r.migration_policy == cloudvol::api::MigrationPolicy::OnDemand
                        })
                        && condition_matches(
                            &serde_json::to_value(v).unwrap(),
                            "Stalled",
                            "True",
                            Some("RetypeNotApplied"),
                        )
                })
                .await;
            let message = message_of(&given_up, "Stalled");
            assert!(message.contains("no back end"), "{message}");
        }
    }

    delete_volume(h, "copy", &copy_id).await;
    delete_image(h, "golden", &image_id).await;
    delete_volume(h, "data", &volume_id).await;
}
