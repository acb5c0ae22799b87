//! The operator process: `cloudvol run`, its metrics and health endpoints, leader election and
//! graceful shutdown.

pub mod leader;
pub mod memory;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use futures::FutureExt;
use kube::Client;
use kube::api::{Api, ListParams};
use tracing::{error, info, warn};

use crate::api::Volume;
use crate::cloud::{CloudHttp, Connector, RateLimit, TransportConfig};
use crate::controller::inventory::Polling;
use crate::controller::{self, Context, Settings};
use crate::logging::LogFormat;
use crate::metrics::Metrics;
use leader::LeaderElection;

/// Flags of `cloudvol run`; each has an environment variable for Deployments and Helm values.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; empty watches every namespace.
    #[arg(
        long,
        env = "CLOUDVOL_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Reconciles in flight at once, per kind.
    #[arg(long, env = "CLOUDVOL_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,
    /// Of those, at most this many per cloud scope (identity endpoint, tenant or project,
    /// region), so that one slow cloud or busy tenant cannot take every slot.
    #[arg(long, env = "CLOUDVOL_CLOUD_CONCURRENCY", default_value_t = 8)]
    pub cloud_concurrency: usize,
    /// How often to re-read a steady resource from the cloud, e.g. `10m`; objects may set
    /// `spec.resyncPeriod`.
    #[arg(long, env = "CLOUDVOL_RESYNC_PERIOD", default_value = "10m", value_parser = parse_period)]
    pub resync_period: Duration,
    /// How long a volume or image may stay in a transitional state (creating, extending,
    /// deleting, uploading, downloading, retyping; queued, saving) before the object is
    /// Stalled with reason ProgressDeadlineExceeded, e.g. `30m`. Unset: 10m for creating,
    /// extending, deleting and queued, 60m for the others.
    #[arg(long, env = "CLOUDVOL_PROGRESS_DEADLINE", value_parser = parse_period)]
    pub progress_deadline: Option<Duration>,
    /// How objects learn what the cloud says: `inventory` (one inventory per cloud identity
    /// lists for every object and triggers those whose resource changed) or `per-object` (each
    /// reconcile reads its own resource, as before the inventory).
    #[arg(long, env = "CLOUDVOL_POLLING", default_value = "inventory", value_parser = parse_polling)]
    pub polling: Polling,
    /// How often an inventory looks while an object waits on the cloud (transitional, being
    /// created or deleted), e.g. `1s`; at the resync period when all are steady.
    #[arg(long, env = "CLOUDVOL_INVENTORY_INTERVAL", default_value = "1s", value_parser = parse_period)]
    pub inventory_interval: Duration,
    /// Requests per second to each cloud host (identity, block storage, image), shared by every
    /// object; `0` turns the limit off. Waits are counted in
    /// `cloudvol_cloud_rate_limit_wait_seconds`.
    #[arg(long, env = "CLOUDVOL_CLOUD_RATE_LIMIT", default_value_t = 20.0)]
    pub cloud_rate_limit: f64,
    /// Requests to one cloud host that may go at once before the rate limit applies.
    #[arg(long, env = "CLOUDVOL_CLOUD_RATE_BURST", default_value_t = 40.0)]
    pub cloud_rate_burst: f64,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "CLOUDVOL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Log filter: a level (`info`, `debug`) or a tracing filter (`cloudvol=debug,kube=info`).
    /// A bare level keeps the Kubernetes client libraries at `warn`.
    #[arg(long, env = "CLOUDVOL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// `json` (default) or `text`.
    #[arg(long, env = "CLOUDVOL_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
    /// Hold a Lease so that only one replica writes; on by default.
    #[arg(long, env = "CLOUDVOL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease; defaults to the pod's own (`POD_NAMESPACE`).
    #[arg(long, env = "CLOUDVOL_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "CLOUDVOL_LEADER_ELECTION_ID",
        default_value = "cloudvol-leader"
    )]
    pub leader_election_id: String,
    /// For tests of supervision only, never in production: the kind (`Volume`, `VolumeImage`,
    /// `ImageShare`) whose controller stops a second after it starts, so that a test can see
    /// the process report it on /healthz and exit non-zero.
    #[arg(long, hide = true, env = "CLOUDVOL_TEST_STOP_CONTROLLER")]
    pub test_stop_controller: Option<String>,
}

fn parse_period(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).map_err(|err| err.to_string())
}

fn parse_polling(text: &str) -> Result<Polling, String> {
    text.parse()
}

