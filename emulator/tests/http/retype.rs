//! `os-retype`: `retyping` and back, the type that changes or stays, and
//! Cinder's refusals.

use std::time::Duration;

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const RETYPE_REFUSED: &str = "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an active migration or a consistency group, requested type has to be different that the one from the volume, and for in-use volumes front-end qos specs cannot change.";

/// Every transition immediate but the retype, which lasts long enough to
/// be seen and ends within the tests' deadline.
fn slow_retype() -> Config {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_retype = Duration::from_secs(1);
    config
}

async fn available_volume(env: &Env, token: &str, volume_type: &str) -> String {
    let id = env
        .create_volume(token, DEMO, json!({"size": 1, "volume_type": volume_type}))
        .await;
    env.wait_volume(token, DEMO, &id, "available").await;
    id
}

fn retype_body(new_type: &str, policy: Option<&str>) -> Value {
    let mut body = json!({"os-retype": {"new_type": new_type}});
    if let Some(p) = policy {
        body["os-retype"]["migration_policy"] = json!(p);
    }
    body
}

/// Asks for a retype (202, no body), sees `retyping`, and returns the volume
/// once it is `until` again.
async fn retype(
    env: &Env,
    token: &str,
    id: &str,
    new_type: &str,
    policy: Option<&str>,
    until: &str,
) -> Value {
    let a = env
        .action(token, DEMO, id, retype_body(new_type, policy))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert!(a.bytes.is_empty(), "os-retype answers no body");
    let during = env.volume(token, DEMO, id).await;
    assert_eq!(during.body["volume"]["status"], "retyping");
    env.wait_volume(token, DEMO, id, until).await
}

