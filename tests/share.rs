//! The ImageShare controller end to end: a real kube-apiserver, the emulator with its two demo
//! tenants, and the operator in-process.

mod support;

use cloudvol::api::{ImageShare, ImageShareStatus, ObservedMember, VolumeImage};
use cloudvol::cloud::model::ImageQuery;
use cloudvol::cloud::{CloudCredentials, CloudHttp, Connector, TransportConfig};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use support::harness::{
    DEADLINE, DEMO_TENANT, Harness, PARTNER_TENANT, SECRET, condition_matches, fast_config,
    share_manifest,
};
use support::wait_for;

/// A tenant that exists only as a member ID (Glance does not check member IDs).
const OTHER_TENANT: &str = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";
/// Someone else's member, added by hand.
const HAND_TENANT: &str = "f0e1d2c3b4a5469788796a5b4c3d2e1f";

/// The partner tenant as a member; with `accepts`, cloudvol accepts with its credentials.
fn partner(accepts: bool) -> Value {
    if accepts {
        json!({"tenantID": PARTNER_TENANT,
               "memberCredentialsRef": {"secretName": SECRET, "cloudName": "partner"}})
    } else {
        json!({"tenantID": PARTNER_TENANT})
    }
}

/// Puts an active image straight into the emulator's store.
async fn admin_image(h: &Harness, owner: &str, name: &str, visibility: &str) -> String {
    admin_image_from(
        h,
        json!({"owner": owner, "name": name, "visibility": visibility}),
    )
    .await
}

/// Puts an image with these fields (`POST /_admin/images`) into the emulator's store.
async fn admin_image_from(h: &Harness, fields: Value) -> String {
    let image = h.admin_post("images", fields).await;
    image["id"].as_str().expect("an image id").to_string()
}

/// A stand-in for the VolumeImage controller, which is not part of this branch: a VolumeImage
/// that imports image `id`, with its status (the ID, `Ready` for its generation) written through
/// the status subresource under another field manager, as that controller would write it. With
/// the real controller running, it adopts the same image and reports the same ID.
async fn stand_in_volume_image(h: &Harness, name: &str, id: &str) {
    let volume_image: VolumeImage = h
        .create(json!({
            "apiVersion": "cloudvol.dev/v1alpha1",
            "kind": "VolumeImage",
            "metadata": {"name": name},
            "spec": {
                "cloudCredentialsRef": {"secretName": SECRET, "cloudName": "demo"},
                "import": {"id": id},
            },
        }))
        .await;
    let generation = volume_image.metadata.generation;
    h.api::<VolumeImage>()
        .patch_status(
            name,
            &PatchParams::apply("volumeimage-stand-in").force(),
            &Patch::Apply(json!({
                "apiVersion": "cloudvol.dev/v1alpha1",
                "kind": "VolumeImage",
                "status": {
                    "observedGeneration": generation,
                    "id": id,
                    "conditions": [{
                        "type": "Ready", "status": "True", "reason": "Active",
                        "message": "the image is active", "observedGeneration": generation,
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }],
                },
            })),
        )
        .await
        .expect("the stand-in status is written");
}

/// The Stalled condition's message.
fn stalled_message(share: &ImageShare) -> String {
    share
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .expect("a Stalled condition")
        .message
        .clone()
}

