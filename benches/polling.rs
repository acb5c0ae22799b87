//! `make bench`: the real operator binary, in both polling modes one after the other, against
//! the real control plane and the emulator, creating and deleting N Volumes at once. It prints
//! figures only (docs/performance.md says what each means); it asserts nothing.
//!
//! Run by `hack/bench.sh`, which builds the release binaries and starts the control plane, and
//! passes everything in the environment:
//!
//! | variable | default | |
//! | --- | --- | --- |
//! | `KUBECONFIG` | required | the control plane |
//! | `CLOUDVOL_BIN`, `EMULATOR_BIN` | required | the release binaries |
//! | `N` | `1000` | Volumes per mode |
//! | `MODES` | `per-object,inventory` | in this order; the ratios are the last over the first |
//! | `TRANSITION` | `2s` | the emulator's transitions |
//! | `RESYNC` | `30s` | `--resync-period` and every Volume's `resyncPeriod` |
//! | `STEADY` | `60s` | how long the steady state is watched |
//! | `DEADLINE` | `1800s` | how long a mode may take to reach all Ready (or all gone) |
//! | `OPERATOR_ARGS` | empty | more flags for `cloudvol run` |

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use cloudvol::api::Volume;

const TENANT: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    n: usize,
    modes: Vec<String>,
    transition: String,
    resync: String,
    steady: Duration,
    deadline: Duration,
    cloudvol: String,
    emulator: String,
    operator_args: Vec<String>,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn seconds(text: &str) -> Duration {
    cloudvol::api::parse_duration(text).unwrap_or_else(|err| panic!("{text:?}: {err}"))
}

