//! The packaging, checked by the real tools: the Helm chart by helm (built from Go modules by
//! `hack/helm.sh`) against the real kube-apiserver, `deploy/` by `kubectl apply -k`, the pod by
//! the API server's PodSecurity admission, the Argo CD health check by gopher-lua and the
//! conditions by kstatus (`hack/gitops/`), and the Dockerfile by reading what it copies.
//!
//! Every test that touches the API server works in namespaces and helm releases of its own, and
//! none changes the cloudvol CRDs, which the other tests share.

mod support;

use support::gitops;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

const CHART: &str = "charts/cloudvol";

// --- tools -----------------------------------------------------------------------------------

fn repo() -> PathBuf {
    support::repo_root()
}

/// The helm binary, built by `hack/helm.sh path` on first use.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo().join("hack/helm.sh"))
            .arg("path")
            .output()
            .expect("cannot run hack/helm.sh");
        assert!(
            output.status.success(),
            "hack/helm.sh could not provide helm ({}), so the chart cannot be tested. It builds \
             helm with Go from Go modules: install Go, or set HELM to a helm 3 binary.\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Runs `command`, feeding it `stdin`, and returns its output whatever its exit status.
fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    command
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("the input reaches the command");
    }
    child.wait_with_output().expect("the command finishes")
}

/// Runs `command` and returns its stdout; fails the test with its stderr when it fails.
fn run_ok(command: &mut Command, stdin: Option<&str>) -> String {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn kubectl(args: &[&str]) -> Command {
    let mut command = Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .arg("--request-timeout=60s")
        .args(args);
    command
}

fn helm_cmd(args: &[&str]) -> Command {
    let mut command = Command::new(helm());
    command.args(args);
    command
}

fn helm_on_cluster(args: &[&str]) -> Command {
    let mut command = helm_cmd(args);
    command.arg("--kubeconfig").arg(support::kubeconfig());
    command
}

/// `helm template` of the chart as `release` in `namespace`, with `--set` values.
fn render(release: &str, namespace: &str, set: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for value in set {
        args.extend(["--set", value]);
    }
    run_ok(&mut helm_cmd(&args), None)
}

fn documents(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(yaml).expect("valid YAML");
    documents.into_iter().filter(|doc| !doc.is_null()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among the rendered objects"))
}

fn kinds_and_names(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or("-"),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// A fresh namespace for one test, with `labels`. Never deleted: the test control plane has no
/// controller-manager to finish that.
fn namespace(prefix: &str, labels: &[(&str, &str)]) -> String {
    let suffix: u32 = rand::random();
    let name = format!("{prefix}-{suffix:08x}");
    create_namespace(&name, prefix, labels);
    name
}

/// Creates the namespace `name`, labelled with the test that made it (`prefix`) and `labels`.
fn create_namespace(name: &str, prefix: &str, labels: &[(&str, &str)]) {
    let mut all: BTreeMap<&str, &str> = labels.iter().copied().collect();
    all.insert("cloudvol.dev/test", prefix);
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": all},
    });
    run_ok(
        &mut kubectl(&["create", "-f", "-"]),
        Some(&manifest.to_string()),
    );
}

fn temp_dir(prefix: &str) -> PathBuf {
    let suffix: u32 = rand::random();
    let dir = std::env::temp_dir().join(format!(
        "cloudvol-{prefix}-{}-{suffix:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

/// The `*.yaml` files of a folder, by name.
fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("a readable file");
            (name, text)
        })
        .collect()
}

// --- the chart on its own ---------------------------------------------------------------------

#[test]
fn chart_lints_strictly_with_every_option() {
    for set in [
        vec![],
        vec!["rbac.scope=namespaced", "watchNamespaces={team-a,team-b}"],
        vec![
            "metrics.serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "leaderElection.enabled=false",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        for value in &set {
            args.extend(["--set", value]);
        }
        let out = run_ok(&mut helm_cmd(&args), None);
        assert!(out.contains("0 chart(s) failed"), "{set:?}:\n{out}");
    }
}

#[test]
fn chart_crds_are_the_crds_folder() {
    let generated = yaml_files(&repo().join("crds"));
    let chart = yaml_files(&repo().join(CHART).join("crds"));
    assert!(!generated.is_empty(), "crds/ holds the generated CRDs");
    assert!(
        generated == chart,
        "charts/cloudvol/crds/ differs from crds/ (files {:?} vs {:?}): run `make crds`, which \
         writes both, and commit the result",
        chart.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>()
    );
}

#[test]
fn chart_app_version_is_the_operators() {
    let chart = std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_saphyr::from_str(&chart).expect("Chart.yaml");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml's appVersion (the default image tag) is the version in Cargo.toml"
    );
}

#[test]
fn values_schema_and_checks_refuse_what_cannot_work() {
    let cases = [
        (
            vec!["unknownKey=1"],
            "additional properties 'unknownKey' not allowed",
        ),
        (vec!["logFormat=xml"], "logFormat"),
        (vec!["logLevel=debug level"], "logLevel"),
        (vec!["resyncPeriod=ten minutes"], "resyncPeriod"),
        (vec!["image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            vec!["rbac.scope=namespaced"],
            "list them in watchNamespaces",
        ),
        (vec!["watchNamespaces={a,a}"], "lists a namespace twice"),
        (
            vec!["networkPolicy.enable=true"],
            "additional properties 'enable' not allowed",
        ),
    ];
    for (set, expected) in cases {
        let mut args = vec!["template", "x", CHART];
        for value in &set {
            args.extend(["--set", value]);
        }
        let output = run(&mut helm_cmd(&args), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "--set {set:?} should fail with {expected:?}, got ({}):\n{stderr}",
            output.status
        );
    }
}

#[test]
fn deployment_runs_the_operator_contract() {
    let objects = documents(&render(
        "cv",
        "ops",
        &["watchNamespaces={team-a,team-b}", "concurrency=8"],
    ));
    let deployment = find(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "cloudvol/cloudvol:0.1.0");
    assert_eq!(container["args"], json!(["run"]));
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("a name"), e))
        .collect();
    let value = |name: &str| env[name]["value"].as_str().unwrap_or_default().to_string();
    let field = |name: &str| env[name]["valueFrom"]["fieldRef"]["fieldPath"].clone();
    assert_eq!(value("CLOUDVOL_NAMESPACES"), "team-a,team-b");
    assert_eq!(value("CLOUDVOL_CONCURRENCY"), "8");
    assert_eq!(value("CLOUDVOL_RESYNC_PERIOD"), "10m");
    assert_eq!(value("CLOUDVOL_LISTEN"), "0.0.0.0:8080");
    assert_eq!(value("CLOUDVOL_LOG_LEVEL"), "info");
    assert_eq!(value("CLOUDVOL_LOG_FORMAT"), "json");
    assert_eq!(value("CLOUDVOL_LEADER_ELECTION"), "true");
    assert_eq!(value("CLOUDVOL_LEADER_ELECTION_ID"), "cloudvol-leader");
    assert_eq!(field("POD_NAME"), "metadata.name");
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(
        field("CLOUDVOL_LEADER_ELECTION_NAMESPACE"),
        "metadata.namespace"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["name"], "http");
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"].is_object());

    // Every namespace unless told otherwise: no CLOUDVOL_NAMESPACES at all.
    let objects = documents(&render("cv", "ops", &[]));
    let env = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        !env.as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "CLOUDVOL_NAMESPACES"),
        "{env}"
    );
}

