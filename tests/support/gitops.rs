//! What GitOps tools make of an object: kstatus (as Flux, kpt and cli-utils compute it, with
//! sigs.k8s.io/cli-utils) and the Argo CD health check that the chart ships (run by gopher-lua,
//! Argo CD's own Lua interpreter). Both are Go programs in `hack/gitops/`, built once per
//! machine and content by `hack/gitops/build.sh`.
//!
//! ```ignore
//! let live = serde_json::to_value(&volume)?;
//! assert_eq!(support::gitops::kstatus(&live).0, "Current");
//! assert_eq!(support::gitops::argocd_health(&live).0, "Healthy");
//! ```
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Argo CD health check shipped in the chart.
pub fn argocd_health_script() -> PathBuf {
    repo_root().join("charts/cloudvol/files/argocd-health.lua")
}

/// The folder holding the `kstatus` and `argocd-health` programs, built on first use.
pub fn tools() -> &'static Path {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = repo_root().join("hack/gitops/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
        assert!(
            output.status.success(),
            "hack/gitops/build.sh failed ({}), so the kstatus and Argo CD health checks cannot \
             run. It needs Go (the programs use sigs.k8s.io/cli-utils and gopher-lua from Go \
             modules).\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// kstatus of `object`: (`InProgress` | `Current` | `Failed` | `Terminating` | ..., message).
pub fn kstatus(object: &serde_json::Value) -> (String, String) {
    run(&tools().join("kstatus"), &[], object)
}

/// The Argo CD health of `object` by the chart's Lua check: (`Healthy` | `Progressing` |
/// `Degraded` | ..., message).
///
/// Argo CD itself reports an object that has a `deletionTimestamp` as `Progressing`
/// ("Pending deletion") without running any health check; this runs the check regardless.
pub fn argocd_health(object: &serde_json::Value) -> (String, String) {
    let script = argocd_health_script();
    let script = script.to_str().expect("a UTF-8 path");
    run(&tools().join("argocd-health"), &["-script", script], object)
}

fn run(program: &Path, args: &[&str], object: &serde_json::Value) -> (String, String) {
    let mut child = Command::new(program)
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
    let input = serde_json::to_vec(object).expect("an object serializes");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("the object reaches the checker");
    let output = child.wait_with_output().expect("the checker finishes");
    assert!(
        output.status.success(),
        "{} failed ({}) on {object}:\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the checker prints JSON");
    let field = |name: &str| result[name].as_str().unwrap_or_default().to_string();
    (field("status"), field("message"))
}
