//! Volumes made from images, and retype, end to end: a real kube-apiserver, the emulator and
//! the operator in-process. The golden-image loop across tenants: the `demo` tenant makes an
//! image from a volume and shares it; the `partner` tenant makes volumes from it with its own
//! credentials.

mod support;

use std::time::Duration;

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{
    DEADLINE, Harness, PARTNER_TENANT, SECRET, condition_matches, fast_config, volume_manifest,
};
use support::wait_for;

fn manifest(kind: &str, name: &str, cloud: &str, spec: Value) -> Value {
    let mut full = json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"cloudCredentialsRef": {"secretName": SECRET, "cloudName": cloud}},
    });
    if let (Some(target), Some(extra)) = (full["spec"].as_object_mut(), spec.as_object()) {
        target.extend(extra.clone());
    }
    full
}

fn id_of<K: serde::Serialize>(object: &K) -> String {
    let value = serde_json::to_value(object).expect("serializable");
    value["status"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("status.id is set: {}", value["status"]))
        .to_string()
}

/// The message of the condition that is True.
fn message_of<K: serde::Serialize>(object: &K) -> String {
    let value = serde_json::to_value(object).expect("serializable");
    value["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["status"] == "True"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A Ready Volume `data` in the demo tenant and a Ready VolumeImage `golden` made from it
/// (`extra` is merged into its resource); returns the image ID.
async fn golden_image(h: &Harness, extra: Value) -> String {
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let mut resource =
        json!({"name": "golden", "volumeRef": {"name": "data"}, "diskFormat": "qcow2"});
    if let (Some(target), Some(extra)) = (resource.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    h.create::<VolumeImage>(manifest(
        "VolumeImage",
        "golden",
        "demo",
        json!({ "resource": resource }),
    ))
    .await;
    id_of(
        &h.wait_condition::<VolumeImage>("golden", "Ready", "True", Some("Active"))
            .await,
    )
}

/// Cloud volumes (any tenant) that carry the object's UID mark.
async fn marked(h: &Harness, volume: &Volume) -> Vec<Value> {
    let uid = volume.uid().expect("a uid");
    h.cloud_volumes()
        .await
        .into_iter()
        .filter(|v| v["metadata"]["cloudvol.dev/uid"] == uid.as_str())
        .collect()
}

/// Requests the emulator counted for `route` (the demo clouds use NHN's v2 paths).
async fn count(h: &Harness, route: &str) -> u64 {
    h.request_counts()
        .await
        .get(route)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

const CREATES: &str = "POST /block-storage/v2/{tenant}/volumes";
const ACTIONS: &str = "POST /block-storage/v2/{tenant}/volumes/{volume_id}/action";

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_from_a_volume_image_waits_for_it_then_downloads_and_is_ready() {
    let mut config = fast_config();
    config.transitions.volume_download = Duration::from_secs(2);
    let mut h = Harness::with_emulator("from-ref", config).await;
    h.start_operator().await;
    // The Volume first: it waits for the VolumeImage, which waits for its own source.
    h.create::<Volume>(volume_manifest(
        "copy",
        "demo",
        json!({"resource": {"size": 2, "image": {"ref": {"name": "golden"}}}}),
    ))
    .await;
    let waiting: Volume = h
        .wait_condition("copy", "Reconciling", "True", Some("WaitingForImage"))
        .await;
    assert!(
        message_of(&waiting).contains("golden"),
        "{}",
        message_of(&waiting)
    );
    assert!(
        h.cloud_volumes().await.is_empty(),
        "nothing made while waiting"
    );

    let image_id = golden_image(&h, json!({})).await;
    let downloading: Volume = h
        .wait_condition("copy", "Reconciling", "True", Some("Downloading"))
        .await;
    let status = downloading.status.clone().expect("a status");
    assert_eq!(status.source_image_id.as_deref(), Some(image_id.as_str()));
    let ready: Volume = h
        .wait_condition("copy", "Ready", "True", Some("Available"))
        .await;
    let status = ready.status.clone().expect("a status");
    let observed = status.resource.expect("status.resource");
    assert_eq!(observed.source_image_id.as_deref(), Some(image_id.as_str()));
    assert_eq!(observed.bootable, Some(true));
    assert_eq!(observed.size, Some(2));
    let cloud = h.cloud_volume(&id_of(&ready)).await.expect("the volume");
    assert_eq!(
        cloud["volume_image_metadata"]["image_id"],
        image_id.as_str()
    );
    assert_eq!(
        cloud["metadata"]["cloudvol.dev/uid"],
        ready.uid().unwrap().as_str()
    );
    h.wait_event("copy", "Created").await;

    // Made, the volume no longer needs the image: the image goes at once.
    h.delete::<VolumeImage>("golden").await;
    h.wait_gone::<VolumeImage>("golden").await;
    h.wait_condition::<Volume>("copy", "Ready", "True", Some("Available"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_volume_from_a_shared_accepted_image_id_and_an_unaccepted_share_refused() {
    let h = Harness::new("from-shared").await;
    let image_id = golden_image(&h, json!({"visibility": "shared"})).await;
    // Shared with the partner, who has not accepted yet: no member credentials.
    h.create::<ImageShare>(manifest(
        "ImageShare",
        "to-partner",
        "demo",
        json!({"imageRef": {"name": "golden"}, "members": [{"tenantID": PARTNER_TENANT}]}),
    ))
    .await;
    h.wait_condition::<ImageShare>("to-partner", "Ready", "True", Some("Shared"))
        .await;

    let partner: Volume = h
        .create(volume_manifest(
            "partner-copy",
            "partner",
            json!({"resource": {"size": 1, "image": {"id": image_id}}}),
        ))
        .await;
    // The cloud would make it (Glance lets a pending member see the image); cloudvol waits
    // for the partner's consent.
    let refused: Volume = h
        .wait_condition("partner-copy", "Stalled", "True", Some("ImageNotAvailable"))
        .await;
    let message = message_of(&refused);
    assert!(
        message.contains("pending") && message.contains(PARTNER_TENANT),
        "{message}"
    );
    assert!(marked(&h, &partner).await.is_empty(), "nothing was made");

    // The partner accepts (cloudvol, with the partner's credentials): the volume is made in
    // the partner's tenant.
    h.patch::<ImageShare>(
        "to-partner",
        json!({"spec": {"members": [{"tenantID": PARTNER_TENANT,
            "memberCredentialsRef": {"secretName": SECRET, "cloudName": "partner"}}]}}),
    )
    .await;
    let ready: Volume = h
        .wait_condition("partner-copy", "Ready", "True", Some("Available"))
        .await;
    let cloud = h.cloud_volume(&id_of(&ready)).await.expect("the volume");
    assert_eq!(cloud["os-vol-tenant-attr:tenant_id"], PARTNER_TENANT);
    assert_eq!(
        cloud["volume_image_metadata"]["image_id"],
        image_id.as_str()
    );
    assert_eq!(marked(&h, &partner).await.len(), 1);

    // An image the partner cannot see at all: the demo tenant's private one.
    h.create::<VolumeImage>(manifest(
        "VolumeImage",
        "private",
        "demo",
        json!({"resource": {"name": "private", "volumeRef": {"name": "data"}}}),
    ))
    .await;
    let private: VolumeImage = h
        .wait_condition("private", "Ready", "True", Some("Active"))
        .await;
    let private_id = id_of(&private);
    h.create::<Volume>(volume_manifest(
        "invisible",
        "partner",
        json!({"resource": {"size": 1, "image": {"id": private_id}}}),
    ))
    .await;
    let refused: Volume = h
        .wait_condition("invisible", "Stalled", "True", Some("ImageNotAvailable"))
        .await;
    let message = message_of(&refused);
    assert!(
        message.contains(&private_id) && message.contains("not visible"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_smaller_than_the_image_needs_is_refused_with_both_numbers() {
    let h = Harness::new("from-small").await;
    // minDisk is set through the image API after the upload, like the other fields.
    let image_id = golden_image(&h, json!({"minDisk": 3, "minRam": 512})).await;
    let image: VolumeImage = h.api().get("golden").await.unwrap();
    let observed = image.status.unwrap().resource.unwrap();
    assert_eq!((observed.min_disk, observed.min_ram), (Some(3), Some(512)));
    let admin = h.admin_get("images").await;
    let cloud = admin["images"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == image_id.as_str()))
        .cloned()
        .expect("the image");
    assert_eq!(
        (cloud["min_disk"].as_u64(), cloud["min_ram"].as_u64()),
        (Some(3), Some(512))
    );

    let small: Volume = h
        .create(volume_manifest(
            "small",
            "demo",
            json!({"resource": {"size": 2, "image": {"ref": {"name": "golden"}}}}),
        ))
        .await;
    let refused: Volume = h
        .wait_condition("small", "Stalled", "True", Some("VolumeTooSmall"))
        .await;
    let message = message_of(&refused);
    assert!(
        message.contains("2 GiB") && message.contains("at least 3 GiB"),
        "{message}"
    );
    assert!(
        marked(&h, &small).await.is_empty(),
        "refused before the create"
    );
    // Size may grow: the volume is made then.
    h.patch::<Volume>("small", json!({"spec": {"resource": {"size": 3}}}))
        .await;
    let ready: Volume = h.wait_condition("small", "Ready", "True", None).await;
    assert_eq!(ready.status.unwrap().resource.unwrap().size, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_image_waits_for_a_volume_still_downloading_it() {
    let mut config = fast_config();
    config.transitions.volume_download = Duration::from_secs(4);
    let mut h = Harness::with_emulator("from-delete", config).await;
    h.start_operator().await;
    let image_id = golden_image(&h, json!({})).await;
    h.create::<Volume>(volume_manifest(
        "copy",
        "demo",
        json!({"resource": {"size": 1, "image": {"ref": {"name": "golden"}}}}),
    ))
    .await;
    let downloading: Volume = h
        .wait_condition("copy", "Reconciling", "True", Some("Downloading"))
        .await;
    let volume_id = id_of(&downloading);

    h.delete::<VolumeImage>("golden").await;
    let held: VolumeImage = h
        .wait_condition("golden", "Reconciling", "True", Some("ImageInUse"))
        .await;
    let message = message_of(&held);
    assert!(
        message.contains("Volume copy") && message.contains(&image_id),
        "{message}"
    );
    let admin = h.admin_get("images").await;
    assert!(
        admin["images"]
            .as_array()
            .is_some_and(|all| all.iter().any(|i| i["id"] == image_id.as_str())),
        "the image stays while the volume downloads it"
    );
    h.wait_event("golden", "ImageInUse").await;

    // Made: the image goes by itself, and the volume is fine.
    h.wait_gone::<VolumeImage>("golden").await;
    let cloud = h.cloud_volume(&volume_id).await.expect("the volume");
    assert_eq!(cloud["status"], "available");
    h.wait_condition::<Volume>("copy", "Ready", "True", Some("Available"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_from_an_image_is_adopted_once() {
    let mut h = Harness::with_emulator("from-lost", fast_config()).await;
    h.start_operator().await;
    let image_id = golden_image(&h, json!({})).await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/block-storage/*/volumes", "drop_connection": true,
               "after_action": true, "count": 1}),
    )
    .await;
    let before = count(&h, CREATES).await;
    let volume: Volume = h
        .create(volume_manifest(
            "copy",
            "demo",
            json!({"resource": {"size": 1, "image": {"id": image_id}}}),
        ))
        .await;
    wait_for(
        DEADLINE,
        "the dropped create to reach the cloud",
        || async { (marked(&h, &volume).await.len() == 1).then_some(()) },
    )
    .await;
    // The operator dies before it learns anything more; a new one starts.
    h.kill_operator().await;
    h.start_operator().await;
    let ready: Volume = h
        .wait_condition("copy", "Ready", "True", Some("Available"))
        .await;
    let all = marked(&h, &volume).await;
    assert_eq!(all.len(), 1, "exactly one cloud volume: {all:?}");
    assert_eq!(all[0]["id"], id_of(&ready).as_str());
    assert_eq!(
        all[0]["volume_image_metadata"]["image_id"],
        image_id.as_str()
    );
    assert_eq!(count(&h, CREATES).await - before, 1, "one create request");
    assert_eq!(
        ready.status.unwrap().source_image_id.as_deref(),
        Some(image_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retype_in_place_given_up_with_never_and_done_with_on_demand() {
    let h = Harness::new("retype").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1, "volumeType": "General HDD"}}),
    ))
    .await;
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    let id = id_of(&ready);

    // The same back end: changed in place, whatever the policy.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"resource": {"volumeType": "Archive HDD"}}}),
    )
    .await;
    let retyped = h
        .wait_object("data", "Ready with type Archive HDD", |v: &Volume| {
            condition_matches(&serde_json::to_value(v).unwrap(), "Ready", "True", None)
                && v.status
                    .as_ref()
                    .and_then(|s| s.resource.as_ref())
                    .is_some_and(|r| r.volume_type.as_deref() == Some("Archive HDD"))
        })
        .await;
    assert_eq!(retyped.status.unwrap().retype, None, "done: no record left");
    h.wait_event("data", "Retyped").await;
    let sent = count(&h, ACTIONS).await;
    assert_eq!(sent, 1);

    // Another back end with `never`: the cloud accepts, then gives it up, as Cinder 29 does.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"resource": {"volumeType": "General SSD"}}}),
    )
    .await;
    let given_up: Volume = h
        .wait_condition("data", "Stalled", "True", Some("RetypeNotApplied"))
        .await;
    let message = message_of(&given_up);
    assert!(
        message.contains("then gave it up")
            && message.contains("\"Archive HDD\"")
            && message.contains("migrationPolicy: on-demand"),
        "{message}"
    );
    let record = given_up.status.clone().unwrap().retype.expect("the record");
    assert!(record.accepted && record.refusal.is_none(), "{record:?}");
    assert_eq!(
        h.cloud_volume(&id).await.unwrap()["volume_type"],
        "Archive HDD"
    );
    // Not asked again and again: one more request only, however many reconciles pass.
    assert_eq!(count(&h, ACTIONS).await, sent + 1);
    let touched = format!("{:?}", std::time::SystemTime::now());
    h.patch::<Volume>(
        "data",
        json!({"metadata": {"annotations": {"example.com/look": touched}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&h, ACTIONS).await,
        sent + 1,
        "the given-up retype is not repeated"
    );
    h.wait_condition::<Volume>("data", "Stalled", "True", Some("RetypeNotApplied"))
        .await;

    // `on-demand` lets the cloud move the volume.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"resource": {"migrationPolicy": "on-demand"}}}),
    )
    .await;
    h.wait_object("data", "Ready with type General SSD", |v: &Volume| {
        condition_matches(&serde_json::to_value(v).unwrap(), "Ready", "True", None)
            && v.status
                .as_ref()
                .and_then(|s| s.resource.as_ref())
                .is_some_and(|r| r.volume_type.as_deref() == Some("General SSD"))
    })
    .await;
    assert_eq!(
        h.cloud_volume(&id).await.unwrap()["volume_type"],
        "General SSD"
    );
    assert_eq!(count(&h, ACTIONS).await, sent + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retype_the_cloud_refuses_stalls_with_its_words_and_is_not_resent() {
    let h = Harness::new("retype-400").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/block-storage/*/action", "status": 400, "count": 1}),
    )
    .await;
    h.patch::<Volume>(
        "data",
        json!({"spec": {"resource": {"volumeType": "Archive HDD"}}}),
    )
    .await;
    let refused: Volume = h
        .wait_condition("data", "Stalled", "True", Some("RetypeRefused"))
        .await;
    let message = message_of(&refused);
    assert!(
        message.contains("the cloud refused to change volume"),
        "{message}"
    );
    let sent = count(&h, ACTIONS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&h, ACTIONS).await,
        sent,
        "a refused retype is not resent"
    );
    // The spec says what to do next: back to the volume's type is no change at all.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"resource": {"volumeType": "General HDD"}}}),
    )
    .await;
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    assert_eq!(ready.status.unwrap().retype, None);
}