/// The image as the emulator's admin API shows it, members included.
async fn cloud_image(h: &Harness, id: &str) -> Value {
    let all = h.admin_get("images").await;
    all["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["id"] == id).cloned())
        .unwrap_or_else(|| panic!("image {id} is in the emulator"))
}

/// The image's members as (tenant, status), sorted.
async fn cloud_members(h: &Harness, id: &str) -> Vec<(String, String)> {
    let image = cloud_image(h, id).await;
    let mut members: Vec<(String, String)> = image["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["member_id"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    members.sort();
    members
}

/// A token for a demo tenant, from the emulator's Keystone v2.0 (as NHN Cloud issues them).
async fn token(h: &Harness, tenant: &str, user: &str, password: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/identity/v2.0/tokens", h.emulator.base_url()))
        .json(&json!({"auth": {"tenantId": tenant,
                                "passwordCredentials": {"username": user, "password": password}}}))
        .send()
        .await
        .expect("the identity service answers")
        .json()
        .await
        .expect("a token answer");
    answer["access"]["token"]["id"]
        .as_str()
        .expect("a token id")
        .to_string()
}

/// One call to the image API with a token, as a tenant would make it by hand.
async fn image_api(
    h: &Harness,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/image{path}", h.emulator.base_url()))
        .header("X-Auth-Token", token)
        .json(&body)
        .send()
        .await
        .expect("the image service answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The partner tenant answers the share itself: `PUT /v2/images/{id}/members/{partner}`.
async fn partner_answers(h: &Harness, image_id: &str, answer: &str) {
    let token = token(h, PARTNER_TENANT, "partner", "partner-password").await;
    let (status, body) = image_api(
        h,
        &token,
        reqwest::Method::PUT,
        &format!("/v2/images/{image_id}/members/{PARTNER_TENANT}"),
        json!({"status": answer}),
    )
    .await;
    assert_eq!(status, 200, "the partner's answer was refused: {body}");
    assert_eq!(body["status"], answer);
}

/// The demo tenant (the owner) adds a member by hand: `POST /v2/images/{id}/members`.
async fn owner_adds_by_hand(h: &Harness, image_id: &str, tenant: &str) {
    let token = token(h, DEMO_TENANT, "demo", "demo-password").await;
    let (status, body) = image_api(
        h,
        &token,
        reqwest::Method::POST,
        &format!("/v2/images/{image_id}/members"),
        json!({"member": tenant}),
    )
    .await;
    assert_eq!(status, 200, "the owner's add was refused: {body}");
}

/// The images the partner tenant lists through cloudvol's own Glance client.
async fn partner_image_ids(h: &Harness) -> Vec<String> {
    let creds = CloudCredentials::from_clouds_yaml(h.clouds_yaml().as_bytes(), "partner", None)
        .expect("the partner cloud");
    let connector =
        Connector::new(CloudHttp::new(TransportConfig::default()).expect("an HTTP client"));
    let images = connector
        .image(&creds)
        .expect("an image client")
        .list_images(&ImageQuery::default())
        .await
        .expect("the partner lists its images");
    images.into_iter().map(|i| i.id).collect()
}

fn status_of(share: &ImageShare) -> ImageShareStatus {
    share.status.clone().expect("a status")
}

fn member<'a>(status: &'a ImageShareStatus, tenant: &str) -> &'a ObservedMember {
    status
        .members
        .iter()
        .find(|m| m.tenant_id == tenant)
        .unwrap_or_else(|| panic!("status.members lists {tenant}: {:?}", status.members))
}

/// Waits until the ImageShare's status satisfies `accept`.
async fn wait_status(
    h: &Harness,
    name: &str,
    what: &str,
    accept: impl Fn(&ImageShareStatus) -> bool,
) -> ImageShare {
    let api = h.api::<ImageShare>();
    let accept = &accept;
    wait_for(DEADLINE, what, || {
        let api = api.clone();
        async move {
            let share = api.get_opt(name).await.ok()??;
            share.status.as_ref().filter(|s| accept(s))?;
            Some(share)
        }
    })
    .await
}

/// Waits until the emulator's image satisfies `accept`.
async fn wait_cloud(h: &Harness, id: &str, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let accept = &accept;
    wait_for(DEADLINE, what, || async move {
        let image = cloud_image(h, id).await;
        accept(&image).then_some(image)
    })
    .await
}

/// Reconciles of ImageShares this test's operator has finished.
fn reconciles(h: &Harness) -> u64 {
    h.metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix("cloudvol_reconciles_total{kind=\"ImageShare\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for `n` more reconciles: proof that the operator looked again, without sleeping.
async fn wait_reconciles(h: &Harness, n: u64) {
    let start = reconciles(h);
    wait_for(DEADLINE, &format!("{n} more reconciles"), || async move {
        (reconciles(h) >= start + n).then_some(())
    })
    .await;
}

/// Requests to a route, counted by the emulator.
async fn count(h: &Harness, route: &str) -> u64 {
    h.request_counts()
        .await
        .get(route)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

const ADD_MEMBER: &str = "POST /image/v2/images/{image_id}/members";
const MEMBER_STATUS: &str = "PUT /image/v2/images/{image_id}/members/{member_id}";

#[tokio::test(flavor = "multi_thread")]
async fn a_share_with_member_credentials_is_accepted_and_listed_by_the_partner() {
    let h = Harness::new("share-accept").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "private").await;
    assert!(!partner_image_ids(&h).await.contains(&id));

    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true)]}),
    ))
    .await;
    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(status.id.as_deref(), Some(id.as_str()));
    assert_eq!(status.visibility.as_deref(), Some("shared"));
    assert_eq!(
        status.previous_visibility.as_deref(),
        Some("private"),
        "this object changed the visibility, and says so"
    );
    let m = member(&status, PARTNER_TENANT);
    assert_eq!(m.status, "accepted");
    assert!(m.added_by_this_object);
    assert!(m.created_at.is_some() && m.updated_at.is_some(), "{m:?}");
    assert_eq!(
        (status.member_count, status.accepted_count),
        (Some(1), Some(1))
    );
    assert_eq!(status.observed_generation, ready.metadata.generation);

    let image = cloud_image(&h, &id).await;
    assert_eq!(image["visibility"], "shared");
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(PARTNER_TENANT.to_string(), "accepted".to_string())]
    );
    assert!(
        partner_image_ids(&h).await.contains(&id),
        "the partner tenant lists the accepted image"
    );
    // Every step is an Event.
    for reason in [
        "SettingVisibility",
        "AddingMember",
        "AcceptingShare",
        "Shared",
    ] {
        h.wait_event("golden", reason).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_member_credentials_the_share_is_ready_pending_until_the_tenant_accepts() {
    let h = Harness::new("share-by-hand").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "private").await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        // A short resync, so that the tenant's answer shows soon.
        json!({"imageID": id, "members": [partner(false)], "resyncPeriod": "2s"}),
    ))
    .await;
    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(member(&status, PARTNER_TENANT).status, "pending");
    assert_eq!(
        (status.member_count, status.accepted_count),
        (Some(1), Some(0))
    );
    let message = &ready
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition")
        .message;
    assert!(
        message.contains("1 pending (the tenant accepts it)"),
        "{message}"
    );
    assert_eq!(
        count(&h, MEMBER_STATUS).await,
        0,
        "cloudvol never answers for a tenant without its credentials"
    );
    assert!(!partner_image_ids(&h).await.contains(&id));

    partner_answers(&h, &id, "accepted").await;
    let accepted = wait_status(&h, "golden", "the member to show accepted", |s| {
        s.members.first().is_some_and(|m| m.status == "accepted") && s.accepted_count == Some(1)
    })
    .await;
    assert!(condition_matches(
        &serde_json::to_value(&accepted).expect("json"),
        "Ready",
        "True",
        Some("Shared")
    ));
    assert!(partner_image_ids(&h).await.contains(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_stalls_and_is_never_turned_back_into_an_acceptance() {
    let h = Harness::new("share-reject").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "private").await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true)], "resyncPeriod": "2s"}),
    ))
    .await;
    h.wait_condition::<ImageShare>("golden", "Ready", "True", Some("Shared"))
        .await;
    assert_eq!(count(&h, MEMBER_STATUS).await, 1, "cloudvol accepted once");

    // A person in the partner tenant says no.
    partner_answers(&h, &id, "rejected").await;
    let stalled: ImageShare = h
        .wait_condition("golden", "Stalled", "True", Some("MemberRejected"))
        .await;
    let stalled_condition = stalled
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .expect("a Stalled condition")
        .clone();
    assert!(
        stalled_condition.message.contains(PARTNER_TENANT),
        "{}",
        stalled_condition.message
    );
    assert!(
        stalled_condition.message.contains("a person's decision"),
        "{}",
        stalled_condition.message
    );
    assert_eq!(
        member(&status_of(&stalled), PARTNER_TENANT).status,
        "rejected"
    );
    h.wait_event("golden", "MemberRejected").await;

    // The operator keeps looking, and keeps its hands off the member's answer.
    wait_reconciles(&h, 3).await;
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(PARTNER_TENANT.to_string(), "rejected".to_string())]
    );
    assert_eq!(
        count(&h, MEMBER_STATUS).await,
        2,
        "only cloudvol's acceptance and the person's rejection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_member_from_the_spec_removes_only_what_this_object_added() {
    let h = Harness::new("share-remove").await;
    // Already shared, with a member someone else added by hand.
    let id = admin_image(&h, DEMO_TENANT, "golden", "shared").await;
    owner_adds_by_hand(&h, &id, HAND_TENANT).await;

    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(false), {"tenantID": OTHER_TENANT}]}),
    ))
    .await;
    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(
        status.previous_visibility, None,
        "the image was shared before: this object did not change its visibility"
    );
    assert_eq!(status.member_count, Some(2));
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![
            (OTHER_TENANT.to_string(), "pending".to_string()),
            (PARTNER_TENANT.to_string(), "pending".to_string()),
            (HAND_TENANT.to_string(), "pending".to_string()),
        ]
    );

    // The spec drops OTHER_TENANT: cloudvol removes it, and only it.
    h.patch::<ImageShare>(
        "golden",
        json!({"spec": {"members": [{"tenantID": PARTNER_TENANT}]}}),
    )
    .await;
    wait_cloud(&h, &id, "OTHER_TENANT to be removed", |image| {
        !image["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["member_id"] == OTHER_TENANT))
    })
    .await;
    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(
        status
            .members
            .iter()
            .map(|m| m.tenant_id.as_str())
            .collect::<Vec<_>>(),
        vec![PARTNER_TENANT]
    );
    h.wait_event("golden", "RemovingMember").await;

    // Deleting the share removes its member and leaves the hand-made one, and the
    // visibility it did not change.
    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(HAND_TENANT.to_string(), "pending".to_string())]
    );
    assert_eq!(cloud_image(&h, &id).await["visibility"], "shared");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_share_removes_its_members_and_restores_the_visibility() {
    let h = Harness::new("share-delete").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "private").await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true), {"tenantID": OTHER_TENANT}]}),
    ))
    .await;
    h.wait_condition::<ImageShare>("golden", "Ready", "True", Some("Shared"))
        .await;
    assert_eq!(cloud_members(&h, &id).await.len(), 2);

    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
    let image = cloud_image(&h, &id).await;
    assert_eq!(image["visibility"], "private", "{image}");
    assert_eq!(cloud_members(&h, &id).await, vec![]);
    assert!(!partner_image_ids(&h).await.contains(&id));

    // No ImageShare needs the credentials any more: the Secret's finalizer is gone.
    let secret = h
        .api::<k8s_openapi::api::core::v1::Secret>()
        .get(SECRET)
        .await
        .expect("the Secret");
    assert!(
        !secret
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"cloudvol.dev/credentials-in-use".to_string()),
        "the credentials Secret is released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_leaves_the_members_and_the_visibility() {
    let h = Harness::new("share-orphan").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "private").await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true)], "deletionPolicy": "Orphan"}),
    ))
    .await;
    h.wait_condition::<ImageShare>("golden", "Ready", "True", Some("Shared"))
        .await;
    let writes_before = h.cloud_writes().await;

    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
    assert_eq!(cloud_image(&h, &id).await["visibility"], "shared");
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(PARTNER_TENANT.to_string(), "accepted".to_string())]
    );
    assert_eq!(
        h.cloud_writes().await,
        writes_before,
        "deleting an Orphan share writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_member_add_response_and_a_restart_leave_one_member_and_no_error() {
    let mut h = Harness::with_emulator("share-lost", fast_config()).await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "shared").await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/image/v2/images/*/members",
               "drop_connection": true, "after_action": true, "count": 1}),
    )
    .await;
    h.start_operator().await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true)]}),
    ))
    .await;
    // The add ran in the cloud, but its answer was lost.
    wait_cloud(&h, &id, "the dropped add to reach the cloud", |image| {
        image["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["member_id"] == PARTNER_TENANT))
    })
    .await;
    let faults = h.admin_get("faults").await;
    assert!(
        faults["faults"].as_array().is_some_and(Vec::is_empty),
        "the fault dropped the add's answer: {faults}"
    );
    // The operator dies before it learns anything more; a new one starts.
    h.kill_operator().await;
    h.start_operator().await;

    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(status.members.len(), 1, "{:?}", status.members);
    let m = member(&status, PARTNER_TENANT);
    assert!(
        m.added_by_this_object,
        "the intent was recorded before the add"
    );
    assert_eq!(m.status, "accepted");
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(PARTNER_TENANT.to_string(), "accepted".to_string())]
    );
    for c in &status.conditions {
        assert_eq!(c.reason, "Shared", "no error left in the conditions: {c:?}");
        assert_eq!(c.status == "True", c.type_ == "Ready", "{c:?}");
    }

    // And it still knows the member is its own: deletion removes it.
    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
    assert_eq!(cloud_members(&h, &id).await, vec![]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_another_tenant_owns_stalls_with_the_clouds_message() {
    let h = Harness::new("share-foreign").await;
    // The partner's image, shared, but not with the demo tenant: the demo tenant cannot see it.
    let hidden = admin_image(&h, PARTNER_TENANT, "theirs", "shared").await;
    h.create::<ImageShare>(share_manifest(
        "hidden",
        json!({"imageID": hidden, "members": [{"tenantID": OTHER_TENANT}]}),
    ))
    .await;
    let stalled: ImageShare = h
        .wait_condition("hidden", "Stalled", "True", Some("ImageNotFound"))
        .await;
    let message = stalled_message(&stalled);
    assert!(
        message.contains(&format!("No image found with ID {hidden}")),
        "the cloud's own words: {message}"
    );

    // The partner's image shared with the demo tenant: visible, but not the demo tenant's to
    // share further.
    let visible = admin_image(&h, PARTNER_TENANT, "theirs-shared", "shared").await;
    let token = token(&h, PARTNER_TENANT, "partner", "partner-password").await;
    let (status, body) = image_api(
        &h,
        &token,
        reqwest::Method::POST,
        &format!("/v2/images/{visible}/members"),
        json!({"member": DEMO_TENANT}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    h.create::<ImageShare>(share_manifest(
        "visible",
        json!({"imageID": visible, "members": [{"tenantID": OTHER_TENANT}]}),
    ))
    .await;
    let stalled: ImageShare = h
        .wait_condition("visible", "Stalled", "True", Some("NotImageOwner"))
        .await;
    let message = stalled_message(&stalled);
    assert!(message.contains(PARTNER_TENANT), "{message}");
    assert_eq!(
        count(&h, ADD_MEMBER).await,
        1,
        "only the partner's own add: cloudvol wrote nothing to an image it does not own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_ref_waits_for_its_volume_image_then_shares_its_image() {
    let h = Harness::new("share-ref").await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageRef": {"name": "golden-image"}, "members": [partner(true)]}),
    ))
    .await;
    let waiting: ImageShare = h
        .wait_condition("golden", "Reconciling", "True", Some("WaitingForImage"))
        .await;
    let message = &waiting
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Reconciling"))
        .expect("a Reconciling condition")
        .message;
    assert!(message.contains("golden-image"), "{message}");

    let id = admin_image(&h, DEMO_TENANT, "golden-image", "private").await;
    stand_in_volume_image(&h, "golden-image", &id).await;

    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(status.id.as_deref(), Some(id.as_str()));
    assert_eq!(member(&status, PARTNER_TENANT).status, "accepted");
    assert!(partner_image_ids(&h).await.contains(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protected_private_image_stalls_with_the_clouds_refusal() {
    let h = Harness::new("share-protected").await;
    // NHN Cloud allows no change to a protected image, its visibility included.
    let id = admin_image_from(
        &h,
        json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "private", "protected": true}),
    )
    .await;
    h.create::<ImageShare>(share_manifest(
        "golden",
        json!({"imageID": id, "members": [partner(true)]}),
    ))
    .await;
    let stalled: ImageShare = h
        .wait_condition("golden", "Stalled", "True", Some("ImageProtected"))
        .await;
    let message = stalled_message(&stalled);
    assert!(message.contains("protected"), "{message}");
    assert!(
        message.contains("visibility: shared"),
        "says what to do: {message}"
    );
    assert_eq!(cloud_image(&h, &id).await["visibility"], "private");
    // Nothing was done, so deleting the share has nothing to undo, and finishes.
    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_shares_the_golden_image_with_the_partner() {
    let h = Harness::new("share-example").await;
    // The example's Secret, pointing at this test's emulator (same cloud names).
    h.put_secret("cloudvol-demo-credentials", &h.clouds_yaml())
        .await;
    // What examples/20-volume-image.yaml makes: a protected golden image, shared at creation.
    let id = admin_image_from(
        &h,
        json!({"owner": DEMO_TENANT, "name": "golden-image", "visibility": "shared",
               "protected": true}),
    )
    .await;
    stand_in_volume_image(&h, "golden-image", &id).await;

    let path = support::repo_root().join("examples/30-image-share.yaml");
    let text = std::fs::read_to_string(&path).expect("the example");
    let example: Value = serde_saphyr::from_str(&text).expect("the example is YAML");
    let name = example["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    h.create::<ImageShare>(example).await;
    let ready: ImageShare = h
        .wait_condition(&name, "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    assert_eq!(status.id.as_deref(), Some(id.as_str()));
    assert_eq!(member(&status, PARTNER_TENANT).status, "accepted");
    assert!(partner_image_ids(&h).await.contains(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_share_reports_the_members_and_never_writes() {
    let h = Harness::new("share-unmanaged").await;
    let id = admin_image(&h, DEMO_TENANT, "golden", "shared").await;
    owner_adds_by_hand(&h, &id, PARTNER_TENANT).await;
    let writes_before = h.cloud_writes().await;

    h.create::<ImageShare>(share_manifest(
        "golden",
        // Credentials are given, yet an unmanaged share never accepts with them.
        json!({"imageID": id, "managementPolicy": "unmanaged", "members": [partner(true)]}),
    ))
    .await;
    let ready: ImageShare = h
        .wait_condition("golden", "Ready", "True", Some("Shared"))
        .await;
    let status = status_of(&ready);
    let m = member(&status, PARTNER_TENANT);
    assert_eq!(m.status, "pending");
    assert!(!m.added_by_this_object);
    assert_eq!(status.visibility.as_deref(), Some("shared"));

    // A listed tenant that is not a member: reported, not added.
    h.patch::<ImageShare>(
        "golden",
        json!({"spec": {"members": [partner(true), {"tenantID": OTHER_TENANT}]}}),
    )
    .await;
    let stalled: ImageShare = h
        .wait_condition("golden", "Stalled", "True", Some("MemberMissing"))
        .await;
    assert!(stalled_message(&stalled).contains(OTHER_TENANT));
    assert_eq!(member(&status_of(&stalled), OTHER_TENANT).status, "absent");

    h.delete::<ImageShare>("golden").await;
    h.wait_gone::<ImageShare>("golden").await;
    assert_eq!(
        h.cloud_writes().await,
        writes_before,
        "an unmanaged share never writes to the cloud"
    );
    assert_eq!(
        cloud_members(&h, &id).await,
        vec![(PARTNER_TENANT.to_string(), "pending".to_string())]
    );
}
