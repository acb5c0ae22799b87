//! Volumes made from images (`imageRef`): which images Cinder finds, its
//! refusals, and `creating` -> `downloading` -> `available` with the
//! image's metadata.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const IMAGE_NOT_FOUND: &str = "Invalid image identifier or unable to access requested image.";
const GIB: u64 = 1 << 30;

/// An active image of `token`'s tenant holding `data`, with `extra`
/// attributes (custom properties included).
async fn image_with_data(env: &Env, token: &str, extra: Value, data: &[u8]) -> String {
    let id = env.create_image(token, extra).await;
    env.upload_image_data(token, &id, data.to_vec()).await;
    env.wait_image(token, &id, "active").await;
    id
}

async fn create(env: &Env, token: &str, tenant: &str, volume: Value) -> Answer {
    env.post(token, &env.volumes(tenant), json!({ "volume": volume }))
        .await
}

/// Creates a volume from `volume` (an `imageRef` in it) and waits until it is
/// `available`; returns it.
async fn made_from(env: &Env, token: &str, tenant: &str, volume: Value) -> Value {
    let id = env.create_volume(token, tenant, volume).await;
    env.wait_volume(token, tenant, &id, "available").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_from_an_image_is_creating_then_downloading_then_available_and_bootable() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    // Downloading long enough to be seen, then done within the test's deadline.
    config.transitions.volume_download = Duration::from_secs(2);
    let env = start_with(config).await;
    let token = env.demo().await;
    let data = b"bootable image bytes".to_vec();
    let image = image_with_data(
        &env,
        &token,
        json!({"name": "golden", "os_distro": "ubuntu", "min_ram": 512}),
        &data,
    )
    .await;

    let a = create(
        &env,
        &token,
        DEMO,
        json!({"size": 1, "imageRef": image, "name": "from-golden"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let v = &a.body["volume"];
    assert_eq!(v["status"], "creating");
    assert_eq!(v["bootable"], "false");
    assert!(v.get("volume_image_metadata").is_none(), "{v}");
    let id = v["id"].as_str().expect("id").to_string();

    let downloading = env.volume(&token, DEMO, &id).await;
    let d = &downloading.body["volume"];
    assert_eq!(d["status"], "downloading", "{d}");
    assert_eq!(d["bootable"], "false", "{d}");
    assert!(d.get("volume_image_metadata").is_none(), "{d}");

    let v = env.wait_volume(&token, DEMO, &id, "available").await;
    assert_eq!(v["bootable"], "true");
    let img = env
        .get(&token, &format!("/image/v2/images/{image}"))
        .await
        .body;
    let expected: BTreeMap<String, String> = [
        ("signature_verified", "False".to_string()),
        ("image_id", image.clone()),
        ("image_name", "golden".to_string()),
        (
            "checksum",
            img["checksum"].as_str().expect("checksum").to_string(),
        ),
        ("container_format", "bare".to_string()),
        ("disk_format", "qcow2".to_string()),
        ("min_disk", "0".to_string()),
        ("min_ram", "512".to_string()),
        ("size", data.len().to_string()),
        ("os_type", "linux".to_string()),
        ("os_distro", "ubuntu".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(v["volume_image_metadata"], json!(expected));
    // The detail list shows it; a volume made from no image has no such key.
    let plain = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    let list = env
        .get(&token, &format!("{}/detail", env.volumes(DEMO)))
        .await;
    for listed in list.body["volumes"].as_array().expect("volumes") {
        if listed["id"] == json!(id) {
            assert_eq!(listed["volume_image_metadata"], json!(expected));
        } else if listed["id"] == json!(plain) {
            assert!(listed.get("volume_image_metadata").is_none(), "{listed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_found_by_id_by_name_or_by_url_and_may_choose_the_volume_type() {
    let env = start().await;
    let token = env.demo().await;
    let image = image_with_data(
        &env,
        &token,
        json!({"name": "typed", "cinder_img_volume_type": "General SSD"}),
        b"x",
    )
    .await;
    for volume in [
        json!({"size": 1, "imageRef": image}),
        json!({"size": 1, "imageRef": "typed"}),
        json!({"size": 1, "imageRef": format!("http://glance.example/v2/images/{image}")}),
        json!({"size": 1, "image_id": image}),
    ] {
        let v = made_from(&env, &token, DEMO, volume.clone()).await;
        assert_eq!(
            v["volume_image_metadata"]["image_id"],
            json!(image),
            "{volume}"
        );
        // The image's cinder_img_volume_type, unless the request names a type.
        assert_eq!(v["volume_type"], "General SSD", "{volume}");
    }
    let v = made_from(
        &env,
        &token,
        DEMO,
        json!({"size": 1, "imageRef": image, "volume_type": "General HDD"}),
    )
    .await;
    assert_eq!(v["volume_type"], "General HDD");

    // Two visible images of that name: Cinder will not choose.
    image_with_data(&env, &token, json!({"name": "typed"}), b"y").await;
    let a = create(&env, &token, DEMO, json!({"size": 1, "imageRef": "typed"})).await;
    let message = assert_cinder_fault(&a, 409, "conflictingRequest");
    assert_eq!(
        message,
        "Multiple matches found for 'typed', use an ID to be more specific."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_images_and_accepted_shares_are_sources_by_id_and_by_name() {
    let env = start().await;
    let demo = env.demo().await;
    let partner = env.partner().await;
    let public = env
        .admin_image(
            json!({"owner": DEMO, "name": "Ubuntu 24.04", "visibility": "public",
            "size": 1000, "min_disk": 1}),
        )
        .await;
    for image_ref in [json!(public), json!("Ubuntu 24.04")] {
        let v = made_from(
            &env,
            &partner,
            PARTNER,
            json!({"size": 1, "imageRef": image_ref}),
        )
        .await;
        assert_eq!(v["volume_image_metadata"]["image_id"], json!(public));
        assert_eq!(v["volume_image_metadata"]["min_disk"], "1");
    }

    let shared = image_with_data(
        &env,
        &demo,
        json!({"name": "shared-golden", "visibility": "shared"}),
        b"s",
    )
    .await;
    let members = format!("/image/v2/images/{shared}/members");
    let a = env.post(&demo, &members, json!({"member": PARTNER})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = env
        .put(
            &partner,
            &format!("{members}/{PARTNER}"),
            json!({"status": "accepted"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for image_ref in [json!(shared), json!("shared-golden")] {
        let v = made_from(
            &env,
            &partner,
            PARTNER,
            json!({"size": 1, "imageRef": image_ref}),
        )
        .await;
        assert_eq!(v["volume_image_metadata"]["image_id"], json!(shared));
        assert_eq!(v["os-vol-tenant-attr:tenant_id"], PARTNER);
    }
}

/// As upstream (tests/differential.rs proves it against Cinder 29 and
/// Glance 33): Cinder looks an ID up with Glance's show, which a member may
/// use whatever its member status, and a name with Glance's list, which
/// holds a shared image only once the member accepted it.
#[tokio::test(flavor = "multi_thread")]
async fn pending_and_rejected_shares_are_refused_by_name_but_found_by_id() {
    let env = start().await;
    let demo = env.demo().await;
    let partner = env.partner().await;
    let shared = image_with_data(
        &env,
        &demo,
        json!({"name": "not-yet", "visibility": "shared"}),
        b"s",
    )
    .await;
    let members = format!("/image/v2/images/{shared}/members");
    let a = env.post(&demo, &members, json!({"member": PARTNER})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for status in ["pending", "rejected"] {
        if status == "rejected" {
            let a = env
                .put(
                    &partner,
                    &format!("{members}/{PARTNER}"),
                    json!({"status": "rejected"}),
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        }
        let a = create(
            &env,
            &partner,
            PARTNER,
            json!({"size": 1, "imageRef": "not-yet"}),
        )
        .await;
        let message = assert_cinder_fault(&a, 400, "badRequest");
        assert_eq!(message, IMAGE_NOT_FOUND, "by name, {status}");
        let v = made_from(
            &env,
            &partner,
            PARTNER,
            json!({"size": 1, "imageRef": shared}),
        )
        .await;
        assert_eq!(
            v["volume_image_metadata"]["image_id"],
            json!(shared),
            "by id, {status}"
        );
    }
    // No longer a member: not even by ID.
    let a = env.delete(&demo, &format!("{members}/{PARTNER}")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = create(
        &env,
        &partner,
        PARTNER,
        json!({"size": 1, "imageRef": shared}),
    )
    .await;
    assert_eq!(assert_cinder_fault(&a, 400, "badRequest"), IMAGE_NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_invisible_images_are_refused_as_cinder_refuses_them() {
    let env = start().await;
    let demo = env.demo().await;
    let partner = env.partner().await;
    let private = image_with_data(&env, &demo, json!({"name": "mine"}), b"p").await;
    for (token, tenant, image_ref) in [
        (&demo, DEMO, json!("00000000-0000-4000-8000-000000000000")),
        (&demo, DEMO, json!("no-such-image")),
        (&demo, DEMO, json!("")),
        (&partner, PARTNER, json!(private)),
        (&partner, PARTNER, json!("mine")),
    ] {
        let a = create(
            &env,
            token,
            tenant,
            json!({"size": 1, "imageRef": image_ref}),
        )
        .await;
        let message = assert_cinder_fault(&a, 400, "badRequest");
        assert_eq!(message, IMAGE_NOT_FOUND, "{image_ref}");
    }
    let a = create(&env, &demo, DEMO, json!({"size": 1, "imageRef": 12})).await;
    let message = assert_cinder_fault(&a, 400, "badRequest");
    assert_eq!(
        message,
        "Invalid input for field/attribute imageRef. Value: 12. 12 is not of type 'string', 'null'"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_is_not_active_is_refused() {
    let env = start().await;
    let token = env.demo().await;
    let queued = env.create_image(&token, json!({"name": "queued"})).await;
    let killed = image_with_data(&env, &token, json!({"name": "killed"}), b"k").await;
    let a = env
        .admin(
            Method::POST,
            &format!("/_admin/images/{killed}/state"),
            Some(json!({"status": "deactivated"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    for id in [&queued, &killed] {
        let a = create(&env, &token, DEMO, json!({"size": 1, "imageRef": id})).await;
        let message = assert_cinder_fault(&a, 400, "badRequest");
        assert_eq!(
            message,
            format!("Invalid input received: Image {id} is not active.")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_smaller_than_its_image_is_refused_with_both_sizes() {
    let env = start().await;
    let token = env.demo().await;
    // Data one byte over 5 GiB (6 GiB rounded up), min_disk 8, virtual size 10 GiB.
    let image = env
        .admin_image(json!({"owner": DEMO, "name": "big", "size": 5 * GIB + 1,
            "virtual_size": 10 * GIB, "min_disk": 8}))
        .await;
    for (size, expected) in [
        (
            5,
            "Invalid input received: Size of specified image 6GB is larger than volume size 5GB."
                .to_string(),
        ),
        (
            7,
            "Invalid input received: Volume size 7GB cannot be smaller than the image minDisk size 8GB."
                .to_string(),
        ),
        (
            9,
            format!(
                "Image {image} is unacceptable: Image virtual size is 10GB and doesn't fit in a volume of size 9GB."
            ),
        ),
    ] {
        let a = create(&env, &token, DEMO, json!({"size": size, "imageRef": image})).await;
        let message = assert_cinder_fault(&a, 400, "badRequest");
        assert_eq!(message, expected, "size {size}");
    }
    let v = made_from(&env, &token, DEMO, json!({"size": 10, "imageRef": image})).await;
    assert_eq!(v["size"], 10);
    assert_eq!(
        v["volume_image_metadata"]["size"],
        (5 * GIB + 1).to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_size_is_required_and_a_volume_has_one_source_at_most() {
    let env = start().await;
    let token = env.demo().await;
    let image = image_with_data(&env, &token, json!({}), b"i").await;
    let a = create(&env, &token, DEMO, json!({"imageRef": image})).await;
    let message = assert_cinder_fault(&a, 400, "badRequest");
    assert_eq!(
        message,
        "The server could not comply with the request since it is either malformed or otherwise incorrect."
    );

    let source = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.wait_volume(&token, DEMO, &source, "available").await;
    let snap = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{source}/snapshots"),
            Some(json!({})),
        )
        .await;
    let snap = snap.body["snapshot"]["id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    for volume in [
        json!({"size": 1, "imageRef": image, "source_volid": source}),
        json!({"size": 1, "imageRef": image, "snapshot_id": snap}),
        json!({"size": 1, "source_volid": source, "snapshot_id": snap}),
        json!({"imageRef": image, "source_volid": source}),
    ] {
        let a = create(&env, &token, DEMO, volume.clone()).await;
        let message = assert_cinder_fault(&a, 400, "badRequest");
        assert_eq!(
            message,
            "Invalid input received: May specify only one of backup, imageRef, snapshot, source volume",
            "{volume}"
        );
    }
    // The sources are looked up first.
    let a = create(
        &env,
        &token,
        DEMO,
        json!({"size": 1, "imageRef": image, "snapshot_id": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert_cinder_fault(&a, 404, "itemNotFound");
}
