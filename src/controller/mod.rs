//! The reconcilers, where the CRD types and the cloud clients meet, and the machinery every
//! kind shares: conditions, status writes, Events, requeues, credentials.
//!
//! Each reconcile is `observe → decide → act → report` (DESIGN.md §3): the decisions are pure
//! functions in each kind's `decide` module; this module and the kinds' `mod.rs` hold the thin
//! async code around them.

pub mod conditions;
pub mod credentials;
pub mod image;
mod report;
pub mod requeue;
pub mod share;
pub mod volume;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::{
    CloudCredentialsRef, DeletionPolicy, ManagementPolicy, PAUSED_ANNOTATION, parse_duration,
};
use crate::cloud::{CloudError, Connector};
use crate::operator::metrics::Metrics;
use conditions::Health;
use requeue::{Attempts, Backoff, jitter};

pub use report::Report;

/// The shortest steady-state requeue, whatever `resyncPeriod` says: `0s` must not make the
/// operator read the cloud in a loop.
pub const MIN_RESYNC: Duration = Duration::from_secs(5);

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "cloudvol";

/// What a CRD kind tells the shared machinery about itself.
pub trait CloudKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The finalizer that guards the cloud resource, `cloudvol.dev/<kind>`.
    const FINALIZER: &'static str;

    /// Every credentials Secret the object uses.
    fn credentials_refs(&self) -> Vec<&CloudCredentialsRef>;
    fn management_policy(&self) -> ManagementPolicy;
    fn deletion_policy(&self) -> DeletionPolicy;
    fn resync_period(&self) -> Option<&str>;
    /// The conditions cloudvol last wrote.
    fn conditions(&self) -> &[Condition];

    /// Deleting the object touches the cloud (managed, `Delete`).
    fn needs_cloud_to_delete(&self) -> bool {
        self.management_policy() == ManagementPolicy::Managed
            && self.deletion_policy() == DeletionPolicy::Delete
    }

    /// The object is being deleted and has finished with the cloud (its status says so).
    fn done_with_cloud(&self) -> bool {
        self.meta().deletion_timestamp.is_some()
            && conditions::health_of(self.conditions())
                .is_some_and(|h| h.reason() == report::DELETED_REASON)
    }

    /// The `cloudvol.dev/paused` annotation is `"true"`.
    fn paused(&self) -> bool {
        self.annotations()
            .get(PAUSED_ANNOTATION)
            .map(String::as_str)
            == Some("true")
    }

    /// `Kind/namespace/name`, the key of per-object state.
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            Self::kind(&()),
            self.namespace().unwrap_or_default(),
            self.name_any()
        )
    }
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Reconciles in flight at once, per kind and namespace.
    pub concurrency: u16,
    /// The requeue in steady state, unless an object sets `resyncPeriod`.
    pub resync_period: Duration,
    /// The waits while the cloud is transitional or failing.
    pub backoff: Backoff,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            concurrency: 4,
            resync_period: Duration::from_secs(600),
            backoff: Backoff::default(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub connector: Connector,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub attempts: Attempts,
}

impl Context {
    pub fn new(
        client: Client,
        connector: Connector,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: "cloudvol".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            connector,
            metrics,
            settings,
            attempts: Attempts::default(),
        }
    }

    /// The steady-state requeue for `object`, jittered.
    pub fn resync<K: CloudKind>(&self, object: &K) -> Action {
        let period = object
            .resync_period()
            .and_then(parse_duration)
            .unwrap_or(self.settings.resync_period)
            .max(MIN_RESYNC);
        Action::requeue(jitter(period))
    }

    /// The next backoff wait for `key`, jittered; `at_least` is what the cloud asked for.
    pub fn backoff(&self, key: &str, at_least: Option<Duration>) -> Duration {
        let attempt = self.attempts.next(key);
        let wait = self.settings.backoff.delay(attempt);
        jitter(wait).max(at_least.unwrap_or_default())
    }
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed; retried with backoff.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A cloud call failed in a way the reconcile could not report in status.
    #[error("{}: {}", .0.reason(), .0.message())]
    Cloud(#[from] CloudError),
    /// The deletion waits (for a transitional state) or is blocked by a rule; the status says
    /// which. Come back after the given time.
    #[error("deletion waits: {reason}")]
    Hold { reason: String, after: Duration },
    /// kube's finalizer helper failed around the reconcile.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A stable CamelCase reason for logs and metrics.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "KubernetesApi".into(),
            Error::Cloud(err) => err.reason().into(),
            Error::Hold { reason, .. } => reason.clone(),
            Error::Finalizer(_) => "Finalizer".into(),
        }
    }

    fn from_finalizer(err: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match err {
            F::ApplyFailed(err) | F::CleanupFailed(err) => err,
            F::AddFinalizer(err) | F::RemoveFinalizer(err) => Error::Kube(err),
            other => Error::Finalizer(other.to_string()),
        }
    }
}

/// Turns a failed reconcile into a requeue: a hold comes back when it said; anything else
/// backs off per object.
fn error_policy<K: CloudKind>(
    object: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = match &object.0 {
        Ok(object) => object.key(),
        Err(invalid) => format!("invalid/{:?}", invalid.metadata.name),
    };
    match error {
        Error::Hold { after, .. } => Action::requeue(*after),
        Error::Cloud(err) => Action::requeue(ctx.backoff(&key, err.retry_after())),
        _ => Action::requeue(ctx.backoff(&key, None)),
    }
}

