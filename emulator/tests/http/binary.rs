//! The `cloudvol-emulator` binary itself.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn first_line(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudvol-emulator"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("a line");
    (child, line)
}

#[tokio::test(flavor = "multi_thread")]
async fn prints_its_address_first_and_serves_the_demo_tenants() {
    let (mut child, line) = first_line(&["--listen", "127.0.0.1:0"]).await;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let resp = crate::common::client()
        .post(format!("{base}/identity/v2.0/tokens"))
        .json(
            &serde_json::json!({"auth": {"tenantId": "6cdebe3eb0094910bc41f1d42ebe4cb7",
            "passwordCredentials": {"username": "demo", "password": "demo-password"}}}),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    child.kill().await.expect("killed");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_a_yaml_config() {
    let dir = std::env::temp_dir().join(format!("cloudvol-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "region: KR2\ntenants:\n  - id: 0123456789abcdef0123456789abcdef\n    name: solo\n    users: [{username: solo, password: pw}]\ntransitions: {default: 0}\n",
    )
    .expect("write");
    let path_str = path.to_string_lossy().to_string();
    let (mut child, line) = first_line(&["--listen", "127.0.0.1:0", "--config", &path_str]).await;
    let base = line.trim().trim_start_matches("listening on ").to_string();
    let resp: serde_json::Value = crate::common::client()
        .post(format!("{base}/identity/v2.0/tokens"))
        .json(
            &serde_json::json!({"auth": {"tenantId": "0123456789abcdef0123456789abcdef",
            "passwordCredentials": {"username": "solo", "password": "pw"}}}),
        )
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        resp["access"]["serviceCatalog"][0]["endpoints"][0]["region"],
        "KR2"
    );
    child.kill().await.expect("killed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_non_loopback_address_without_allow_remote() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudvol-emulator"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .await
        .expect("ran");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_bad_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudvol-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/cloudvol.yaml",
        ])
        .output()
        .await
        .expect("ran");
    assert!(!out.status.success());
}
