//! One test's world: its own namespace on the real API server, its own emulator, a
//! credentials Secret pointing at that emulator, and the operator running in-process, watching
//! only that namespace. Killing the operator aborts it mid-flight, like a crash.
//!
//! A harness can also run against a cloud it did not start (a real OpenStack): see
//! [`Backend`]. Then only the Secret differs; the operator runs exactly as against the
//! emulator, and the backend-neutral helpers ([`Harness::attach`], [`Harness::read_volume`],
//! [`Harness::read_image`], [`Harness::read_members`], ...) reach the cloud the backend's way.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use cloudvol::cloud::model::{CreateVolume, ImageQuery};
use cloudvol::cloud::{
    CloudCredentials, CloudError, CloudHttp, Connector, RetryPolicy, TransportConfig,
};
use cloudvol::controller::inventory::Polling;
use cloudvol::controller::requeue::Backoff;
use cloudvol::controller::{Context, Settings};
use cloudvol::metrics::Metrics;
use cloudvol_emulator::{Config, Emulator};
use futures::future::BoxFuture;

use super::wait_for;

/// The shutdown signal an in-process operator runs until.
pub type Shutdown =
    futures::future::Shared<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

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
    /// The harness's own emulator (a harness on a [`Backend::Remote`] cloud has none).
    pub emulator: LocalEmulator,
    pub metrics: Arc<Metrics>,
    http: reqwest::Client,
    operator: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    backend: Backend,
    /// How long the waits of this harness last: [`DEADLINE`] on the emulator.
    deadline: Duration,
}

impl Harness {
    /// A namespace, an emulator with `config`, and the credentials Secret; no operator yet.
    pub async fn with_emulator(prefix: &str, config: Config) -> Harness {
        if let Ok(filter) = std::env::var("CLOUDVOL_TEST_LOG") {
            cloudvol::logging::init_logging(&filter, cloudvol::logging::LogFormat::Text);
        }
        let client = super::client().await;
        let namespace = super::namespace(&client, prefix).await;
        let emulator = cloudvol_emulator::start(config, "127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the emulator starts");
        let harness = Harness {
            client,
            namespace,
            emulator: LocalEmulator(Some(emulator)),
            metrics: Arc::new(Metrics::new()),
            http: reqwest::Client::new(),
            operator: None,
            backend: Backend::Emulator,
            deadline: DEADLINE,
        };
        harness.put_secret(SECRET, &harness.clouds_yaml()).await;
        harness
    }

    /// A namespace, the credentials Secret for `backend`'s cloud, and the operator running:
    /// on [`Backend::Emulator`] exactly [`Harness::new`]; on a remote cloud the same, with the
    /// cloud's clouds.yaml in the Secret and its deadline for every wait.
    pub async fn on(prefix: &str, backend: &Backend) -> Harness {
        let remote = match backend {
            Backend::Emulator => return Harness::new(prefix).await,
            Backend::Remote(remote) => remote.clone(),
        };
        let client = super::client().await;
        let namespace = super::namespace(&client, prefix).await;
        let mut harness = Harness {
            client,
            namespace,
            emulator: LocalEmulator(None),
            metrics: Arc::new(Metrics::new()),
            http: reqwest::Client::new(),
            operator: None,
            deadline: remote.deadline(),
            backend: Backend::Remote(remote.clone()),
        };
        harness.put_secret(SECRET, &remote.clouds_yaml()).await;
        harness.start_operator().await;
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
        self.start_operator_with(self.settings(), |ctx, shutdown| {
            Box::pin(async move {
                if let Err(kind) = cloudvol::controller::run(ctx, shutdown).await {
                    panic!("the {kind} controller stopped on its own");
                }
            })
        })
        .await;
    }