/// Runs every kind's controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    futures::join!(
        run_kind(
            ctx.clone(),
            volume::reconcile,
            volume::relations,
            shutdown.clone()
        ),
        run_kind(
            ctx.clone(),
            image::reconcile,
            image::relations,
            shutdown.clone()
        ),
        run_kind(
            ctx.clone(),
            share::reconcile,
            share::relations,
            shutdown.clone()
        ),
    );
}

/// Runs one kind's controller over the configured namespaces until `shutdown` resolves.
pub async fn run_kind<K, F, Fut>(
    ctx: Arc<Context>,
    reconcile: F,
    relations: Relations<K>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) where
    K: CloudKind,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let scopes: Vec<Scope> = if ctx.settings.namespaces.is_empty() {
        vec![Scope {
            client: ctx.client.clone(),
            namespace: None,
        }]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Scope {
                client: ctx.client.clone(),
                namespace: Some(ns.clone()),
            })
            .collect()
    };
    let kind = K::kind(&()).to_string();
    let runs = scopes.into_iter().map(|scope| {
        let ctx = ctx.clone();
        let reconcile = reconcile.clone();
        let kind = kind.clone();
        let controller = Controller::new(
            scope.api::<DeserializeGuard<K>>(),
            watcher::Config::default().any_semantic(),
        );
        relations(controller, &scope)
            .with_config(
                kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(
                move |guard: Arc<DeserializeGuard<K>>, ctx: Arc<Context>| {
                    let reconcile = reconcile.clone();
                    async move { guarded(guard, ctx, reconcile).await }
                },
                error_policy::<K>,
                ctx,
            )
            .for_each(move |result| {
                match result {
                    Ok((object, _)) => debug!(kind = %kind, object = %object.name, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(
                        Error::Hold { reason, .. },
                        object,
                    )) => {
                        debug!(kind = %kind, object = %object.name, %reason, "deletion held")
                    }
                    Err(err) => warn!(kind = %kind, error = %err, "reconcile failed"),
                }
                futures::future::ready(())
            })
    });
    futures::future::join_all(runs).await;
    info!(kind = %kind, "controller stopped");
}

/// A kind's controller, as the watch machinery sees it.
pub type KindController<K> = Controller<DeserializeGuard<K>>;

/// Adds the watches that make changes of related kinds reconcile a kind.
pub type Relations<K> = fn(KindController<K>, &Scope) -> KindController<K>;

/// Where one controller watches: every namespace, or one.
pub struct Scope {
    client: Client,
    namespace: Option<String>,
}

impl Scope {
    /// An API for `C` in this scope.
    pub fn api<C>(&self) -> Api<C>
    where
        C: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// The default watch configuration of related kinds.
    pub fn watch(&self) -> watcher::Config {
        watcher::Config::default().any_semantic()
    }
}

/// The object of kind `K` named `name` in the namespace of `related`, for watches that map
/// one kind's changes to another's reconciles.
pub fn object_ref<K: CloudKind, R: ResourceExt>(
    name: &str,
    related: &R,
) -> ObjectRef<DeserializeGuard<K>> {
    let reference = ObjectRef::new(name);
    match related.namespace() {
        Some(namespace) => reference.within(&namespace),
        None => reference,
    }
}

/// Skips (and reports) objects that do not deserialize, so one malformed object cannot stop
/// the controller; times and counts the reconcile.
async fn guarded<K, F, Fut>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: CloudKind,
    F: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let kind = K::kind(&());
    let object = match &guard.0 {
        Ok(object) => Arc::new(object.clone()),
        Err(invalid) => {
            warn!(
                kind = %kind,
                namespace = ?invalid.metadata.namespace,
                name = ?invalid.metadata.name,
                error = %invalid.error,
                "skipping an object that does not match the CRD; fix it"
            );
            ctx.metrics
                .reconciled(&kind, Duration::ZERO, Some("InvalidObject"));
            return Ok(Action::await_change());
        }
    };
    let start = std::time::Instant::now();
    let result = reconcile(object, ctx.clone()).await;
    let failure = match &result {
        Ok(_) | Err(Error::Hold { .. }) => None,
        Err(err) => Some(err.reason()),
    };
    ctx.metrics
        .reconciled(&kind, start.elapsed(), failure.as_deref());
    result
}

/// Runs `apply` or `cleanup` through kube's finalizer helper, the only top-level entry of a
/// reconcile.
pub async fn with_finalizer<K, A, AF, C, CF>(
    object: Arc<K>,
    ctx: &Context,
    apply: A,
    cleanup: C,
) -> Result<Action, Error>
where
    K: CloudKind,
    A: FnOnce(Arc<K>) -> AF,
    AF: std::future::Future<Output = Result<Action, Error>>,
    C: FnOnce(Arc<K>) -> CF,
    CF: std::future::Future<Output = Result<Action, Error>>,
{
    use kube::runtime::finalizer::{Event, finalizer};
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, K::FINALIZER, object, |event| async move {
        match event {
            Event::Apply(object) => apply(object).await,
            Event::Cleanup(object) => cleanup(object).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// The health a cloud error implies: transient errors retry (`Reconciling`), the rest need a
/// person (`Stalled`) and carry the cloud's own message.
pub fn cloud_error_health(doing: &str, err: &CloudError) -> Health {
    let message = format!("{doing}: {}", err.message());
    if err.is_transient() {
        Health::reconciling(err.reason(), format!("{message} (retrying)"))
            .retry_after(err.retry_after())
    } else {
        Health::stalled(err.reason(), message)
    }
}