/// The `value`s of the operator container's environment, by name.
fn container_env(objects: &[Value]) -> BTreeMap<String, String> {
    find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The text of `page` between `start` and the next `end`, from its first `start`.
fn documented(page: &str, start: &str, end: char) -> String {
    let text =
        std::fs::read_to_string(repo().join(page)).unwrap_or_else(|err| panic!("{page}: {err}"));
    let at = text
        .find(start)
        .unwrap_or_else(|| panic!("{page} no longer shows `{start}...`; fix this test"))
        + start.len();
    let len = text[at..].find(end).expect("the example ends");
    text[at..at + len].to_string()
}

#[test]
fn documented_log_filter_with_commas_reaches_the_operator() {
    // docs/install.md's form: `--set` splits at commas, so the filter's commas are escaped.
    let value = documented("docs/install.md", "--set 'logLevel=", '\'');
    let set = format!("logLevel={value}");
    let objects = documents(&render("cv", "ops", &[&set]));
    assert_eq!(
        container_env(&objects)["CLOUDVOL_LOG_LEVEL"],
        "cloudvol=debug,kube=info",
        "--set '{set}'"
    );

    // Unescaped, helm reads `kube=info` as a value of its own, which the schema refuses.
    let output = run(
        &mut helm_cmd(&[
            "template",
            "cv",
            CHART,
            "--set",
            "logLevel=cloudvol=debug,kube=info",
        ]),
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("additional properties 'kube' not allowed"),
        "{stderr}"
    );

    // A values file needs no escape.
    let dir = temp_dir("log-filter");
    let file = dir.join("values.yaml");
    std::fs::write(&file, "logLevel: cloudvol=debug,kube=info\n").expect("a values file");
    let out = run_ok(
        &mut helm_cmd(&[
            "template",
            "cv",
            CHART,
            "-f",
            file.to_str().expect("a UTF-8 path"),
        ]),
        None,
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        container_env(&documents(&out))["CLOUDVOL_LOG_LEVEL"],
        "cloudvol=debug,kube=info"
    );
}

#[test]
fn rbac_grants_exactly_the_operator_contract() {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    let watched = json!([
        rule(
            &["cloudvol.dev"],
            &["volumes", "volumeimages", "imageshares"],
            &["get", "list", "watch", "patch", "update"]
        ),
        rule(
            &["cloudvol.dev"],
            &[
                "volumes/status",
                "volumeimages/status",
                "imageshares/status"
            ],
            &["get", "patch", "update"]
        ),
        rule(
            &["cloudvol.dev"],
            &[
                "volumes/finalizers",
                "volumeimages/finalizers",
                "imageshares/finalizers"
            ],
            &["update"]
        ),
        rule(&[""], &["secrets"], &["get", "patch", "update"]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        rule(&[""], &["events"], &["create", "patch"]),
    ]);
    let lease = json!([rule(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "update"]
    )]);

    // Cluster-wide.
    let objects = documents(&render("cv", "ops", &[]));
    let roles: BTreeMap<String, &Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .map(|o| {
            (
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                ),
                o,
            )
        })
        .collect();
    assert_eq!(roles["ClusterRole cv-cloudvol"]["rules"], watched);
    assert_eq!(roles["Role cv-cloudvol-leader-election"]["rules"], lease);
    assert_eq!(
        roles["Role cv-cloudvol-leader-election"]["metadata"]["namespace"],
        "ops"
    );

    // Per namespace: the same rules in a Role in each watched namespace, nothing cluster-wide.
    let objects = documents(&render(
        "cv",
        "ops",
        &["rbac.scope=namespaced", "watchNamespaces={team-a,team-b}"],
    ));
    let names = kinds_and_names(&objects);
    for expected in [
        "Role team-a/cv-cloudvol",
        "RoleBinding team-a/cv-cloudvol",
        "Role team-b/cv-cloudvol",
        "RoleBinding team-b/cv-cloudvol",
        "Role ops/cv-cloudvol-leader-election",
        "RoleBinding ops/cv-cloudvol-leader-election",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:#?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("Cluster")),
        "namespaced RBAC renders nothing cluster-wide: {names:#?}"
    );
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "Role" && o["metadata"]["name"] == "cv-cloudvol")
    {
        assert_eq!(role["rules"], watched);
    }
    for binding in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "cv-cloudvol", "namespace": "ops"}])
        );
    }
}

#[test]
fn optional_objects_render_only_when_enabled() {
    let names = kinds_and_names(&documents(&render("cv", "ops", &[])));
    assert!(!names.iter().any(|n| n.starts_with("ServiceMonitor")));
    assert!(!names.iter().any(|n| n.starts_with("NetworkPolicy")));

    let objects = documents(&render(
        "cv",
        "ops",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
            "networkPolicy.enabled=true",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        ],
    ));
    let monitor = find(&objects, "ServiceMonitor");
    let service = find(&objects, "Service");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "label {key}");
    }
    let policy = find(&objects, "NetworkPolicy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "ports": [{"port": "http", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }])
    );
}

