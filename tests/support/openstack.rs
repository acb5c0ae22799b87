//! The real OpenStack of `hack/openstack.sh` (Keystone, Glance and Cinder from PyPI on
//! loopback), for tests that compare the emulator with upstream: started on first use,
//! once per test binary, reusing one that is already running.
//!
//! When it cannot start (no venv, RabbitMQ or qemu-img missing, a service that does not
//! come up) the tests that need it fail with the script's own explanation: they never
//! skip silently.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// One project with its member user.
#[derive(Debug, Clone)]
pub struct OsProject {
    pub id: String,
    pub name: String,
    pub user: String,
    pub user_id: String,
    pub password: String,
}

/// What `hack/openstack.sh start` exported.
#[derive(Debug, Clone)]
pub struct OpenStackEnv {
    /// Every `export NAME=value` line, as printed.
    pub vars: BTreeMap<String, String>,
    /// Keystone v3 (`http://127.0.0.1:PORT/v3`).
    pub auth_url: String,
    pub region: String,
    pub project_a: OsProject,
    pub project_b: OsProject,
    /// A clouds.yaml with clouds `project-a`, `project-b` and `admin`.
    pub clouds_yaml: PathBuf,
    pub keystone_url: String,
    pub glance_url: String,
    pub cinder_url: String,
    /// A user with the `service` role (it stands in for Nova: its token, sent as
    /// `X-Service-Token`, lets a test delete an attachment).
    pub service_user: String,
    pub service_password: String,
    pub service_project: String,
    /// `keystone 30.0.0, glance 33.0.0, cinder 29.0.0`.
    pub versions: String,
    /// The state folder (logs in `logs/`).
    pub dir: PathBuf,
}

impl OpenStackEnv {
    fn var(&self, name: &str) -> String {
        self.vars.get(name).cloned().unwrap_or_else(|| {
            panic!(
                "hack/openstack.sh start exported no {name}; it printed {:?}",
                self.vars
            )
        })
    }
}

/// The running OpenStack, started by the first caller in this test binary.
pub fn openstack() -> &'static OpenStackEnv {
    static ENV: OnceLock<OpenStackEnv> = OnceLock::new();
    ENV.get_or_init(start)
}

fn start() -> OpenStackEnv {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/openstack.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the test OpenStack did not start ({}), so the tests against upstream Keystone, Glance \
         and Cinder cannot run.\n\
         hack/openstack.sh needs the Debian packages rabbitmq-server and qemu-utils \
         (`hack/openstack.sh deps` installs them as root), Python 3.11 with venv, and PyPI \
         for the first install of its venv. Its output:\n{stderr}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout).unwrap_or_else(|missing| {
        panic!("hack/openstack.sh start printed no {missing}:\n{stdout}\n{stderr}")
    })
}

/// Reads `export NAME=value` lines (values may be single-quoted).
fn parse(stdout: &str) -> Result<OpenStackEnv, String> {
    let vars: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect();
    let get = |name: &str| vars.get(name).cloned().ok_or_else(|| name.to_string());
    let project = |p: &str| -> Result<OsProject, String> {
        Ok(OsProject {
            id: get(&format!("CLOUDVOL_OS_PROJECT_{p}_ID"))?,
            name: get(&format!("CLOUDVOL_OS_PROJECT_{p}_NAME"))?,
            user: get(&format!("CLOUDVOL_OS_PROJECT_{p}_USER"))?,
            user_id: get(&format!("CLOUDVOL_OS_PROJECT_{p}_USER_ID"))?,
            password: get(&format!("CLOUDVOL_OS_PROJECT_{p}_PASSWORD"))?,
        })
    };
    Ok(OpenStackEnv {
        auth_url: get("OS_AUTH_URL")?,
        region: get("CLOUDVOL_OS_REGION")?,
        project_a: project("A")?,
        project_b: project("B")?,
        clouds_yaml: PathBuf::from(get("CLOUDVOL_OS_CLOUDS_YAML")?),
        keystone_url: get("CLOUDVOL_OS_KEYSTONE_URL")?,
        glance_url: get("CLOUDVOL_OS_GLANCE_URL")?,
        cinder_url: get("CLOUDVOL_OS_CINDER_URL")?,
        service_user: get("CLOUDVOL_OS_SERVICE_USER")?,
        service_password: get("CLOUDVOL_OS_SERVICE_PASSWORD")?,
        service_project: get("CLOUDVOL_OS_SERVICE_PROJECT")?,
        versions: get("CLOUDVOL_OS_VERSIONS")?,
        dir: PathBuf::from(get("CLOUDVOL_OS_DIR")?),
        vars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_export_lines() {
        let out = "\
export CLOUDVOL_OS_DIR=/tmp/x
export OS_AUTH_URL=http://127.0.0.1:1/v3
export CLOUDVOL_OS_REGION=RegionOne
export CLOUDVOL_OS_CLOUDS_YAML=/tmp/x/clouds.yaml
export CLOUDVOL_OS_KEYSTONE_URL=http://127.0.0.1:1
export CLOUDVOL_OS_GLANCE_URL=http://127.0.0.1:2
export CLOUDVOL_OS_CINDER_URL=http://127.0.0.1:3
export CLOUDVOL_OS_PROJECT_A_ID=aa
export CLOUDVOL_OS_PROJECT_A_NAME=project-a
export CLOUDVOL_OS_PROJECT_A_USER=user-a
export CLOUDVOL_OS_PROJECT_A_USER_ID=ua
export CLOUDVOL_OS_PROJECT_A_PASSWORD=pa
export CLOUDVOL_OS_PROJECT_B_ID=bb
export CLOUDVOL_OS_PROJECT_B_NAME=project-b
export CLOUDVOL_OS_PROJECT_B_USER=user-b
export CLOUDVOL_OS_PROJECT_B_USER_ID=ub
export CLOUDVOL_OS_PROJECT_B_PASSWORD=pb
export CLOUDVOL_OS_SERVICE_PROJECT=service
export CLOUDVOL_OS_SERVICE_USER=compute
export CLOUDVOL_OS_SERVICE_PASSWORD=pc
export CLOUDVOL_OS_VERSIONS='keystone 30.0.0, glance 33.0.0, cinder 29.0.0'
";
        let env = parse(out).unwrap();
        assert_eq!(env.project_b.password, "pb");
        assert_eq!(
            env.versions,
            "keystone 30.0.0, glance 33.0.0, cinder 29.0.0"
        );
        assert_eq!(env.var("OS_AUTH_URL"), "http://127.0.0.1:1/v3");
        assert_eq!(
            parse("export OS_AUTH_URL=x\n").unwrap_err(),
            "CLOUDVOL_OS_REGION"
        );
    }
}