    /// The settings of an in-process operator: this namespace only, a 30 s resync, fast
    /// backoff, inventories that look every 200 ms while something waits. Tests that need
    /// others change these and pass them to [`Harness::start_operator_with`].
    ///
    /// `CLOUDVOL_TEST_POLLING=per-object` runs the suites with each object reading the cloud
    /// itself (`--polling per-object`); the default is the operator's own (inventories).
    pub fn settings(&self) -> Settings {
        Settings {
            namespaces: vec![self.namespace.clone()],
            concurrency: 2,
            resync_period: Duration::from_secs(30),
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(1),
            },
            polling: test_polling(),
            inventory_interval: Duration::from_millis(200),
            ..Settings::default()
        }
    }

    /// Starts `run` (the operator, or some of its controllers) in-process with `settings`
    /// and fast transport retries.
    pub async fn start_operator_with<F>(&mut self, settings: Settings, run: F)
    where
        F: FnOnce(Arc<Context>, Shutdown) -> BoxFuture<'static, ()>,
    {
        assert!(self.operator.is_none(), "the operator is already running");
        let transport = TransportConfig {
            retry: RetryPolicy::fast(),
            rate_limit: None,
            ..TransportConfig::default()
        };
        let connector = Connector::new(CloudHttp::new(transport).expect("an HTTP client"));
        connector.http().set_request_observer(self.metrics.clone());
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            connector,
            self.metrics.clone(),
            settings,
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Shutdown = futures::FutureExt::shared(Box::pin(async move {
            let _ = stopped.await;
        }));
        let handle = tokio::spawn(run(ctx, shutdown));
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

    /// Creates a 1 GiB Volume `name` on the `demo` cloud and waits until it is `Ready`;
    /// returns it.
    pub async fn ready_volume(&self, name: &str) -> cloudvol::api::Volume {
        self.create::<cloudvol::api::Volume>(volume_manifest(
            name,
            "demo",
            json!({"resource": {"size": 1}}),
        ))
        .await;
        self.wait_condition(name, "Ready", "True", None).await
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
        let deadline = self.deadline;
        let found = wait_for_or(
            deadline,
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
                "timed out after {deadline:?} waiting for {what}; last seen status:\n{}",
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
        wait_for(self.deadline, &format!("{name} to be gone"), || {
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
            self.deadline,
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

    /// The request count of one route (`"POST /block-storage/v2/{tenant}/volumes"`).
    pub async fn request_count(&self, route: &str) -> u64 {
        self.request_counts()
            .await
            .get(route)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Adds a fault rule (`POST /_admin/faults`).
    pub async fn add_fault(&self, rule: Value) {
        self.admin_post("faults", rule).await;
    }

    /// The fault rules not used up yet.
    pub async fn faults_left(&self) -> Vec<Value> {
        self.admin_get("faults").await["faults"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every image in the emulator (all tenants), members included.
    pub async fn cloud_images(&self) -> Vec<Value> {
        self.emulator_images().await
    }

    /// The owner adds `tenant` as a member of its image straight in the cloud (not through an
    /// ImageShare), as someone else would have.
    pub async fn add_cloud_member(&self, image_id: &str, tenant: &str) {
        cloud_connector()
            .image(&self.credentials(&self.owner().cloud))
            .expect("an image client")
            .add_member(image_id, tenant)
            .await
            .unwrap_or_else(|err| panic!("the cloud refused member {tenant} on {image_id}: {err}"));
    }

    pub fn name_of<K: ResourceExt>(object: &K) -> String {
        object.name_any()
    }

    // --- the cloud, whichever backend it is -----------------------------------------------

    /// The backend this harness runs against.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// How long this harness waits for anything.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The clouds.yaml the credentials Secret holds.
    pub fn secret_clouds_yaml(&self) -> String {
        match &self.backend {
            Backend::Emulator => self.clouds_yaml(),
            Backend::Remote(remote) => remote.clouds_yaml(),
        }
    }

    /// The tenant that owns the volumes and images (`demo` on the emulator).
    pub fn owner(&self) -> Tenant {
        match &self.backend {
            Backend::Emulator => Tenant {
                cloud: "demo".into(),
                id: DEMO_TENANT.into(),
            },
            Backend::Remote(remote) => remote.owner(),
        }
    }

    /// The second tenant, that images are shared with (`partner` on the emulator).
    pub fn member(&self) -> Tenant {
        match &self.backend {
            Backend::Emulator => Tenant {
                cloud: "partner".into(),
                id: PARTNER_TENANT.into(),
            },
            Backend::Remote(remote) => remote.member(),
        }
    }

    /// A cloud resource name that no other test, in this run or an earlier one, uses: the
    /// namespace (random per test) and `what`. [`Harness::leftovers`] finds them by it.
    pub fn unique_name(&self, what: &str) -> String {
        format!("{}-{what}", self.namespace)
    }

    /// Attaches the owner's `available` volume to `server_id` as a server would, and returns
    /// once the cloud reports it `in-use`.
    pub async fn attach(&self, volume_id: &str, server_id: &str) {
        match &self.backend {
            Backend::Emulator => {
                self.admin_post(
                    &format!("volumes/{volume_id}/attach"),
                    json!({"server_id": server_id}),
                )
                .await;
            }
            Backend::Remote(remote) => remote.attach(volume_id, server_id).await,
        }
        self.wait_cloud(&format!("volume {volume_id} in-use"), || async {
            let v = self.read_volume(volume_id).await?;
            (v.status == "in-use" && v.servers.iter().any(|s| s == server_id)).then_some(())
        })
        .await;
    }

    /// Detaches every server from the owner's volume, and returns once the cloud no longer
    /// reports it attached (`available`, or already on its way out: an operator waiting to
    /// delete it may be quicker than this look).
    pub async fn detach(&self, volume_id: &str) {
        match &self.backend {
            Backend::Emulator => {
                self.admin_post(&format!("volumes/{volume_id}/detach"), json!({}))
                    .await;
            }
            Backend::Remote(remote) => remote.detach(volume_id).await,
        }
        self.wait_cloud(&format!("volume {volume_id} detached"), || async {
            match self.read_volume(volume_id).await {
                None => Some(()),
                Some(v) => (v.servers.is_empty()
                    && !["in-use", "detaching"].contains(&v.status.as_str()))
                .then_some(()),
            }
        })
        .await;
    }

    /// The owner's volume as the cloud reports it now (`None`: it does not exist).
    pub async fn read_volume(&self, id: &str) -> Option<SeenVolume> {
        match &self.backend {
            Backend::Emulator => self
                .cloud_volume(id)
                .await
                .map(|v| SeenVolume::from_json(&v)),
            Backend::Remote(remote) => remote.volume(id).await,
        }
    }

    /// The member tenant's volume as the cloud reports it now (`None`: it does not exist).
    pub async fn read_member_volume(&self, id: &str) -> Option<SeenVolume> {
        match &self.backend {
            // The admin API lists every tenant's volumes.
            Backend::Emulator => self
                .cloud_volume(id)
                .await
                .map(|v| SeenVolume::from_json(&v)),
            Backend::Remote(remote) => remote.member_volume(id).await,
        }
    }

    /// Makes sure the cloud has a volume type `name` (a real cloud's types are resources its
    /// admin creates, with `extra_specs`; the emulator takes any name).
    pub async fn ensure_volume_type(&self, name: &str, extra_specs: Value) {
        if let Backend::Remote(remote) = &self.backend {
            remote.ensure_volume_type(name, extra_specs).await;
        }
    }

    /// The owner's image as the cloud reports it now (`None`: it does not exist).
    pub async fn read_image(&self, id: &str) -> Option<SeenImage> {
        match &self.backend {
            Backend::Emulator => self
                .emulator_images()
                .await
                .iter()
                .find(|i| i["id"] == id)
                .map(SeenImage::from_json),
            Backend::Remote(remote) => remote.image(id).await,
        }
    }

    /// The owner's image's members as (tenant, status), sorted.
    pub async fn read_members(&self, image_id: &str) -> Vec<(String, String)> {
        let mut members = match &self.backend {
            Backend::Emulator => self
                .emulator_images()
                .await
                .iter()
                .find(|i| i["id"] == image_id)
                .map(|i| members_from_json(&i["members"]))
                .unwrap_or_default(),
            Backend::Remote(remote) => remote.members(image_id).await,
        };
        members.sort();
        members
    }

    /// The IDs of the images the member tenant lists (its own image list, every page).
    pub async fn member_image_ids(&self) -> Vec<String> {
        match &self.backend {
            Backend::Emulator => {
                let creds = self.credentials(&self.member().cloud);
                let images = cloud_connector()
                    .image(&creds)
                    .expect("an image client")
                    .list_images(&ImageQuery::default())
                    .await
                    .expect("the member tenant lists its images");
                images.into_iter().map(|i| i.id).collect()
            }
            Backend::Remote(remote) => remote.member_image_ids().await,
        }
    }

    /// Creates a volume in the owner's project straight in the cloud (not through a Volume
    /// object), as someone else would have made it; returns its ID once it is `available`.
    pub async fn create_cloud_volume(&self, name: &str, size: u64) -> String {
        let storage = cloud_connector()
            .block_storage(&self.credentials(&self.owner().cloud))
            .expect("a block-storage client");
        let created = storage
            .create_volume(&CreateVolume {
                size,
                name: Some(name.to_string()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|err| panic!("the cloud refused to create volume {name}: {err}"));
        let id = created.id;
        self.wait_cloud(&format!("volume {name} ({id}) available"), || async {
            (self.read_volume(&id).await?.status == "available").then_some(())
        })
        .await;
        id
    }

    /// Deletes the owner's image straight in the cloud (not through a VolumeImage), as someone
    /// else would, and waits until it is gone.
    pub async fn delete_cloud_image(&self, id: &str) {
        let images = cloud_connector()
            .image(&self.credentials(&self.owner().cloud))
            .expect("an image client");
        match images.delete_image(id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {}
            Err(err) => panic!("the cloud refused to delete image {id}: {err}"),
        }
        self.wait_cloud(&format!("image {id} gone"), || async {
            self.read_image(id).await.is_none().then_some(())
        })
        .await;
    }

    /// Deletes the owner's volume straight in the cloud and waits until it is gone.
    pub async fn delete_cloud_volume(&self, id: &str) {
        let storage = cloud_connector()
            .block_storage(&self.credentials(&self.owner().cloud))
            .expect("a block-storage client");
        match storage.delete_volume(id).await {
            Ok(()) | Err(CloudError::NotFound { .. }) => {}
            Err(err) => panic!("the cloud refused to delete volume {id}: {err}"),
        }
        self.wait_cloud(&format!("volume {id} gone"), || async {
            self.read_volume(id).await.is_none().then_some(())
        })
        .await;
    }

    /// Polls `check` until it returns `Some`, within this harness's deadline.
    pub async fn wait_cloud<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        wait_for(self.deadline, what, check).await
    }

    /// Waits until the object exists and `accept` says yes; returns it.
    pub async fn wait_object<K>(&self, name: &str, what: &str, accept: impl Fn(&K) -> bool) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let accept = &accept;
        wait_for(self.deadline, &format!("{name}: {what}"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.filter(|o| accept(o)) }
        })
        .await
    }

    /// Cloud volumes and images whose names start with this harness's namespace: what the
    /// test made and did not delete, as `volume <id> <name> <status>` / `image ...`.
    pub async fn leftovers(&self) -> Vec<String> {
        let prefix = self.namespace.as_str();
        match &self.backend {
            Backend::Emulator => {
                let named = |v: &Value| v["name"].as_str().is_some_and(|n| n.starts_with(prefix));
                let volumes = self.cloud_volumes().await;
                let images = self.emulator_images().await;
                let mut left: Vec<String> = volumes
                    .iter()
                    .filter(|v| named(v))
                    .map(|v| format!("volume {} {} {}", v["id"], v["name"], v["status"]))
                    .collect();
                left.extend(
                    images
                        .iter()
                        .filter(|i| named(i))
                        .map(|i| format!("image {} {} {}", i["id"], i["name"], i["status"])),
                );
                left
            }
            Backend::Remote(remote) => remote.leftovers(prefix).await,
        }
    }

    /// After a failed test: stops the operator (so that it recreates nothing) and deletes,
    /// best effort, what the test left in a remote cloud, which outlives the test. The
    /// emulator goes with the test.
    pub async fn sweep(&mut self) {
        self.kill_operator().await;
        if let Backend::Remote(remote) = &self.backend {
            remote.sweep(&self.namespace).await;
        }
    }

    /// Parsed credentials for one cloud of the Secret's clouds.yaml.
    fn credentials(&self, cloud: &str) -> CloudCredentials {
        CloudCredentials::from_clouds_yaml(self.secret_clouds_yaml().as_bytes(), cloud, None)
            .unwrap_or_else(|err| panic!("cloud {cloud} of the test clouds.yaml: {err}"))
    }

    async fn emulator_images(&self) -> Vec<Value> {
        let all = self.admin_get("images").await;
        let list = all.get("images").cloned().unwrap_or(all);
        list.as_array().cloned().unwrap_or_default()
    }
}

/// A client of the operator's own cloud layer, for test set-up.
fn cloud_connector() -> Connector {
    Connector::new(CloudHttp::new(TransportConfig::default()).expect("an HTTP client"))
}

/// The harness's emulator. A harness on a remote cloud has none, and says so when a test asks
/// for it (its admin API is emulator-only).
pub struct LocalEmulator(Option<Emulator>);

impl Deref for LocalEmulator {
    type Target = Emulator;

    fn deref(&self) -> &Emulator {
        self.0.as_ref().expect(
            "this harness runs against a remote cloud, not an emulator: the emulator's admin \
             API is not there; use the backend-neutral helpers (attach, read_volume, ...)",
        )
    }
}

// --- backends -------------------------------------------------------------------------------

/// The cloud behind a harness.
#[derive(Clone)]
pub enum Backend {
    /// A fresh emulator per harness, 100 ms transitions, clouds `demo` and `partner`.
    Emulator,
    /// A cloud the harness did not start, shared by the tests (a real OpenStack).
    Remote(Arc<dyn RemoteCloud>),
}

impl Backend {
    pub fn name(&self) -> &str {
        match self {
            Backend::Emulator => "emulator",
            Backend::Remote(remote) => remote.name(),
        }
    }
}

/// A tenant as a test uses it: its cloud in the Secret's clouds.yaml, and its ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub cloud: String,
    pub id: String,
}

/// What differs in a cloud the harness did not start: the Secret's clouds.yaml, the two
/// tenants, how a server attaches, and how a test reads the cloud straight (not through the
/// operator). Reads are as the owner tenant; `None` means "does not exist".
pub trait RemoteCloud: Send + Sync {
    /// A short name, for test names and messages.
    fn name(&self) -> &str;
    fn clouds_yaml(&self) -> String;
    fn owner(&self) -> Tenant;
    fn member(&self) -> Tenant;
    /// How long a test waits for anything on this cloud.
    fn deadline(&self) -> Duration;
    /// Attaches the owner's volume to `server_id` as the compute service would.
    fn attach<'a>(&'a self, volume_id: &'a str, server_id: &'a str) -> BoxFuture<'a, ()>;
    /// Detaches every server from the owner's volume.
    fn detach<'a>(&'a self, volume_id: &'a str) -> BoxFuture<'a, ()>;
    fn volume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenVolume>>;
    /// The member tenant's volume.
    fn member_volume<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenVolume>>;
    /// Creates the volume type `name` with `extra_specs` (as the cloud's admin) unless it
    /// exists.
    fn ensure_volume_type<'a>(&'a self, name: &'a str, extra_specs: Value) -> BoxFuture<'a, ()>;
    fn image<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<SeenImage>>;
    /// The image's members as (tenant, status).
    fn members<'a>(&'a self, image_id: &'a str) -> BoxFuture<'a, Vec<(String, String)>>;
    /// The IDs of the images the member tenant lists.
    fn member_image_ids(&self) -> BoxFuture<'_, Vec<String>>;
    /// The owner's volumes and images, and the member's volumes, whose names start with
    /// `prefix`.
    fn leftovers<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Vec<String>>;
    /// Best effort: deletes the owner's volumes and images, and the member's volumes, whose
    /// names start with `prefix` (detaching and unprotecting as needed).
    fn sweep<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()>;
}

/// A volume as the cloud reports it (Cinder's volume shape, which the emulator's admin API
/// uses too).
#[derive(Clone, Debug, PartialEq)]
pub struct SeenVolume {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub size: u64,
    /// The servers of its attachments.
    pub servers: Vec<String>,
    pub volume_type: Option<String>,
    /// The image it was made from (`volume_image_metadata.image_id`), once made.
    pub source_image_id: Option<String>,
}

impl SeenVolume {
    pub fn from_json(v: &Value) -> SeenVolume {
        SeenVolume {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            name: v["name"].as_str().map(str::to_string),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            size: v["size"].as_u64().unwrap_or_default(),
            servers: v["attachments"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|a| a["server_id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            volume_type: v["volume_type"].as_str().map(str::to_string),
            source_image_id: v["volume_image_metadata"]["image_id"]
                .as_str()
                .map(str::to_string),
        }
    }
}

/// An image as the cloud reports it (Glance's image shape).
#[derive(Clone, Debug, PartialEq)]
pub struct SeenImage {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub visibility: String,
    pub protected: bool,
    pub owner: Option<String>,
    pub tags: Vec<String>,
}

impl SeenImage {
    pub fn from_json(i: &Value) -> SeenImage {
        SeenImage {
            id: i["id"].as_str().unwrap_or_default().to_string(),
            name: i["name"].as_str().map(str::to_string),
            status: i["status"].as_str().unwrap_or_default().to_string(),
            visibility: i["visibility"].as_str().unwrap_or_default().to_string(),
            protected: i["protected"].as_bool().unwrap_or_default(),
            owner: i["owner"].as_str().map(str::to_string),
            tags: i["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Members as (tenant, status) from a JSON list of `{member_id, status}` (Glance's shape).
pub fn members_from_json(members: &Value) -> Vec<(String, String)> {
    members
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    (
                        m["member_id"].as_str().unwrap_or_default().to_string(),
                        m["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The polling mode the suites run in: `CLOUDVOL_TEST_POLLING` (`per-object` or
/// `inventory`), else the operator's default.
pub fn test_polling() -> Polling {
    match std::env::var("CLOUDVOL_TEST_POLLING") {
        Ok(mode) if !mode.is_empty() => mode
            .parse()
            .unwrap_or_else(|err| panic!("CLOUDVOL_TEST_POLLING: {err}")),
        _ => Polling::default(),
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
    manifest("Volume", name, cloud, spec)
}

/// A VolumeImage manifest using the test Secret's cloud `cloud`, with extra spec fields.
pub fn image_manifest(name: &str, cloud: &str, spec: Value) -> Value {
    manifest("VolumeImage", name, cloud, spec)
}

/// A manifest of `kind` using the test Secret's cloud `cloud`, with extra spec fields.
pub fn manifest(kind: &str, name: &str, cloud: &str, spec: Value) -> Value {
    let mut full = json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"cloudCredentialsRef": {"secretName": SECRET, "cloudName": cloud}},
    });
    if let (Some(target), Some(extra)) = (full["spec"].as_object_mut(), spec.as_object()) {
        target.extend(extra.clone());
    }
    full
}

/// An ImageShare manifest with the demo tenant's credentials.
pub fn share_manifest(name: &str, spec: Value) -> Value {
    manifest("ImageShare", name, "demo", spec)
}