#[test]
fn argocd_health_check_in_the_docs_is_the_charts() {
    let script = std::fs::read_to_string(gitops::argocd_health_script()).expect("the script");
    let docs = std::fs::read_to_string(repo().join("docs/gitops.md")).expect("docs/gitops.md");
    // The argocd-cm example carries the script under the wildcard key, indented by four.
    let key = "  resource.customizations.health.cloudvol.dev_*: |\n";
    let start = docs
        .find(key)
        .unwrap_or_else(|| panic!("docs/gitops.md has no `{}`", key.trim()))
        + key.len();
    let block: String = docs[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or("")))
        .collect();
    assert_eq!(
        block.trim_end(),
        script.trim_end(),
        "the Lua in docs/gitops.md differs from charts/cloudvol/files/argocd-health.lua"
    );
}

// --- GitOps: kstatus and the Argo CD health check over status fixtures -----------------------

struct StatusFixture {
    file: String,
    object: Value,
    kstatus: (String, String),
    argocd: (String, String),
}

fn status_fixtures() -> Vec<StatusFixture> {
    let dir = repo().join("tests/packaging/status");
    let mut fixtures: Vec<StatusFixture> = yaml_files(&dir)
        .into_iter()
        .map(|(file, text)| {
            let header = |key: &str| {
                text.lines()
                    .take_while(|line| line.starts_with('#'))
                    .find_map(|line| line.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{file} has no `# {key}: ...` line"))
                    .trim()
                    .to_string()
            };
            StatusFixture {
                kstatus: (header("kstatus"), header("kstatus-message")),
                argocd: (header("argocd"), header("argocd-message")),
                object: serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{file}: {err}")),
                file,
            }
        })
        .collect();
    fixtures.sort_by(|a, b| a.file.cmp(&b.file));
    fixtures
}

#[test]
fn kstatus_and_argocd_health_read_the_conditions_as_documented() {
    let fixtures = status_fixtures();
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let kstatus = gitops::kstatus(&fixture.object);
        if kstatus != fixture.kstatus {
            failures.push(format!(
                "{}: kstatus says {kstatus:?}, the fixture expects {:?}",
                fixture.file, fixture.kstatus
            ));
        }
        let argocd = gitops::argocd_health(&fixture.object);
        if argocd != fixture.argocd {
            failures.push(format!(
                "{}: the Argo CD check says {argocd:?}, the fixture expects {:?}",
                fixture.file, fixture.argocd
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every state the docs describe has a fixture.
    let seen = |pick: fn(&StatusFixture) -> &str| -> BTreeSet<String> {
        fixtures.iter().map(|f| pick(f).to_string()).collect()
    };
    assert_eq!(
        seen(|f| &f.kstatus.0),
        ["Current", "Failed", "InProgress", "Terminating"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        seen(|f| &f.argocd.0),
        ["Degraded", "Healthy", "Progressing"]
            .map(String::from)
            .into()
    );
    for kind in ["Volume", "VolumeImage", "ImageShare"] {
        assert!(
            fixtures.iter().any(|f| f.object["kind"] == kind),
            "no status fixture for {kind}"
        );
    }
}

#[test]
fn argocd_health_check_runs_without_the_string_library() {
    // Argo CD opens only the base, table, package and os libraries for health checks; a script
    // that calls string.* fails there. The checker opens the same ones: prove that it does.
    let dir = temp_dir("lua");
    let script = dir.join("uses-string.lua");
    std::fs::write(
        &script,
        "return { status = \"Healthy\", message = string.upper(\"x\") }",
    )
    .expect("a script");
    let output = run(
        Command::new(gitops::tools().join("argocd-health"))
            .arg("-script")
            .arg(&script)
            .arg(repo().join("tests/packaging/status/ready.yaml")),
        None,
    );
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        !output.status.success(),
        "string.upper must be unavailable, as in Argo CD"
    );
}

#[test]
fn status_fixtures_are_objects_the_api_server_accepts() {
    let ns = namespace("packaging-status", &[]);
    for fixture in status_fixtures() {
        let mut object = fixture.object.clone();
        let status = object.as_object_mut().expect("an object").remove("status");
        let name = format!(
            "{}-{}",
            object["kind"].as_str().expect("a kind").to_lowercase(),
            fixture.file.trim_end_matches(".yaml")
        );
        object["metadata"] = json!({"name": name, "namespace": ns});
        run_ok(
            &mut kubectl(&["create", "-f", "-"]),
            Some(&object.to_string()),
        );
        if let Some(status) = status {
            // Through the status subresource, where the API server checks the status schema.
            let kind = object["kind"].as_str().expect("a kind").to_lowercase();
            let patch = json!({"status": status}).to_string();
            run_ok(
                &mut kubectl(&[
                    "patch",
                    &format!("{kind}.cloudvol.dev"),
                    &name,
                    "-n",
                    &ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ]),
                None,
            );
        }
    }
}

// --- the chart against the API server --------------------------------------------------------

/// `kubectl apply --dry-run=server` of a rendered chart; returns kubectl's stderr (warnings).
fn server_dry_run(manifests: &str) -> String {
    let output = run(
        &mut kubectl(&["apply", "--dry-run=server", "-f", "-"]),
        Some(manifests),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the API server refused the rendered chart:\n{stderr}"
    );
    stderr
}

#[test]
fn api_server_accepts_the_chart_with_cluster_rbac() {
    let ns = namespace("packaging-cluster", &[]);
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    server_dry_run(&render(&release, &ns, &["networkPolicy.enabled=true"]));
}

#[test]
fn api_server_accepts_the_chart_with_namespaced_rbac() {
    let ns = namespace("packaging-ns", &[]);
    let team_a = namespace("packaging-ns-a", &[]);
    let team_b = namespace("packaging-ns-b", &[]);
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let watch = format!("watchNamespaces={{{team_a},{team_b}}}");
    server_dry_run(&render(
        &release,
        &ns,
        &["rbac.scope=namespaced", &watch, "logFormat=text"],
    ));
}

#[test]
fn api_server_accepts_the_chart_with_a_service_monitor() {
    // A ServiceMonitor CRD of our own (prometheus-operator is not installed): applied
    // server-side, so concurrent runs agree, and left in place like the cloudvol CRDs.
    run_ok(
        &mut kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=cloudvol-packaging-tests",
            "-f",
            "tests/packaging/servicemonitor-crd.yaml",
        ]),
        None,
    );
    run_ok(
        &mut kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ]),
        None,
    );
    let ns = namespace("packaging-monitor", &[]);
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let out = server_dry_run(&render(
        &release,
        &ns,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
    ));
    assert!(!out.contains("unknown field"), "{out}");
}

