//! The reconcilers, where the CRD types and the cloud clients meet, and the machinery every
//! kind shares.
//!
//! Each reconcile is `observe → decide → act → report` (docs/design.md): every rule is a pure
//! function in a `decide` module (each kind's, and [`locate`]'s for finding the cloud
//! resource); the async shells around them only read, call the cloud once, and hand a
//! [`Health`] to [`Report`]. The shared pieces:
//!
//! - [`lifecycle`]: the one entry of a reconcile (kube's finalizer helper), with the preamble
//!   every kind shares: the Orphan/unmanaged deletion, the credentials Secret read once and
//!   guarded.
//! - [`locate`]: finding the cloud resource by `status.id`, import or mark, and the pure step
//!   that follows from what was found.
//! - [`report`]: the closing of a reconcile: one status write, an Event on a change of health,
//!   the requeue or the hold.
//! - [`reasons`], [`states`], [`conditions`]: the vocabulary.
//! - [`runtime`]: running the controllers.
//! - [`inventory`]: observing the cloud once per cloud identity for every object.

pub mod conditions;
pub mod events;
pub mod fairness;
pub mod image;
pub mod inventory;
pub mod lifecycle;
pub mod locate;
pub mod reasons;
pub mod report;
pub mod requeue;
pub mod runtime;
pub mod secret;
pub mod share;
pub mod states;
pub mod triggers;
pub mod volume;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::condition_type::{READY, RECONCILING};
use crate::api::{
    CloudCredentialsRef, DeletionPolicy, ImportSpec, ManagementPolicy, PAUSED_ANNOTATION,
    parse_duration,
};
use crate::cloud::{BlockStorage, CloudCredentials, CloudError, Connector, Image};
use crate::metrics::Metrics;
use conditions::{Health, State};
use reasons::Reason;
use requeue::{Attempts, Backoff, jitter};

pub use report::Report;
pub use runtime::{KindController, Relations, Scope, object_ref, run, run_kind};

/// The shortest steady-state requeue, whatever `resyncPeriod` says: `0s` must not make the
/// operator read the cloud in a loop.
pub const MIN_RESYNC: Duration = Duration::from_secs(5);

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "cloudvol";

/// The spec fields every kind has, with the same names and meaning.
pub struct Common<'a> {
    pub credentials: &'a CloudCredentialsRef,
    pub management_policy: ManagementPolicy,
    pub deletion_policy: DeletionPolicy,
    pub resync_period: Option<&'a str>,
    /// `spec.import`, for the kinds that adopt.
    pub import: Option<&'a ImportSpec>,
}

/// The [`Common`] fields of a kind whose spec has them under their usual names; `import` is
/// the kind's `spec.import`, if it has one.
macro_rules! common_spec {
    ($object:expr, $import:expr) => {
        $crate::controller::Common {
            credentials: &$object.spec.cloud_credentials_ref,
            management_policy: $object.spec.management_policy,
            deletion_policy: $object.spec.deletion_policy,
            resync_period: $object.spec.resync_period.as_deref(),
            import: $import,
        }
    };
}
pub(crate) use common_spec;

/// A kind's status, as the shared closing writes it.
pub trait ObjectStatus: Serialize + PartialEq + Clone + Default + Debug + Send + Sync {
    /// The conditions cloudvol last wrote.
    fn conditions(&self) -> &[Condition];
    /// `status.id`: the cloud id cloudvol recorded.
    fn id(&self) -> Option<&str>;
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
    /// `status.cloud`: where the resource lives, for the kinds that record it.
    fn cloud(&self) -> Option<&crate::api::CloudScope> {
        None
    }
    /// Sets the conditions and `observedGeneration` of a status about to be written.
    fn stamp(&mut self, conditions: Vec<Condition>, observed_generation: Option<i64>);
}

