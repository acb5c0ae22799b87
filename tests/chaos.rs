//! The chaos soak (docs/crash-safety.md): Volumes, VolumeImages made from some of them and
//! ImageShares of some of those, against the real API server and the emulator, while the
//! emulator's admin API injects random faults and the real operator binary (`cloudvol run`) is
//! killed with SIGKILL and started again at random moments, during creation and then during
//! deletion. It ends with one line,
//!
//! ```text
//! chaos seed=… cycles=… objects=… kills=… faults=… fired=… duplicates=0 leaks=0 stuck=0 not_ready=0 panics=0 foreign=0 exits=0 stalls=…
//! ```
//!
//! and fails when any of the counts from `duplicates` to `exits` is not 0 (`stalls`, objects
//! that went Stalled on the way, is listed but does not fail the run). `make chaos` runs it
//! (`hack/chaos.sh`); the knobs are environment variables, read by [`Knobs::from_env`]. The seed
//! fixes the schedule (which faults, which kills, when, in which order objects are made and
//! deleted), so a failing run can be run again.
//!
//! A cycle: every object is created at once; for `CHAOS_PHASE` faults and kills go on, and half
//! of the Volumes are grown meanwhile; then the chaos stops (the operator runs, the faults left
//! are removed) and every object must become Ready within `CHAOS_SETTLE`. The cloud is then
//! checked (duplicates, strays). Every object is deleted at once under the same chaos, must be
//! gone within `CHAOS_SETTLE`, and nothing cloudvol made may be left. Decoys (a volume and
//! images of the same names, in the same tenant, one shared with the partner) must be exactly as
//! they were at the end.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use support::harness::{DEMO_TENANT, Harness, PARTNER_TENANT, SECRET, condition_matches};

/// A tenant that exists only as a member ID (Glance does not check member IDs).
const OTHER_TENANT: &str = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";

// --- knobs ----------------------------------------------------------------------------------

/// What a run does; each is an environment variable (`CHAOS_SEED`, ...).
#[derive(Debug)]
struct Knobs {
    /// Fixes the schedule. Default: from the clock, printed.
    seed: u64,
    /// Volumes per cycle.
    volumes: usize,
    /// VolumeImages per cycle, one from each of the first Volumes (all named `golden`).
    images: usize,
    /// ImageShares per cycle, one of each of the first VolumeImages, shared with the partner.
    shares: usize,
    /// ImageShares per cycle of images the test puts into the cloud itself, by `imageID`.
    id_shares: usize,
    /// Run cycles until this much time has passed (at least one cycle).
    duration: Duration,
    /// How long the chaos lasts in each phase (creation, deletion).
    phase: Duration,
    /// SIGKILLs of the operator per phase, at random moments.
    kills: usize,
    /// SIGKILLs per phase while the cloud holds the answer of a write it acted on (a rule
    /// that delays a write's answer; the kill comes as soon as a request uses it).
    crashes: usize,
    /// Longest time the operator stays down after a kill.
    down: Duration,
    /// Fault rules per phase.
    faults: usize,
    /// How long objects get to become Ready, or gone, once the chaos stops.
    settle: Duration,
    /// The emulator's transitions (creating, uploading, deleting...).
    transition: Duration,
    /// The operator's `--resync-period`.
    resync: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        _ => default,
    }
}

fn env_duration(name: &str, default: &str) -> Duration {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    let text = if text.trim().is_empty() {
        default
    } else {
        text.trim()
    };
    let seconds = text.chars().all(|c| c.is_ascii_digit());
    let text = if seconds {
        format!("{text}s")
    } else {
        text.to_string()
    };
    cloudvol::api::parse_duration(&text)
        .unwrap_or_else(|err| panic!("{name}={text:?} is not a duration: {err}"))
}

impl Knobs {
    fn from_env() -> Knobs {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let volumes = env_or("CHAOS_VOLUMES", 8usize).max(1);
        let images = env_or("CHAOS_IMAGES", 4usize).min(volumes);
        let shares = env_or("CHAOS_SHARES", 2usize).min(images);
        Knobs {
            seed: env_or("CHAOS_SEED", clock % 1_000_000),
            volumes,
            images,
            shares,
            id_shares: env_or("CHAOS_ID_SHARES", 2usize),
            duration: env_duration("CHAOS_DURATION", "0s"),
            phase: env_duration("CHAOS_PHASE", "15s"),
            kills: env_or("CHAOS_KILLS", 3usize),
            crashes: env_or("CHAOS_CRASHES", 3usize),
            down: env_duration("CHAOS_DOWN", "1500ms"),
            faults: env_or("CHAOS_FAULTS", 30usize),
            settle: env_duration("CHAOS_SETTLE", "180s"),
            transition: env_duration("CHAOS_TRANSITION", "300ms"),
            resync: std::env::var("CHAOS_RESYNC").unwrap_or_else(|_| "30s".into()),
        }
    }
}