#[test]
fn pod_meets_the_restricted_pod_security_standard() {
    let ns = namespace(
        "packaging-pss",
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/warn-version", "latest"),
        ],
    );
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let chart = documents(&render(&release, &ns, &[]));
    let deploy_folder = documents(
        &std::fs::read_to_string(repo().join("deploy/deployment-cloudvol.yaml"))
            .expect("deploy/deployment-cloudvol.yaml"),
    );
    for (source, objects) in [("the chart", &chart), ("deploy/", &deploy_folder)] {
        let mut deployment = find(objects, "Deployment").clone();
        deployment["metadata"]["namespace"] = json!(ns);
        deployment["metadata"]["name"] = json!(release);
        let template = &deployment["spec"]["template"];
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": release, "namespace": ns, "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        });
        // Enforced for Pods: the API server refuses one that breaks the standard.
        let output = run(
            &mut kubectl(&["create", "--dry-run=server", "-f", "-"]),
            Some(&pod.to_string()),
        );
        assert!(
            output.status.success(),
            "PodSecurity refused {source}'s pod in a restricted namespace:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Only warned about for Deployments: there must be no warning.
        let output = run(
            &mut kubectl(&["create", "--dry-run=server", "-f", "-"]),
            Some(&deployment.to_string()),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("PodSecurity"),
            "{source}'s Deployment draws a PodSecurity warning:\n{stderr}"
        );
    }

    // The check can fail: the same pod without its security contexts is refused.
    let template = &find(&chart, "Deployment")["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec.as_object_mut()
        .expect("a pod spec")
        .remove("securityContext");
    spec["containers"][0]
        .as_object_mut()
        .expect("a container")
        .remove("securityContext");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "insecure", "namespace": ns},
        "spec": spec,
    });
    let output = run(
        &mut kubectl(&["create", "--dry-run=server", "-f", "-"]),
        Some(&pod.to_string()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("violates PodSecurity"),
        "a pod without security contexts must be refused in a restricted namespace:\n{stderr}"
    );
}

/// The objects of `release` that `kubectl get` finds, by label.
fn release_objects(release: &str, namespaces: &[&str]) -> BTreeSet<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut found = BTreeSet::new();
    for ns in namespaces {
        let out = run_ok(
            &mut kubectl(&[
                "get",
                "deployment,serviceaccount,service,role,rolebinding,networkpolicy",
                "-n",
                ns,
                "-l",
                &selector,
                "-o",
                "name",
            ]),
            None,
        );
        found.extend(out.lines().map(|line| format!("{ns}/{line}")));
    }
    let out = run_ok(
        &mut kubectl(&[
            "get",
            "clusterrole,clusterrolebinding",
            "-l",
            &selector,
            "-o",
            "name",
        ]),
        None,
    );
    found.extend(out.lines().map(|line| format!("-/{line}")));
    found
}

/// The cloudvol CRDs' UIDs and field managers: helm must neither recreate nor write them.
fn crd_identities() -> String {
    run_ok(
        &mut kubectl(&[
            "get",
            "crd",
            "volumes.cloudvol.dev",
            "volumeimages.cloudvol.dev",
            "imageshares.cloudvol.dev",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid} \
             managers:{.metadata.managedFields[*].manager}\n{end}",
        ]),
        None,
    )
}

