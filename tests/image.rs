//! The VolumeImage controller end to end: images made from volumes, crash safety, the
//! protected-image deletion guard, imports (SCP too), against the real API server and the
//! emulator.

mod support;

use std::time::Duration;

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{
    DEADLINE, DEMO_TENANT, Harness, SECRET, fast_config, image_manifest, volume_manifest,
};
use support::wait_for;

fn id_of<K: serde::Serialize>(object: &K) -> String {
    let value = serde_json::to_value(object).expect("serializable");
    value["status"]["id"]
        .as_str()
        .expect("status.id is set")
        .to_string()
}

async fn cloud_images(h: &Harness) -> Vec<Value> {
    let all = h.admin_get("images").await;
    let list = all.get("images").cloned().unwrap_or(all);
    list.as_array().cloned().unwrap_or_default()
}

async fn cloud_image(h: &Harness, id: &str) -> Option<Value> {
    cloud_images(h).await.into_iter().find(|i| i["id"] == id)
}

/// A Ready volume named `data`; returns its cloud ID.
async fn ready_volume(h: &Harness) -> String {
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_made_from_a_volume_and_the_volume_shows_the_upload() {
    let mut config = fast_config();
    config.transitions.image_queued = Duration::from_secs(1);
    config.transitions.image_saving = Duration::from_secs(1);
    let mut h = Harness::with_emulator("img-upload", config).await;
    h.start_operator().await;
    let volume_id = ready_volume(&h).await;
    let object: VolumeImage = h
        .create(image_manifest(
            "golden",
            "demo",
            json!({"resource": {
                "name": "golden", "volumeRef": {"name": "data"}, "diskFormat": "qcow2",
                "protected": true, "tags": ["base"], "properties": {"os_type": "linux"}
            }}),
        ))
        .await;
    // While the cloud makes the image, the source volume says so.
    h.wait_condition::<VolumeImage>("golden", "Reconciling", "True", None)
        .await;
    h.wait_condition::<Volume>("data", "Reconciling", "True", Some("Uploading"))
        .await;
    let ready: VolumeImage = h
        .wait_condition("golden", "Ready", "True", Some("Active"))
        .await;
    let status = ready.status.clone().expect("a status");
    assert_eq!(status.source_volume_id.as_deref(), Some(volume_id.as_str()));
    let observed = status.resource.expect("status.resource");
    assert_eq!(observed.status, "active");
    assert_eq!(observed.protected, Some(true));
    assert_eq!(observed.disk_format.as_deref(), Some("qcow2"));
    let image = cloud_image(&h, &id_of(&ready))
        .await
        .expect("the image exists");
    let tags: Vec<&str> = image["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mark = format!("cloudvol-uid:{}", object.uid().unwrap());
    assert!(
        tags.contains(&"base") && tags.contains(&mark.as_str()),
        "{tags:?}"
    );
    assert_eq!(image["os_type"], "linux");
    assert_eq!(image["protected"], true);
    assert_eq!(image["owner"], DEMO_TENANT);
    // And the volume is back to normal.
    h.wait_condition::<Volume>("data", "Ready", "True", Some("Available"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_volume_needs_force() {
    let h = Harness::new("img-force").await;
    let volume_id = ready_volume(&h).await;
    h.admin_post(
        &format!("volumes/{volume_id}/attach"),
        json!({"server_id": "srv-1"}),
    )
    .await;
    wait_for(DEADLINE, "the volume to be in-use", || async {
        (h.cloud_volume(&volume_id).await?["status"] == "in-use").then_some(())
    })
    .await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeID": volume_id}}),
    ))
    .await;
    let refused: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("UploadRefused"))
        .await;
    let message = refused.status.unwrap().conditions[0].message.clone();
    assert!(
        message.contains("Invalid volume"),
        "the cloud's own words: {message}"
    );
    assert!(cloud_images(&h).await.is_empty());

    h.patch::<VolumeImage>("golden", json!({"spec": {"resource": {"force": true}}}))
        .await;
    h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
        .await;
    wait_for(DEADLINE, "the volume back in-use", || async {
        (h.cloud_volume(&volume_id).await?["status"] == "in-use").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_upload_answer_and_a_restart_make_exactly_one_image() {
    let mut h = Harness::with_emulator("img-lost", fast_config()).await;
    h.start_operator().await;
    let volume_id = ready_volume(&h).await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/block-storage/*/volumes/*/action", "drop_connection": true, "after_action": true, "count": 1}),
    )
    .await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeID": volume_id}}),
    ))
    .await;
    wait_for(DEADLINE, "the upload to reach the cloud", || async {
        (!cloud_images(&h).await.is_empty()).then_some(())
    })
    .await;
    h.kill_operator().await;
    h.start_operator().await;
    let ready: VolumeImage = h.wait_condition("golden", "Ready", "True", None).await;
    let images = cloud_images(&h).await;
    assert_eq!(images.len(), 1, "exactly one image: {images:?}");
    assert_eq!(images[0]["id"], id_of(&ready).as_str());
    let mark = format!("cloudvol-uid:{}", ready.uid().unwrap());
    assert!(
        images[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &mark),
        "the adopted image gets the mark"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_forced_to_killed_stalls() {
    let h = Harness::new("img-killed").await;
    let volume_id = ready_volume(&h).await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeID": volume_id}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await,
    );
    h.admin_post(&format!("images/{id}/state"), json!({"status": "killed"}))
        .await;
    // A change of the spec makes the operator look at once.
    h.patch::<VolumeImage>(
        "golden",
        json!({"metadata": {"annotations": {"example.com/look": "now"}}}),
    )
    .await;
    let stalled: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("Killed"))
        .await;
    assert!(stalled.status.unwrap().conditions[0].message.contains(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_image_is_never_deleted_until_the_spec_unprotects_it() {
    let h = Harness::new("img-protected").await;
    let volume_id = ready_volume(&h).await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeRef": {"name": "data"}, "protected": true}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await,
    );
    h.delete::<VolumeImage>("golden").await;
    let held: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("ImageProtected"))
        .await;
    let message = held.status.unwrap().conditions[0].message.clone();
    assert!(
        message.contains("spec.resource.protected: false"),
        "{message}"
    );
    let note = h.wait_event("golden", "ImageProtected").await;
    assert!(note.contains(&id));
    assert_eq!(
        cloud_image(&h, &id).await.expect("still there")["protected"],
        true
    );

    h.patch::<VolumeImage>(
        "golden",
        json!({"spec": {"resource": {"protected": false}}}),
    )
    .await;
    h.wait_gone::<VolumeImage>("golden").await;
    assert!(cloud_image(&h, &id).await.is_none(), "the image is deleted");
    // The source volume is untouched.
    assert_eq!(
        h.cloud_volume(&volume_id).await.expect("the volume stays")["status"],
        "available"
    );
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_reach_a_protected_image_by_unprotecting_then_protecting_again() {
    let h = Harness::new("img-change").await;
    let volume_id = ready_volume(&h).await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeID": volume_id, "protected": true, "tags": ["a"]}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await,
    );
    h.patch::<VolumeImage>(
        "golden",
        json!({"spec": {"resource": {"name": "golden-v2", "tags": ["b"], "visibility": "shared", "properties": {"os_distro": "ubuntu"}}}}),
    )
    .await;
    wait_for(
        DEADLINE,
        "the change in the cloud, protected again",
        || async {
            let image = cloud_image(&h, &id).await?;
            let tags = image["tags"].as_array()?;
            let done = image["name"] == "golden-v2"
                && image["visibility"] == "shared"
                && image["os_distro"] == "ubuntu"
                && image["protected"] == true
                && tags.iter().any(|t| t == "b")
                && !tags.iter().any(|t| t == "a");
            done.then_some(())
        },
    )
    .await;
    h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_leaves_the_image_and_deletion_never_touches_the_volume() {
    let h = Harness::new("img-orphan").await;
    let volume_id = ready_volume(&h).await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"deletionPolicy": "Orphan", "resource": {"name": "golden", "volumeID": volume_id}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await,
    );
    h.delete::<VolumeImage>("golden").await;
    h.wait_gone::<VolumeImage>("golden").await;
    assert!(cloud_image(&h, &id).await.is_some());
    assert!(h.cloud_volume(&volume_id).await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_image_waits_for_the_image_shares_that_reference_it() {
    let h = Harness::new("img-shared").await;
    let volume_id = ready_volume(&h).await;
    h.create::<VolumeImage>(image_manifest(
        "golden",
        "demo",
        json!({"resource": {"name": "golden", "volumeID": volume_id}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await,
    );
    h.create::<ImageShare>(json!({
        "apiVersion": "cloudvol.dev/v1alpha1", "kind": "ImageShare", "metadata": {"name": "to-partner"},
        "spec": {"cloudCredentialsRef": {"secretName": SECRET, "cloudName": "demo"}, "imageRef": {"name": "golden"},
                 "members": [{"tenantID": support::harness::PARTNER_TENANT}],
                 "deletionPolicy": "Orphan"}
    }))
    .await;
    h.delete::<VolumeImage>("golden").await;
    let held: VolumeImage = h
        .wait_condition("golden", "Stalled", "True", Some("ReferencedByImageShare"))
        .await;
    assert!(
        held.status.unwrap().conditions[0]
            .message
            .contains("to-partner")
    );
    assert!(cloud_image(&h, &id).await.is_some());
    h.delete::<ImageShare>("to-partner").await;
    h.wait_gone::<VolumeImage>("golden").await;
    assert!(cloud_image(&h, &id).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn images_are_imported_by_id_and_filter_and_observed_through_scp() {
    let h = Harness::new("img-import").await;
    let made = h
        .admin_post(
            "images",
            json!({"owner": DEMO_TENANT, "name": "base-os", "visibility": "private", "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
    let id = made["id"]
        .as_str()
        .or_else(|| made["image"]["id"].as_str())
        .expect("an image id")
        .to_string();
    h.create::<VolumeImage>(image_manifest(
        "by-id",
        "demo",
        json!({"import": {"id": id}}),
    ))
    .await;
    assert_eq!(
        id_of(
            &h.wait_condition::<VolumeImage>("by-id", "Ready", "True", None)
                .await
        ),
        id
    );
    h.create::<VolumeImage>(image_manifest(
        "by-name",
        "demo",
        json!({"managementPolicy": "unmanaged", "import": {"filter": {"name": "base-os"}}}),
    ))
    .await;
    assert_eq!(
        id_of(
            &h.wait_condition::<VolumeImage>("by-name", "Ready", "True", None)
                .await
        ),
        id
    );

    // Samsung Cloud Platform: observe-only, through the signed v1 show API.
    let scp = format!(
        "{}  scp:\n    auth_type: scp\n    auth:\n      access_key: demo-access-key\n      secret_key: demo-secret-key\n      account_id: demo-account\n    region_name: KR1\n    image_endpoint_override: {}/scp\n",
        h.clouds_yaml(),
        h.emulator.base_url()
    );
    h.put_secret(SECRET, &scp).await;
    h.admin_delete("requests").await;
    h.create::<VolumeImage>(image_manifest(
        "on-scp",
        "scp",
        json!({"managementPolicy": "unmanaged", "import": {"id": id}}),
    ))
    .await;
    let scp_image: VolumeImage = h.wait_condition("on-scp", "Ready", "True", None).await;
    assert_eq!(
        scp_image.status.unwrap().resource.unwrap().name.as_deref(),
        Some("base-os")
    );
    let counts = h.request_counts().await;
    assert!(
        counts
            .keys()
            .any(|route| route.starts_with("GET /scp/v1/images")),
        "{counts:?}"
    );
    assert_eq!(h.cloud_writes().await, Vec::<(String, u64)>::new());
    // Deleting the unmanaged objects leaves the image.
    h.delete::<VolumeImage>("on-scp").await;
    h.delete::<VolumeImage>("by-name").await;
    h.wait_gone::<VolumeImage>("on-scp").await;
    h.wait_gone::<VolumeImage>("by-name").await;
    assert!(cloud_image(&h, &id).await.is_some());
}