// --- the schedule -----------------------------------------------------------------------------

/// The requests a fault rule may hit, weighted: every write cloudvol makes, and the reads it
/// decides by.
const TARGETS: &[(&str, &str, u32)] = &[
    ("POST", "/block-storage/*/volumes", 3),
    ("POST", "/block-storage/*/volumes/*/action", 3),
    ("PUT", "/block-storage/*/volumes/*", 1),
    ("DELETE", "/block-storage/*/volumes/*", 2),
    ("PATCH", "/image/v2/images/*", 2),
    ("DELETE", "/image/v2/images/*", 2),
    ("POST", "/image/v2/images/*/members", 2),
    ("PUT", "/image/v2/images/*/members/*", 1),
    ("DELETE", "/image/v2/images/*/members/*", 2),
    ("GET", "/block-storage/*/volumes/detail", 2),
    ("GET", "/block-storage/*/volumes/*", 1),
    ("GET", "/image/v2/images", 2),
    ("GET", "/image/v2/images/*", 1),
    ("POST", "/identity/v2.0/tokens", 1),
];

/// A target drawn by weight; `writes` leaves the reads out.
fn target(rng: &mut StdRng, writes: bool) -> (&'static str, &'static str) {
    let eligible: Vec<&(&str, &str, u32)> = TARGETS
        .iter()
        .filter(|(method, path, _)| !writes || (*method != "GET" && !path.contains("identity")))
        .collect();
    let total: u32 = eligible.iter().map(|t| t.2).sum();
    let mut pick = rng.random_range(0..total);
    for (method, path, weight) in eligible {
        if pick < *weight {
            return (method, path);
        }
        pick -= weight;
    }
    unreachable!("a pick below the total weight")
}

/// One thing the chaos does, at an offset from the start of its phase.
#[derive(Debug, Clone)]
enum Event {
    /// Add this fault rule.
    Fault(Value),
    /// SIGKILL the operator, and start it again after this long.
    Kill(Duration),
    /// Add this rule, which holds the answer of a write the cloud acted on; SIGKILL the
    /// operator as soon as it is used, and start it again after this long.
    Crash(Value, Duration),
    /// Grow this Volume (creation phase only).
    Grow(usize),
}

fn random_fault(rng: &mut StdRng) -> Value {
    let (method, path) = target(rng, false);
    let count = rng.random_range(1..=3u64);
    let mut rule = json!({"method": method, "path": path, "count": count});
    match rng.random_range(0..7) {
        0 => rule["status"] = json!(500),
        1 => rule["status"] = json!(503),
        2 => rule["drop_connection"] = json!(true),
        3 => {
            rule["drop_connection"] = json!(true);
            rule["after_action"] = json!(true);
        }
        4 => {
            rule["status"] = json!(if rng.random_bool(0.5) { 500 } else { 503 });
            rule["after_action"] = json!(true);
        }
        // A slow answer after the cloud acted: the window a kill lands in.
        5 => {
            rule["delay_ms"] = json!(rng.random_range(500..4000u64));
            rule["after_action"] = json!(true);
        }
        _ => rule["delay_ms"] = json!(rng.random_range(200..2000u64)),
    }
    rule
}

