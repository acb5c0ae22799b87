//! Running the controllers: one kube-runtime `Controller` per kind (and per watched namespace),
//! the guard that keeps one malformed object from stopping a watch, and the error policy that
//! turns a failed reconcile into a requeue.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::{CloudKind, Context, Error, image, share, volume};

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
