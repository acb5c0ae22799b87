//! A real TLS server for the transport tests: `openssl s_server` on a
//! loopback port, with a CA and a server certificate made for the test by
//! the `openssl` command line.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running `openssl s_server`; killed (and its files removed) on drop.
pub struct TlsServer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: Vec<u8>,
    /// Another CA, which did not (PEM).
    pub other_ca_pem: Vec<u8>,
}

impl TlsServer {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command runs (it is on every machine)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a TLS server whose certificate names `subject_alt_name` (e.g.
/// `IP:127.0.0.1` or `DNS:wrong.example`), signed by a fresh test CA.
pub fn start(subject_alt_name: &str) -> TlsServer {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cloudvol-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("openssl.cnf"),
        format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = cloudvol-test\n\
             [ca_ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [leaf_ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = {subject_alt_name}\n"
        ),
    )
    .unwrap();
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=cloudvol-test-ca"),
        ("other-ca", "/CN=cloudvol-other-ca"),
    ] {
        let (keyout, out) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec![
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca_ext",
        ];
        args.extend(key);
        args.extend([
            "-keyout", &keyout, "-out", &out, "-days", "2", "-subj", subject,
        ]);
        openssl(&dir, &args);
    }
    let mut args = vec!["req", "-new", "-config", "openssl.cnf"];
    args.extend(key);
    args.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=cloudvol-test-server",
    ]);
    openssl(&dir, &args);
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "leaf_ext",
        ],
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .current_dir(&dir)
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "leaf.pem", "-key", "leaf.key", "-www", "-quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let server = TlsServer {
        child,
        port,
        ca_pem: std::fs::read(dir.join("ca.pem")).unwrap(),
        other_ca_pem: std::fs::read(dir.join("other-ca.pem")).unwrap(),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}
