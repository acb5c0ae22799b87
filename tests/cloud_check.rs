//! `cloudvol cloud check` with the documented example clouds.yaml files,
//! pointed at an in-process emulator.

mod support_cloud;

use std::process::Command;

use cloudvol::cloud::CloudCredentials;
use support_cloud::{DEMO_TENANT, start};

/// Each example file and cloud, with the auth line the check prints: the
/// `auth_type` as the file writes it, and what it means.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "clouds-nhn.yaml",
        "nhn-demo",
        "auth_type v2password (Keystone v2.0 password, NHN Cloud)",
    ),
    (
        "clouds-openstack.yaml",
        "openstack-demo",
        "auth_type password (Keystone v3 password)",
    ),
    (
        "clouds-openstack.yaml",
        "openstack-demo-by-id",
        "auth_type v3password (Keystone v3 password)",
    ),
    (
        "clouds-openstack.yaml",
        "openstack-demo-appcred",
        "auth_type v3applicationcredential (Keystone v3 application credential)",
    ),
    (
        "clouds-scp.yaml",
        "scp-demo",
        "auth_type scp (Samsung Cloud Platform signed requests)",
    ),
];

/// An example file with the emulator's documented default address replaced
/// by this test's emulator.
fn example(file: &str, base: &str) -> String {
    let path = format!("{}/docs/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("http://127.0.0.1:8787", base)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_examples_pass_the_check() {
    let cloud = start().await;
    cloud.admin_image(DEMO_TENANT, "counted").await;
    for (file, name, auth_line) in EXAMPLES {
        let yaml = example(file, &cloud.base);
        let creds = CloudCredentials::from_clouds_yaml(yaml.as_bytes(), name, None).unwrap();
        let mut out = Vec::new();
        cloudvol::cloud::check::check(&cloud.connector, &creds, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{file} {name}: {e}"));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("OK: the credentials work."), "{out}");
        assert!(
            out.lines()
                .any(|l| l == format!("auth:        {auth_line}")),
            "{out}"
        );
        assert!(out.contains("images:      1"), "{out}");
        assert!(
            out.contains(&format!("  image          {}/", cloud.base)),
            "{out}"
        );
        if *name == "scp-demo" {
            assert!(!out.contains("volumes:"), "{out}");
        } else {
            assert!(out.contains("volumes:     0"), "{out}");
            assert!(out.contains(DEMO_TENANT), "{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_exits_non_zero_with_the_reason() {
    let cloud = start().await;
    let dir = std::env::temp_dir().join(format!("cloudvol-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, example("clouds-nhn.yaml", &cloud.base)).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        example("clouds-nhn.yaml", &cloud.base).replace("demo-password", "wrong-password"),
    )
    .unwrap();
    let run = |file: &std::path::Path, name: &str| {
        let cloud_check = Command::new(env!("CARGO_BIN_EXE_cloudvol"))
            .args(["cloud", "check", "--clouds-yaml"])
            .arg(file)
            .args(["--cloud", name])
            .output()
            .unwrap();
        (
            cloud_check.status.success(),
            String::from_utf8_lossy(&cloud_check.stdout).into_owned(),
            String::from_utf8_lossy(&cloud_check.stderr).into_owned(),
        )
    };
    let cloud_base = cloud.base.clone();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || run(&good, "nhn-demo"))
        .await
        .unwrap();
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{cloud_base}/block-storage/v2/{DEMO_TENANT}")));

    let bad2 = bad.clone();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || run(&bad2, "nhn-demo"))
        .await
        .unwrap();
    assert!(!ok, "{stdout}{stderr}");
    assert!(stderr.contains("[InvalidCredentials]"), "{stderr}");
    assert!(!stderr.contains("wrong-password") && !stdout.contains("wrong-password"));

    let (ok, _, stderr) = tokio::task::spawn_blocking(move || run(&bad, "prod"))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("`prod` not found") && stderr.contains("nhn-demo"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