impl RunArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            namespaces: self
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            concurrency: self.concurrency.max(1),
            cloud_concurrency: self.cloud_concurrency.max(1),
            resync_period: self.resync_period,
            progress_deadline: self.progress_deadline,
            stop_controller_for_test: self.test_stop_controller.clone(),
            polling: self.polling,
            inventory_interval: self.inventory_interval.max(Duration::from_millis(100)),
            ..Settings::default()
        }
    }

    /// The transport: the per-host rate limit of the flags (none for `0`).
    pub fn transport(&self) -> TransportConfig {
        let limited = self.cloud_rate_limit > 0.0 && self.cloud_rate_limit.is_finite();
        TransportConfig {
            rate_limit: limited.then(|| RateLimit {
                per_second: self.cloud_rate_limit,
                burst: self.cloud_rate_burst.max(1.0),
            }),
            ..TransportConfig::default()
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `cloudvol run`: serves the endpoints, waits for leadership, and runs the controllers until
/// SIGTERM (or until leadership is lost, which ends the process so it restarts as a follower).
pub async fn run(args: RunArgs) -> Result<(), Error> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let connector = Connector::new(CloudHttp::new(args.transport())?);
    connector.http().set_request_observer(metrics.clone());
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    info!(listen = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    tokio::spawn(serve_endpoints(listener, metrics.clone(), health.clone()));
    tokio::spawn(memory::trim_periodically());

    // The API must answer and the CRDs must be installed before this replica is ready. With
    // per-namespace RBAC only the watched namespaces may be listed.
    let probe: Api<Volume> = match args.settings().namespaces.first() {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    probe
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|err| format!("cannot list Volumes: is the cloudvol CRD installed? {err}"))?;
    health.ready.store(true, Ordering::SeqCst);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    }
    .boxed()
    .shared();
    let mut stop = Some(stop);

    let election = if args.leader_election {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("cloudvol-{}", uuid::Uuid::new_v4()));
        Some(LeaderElection::new(
            client.clone(),
            &namespace,
            &args.leader_election_id,
            &identity,
        ))
    } else {
        None
    };
    if let Some(election) = &election {
        // No cloud write before this replica leads, and none after it stops leading.
        connector.http().set_write_fence_watch(election.leading());
        tokio::select! {
            _ = election.acquire() => {}
            _ = terminate() => return Ok(()),
        }
    }

    let ctx = Arc::new(Context::new(client, connector, metrics, args.settings()));
    let mut controllers = tokio::spawn(controller::run(ctx, shutdown.clone()));
    let lost = async {
        match &election {
            Some(election) => election.keep().await,
            None => futures::future::pending().await,
        }
    };
    // Leaving this select stops renewing the Lease: a process whose controllers are gone never
    // keeps it.
    let (outcome, finished) = tokio::select! {
        _ = terminate() => {
            info!("terminating: finishing reconciles in flight");
            (Ok(()), false)
        }
        _ = lost => {
            error!("lost leadership; stopping so that only one replica writes");
            (Err("lost leadership".into()), false)
        }
        stopped = &mut controllers => {
            let why = match stopped {
                Ok(Ok(())) => "the controllers stopped".to_string(),
                Ok(Err(kind)) => format!("the {kind} controller stopped"),
                Err(err) => format!("the controllers' task died: {err}"),
            };
            error!(reason = %why, "cloudvol cannot reconcile any more; exiting so that Kubernetes restarts it");
            health.healthy.store(false, Ordering::SeqCst);
            (Err(why.into()), true)
        }
    };
    if let Some(stop) = stop.take() {
        let _ = stop.send(());
    }
    if !finished
        && tokio::time::timeout(Duration::from_secs(25), controllers)
            .await
            .is_err()
    {
        warn!("reconciles did not finish within 25s");
    }
    if let Some(election) = &election {
        election.release().await;
    }
    if finished {
        // Long enough for a probe, or a person with curl, to see /healthz fail and why.
        tokio::time::sleep(UNHEALTHY_LINGER).await;
    }
    outcome
}

/// How long a process whose controllers stopped keeps answering /healthz with 503 before it
/// exits.
const UNHEALTHY_LINGER: Duration = Duration::from_secs(2);

/// Resolves on SIGTERM or Ctrl-C.
async fn terminate() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return futures::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `/healthz` and `/readyz` answer.
#[derive(Clone)]
pub struct Health {
    /// The API answers and the CRDs are installed: `/readyz` is 200.
    pub ready: Arc<AtomicBool>,
    /// No controller stopped on its own: `/healthz` is 200.
    pub healthy: Arc<AtomicBool>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: Arc::new(AtomicBool::new(false)),
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener`.
pub async fn serve_endpoints(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(e): State<Endpoints>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    e.metrics.encode(),
                )
            }),
        )
        .route(
            "/healthz",
            get(|State(e): State<Endpoints>| async move {
                if e.health.healthy.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "a controller stopped; exiting",
                    )
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(e): State<Endpoints>| async move {
                if e.health.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(Endpoints { metrics, health });
    if let Err(err) = axum::serve(listener, app).await {
        error!(error = %err, "the metrics and health server stopped");
    }
}