/// A phase's events, sorted by offset.
fn schedule(rng: &mut StdRng, knobs: &Knobs, grow: &[usize]) -> Vec<(Duration, Event)> {
    let phase = knobs.phase.as_millis().max(1) as f64;
    // Denser early in the phase, where the burst of creates (or deletes) is.
    let at = |rng: &mut StdRng| {
        let u: f64 = rng.random();
        Duration::from_millis((phase * u * u) as u64)
    };
    let mut events = Vec::new();
    for _ in 0..knobs.faults {
        let when = at(rng);
        events.push((when, Event::Fault(random_fault(rng))));
    }
    for k in 0..knobs.crashes {
        let when = at(rng);
        let (method, path) = target(rng, true);
        // A delay unique in the run marks the rule, so that the soak sees when it is used.
        let marker = 5000 + rng.random_range(0..1000u64) * 100 + k as u64;
        let rule = json!({"method": method, "path": path, "count": 1,
                          "after_action": true, "delay_ms": marker});
        let down = Duration::from_millis(rng.random_range(0..=knobs.down.as_millis() as u64));
        events.push((when, Event::Crash(rule, down)));
    }
    for _ in 0..knobs.kills {
        let when = at(rng);
        let down = Duration::from_millis(rng.random_range(0..=knobs.down.as_millis() as u64));
        events.push((when, Event::Kill(down)));
    }
    for &i in grow {
        let when = at(rng);
        events.push((when, Event::Grow(i)));
    }
    events.sort_by_key(|(when, _)| *when);
    events
}

// --- the operator -----------------------------------------------------------------------------

