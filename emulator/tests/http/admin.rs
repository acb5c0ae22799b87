use std::time::{Duration, Instant};

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn attach_and_detach_behave_like_an_instance() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_attach = Duration::from_secs(1);
    config.transitions.volume_detach = Duration::from_secs(1);
    let env = start_with(config).await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.wait_volume(&token, DEMO, &id, "available").await;

    let a = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/attach"),
            Some(json!({"server_id": "3f2a0000-0000-4000-8000-000000000001"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let during = env.volume(&token, DEMO, &id).await;
    assert_eq!(during.body["volume"]["status"], "attaching");
    let v = env.wait_volume(&token, DEMO, &id, "in-use").await;
    let att = &v["attachments"][0];
    assert_eq!(att["server_id"], "3f2a0000-0000-4000-8000-000000000001");
    assert_eq!(att["volume_id"], json!(id));
    assert_eq!(att["id"], json!(id));
    assert_eq!(att["device"], "/dev/vdb");
    assert!(att["attachment_id"].is_string());

    let again = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/attach"),
            Some(json!({})),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);

    let d = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/detach"),
            Some(json!({})),
        )
        .await;
    assert_eq!(d.status, StatusCode::ACCEPTED, "{}", d.body);
    assert_eq!(
        env.volume(&token, DEMO, &id).await.body["volume"]["status"],
        "detaching"
    );
    let v = env.wait_volume(&token, DEMO, &id, "available").await;
    assert_eq!(v["attachments"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn forcing_a_state_cancels_the_pending_transition() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_extend = Duration::from_secs(2);
    config.transitions.image_saving = Duration::from_secs(2);
    let env = start_with(config).await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.wait_volume(&token, DEMO, &id, "available").await;
    let started = Instant::now();
    env.action(&token, DEMO, &id, json!({"os-extend": {"new_size": 2}}))
        .await;
    let forced = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/state"),
            Some(json!({"status": "error_extending"})),
        )
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    assert_eq!(forced.body["volume"]["status"], "error_extending");
    assert_eq!(
        forced.body["volume"]["size"], 1,
        "forced before the extension was due"
    );

    let image = env.create_image(&token, json!({})).await;
    let file = env
        .http
        .put(format!("{}/image/v2/images/{image}/file", env.base))
        .header("X-Auth-Token", &token)
        .header("Content-Type", "application/octet-stream")
        .body("abc")
        .send()
        .await
        .expect("sent");
    assert_eq!(file.status(), StatusCode::NO_CONTENT);
    let killed = env
        .admin(
            Method::POST,
            &format!("/_admin/images/{image}/state"),
            Some(json!({"status": "killed"})),
        )
        .await;
    assert_eq!(killed.body["status"], "killed");

    // Wait until both transitions were long due, then check they never ran.
    eventually("the cancelled transitions' due time", || async {
        (started.elapsed() > Duration::from_millis(2500)).then_some(())
    })
    .await;
    let v = env.volume(&token, DEMO, &id).await;
    assert_eq!(v.body["volume"]["status"], "error_extending");
    assert_eq!(v.body["volume"]["size"], 1);
    let i = env.get(&token, &format!("/image/v2/images/{image}")).await;
    assert_eq!(i.body["status"], "killed");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_faults_with_retry_after_in_each_services_shape() {
    let env = start().await;
    let token = env.demo().await;
    let rule = env
        .admin(
            Method::POST,
            "/_admin/faults",
            Some(
                json!({"method": "GET", "path": "/block-storage/*", "status": 503,
                "retry_after": 7, "count": 2}),
            ),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{}", rule.body);
    let vols = env.volumes(DEMO);
    for _ in 0..2 {
        let a = env.get(&token, &vols).await;
        assert_cinder_fault(&a, 503, "serviceUnavailable");
        assert_eq!(a.headers["retry-after"], "7");
    }
    assert_eq!(env.get(&token, &vols).await.status, StatusCode::OK);
    // A POST never matched the GET rule.
    let listed = env.admin(Method::GET, "/_admin/faults", None).await;
    assert_eq!(listed.body["faults"], json!([]));

    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"path": "/image/v2/images", "status": 413, "retry_after": 1})),
    )
    .await;
    let img = env.get(&token, "/image/v2/images").await;
    assert_glance_error(&img, 413);
    assert_eq!(img.headers["retry-after"], "1");

    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"path": "/identity/*", "status": 500, "count": 5})),
    )
    .await;
    assert_eq!(
        env.admin(Method::GET, "/_admin/faults", None).await.body["faults"][0]["count"],
        5
    );
    assert_eq!(
        env.admin(Method::DELETE, "/_admin/faults", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(env.demo().await.len(), 32);

    let bad = env
        .admin(Method::POST, "/_admin/faults", Some(json!({"path": "/x"})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delay_fault_slows_the_answer() {
    let env = start().await;
    let token = env.demo().await;
    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"path": "/image/*", "delay_ms": 200})),
    )
    .await;
    let t = Instant::now();
    let a = env.get(&token, "/image/v2/images").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_is_an_error_for_the_client() {
    let env = start().await;
    let token = env.demo().await;
    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"method": "GET", "path": "/block-storage/*", "drop_connection": true})),
    )
    .await;
    let url = format!("{}{}", env.base, env.volumes(DEMO));
    let err = env
        .http
        .get(&url)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect_err("the connection is dropped");
    assert!(!err.is_status(), "{err:?}");
    // The server still answers afterwards.
    assert_eq!(
        env.get(&token, &env.volumes(DEMO)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_response_after_the_action_still_created_the_volume() {
    let env = start().await;
    let token = env.demo().await;
    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(
            json!({"method": "POST", "path": "/block-storage/v2/*/volumes",
            "drop_connection": true, "after_action": true}),
        ),
    )
    .await;
    let url = format!("{}{}", env.base, env.volumes(DEMO));
    let result = env
        .http
        .post(&url)
        .header("X-Auth-Token", &token)
        .json(&json!({"volume": {"size": 1, "name": "lost"}}))
        .send()
        .await;
    assert!(result.is_err(), "the answer was lost");
    let all = env.admin(Method::GET, "/_admin/volumes", None).await;
    let vols = all.body["volumes"].as_array().expect("volumes");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["name"], "lost");

    // after_action with a status: the action ran, the client sees the error.
    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"method": "POST", "path": "*/volumes", "status": 502, "after_action": true})),
    )
    .await;
    let a = env
        .post(
            &token,
            &env.volumes(DEMO),
            json!({"volume": {"size": 1, "name": "second"}}),
        )
        .await;
    assert_cinder_fault(&a, 502, "computeFault");
    let all = env.admin(Method::GET, "/_admin/volumes", None).await;
    assert_eq!(all.body["volumes"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_counted_per_route_template() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.volume(&token, DEMO, &id).await;
    env.action(&token, DEMO, &id, json!({"os-extend": {"new_size": 2}}))
        .await;
    let img = env.create_image(&token, json!({})).await;
    env.patch_image(
        &token,
        &img,
        json!([{"op": "add", "path": "/k", "value": "v"}]),
    )
    .await;
    env.call(
        Method::PUT,
        &format!("/image/v2/images/{img}/tags/t"),
        Some(&token),
        None,
        &[],
    )
    .await;
    env.get(&token, &format!("/image/v2/images/{img}/members/{PARTNER}"))
        .await;
    env.get(&token, "/no/such/path").await;
    env.admin(Method::GET, "/_admin/volumes", None).await;

    let counts = env.admin(Method::GET, "/_admin/requests", None).await.body;
    let expect = [
        ("POST /identity/v2.0/tokens", 1),
        ("POST /block-storage/v2/{tenant}/volumes", 1),
        ("GET /block-storage/v2/{tenant}/volumes/{volume_id}", 1),
        (
            "POST /block-storage/v2/{tenant}/volumes/{volume_id}/action",
            1,
        ),
        ("POST /image/v2/images", 1),
        ("PATCH /image/v2/images/{image_id}", 1),
        ("PUT /image/v2/images/{image_id}/tags/{tag}", 1),
        ("GET /image/v2/images/{image_id}/members/{member_id}", 1),
    ];
    for (key, n) in expect {
        assert_eq!(counts[key], n, "{key} in {counts}");
    }
    assert!(
        counts
            .as_object()
            .is_some_and(|m| m.keys().all(|k| !k.contains("_admin"))),
        "{counts}"
    );
    assert_eq!(
        env.admin(Method::DELETE, "/_admin/requests", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    env.volume(&token, DEMO, &id).await;
    let counts = env.admin(Method::GET, "/_admin/requests", None).await.body;
    assert_eq!(
        counts,
        json!({"GET /block-storage/v2/{tenant}/volumes/{volume_id}": 1})
    );
    let writes = counts
        .as_object()
        .map(|m| m.keys().filter(|k| !k.starts_with("GET ")).count());
    assert_eq!(writes, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_forgets_resources_faults_counts_and_tokens() {
    let env = start().await;
    let token = env.demo().await;
    env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.create_image(&token, json!({})).await;
    env.admin(
        Method::POST,
        "/_admin/faults",
        Some(json!({"path": "/nothing", "status": 500})),
    )
    .await;
    let r = env.admin(Method::POST, "/_admin/reset", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let empty = |v: &Value, key: &str| v[key].as_array().is_some_and(Vec::is_empty);
    assert!(empty(
        &env.admin(Method::GET, "/_admin/volumes", None).await.body,
        "volumes"
    ));
    assert!(empty(
        &env.admin(Method::GET, "/_admin/images", None).await.body,
        "images"
    ));
    assert!(empty(
        &env.admin(Method::GET, "/_admin/faults", None).await.body,
        "faults"
    ));
    assert_eq!(
        env.admin(Method::GET, "/_admin/requests", None).await.body,
        json!({})
    );
    assert_eq!(
        env.get(&token, &env.volumes(DEMO)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_the_server() {
    let env = start().await;
    let base = env.base.clone();
    let http = env.http.clone();
    env.emu.shutdown().await;
    assert!(http.get(format!("{base}/identity")).send().await.is_err());
}
