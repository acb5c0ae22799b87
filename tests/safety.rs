//! Never a duplicate, never a wrong delete (docs/design.md §5): the rules that keep what
//! cloudvol recorded true. Against the real API server and the emulator.

mod support;

use std::sync::Arc;

use cloudvol::api::{ImageShare, Volume};
use cloudvol::cloud::{CloudHttp, Connector, TransportConfig};
use cloudvol::controller::conditions::Health;
use cloudvol::controller::reasons::Reason;
use cloudvol::controller::report::{Phase, Report};
use cloudvol::controller::{Context, Settings};
use serde_json::json;

use support::harness::{DEMO_TENANT, Harness, PARTNER_TENANT, share_manifest, volume_manifest};

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
