//! The CRDs as a contract, checked by a real kube-apiserver: what it accepts, what it refuses,
//! and with which message.
//!
//! The manifests live in `tests/admission/`: `invalid/*.yaml` break one rule each and start with
//! `# expect: <part of the API server's message>`; `updates/*.yaml` hold two documents, an
//! object and its update, and expect either `accepted` or the refusal's message.

mod support;

use std::path::Path;

use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde_json::Value;

struct Case {
    file: String,
    expect: String,
    documents: Vec<Value>,
}

fn load_cases(dir: &str) -> Vec<Case> {
    let dir = support::repo_root().join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|path| load_case(path)).collect()
}

fn load_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("a readable manifest");
    let expect = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} must start with `# expect: ...`", path.display()))
        .trim()
        .to_string();
    Case {
        file: path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned(),
        expect,
        documents: yaml_documents(&text),
    }
}

fn yaml_documents(text: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(text).expect("valid YAML");
    documents.into_iter().filter(|doc| !doc.is_null()).collect()
}

/// The API for a manifest's kind, in `namespace`.
async fn api_for(client: &Client, namespace: &str, manifest: &Value) -> Api<DynamicObject> {
    let api_version = manifest["apiVersion"].as_str().expect("apiVersion");
    let kind = manifest["kind"].as_str().expect("kind");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities): (ApiResource, ApiCapabilities) = pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|err| panic!("the API server does not serve {api_version} {kind}: {err}"));
    match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    }
}

fn dynamic(manifest: &Value, name: &str) -> DynamicObject {
    let mut object: DynamicObject = serde_json::from_value(manifest.clone())
        .expect("a manifest with apiVersion, kind and metadata");
    object.metadata.name = Some(name.to_string());
    object.metadata.namespace = None;
    object
}

fn refusal(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => panic!("expected the API server to refuse the object, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_is_accepted() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "examples").await;
    let dir = support::repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "examples/ should hold the samples, found {files:?}"
    );
    let mut created = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a readable example");
        for manifest in yaml_documents(&text) {
            let api = api_for(&client, &namespace, &manifest).await;
            let object = dynamic(
                &manifest,
                manifest["metadata"]["name"].as_str().expect("a name"),
            );
            api.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|err| panic!("{} was refused: {err}", path.display()));
            created += 1;
        }
    }
    assert!(created >= 5);
}

/// Values at the edge of a rule (`valid/*.yaml`) are accepted: a bound that refused them would
/// be tighter than documented.
#[tokio::test(flavor = "multi_thread")]
async fn values_at_the_bounds_are_accepted() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "bounds").await;
    let dir = support::repo_root().join("tests/admission/valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/admission/valid exists")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    let mut created = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a readable manifest");
        for manifest in yaml_documents(&text) {
            let name = manifest["metadata"]["name"].as_str().expect("a name");
            let api = api_for(&client, &namespace, &manifest).await;
            api.create(&PostParams::default(), &dynamic(&manifest, name))
                .await
                .unwrap_or_else(|err| panic!("{} ({name}) was refused: {err}", path.display()));
            created += 1;
        }
    }
    assert!(created >= 3, "tests/admission/valid holds the edge cases");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_are_refused_with_a_message_that_says_what_to_do() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "invalid").await;
    let cases = load_cases("tests/admission/invalid");
    assert!(
        cases.len() >= 30,
        "the corpus should hold at least 30 manifests"
    );
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        assert_eq!(
            case.documents.len(),
            1,
            "{}: one manifest per file",
            case.file
        );
        let manifest = &case.documents[0];
        let api = api_for(&client, &namespace, manifest).await;
        match api
            .create(
                &PostParams::default(),
                &dynamic(manifest, &format!("case-{index}")),
            )
            .await
        {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected a refusal with {:?}",
                case.file, case.expect
            )),
            Err(err) => {
                let message = refusal(err);
                if !message.contains(&case.expect) {
                    failures.push(format!(
                        "{}: expected {:?} in\n    {message}",
                        case.file, case.expect
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_keep_immutable_fields_and_allow_the_rest() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "updates").await;
    let cases = load_cases("tests/admission/updates");
    assert!(
        cases.iter().any(|c| c.expect == "accepted")
            && cases.iter().any(|c| c.expect != "accepted")
    );
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let [before, after] = case.documents.as_slice() else {
            panic!(
                "{}: expected two documents, the object and its update",
                case.file
            );
        };
        let name = format!("case-{index}");
        let api = api_for(&client, &namespace, before).await;
        let created = api
            .create(&PostParams::default(), &dynamic(before, &name))
            .await
            .unwrap_or_else(|err| panic!("{}: the original object was refused: {err}", case.file));
        let mut update = dynamic(after, &name);
        update.metadata.resource_version = created.resource_version();
        let result = api.replace(&name, &PostParams::default(), &update).await;
        match (result, case.expect.as_str()) {
            (Ok(_), "accepted") => {}
            (Ok(_), expect) => failures.push(format!(
                "{}: accepted, expected a refusal with {expect:?}",
                case.file
            )),
            (Err(err), "accepted") => {
                failures.push(format!("{}: refused: {}", case.file, refusal(err)))
            }
            (Err(err), expect) => {
                let message = refusal(err);
                if !message.contains(expect) {
                    failures.push(format!(
                        "{}: expected {expect:?} in\n    {message}",
                        case.file
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_are_filled_in_by_the_api_server() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "defaults").await;
    let manifest: Value = serde_json::json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "VolumeImage",
        "metadata": {"name": "defaults"},
        "spec": {
            "cloudCredentialsRef": {"secretName": "creds", "cloudName": "demo"},
            "resource": {"name": "golden", "volumeID": "x"}
        }
    });
    let api = api_for(&client, &namespace, &manifest).await;
    let created = api
        .create(&PostParams::default(), &dynamic(&manifest, "defaults"))
        .await
        .expect("a minimal VolumeImage is accepted");
    let spec = &created.data["spec"];
    assert_eq!(spec["managementPolicy"], "managed");
    assert_eq!(spec["deletionPolicy"], "Delete");
    assert_eq!(spec["resource"]["diskFormat"], "raw");
    assert_eq!(spec["resource"]["containerFormat"], "bare");
    assert_eq!(spec["resource"]["force"], false);
    // And it reads back into the Rust type the controllers use.
    let typed: cloudvol::api::VolumeImage =
        serde_json::from_value(serde_json::to_value(&created).expect("serializable"))
            .expect("the typed form");
    assert_eq!(typed.spec.resource.expect("resource").disk_format, "raw");

    // A retype moves no data unless the spec says so.
    let volume: Value = serde_json::json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "Volume",
        "metadata": {"name": "defaults"},
        "spec": {
            "cloudCredentialsRef": {"secretName": "creds", "cloudName": "demo"},
            "resource": {"size": 1, "volumeType": "General HDD"}
        }
    });
    let api = api_for(&client, &namespace, &volume).await;
    let created = api
        .create(&PostParams::default(), &dynamic(&volume, "defaults"))
        .await
        .expect("a minimal Volume is accepted");
    assert_eq!(created.data["spec"]["resource"]["migrationPolicy"], "never");
}