/// The real operator binary, started and killed as a pod would be.
struct Operator {
    namespace: String,
    resync: String,
    log: PathBuf,
    child: Option<Child>,
    port: u16,
    /// The highest `cloudvol_reconcile_panics_total` the running process reported.
    panics_now: u64,
    /// The same, summed over processes that are gone.
    panics_before: u64,
    kills: usize,
    /// Of those, the kills while a write's answer was held.
    crash_kills: usize,
    /// Processes that ended without being killed.
    exits: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Operator {
    fn start(&mut self) {
        assert!(self.child.is_none(), "the operator is already running");
        self.port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_cloudvol"))
            .args(["run", "--namespaces", &self.namespace])
            .args(["--leader-election-namespace", &self.namespace])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--log-format", "text", "--resync-period", &self.resync])
            .env("KUBECONFIG", support::kubeconfig())
            // The same identity after a restart, as a StatefulSet pod would have: the new
            // process takes the Lease at once.
            .env("POD_NAME", "chaos")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cloudvol run starts");
        self.child = Some(child);
        self.panics_now = 0;
    }

    /// Reads the running process's panic counter, best effort.
    async fn scrape(&mut self) {
        if self.child.is_none() {
            return;
        }
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let Ok(answer) = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
        else {
            return;
        };
        let text = answer.text().await.unwrap_or_default();
        let panics: u64 = text
            .lines()
            .filter(|l| l.starts_with("cloudvol_reconcile_panics_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|n| n as u64)
            .sum();
        self.panics_now = self.panics_now.max(panics);
    }

    /// Notes a process that ended by itself.
    fn reap(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exits
                .push(format!("the operator exited by itself: {status}"));
            self.child = None;
            self.panics_before += self.panics_now;
            self.panics_now = 0;
        }
    }

    async fn kill(&mut self) {
        self.reap();
        self.scrape().await;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            self.kills += 1;
            self.panics_before += self.panics_now;
            self.panics_now = 0;
        }
    }

    /// Makes sure one process runs.
    fn ensure_running(&mut self) {
        self.reap();
        if self.child.is_none() {
            self.start();
        }
    }

    fn panics(&self) -> u64 {
        self.panics_before + self.panics_now
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- the objects ------------------------------------------------------------------------------

fn volume_name(cycle: usize, i: usize) -> String {
    format!("c{cycle}-vol-{i}")
}

fn image_name(cycle: usize, i: usize) -> String {
    format!("c{cycle}-img-{i}")
}

fn share_name(cycle: usize, i: usize) -> String {
    format!("c{cycle}-share-{i}")
}

fn credentials() -> Value {
    json!({"secretName": SECRET, "cloudName": "demo"})
}

fn volume_manifest(cycle: usize, i: usize) -> Value {
    json!({
        "apiVersion": "cloudvol.dev/v1alpha1", "kind": "Volume",
        "metadata": {"name": volume_name(cycle, i)},
        "spec": {"cloudCredentialsRef": credentials(),
                 "resource": {"name": format!("data-{i}"), "size": 1}},
    })
}

/// Every VolumeImage names its image `golden`: the names collide on purpose.
fn image_manifest(cycle: usize, i: usize) -> Value {
    json!({
        "apiVersion": "cloudvol.dev/v1alpha1", "kind": "VolumeImage",
        "metadata": {"name": image_name(cycle, i)},
        "spec": {"cloudCredentialsRef": credentials(),
                 "resource": {"name": "golden", "volumeRef": {"name": volume_name(cycle, i)}}},
    })
}

/// An ImageShare of an image cloudvol did not make, by id, with the partner (accepting) and a
/// tenant that only gets the share.
fn id_share_manifest(name: &str, image_id: &str) -> Value {
    json!({
        "apiVersion": "cloudvol.dev/v1alpha1", "kind": "ImageShare",
        "metadata": {"name": name},
        "spec": {"cloudCredentialsRef": credentials(),
                 "imageID": image_id,
                 "members": [{"tenantID": PARTNER_TENANT,
                              "memberCredentialsRef": {"secretName": SECRET, "cloudName": "partner"}},
                             {"tenantID": OTHER_TENANT}]},
    })
}

fn share_manifest(cycle: usize, i: usize) -> Value {
    json!({
        "apiVersion": "cloudvol.dev/v1alpha1", "kind": "ImageShare",
        "metadata": {"name": share_name(cycle, i)},
        "spec": {"cloudCredentialsRef": credentials(),
                 "imageRef": {"name": image_name(cycle, i)},
                 "members": [{"tenantID": PARTNER_TENANT,
                              "memberCredentialsRef": {"secretName": SECRET, "cloudName": "partner"}}]},
    })
}

/// One object of a cycle, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Object {
    Volume(String),
    Image(String),
    Share(String),
}

impl Object {
    fn name(&self) -> &str {
        match self {
            Object::Volume(n) | Object::Image(n) | Object::Share(n) => n,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Object::Volume(_) => "Volume",
            Object::Image(_) => "VolumeImage",
            Object::Share(_) => "ImageShare",
        }
    }

    /// The object as the API server has it now (`None`: gone).
    async fn read(&self, h: &Harness) -> Option<Value> {
        let value = match self {
            Object::Volume(n) => serde_json::to_value(h.api::<Volume>().get_opt(n).await.ok()??),
            Object::Image(n) => {
                serde_json::to_value(h.api::<VolumeImage>().get_opt(n).await.ok()??)
            }
            Object::Share(n) => serde_json::to_value(h.api::<ImageShare>().get_opt(n).await.ok()??),
        };
        value.ok()
    }

    async fn delete(&self, h: &Harness) {
        let params = kube::api::DeleteParams::default();
        let _ = match self {
            Object::Volume(n) => h.api::<Volume>().delete(n, &params).await.map(drop),
            Object::Image(n) => h.api::<VolumeImage>().delete(n, &params).await.map(drop),
            Object::Share(n) => h.api::<ImageShare>().delete(n, &params).await.map(drop),
        };
    }
}

/// What a condition says, for the report.
fn describe(object: &Value) -> String {
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c["status"] == "True");
    match current {
        Some(c) => format!(
            "{}={} ({}): {}",
            c["type"].as_str().unwrap_or_default(),
            c["status"].as_str().unwrap_or_default(),
            c["reason"].as_str().unwrap_or_default(),
            c["message"].as_str().unwrap_or_default()
        ),
        None => "no condition yet".into(),
    }
}

// --- the tally --------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    objects: usize,
    faults: usize,
    fired: u64,
    duplicates: Vec<String>,
    leaks: Vec<String>,
    stuck: Vec<String>,
    not_ready: Vec<String>,
    foreign: Vec<String>,
    /// Cloud ids already counted as leaked, so that a leak is counted once.
    leaked: BTreeSet<String>,
    /// Warning Events seen (informational).
    stalls: Vec<String>,
}

// --- the soak ---------------------------------------------------------------------------------

struct Soak {
    h: Harness,
    knobs: Knobs,
    rng: StdRng,
    operator: Operator,
    tally: Tally,
    /// Decoys: (what, id, view as first seen).
    decoys: Vec<(&'static str, String, Value)>,
    /// This cycle's standing images (shared by `imageID`).
    standing: Vec<String>,
}

impl Soak {
    async fn images(&self) -> Vec<Value> {
        self.h.cloud_images().await
    }

    /// A decoy, or an image the test put in to be shared: not cloudvol's to make or delete.
    fn is_decoy(&self, id: &Value) -> bool {
        self.decoys
            .iter()
            .map(|(_, d, _)| d)
            .chain(&self.standing)
            .any(|d| id.as_str() == Some(d.as_str()))
    }

