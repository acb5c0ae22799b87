//! Running the controllers: one kube-runtime `Controller` per kind (and per watched namespace),
//! the guard that keeps one malformed object from stopping a watch, and the error policy that
//! turns a failed reconcile into a requeue.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, error, info, warn};

use super::conditions::Health;
use super::inventory::{Polling, meta_hash};
use super::reasons::Reason;
use super::report::{Phase, Report};
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

/// Runs every kind's controller until `shutdown` resolves. Returns `Err` with the kind whose
/// controller stopped although nobody asked it to: the caller must not go on as if the
/// operator worked (the process exits, so that Kubernetes restarts it).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
) -> Result<(), String> {
    let stop_for_test = ctx.settings.stop_controller_for_test.clone();
    // The test hook: one kind's controller is told to stop a moment after it starts, as a
    // controller whose stream ended would.
    let shutdown_of = |kind: &str| {
        let shutdown = shutdown.clone();
        let stop_now = stop_for_test.as_deref() == Some(kind);
        async move {
            if stop_now {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            } else {
                shutdown.await
            }
        }
        .boxed()
        .shared()
    };
    let kinds: Vec<futures::future::BoxFuture<'static, &'static str>> = vec![
        run_kind(
            ctx.clone(),
            volume::reconcile,
            volume::relations,
            shutdown_of("Volume"),
        )
        .map(|()| "Volume")
        .boxed(),
        run_kind(
            ctx.clone(),
            image::reconcile,
            image::relations,
            shutdown_of("VolumeImage"),
        )
        .map(|()| "VolumeImage")
        .boxed(),
        run_kind(
            ctx.clone(),
            share::reconcile,
            share::relations,
            shutdown_of("ImageShare"),
        )
        .map(|()| "ImageShare")
        .boxed(),
    ];
    let (first, _, rest) = futures::future::select_all(kinds).await;
    let asked = shutdown.clone().now_or_never().is_some();
    if asked {
        futures::future::join_all(rest).await;
        return Ok(());
    }
    error!(
        kind = first,
        "a controller stopped although nobody asked it to"
    );
    Err(first.to_string())
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
        let controller = main_controller::<K>(&ctx, &scope);
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
                    // Usually an object whose deletion just finished: gone is not an error.
                    Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                        debug!(kind = %kind, object = %object.name, "reconcile of an object that is gone")
                    }
                    Err(err) => warn!(kind = %kind, error = %err, "reconcile failed"),
                }
                futures::future::ready(())
            })
    });
    futures::future::join_all(runs).await;
    info!(kind = %kind, "controller stopped");
}

/// The controller of `K` in `scope`, before its relations. Its store keeps objects without
/// their managed fields and last-applied annotation (nothing reads them). With inventories,
/// only a change to what [`meta_hash`] covers (spec, labels, annotations, finalizers,
/// deletion) reconciles an object, not cloudvol's own status writes. Per object, every change
/// reconciles, as before the inventories. In both, the triggers reconcile objects from outside:
/// the inventories' (a cloud resource changed), the fair shares' (a slot came free).
fn main_controller<K: CloudKind>(ctx: &Context, scope: &Scope) -> KindController<K> {
    let (reader, writer) = reflector::store();
    let objects = watcher(
        scope.api::<DeserializeGuard<K>>(),
        watcher::Config::default().any_semantic(),
    )
    .modify(|object: &mut DeserializeGuard<K>| {
        let meta = object.meta_mut();
        meta.managed_fields = None;
        if let Some(annotations) = &mut meta.annotations {
            annotations.remove(LAST_APPLIED);
        }
    })
    .reflect(writer)
    .applied_objects();
    let triggers = ctx
        .triggers
        .subscribe(&K::kind(&()), scope.namespace.clone());
    let triggers = futures::stream::unfold(triggers, |mut triggers| async move {
        let (namespace, name) = triggers.recv().await?;
        Some((ObjectRef::new(&name).within(&namespace), triggers))
    });
    let controller = match ctx.settings.polling {
        Polling::PerObject => Controller::for_stream(objects, reader),
        Polling::Inventory => {
            let changed = objects.predicate_filter(
                |object: &DeserializeGuard<K>| Some(meta_hash(object.meta())),
                PredicateConfig::default(),
            );
            Controller::for_stream(changed, reader)
        }
    };
    controller.reconcile_on(triggers)
}

/// kubectl's copy of the last applied manifest, which the store need not keep.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    // A panic is a bug in cloudvol, not the object's fault, but it must stay the object's
    // problem: the other objects go on.
    let result = match AssertUnwindSafe(reconcile(object.clone(), ctx.clone()))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => report_panic(&ctx, object.as_ref(), panic_message(panic.as_ref())).await,
    };
    let failure = match &result {
        Ok(_) | Err(Error::Hold { .. }) => None,
        Err(err) => Some(err.reason()),
    };
    ctx.metrics
        .reconciled(&kind, start.elapsed(), failure.as_deref());
    result
}

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A reconcile of `object` panicked: count it, and make it the object's `Stalled`
/// (`InternalError`, with a Warning Event), backing off before the next try.
async fn report_panic<K: CloudKind>(
    ctx: &Context,
    object: &K,
    what: String,
) -> Result<kube::runtime::controller::Action, Error> {
    let kind = K::kind(&());
    ctx.metrics.panicked(&kind);
    error!(object = %object.key(), panic = %what, "a reconcile panicked; this is a bug in cloudvol");
    let health = Health::stalled(
        Reason::InternalError,
        format!(
            "cloudvol failed while reconciling this object ({what}). This is a bug in cloudvol, \
             not in the object: please report it with this message and the operator's log. \
             cloudvol tries again with backoff, and other objects are not affected"
        ),
    );
    Report::new(ctx, object, Phase::Apply)
        .close(object.recorded(), &health, false)
        .await
}
