//! The ACME server under test, started as a child process: `sceau-server`, or Pebble as the
//! reference implementation that keeps the client flows themselves honest.
//!
//! Invariants:
//! - Each instance has its own data dir (made at start, or prepared by the test with
//!   `sceau-server ca` commands), its own free ports, and resolves names only through
//!   the test's own DNS server; validation connects to the http-01 / tls-alpn-01 ports the
//!   test chose.
//! - [`AcmeServer::start`] returns only once `GET <directory>` answers 200 over TLS verified
//!   with [`AcmeServer::tls_ca`], so clients never race the server's start-up.
//! - The child runs in its own process group; dropping the handle kills that group.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sceau_testkit::{free_port, require_tool};

use crate::process::{kill_group, run};
use crate::tlsca::TlsCa;

/// How long a server may take to come up (key generation, SQLite migrations).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Start attempts when another process grabbed one of our free ports in the meantime.
const START_ATTEMPTS: usize = 4;

/// Which implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `sceau-server` from this workspace's target directory.
    Sceau,
    /// `/usr/bin/pebble`, Let's Encrypt's test server.
    Pebble,
}

/// Ports and resolver the server validates challenges against.
#[derive(Clone, Copy, Debug)]
pub struct ValidationTargets {
    /// The DNS server that resolves identifiers and serves `_acme-challenge` TXT records.
    pub dns: SocketAddr,
    /// Port the server connects to for http-01 (RFC 8555 §8.3 says 80; tests use a free one).
    pub http01_port: u16,
    /// Port the server connects to for tls-alpn-01 (RFC 8737 §3 says 443).
    pub tlsalpn01_port: u16,
}

/// A running ACME server.
pub struct AcmeServer {
    pub kind: ServerKind,
    /// The directory URL to give clients.
    pub directory_url: String,
    /// PEM file a client must trust to talk HTTPS to [`AcmeServer::directory_url`].
    pub tls_ca: PathBuf,
    /// PEM root certificate that issued certificates must chain to.
    pub issuer_root: PathBuf,
    /// Pebble's management interface (`https://127.0.0.1:<port>`); `None` for Sceau.
    management_url: Option<String>,
    /// Sceau's `--data-dir` (for `sceau-server admin --data-dir`); `None` for Pebble.
    data_dir: Option<PathBuf>,
    child: Child,
    log: PathBuf,
}

impl AcmeServer {
    /// Starts `kind` with its state in `dir` (created) and waits until it serves its directory.
    pub fn start(kind: ServerKind, dir: &Path, targets: ValidationTargets) -> AcmeServer {
        Self::start_in(kind, dir, targets, None)
    }

    /// Starts `sceau-server` on a data directory the test prepared (a CA made with
    /// `sceau-server ca init` and `ca import`), whose `root.pem` is what clients trust; `env`
    /// goes to the server process (e.g. `SOFTHSM2_CONF` for a CA on a token).
    pub fn start_sceau_on(
        dir: &Path,
        targets: ValidationTargets,
        data_dir: &Path,
        env: &[(String, String)],
    ) -> AcmeServer {
        let options = SceauOptions {
            data_dir: Some(data_dir.to_path_buf()),
            env: env.to_vec(),
            ..SceauOptions::default()
        };
        Self::start_in(ServerKind::Sceau, dir, targets, Some(&options))
    }

    /// Starts `sceau-server` as `options` say (a registration authority in front of an
    /// upstream CA: its `--config`, the roots its clients trust).
    pub fn start_sceau_with(
        dir: &Path,
        targets: ValidationTargets,
        options: &SceauOptions,
    ) -> AcmeServer {
        Self::start_in(ServerKind::Sceau, dir, targets, Some(options))
    }

    /// Starts Pebble as `options` say (an upstream CA of a registration authority).
    pub fn start_pebble_with(
        dir: &Path,
        targets: ValidationTargets,
        options: &PebbleOptions,
    ) -> AcmeServer {
        Self::start_full(ServerKind::Pebble, dir, targets, None, options)
    }

    fn start_in(
        kind: ServerKind,
        dir: &Path,
        targets: ValidationTargets,
        sceau: Option<&SceauOptions>,
    ) -> AcmeServer {
        Self::start_full(kind, dir, targets, sceau, &PebbleOptions::default())
    }