impl Options {
    fn from_env() -> Options {
        Options {
            n: env("N", "1000").parse().expect("N is a number"),
            modes: env("MODES", "per-object,inventory")
                .split(',')
                .map(str::to_string)
                .collect(),
            transition: env("TRANSITION", "2s"),
            resync: env("RESYNC", "30s"),
            steady: seconds(&env("STEADY", "60s")),
            deadline: seconds(&env("DEADLINE", "1800s")),
            cloudvol: std::env::var("CLOUDVOL_BIN").expect("CLOUDVOL_BIN"),
            emulator: std::env::var("EMULATOR_BIN").expect("EMULATOR_BIN"),
            operator_args: env("OPERATOR_ARGS", "")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What one mode measured.
#[derive(Default)]
struct Figures {
    mode: String,
    ready: usize,
    all_ready: f64,
    p50: f64,
    p99: f64,
    create_requests: BTreeMap<String, u64>,
    steady_per_minute: BTreeMap<String, f64>,
    rss_ready: u64,
    rss_steady: u64,
    cpu_create: f64,
    cpu_steady_share: f64,
    cpu_total: f64,
    reconciles_ready: f64,
    reconciles_total: f64,
    gone: usize,
    all_gone: f64,
    delete_requests: BTreeMap<String, u64>,
    cloud_left: usize,
    /// API-server requests (of every client, the bench's own included) while creating and
    /// while deleting, by verb and resource.
    api_create: BTreeMap<String, u64>,
    api_delete: BTreeMap<String, u64>,
    /// The bench's own count lists while deleting (in `api_delete`'s `LIST volumes`).
    bench_counts: u64,
}

fn total(requests: &BTreeMap<String, u64>) -> u64 {
    requests.values().sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    if std::env::var_os("CLOUDVOL_BIN").is_none() || std::env::args().any(|a| a == "--list") {
        // `cargo test --all-targets` builds and starts benches too: nothing to do without the
        // binaries and the control plane that hack/bench.sh provides.
        eprintln!(
            "the polling bench runs under `make bench` (hack/bench.sh); see docs/performance.md"
        );
        return Ok(());
    }
    let options = Options::from_env();
    let client = Client::try_default().await?;
    install_crds(&client).await?;
    let mut all = Vec::new();
    for mode in &options.modes {
        eprintln!("bench: {mode}: {} Volumes", options.n);
        all.push(run_mode(&client, &options, mode).await?);
    }
    print_figures(&options, &all);
    Ok(())
}

async fn install_crds(client: &Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in cloudvol::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("cloudvol-bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    for crd in cloudvol::api::crds() {
        let name = crd.name_any();
        let established = |crd: &CustomResourceDefinition| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        };
        let start = Instant::now();
        while !established(&api.get(&name).await?) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("CRD {name} is not Established").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A child process that is killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then waits (at most 30 s) for the process to end.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start_emulator(options: &Options, dir: &std::path::Path) -> Result<(Process, String), Error> {
    let config = dir.join("emulator.yaml");
    std::fs::write(
        &config,
        format!(
            "transitions:\n  default: {}\ntenants:\n  - id: {TENANT}\n    name: demo\n    users:\n      - {{username: demo, password: demo-password}}\n",
            options.transition
        ),
    )?;
    let mut child = Command::new(&options.emulator)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the emulator said {line:?}"))?
        .to_string();
    Ok((Process(child), base))
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_operator(
    options: &Options,
    mode: &str,
    namespace: &str,
    port: u16,
    log: &std::path::Path,
) -> Result<Process, Error> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(&options.cloudvol)
        .arg("run")
        .args(["--namespaces", namespace])
        .args(["--polling", mode])
        .args(["--resync-period", &options.resync])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--leader-election", "false"])
        // As environment, so that OPERATOR_ARGS may override them with flags.
        .env("CLOUDVOL_LOG_FORMAT", "text")
        .env("CLOUDVOL_LOG_LEVEL", "warn")
        .args(&options.operator_args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Process(child))
}

/// The operator's resident memory, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The operator's CPU time so far (user + system), seconds.
fn cpu(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields after it start past the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    (field(11) + field(12)) / ticks
}

struct Emulator {
    http: reqwest::Client,
    base: String,
}

impl Emulator {
    async fn requests(&self) -> Result<BTreeMap<String, u64>, Error> {
        let all: Value = self
            .http
            .get(format!("{}/_admin/requests", self.base))
            .send()
            .await?
            .json()
            .await?;
        let counts = all.get("requests").cloned().unwrap_or(all);
        Ok(counts
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .filter(|(_, v)| *v > 0)
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn reset(&self) -> Result<(), Error> {
        self.http
            .delete(format!("{}/_admin/requests", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    async fn volumes(&self) -> Result<usize, Error> {
        let all: Value = self
            .http
            .get(format!("{}/_admin/volumes", self.base))
            .send()
            .await?
            .json()
            .await?;
        let list = all.get("volumes").cloned().unwrap_or(all);
        Ok(list.as_array().map(Vec::len).unwrap_or(0))
    }
}

async fn reconciles(http: &reqwest::Client, port: u16) -> f64 {
    let Ok(response) = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("cloudvol_reconciles_total{kind=\"Volume\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn is_ready(volume: &Volume) -> bool {
    let generation = volume.metadata.generation;
    volume.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
        })
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The Volume `name` of the workload.
fn manifest(name: &str, resync: &str) -> Volume {
    serde_json::from_value(json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "Volume",
        "metadata": {"name": name},
        "spec": {
            "cloudCredentialsRef": {"secretName": "cloud", "cloudName": "demo"},
            "resyncPeriod": resync,
            "resource": {"size": 1},
        },
    }))
    .expect("a Volume")
}

async fn run_mode(client: &Client, options: &Options, mode: &str) -> Result<Figures, Error> {
    let dir = tempdir(mode)?;
    let (emulator_process, base) = start_emulator(options, &dir)?;
    let emulator = Emulator {
        http: reqwest::Client::new(),
        base: base.clone(),
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("bench-{mode}-{}", &suffix[..6]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let clouds = format!(
        "clouds:\n  demo:\n    auth_type: v2password\n    auth:\n      auth_url: {base}/identity/v2.0\n      tenant_id: {TENANT}\n      username: demo\n      password: demo-password\n    region_name: KR1\n"
    );
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("cloud".into()),
                    ..Default::default()
                },
                string_data: Some([("clouds.yaml".to_string(), clouds)].into()),
                ..Default::default()
            },
        )
        .await?;

    let port = free_port()?;
    let log = dir.join("operator.log");
    let operator = start_operator(options, mode, &namespace, port, &log)?;
    let pid = operator.pid();
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("the operator is not ready; see {}", log.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let volumes: Api<Volume> = Api::namespaced(client.clone(), &namespace);

    // Watch first, so that no Ready is missed.
    let readies: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let readies = readies.clone();
        let stream = watcher(volumes.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(volume)) = stream.try_next().await {
                if is_ready(&volume) {
                    readies
                        .lock()
                        .expect("not poisoned")
                        .entry(volume.name_any())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };

    // The API server's first write of a Volume takes about 2 s (it prepares the CRD's schema
    // and validation rules): a dry run, so that no figure counts it.
    volumes
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &manifest("warm-up", &options.resync),
        )
        .await?;
    emulator.reset().await?;
    let api_before = api_requests(client).await?;
    let cpu_before = cpu(pid);
    let applied: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let first_apply = Instant::now();
    futures::stream::iter(0..options.n)
        .map(|i| {
            let volumes = volumes.clone();
            let applied = applied.clone();
            let resync = options.resync.clone();
            async move {
                let name = format!("v-{i:05}");
                let volume = manifest(&name, &resync);
                applied
                    .lock()
                    .expect("not poisoned")
                    .insert(name, Instant::now());
                volumes.create(&PostParams::default(), &volume).await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let applied_all = first_apply.elapsed().as_secs_f64();
    eprintln!("bench: {mode}: {} applied in {applied_all:.1} s", options.n);

    let mut last_report = Instant::now();
    loop {
        let ready = readies.lock().expect("not poisoned").len();
        if ready >= options.n || first_apply.elapsed() > options.deadline {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "bench: {mode}: {ready} of {} Ready after {:.0} s",
                options.n,
                first_apply.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut figures = Figures {
        mode: mode.to_string(),
        ..Figures::default()
    };
    {
        let readies = readies.lock().expect("not poisoned");
        let applied = applied.lock().expect("not poisoned");
        figures.ready = readies.len();
        let last = readies.values().max().copied().unwrap_or(first_apply);
        figures.all_ready = last.duration_since(first_apply).as_secs_f64();
        let mut latencies: Vec<f64> = readies
            .iter()
            .filter_map(|(name, at)| Some(at.duration_since(*applied.get(name)?).as_secs_f64()))
            .collect();
        latencies.sort_by(|a, b| a.total_cmp(b));
        figures.p50 = percentile(&latencies, 50.0);
        figures.p99 = percentile(&latencies, 99.0);
    }
    figures.create_requests = emulator.requests().await?;
    figures.api_create = since(&api_before, &api_requests(client).await?);
    figures.rss_ready = rss(pid);
    figures.cpu_create = cpu(pid) - cpu_before;
    figures.reconciles_ready = reconciles(&http, port).await / options.n as f64;
    eprintln!(
        "bench: {mode}: {} Ready in {:.1} s; watching the steady state for {} s",
        figures.ready,
        figures.all_ready,
        options.steady.as_secs()
    );

    // Steady state: everything Ready, nothing changes.
    emulator.reset().await?;
    let cpu_steady = cpu(pid);
    let steady_start = Instant::now();
    tokio::time::sleep(options.steady).await;
    let window = steady_start.elapsed().as_secs_f64();
    figures.cpu_steady_share = (cpu(pid) - cpu_steady) / window;
    figures.steady_per_minute = emulator
        .requests()
        .await?
        .into_iter()
        .map(|(route, n)| (route, n as f64 * 60.0 / window))
        .collect();
    figures.rss_steady = rss(pid);
    figures.reconciles_total = reconciles(&http, port).await / options.n as f64;

    // Deletion: every Volume at once.
    emulator.reset().await?;
    let api_before = api_requests(client).await?;
    let delete_start = Instant::now();
    let (delete, all) = (DeleteParams::default(), ListParams::default());
    retried(|| volumes.delete_collection(&delete, &all)).await?;
    // How many are left, from a list of one and the count the API server adds to it: a list
    // of every Volume five times a second kept a 2-core API server busy at 10,000.
    let one = ListParams::default().limit(1);
    loop {
        let page = retried(|| volumes.list_metadata(&one)).await?;
        figures.bench_counts += 1;
        let left = page.items.len()
            + page
                .metadata
                .remaining_item_count
                .map_or(0, |n| usize::try_from(n).unwrap_or(0));
        figures.gone = options.n.saturating_sub(left);
        if left == 0 || delete_start.elapsed() > options.deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    figures.all_gone = delete_start.elapsed().as_secs_f64();
    figures.delete_requests = emulator.requests().await?;
    figures.api_delete = since(&api_before, &api_requests(client).await?);
    figures.cloud_left = emulator.volumes().await?;
    figures.cpu_total = cpu(pid) - cpu_before;
    watch.abort();
    operator.terminate();
    drop(emulator_process);
    eprintln!(
        "bench: {mode}: {} gone in {:.1} s (operator log: {})",
        figures.gone,
        figures.all_gone,
        log.display()
    );
    Ok(figures)
}

/// The API server's requests so far, by `VERB resource[/subresource]`, from its
/// `apiserver_request_total`: the API server's side of the cost, which the operator's status
/// writes, Events, finalizer patches and Secret reads make.
async fn api_requests(client: &Client) -> Result<BTreeMap<String, u64>, Error> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = retried(|| client.request_text(request.clone())).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let end = labels[start..].find('"')?;
            Some(&labels[start..start + end])
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        let route = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *counts.entry(route).or_insert(0) += n;
    }
    Ok(counts)
}

/// What `after` counts beyond `before`, without the routes that did not move.
fn since(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(route, n)| {
            let d = n.saturating_sub(before.get(route).copied().unwrap_or(0));
            (d > 0).then(|| (route.clone(), d))
        })
        .collect()
}

/// `call`, tried again (at most five times, 200 ms apart) when the connection to the API server
/// failed, or the server timed out: a pooled connection that the server closed while the bench
/// slept through the steady window answers `IncompleteMessage`, and a `deletecollection` of
/// 10,000 objects outlasts the server's 60 s request timeout (500 or 504, while the server goes
/// on deleting); a bench of many minutes must not end on either. Only for calls that may be
/// repeated (a list, a delete of the collection).
async fn retried<T, F, Fut>(call: F) -> Result<T, kube::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(kube::Error::Service(err)) if tries < 5 => {
                tries += 1;
                eprintln!("bench: the API server's connection failed ({err}); trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(kube::Error::Api(status)) if tries < 5 && matches!(status.code, 500 | 504) => {
                tries += 1;
                eprintln!(
                    "bench: the API server timed out ({}); trying again",
                    status.message
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

fn tempdir(mode: &str) -> Result<std::path::PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "cloudvol-bench-{mode}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// A route as the emulator counts it, shorter: `GET volumes/detail`.
fn route(key: &str) -> String {
    let (method, path) = key.split_once(' ').unwrap_or(("", key));
    let path = path
        .trim_start_matches("/block-storage/{v}/{tenant}/")
        .trim_start_matches("/block-storage/v2/{tenant}/")
        .trim_start_matches("/image/");
    format!("{method} {path}")
}

fn print_routes(title: &str, routes: &BTreeMap<String, f64>, unit: &str) {
    println!("  {title}:");
    if routes.is_empty() {
        println!("    (none)");
    }
    for (key, n) in routes {
        println!("    {:<44} {n:>10.1}{unit}", route(key));
    }
}

fn as_f64(routes: &BTreeMap<String, u64>) -> BTreeMap<String, f64> {
    routes.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
}

fn print_figures(options: &Options, all: &[Figures]) {
    println!();
    println!(
        "cloudvol bench: N={} Volumes, emulator transitions {}, resyncPeriod {}, steady window {} s",
        options.n,
        options.transition,
        options.resync,
        options.steady.as_secs()
    );
    for f in all {
        let n = options.n as f64;
        println!();
        println!("mode {}", f.mode);
        println!(
            "  apply -> all Ready              {:>10.1} s   ({} of {} Ready)",
            f.all_ready, f.ready, options.n
        );
        println!("  apply -> Ready per object p50   {:>10.2} s", f.p50);
        println!("  apply -> Ready per object p99   {:>10.2} s", f.p99);
        println!(
            "  cloud requests while creating   {:>10}     ({:.2} per volume)",
            total(&f.create_requests),
            total(&f.create_requests) as f64 / n
        );
        print_routes("by route, while creating", &as_f64(&f.create_requests), "");
        // An empty sum is -0.0; adding 0.0 prints it as 0.0.
        let steady: f64 = f.steady_per_minute.values().sum::<f64>() + 0.0;
        println!("  cloud requests per minute, steady {:>8.1}", steady);
        print_routes("by route, per minute, steady", &f.steady_per_minute, "/min");
        println!("  operator RSS after all Ready    {:>12}", mib(f.rss_ready));
        println!(
            "  operator RSS after steady state {:>12}",
            mib(f.rss_steady)
        );
        println!("  operator CPU while creating     {:>10.1} s", f.cpu_create);
        println!(
            "  operator CPU, steady            {:>10.2} % of a core",
            f.cpu_steady_share * 100.0
        );
        println!("  operator CPU, whole run         {:>10.1} s", f.cpu_total);
        println!(
            "  reconciles per object           {:>10.1} to Ready, {:.1} after the steady state",
            f.reconciles_ready, f.reconciles_total
        );
        println!(
            "  delete -> all gone              {:>10.1} s   ({} of {} gone, {} cloud volumes left)",
            f.all_gone, f.gone, options.n, f.cloud_left
        );
        println!(
            "  cloud requests while deleting   {:>10}     ({:.2} per volume)",
            total(&f.delete_requests),
            total(&f.delete_requests) as f64 / n
        );
        print_routes("by route, while deleting", &as_f64(&f.delete_requests), "");
        for (what, requests) in [("creating", &f.api_create), ("deleting", &f.api_delete)] {
            println!(
                "  API-server requests while {what} {:>7}     ({:.2} per volume; every client)",
                total(requests),
                total(requests) as f64 / n
            );
        }
        // The watches (counted when they end) and what the control plane's own components ask
        // for are noise beside a few requests per volume.
        let floor = (options.n / 100).max(1) as u64;
        let main: BTreeMap<String, u64> = f
            .api_delete
            .iter()
            .filter(|(route, n)| **n >= floor && !route.starts_with("WATCH "))
            .map(|(route, n)| (route.clone(), *n))
            .collect();
        print_routes(
            &format!("API server, while deleting (routes of {floor} or more, watches left out)"),
            &as_f64(&main),
            "",
        );
        println!(
            "    (the bench's own: 1 DELETE volumes, {} LIST volumes counting what is left)",
            f.bench_counts
        );
    }
    if let [old, .., new] = all {
        let ratio = |a: f64, b: f64| {
            if b == 0.0 {
                "-".to_string()
            } else {
                format!("{:.3}", a / b)
            }
        };
        let steady = |f: &Figures| f.steady_per_minute.values().sum::<f64>() + 0.0;
        println!();
        println!("ratios, {} / {}", new.mode, old.mode);
        let rows: Vec<(&str, String)> = vec![
            ("apply -> all Ready", ratio(new.all_ready, old.all_ready)),
            ("per-object p50", ratio(new.p50, old.p50)),
            ("per-object p99", ratio(new.p99, old.p99)),
            (
                "cloud requests while creating",
                ratio(
                    total(&new.create_requests) as f64,
                    total(&old.create_requests) as f64,
                ),
            ),
            (
                "cloud requests per minute, steady",
                ratio(steady(new), steady(old)),
            ),
            (
                "RSS after all Ready",
                ratio(new.rss_ready as f64, old.rss_ready as f64),
            ),
            (
                "RSS after steady state",
                ratio(new.rss_steady as f64, old.rss_steady as f64),
            ),
            ("CPU while creating", ratio(new.cpu_create, old.cpu_create)),
            (
                "CPU, steady",
                ratio(new.cpu_steady_share, old.cpu_steady_share),
            ),
            ("CPU, whole run", ratio(new.cpu_total, old.cpu_total)),
            (
                "reconciles per object to Ready",
                ratio(new.reconciles_ready, old.reconciles_ready),
            ),
            ("delete -> all gone", ratio(new.all_gone, old.all_gone)),
            (
                "cloud requests while deleting",
                ratio(
                    total(&new.delete_requests) as f64,
                    total(&old.delete_requests) as f64,
                ),
            ),
        ];
        for (what, r) in rows {
            println!("  {what:<36} {r:>10}");
        }
    }
}
