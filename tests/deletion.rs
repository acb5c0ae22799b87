//! Deletions as a new user meets them: objects that never made anything go at once whatever
//! their credentials; objects that did wait, and say how to get out; finished deletions are no
//! errors. Against the real API server and the emulator, with the operator in-process.

mod support;

use cloudvol::api::Volume;
use serde_json::json;

use support::harness::{Harness, volume_manifest};

fn errors(h: &Harness) -> Vec<String> {
    h.metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("cloudvol_reconcile_errors_total{"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_that_never_made_anything_is_deleted_whatever_its_credentials() {
    let h = Harness::new("del-nothing").await;
    // A wrong password, and a cloud that is not in the Secret at all.
    for (name, cloud) in [("wrong", "wrong-password"), ("typo", "no-such-cloud")] {
        h.create::<Volume>(volume_manifest(
            name,
            cloud,
            json!({"resource": {"size": 1}}),
        ))
        .await;
    }
    h.wait_condition::<Volume>("wrong", "Stalled", "True", Some("InvalidCredentials"))
        .await;
    h.wait_condition::<Volume>("typo", "Stalled", "True", Some("InvalidCloudConfig"))
        .await;
    for name in ["wrong", "typo"] {
        h.delete::<Volume>(name).await;
        h.wait_gone::<Volume>(name).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_that_needs_the_cloud_names_both_ways_out_when_the_credentials_fail() {
    let h = Harness::new("del-creds").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    // The password changes in the cloud's eyes: the Secret no longer works.
    let broken = h
        .clouds_yaml()
        .replacen("password: demo-password", "password: expired", 1);
    h.put_secret(support::harness::SECRET, &broken).await;
    h.delete::<Volume>("data").await;
    let held: Volume = h
        .wait_condition("data", "Stalled", "True", Some("InvalidCredentials"))
        .await;
    let message = &held.status.expect("a status").conditions[0].message;
    assert!(
        message.contains("fix the Secret") && message.contains("deletionPolicy: Orphan"),
        "the message names both ways out: {message}"
    );
    // One way out: Orphan lets the deletion finish, and the cloud volume stays.
    h.patch::<Volume>("data", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    h.wait_gone::<Volume>("data").await;
    assert_eq!(h.cloud_volumes().await.len(), 1, "Orphan leaves the volume");
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_deletions_are_not_reconcile_errors() {
    let h = Harness::new("del-quiet").await;
    for n in 0..5 {
        h.create::<Volume>(volume_manifest(
            &format!("v{n}"),
            "demo",
            json!({"resource": {"size": 1}}),
        ))
        .await;
    }
    for n in 0..5 {
        h.wait_condition::<Volume>(&format!("v{n}"), "Ready", "True", None)
            .await;
    }
    for n in 0..5 {
        h.delete::<Volume>(&format!("v{n}")).await;
    }
    for n in 0..5 {
        h.wait_gone::<Volume>(&format!("v{n}")).await;
    }
    // Let the last events of the deletions reach the controller.
    support::wait_for(
        support::harness::DEADLINE,
        "the cloud volumes to be gone",
        || async { h.cloud_volumes().await.is_empty().then_some(()) },
    )
    .await;
    assert_eq!(errors(&h), Vec::<String>::new(), "no reconcile errors");
}

/// The credentials finalizer on a Secret, if it carries it.
async fn guarded(h: &Harness, secret: &str) -> bool {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = h.api();
    let secret = api.get(secret).await.expect("the Secret");
    secret
        .metadata
        .finalizers
        .unwrap_or_default()
        .iter()
        .any(|f| f == "cloudvol.dev/credentials-in-use")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_let_go_when_the_last_object_stops_needing_it() {
    let h = Harness::new("del-secret").await;
    h.put_secret("other", &h.clouds_yaml()).await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    assert!(guarded(&h, support::harness::SECRET).await);

    // The Volume moves to another Secret: the first one is free.
    h.patch::<Volume>(
        "data",
        json!({"spec": {"cloudCredentialsRef": {"secretName": "other"}}}),
    )
    .await;
    support::wait_for(
        support::harness::DEADLINE,
        "the old Secret to be let go",
        || async { (!guarded(&h, support::harness::SECRET).await).then_some(()) },
    )
    .await;
    assert!(guarded(&h, "other").await, "the new one is held");

    // Orphan: no Secret is needed to delete it any more.
    h.patch::<Volume>("data", json!({"spec": {"deletionPolicy": "Orphan"}}))
        .await;
    support::wait_for(
        support::harness::DEADLINE,
        "the Secret to be let go",
        || async { (!guarded(&h, "other").await).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_secret_says_which_object_holds_it() {
    let h = Harness::new("del-holder").await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;
    h.delete::<k8s_openapi::api::core::v1::Secret>(support::harness::SECRET)
        .await;
    h.patch::<Volume>(
        "data",
        json!({"metadata": {"annotations": {"example.com/look": "now"}}}),
    )
    .await;
    let note = h
        .wait_event(support::harness::SECRET, "CredentialsInUse")
        .await;
    assert!(note.contains("Volume") && note.contains("/data"), "{note}");
}

/// The check whether another object still needs the Secret reads the API page by page: an
/// object that needs it beyond the first page (100 objects that do not sort before it) keeps
/// the Secret held when another one finishes.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_needed_beyond_the_first_page_is_kept() {
    let h = Harness::new("del-pages").await;
    let orphans: Vec<String> = (0..100).map(|n| format!("a-{n:03}")).collect();
    futures::future::join_all(orphans.iter().map(|name| {
        h.create::<Volume>(volume_manifest(
            name,
            "demo",
            json!({"resource": {"size": 1}, "deletionPolicy": "Orphan"}),
        ))
    }))
    .await;
    for name in ["b-done", "z-needs"] {
        h.ready_volume(name).await;
    }
    assert!(guarded(&h, support::harness::SECRET).await);
    h.delete::<Volume>("b-done").await;
    h.wait_gone::<Volume>("b-done").await;
    assert!(
        guarded(&h, support::harness::SECRET).await,
        "z-needs, on the second page, still needs the Secret"
    );
    h.delete::<Volume>("z-needs").await;
    h.wait_gone::<Volume>("z-needs").await;
    support::wait_for(
        support::harness::DEADLINE,
        "the Secret to be let go",
        || async { (!guarded(&h, support::harness::SECRET).await).then_some(()) },
    )
    .await;
}