#[test]
fn helm_installs_and_uninstalls_with_cluster_rbac() {
    let ns = namespace("packaging-install", &[]);
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let crds_before = crd_identities();
    let out = run_ok(
        &mut helm_on_cluster(&[
            "install",
            &release,
            CHART,
            "--namespace",
            &ns,
            "--set",
            "networkPolicy.enabled=true",
        ]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("kubectl get cloudvol -A"),
        "NOTES.txt is shown:\n{out}"
    );
    let full = format!("{release}-cloudvol");
    let expected: BTreeSet<String> = [
        format!("{ns}/deployment.apps/{full}"),
        format!("{ns}/serviceaccount/{full}"),
        format!("{ns}/service/{full}-metrics"),
        format!("{ns}/role.rbac.authorization.k8s.io/{full}-leader-election"),
        format!("{ns}/rolebinding.rbac.authorization.k8s.io/{full}-leader-election"),
        format!("{ns}/networkpolicy.networking.k8s.io/{full}"),
        format!("-/clusterrole.rbac.authorization.k8s.io/{full}"),
        format!("-/clusterrole.rbac.authorization.k8s.io/{full}-edit"),
        format!("-/clusterrole.rbac.authorization.k8s.io/{full}-view"),
        format!("-/clusterrolebinding.rbac.authorization.k8s.io/{full}"),
    ]
    .into();
    assert_eq!(release_objects(&release, &[&ns]), expected);

    run_ok(
        &mut helm_on_cluster(&["uninstall", &release, "--namespace", &ns, "--wait"]),
        None,
    );
    assert_eq!(release_objects(&release, &[&ns]), BTreeSet::new());
    assert_eq!(
        crd_identities(),
        crds_before,
        "installing and uninstalling the chart must leave the CRDs as they were"
    );
}

#[test]
fn helm_installs_and_uninstalls_with_namespaced_rbac() {
    let ns = namespace("packaging-install-ns", &[]);
    let team_a = namespace("packaging-install-a", &[]);
    let team_b = namespace("packaging-install-b", &[]);
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let watch = format!("watchNamespaces={{{team_a},{team_b}}}");
    run_ok(
        &mut helm_on_cluster(&[
            "install",
            &release,
            CHART,
            "--namespace",
            &ns,
            "--set",
            "rbac.scope=namespaced",
            "--set",
            &watch,
        ]),
        None,
    );
    let full = format!("{release}-cloudvol");
    let mut expected: BTreeSet<String> = [
        format!("{ns}/deployment.apps/{full}"),
        format!("{ns}/serviceaccount/{full}"),
        format!("{ns}/service/{full}-metrics"),
        format!("{ns}/role.rbac.authorization.k8s.io/{full}-leader-election"),
        format!("{ns}/rolebinding.rbac.authorization.k8s.io/{full}-leader-election"),
    ]
    .into();
    for team in [&team_a, &team_b] {
        expected.insert(format!("{team}/role.rbac.authorization.k8s.io/{full}"));
        expected.insert(format!(
            "{team}/rolebinding.rbac.authorization.k8s.io/{full}"
        ));
    }
    let namespaces = [ns.as_str(), team_a.as_str(), team_b.as_str()];
    assert_eq!(release_objects(&release, &namespaces), expected);

    // What the operator may do, as the API server's authorizer sees it.
    let sa = format!("system:serviceaccount:{ns}:{full}");
    let can = |verb: &str, resource: &str, namespace: &str| {
        run(
            &mut kubectl(&[
                "auth", "can-i", verb, resource, "-n", namespace, "--as", &sa,
            ]),
            None,
        )
        .status
        .success()
    };
    assert!(can("patch", "volumes.cloudvol.dev", &team_a));
    assert!(can("update", "imageshares.cloudvol.dev/status", &team_b));
    assert!(can("update", "secrets", &team_a));
    assert!(can("create", "leases.coordination.k8s.io", &ns));
    assert!(
        !can("list", "secrets", &team_a),
        "Secrets are read one by one"
    );
    assert!(
        !can("get", "volumes.cloudvol.dev", &ns),
        "only watched namespaces"
    );
    assert!(!can("create", "leases.coordination.k8s.io", &team_a));

    run_ok(
        &mut helm_on_cluster(&["uninstall", &release, "--namespace", &ns, "--wait"]),
        None,
    );
    assert_eq!(release_objects(&release, &namespaces), BTreeSet::new());
}

#[test]
fn namespaced_install_into_a_missing_namespace_fails_before_creating_anything() {
    let ns = namespace("packaging-missing", &[]);
    let team_a = namespace("packaging-missing-a", &[]);
    let suffix = &ns[ns.len() - 8..];
    let team_b = format!("packaging-missing-b-{suffix}");
    let release = format!("cv-{suffix}");
    let watch = format!("watchNamespaces={{{team_a},{team_b}}}");
    let install = || {
        helm_on_cluster(&[
            "install",
            &release,
            CHART,
            "--namespace",
            &ns,
            "--set",
            "rbac.scope=namespaced",
            "--set",
            &watch,
        ])
    };
    let namespaces = [ns.as_str(), team_a.as_str()];

    // team_b does not exist: the chart says so, and helm records no release to uninstall.
    let output = run(&mut install(), None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains(&format!("these do not exist yet: {team_b}."))
            && stderr.contains(&format!("kubectl create namespace {team_b}")),
        "the install should name the missing namespace and how to create it ({}):\n{stderr}",
        output.status
    );
    let releases = run_ok(
        &mut helm_on_cluster(&["list", "--namespace", &ns, "--all", "--short"]),
        None,
    );
    assert!(
        releases.trim().is_empty(),
        "a refused install leaves no release behind: {releases}"
    );
    assert_eq!(release_objects(&release, &namespaces), BTreeSet::new());

    // Once it exists, the same command works, with nothing to clean up first.
    create_namespace(&team_b, "packaging-missing-b", &[]);
    let out = run_ok(&mut install(), None);
    assert!(out.contains("STATUS: deployed"), "{out}");
    run_ok(
        &mut helm_on_cluster(&["uninstall", &release, "--namespace", &ns, "--wait"]),
        None,
    );

    // The release namespace is not checked: `--create-namespace` makes it after rendering.
    let fresh = format!("packaging-missing-r-{suffix}");
    let watch = format!("watchNamespaces={{{fresh},{team_a}}}");
    let out = run_ok(
        &mut helm_on_cluster(&[
            "install",
            &release,
            CHART,
            "--namespace",
            &fresh,
            "--create-namespace",
            "--set",
            "rbac.scope=namespaced",
            "--set",
            &watch,
        ]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    run_ok(
        &mut helm_on_cluster(&["uninstall", &release, "--namespace", &fresh, "--wait"]),
        None,
    );

    // Without a cluster (helm template, Argo CD) the chart cannot look, and renders.
    let watch = format!("watchNamespaces={{{team_a},packaging-missing-never-{suffix}}}");
    render(&release, &ns, &["rbac.scope=namespaced", &watch]);
}

// --- deploy/ ------------------------------------------------------------------------------------

#[test]
fn deploy_folder_is_the_chart_rendered() {
    let dir = temp_dir("render-deploy");
    run_ok(
        Command::new("bash")
            .arg(repo().join("hack/helm.sh"))
            .arg("render-deploy")
            .arg(&dir)
            .env("HELM", helm()),
        None,
    );
    let fresh = yaml_files(&dir);
    std::fs::remove_dir_all(&dir).ok();
    let committed = yaml_files(&repo().join("deploy"));
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "deploy/ holds other files than a fresh render: run `hack/helm.sh render-deploy` (or \
         `make crds`)"
    );
    for (name, text) in &fresh {
        assert!(
            committed[name] == *text,
            "deploy/{name} is out of date with charts/cloudvol: run `hack/helm.sh render-deploy` \
             (or `make crds`)"
        );
    }
}

#[test]
fn deploy_folder_applies_the_documented_way_after_the_demos_crds_without_warnings() {
    // The kustomization creates its namespace; a server-side dry run cannot create the objects
    // inside a namespace that it only pretends to create, so make sure it exists.
    let output = run(
        &mut kubectl(&["create", "namespace", "cloudvol-system"]),
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("AlreadyExists"),
        "{stderr}"
    );

    // `make demo` installs the CRDs with `cloudvol crds | kubectl apply ...`: run its command
    // (as a server dry run: the other tests share these CRDs, as they are).
    let demo = std::fs::read_to_string(repo().join("hack/demo.sh")).expect("hack/demo.sh");
    let demo_line = demo
        .lines()
        .find(|line| line.contains(" crds | kubectl apply "))
        .expect("hack/demo.sh installs the CRDs with `cloudvol crds | kubectl apply ...`");
    let demo_args: Vec<&str> = demo_line
        .split_once("| kubectl ")
        .expect("a kubectl command")
        .1
        .split_whitespace()
        .collect();
    let crds = run_ok(
        Command::new(env!("CARGO_BIN_EXE_cloudvol")).arg("crds"),
        None,
    );
    let mut args = demo_args.clone();
    args.push("--dry-run=server");
    let output = run(&mut kubectl(&args), Some(&crds));
    assert!(
        output.status.success(),
        "the demo's CRD install fails: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Then deploy/, exactly as docs/install.md says, over those CRDs: no warning at all (the
    // walkthrough's four were "missing the last-applied-configuration annotation", from a
    // client-side apply over objects applied server-side).
    let command = documented("docs/install.md", "<!-- deploy-command -->\n```sh\n", '\n');
    let documented_args: Vec<&str> = command
        .strip_prefix("kubectl ")
        .unwrap_or_else(|| panic!("docs/install.md's deploy command is not kubectl: {command}"))
        .split_whitespace()
        .collect();
    assert!(
        documented_args.contains(&"-k") && documented_args.contains(&"deploy/"),
        "{command}"
    );
    assert_eq!(
        documented_args.contains(&"--server-side"),
        demo_args.contains(&"--server-side"),
        "the demo ({demo_line:?}) and docs/install.md ({command:?}) must apply the same way"
    );
    let mut args = documented_args.clone();
    args.push("--dry-run=server");
    let output = run(&mut kubectl(&args), None);
    let out = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("Warning"),
        "`{command}` after `make demo` ({}):\n{stderr}",
        output.status
    );
    for expected in [
        "namespace/cloudvol-system",
        "customresourcedefinition.apiextensions.k8s.io/volumes.cloudvol.dev",
        "customresourcedefinition.apiextensions.k8s.io/volumeimages.cloudvol.dev",
        "customresourcedefinition.apiextensions.k8s.io/imageshares.cloudvol.dev",
        "serviceaccount/cloudvol",
        "clusterrole.rbac.authorization.k8s.io/cloudvol",
        "clusterrolebinding.rbac.authorization.k8s.io/cloudvol",
        "role.rbac.authorization.k8s.io/cloudvol-leader-election",
        "rolebinding.rbac.authorization.k8s.io/cloudvol-leader-election",
        "service/cloudvol-metrics",
        "deployment.apps/cloudvol",
    ] {
        assert!(out.contains(expected), "{expected} not applied:\n{out}");
    }

    // The check can fail: kubectl warns, in a server dry run too, when a client-side apply
    // meets an object that was applied server-side.
    let ns = namespace("packaging-apply", &[]);
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": ns},
        "data": {"a": "b"},
    })
    .to_string();
    run_ok(
        &mut kubectl(&["apply", "--server-side", "-f", "-"]),
        Some(&config_map),
    );
    let output = run(
        &mut kubectl(&["apply", "--dry-run=server", "-f", "-"]),
        Some(&config_map),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Warning") && stderr.contains("last-applied-configuration"),
        "{stderr}"
    );

    let namespace = documents(
        &std::fs::read_to_string(repo().join("deploy/namespace-cloudvol-system.yaml"))
            .expect("the namespace"),
    );
    assert_eq!(
        namespace[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn documented_overlay_sets_the_image() {
    // docs/install.md's overlay: deploy/ as a base, with the image of your registry.
    // kustomize takes a base by relative path only: put the overlay two levels below the
    // repository, in target/ (ignored by git).
    let suffix: u32 = rand::random();
    let dir = repo()
        .join("target")
        .join(format!("packaging-overlay-{suffix:08x}"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let base = repo().join("deploy");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - \
         ../../deploy\nimages:\n  - name: cloudvol/cloudvol\n    newName: \
         registry.example.com/cloudvol\n    newTag: 0.1.0\n",
    )
    .expect("an overlay");
    let out = run_ok(Command::new("kubectl").arg("kustomize").arg(&dir), None);
    std::fs::remove_dir_all(&dir).ok();
    let objects = documents(&out);
    let deployment = find(&objects, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/cloudvol:0.1.0"
    );
    assert_eq!(
        objects.len(),
        yaml_files(&base).len() - 1,
        "every object of deploy/"
    );
}

// --- the Argo CD documentation --------------------------------------------------------------------

#[test]
fn documented_argocd_cm_command_adds_the_health_checks() {
    // docs/gitops.md's command, run against a stand-in argocd-cm in a namespace of our own.
    let docs = std::fs::read_to_string(repo().join("docs/gitops.md")).expect("docs/gitops.md");
    let marker = "<!-- argocd-cm-command -->\n```sh\n";
    let start = docs
        .find(marker)
        .expect("docs/gitops.md marks its argocd-cm command")
        + marker.len();
    let command = &docs[start..start + docs[start..].find("```").expect("the block ends")];
    assert!(command.contains("-n argocd"), "{command}");

    let ns = namespace("packaging-argocd", &[]);
    let existing = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": ns},
        "data": {"url": "https://argocd.example.com"},
    });
    run_ok(
        &mut kubectl(&["apply", "-f", "-"]),
        Some(&existing.to_string()),
    );
    run_ok(
        Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(command.replace("-n argocd", &format!("-n {ns}")))
            .env("KUBECONFIG", support::kubeconfig()),
        None,
    );
    let out = run_ok(
        &mut kubectl(&["get", "configmap", "argocd-cm", "-n", &ns, "-o", "json"]),
        None,
    );
    let cm: Value = serde_json::from_str(&out).expect("JSON");
    let script = std::fs::read_to_string(gitops::argocd_health_script()).expect("the script");
    assert_eq!(cm["data"]["url"], "https://argocd.example.com", "kept");
    for kind in ["Volume", "VolumeImage", "ImageShare"] {
        assert_eq!(
            cm["data"][format!("resource.customizations.health.cloudvol.dev_{kind}")],
            script.as_str(),
            "{kind}"
        );
    }
}

// --- the Dockerfile ------------------------------------------------------------------------------

#[test]
fn dockerfile_copies_what_the_build_reads() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let manifest: Value =
        toml_members(&std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml"));
    let members: Vec<String> = manifest
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|m| m.as_str().expect("a path").to_string())
        .collect();
    assert!(members.contains(&".".to_string()), "{members:?}");

    // What the build context holds: .dockerignore is `*` with exceptions.
    let admitted: Vec<&str> = ignore
        .lines()
        .filter_map(|line| line.strip_prefix('!'))
        .map(|path| path.trim_end_matches('/'))
        .collect();
    assert!(ignore.lines().any(|line| line == "*"), "{ignore}");
    let copied: Vec<String> = dockerfile
        .lines()
        .filter(|line| line.starts_with("COPY ") && !line.contains("--from"))
        .flat_map(|line| {
            let words: Vec<&str> = line.split_whitespace().skip(1).collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for member in &members {
        let prefix = if member == "." {
            String::new()
        } else {
            format!("{member}/")
        };
        needed.push(format!("{prefix}Cargo.toml"));
        needed.push(format!("{prefix}src"));
        assert!(
            !repo().join(member).join("build.rs").exists(),
            "{member} has a build.rs: copy it in the Dockerfile and admit it in .dockerignore"
        );
    }
    for path in &needed {
        assert!(copied.contains(path), "the Dockerfile does not copy {path}");
        assert!(
            admitted.contains(&path.as_str()),
            ".dockerignore keeps {path} out of the build context"
        );
    }

    // Files that the sources include at compile time must be inside what is copied.
    for member in &members {
        let src = repo().join(member).join("src");
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).expect("a source file");
            for included in included_paths(&text) {
                let path = file.parent().expect("a folder").join(&included);
                let path = path.canonicalize().unwrap_or(path);
                assert!(
                    path.starts_with(src.canonicalize().expect("src")),
                    "{} includes {included}, outside the folders the Dockerfile copies",
                    file.display()
                );
            }
        }
    }

    // The dependency stage loads the workspace from the manifests and stand-in sources alone.
    for stand_in in [
        "src/main.rs",
        "src/lib.rs",
        "emulator/src/main.rs",
        "emulator/src/lib.rs",
    ] {
        assert!(
            dockerfile.contains(stand_in),
            "the dependency stage lacks {stand_in}"
        );
    }
    let dir = temp_dir("docker-context");
    for file in ["Cargo.toml", "Cargo.lock", "emulator/Cargo.toml"] {
        std::fs::create_dir_all(dir.join(file).parent().expect("a folder")).expect("a folder");
        std::fs::copy(repo().join(file), dir.join(file)).expect("a copy");
    }
    for stand_in in ["src/main.rs", "emulator/src/main.rs"] {
        std::fs::create_dir_all(dir.join(stand_in).parent().expect("a folder")).expect("a folder");
        std::fs::write(dir.join(stand_in), "fn main() {}\n").expect("a stand-in");
    }
    for stand_in in ["src/lib.rs", "emulator/src/lib.rs"] {
        std::fs::write(dir.join(stand_in), "").expect("a stand-in");
    }
    // `--filter-platform` with the host's triple: unfiltered, `cargo metadata` needs every
    // package in Cargo.lock for every target (Android's included), which no build for this
    // host ever downloads. The network is allowed: like the image's own `cargo build`, it may
    // fetch what the lock names, so the test holds on a machine with an empty cargo cache.
    let output = run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--locked", "--format-version=1"])
            .args(["--filter-platform", &host_triple()])
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml")),
        None,
    );
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success(),
        "the Dockerfile's dependency stage would not load the workspace:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The image runs as the user the chart's securityContext names, and runs the operator.
    let values = std::fs::read_to_string(repo().join(CHART).join("values.yaml")).expect("values");
    let values: Value = serde_saphyr::from_str(&values).expect("values.yaml");
    let uid = values["podSecurityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    assert!(
        dockerfile.contains(&format!("\nUSER {uid}:{uid}\n")),
        "the image's USER is {uid}"
    );
    assert!(dockerfile.contains("\nENTRYPOINT [\"/cloudvol\"]\nCMD [\"run\"]\n"));
    assert!(dockerfile.contains("cargo build --release --locked --bin cloudvol"));

    // The Rust image is new enough for the workspace's rust-version.
    let rust_version = |text: &str, key: &str| -> (u32, u32) {
        let start = text.find(key).expect(key) + key.len();
        let version: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = version
            .split('.')
            .map(|p| p.parse::<u32>().expect("a number"));
        (
            parts.next().expect("a major"),
            parts.next().expect("a minor"),
        )
    };
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        rust_version(&dockerfile, "RUST_IMAGE=rust:") >= rust_version(&cargo, "rust-version = \""),
        "the Dockerfile's Rust image is older than the workspace's rust-version"
    );
}