    fn start_full(
        kind: ServerKind,
        dir: &Path,
        targets: ValidationTargets,
        sceau: Option<&SceauOptions>,
        pebble: &PebbleOptions,
    ) -> AcmeServer {
        fs::create_dir_all(dir).expect("create server dir");
        let mut last = String::new();
        for attempt in 0..START_ATTEMPTS {
            let attempt_dir = dir.join(format!("attempt-{attempt}"));
            fs::create_dir_all(&attempt_dir).expect("create server attempt dir");
            let started = match kind {
                ServerKind::Pebble => start_pebble(&attempt_dir, targets, pebble),
                ServerKind::Sceau => start_sceau(&attempt_dir, targets, sceau),
            };
            match started {
                Ok(server) => return server,
                Err(Failed { log, port_clash }) => {
                    last = log;
                    if !port_clash {
                        break;
                    }
                }
            }
        }
        panic!("{kind:?} server did not start; its output:\n{last}");
    }

    /// Sceau's data directory, where `sceau-server admin --data-dir` finds the database while
    /// the server runs; `None` for Pebble.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// Everything the server printed so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's own view of a certificate's revocation status, where it has an interface
    /// for that: `Some(true)` if revoked. Pebble: its management API; Sceau: `None` (tests
    /// then rely on the protocol-level `alreadyRevoked` answer).
    pub fn revoked_per_server(&self, serial_hex: &str) -> Option<bool> {
        let mgmt = self.management_url.as_ref()?;
        let serial = serial_hex.trim_start_matches('0').to_ascii_lowercase();
        let r = run(
            "pebble cert-status-by-serial",
            Command::new(require_tool("curl"))
                .args(["-sS", "--fail", "--cacert"])
                .arg(&self.tls_ca)
                .arg(format!("{mgmt}/cert-status-by-serial/{serial}")),
            Duration::from_secs(30),
        )
        .expect_success();
        Some(r.stdout.contains("\"Revoked\""))
    }
}

impl Drop for AcmeServer {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

struct Failed {
    log: String,
    port_clash: bool,
}

/// Where the test binary expects the server binary: next to the test's `deps/` directory
/// (`target/<profile>/sceau-server`), unless `SCEAU_SERVER_BIN` says otherwise.
pub fn sceau_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SCEAU_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("sceau-server");
    if !bin.is_file() {
        panic!(
            "sceau-server not found at {}: build it first: cargo build -p sceau-server",
            bin.display()
        );
    }
    bin
}

/// How to start `sceau-server` beyond the harness's defaults.
#[derive(Debug, Clone, Default)]
pub struct SceauOptions {
    /// A data directory the test prepared [default: a fresh one].
    pub data_dir: Option<PathBuf>,
    /// Environment of the server process.
    pub env: Vec<(String, String)>,
    /// More flags (e.g. `--config FILE`).
    pub args: Vec<String>,
    /// The root of the server's own HTTPS certificate [default: the data directory's
    /// `root.pem`]; in RA mode, the PKI that issued the operator's certificate.
    pub tls_ca: Option<PathBuf>,
    /// The root issued certificates chain to [default: as `tls_ca`].
    pub issuer_root: Option<PathBuf>,
}

/// How to start Pebble beyond the harness's defaults.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// External account binding required, with these (key id, base64url MAC key) pairs.
    pub eab_keys: Vec<(String, String)>,
    /// `PEBBLE_VA_ALWAYS_VALID`: every challenge succeeds unchecked.
    pub always_valid: bool,
    /// certificateValidityPeriod in seconds [default: Pebble's five years].
    pub validity_secs: Option<u64>,
}

fn start_sceau(
    dir: &Path,
    t: ValidationTargets,
    on: Option<&SceauOptions>,
) -> Result<AcmeServer, Failed> {
    let bin = sceau_server_binary();
    let data = on
        .and_then(|o| o.data_dir.clone())
        .unwrap_or_else(|| dir.join("data"));
    let env = on.map_or(&[][..], |o| o.env.as_slice());
    let extra = on.map_or(&[][..], |o| o.args.as_slice());
    let port = free_port();
    let log = dir.join("sceau-server.log");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--revocation-listen", "127.0.0.1:0"])
        .args(["--dns-server", &t.dns.to_string()])
        .args(["--http01-port", &t.http01_port.to_string()])
        .args(["--tlsalpn01-port", &t.tlsalpn01_port.to_string()])
        // The clients under test answer challenges on loopback, refused by default.
        .args(["--validation-allow", "127.0.0.0/8"])
        .args(if extra.iter().any(|a| a == "--eab") {
            &[][..]
        } else {
            &["--eab", "off"][..]
        })
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let child = spawn_logged(&mut cmd, &log);
    let tls_ca = on
        .and_then(|o| o.tls_ca.clone())
        .unwrap_or_else(|| data.join("root.pem"));
    let issuer_root = on
        .and_then(|o| o.issuer_root.clone())
        .unwrap_or_else(|| tls_ca.clone());
    let server = AcmeServer {
        kind: ServerKind::Sceau,
        directory_url: format!("https://127.0.0.1:{port}/directory"),
        tls_ca,
        issuer_root,
        management_url: None,
        data_dir: Some(data.clone()),
        child,
        log,
    };
    wait_ready(server, &[])
}

