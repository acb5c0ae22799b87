//! Isolation (docs/design.md §10): nothing one object, tenant or cloud does stops the operator
//! for the others. Against the real API server and the emulator, with the operator in-process.

mod support;

use std::sync::Arc;

use cloudvol::api::Volume;
use cloudvol::controller::{Context, run_kind, volume};
use kube::ResourceExt;
use serde_json::json;

use support::harness::{Harness, fast_config, volume_manifest};

/// A Volume reconcile that panics for the object named `boom` (a stand-in for any bug), and
/// is the real one for every other object.
async fn panics_on_boom(
    object: Arc<Volume>,
    ctx: Arc<Context>,
) -> Result<kube::runtime::controller::Action, cloudvol::controller::Error> {
    if object.name_any() == "boom" {
        panic!("injected by the test");
    }
    volume::reconcile(object, ctx).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_one_reconcile_stalls_that_object_only() {
    let mut h = Harness::with_emulator("iso-panic", fast_config()).await;
    h.start_operator_with(h.settings(), |ctx, shutdown| {
        Box::pin(run_kind(ctx, panics_on_boom, volume::relations, shutdown))
    })
    .await;
    h.create::<Volume>(volume_manifest(
        "boom",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;

    let boom: Volume = h
        .wait_condition("boom", "Stalled", "True", Some("InternalError"))
        .await;
    let message = &boom.status.expect("a status").conditions[0].message;
    assert!(
        message.contains("injected by the test") && message.contains("report it"),
        "the message names the panic and asks for a report: {message}"
    );
    let note = h.wait_event("boom", "InternalError").await;
    assert!(note.contains("bug in cloudvol"), "{note}");
    h.wait_condition::<Volume>("data", "Ready", "True", None)
        .await;

    // The controller goes on: a Volume made after the panic is served too, and the panics are
    // counted (the backoff makes the panicking object come back more than once).
    h.create::<Volume>(volume_manifest(
        "after",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    h.wait_condition::<Volume>("after", "Ready", "True", None)
        .await;
    let panics = h
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("cloudvol_reconcile_panics_total{kind=\"Volume\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        panics >= 1,
        "cloudvol_reconcile_panics_total counts the panic"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_stuck_creating_past_its_deadline_stalls_and_recovers_by_itself() {
    // The cloud never finishes by itself; the operator allows any state 2 s.
    let config =
        cloudvol_emulator::Config::demo().with_transitions(std::time::Duration::from_secs(3600));
    let mut h = Harness::with_emulator("iso-deadline", config).await;
    let settings = cloudvol::controller::Settings {
        progress_deadline: Some(std::time::Duration::from_secs(2)),
        ..h.settings()
    };
    h.start_operator_with(settings, |ctx, shutdown| {
        Box::pin(async move {
            cloudvol::controller::run(ctx, shutdown)
                .await
                .expect("the controllers run until the test ends");
        })
    })
    .await;
    h.create::<Volume>(volume_manifest(
        "slow",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let api = h.api::<Volume>();
    let id = support::wait_for(support::harness::DEADLINE, "the volume's id", || {
        let api = api.clone();
        async move { api.get("slow").await.ok()?.status?.id }
    })
    .await;
    let stalled: Volume = h
        .wait_condition("slow", "Stalled", "True", Some("ProgressDeadlineExceeded"))
        .await;
    let message = &stalled.status.expect("a status").conditions[0].message;
    assert!(
        message.contains(&format!("volume {id} has been creating for")),
        "{message}"
    );
    // The cloud finishes after all: the object turns Ready without anyone touching it.
    h.admin_post(
        &format!("volumes/{id}/state"),
        json!({"status": "available"}),
    )
    .await;
    h.wait_condition::<Volume>("slow", "Ready", "True", Some("Available"))
        .await;
}

/// Seconds from creating Volume `name` on the `demo` cloud to its `Ready`.
async fn seconds_to_ready(h: &Harness, name: &str) -> f64 {
    let start = std::time::Instant::now();
    h.ready_volume(name).await;
    start.elapsed().as_secs_f64()
}

fn counter(h: &Harness, line: &str) -> u64 {
    h.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_that_hangs_does_not_hold_up_another_tenant() {
    let mut h = Harness::with_emulator("iso-fair", fast_config()).await;
    // The operator's own defaults: 64 reconciles per kind, 8 per cloud scope.
    let defaults = cloudvol::controller::Settings::default();
    let settings = cloudvol::controller::Settings {
        concurrency: defaults.concurrency,
        cloud_concurrency: defaults.cloud_concurrency,
        ..h.settings()
    };
    h.start_operator_with(settings, |ctx, shutdown| {
        Box::pin(async move {
            cloudvol::controller::run(ctx, shutdown)
                .await
                .expect("the controllers run until the test ends");
        })
    })
    .await;
    let alone = seconds_to_ready(&h, "alone").await;

    // A second cloud whose every answer takes a minute, with more Volumes on it than the
    // operator has reconcile slots.
    let slow = cloudvol_emulator::start(fast_config(), "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the slow emulator starts");
    let base = slow.base_url();
    reqwest::Client::new()
        .post(format!("{base}/_admin/faults"))
        .json(&json!({"path": "*", "delay_ms": 60_000, "count": 100_000}))
        .send()
        .await
        .expect("the slow emulator answers")
        .error_for_status()
        .expect("the fault is added");
    h.put_secret(
        "slow-cloud",
        &format!(
            "clouds:\n  slow:\n    auth_type: v2password\n    auth:\n      auth_url: {base}/identity/v2.0\n      tenant_id: {}\n      username: demo\n      password: demo-password\n    region_name: KR1\n",
            support::harness::DEMO_TENANT
        ),
    )
    .await;
    let slow_objects = defaults.concurrency as usize + 16;
    for n in 0..slow_objects {
        let mut manifest = volume_manifest(
            &format!("slow-{n}"),
            "slow",
            json!({"resource": {"size": 1}}),
        );
        manifest["spec"]["cloudCredentialsRef"]["secretName"] = json!("slow-cloud");
        h.create::<Volume>(manifest).await;
    }
    // The slow scope is full: its other reconciles are being put back.
    support::wait_for(
        support::harness::DEADLINE,
        "reconciles of the slow cloud to be deferred",
        || async {
            (counter(&h, "cloudvol_reconciles_deferred_total{kind=\"Volume\"} ") > 0).then_some(())
        },
    )
    .await;

    let beside = seconds_to_ready(&h, "beside").await;
    println!(
        "a healthy Volume: {alone:.1} s alone, {beside:.1} s beside {slow_objects} Volumes on a hanging cloud"
    );
    assert!(
        beside < alone + 5.0,
        "the healthy tenant waited for the slow one: {beside:.1} s against {alone:.1} s alone"
    );
    drop(slow);
}

/// Logins the emulator answered, of both identity versions.
async fn logins(h: &Harness) -> u64 {
    let counts = h.admin_get("requests").await;
    [
        "POST /identity/v2.0/tokens",
        "POST /identity/v3/auth/tokens",
    ]
    .iter()
    .map(|route| counts[*route].as_u64().unwrap_or(0))
    .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn many_objects_with_a_wrong_password_log_in_once_per_backoff_step() {
    let mut h = Harness::with_emulator("iso-login", fast_config()).await;
    // Closer to the operator's defaults than the harness's: more reconciles at once, and a
    // Stalled object not looked at again every second.
    let settings = cloudvol::controller::Settings {
        concurrency: 16,
        backoff: cloudvol::controller::requeue::Backoff {
            base: std::time::Duration::from_millis(500),
            cap: std::time::Duration::from_secs(10),
        },
        ..h.settings()
    };
    h.start_operator_with(settings, |ctx, shutdown| {
        Box::pin(async move {
            cloudvol::controller::run(ctx, shutdown)
                .await
                .expect("the controllers run until the test ends");
        })
    })
    .await;
    let objects = 100;
    let start = std::time::Instant::now();
    for n in 0..objects {
        h.create::<Volume>(volume_manifest(
            &format!("bad-{n}"),
            "wrong-password",
            json!({"resource": {"size": 1}}),
        ))
        .await;
    }
    for n in 0..objects {
        h.wait_condition::<Volume>(
            &format!("bad-{n}"),
            "Stalled",
            "True",
            Some("InvalidCredentials"),
        )
        .await;
    }
    let attempts = logins(&h).await;
    let elapsed = start.elapsed();
    // The backoff starts at 5 s and doubles: after t seconds at most 1 + the steps begun.
    let steps = [5u64, 15, 35, 75, 155]
        .iter()
        .filter(|s| elapsed.as_secs() >= **s)
        .count() as u64;
    println!("{objects} objects with a wrong password: {attempts} login attempts in {elapsed:?}");
    assert!(
        attempts <= 1 + steps,
        "{attempts} logins for {objects} objects in {elapsed:?}: at most one per backoff step"
    );
    let message = h
        .api::<Volume>()
        .get("bad-0")
        .await
        .expect("the Volume")
        .status
        .expect("a status")
        .conditions[0]
        .message
        .clone();
    assert!(
        message.contains("Secret") && message.contains("cloud \"wrong-password\""),
        "the message names the Secret and the cloud: {message}"
    );

    // New credentials (another content hash) are tried at once, not after the backoff.
    let fixed = h
        .clouds_yaml()
        .replace("password: not-the-password", "password: demo-password");
    h.put_secret(support::harness::SECRET, &fixed).await;
    h.patch::<Volume>(
        "bad-0",
        json!({"metadata": {"annotations": {"example.com/look": "now"}}}),
    )
    .await;
    h.wait_condition::<Volume>("bad-0", "Ready", "True", None)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_failure_is_stalled_with_its_cause() {
    let mut h = Harness::with_emulator("iso-tls", fast_config()).await;
    h.start_operator().await;
    // https to a server that speaks plain HTTP: no retry fixes that, a person must.
    let https = h.emulator.base_url().replace("http://", "https://");
    h.put_secret(
        "tls-cloud",
        &format!(
            "clouds:\n  tls:\n    auth_type: v2password\n    auth:\n      auth_url: {https}/identity/v2.0\n      tenant_id: {}\n      username: demo\n      password: demo-password\n    region_name: KR1\n",
            support::harness::DEMO_TENANT
        ),
    )
    .await;
    let mut manifest = volume_manifest("tls", "tls", json!({"resource": {"size": 1}}));
    manifest["spec"]["cloudCredentialsRef"]["secretName"] = json!("tls-cloud");
    h.create::<Volume>(manifest).await;
    let stalled: Volume = h
        .wait_condition("tls", "Stalled", "True", Some("TLSFailure"))
        .await;
    let message = &stalled.status.expect("a status").conditions[0].message;
    assert!(message.contains("127.0.0.1"), "names the host: {message}");
    assert!(message.contains("tls-cloud"), "names the Secret: {message}");
}