/// `[workspace] members = [...]` of a Cargo.toml, as a JSON array.
fn toml_members(text: &str) -> Value {
    let start = text.find("members = [").expect("workspace members") + "members = ".len();
    let end = start + text[start..].find(']').expect("the list ends") + 1;
    serde_json::from_str(&text[start..end]).expect("a list of strings")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The literal paths of `include_str!`, `include_bytes!` and `#[path]` in a source file.
fn included_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for pattern in ["include_str!(\"", "include_bytes!(\"", "#[path = \""] {
        let mut rest = text;
        while let Some(at) = rest.find(pattern) {
            rest = &rest[at + pattern.len()..];
            if let Some(end) = rest.find('"') {
                paths.push(rest[..end].to_string());
            }
        }
    }
    paths
}

// --- the operator under the chart's ServiceAccount -----------------------------------------------

/// Kills the operator process if a test ends without stopping it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if anything answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A kubeconfig for the test API server that authenticates with `token`.
fn token_kubeconfig(dir: &Path, token: &str) -> PathBuf {
    let admin = std::fs::read_to_string(support::kubeconfig()).expect("the kubeconfig");
    let admin: Value = serde_saphyr::from_str(&admin).expect("a kubeconfig");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "test",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).expect("a kubeconfig");
    path
}