/// Implements [`ObjectStatus`] for status structs with `conditions`, `observed_generation` and
/// `id` (and `cloud`, when given).
macro_rules! object_status {
    ($status:ty $(, $cloud:ident)?) => {
        impl ObjectStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn id(&self) -> Option<&str> {
                self.id.as_deref()
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            $(fn cloud(&self) -> Option<&crate::api::CloudScope> {
                self.$cloud.as_ref()
            })?
            fn stamp(&mut self, conditions: Vec<Condition>, observed_generation: Option<i64>) {
                self.conditions = conditions;
                self.observed_generation = observed_generation;
            }
        }
    };
}
object_status!(crate::api::VolumeStatus, cloud);
object_status!(crate::api::VolumeImageStatus, cloud);
object_status!(crate::api::ImageShareStatus);

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
    + HasStatus<Status: ObjectStatus>
{
    /// The finalizer that guards the cloud resource, `cloudvol.dev/<kind>`.
    const FINALIZER: &'static str;
    /// What an Orphan or unmanaged deletion leaves alone, e.g. "the cloud volume is left as it
    /// is".
    const LEFT_ALONE: &'static str;

    /// The spec fields every kind shares.
    fn common(&self) -> Common<'_>;

    /// Every credentials Secret the object uses.
    fn credentials_refs(&self) -> Vec<&CloudCredentialsRef> {
        vec![self.common().credentials]
    }

    /// The status cloudvol last wrote, or an empty one.
    fn recorded(&self) -> Self::Status {
        self.status().cloned().unwrap_or_default()
    }

    /// The conditions cloudvol last wrote.
    fn conditions(&self) -> &[Condition] {
        self.status()
            .map(ObjectStatus::conditions)
            .unwrap_or_default()
    }

    fn managed(&self) -> bool {
        self.common().management_policy == ManagementPolicy::Managed
    }

    /// The object makes its own cloud resource (managed, not imported), marked with its UID.
    fn creates(&self) -> bool {
        self.managed() && self.common().import.is_none()
    }

    /// Deleting the object touches the cloud (managed, `Delete`).
    fn needs_cloud_to_delete(&self) -> bool {
        self.managed() && self.common().deletion_policy == DeletionPolicy::Delete
    }

    /// The object is being deleted and has finished with the cloud (its status says so).
    fn done_with_cloud(&self) -> bool {
        self.meta().deletion_timestamp.is_some() && self.reconciling_for(&[Reason::Finalizing])
    }

    /// The object is being deleted and its status says the cloud has its delete already (or it
    /// is done with the cloud): what is left is to watch the resource go, and to finish.
    fn delete_sent(&self) -> bool {
        self.meta().deletion_timestamp.is_some()
            && self.reconciling_for(&[Reason::Deleting, Reason::Finalizing])
    }

    /// The status says the object is reconciling for one of `reasons`.
    fn reconciling_for(&self, reasons: &[Reason]) -> bool {
        self.conditions().iter().any(|c| {
            c.type_ == RECONCILING
                && c.status == "True"
                && reasons.iter().any(|r| c.reason == r.as_str())
        })
    }

    /// Why the object never asked the cloud for anything, if it did not: deleting it then
    /// needs no cloud.
    fn made_nothing(&self) -> Option<&'static str> {
        None
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

/// The object is `Ready=True` for its current generation: what an object that depends on
/// another one waits for.
pub fn ready_at_generation<K: CloudKind>(object: &K) -> bool {
    object.conditions().iter().any(|c| {
        c.type_ == READY && c.status == "True" && c.observed_generation == object.meta().generation
    })
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Reconciles in flight at once, per kind (and per namespace, when `namespaces` lists
    /// them).
    pub concurrency: u16,
    /// Of those, at most this many per cloud scope (identity endpoint, tenant, region): see
    /// [`fairness`].
    pub cloud_concurrency: usize,
    /// The requeue in steady state, unless an object sets `resyncPeriod`.
    pub resync_period: Duration,
    /// The waits while the cloud is transitional or failing.
    pub backoff: Backoff,
    /// How long any transitional cloud state may last before the object is `Stalled`
    /// (`ProgressDeadlineExceeded`); `None` keeps each state's own default.
    pub progress_deadline: Option<Duration>,
    /// For tests of supervision only: the kind whose controller stops a second after it
    /// starts, as if its watch stream had ended.
    pub stop_controller_for_test: Option<String>,
    /// How objects learn what the cloud says: an inventory per cloud identity, or each object
    /// for itself.
    pub polling: inventory::Polling,
    /// How often an inventory looks while an object waits on the cloud.
    pub inventory_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespaces: Vec::new(),
            concurrency: 64,
            cloud_concurrency: 8,
            resync_period: Duration::from_secs(600),
            backoff: Backoff::default(),
            progress_deadline: None,
            stop_controller_for_test: None,
            polling: inventory::Polling::default(),
            inventory_interval: Duration::from_secs(1),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub connector: Connector,
    pub events: events::Events,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub attempts: Attempts,
    pub fairness: fairness::Fairness,
    pub inventory: inventory::Inventories,
    /// Reconciles from outside the watches (inventories, fair shares).
    pub triggers: Arc<triggers::Triggers>,
}

impl Context {
    pub fn new(
        client: Client,
        connector: Connector,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let cadence = inventory::plan::Cadence {
            fast: settings.inventory_interval,
            steady: settings.resync_period.max(MIN_RESYNC),
            rate: connector
                .http()
                .config()
                .rate_limit
                .as_ref()
                .map(|limit| limit.per_second),
        };
        let triggers = Arc::new(triggers::Triggers::default());
        Context {
            events: events::Events::new(client.clone(), "cloudvol", std::env::var("POD_NAME").ok()),
            inventory: inventory::Inventories::new(
                settings.polling,
                cadence,
                metrics.clone(),
                triggers.clone(),
            ),
            fairness: fairness::Fairness::new(settings.cloud_concurrency, triggers.clone()),
            triggers,
            client,
            connector,
            metrics,
            settings,
            attempts: Attempts::default(),
        }
    }

    /// Block storage for `credentials`; its writes reach the inventory.
    pub fn block_storage(
        &self,
        credentials: &CloudCredentials,
    ) -> Result<Arc<dyn BlockStorage>, CloudError> {
        let storage = self.connector.block_storage(credentials)?;
        Ok(self.inventory.noting_storage(credentials, storage))
    }

    /// Images for `credentials`; their writes reach the inventory.
    pub fn image(&self, credentials: &CloudCredentials) -> Result<Arc<dyn Image>, CloudError> {
        let client = self.connector.image(credentials)?;
        Ok(self.inventory.noting_images(credentials, client))
    }

    /// The steady-state requeue for `object`, jittered. With inventories, the inventory
    /// compares a Ready object with the cloud every resync period and reconciles it when its
    /// resource changes; the object's own look is a safety net, [`inventory::STEADY_FACTOR`]
    /// times rarer.
    pub fn resync<K: CloudKind>(&self, object: &K) -> Action {
        let period = object
            .common()
            .resync_period
            .and_then(|text| parse_duration(text).ok())
            .unwrap_or(self.settings.resync_period)
            .max(MIN_RESYNC);
        let period = match self.settings.polling {
            inventory::Polling::PerObject => period,
            inventory::Polling::Inventory => period.saturating_mul(inventory::STEADY_FACTOR),
        };
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
            Error::Hold { reason, .. } => reason.clone(),
            Error::Finalizer(_) => "Finalizer".into(),
        }
    }
}

/// The health a cloud error implies: transient errors retry (`Reconciling`), the rest need a
/// person (`Stalled`) and carry the cloud's own message.
pub fn cloud_error_health(doing: &str, err: &CloudError) -> Health {
    let message = format!("{doing}: {}", err.message());
    if err.is_transient() {
        Health::derived(
            State::Reconciling,
            err.reason(),
            format!("{message} (retrying)"),
        )
        .retry_after(err.retry_after())
    } else {
        Health::derived(State::Stalled, err.reason(), message)
    }
}

/// What is wrong with the spec fields every kind shares, if anything: values that admission
/// refuses today but an object stored before a rule existed may still hold.
pub fn invalid_common_spec(common: &Common<'_>) -> Option<Health> {
    let text = common.resync_period?;
    let err = parse_duration(text).err()?;
    Some(Health::stalled(
        Reason::InvalidSpec,
        format!("spec.resyncPeriod: {err}; set it to a duration such as 10m, at most 24h"),
    ))
}

/// The Stalled health of a `paused` object whose next step is `what` ("create the volume").
pub fn paused(what: &str) -> Health {
    Health::stalled(
        Reason::Paused,
        format!(
            "the annotation {PAUSED_ANNOTATION} is \"true\", so cloudvol does not {what}; remove \
             the annotation to continue"
        ),
    )
}
