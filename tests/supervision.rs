//! The operator process, supervised: a controller that stops makes `/healthz` fail and the
//! process exit non-zero, giving its Lease up, so that Kubernetes restarts it. Runs the real
//! `cloudvol` binary against the real API server.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use support::harness::DEADLINE;

/// Kills the operator when a test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn status_of(port: u16, path: &str) -> Option<u16> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let answer = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(answer.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_that_stops_fails_healthz_and_ends_the_process() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "supervision").await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("cloudvol-supervision-{namespace}"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let log = dir.join("operator.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudvol"));
    command
        .args(["run", "--namespaces", &namespace])
        .args(["--leader-election-namespace", &namespace])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "text"])
        .env("KUBECONFIG", support::kubeconfig())
        .env("POD_NAME", "supervised")
        .env("CLOUDVOL_TEST_STOP_CONTROLLER", "VolumeImage")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"));
    let mut operator = Running(command.spawn().expect("cloudvol run starts"));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Healthy at first, as a controller only stops a second after it starts.
    support::wait_for(DEADLINE, "/readyz", || async {
        (status_of(port, "/readyz").await == Some(200)).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    support::wait_for(DEADLINE, "the operator to hold the Lease", || {
        let leases = leases.clone();
        async move {
            let lease = leases.get_opt("cloudvol-leader").await.ok()??;
            let holder = lease.spec?.holder_identity?;
            (holder == "supervised").then_some(())
        }
    })
    .await;

    // The VolumeImage controller stops: /healthz says so until the process exits.
    support::wait_for(DEADLINE, "/healthz to fail", || async {
        (status_of(port, "/healthz").await == Some(503)).then_some(())
    })
    .await;
    let status = support::wait_for(DEADLINE, "the operator to exit", || {
        let status = operator.0.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    let text = log_text();
    assert!(
        !status.success(),
        "a process whose controller stopped must exit non-zero ({status}):\n{text}"
    );
    assert!(
        text.contains("the VolumeImage controller stopped"),
        "the log says why:\n{text}"
    );
    // Text logs to a file carry no colour codes, so that grep finds what the docs say.
    assert!(
        !text.contains('\u{1b}'),
        "a redirected text log must have no escape codes:\n{text}"
    );
    let lease = leases.get("cloudvol-leader").await.expect("the Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "the Lease is given up, not kept by a process without controllers: {holder:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_loses_its_lease_sends_no_more_cloud_writes() {
    let h = support::harness::Harness::with_emulator(
        "supervision-fence",
        support::harness::fast_config(),
    )
    .await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("cloudvol-fence-{}", h.namespace));
    std::fs::create_dir_all(&dir).expect("a folder");
    let log = dir.join("operator.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudvol"));
    command
        .args(["run", "--namespaces", &h.namespace])
        .args(["--leader-election-namespace", &h.namespace])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", support::kubeconfig())
        .env("POD_NAME", "first-leader")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"));
    let mut operator = Running(command.spawn().expect("cloudvol run starts"));
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    support::wait_for(DEADLINE, "the operator to hold the Lease", || {
        let leases = leases.clone();
        async move {
            let holder = leases
                .get_opt("cloudvol-leader")
                .await
                .ok()??
                .spec?
                .holder_identity?;
            (holder == "first-leader").then_some(())
        }
    })
    .await;

    // A reconcile in flight: its login takes 6 s. Meanwhile another replica takes the Lease.
    h.admin_post(
        "faults",
        serde_json::json!({"method": "POST", "path": "/identity/*", "delay_ms": 6000}),
    )
    .await;
    h.create::<cloudvol::api::Volume>(support::harness::volume_manifest(
        "data",
        "demo",
        serde_json::json!({"resource": {"size": 1}}),
    ))
    .await;
    support::wait_for(DEADLINE, "the login to be under way", || async {
        let counts = h.admin_get("requests").await;
        (counts["POST /identity/v2.0/tokens"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let stolen = serde_json::json!({"spec": {
        "holderIdentity": "second-leader",
        "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
        "leaseDurationSeconds": 60,
    }});
    leases
        .patch(
            "cloudvol-leader",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&stolen),
        )
        .await
        .expect("the Lease is taken over");

    // The deposed leader stops; its login answers after it noticed, and the create it would
    // have sent next never reaches the cloud.
    let status = support::wait_for(DEADLINE, "the deposed leader to exit", || {
        let status = operator.0.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "a lost Lease ends the process:\n{text}");
    let counts = h.admin_get("requests").await;
    assert_eq!(
        counts["POST /block-storage/v2/{tenant}/volumes"]
            .as_u64()
            .unwrap_or(0),
        0,
        "a deposed leader created a volume:\n{counts}\n{text}"
    );
    assert!(h.cloud_volumes().await.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}
