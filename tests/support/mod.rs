//! Shared by the integration tests: a real kube-apiserver with the CRDs installed, and a
//! namespace per test so that tests run in parallel without seeing each other.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod gitops;
pub mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the test control plane: started on first use (once per test binary,
/// reusing one that is already running) with the current CRDs installed.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        let path = start_control_plane();
        // The CRDs come from the Rust types, not from crds/ (the drift test pins those).
        let install_path = path.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(install_crds(&install_path));
        })
        .join()
        .expect("installing the CRDs failed (see above)");
        path
    })
}

fn start_control_plane() -> PathBuf {
    let script = repo_root().join("hack/control-plane.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the test control plane did not start ({}), so these tests cannot run.\n\
         hack/control-plane.sh needs Go to build kube-apiserver and etcd (or KUBEBUILDER_ASSETS \
         pointing at envtest binaries).\n{stderr}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| {
            panic!("hack/control-plane.sh start printed no KUBECONFIG:\n{stdout}\n{stderr}")
        });
    PathBuf::from(path.trim())
}

async fn install_crds(kubeconfig: &Path) {
    let client = client_for(kubeconfig).await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply("cloudvol-tests").force();
    for crd in cloudvol::api::crds() {
        let name = crd.metadata.name.clone().expect("CRDs have names");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|err| panic!("the API server refused CRD {name}: {err}"));
    }
    for crd in cloudvol::api::crds() {
        let name = crd.metadata.name.clone().expect("CRDs have names");
        wait_for(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .into_iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig).expect("the control plane's kubeconfig is readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the control plane's kubeconfig is valid");
    Client::try_from(config).expect("a kube client")
}

/// A client for the test control plane, bound to the calling test's runtime.
pub async fn client() -> Client {
    let path = kubeconfig();
    client_for(path).await
}

/// Creates a fresh namespace for one test. Namespaces are never deleted: the test control
/// plane has no controller-manager to finish that.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let suffix: u32 = rand::random();
    let name = format!("{prefix}-{suffix:08x}");
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("cloudvol.dev/test".to_string(), prefix.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|err| panic!("cannot create namespace {name}: {err}"));
    name
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