/// Installs the chart with `set`, then runs the real `cloudvol run` as the chart's container
/// would (its args and env, the downward API filled in) with the ServiceAccount's token, and
/// drives one Volume through creation and deletion against the emulator: every call the
/// operator makes goes through the chart's RBAC.
async fn operator_works_under_the_charts_rbac(prefix: &str, set: &[&str]) {
    use cloudvol::api::Volume;
    use support::harness::{DEADLINE, Harness, condition_matches, fast_config, volume_manifest};

    let h = Harness::with_emulator(prefix, fast_config()).await;
    let ns = h.namespace.clone();
    let release = format!("cv-{}", &ns[ns.len() - 8..]);
    let watch = format!("watchNamespaces={{{ns}}}");
    let mut args = vec![
        "install",
        &release,
        CHART,
        "--namespace",
        &ns,
        "--set",
        &watch,
    ];
    for value in set {
        args.extend(["--set", value]);
    }
    run_ok(&mut helm_on_cluster(&args), None);
    let manifest = run_ok(
        &mut helm_on_cluster(&["get", "manifest", &release, "--namespace", &ns]),
        None,
    );
    let objects = documents(&manifest);
    let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("a ServiceAccount");
    let token = run_ok(
        &mut kubectl(&["create", "token", account, "-n", &ns, "--duration=1h"]),
        None,
    );

    let dir = temp_dir("operator");
    let pod_name = format!("{release}-0");
    let port = free_port();
    let log = dir.join("operator.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudvol"));
    command
        .args(
            container["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("an arg")),
        )
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", token_kubeconfig(&dir, token.trim()));
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("a name");
        let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(value), _) => value.clone(),
            (_, Value::String(field)) if field == "metadata.name" => pod_name.clone(),
            (_, Value::String(field)) if field == "metadata.namespace" => ns.clone(),
            _ => panic!("no stand-in for env {var}"),
        };
        command.env(name, value);
    }
    command
        .env("CLOUDVOL_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"));
    let mut operator = Running(command.spawn().expect("cloudvol run starts"));
    let operator_log = || std::fs::read_to_string(&log).unwrap_or_default();

    support::wait_for(DEADLINE, "the operator's /readyz", || {
        let ready = http_status(port, "/readyz") == Some(200);
        let exited = matches!(operator.0.try_wait(), Ok(Some(_)));
        async move {
            assert!(!exited, "cloudvol run exited:\n{}", operator_log());
            ready.then_some(())
        }
    })
    .await;
    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert_eq!(http_status(port, "/metrics"), Some(200));
    support::wait_for(DEADLINE, "the operator to hold the Lease", || {
        let holder = run(
            &mut kubectl(&[
                "get",
                "lease",
                "cloudvol-leader",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]),
            None,
        );
        let held = String::from_utf8_lossy(&holder.stdout) == pod_name;
        async move { held.then_some(()) }
    })
    .await;

    // A Volume, created in the cloud and Ready: status, finalizers, the Secret's finalizer and
    // Events all went through the chart's RBAC.
    h.create::<Volume>(volume_manifest(
        "data",
        "demo",
        json!({"resource": {"size": 1}}),
    ))
    .await;
    let api = h.api::<Volume>();
    let live = support::wait_for(DEADLINE, "Volume data Ready", || {
        let api = api.clone();
        async move {
            let volume = serde_json::to_value(api.get("data").await.ok()?).ok()?;
            condition_matches(&volume, "Ready", "True", None).then_some(volume)
        }
    })
    .await;
    assert_eq!(gitops::kstatus(&live).0, "Current", "{live}");
    assert_eq!(gitops::argocd_health(&live).0, "Healthy", "{live}");
    let finalizers = run_ok(
        &mut kubectl(&[
            "get",
            "secret",
            support::harness::SECRET,
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ]),
        None,
    );
    assert!(
        finalizers.contains("cloudvol.dev/credentials-in-use"),
        "{finalizers}"
    );
    let events = run_ok(
        &mut kubectl(&["get", "events.events.k8s.io", "-n", &ns, "-o", "name"]),
        None,
    );
    assert!(!events.trim().is_empty(), "the operator records Events");

    h.delete::<Volume>("data").await;
    h.wait_gone::<Volume>("data").await;

    // SIGTERM, as the kubelet stops a pod: the operator finishes and gives the Lease up.
    let pid = operator.0.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]), None);
    let status = support::wait_for(DEADLINE, "the operator to stop", || {
        let status = operator.0.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    let log_text = operator_log();
    assert!(
        status.success(),
        "cloudvol run failed ({status}):\n{log_text}"
    );
    assert!(
        !log_text.to_lowercase().contains("forbidden"),
        "the chart's RBAC refused the operator something:\n{log_text}"
    );
    std::fs::remove_dir_all(&dir).ok();
    run_ok(
        &mut helm_on_cluster(&["uninstall", &release, "--namespace", &ns]),
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_under_the_charts_cluster_rbac() {
    operator_works_under_the_charts_rbac("packaging-operator", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_under_the_charts_namespaced_rbac() {
    operator_works_under_the_charts_rbac("packaging-operator-ns", &["rbac.scope=namespaced"]).await;
}

/// The triple of the machine the tests run on, as `rustc -vV` reports it.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = run(Command::new(rustc).arg("-vV"), None);
    assert!(output.status.success(), "rustc -vV failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}
