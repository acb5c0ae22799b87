//! The cloud inventory (docs/design.md §3) against the real API server and the emulator, with
//! the operator in-process: what a round costs, what it triggers, how it adopts a create
//! whose answer was lost, how its failures reach every object, and that two tenants get two
//! inventories. These run in inventory mode whatever `CLOUDVOL_TEST_POLLING` says.

mod support;

use std::time::Duration;

use cloudvol::api::{Volume, VolumeImage};
use cloudvol::controller::Settings;
use cloudvol::controller::inventory::Polling;
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{DEADLINE, Harness, fast_config, image_manifest, volume_manifest};
use support::wait_for;

/// The resync period of these tests: the inventory's full refresh when all is steady.
const RESYNC: Duration = Duration::from_secs(5);

/// An operator in inventory mode with a 5 s resync.
async fn operator(prefix: &str) -> Harness {
    let mut h = Harness::with_emulator(prefix, fast_config()).await;
    let settings = Settings {
        polling: Polling::Inventory,
        resync_period: RESYNC,
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
    h
}

/// A metric's value, 0 when it has no sample yet.
fn metric(h: &Harness, sample: &str) -> u64 {
    h.metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{sample} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn triggers(h: &Harness) -> u64 {
    metric(
        h,
        "cloudvol_inventory_triggers_total{service=\"block-storage\"}",
    )
}

/// Requests the emulator counted on routes ending with `suffix` (method included, e.g.
/// `GET /volumes/detail`).
async fn requests(h: &Harness, method: &str, suffix: &str) -> u64 {
    h.request_counts()
        .await
        .iter()
        .filter(|(route, _)| route.starts_with(&format!("{method} ")) && route.ends_with(suffix))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

async fn create_volumes(h: &Harness, names: &[String], cloud: &str) {
    for name in names {
        h.create::<Volume>(volume_manifest(
            name,
            cloud,
            json!({"resource": {"size": 1}}),
        ))
        .await;
    }
}

async fn wait_ready(h: &Harness, names: &[String]) -> Vec<Volume> {
    let mut ready = Vec::new();
    for name in names {
        ready.push(
            h.wait_condition::<Volume>(name, "Ready", "True", None)
                .await,
        );
    }
    ready
}

/// `n` Volumes of 1 GiB on the demo tenant (`data-0`, ...), created and `Ready`: their names,
/// and the Volumes as they were when `Ready`.
async fn ready_volumes(h: &Harness, n: usize) -> (Vec<String>, Vec<Volume>) {
    let all = names("data", n);
    create_volumes(h, &all, "demo").await;
    let ready = wait_ready(h, &all).await;
    (all, ready)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn id_of(volume: &Volume) -> String {
    volume
        .status
        .as_ref()
        .and_then(|s| s.id.clone())
        .expect("status.id is set")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_seen_through_the_inventory_triggers_only_its_object() {
    let h = operator("inv-trigger").await;
    let (all, ready) = ready_volumes(&h, 5).await;
    // Let the creation's rounds pass: a full refresh finds nothing new, and triggers nothing.
    tokio::time::sleep(RESYNC + Duration::from_secs(1)).await;
    let before = triggers(&h);
    tokio::time::sleep(RESYNC + Duration::from_secs(1)).await;
    assert_eq!(
        triggers(&h),
        before,
        "rounds that find nothing changed trigger nothing"
    );

    // The cloud turns one volume to error behind cloudvol's back.
    let changed = id_of(&ready[2]);
    h.admin_post(
        &format!("volumes/{changed}/state"),
        json!({"status": "error"}),
    )
    .await;
    h.wait_condition::<Volume>(&all[2], "Stalled", "True", Some("Error"))
        .await;
    assert_eq!(
        triggers(&h),
        before + 1,
        "exactly the object of the volume that changed is triggered"
    );
    for (i, name) in all.iter().enumerate().filter(|(i, _)| *i != 2) {
        let volume: Volume = h.api().get(name).await.expect("the Volume");
        assert!(
            support::harness::condition_matches(
                &serde_json::to_value(&volume).expect("JSON"),
                "Ready",
                "True",
                None
            ),
            "volume {i} is still Ready"
        );
    }
    assert_eq!(
        requests(&h, "GET", "/volumes/{volume_id}").await,
        0,
        "no object read its own volume"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn n_objects_cost_at_most_the_stated_calls_per_round() {
    const N: usize = 20;
    let h = operator("inv-cost").await;
    let all = names("data", N);
    let start = std::time::Instant::now();
    create_volumes(&h, &all, "demo").await;
    wait_ready(&h, &all).await;
    let creating = start.elapsed();

    // Creating: one POST per volume, lists, no GET per volume. A list round comes at most
    // every 200 ms (the tests' --inventory-interval).
    assert_eq!(requests(&h, "POST", "/volumes").await, N as u64);
    assert_eq!(requests(&h, "GET", "/volumes/{volume_id}").await, 0);
    let lists = requests(&h, "GET", "/volumes/detail").await;
    let rounds = (creating.as_millis() / 200) as u64 + 2;
    assert!(
        lists <= rounds,
        "{lists} lists in {creating:?}: more than one per round ({rounds})"
    );

    // Steady: one list page per resync period for all N, nothing else.
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.admin_delete("requests").await;
    let window = RESYNC * 3;
    tokio::time::sleep(window).await;
    let counts = h.request_counts().await;
    let block_storage: u64 = counts
        .iter()
        .filter(|(route, _)| route.contains("/block-storage/"))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    let lists = requests(&h, "GET", "/volumes/detail").await;
    assert!(
        (2..=4).contains(&lists),
        "{lists} lists in {window:?} with a {RESYNC:?} resync: {counts:?}"
    );
    assert_eq!(
        block_storage, lists,
        "the lists are all that is asked for: {counts:?}"
    );
}

/// Volumes in the emulator carrying the object's UID mark.
async fn marked(h: &Harness, volume: &Volume) -> Vec<Value> {
    let uid = volume.uid().expect("a uid");
    h.cloud_volumes()
        .await
        .into_iter()
        .filter(|v| v["metadata"]["cloudvol.dev/uid"] == uid.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_is_adopted_exactly_once() {
    const N: usize = 3;
    let h = operator("inv-lost").await;
    // Every create reaches the cloud, and every answer is lost.
    h.admin_post(
        "faults",
        json!({"method": "POST", "path": "/block-storage/*/volumes", "drop_connection": true, "after_action": true, "count": N}),
    )
    .await;
    let (_, ready) = ready_volumes(&h, N).await;
    for volume in &ready {
        let made = marked(&h, volume).await;
        assert_eq!(made.len(), 1, "exactly one cloud volume: {made:?}");
        assert_eq!(made[0]["id"], id_of(volume).as_str(), "and it is adopted");
    }
    assert_eq!(
        requests(&h, "POST", "/volumes").await,
        N as u64,
        "no create was repeated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_failures_are_reported_on_every_dependent_object() {
    let h = operator("inv-fail").await;
    let (all, _) = ready_volumes(&h, 3).await;

    h.admin_post(
        "faults",
        json!({"method": "GET", "path": "/block-storage/*/volumes/detail", "status": 503, "count": 100_000}),
    )
    .await;
    h.admin_delete("requests").await;
    let failing = std::time::Instant::now();
    for name in &all {
        let volume: Volume = h
            .wait_condition(name, "Reconciling", "True", Some("CloudUnavailable"))
            .await;
        let message = &volume.status.expect("a status").conditions[0].message;
        assert!(message.contains("cannot read the volume"), "{message}");
    }
    // The inventory backs off as one (200 ms doubling, in these tests): its lists, each tried
    // up to 5 times by the transport, not one per object.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seconds = failing.elapsed().as_secs_f64();
    let failed = metric(
        &h,
        "cloudvol_inventory_rounds_total{service=\"block-storage\",plan=\"list\",result=\"error\"}",
    );
    let backoff_rounds = (seconds / 0.2).log2().ceil() as u64 + 2;
    assert!(
        (1..=backoff_rounds).contains(&failed),
        "{failed} failed rounds in {seconds:.1} s"
    );
    let lists = requests(&h, "GET", "/volumes/detail").await;
    assert!(
        lists <= failed * 5,
        "{lists} list requests for {failed} rounds"
    );
    assert_eq!(requests(&h, "GET", "/volumes/{volume_id}").await, 0);

    h.admin_delete("faults").await;
    wait_ready(&h, &all).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_in_two_tenants_use_two_inventories() {
    let h = operator("inv-tenants").await;
    let demo = names("demo", 2);
    let partner = names("partner", 2);
    create_volumes(&h, &demo, "demo").await;
    create_volumes(&h, &partner, "partner").await;
    let ready = wait_ready(&h, &[demo, partner].concat()).await;
    assert_eq!(
        metric(&h, "cloudvol_inventories{service=\"block-storage\"}"),
        2
    );
    let volumes = h.cloud_volumes().await;
    for volume in &ready {
        let id = id_of(volume);
        let tenant = if volume.name_any().starts_with("demo") {
            support::harness::DEMO_TENANT
        } else {
            support::harness::PARTNER_TENANT
        };
        let cloud = volumes
            .iter()
            .find(|v| v["id"] == id.as_str())
            .expect("the volume exists");
        assert_eq!(
            cloud["os-vol-tenant-attr:tenant_id"],
            tenant,
            "{} is in its own tenant",
            volume.name_any()
        );
    }
    wait_for(DEADLINE, "both inventories to have listed", || async {
        (requests(&h, "GET", "/volumes/detail").await >= 2).then_some(())
    })
    .await;
}

/// A volume deleted between two pages of a list takes the next page's marker with it (404,
/// `Marker ... could not be found`); the list starts again instead of failing the round, which
/// would report an error on every object of the tenant.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_whose_marker_vanished_starts_again() {
    let h = operator("inv-marker").await;
    let (all, _) = ready_volumes(&h, 2).await;
    let fault = json!({"method": "GET", "path": "/block-storage/*/volumes/detail", "status": 404,
                       "message": "Marker 0c6dd4a1-6a5e-4d35-a3e6-0b8e6d2e9d9a could not be found."});
    a_vanished_marker_fails_no_round(&h, "block-storage", fault).await;
    wait_ready(&h, &all).await;
}

/// The same for images: Glance answers 400, `Invalid marker. Image ... could not be found.`
#[tokio::test(flavor = "multi_thread")]
async fn an_image_list_whose_marker_vanished_starts_again() {
    let h = operator("inv-img-marker").await;
    h.admin_post(
        "images",
        json!({"owner": support::harness::DEMO_TENANT, "name": "base-os", "visibility": "private",
               "disk_format": "qcow2", "container_format": "bare"}),
    )
    .await;
    h.create::<VolumeImage>(image_manifest(
        "base",
        "demo",
        json!({"managementPolicy": "unmanaged", "import": {"filter": {"name": "base-os"}}}),
    ))
    .await;
    h.wait_condition::<VolumeImage>("base", "Ready", "True", None)
        .await;
    let fault = json!({"method": "GET", "path": "/image/v2/images", "status": 400,
                       "message": "Invalid marker. Image 0c6dd4a1-6a5e-4d35-a3e6-0b8e6d2e9d9a could not be found."});
    a_vanished_marker_fails_no_round(&h, "image", fault).await;
    h.wait_condition::<VolumeImage>("base", "Ready", "True", None)
        .await;
}

/// Injects `fault` (a list's answer to a vanished marker) once, and checks that the inventory
/// of `service` failed no round: the one that met the fault, nor any since. Rounds of one
/// inventory run one after the other, so once a round has ended after the fault was used,
/// the round that used it has counted its result.
async fn a_vanished_marker_fails_no_round(h: &Harness, service: &str, fault: Value) {
    let rounds = |result: &str| {
        format!(
            "cloudvol_inventory_rounds_total{{service=\"{service}\",plan=\"list\",result=\"{result}\"}}"
        )
    };
    h.admin_post("faults", fault).await;
    wait_for(DEADLINE, "the fault to be used", || async {
        h.faults_left().await.is_empty().then_some(())
    })
    .await;
    let used = metric(h, &rounds("ok"));
    wait_for(
        DEADLINE,
        "a list round after the one that met the fault",
        || async { (metric(h, &rounds("ok")) > used).then_some(()) },
    )
    .await;
    assert_eq!(metric(h, &rounds("error")), 0, "no {service} round failed");
}
