//! Never a duplicate, never a wrong delete (docs/design.md §5): the rules that keep what
//! cloudvol recorded true. Against the real API server and the emulator.

mod support;

use std::sync::Arc;

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use cloudvol::cloud::{CloudHttp, Connector, TransportConfig};
use cloudvol::controller::conditions::Health;
use cloudvol::controller::reasons::Reason;
use cloudvol::controller::report::{Phase, Report};
use cloudvol::controller::{Context, Settings};
use serde_json::json;

use support::harness::{
    DEMO_TENANT, Harness, PARTNER_TENANT, image_manifest, share_manifest, volume_manifest,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_status_computed_from_a_stale_read_never_overwrites_a_newer_one() {
    let h = Harness::new("safety-stale").await;
    let image = h
        .admin_post(
            "images",
            json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "shared"}),
        )
        .await["id"]
        .as_str()
        .expect("an image id")
        .to_string();
    h.create::<ImageShare>(share_manifest(
        "share",
        json!({"imageID": image, "members": [{"tenantID": PARTNER_TENANT}]}),
    ))
    .await;
    let shared: ImageShare = h
        .wait_condition("share", "Ready", "True", Some("Shared"))
        .await;
    let added = |share: &ImageShare| {
        share
            .status
            .as_ref()
            .is_some_and(|s| s.members.iter().any(|m| m.added_by_this_object))
    };
    assert!(
        added(&shared),
        "the status records the member this object added"
    );

    // The object moves on; a reconcile still holding the old copy, with the intent lost from
    // its view, tries to write.
    h.patch::<ImageShare>(
        "share",
        json!({"metadata": {"annotations": {"example.com/touched": "yes"}}}),
    )
    .await;
    let mut stale = shared.clone();
    let mut forgetful = stale.status.clone().expect("a status");
    for member in &mut forgetful.members {
        member.added_by_this_object = false;
    }
    stale.status = Some(forgetful.clone());
    let connector = Connector::new(CloudHttp::new(TransportConfig::default()).expect("a client"));
    let ctx = Context::new(
        h.client.clone(),
        connector,
        Arc::new(cloudvol::metrics::Metrics::new()),
        Settings::default(),
    );
    let report = Report::new(&ctx, &stale, Phase::Apply);
    let written = report
        .record(
            forgetful,
            &Health::reconciling(Reason::AddingMember, "from a stale read"),
        )
        .await;
    assert!(
        matches!(&written, Err(cloudvol::controller::Error::Kube(kube::Error::Api(s))) if s.code == 409),
        "a stale status write is refused: {written:?}"
    );
    let live: ImageShare = h.api().get("share").await.expect("the ImageShare");
    assert!(added(&live), "the intent survives");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_that_now_point_at_another_tenant_never_create_an_empty_volume() {
    let h = Harness::new("safety-tenant").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    let cloud = ready.status.and_then(|s| s.cloud).expect("status.cloud");
    assert_eq!(cloud.tenant_id, DEMO_TENANT);

    // The same tenant through other credentials (Keystone v3): rotation keeps working.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"cloudCredentialsRef": {"cloudName": "demo-v3"}}}),
    )
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;

    // Another tenant: nothing is created there, and the volume with the data stays.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"cloudCredentialsRef": {"cloudName": "partner"}}}),
    )
    .await;
    let stalled: Volume = h
        .wait_condition("data", "Stalled", "True", Some("CredentialsChanged"))
        .await;
    let message = &stalled.status.expect("a status").conditions[0].message;
    assert!(
        message.contains(DEMO_TENANT) && message.contains(PARTNER_TENANT),
        "both tenants are named: {message}"
    );
    assert_eq!(h.cloud_volumes().await.len(), 1, "no second, empty volume");

    // Its deletion touches neither tenant until a person chooses.
    h.delete::<Volume>("data").await;
    h.wait_condition::<Volume>("data", "Stalled", "True", Some("CredentialsChanged"))
        .await;
    h.patch::<Volume>("data", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    h.wait_gone::<Volume>("data").await;
    assert_eq!(h.cloud_volumes().await.len(), 1, "the data is still there");
}