    /// Runs `events` against the clock, starting now, for one phase.
    async fn chaos(&mut self, events: Vec<(Duration, Event)>, cycle: usize) {
        let start = Instant::now();
        let end = start + self.knobs.phase;
        let mut restart_at: Option<Instant> = None;
        // Crash rules added and not used yet: (their delay, which marks them; give up at;
        // how long the operator stays down once the kill comes).
        let mut armed: Vec<(u64, Instant, Duration)> = Vec::new();
        let mut events = events.into_iter().peekable();
        loop {
            let now = Instant::now();
            if restart_at.is_some_and(|at| now >= at) {
                self.operator.ensure_running();
                restart_at = None;
            }
            while events
                .peek()
                .is_some_and(|(when, _)| start + *when <= Instant::now())
            {
                let (_, event) = events.next().expect("peeked");
                match event {
                    Event::Fault(rule) => {
                        self.tally.fired += rule["count"].as_u64().unwrap_or(1);
                        self.h.add_fault(rule).await;
                        self.tally.faults += 1;
                    }
                    Event::Crash(rule, down) => {
                        let marker = rule["delay_ms"].as_u64().unwrap_or_default();
                        self.tally.fired += 1;
                        self.h.add_fault(rule).await;
                        self.tally.faults += 1;
                        armed.push((marker, Instant::now() + Duration::from_secs(5), down));
                    }
                    Event::Kill(down) => {
                        if self.operator.child.is_some() {
                            self.operator.kill().await;
                            restart_at = Some(Instant::now() + down);
                        }
                    }
                    Event::Grow(i) => {
                        let name = volume_name(cycle, i);
                        let patch = json!({"spec": {"resource": {"size": 2}}});
                        let _ = self
                            .h
                            .api::<Volume>()
                            .patch(
                                &name,
                                &kube::api::PatchParams::default(),
                                &kube::api::Patch::Merge(&patch),
                            )
                            .await;
                    }
                }
            }
            if !armed.is_empty() {
                // A crash rule that is used up holds a write's answer (the cloud acted): the
                // operator dies now, between that call and its status write.
                let left = self.h.faults_left().await;
                let used = |marker: u64| left.iter().all(|f| f["delay_ms"] != marker);
                let mut down_for = None;
                armed.retain(|(marker, give_up, down)| {
                    if used(*marker) {
                        down_for = Some(*down);
                        false
                    } else {
                        Instant::now() < *give_up
                    }
                });
                if let Some(down) = down_for
                    && self.operator.child.is_some()
                {
                    self.operator.kill().await;
                    self.operator.crash_kills += 1;
                    restart_at = Some(Instant::now() + down);
                }
            }
            self.operator.reap();
            let now = Instant::now();
            if events.peek().is_none() && armed.is_empty() && restart_at.is_none() && now >= end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.calm().await;
    }

    /// Ends the chaos: the faults not used up are removed, one operator runs.
    async fn calm(&mut self) {
        let left: u64 = self
            .h
            .faults_left()
            .await
            .iter()
            .map(|f| f["count"].as_u64().unwrap_or(0))
            .sum();
        self.h.admin_delete("faults").await;
        self.tally.fired = self.tally.fired.saturating_sub(left);
        self.operator.ensure_running();
    }

    /// Waits until `done` holds for every object, or the settle deadline passes; returns the
    /// objects for which it does not, with what they say.
    async fn settle(
        &mut self,
        objects: &[Object],
        done: fn(Option<&Value>) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + self.knobs.settle;
        loop {
            self.operator.ensure_running();
            let mut pending = Vec::new();
            for object in objects {
                let now = object.read(&self.h).await;
                if !done(now.as_ref()) {
                    let what = now.as_ref().map_or("gone".into(), describe);
                    pending.push(format!("{} {}: {what}", object.kind(), object.name()));
                }
            }
            if pending.is_empty() || Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After creation: one resource per object, and no resource no object claims.
    async fn check_created(&mut self, objects: &[Object]) {
        let volumes = self.h.cloud_volumes().await;
        let images = self.images().await;
        let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for object in objects {
            let Some(value) = object.read(&self.h).await else {
                continue;
            };
            let uid = value["metadata"]["uid"].as_str().unwrap_or_default();
            let id = value["status"]["id"].as_str().map(str::to_string);
            let marked: Vec<&Value> = match object {
                Object::Volume(_) => volumes
                    .iter()
                    .filter(|v| v["metadata"]["cloudvol.dev/uid"] == uid)
                    .collect(),
                Object::Image(_) => {
                    let mark = format!("cloudvol-uid:{uid}");
                    images
                        .iter()
                        .filter(|i| {
                            i["tags"]
                                .as_array()
                                .is_some_and(|t| t.iter().any(|t| t == mark.as_str()))
                        })
                        .collect()
                }
                Object::Share(_) => Vec::new(),
            };
            if marked.len() > 1 {
                let ids: Vec<&str> = marked.iter().filter_map(|r| r["id"].as_str()).collect();
                self.tally.duplicates.push(format!(
                    "{} {} has {} resources carrying its mark: {}",
                    object.kind(),
                    object.name(),
                    marked.len(),
                    ids.join(", ")
                ));
            }
            if let (Some(id), false) = (id, matches!(object, Object::Share(_))) {
                claimed
                    .entry(id)
                    .or_default()
                    .push(object.name().to_string());
            }
        }
        for (id, owners) in &claimed {
            if owners.len() > 1 {
                self.tally
                    .duplicates
                    .push(format!("{} all report status.id {id}", owners.join(", ")));
            }
        }
        let strays = volumes
            .iter()
            .map(|v| ("volume", v))
            .chain(images.iter().map(|i| ("image", i)))
            .filter(|(_, r)| !self.is_decoy(&r["id"]))
            .filter(|(_, r)| r["id"].as_str().is_some_and(|id| !claimed.contains_key(id)))
            .map(|(what, r)| {
                format!(
                    "{what} {} {} ({}) belongs to no object",
                    r["id"].as_str().unwrap_or_default(),
                    r["name"],
                    r["status"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>();
        for stray in strays {
            self.leak(stray);
        }
    }

    fn leak(&mut self, what: String) {
        let id = what.split(' ').nth(1).unwrap_or_default().to_string();
        if self.tally.leaked.insert(id) {
            self.tally.leaks.push(what);
        }
    }

    /// After deletion: nothing but the decoys.
    async fn check_deleted(&mut self) {
        let volumes = self.h.cloud_volumes().await;
        let images = self.images().await;
        let left: Vec<String> = volumes
            .iter()
            .map(|v| ("volume", v))
            .chain(images.iter().map(|i| ("image", i)))
            .filter(|(_, r)| !self.is_decoy(&r["id"]))
            .map(|(what, r)| {
                format!(
                    "{what} {} {} ({}) is left after every object was deleted",
                    r["id"].as_str().unwrap_or_default(),
                    r["name"],
                    r["status"].as_str().unwrap_or_default()
                )
            })
            .collect();
        for what in left {
            self.leak(what);
        }
    }

    async fn check_decoys(&mut self) {
        for (what, id, before) in self.decoys.clone() {
            let now = match what {
                "volume" => self.h.cloud_volume(&id).await,
                _ => self.images().await.into_iter().find(|i| i["id"] == id),
            };
            if now.as_ref() != Some(&before) {
                self.tally.foreign.push(format!(
                    "decoy {what} {id} was touched: before {before}, now {}",
                    now.map_or("gone".into(), |v| v.to_string())
                ));
            }
        }
    }

    async fn cycle(&mut self, cycle: usize) {
        // Images put straight into the cloud (private, named like the others) and shared by
        // `imageID`: not cloudvol's, so they must stay, private and without members again, once
        // their ImageShares are deleted.
        let mut standing = Vec::new();
        for _ in 0..self.knobs.id_shares {
            let image = self
                .h
                .admin_post(
                    "images",
                    json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "private"}),
                )
                .await;
            standing.push(image["id"].as_str().expect("an image id").to_string());
        }
        let knobs = &self.knobs;
        let mut objects: Vec<(Object, Value)> = Vec::new();
        for i in 0..knobs.volumes {
            objects.push((
                Object::Volume(volume_name(cycle, i)),
                volume_manifest(cycle, i),
            ));
        }
        for i in 0..knobs.images {
            objects.push((
                Object::Image(image_name(cycle, i)),
                image_manifest(cycle, i),
            ));
        }
        for i in 0..knobs.shares {
            objects.push((
                Object::Share(share_name(cycle, i)),
                share_manifest(cycle, i),
            ));
        }
        for (i, id) in standing.iter().enumerate() {
            let name = format!("c{cycle}-idshare-{i}");
            let manifest = id_share_manifest(&name, id);
            objects.push((Object::Share(name), manifest));
        }
        self.tally.objects += objects.len();
        self.standing = standing.clone();

        // Creation: every object at once, in an order the seed picks.
        let mut order: Vec<usize> = (0..objects.len()).collect();
        shuffle(&mut self.rng, &mut order);
        let grow: Vec<usize> = (0..knobs.volumes)
            .filter(|_| self.rng.random_bool(0.5))
            .collect();
        let events = schedule(&mut self.rng, &self.knobs, &grow);
        for &i in &order {
            let (object, manifest) = objects[i].clone();
            match object {
                Object::Volume(_) => {
                    let _: Volume = self.h.create(manifest).await;
                }
                Object::Image(_) => {
                    let _: VolumeImage = self.h.create(manifest).await;
                }
                Object::Share(_) => {
                    let _: ImageShare = self.h.create(manifest).await;
                }
            }
        }
        let objects: Vec<Object> = objects.into_iter().map(|(o, _)| o).collect();
        self.chaos(events, cycle).await;
        let not_ready = self.settle(&objects, ready).await;
        self.tally.not_ready.extend(not_ready);
        self.check_created(&objects).await;
        self.note_stalls().await;

        // Deletion: every object at once, under the same chaos.
        let events = schedule(&mut self.rng, &self.knobs, &[]);
        shuffle(&mut self.rng, &mut order);
        for &i in &order {
            objects[i].delete(&self.h).await;
        }
        self.chaos(events, cycle).await;
        let stuck = self.settle(&objects, |o| o.is_none()).await;
        self.tally.stuck.extend(stuck);
        self.note_stalls().await;
        self.check_deleted().await;
        self.check_standing().await;
    }

    /// The standing images are there, private, without members; then they go, so that the
    /// next cycle starts from the decoys alone.
    async fn check_standing(&mut self) {
        let images = self.images().await;
        for id in std::mem::take(&mut self.standing) {
            let Some(image) = images.iter().find(|i| i["id"] == id.as_str()) else {
                self.tally.foreign.push(format!(
                    "image {id}, put in by the test and only shared by ImageShares, was deleted"
                ));
                continue;
            };
            let members = support::harness::members_from_json(&image["members"]);
            if !members.is_empty() {
                self.tally.leaks.push(format!(
                    "image {id} keeps members {members:?} after its ImageShares were deleted"
                ));
            }
            if image["visibility"] != "private" {
                self.tally.leaks.push(format!(
                    "image {id} stays {} after its ImageShares were deleted (it was private)",
                    image["visibility"]
                ));
            }
            self.h.delete_cloud_image(&id).await;
        }
    }

    /// Warning Events (a Stalled state) recorded so far that are new: every fault of the soak
    /// passes by itself, so none of them is a person's problem. Listed, not counted as failures.
    async fn note_stalls(&mut self) {
        let api: kube::Api<k8s_openapi::api::core::v1::Event> = self.h.api();
        let Ok(events) = api.list(&Default::default()).await else {
            return;
        };
        for event in events.items {
            if event.type_.as_deref() != Some("Warning")
                // An image deleted before its share, or a share before its image, says so:
                // true, as everything is deleted at once, in an order the seed picks.
                || matches!(
                    event.reason.as_deref(),
                    Some(
                        "VolumeDisappeared"
                            | "ImageDisappeared"
                            | "ImageDeleting"
                            | "ReferencedByImageShare"
                    )
                )
            {
                continue;
            }
            let line = format!(
                "{} {}: {}",
                event.involved_object.name.unwrap_or_default(),
                event.reason.unwrap_or_default(),
                event.message.unwrap_or_default()
            );
            if !self.tally.stalls.contains(&line) {
                self.tally.stalls.push(line);
            }
        }
    }

    fn summary(&self, cycles: usize) -> String {
        let t = &self.tally;
        format!(
            "chaos seed={} cycles={cycles} objects={} kills={} crash_kills={} faults={} fired={} duplicates={} \
             leaks={} stuck={} not_ready={} panics={} foreign={} exits={} stalls={}",
            self.knobs.seed,
            t.objects,
            self.operator.kills,
            self.operator.crash_kills,
            t.faults,
            t.fired,
            t.duplicates.len(),
            t.leaks.len(),
            t.stuck.len(),
            t.not_ready.len(),
            self.panics(),
            t.foreign.len(),
            self.operator.exits.len(),
            t.stalls.len(),
        )
    }

    /// Panics: the highest counter each process reported, or the panics its log shows,
    /// whichever is more.
    fn panics(&self) -> u64 {
        let log = std::fs::read_to_string(&self.operator.log).unwrap_or_default();
        let logged = log.matches("panicked at").count() as u64;
        logged.max(self.operator.panics())
    }
}

/// Ready for the object's generation.
fn ready(object: Option<&Value>) -> bool {
    object.is_some_and(|o| condition_matches(o, "Ready", "True", None))
}

fn shuffle(rng: &mut StdRng, items: &mut [usize]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a soak of minutes: `make chaos` runs it (docs/crash-safety.md)"]
async fn chaos_soak() {
    let knobs = Knobs::from_env();
    eprintln!("chaos: {knobs:?}");
    let config = cloudvol_emulator::Config::demo().with_transitions(knobs.transition);
    let h = Harness::with_emulator("chaos", config).await;
    let dir = std::env::temp_dir().join(format!("cloudvol-chaos-{}", h.namespace));
    std::fs::create_dir_all(&dir).expect("a folder for the operator log");
    let log = dir.join("operator.log");
    eprintln!(
        "chaos: namespace {}, emulator {}, operator log {}",
        h.namespace,
        h.emulator.base_url(),
        log.display()
    );
    let operator = Operator {
        namespace: h.namespace.clone(),
        resync: knobs.resync.clone(),
        log,
        child: None,
        port: 0,
        panics_now: 0,
        panics_before: 0,
        kills: 0,
        crash_kills: 0,
        exits: Vec::new(),
    };
    let mut soak = Soak {
        rng: StdRng::seed_from_u64(knobs.seed),
        h,
        knobs,
        operator,
        tally: Tally::default(),
        decoys: Vec::new(),
        standing: Vec::new(),
    };

    // Decoys: the names cloudvol's resources get, in the same tenant, not made by cloudvol.
    for i in 0..soak.knobs.volumes.min(2) {
        let id = soak.h.create_cloud_volume(&format!("data-{i}"), 1).await;
        let view = soak.h.cloud_volume(&id).await.expect("the decoy volume");
        soak.decoys.push(("volume", id, view));
    }
    for visibility in ["private", "shared"] {
        let image = soak
            .h
            .admin_post(
                "images",
                json!({"owner": DEMO_TENANT, "name": "golden", "visibility": visibility}),
            )
            .await;
        let id = image["id"].as_str().expect("an image id").to_string();
        if visibility == "shared" {
            soak.h.add_cloud_member(&id, PARTNER_TENANT).await;
        }
        let view = soak
            .images()
            .await
            .into_iter()
            .find(|i| i["id"] == id.as_str())
            .expect("the decoy image");
        soak.decoys.push(("image", id, view));
    }

    soak.operator.start();
    let start = Instant::now();
    let mut cycles = 0;
    loop {
        cycles += 1;
        soak.cycle(cycles).await;
        eprintln!("chaos: after cycle {cycles}: {}", soak.summary(cycles));
        if start.elapsed() >= soak.knobs.duration {
            break;
        }
    }
    soak.operator.reap();
    soak.operator.scrape().await;
    soak.check_decoys().await;
    soak.operator.stop();

    let summary = soak.summary(cycles);
    let t = &soak.tally;
    let findings: Vec<(&str, &Vec<String>)> = vec![
        ("duplicate", &t.duplicates),
        ("leak", &t.leaks),
        ("stuck", &t.stuck),
        ("not ready", &t.not_ready),
        ("foreign", &t.foreign),
        ("exit", &soak.operator.exits),
    ];
    for line in &t.stalls {
        eprintln!("chaos: stalled on the way (not a failure): {line}");
    }
    for (what, list) in &findings {
        for line in list.iter() {
            eprintln!("chaos: {what}: {line}");
        }
    }
    println!("{summary}");
    let clean = findings.iter().all(|(_, l)| l.is_empty()) && soak.panics() == 0;
    assert!(
        clean,
        "{summary}\nthe operator log is {} (seed {} repeats the schedule)",
        soak.operator.log.display(),
        soak.knobs.seed
    );
}