fn start_pebble(dir: &Path, t: ValidationTargets, o: &PebbleOptions) -> Result<AcmeServer, Failed> {
    let tls = TlsCa::generate(&dir.join("tls")).map_err(|e| Failed {
        log: e.to_string(),
        port_clash: false,
    })?;
    let (port, mgmt_port) = (free_port(), free_port());
    let config = dir.join("pebble.json");
    let json = format!(
        r#"{{"pebble": {{
  "listenAddress": "127.0.0.1:{port}",
  "managementListenAddress": "127.0.0.1:{mgmt_port}",
  "certificate": "{cert}",
  "privateKey": "{key}",
  "httpPort": {http},
  "tlsPort": {tls_port},
  "ocspResponderURL": "",
  "externalAccountBindingRequired": {eab_required},
  "externalAccountMACKeys": {{{eab_keys}}}{validity}
}}}}
"#,
        eab_required = !o.eab_keys.is_empty(),
        eab_keys = o
            .eab_keys
            .iter()
            .map(|(k, v)| format!("\"{k}\": \"{v}\""))
            .collect::<Vec<_>>()
            .join(", "),
        validity = o
            .validity_secs
            .map(|s| format!(",\n  \"certificateValidityPeriod\": {s}"))
            .unwrap_or_default(),
        cert = tls.leaf_cert.display(),
        key = tls.leaf_key.display(),
        http = t.http01_port,
        tls_port = t.tlsalpn01_port,
    );
    fs::write(&config, json).expect("write pebble config");
    let log = dir.join("pebble.log");
    let mut cmd = Command::new(require_tool("pebble"));
    cmd.arg("-config")
        .arg(&config)
        .args(["-dnsserver", &t.dns.to_string()])
        // Deterministic and fast: no random validation sleeps, no rejected nonces, and every
        // order gets fresh authorizations so renewals really validate again.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0");
    if o.always_valid {
        cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
    }
    let child = spawn_logged(&mut cmd, &log);
    let mgmt = format!("https://127.0.0.1:{mgmt_port}");
    let server = AcmeServer {
        kind: ServerKind::Pebble,
        directory_url: format!("https://127.0.0.1:{port}/dir"),
        tls_ca: tls.ca_cert.clone(),
        issuer_root: dir.join("pebble-root.pem"),
        management_url: Some(mgmt.clone()),
        data_dir: None,
        child,
        log,
    };
    let server = wait_ready(server, &[format!("{mgmt}/roots/0")])?;
    // Pebble makes a new root at every start; only its management API tells us which.
    let r = run(
        "fetch pebble root",
        Command::new(require_tool("curl"))
            .args(["-sS", "--fail", "--cacert"])
            .arg(&server.tls_ca)
            .arg("-o")
            .arg(&server.issuer_root)
            .arg(format!("{mgmt}/roots/0")),
        Duration::from_secs(30),
    );
    if !r.success() {
        return Err(Failed {
            log: format!("{r}\n{}", server.log_text()),
            port_clash: false,
        });
    }
    Ok(server)
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    use std::os::unix::process::CommandExt as _;
    let out = fs::File::create(log).expect("create server log");
    let err = out.try_clone().expect("clone log handle");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Polls until the directory (and `extra` URLs) answer 200 with TLS verified by `tls_ca`.
fn wait_ready(mut server: AcmeServer, extra: &[String]) -> Result<AcmeServer, Failed> {
    let curl = require_tool("curl");
    let deadline = Instant::now() + START_TIMEOUT;
    let urls: Vec<&str> = std::iter::once(server.directory_url.as_str())
        .chain(extra.iter().map(String::as_str))
        .collect();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = server.log_text();
            let port_clash = log.contains("address already in use")
                || log.contains("Address already in use")
                || log.contains("AddrInUse");
            return Err(Failed {
                log: format!("exited with {status}\n{log}"),
                port_clash,
            });
        }
        // The CA file may not exist yet (Sceau writes root.pem during its first start).
        if server.tls_ca.is_file() && urls.iter().all(|u| answers_200(&curl, &server.tls_ca, u)) {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            let log = server.log_text();
            return Err(Failed {
                log: format!("not ready after {START_TIMEOUT:?}\n{log}"),
                port_clash: false,
            });
        }
        thread::sleep(Duration::from_millis(150));
    }
}

fn answers_200(curl: &Path, ca: &Path, url: &str) -> bool {
    let r = run(
        "probe",
        Command::new(curl)
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(ca)
            .arg(url),
        Duration::from_secs(10),
    );
    r.success() && r.stdout.trim() == "200"
}