async fn shared_image(h: &Harness, name: &str) -> String {
    h.admin_post(
        "images",
        json!({"owner": DEMO_TENANT, "name": name, "visibility": "shared"}),
    )
    .await["id"]
        .as_str()
        .expect("an image id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_imageshares_never_fight_over_one_member() {
    let h = Harness::new("safety-claim").await;
    let image = shared_image(&h, "golden").await;
    let partner = json!([{"tenantID": PARTNER_TENANT}]);
    h.create::<ImageShare>(share_manifest(
        "first",
        json!({"imageID": image, "members": partner}),
    ))
    .await;
    h.wait_condition::<ImageShare>("first", "Ready", "True", Some("Shared"))
        .await;
    h.create::<ImageShare>(share_manifest(
        "second",
        json!({"imageID": image, "members": partner}),
    ))
    .await;
    let claimed: ImageShare = h
        .wait_condition("second", "Stalled", "True", Some("MemberClaimed"))
        .await;
    let message = &claimed.status.expect("a status").conditions[0].message;
    assert!(
        message.contains("ImageShare first"),
        "names the owner: {message}"
    );

    // The second one's deletion leaves the first one's member alone; the first one's removes it.
    h.delete::<ImageShare>("second").await;
    h.wait_gone::<ImageShare>("second").await;
    assert_eq!(h.read_members(&image).await.len(), 1, "the member stays");
    h.delete::<ImageShare>("first").await;
    h.wait_gone::<ImageShare>("first").await;
    assert!(
        h.read_members(&image).await.is_empty(),
        "its owner removed it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_volumeimage_and_an_imageshare_do_not_flip_the_visibility() {
    let h = Harness::new("safety-visibility").await;
    let image = shared_image(&h, "golden").await;
    h.create::<VolumeImage>(json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "VolumeImage",
        "metadata": {"name": "golden"},
        "spec": {
            "cloudCredentialsRef": {"secretName": support::harness::SECRET, "cloudName": "demo"},
            "import": {"id": image},
            "deletionPolicy": "Orphan",
            "resource": {"name": "golden", "diskFormat": "raw", "visibility": "private"},
        },
    }))
    .await;
    h.create::<ImageShare>(share_manifest(
        "share",
        json!({"imageRef": {"name": "golden"}, "members": [{"tenantID": PARTNER_TENANT}]}),
    ))
    .await;
    let stalled: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("VisibilityConflict"))
        .await;
    let message = &stalled.status.expect("a status").conditions[0].message;
    assert!(message.contains("ImageShare share"), "{message}");
    // Settled: the image stays shared, and nobody keeps patching it.
    let before = h.admin_get("requests").await["PATCH /image/v2/images/{image_id}"]
        .as_u64()
        .unwrap_or(0);
    h.patch::<VolumeImage>(
        "golden",
        json!({"metadata": {"annotations": {"example.com/look": "again"}}}),
    )
    .await;
    h.wait_condition::<VolumeImage>("golden", "Stalled", "True", Some("VisibilityConflict"))
        .await;
    let after = h.admin_get("requests").await["PATCH /image/v2/images/{image_id}"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(before, after, "no visibility flip-flop");
    assert_eq!(
        h.read_image(&image).await.expect("the image").visibility,
        "shared"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn members_move_with_the_image_they_share() {
    let h = Harness::new("safety-move").await;
    let old = shared_image(&h, "golden").await;
    let new = shared_image(&h, "golden-2").await;
    h.create::<VolumeImage>(json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "VolumeImage",
        "metadata": {"name": "golden"},
        "spec": {
            "cloudCredentialsRef": {"secretName": support::harness::SECRET, "cloudName": "demo"},
            "managementPolicy": "unmanaged",
            "import": {"id": old},
        },
    }))
    .await;
    h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
        .await;
    h.create::<ImageShare>(share_manifest(
        "share",
        json!({"imageRef": {"name": "golden"}, "members": [{"tenantID": PARTNER_TENANT}]}),
    ))
    .await;
    h.wait_condition::<ImageShare>("share", "Ready", "True", Some("Shared"))
        .await;
    assert_eq!(h.read_members(&old).await.len(), 1);

    // The VolumeImage now stands for another image.
    h.api::<VolumeImage>()
        .patch_status(
            "golden",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"id": new}})),
        )
        .await
        .expect("the status is changed");
    support::wait_for(
        support::harness::DEADLINE,
        "the member to move to the new image",
        || async {
            let moved =
                h.read_members(&old).await.is_empty() && h.read_members(&new).await.len() == 1;
            moved.then_some(())
        },
    )
    .await;
    let share: ImageShare = h
        .wait_condition("share", "Ready", "True", Some("Shared"))
        .await;
    assert_eq!(share.status.and_then(|s| s.id), Some(new));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_upload_answer_adopts_its_own_image_never_another_of_the_same_name() {
    let mut config = support::harness::fast_config();
    config.transitions.image_queued = std::time::Duration::from_secs(2);
    config.transitions.image_saving = std::time::Duration::from_secs(2);
    let mut h = Harness::with_emulator("safety-upload", config).await;
    h.start_operator().await;
    let mut volumes = Vec::new();
    for name in ["vol-a", "vol-b"] {
        let ready = h.ready_volume(name).await;
        volumes.push(ready.status.and_then(|s| s.id).expect("an id"));
    }
    // b's image is made first and is still untagged while a's upload answer is lost.
    h.create::<VolumeImage>(image_manifest(
        "b",
        "demo",
        json!({"resource": {"name": "golden", "volumeRef": {"name": "vol-b"}, "diskFormat": "raw"}}),
    ))
    .await;
    let api = h.api::<VolumeImage>();
    support::wait_for(
        support::harness::DEADLINE,
        "b's upload to be accepted",
        || {
            let api = api.clone();
            async move { api.get("b").await.ok()?.status?.id }
        },
    )
    .await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": format!("/block-storage/*/volumes/{}/action", volumes[0]),
               "status": 500, "after_action": true}),
    )
    .await;
    h.create::<VolumeImage>(image_manifest(
        "a",
        "demo",
        json!({"resource": {"name": "golden", "volumeRef": {"name": "vol-a"}, "diskFormat": "raw"}}),
    ))
    .await;
    let a: VolumeImage = h.wait_condition("a", "Ready", "True", None).await;
    let b: VolumeImage = h.wait_condition("b", "Ready", "True", None).await;
    let (a_id, b_id) = (
        a.status.clone().and_then(|s| s.id).expect("a's image"),
        b.status.clone().and_then(|s| s.id).expect("b's image"),
    );
    assert_ne!(a_id, b_id, "each VolumeImage has its own image");
    let images = h.admin_get("images").await;
    let images = images["images"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        images.len(),
        2,
        "exactly one image per object, none leaked: {images:?}"
    );
    for (object, id) in [(&a, &a_id), (&b, &b_id)] {
        let image = images
            .iter()
            .find(|i| i["id"] == id.as_str())
            .expect("the image");
        let mark = format!(
            "cloudvol-uid:{}",
            object.metadata.uid.as_deref().unwrap_or("")
        );
        assert!(
            image["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == mark.as_str())),
            "{id} carries its own object's mark: {image}"
        );
        assert_eq!(
            image["name"], "golden",
            "renamed to the spec's name once adopted"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_name_import_whose_volume_vanished_never_deletes_a_namesake() {
    let h = Harness::new("safety-namesake").await;
    let original = h.create_cloud_volume("shared-name", 1).await;
    h.create::<Volume>(volume_manifest(
        "imported",
        "demo",
        json!({"import": {"filter": {"name": "shared-name"}}, "resource": {"size": 1}}),
    ))
    .await;
    let found: Volume = h.wait_condition("imported", "Ready", "True", None).await;
    assert_eq!(found.status.and_then(|s| s.id), Some(original.clone()));
    // The imported volume goes away outside cloudvol; someone else makes one with that name.
    h.delete_cloud_volume(&original).await;
    let namesake = h.create_cloud_volume("shared-name", 1).await;
    // A managed import does not silently adopt the namesake: it reports its volume gone.
    h.patch::<Volume>(
        "imported",
        json!({"metadata": {"annotations": {"example.com/look": "now"}}}),
    )
    .await;
    h.wait_condition::<Volume>("imported", "Stalled", "True", Some("VolumeNotFound"))
        .await;
    // The object is deleted now: the namesake, which cloudvol was never told to import, stays.
    h.delete::<Volume>("imported").await;
    h.wait_gone::<Volume>("imported").await;
    assert!(
        h.cloud_volume(&namesake).await.is_some(),
        "a deletion never turns to another volume that bears the imported name"
    );
}
