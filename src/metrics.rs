//! Prometheus metrics: reconciles, errors by reason and durations per kind; cloud requests by
//! service, method and status code, and the waits for the per-host rate limit; objects by Ready
//! state; the inventories' rounds, triggers and size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud::{RequestObserver, RequestRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    kind: String,
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoundLabels {
    service: String,
    plan: String,
    result: String,
}

fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports, in one registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    cloud_requests: Family<RequestLabels, Counter>,
    objects: Family<ReadyLabels, Gauge>,
    panics: Family<KindLabels, Counter>,
    deferred: Family<KindLabels, Counter>,
    rate_limit_waits: Family<HostLabels, Histogram, fn() -> Histogram>,
    inventory_rounds: Family<RoundLabels, Counter>,
    inventory_triggers: Family<ServiceLabels, Counter>,
    inventories: Family<ServiceLabels, Gauge>,
    inventory_resources: Family<ServiceLabels, Gauge>,
    /// Each object's last Ready state, so the gauge counts objects, not reconciles.
    ready_states: Mutex<HashMap<(String, String), String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloudvol");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let cloud_requests = Family::<RequestLabels, Counter>::default();
        let objects = Family::<ReadyLabels, Gauge>::default();
        let panics = Family::<KindLabels, Counter>::default();
        let deferred = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run, per kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, per kind and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took, per kind",
            durations.clone(),
        );
        registry.register(
            "cloud_requests",
            "HTTP requests to clouds, per service, method and status code (none: no answer)",
            cloud_requests.clone(),
        );
        registry.register(
            "objects",
            "Objects per kind and Ready condition status",
            objects.clone(),
        );
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked (a bug: the object is Stalled with reason InternalError), per kind",
            panics.clone(),
        );
        registry.register(
            "reconciles_deferred",
            "Reconciles put back because their cloud scope already had --cloud-concurrency in flight, per kind",
            deferred.clone(),
        );
        let rate_limit_waits =
            Family::<HostLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                wait_histogram as fn() -> Histogram,
            );
        registry.register(
            "cloud_rate_limit_wait_seconds",
            "How long cloud requests waited for the per-host rate limit (--cloud-rate-limit) before they were sent, per host; requests that did not wait are not counted",
            rate_limit_waits.clone(),
        );
        let inventory_rounds = Family::<RoundLabels, Counter>::default();
        registry.register(
            "inventory_rounds",
            "Rounds of the cloud inventories, per service, plan (list, get, nothing) and result (ok, error)",
            inventory_rounds.clone(),
        );
        let inventory_triggers = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "inventory_triggers",
            "Reconciles the inventories triggered because an object's cloud resource changed, per service",
            inventory_triggers.clone(),
        );
        let inventories = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "inventories",
            "Cloud inventories running (one per cloud identity and service), per service",
            inventories.clone(),
        );
        let inventory_resources = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "inventory_resources",
            "Cloud resources the inventories hold, per service",
            inventory_resources.clone(),
        );
        Metrics {
            registry,
            rate_limit_waits,
            inventory_rounds,
            inventory_triggers,
            inventories,
            inventory_resources,
            panics,
            deferred,
            reconciles,
            errors,
            durations,
            cloud_requests,
            objects,
            ready_states: Mutex::default(),
        }
    }

    /// One reconcile of `kind` finished; `error` is its reason when it failed.
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&str>) {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// A reconcile of `kind` panicked.
    pub fn panicked(&self, kind: &str) {
        self.panics
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// A reconcile of `kind` was put back: its cloud scope had no free slot.
    pub fn deferred(&self, kind: &str) {
        self.deferred
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// One inventory round of `service` ended; `plan` is what it did.
    pub fn inventory_round(&self, service: &str, plan: &str, ok: bool) {
        self.inventory_rounds
            .get_or_create(&RoundLabels {
                service: service.into(),
                plan: plan.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// An inventory of `service` triggered `n` reconciles.
    pub fn inventory_triggered(&self, service: &str, n: u64) {
        self.inventory_triggers
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .inc_by(n);
    }

    /// An inventory of `service` started (`1`) or stopped (`-1`).
    pub fn inventories(&self, service: &str, delta: i64) {
        self.inventories
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .inc_by(delta);
    }

    /// The inventories of `service` hold `delta` more resources.
    pub fn inventory_resources(&self, service: &str, delta: i64) {
        self.inventory_resources
            .get_or_create(&ServiceLabels {
                service: service.into(),
            })
            .inc_by(delta);
    }

    /// Records the Ready status (`True`, `False`, `Unknown`) of one object, or its removal
    /// (`None`).
    pub fn object_ready(&self, kind: &str, key: &str, ready: Option<&str>) {
        let mut states = self.ready_states.lock().unwrap_or_else(|p| p.into_inner());
        let id = (kind.to_string(), key.to_string());
        let previous = match ready {
            Some(state) => states.insert(id, state.to_string()),
            None => states.remove(&id),
        };
        if previous.as_deref() == ready {
            return;
        }
        let gauge = |state: &str| {
            self.objects.get_or_create(&ReadyLabels {
                kind: kind.into(),
                ready: state.into(),
            })
        };
        if let Some(previous) = previous {
            gauge(&previous).dec();
        }
        if let Some(state) = ready {
            gauge(state).inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl RequestObserver for Metrics {
    fn observe(&self, record: &RequestRecord<'_>) {
        let code = record
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".into());
        self.cloud_requests
            .get_or_create(&RequestLabels {
                service: record.service.into(),
                method: record.method.into(),
                code,
            })
            .inc();
    }

    fn observe_rate_limit_wait(&self, host: &str, waited: Duration) {
        self.rate_limit_waits
            .get_or_create(&HostLabels { host: host.into() })
            .observe(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_every_family() {
        let metrics = Metrics::new();
        metrics.reconciled("Volume", Duration::from_millis(20), None);
        metrics.reconciled(
            "Volume",
            Duration::from_millis(20),
            Some("CloudUnavailable"),
        );
        metrics.observe(&RequestRecord {
            service: "block-storage",
            method: "POST",
            host: "127.0.0.1",
            status: Some(503),
            attempt: 1,
            elapsed: Duration::from_millis(3),
        });
        metrics.object_ready("Volume", "ns/a", Some("True"));
        let text = metrics.encode();
        for line in [
            "cloudvol_reconciles_total{kind=\"Volume\"} 2",
            "cloudvol_reconcile_errors_total{kind=\"Volume\",reason=\"CloudUnavailable\"} 1",
            "cloudvol_reconcile_duration_seconds_count{kind=\"Volume\"} 2",
            "cloudvol_cloud_requests_total{service=\"block-storage\",method=\"POST\",code=\"503\"} 1",
            "cloudvol_objects{kind=\"Volume\",ready=\"True\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn objects_are_counted_once_whatever_the_reconciles() {
        let metrics = Metrics::new();
        metrics.object_ready("Volume", "ns/a", Some("False"));
        metrics.object_ready("Volume", "ns/a", Some("False"));
        metrics.object_ready("Volume", "ns/b", Some("False"));
        metrics.object_ready("Volume", "ns/a", Some("True"));
        metrics.object_ready("Volume", "ns/b", None);
        let text = metrics.encode();
        assert!(
            text.contains("cloudvol_objects{kind=\"Volume\",ready=\"True\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cloudvol_objects{kind=\"Volume\",ready=\"False\"} 0"),
            "{text}"
        );
    }
}
