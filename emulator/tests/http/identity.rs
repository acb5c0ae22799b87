use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

fn endpoint<'a>(catalog: &'a Value, kind: &str) -> &'a Value {
    catalog
        .as_array()
        .and_then(|c| c.iter().find(|e| e["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} in {catalog}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn nhn_v2_token_has_a_catalog_with_volumev2_and_unversioned_image() {
    let env = start().await;
    let a = env
        .call(
            Method::POST,
            "/identity/v2.0/tokens",
            None,
            Some(json!({"auth": {"tenantId": DEMO, "passwordCredentials": {
                "username": "demo", "password": "demo-password"}}})),
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let access = &a.body["access"];
    assert!(
        access["token"]["id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        access["token"]["expires"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(access["token"]["tenant"]["id"], DEMO);
    assert_eq!(access["user"]["name"], "demo");
    let catalog = &access["serviceCatalog"];
    let vol = &endpoint(catalog, "volumev2")["endpoints"][0];
    assert_eq!(vol["region"], "KR1");
    assert_eq!(
        vol["publicURL"],
        format!("{}/block-storage/v2/{DEMO}", env.base)
    );
    let img = &endpoint(catalog, "image")["endpoints"][0];
    assert_eq!(img["publicURL"], format!("{}/image", env.base));
    assert_eq!(img["region"], "KR1");
}

#[tokio::test(flavor = "multi_thread")]
async fn nhn_v2_token_refuses_a_wrong_password_or_tenant() {
    let env = start().await;
    for auth in [
        json!({"tenantId": DEMO, "passwordCredentials": {"username": "demo", "password": "nope"}}),
        json!({"tenantId": PARTNER, "passwordCredentials": {"username": "demo", "password": "demo-password"}}),
        json!({"tenantId": DEMO, "passwordCredentials": {"username": "ghost", "password": "x"}}),
    ] {
        let a = env
            .call(
                Method::POST,
                "/identity/v2.0/tokens",
                None,
                Some(json!({ "auth": auth })),
                &[],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert_eq!(a.body["error"]["code"], 401);
    }
}

async fn v3(env: &Env, body: Value) -> Answer {
    env.call(
        Method::POST,
        "/identity/v3/auth/tokens",
        None,
        Some(body),
        &[],
    )
    .await
}

fn password_auth(user: Value, scope: Option<Value>) -> Value {
    let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": user}}});
    if let Some(s) = scope {
        auth["scope"] = s;
    }
    json!({ "auth": auth })
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_v3_password_token_by_names() {
    let env = start().await;
    let a = v3(
        &env,
        password_auth(
            json!({"name": "demo", "domain": {"name": "Default"}, "password": "demo-password"}),
            Some(json!({"project": {"name": "demo", "domain": {"name": "Default"}}})),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let token = a.headers["x-subject-token"].to_str().expect("header");
    assert!(!token.is_empty());
    let t = &a.body["token"];
    assert_eq!(t["project"]["id"], DEMO);
    assert_eq!(t["project"]["name"], "demo");
    assert_eq!(t["project"]["domain"]["id"], "default");
    assert!(t["expires_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    for kind in ["volumev3", "block-storage"] {
        let e = &endpoint(&t["catalog"], kind)["endpoints"][0];
        assert_eq!(e["interface"], "public");
        assert_eq!(e["region"], "KR1");
        assert_eq!(e["region_id"], "KR1");
        assert_eq!(e["url"], format!("{}/block-storage/v3/{DEMO}", env.base));
    }
    assert_eq!(
        endpoint(&t["catalog"], "image")["endpoints"][0]["url"],
        format!("{}/image", env.base)
    );
    // The token works on the v3 block-storage path.
    let list = env
        .get(token, &format!("/block-storage/v3/{DEMO}/volumes"))
        .await;
    assert_eq!(list.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_v3_password_token_by_ids_and_validation() {
    let env = start().await;
    let first = v3(
        &env,
        password_auth(
            json!({"name": "partner", "domain": {"id": "default"}, "password": "partner-password"}),
            Some(json!({"project": {"id": PARTNER}})),
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let user_id = first.body["token"]["user"]["id"].as_str().expect("user id");
    let by_id = v3(
        &env,
        password_auth(
            json!({"id": user_id, "password": "partner-password"}),
            Some(json!({"project": {"id": PARTNER}})),
        ),
    )
    .await;
    assert_eq!(by_id.status, StatusCode::CREATED, "{}", by_id.body);
    let token = by_id.headers["x-subject-token"].to_str().expect("header");

    let check = env
        .call(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(token),
            None,
            &[("X-Subject-Token", token)],
        )
        .await;
    assert_eq!(check.status, StatusCode::OK);
    assert_eq!(check.body["token"]["project"]["id"], PARTNER);

    let unknown = env
        .call(
            Method::GET,
            "/identity/v3/auth/tokens",
            Some(token),
            None,
            &[("X-Subject-Token", "nope")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let revoked = env
        .call(
            Method::DELETE,
            "/identity/v3/auth/tokens",
            Some(token),
            None,
            &[("X-Subject-Token", token)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = env
        .get(token, &format!("/block-storage/v3/{PARTNER}/volumes"))
        .await;
    assert_cinder_fault(&after, 401, "error"); // keystonemiddleware answers for Cinder
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_v3_refuses_another_users_project_and_bad_domains() {
    let env = start().await;
    let other_project = v3(
        &env,
        password_auth(
            json!({"name": "demo", "domain": {"name": "Default"}, "password": "demo-password"}),
            Some(json!({"project": {"id": PARTNER}})),
        ),
    )
    .await;
    assert_eq!(other_project.status, StatusCode::UNAUTHORIZED);
    let bad_domain = v3(
        &env,
        password_auth(
            json!({"name": "demo", "domain": {"name": "Elsewhere"}, "password": "demo-password"}),
            None,
        ),
    )
    .await;
    assert_eq!(bad_domain.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad_domain.body["error"]["code"], 401);
    let bad_password = v3(
        &env,
        password_auth(
            json!({"name": "demo", "domain": {"name": "Default"}, "password": "x"}),
            None,
        ),
    )
    .await;
    assert_eq!(bad_password.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_v3_application_credential() {
    let env = start().await;
    let ok = v3(
        &env,
        json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "demo-appcred", "secret": "demo-appcred-secret"}}}}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.body["token"]["project"]["id"], DEMO);
    assert_eq!(
        ok.body["token"]["methods"],
        json!(["application_credential"])
    );
    let bad = v3(
        &env,
        json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "demo-appcred", "secret": "wrong"}}}}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn version_documents_for_identity_block_storage_and_image() {
    let env = start().await;
    let root = env.admin(Method::GET, "/identity", None).await;
    assert_eq!(root.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(root.body["versions"]["values"][0]["id"], "v3.14");
    assert_eq!(
        root.body["versions"]["values"][0]["links"][0]["href"],
        format!("{}/identity/v3/", env.base)
    );
    let v3 = env.admin(Method::GET, "/identity/v3", None).await;
    assert_eq!(v3.status, StatusCode::OK);
    assert_eq!(v3.body["version"]["status"], "stable");
    let bs = env.admin(Method::GET, "/block-storage/", None).await;
    assert_eq!(bs.status, StatusCode::MULTIPLE_CHOICES);
    assert!(bs.body["versions"].as_array().is_some_and(|v| {
        v.iter()
            .any(|x| x["id"] == "v3.0" && x["min_version"] == "3.0")
    }));
    let img = env.admin(Method::GET, "/image/", None).await;
    assert_eq!(img.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(
        img.body["versions"][0]["links"][0]["href"],
        format!("{}/image/v2/", env.base)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_unknown_and_expired_tokens_get_401_in_each_services_shape() {
    let env = start_with(instant().with_token_lifetime(Duration::from_secs(2))).await;
    let vols = env.volumes(DEMO);
    let none = env.call(Method::GET, &vols, None, None, &[]).await;
    assert_cinder_fault(&none, 401, "error");
    assert!(none.headers.contains_key("www-authenticate"));
    let unknown = env.get("not-a-token", &vols).await;
    assert_cinder_fault(&unknown, 401, "error");
    let img = env.get("not-a-token", "/image/v2/images").await;
    assert_glance_error(&img, 401);

    let token = env.demo().await;
    assert_eq!(env.get(&token, &vols).await.status, StatusCode::OK);
    eventually("the token to expire", || async {
        let a = env.get(&token, &vols).await;
        (a.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let expired = env.get(&token, "/image/v2/images").await;
    assert_glance_error(&expired, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_used_on_another_tenants_path_is_refused_like_cinder() {
    let env = start().await;
    let token = env.demo().await;
    let a = env.get(&token, &env.volumes(PARTNER)).await;
    // Cinder (and Cinder's upload-to-image reference's example, docs/sources.md): 400 "Malformed request url".
    let msg = assert_cinder_fault(&a, 400, "badRequest");
    assert_eq!(msg, "Malformed request url");
    let create = env
        .post(
            &token,
            &env.volumes(PARTNER),
            json!({"volume": {"size": 1}}),
        )
        .await;
    assert_cinder_fault(&create, 400, "badRequest");
}
