use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Sha256;

use crate::common::*;

struct Keys<'a> {
    access: &'a str,
    secret: &'a str,
    account: &'a str,
}

const DEMO_KEYS: Keys = Keys {
    access: "demo-access-key",
    secret: "demo-secret-key",
    account: "demo-account",
};

fn sign(keys: &Keys<'_>, method: &str, url: &str, ts: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(keys.secret.as_bytes()).expect("key");
    mac.update(format!("{method}{url}{ts}{}{}Openapi", keys.access, keys.account).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn scp_get(env: &Env, keys: &Keys<'_>, path: &str, ts: i64, tamper: bool) -> Answer {
    let url = format!("{}{path}", env.base);
    let ts = ts.to_string();
    let mut sig = sign(keys, "GET", &url, &ts);
    if tamper {
        sig = sign(keys, "GET", &format!("{url}x"), &ts);
    }
    env.call(
        Method::GET,
        path,
        None,
        None,
        &[
            ("Scp-AccessKey", keys.access),
            ("Scp-Signature", &sig),
            ("Scp-Timestamp", &ts),
            ("Scp-ClientType", "Openapi"),
            ("Scp-AccountId", keys.account),
            ("Scp-Api-Version", "virtualserver 1.0"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_request_shows_an_image_made_from_a_volume() {
    let env = start().await;
    let token = env.demo().await;
    let vol = env.create_volume(&token, DEMO, json!({"size": 2})).await;
    env.wait_volume(&token, DEMO, &vol, "available").await;
    let up = env
        .action(
            &token,
            DEMO,
            &vol,
            json!({"os-volume_upload_image": {"image_name": "from-volume", "disk_format": "qcow2"}}),
        )
        .await;
    let image = up.body["os-volume_upload_image"]["image_id"]
        .as_str()
        .expect("id")
        .to_string();
    env.wait_image(&token, &image, "active").await;

    let path = format!("/scp/v1/images/{image}");
    let a = scp_get(&env, &DEMO_KEYS, &path, now_ms(), false).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for field in [
        "checksum",
        "container_format",
        "created_at",
        "disk_format",
        "file",
        "id",
        "min_disk",
        "min_ram",
        "name",
        "os_hash_algo",
        "os_hash_value",
        "os_hidden",
        "owner",
        "protected",
        "root_device_name",
        "scp_image_type",
        "size",
        "status",
        "updated_at",
        "virtual_size",
        "visibility",
        "volumes",
    ] {
        assert!(a.body.get(field).is_some(), "missing {field}: {}", a.body);
    }
    assert_eq!(a.body["id"], json!(image));
    assert_eq!(a.body["status"], "active");
    assert_eq!(a.body["owner"], DEMO);
    assert_eq!(a.body["name"], "from-volume");

    // The query is part of the signed URL.
    let list = scp_get(
        &env,
        &DEMO_KEYS,
        "/scp/v1/images?name=from-volume",
        now_ms(),
        false,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["images"][0]["id"], json!(image));
    assert_eq!(list.body["count"], 1);

    // The partner's keys do not see the demo tenant's private image.
    let partner = Keys {
        access: "partner-access-key",
        secret: "partner-secret-key",
        account: "partner-account",
    };
    let other = scp_get(&env, &partner, &path, now_ms(), false).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_unknown_keys_and_stale_timestamps_get_401() {
    let env = start().await;
    let path = "/scp/v1/images/00000000-0000-4000-8000-000000000000";
    let ok = scp_get(&env, &DEMO_KEYS, path, now_ms(), false).await;
    assert_eq!(ok.status, StatusCode::NOT_FOUND, "{}", ok.body);

    let tampered = scp_get(&env, &DEMO_KEYS, path, now_ms(), true).await;
    assert_eq!(tampered.status, StatusCode::UNAUTHORIZED);
    let wrong_secret = Keys {
        secret: "guess",
        ..DEMO_KEYS
    };
    let forged = scp_get(&env, &wrong_secret, path, now_ms(), false).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let unknown = Keys {
        access: "nobody",
        ..DEMO_KEYS
    };
    assert_eq!(
        scp_get(&env, &unknown, path, now_ms(), false).await.status,
        StatusCode::UNAUTHORIZED
    );
    let stale = scp_get(&env, &DEMO_KEYS, path, now_ms() - 10 * 60 * 1000, false).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    let future = scp_get(&env, &DEMO_KEYS, path, now_ms() + 10 * 60 * 1000, false).await;
    assert_eq!(future.status, StatusCode::UNAUTHORIZED);
    let unsigned = env.call(Method::GET, path, None, None, &[]).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
}
