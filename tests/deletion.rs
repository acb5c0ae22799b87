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
