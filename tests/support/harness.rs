//! One test's world: its own namespace on the real API server, its own emulator, a
//! credentials Secret pointing at that emulator, and the operator running in-process, watching
//! only that namespace. Killing the operator aborts it mid-flight, like a crash.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use cloudvol::cloud::{CloudHttp, Connector, RetryPolicy, TransportConfig};
use cloudvol::controller::requeue::Backoff;
use cloudvol::controller::{Context, Settings};
use cloudvol::operator::metrics::Metrics;
use cloudvol_emulator::{Config, Emulator};

use super::wait_for;

/// The demo tenant of the emulator.
pub const DEMO_TENANT: &str = "6cdebe3eb0094910bc41f1d42ebe4cb7";
/// The second demo tenant.
pub const PARTNER_TENANT: &str = "8989447062e04a818baf9e073fd04fa7";
/// The Secret every test object uses.
pub const SECRET: &str = "cloud";

/// How long a test waits for anything: generous, because two cores run many tests at once.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Harness {
    pub client: Client,
    pub namespace: String,
    pub emulator: Emulator,
    pub metrics: Arc<Metrics>,
    http: reqwest::Client,
    operator: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl Harness {
    /// A namespace, an emulator with `config`, and the credentials Secret; no operator yet.
    pub async fn with_emulator(prefix: &str, config: Config) -> Harness {
        let client = super::client().await;
        let namespace = super::namespace(&client, prefix).await;
        let emulator = cloudvol_emulator::start(config, "127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the emulator starts");
        let harness = Harness {
            client,
            namespace,
            emulator,
            metrics: Arc::new(Metrics::new()),
            http: reqwest::Client::new(),
            operator: None,
        };
        harness.put_secret(SECRET, &harness.clouds_yaml()).await;
        harness
    }

    /// A harness with 100 ms emulator transitions and the operator running.
    pub async fn new(prefix: &str) -> Harness {
        let mut harness = Harness::with_emulator(prefix, fast_config()).await;
        harness.start_operator().await;
        harness
    }

    /// A clouds.yaml for the emulator: `demo` and `partner` (NHN v2), `demo-v3` (Keystone v3)
    /// and `wrong-password`.
    pub fn clouds_yaml(&self) -> String {
        let base = self.emulator.base_url();
        format!(
            r#"clouds:
  demo:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {DEMO_TENANT}
      username: demo
      password: demo-password
    region_name: KR1
  partner:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {PARTNER_TENANT}
      username: partner
      password: partner-password
    region_name: KR1
  demo-v3:
    auth_type: password
    auth:
      auth_url: {base}/identity/v3
      username: demo
      password: demo-password
      user_domain_name: Default
      project_name: demo
      project_domain_name: Default
    region_name: KR1
  wrong-password:
    auth_type: v2password
    auth:
      auth_url: {base}/identity/v2.0
      tenant_id: {DEMO_TENANT}
      username: demo
      password: not-the-password
    region_name: KR1
"#
        )
    }

    /// Creates or replaces a Secret holding `clouds.yaml`.
    pub async fn put_secret(&self, name: &str, clouds_yaml: &str) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some([("clouds.yaml".to_string(), clouds_yaml.to_string())].into()),
            ..Default::default()
        };
        api.patch(
            name,
            &PatchParams::apply("cloudvol-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("the Secret is stored");
    }

    /// Starts the operator in-process, watching only this test's namespace.
    pub async fn start_operator(&mut self) {
        assert!(self.operator.is_none(), "the operator is already running");
        let transport = TransportConfig {
            retry: RetryPolicy::fast(),
            rate_limit: None,
            ..TransportConfig::default()
        };
        let connector = Connector::new(CloudHttp::new(transport).expect("an HTTP client"));
        connector.http().set_request_observer(self.metrics.clone());
        let settings = Settings {
            namespaces: vec![self.namespace.clone()],
            concurrency: 2,
            resync_period: Duration::from_secs(30),
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(1),
            },
        };
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            connector,
            self.metrics.clone(),
            settings,
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = futures::FutureExt::shared(Box::pin(async move {
            let _ = stopped.await;
        }));
        let handle = tokio::spawn(cloudvol::controller::run(ctx, shutdown));
        self.operator = Some((handle, stop));
    }

    /// Aborts the operator wherever it is, as a crash would.
    pub async fn kill_operator(&mut self) {
        if let Some((handle, _stop)) = self.operator.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates an object from a manifest (namespace filled in).
    pub async fn create<K>(&self, manifest: Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(manifest).expect("a manifest of the kind");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|err| panic!("the API server refused the object: {err}"))
    }

    /// Merge-patches an object.
    pub async fn patch<K>(&self, name: &str, patch: Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|err| panic!("cannot patch {name}: {err}"))
    }

    /// Waits until the object's condition `type_` has `status` (and `reason`, if given) for the
    /// object's current generation; returns the object.
    pub async fn wait_condition<K>(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let what = format!("{name}: {type_}={status} reason={reason:?}");
        let mut last = Value::Null;
        let found = wait_for_or(
            DEADLINE,
            || {
                let api = api.clone();
                async move {
                    let object = api.get_opt(name).await.ok()??;
                    let value = serde_json::to_value(&object).ok()?;
                    Some((object, value))
                }
            },
            |(_, value): &(K, Value)| {
                last = value.clone();
                condition_matches(value, type_, status, reason)
            },
        )
        .await;
        match found {
            Some((object, _)) => object,
            None => panic!(
                "timed out after {DEADLINE:?} waiting for {what}; last seen status:\n{}",
                serde_json::to_string_pretty(&last["status"]).unwrap_or_default()
            ),
        }
    }

    /// Waits until the object is gone from the API.
    pub async fn wait_gone<K>(&self, name: &str)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        wait_for(DEADLINE, &format!("{name} to be gone"), || {
            let api = api.clone();
            async move {
                match api.get_opt(name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    /// Deletes an object (returns at once; finalizers may hold it).
    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .delete(name, &Default::default())
            .await
            .unwrap_or_else(|err| panic!("cannot delete {name}: {err}"));
    }

    /// Events recorded for the object `name`, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let events = api.list(&ListParams::default()).await.expect("events list");
        events
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an Event with `reason` on `name`; returns its note.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        wait_for(
            DEADLINE,
            &format!("an Event {reason} on {name}"),
            || async move {
                self.events(name)
                    .await
                    .into_iter()
                    .find(|(_, r, _)| r == reason)
                    .map(|(_, _, note)| note)
            },
        )
        .await
    }

    // --- the emulator's admin API ---------------------------------------------------------

    pub async fn admin_get(&self, path: &str) -> Value {
        let url = format!("{}/_admin/{path}", self.emulator.base_url());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .expect("the emulator answers");
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response.json().await.expect("JSON from the admin API")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/_admin/{path}", self.emulator.base_url());
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn admin_delete(&self, path: &str) {
        let url = format!("{}/_admin/{path}", self.emulator.base_url());
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .expect("the emulator answers");
        assert!(
            response.status().is_success(),
            "DELETE {url}: {}",
            response.status()
        );
    }

    /// Every volume in the emulator (all tenants).
    pub async fn cloud_volumes(&self) -> Vec<Value> {
        let all = self.admin_get("volumes").await;
        let list = all.get("volumes").cloned().unwrap_or(all);
        list.as_array().cloned().unwrap_or_default()
    }

    /// One volume from the emulator, if it exists.
    pub async fn cloud_volume(&self, id: &str) -> Option<Value> {
        self.cloud_volumes()
            .await
            .into_iter()
            .find(|v| v["id"] == id)
    }

    /// Request counts per `METHOD route`.
    pub async fn request_counts(&self) -> serde_json::Map<String, Value> {
        let counts = self.admin_get("requests").await;
        counts
            .get("requests")
            .cloned()
            .unwrap_or(counts)
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// Requests that change something in the cloud (anything but GET), with their counts.
    pub async fn cloud_writes(&self) -> Vec<(String, u64)> {
        self.request_counts()
            .await
            .into_iter()
            .filter(|(route, _)| !route.starts_with("GET ") && !route.contains("/identity/"))
            .map(|(route, n)| (route, n.as_u64().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn name_of<K: ResourceExt>(object: &K) -> String {
        object.name_any()
    }
}

/// Emulator transitions of 100 ms: fast, yet slow enough to see the states in between.
pub fn fast_config() -> Config {
    Config::demo().with_transitions(Duration::from_millis(100))
}

/// Polls `fetch` until `accept` says yes; `None` after `deadline`.
async fn wait_for_or<T, F, Fut, A>(deadline: Duration, mut fetch: F, mut accept: A) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    A: FnMut(&T) -> bool,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = fetch().await
            && accept(&value)
        {
            return Some(value);
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The condition `type_` has `status` (and `reason`) for the object's current generation.
pub fn condition_matches(object: &Value, type_: &str, status: &str, reason: Option<&str>) -> bool {
    let generation = object["metadata"]["generation"].as_i64();
    let Some(conditions) = object["status"]["conditions"].as_array() else {
        return false;
    };
    conditions.iter().any(|c| {
        c["type"] == type_
            && c["status"] == status
            && reason.is_none_or(|r| c["reason"] == r)
            && c["observedGeneration"].as_i64() == generation
    })
}

/// A Volume manifest using the test Secret's `cloud`.
pub fn volume_manifest(name: &str, cloud: &str, spec: Value) -> Value {
    let mut full = json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "Volume",
        "metadata": {"name": name},
        "spec": {"cloudCredentialsRef": {"secretName": SECRET, "cloudName": cloud}},
    });
    if let (Some(target), Some(extra)) = (full["spec"].as_object_mut(), spec.as_object()) {
        target.extend(extra.clone());
    }
    full
}