async fn attach(env: &Env, token: &str, id: &str) {
    let a = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/attach"),
            Some(json!({})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    env.wait_volume(token, DEMO, id, "in-use").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retype_the_backend_serves_changes_the_type_and_comes_back_to_the_same_status() {
    let env = start_with(slow_retype()).await;
    let token = env.demo().await;
    let id = available_volume(&env, &token, "General HDD").await;
    // Both HDD types are on one backend: changed in place, whatever the policy.
    let v = retype(&env, &token, &id, "Archive HDD", Some("never"), "available").await;
    assert_eq!(v["volume_type"], "Archive HDD");
    let v = retype(&env, &token, &id, "General HDD", None, "available").await;
    assert_eq!(v["volume_type"], "General HDD");

    attach(&env, &token, &id).await;
    let v = retype(&env, &token, &id, "Archive HDD", Some("never"), "in-use").await;
    assert_eq!(v["volume_type"], "Archive HDD");
    assert_eq!(v["attachments"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retype_that_needs_a_migration_is_given_up_unless_migration_is_on_demand() {
    let env = start_with(slow_retype()).await;
    let token = env.demo().await;
    let id = available_volume(&env, &token, "General HDD").await;
    // HDD -> SSD changes the backend. `never` (also the default): accepted,
    // `retyping`, then back with the old type, as Cinder's scheduler gives up.
    for policy in [Some("never"), None] {
        let v = retype(&env, &token, &id, "General SSD", policy, "available").await;
        assert_eq!(v["volume_type"], "General HDD", "{policy:?}");
    }
    attach(&env, &token, &id).await;
    let v = retype(&env, &token, &id, "General SSD", Some("never"), "in-use").await;
    assert_eq!(v["volume_type"], "General HDD");
    // `on-demand`: migrated, attached or not (no Nova is needed here).
    let v = retype(
        &env,
        &token,
        &id,
        "General SSD",
        Some("on-demand"),
        "in-use",
    )
    .await;
    assert_eq!(v["volume_type"], "General SSD");
    let a = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/detach"),
            Some(json!({})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    env.wait_volume(&token, DEMO, &id, "available").await;
    let v = retype(
        &env,
        &token,
        &id,
        "General HDD",
        Some("on-demand"),
        "available",
    )
    .await;
    assert_eq!(v["volume_type"], "General HDD");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_type_and_a_volume_neither_available_nor_in_use_are_refused() {
    let env = start_with(slow_retype()).await;
    let token = env.demo().await;
    let id = available_volume(&env, &token, "General HDD").await;
    let a = env
        .action(&token, DEMO, &id, retype_body("General HDD", None))
        .await;
    assert_eq!(assert_cinder_fault(&a, 400, "badRequest"), RETYPE_REFUSED);

    // While retyping.
    let a = env
        .action(&token, DEMO, &id, retype_body("Archive HDD", None))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = env
        .action(&token, DEMO, &id, retype_body("Cold HDD", None))
        .await;
    assert_eq!(assert_cinder_fault(&a, 400, "badRequest"), RETYPE_REFUSED);
    env.wait_volume(&token, DEMO, &id, "available").await;

    for status in ["creating", "error", "downloading", "uploading", "extending"] {
        let a = env
            .admin(
                Method::POST,
                &format!("/_admin/volumes/{id}/state"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let a = env
            .action(&token, DEMO, &id, retype_body("Cold HDD", None))
            .await;
        assert_eq!(
            assert_cinder_fault(&a, 400, "badRequest"),
            RETYPE_REFUSED,
            "{status}"
        );
    }
    let v = env.volume(&token, DEMO, &id).await;
    assert_eq!(v.body["volume"]["volume_type"], "Archive HDD");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_retype_bodies_are_refused_with_cinders_messages() {
    let env = start().await;
    let token = env.demo().await;
    let id = available_volume(&env, &token, "General HDD").await;
    for (body, expected) in [
        (
            json!({"os-retype": {}}),
            "Invalid input for field/attribute os-retype. Value: {}. 'new_type' is a required property",
        ),
        (
            json!({"os-retype": null}),
            "Invalid input for field/attribute os-retype. Value: None. None is not of type 'object'",
        ),
        (
            json!({"os-retype": "General SSD"}),
            "Invalid input for field/attribute os-retype. Value: General SSD. 'General SSD' is not of type 'object'",
        ),
        (
            json!({"os-retype": {"new_type": 5}}),
            "Invalid input for field/attribute new_type. Value: 5. 5 is not of type 'string'",
        ),
        (
            json!({"os-retype": {"new_type": "x", "migration_policy": "sometimes"}}),
            "Invalid input for field/attribute migration_policy. Value: sometimes. 'sometimes' is not one of ['on-demand', 'never']",
        ),
        (
            json!({"os-retype": {"new_type": "x", "migration_policy": null}}),
            "Invalid input for field/attribute migration_policy. Value: None. None is not one of ['on-demand', 'never']",
        ),
        (
            json!({"os-retype": {"new_type": "x", "z": [1, true]}}),
            "Invalid input for field/attribute os-retype. Value: {'new_type': 'x', 'z': [1, True]}. Additional properties are not allowed ('z' was unexpected)",
        ),
    ] {
        let a = env.action(&token, DEMO, &id, body.clone()).await;
        assert_eq!(
            assert_cinder_fault(&a, 400, "badRequest"),
            expected,
            "{body}"
        );
    }
    // The empty name is no type; any other name is (no type registry).
    let a = env.action(&token, DEMO, &id, retype_body("", None)).await;
    assert_eq!(
        assert_cinder_fault(&a, 404, "itemNotFound"),
        "Volume type with name  could not be found."
    );
    let a = env
        .action(
            &token,
            DEMO,
            "00000000-0000-4000-8000-000000000000",
            retype_body("General SSD", None),
        )
        .await;
    assert_cinder_fault(&a, 404, "itemNotFound");
    // Another tenant's volume is not found either.
    let partner = env.partner().await;
    let a = env
        .post(
            &partner,
            &format!("{}/{id}/action", env.volumes(PARTNER)),
            retype_body("General SSD", None),
        )
        .await;
    assert_cinder_fault(&a, 404, "itemNotFound");
}
