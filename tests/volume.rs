//! The Volume controller end to end: a real kube-apiserver, the emulator, and the operator
//! in-process.

mod support;

use std::time::Duration;

use cloudvol::api::Volume;
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{DEADLINE, Harness, condition_matches, fast_config, volume_manifest};
use support::wait_for;

/// Makes the operator look at a Volume now, after a change behind its back, rather than at its
/// next resync (30 s in these tests).
async fn look_now(h: &Harness, name: &str) {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    h.patch::<Volume>(
        name,
        json!({"metadata": {"annotations": {"example.com/look": stamp}}}),
    )
    .await;
}

/// Reconciles of Volumes this test's operator has finished.
fn reconciles(h: &Harness) -> u64 {
    h.metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix("cloudvol_reconciles_total{kind=\"Volume\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn id_of(volume: &Volume) -> String {
    volume
        .status
        .as_ref()
        .and_then(|s| s.id.clone())
        .expect("status.id is set")
}

/// Volumes in the emulator carrying the object's UID mark.
async fn marked(h: &Harness, volume: &Volume) -> Vec<Value> {
    let uid = volume.uid().expect("a uid");
    h.cloud_volumes()
        .await
        .into_iter()
        .filter(|v| v["metadata"]["cloudvol.dev/uid"] == uid.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_becomes_ready_with_its_id_status_and_printer_columns() {
    let h = Harness::new("vol-create").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 2, "description": "d", "metadata": {"team": "a"}}}),
    ))
    .await;
    let ready: Volume = h
        .wait_condition("data", "Ready", "True", Some("Available"))
        .await;
    let status = ready.status.clone().expect("a status");
    let id = id_of(&ready);
    let observed = status.resource.expect("status.resource");
    assert_eq!(observed.status, "available");
    assert_eq!(observed.size, Some(2));
    assert_eq!(
        observed.name.as_deref(),
        Some("data"),
        "the object's name is the default"
    );
    assert_eq!(observed.metadata.get("team").map(String::as_str), Some("a"));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    let cloud = h.cloud_volume(&id).await.expect("the cloud volume exists");
    assert_eq!(
        cloud["metadata"]["cloudvol.dev/uid"],
        ready.uid().unwrap().as_str()
    );
    assert!(
        ready
            .finalizers()
            .contains(&"cloudvol.dev/volume".to_string())
    );

    // The printer columns, as kubectl gets them (the Table form of the list).
    let request = http::Request::get(format!(
        "/apis/cloudvol.dev/v1alpha1/namespaces/{}/volumes",
        h.namespace
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .expect("a request");
    let table: Value = h.client.request(request).await.expect("the Table form");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    let row = &table["rows"][0]["cells"];
    let cell = |name: &str| &row[columns.iter().position(|c| *c == name).expect(name)];
    assert_eq!(cell("ID"), id.as_str());
    assert_eq!(cell("Status"), "available");
    assert_eq!(cell("Size"), 2);
    assert_eq!(cell("Ready"), "True");

    // Steady state: a reconcile that observes nothing new writes nothing. A touch of an
    // annotation triggers one; once the reconcile count moves past it, the object must be
    // exactly as the touch left it.
    let reconciles_before = reconciles(&h);
    let touched: Volume = h
        .patch(
            "data",
            json!({"metadata": {"annotations": {"example.com/touch": "1"}}}),
        )
        .await;
    wait_for(DEADLINE, "a reconcile after the touch", || async {
        (reconciles(&h) > reconciles_before).then_some(())
    })
    .await;
    let after = h.api::<Volume>().get("data").await.unwrap();
    assert_eq!(
        touched.resource_version(),
        after.resource_version(),
        "an unchanged observation writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn growing_a_volume_extends_it_through_reconciling() {
    let mut config = fast_config();
    config.transitions.volume_extend = Duration::from_secs(2);
    let mut h = Harness::with_emulator("vol-grow", config).await;
    h.start_operator().await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    h.patch::<Volume>("data", json!({"spec": {"resource": {"size": 3}}}))
        .await;
    let extending: Volume = h
        .wait_condition("data", "Reconciling", "True", Some("Extending"))
        .await;
    assert!(!condition_matches(
        &serde_json::to_value(&extending).unwrap(),
        "Ready",
        "True",
        None
    ));
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    assert_eq!(ready.status.unwrap().resource.unwrap().size, Some(3));
    h.wait_event("data", "Extended").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_attached_volume_waits_for_detach() {
    let h = Harness::new("vol-inuse").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    let id = id_of(&ready);
    h.admin_post(
        &format!("volumes/{id}/attach"),
        json!({"server_id": "3f2a0000-0000-4000-8000-000000000001"}),
    )
    .await;
    // The attach happened behind cloudvol's back; touching the object makes it look now rather
    // than at its next resync.
    wait_for(DEADLINE, "the volume to be in-use in the cloud", || async {
        (h.cloud_volume(&id).await?["status"] == "in-use").then_some(())
    })
    .await;
    look_now(&h, "data").await;
    h.wait_condition::<Volume>("data", "Ready", "True", Some("InUse"))
        .await;

    h.delete::<Volume>("data").await;
    let held: Volume = h
        .wait_condition("data", "Stalled", "True", Some("VolumeInUse"))
        .await;
    let stalled = held
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert!(
        stalled
            .message
            .contains("3f2a0000-0000-4000-8000-000000000001"),
        "{}",
        stalled.message
    );
    let note = h.wait_event("data", "VolumeInUse").await;
    assert!(note.contains("detach"), "{note}");
    assert!(
        h.cloud_volume(&id).await.is_some(),
        "the attached volume still exists"
    );

    h.admin_post(&format!("volumes/{id}/detach"), json!({}))
        .await;
    h.wait_gone::<Volume>("data").await;
    wait_for(DEADLINE, "the cloud volume to be deleted", || async {
        h.cloud_volume(&id).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_with_snapshots_is_refused_in_the_clouds_words_until_they_go() {
    let h = Harness::new("vol-snap").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    );
    h.admin_post(&format!("volumes/{id}/snapshots"), json!({}))
        .await;
    h.delete::<Volume>("data").await;
    let refused: Volume = h
        .wait_condition("data", "Stalled", "True", Some("DeleteRefused"))
        .await;
    let message = &refused.status.expect("a status").conditions[0].message;
    assert!(
        message.contains("The cloud said:") && message.contains("Invalid volume"),
        "the cloud's own words: {message}"
    );
    assert!(h.cloud_volume(&id).await.is_some());
    h.admin_delete(&format!("volumes/{id}/snapshots")).await;
    h.wait_gone::<Volume>("data").await;
    assert!(h.cloud_volume(&id).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_by_id_and_by_filter_and_an_ambiguous_filter_stalls() {
    let h = Harness::new("vol-import").await;
    h.create::<Volume>(volume_manifest(
        "origin",
        "demo",
        json!({"resource": {"size": 1, "name": "shared-name"}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("origin", "Ready", "True", None)
            .await,
    );

    h.create::<Volume>(volume_manifest(
        "by-id",
        "demo",
        json!({"import": {"id": id}}),
    ))
    .await;
    let by_id: Volume = h.wait_condition("by-id", "Ready", "True", None).await;
    assert_eq!(id_of(&by_id), id);

    h.create::<Volume>(volume_manifest(
        "by-filter",
        "demo",
        json!({"managementPolicy": "unmanaged", "import": {"filter": {"name": "shared-name"}}}),
    ))
    .await;
    let by_filter: Volume = h.wait_condition("by-filter", "Ready", "True", None).await;
    assert_eq!(id_of(&by_filter), id);

    // A second volume with the same name makes a new filter import ambiguous.
    h.create::<Volume>(volume_manifest(
        "twin",
        "demo",
        json!({"resource": {"size": 1, "name": "shared-name"}}),
    ))
    .await;
    let twin = id_of(
        &h.wait_condition::<Volume>("twin", "Ready", "True", None)
            .await,
    );
    h.create::<Volume>(volume_manifest(
        "ambiguous",
        "demo",
        json!({"import": {"filter": {"name": "shared-name"}}}),
    ))
    .await;
    let stalled: Volume = h
        .wait_condition("ambiguous", "Stalled", "True", Some("AmbiguousImport"))
        .await;
    let message = &stalled.status.unwrap().conditions[0].message;
    assert!(
        message.contains(&id) && message.contains(&twin),
        "{message}"
    );

    h.create::<Volume>(volume_manifest(
        "missing",
        "demo",
        json!({"import": {"id": "no-such-volume"}}),
    ))
    .await;
    h.wait_condition::<Volume>("missing", "Stalled", "True", Some("ImportNotFound"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_volume_is_observed_and_never_written() {
    let h = Harness::new("vol-unmanaged").await;
    h.create::<Volume>(volume_manifest(
        "origin",
        "demo",
        json!({"resource": {"size": 1, "name": "watched"}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("origin", "Ready", "True", None)
            .await,
    );
    h.admin_delete("requests").await;

    h.create::<Volume>(volume_manifest(
        "observer",
        "demo",
        json!({"managementPolicy": "unmanaged", "import": {"id": id}, "deletionPolicy": "Delete"}),
    ))
    .await;
    h.wait_condition::<Volume>("observer", "Ready", "True", None)
        .await;
    // The cloud changes; the observer reports it.
    h.admin_post(&format!("volumes/{id}/state"), json!({"status": "error"}))
        .await;
    look_now(&h, "observer").await;
    h.wait_condition::<Volume>("observer", "Stalled", "True", Some("Error"))
        .await;
    h.delete::<Volume>("observer").await;
    h.wait_gone::<Volume>("observer").await;
    assert!(
        h.cloud_volume(&id).await.is_some(),
        "unmanaged never deletes"
    );
    // "origin" also watches the volume, but only reads it; nobody wrote anything.
    assert_eq!(h.cloud_writes().await, Vec::<(String, u64)>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_leaves_the_cloud_volume() {
    let h = Harness::new("vol-orphan").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"deletionPolicy": "Orphan", "resource": {"size": 1}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    );
    h.delete::<Volume>("data").await;
    h.wait_gone::<Volume>("data").await;
    assert_eq!(
        h.cloud_volume(&id).await.expect("still there")["status"],
        "available"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_response_and_a_restart_make_exactly_one_volume() {
    let mut h = Harness::with_emulator("vol-lost", fast_config()).await;
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/block-storage/*/volumes", "drop_connection": true, "after_action": true, "count": 1}),
    )
    .await;
    h.start_operator().await;
    let volume: Volume = h
        .create(volume_manifest(
            "data",
            "demo",
            json!({"resource": {"size": 1}}),
        ))
        .await;
    // The create ran in the cloud, but its answer was lost.
    wait_for(
        DEADLINE,
        "the dropped create to reach the cloud",
        || async { (marked(&h, &volume).await.len() == 1).then_some(()) },
    )
    .await;
    // The operator dies before it learns anything more; a new one starts.
    h.kill_operator().await;
    h.start_operator().await;
    let ready: Volume = h.wait_condition("data", "Ready", "True", None).await;
    let all = marked(&h, &volume).await;
    assert_eq!(all.len(), 1, "exactly one cloud volume: {all:?}");
    assert_eq!(all[0]["id"], id_of(&ready).as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_storm_then_recovery_ends_ready_without_duplicates() {
    let mut h = Harness::with_emulator("vol-503", fast_config()).await;
    h.admin_post(
        "faults",
        json!({"path": "/block-storage/*", "status": 503, "retry_after": 0, "count": 25}),
    )
    .await;
    h.start_operator().await;
    let volume: Volume = h
        .create(volume_manifest(
            "data",
            "demo",
            json!({"resource": {"size": 1}}),
        ))
        .await;
    h.wait_condition::<Volume>("data", "Reconciling", "True", Some("CloudUnavailable"))
        .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    assert_eq!(marked(&h, &volume).await.len(), 1);
    let errors = h.metrics.encode();
    assert!(
        errors.contains("code=\"503\""),
        "the 503s are counted:\n{errors}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_credentials_stall_with_a_clear_message() {
    let h = Harness::new("vol-creds").await;
    h.create::<Volume>(volume_manifest(
        "wrong",
        "wrong-password",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let wrong: Volume = h
        .wait_condition("wrong", "Stalled", "True", Some("InvalidCredentials"))
        .await;
    let message = wrong.status.unwrap().conditions[0].message.clone();
    assert!(
        !message.contains("not-the-password"),
        "secrets never appear: {message}"
    );

    let mut missing = volume_manifest("no-secret", "demo", json!({"resource": {"size": 1}}));
    missing["spec"]["cloudCredentialsRef"]["secretName"] = json!("absent");
    h.create::<Volume>(missing).await;
    let stalled: Volume = h
        .wait_condition("no-secret", "Stalled", "True", Some("SecretNotFound"))
        .await;
    assert!(
        stalled.status.unwrap().conditions[0]
            .message
            .contains("absent")
    );

    h.create::<Volume>(volume_manifest(
        "no-cloud",
        "nowhere",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let stalled: Volume = h
        .wait_condition("no-cloud", "Stalled", "True", Some("InvalidCloudConfig"))
        .await;
    let message = &stalled.status.unwrap().conditions[0].message;
    assert!(
        message.contains("nowhere") && message.contains("demo"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_volume_is_never_written() {
    let h = Harness::new("vol-paused").await;
    let mut manifest = volume_manifest("data", "demo", json!({"resource": {"size": 1}}));
    manifest["metadata"]["annotations"] = json!({"cloudvol.dev/paused": "true"});
    h.create::<Volume>(manifest).await;
    h.wait_condition::<Volume>("data", "Stalled", "True", Some("Paused"))
        .await;
    assert_eq!(h.cloud_writes().await, Vec::<(String, u64)>::new());
    h.patch::<Volume>(
        "data",
        json!({"metadata": {"annotations": {"cloudvol.dev/paused": null}}}),
    )
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_forced_to_error_stalls() {
    let h = Harness::new("vol-error").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    );
    h.admin_post(&format!("volumes/{id}/state"), json!({"status": "error"}))
        .await;
    look_now(&h, "data").await;
    let stalled: Volume = h
        .wait_condition("data", "Stalled", "True", Some("Error"))
        .await;
    assert!(stalled.status.unwrap().conditions[0].message.contains(&id));
    h.wait_event("data", "Error").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_volume_deleted_out_of_band_is_reported_and_recreated() {
    let h = Harness::new("vol-drift").await;
    let volume: Volume = h
        .create(volume_manifest(
            "data",
            "demo",
            json!({"resource": {"size": 1}}),
        ))
        .await;
    let first = id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    );
    // Someone deletes it in the cloud console.
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/identity/v2.0/tokens", h.emulator.base_url()))
        .json(&json!({"auth": {"tenantId": support::harness::DEMO_TENANT, "passwordCredentials": {"username": "demo", "password": "demo-password"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access"]["token"]["id"].as_str().unwrap().to_string();
    let response = http
        .delete(format!(
            "{}/block-storage/v2/{}/volumes/{first}",
            h.emulator.base_url(),
            support::harness::DEMO_TENANT
        ))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    look_now(&h, "data").await;
    let note = h.wait_event("data", "VolumeDisappeared").await;
    assert!(note.contains(&first), "{note}");
    let recreated = wait_for(DEADLINE, "a new volume", || async {
        let v: Volume = h.api().get("data").await.ok()?;
        let id = v.status.as_ref()?.id.clone()?;
        let ready = condition_matches(&serde_json::to_value(&v).ok()?, "Ready", "True", None);
        (id != first && ready).then_some(id)
    })
    .await;
    assert_eq!(marked(&h, &volume).await.len(), 1);
    assert_ne!(recreated, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_credentials_secret_outlives_the_volumes_that_need_it() {
    let h = Harness::new("vol-secret").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let id = id_of(
        &h.wait_condition::<Volume>("data", "Ready", "True", None)
            .await,
    );
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = h.api();
    let secret = secrets.get(support::harness::SECRET).await.unwrap();
    assert!(
        secret
            .finalizers()
            .contains(&"cloudvol.dev/credentials-in-use".to_string())
    );
    // `kubectl delete -f dir/`: both at once.
    h.delete::<k8s_openapi::api::core::v1::Secret>(support::harness::SECRET)
        .await;
    h.delete::<Volume>("data").await;
    h.wait_gone::<Volume>("data").await;
    assert!(
        h.cloud_volume(&id).await.is_none(),
        "the volume was deleted with the credentials"
    );
    h.wait_gone::<k8s_openapi::api::core::v1::Secret>(support::harness::SECRET)
        .await;
}
