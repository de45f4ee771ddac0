//! One test's world: a DNS server, an ACME server that resolves through it, the ports its
//! validation connects to, and a private directory for the client's files.
//!
//! Invariants:
//! - Nothing is shared between tests: own knotd, own server, own ports, own temp dir.
//! - Host names get an A record 127.0.0.1 before a client asks for them, so the server's
//!   validation reaches the client's listener (or the test's [`Webroot`]) on loopback.
//! - When the test panics, the server and DNS logs are printed and the temp dir is kept.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use sceau_testkit::{KnotDns, free_port};
use tempfile::TempDir;

use crate::certcheck::{CertInfo, verify_issued};
use crate::server::{AcmeServer, ServerKind, ValidationTargets};
use crate::webroot::Webroot;

/// The DNS zone every test's names live in.
pub const ZONE: &str = "test.";

/// A test's servers and scratch space.
pub struct Interop {
    pub server: AcmeServer,
    pub dns: KnotDns,
    /// Set by [`Interop::start_with_webroot`]: serves challenge files on the http-01 port.
    pub webroot: Option<Webroot>,
    /// The port the server's http-01 validation connects to.
    pub http01_port: u16,
    /// The port the server's tls-alpn-01 validation connects to.
    pub tlsalpn01_port: u16,
    dir: Option<TempDir>,
}

impl Interop {
    /// For clients that listen themselves (certbot standalone, lego): both validation ports
    /// are free ports the client will bind.
    pub fn start(kind: ServerKind) -> Interop {
        Self::build(kind, false)
    }

    /// For clients that write files for a web server (dehydrated, uacme): http-01 is answered
    /// by a [`Webroot`] the test owns, started before the server is told its port.
    pub fn start_with_webroot(kind: ServerKind) -> Interop {
        Self::build(kind, true)
    }

    /// For clients that listen themselves, against `sceau-server` on a data directory the test
    /// prepared (e.g. a delegated CA imported from an existing PKI).
    pub fn start_sceau_on(data_dir: &Path) -> Interop {
        Self::build_on(ServerKind::Sceau, false, Some((data_dir, &[])))
    }

    /// [`Interop::start_sceau_on`] with `env` for the server (e.g. `SOFTHSM2_CONF`).
    pub fn start_sceau_on_with_env(data_dir: &Path, env: &[(String, String)]) -> Interop {
        Self::build_on(ServerKind::Sceau, false, Some((data_dir, env)))
    }

    /// For clients that listen themselves, against `sceau-server` started as `options` say.
    pub fn start_sceau_with(options: &crate::server::SceauOptions) -> Interop {
        Self::build_with(ServerKind::Sceau, false, Some(options))
    }

    /// For clients that write files for a web server, against `sceau-server` started as
    /// `options` say (e.g. STAR's `--star-min-lifetime`).
    pub fn start_sceau_with_webroot(options: &crate::server::SceauOptions) -> Interop {
        Self::build_with(ServerKind::Sceau, true, Some(options))
    }

    fn build(kind: ServerKind, with_webroot: bool) -> Interop {
        Self::build_with(kind, with_webroot, None)
    }

    fn build_on(
        kind: ServerKind,
        with_webroot: bool,
        data_dir: Option<(&Path, &[(String, String)])>,
    ) -> Interop {
        let options = data_dir.map(|(d, env)| crate::server::SceauOptions {
            data_dir: Some(d.to_path_buf()),
            env: env.to_vec(),
            ..Default::default()
        });
        Self::build_with(kind, with_webroot, options.as_ref())
    }

    fn build_with(
        kind: ServerKind,
        with_webroot: bool,
        options: Option<&crate::server::SceauOptions>,
    ) -> Interop {
        let dir = tempfile::Builder::new()
            .prefix("sceau-interop-")
            .tempdir()
            .expect("temp dir");
        let dns = KnotDns::start(ZONE).expect("start knotd");
        let webroot = with_webroot
            .then(|| Webroot::start(&dir.path().join("webroot")).expect("start webroot"));
        let http01_port = webroot.as_ref().map_or_else(free_port, Webroot::port);
        let tlsalpn01_port = free_port();
        let targets = ValidationTargets {
            dns: dns.addr,
            http01_port,
            tlsalpn01_port,
        };
        let server_dir = dir.path().join("server");
        let server = match options {
            Some(o) => AcmeServer::start_sceau_with(&server_dir, targets, o),
            None => AcmeServer::start(kind, &server_dir, targets),
        };
        Interop {
            server,
            dns,
            webroot,
            http01_port,
            tlsalpn01_port,
            dir: Some(dir),
        }
    }

    pub fn kind(&self) -> ServerKind {
        self.server.kind
    }

    /// `label.test`, pointed at 127.0.0.1.
    pub fn host(&self, label: &str) -> String {
        self.dns.set_a(label, IpAddr::V4(Ipv4Addr::LOCALHOST));
        format!("{label}.{}", ZONE.trim_end_matches('.'))
    }

    /// A directory `rel` inside the test's temp dir (created).
    pub fn path(&self, rel: &str) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(&p).expect("create test subdir");
        p
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir lives until drop").path()
    }

    /// Verifies a certificate the client saved against the server's root (see
    /// [`verify_issued`]), checks it names `host`, and returns its serial and names.
    #[track_caller]
    pub fn verify(&self, leaf: &Path, chain: Option<&Path>, host: &str) -> CertInfo {
        let n = std::fs::read_dir(self.root().join("checks"))
            .map(|d| d.count())
            .unwrap_or(0);
        let scratch = self.root().join("checks").join(n.to_string());
        let info = verify_issued(&self.server.issuer_root, leaf, chain, host, &scratch);
        assert!(
            info.dns_names.iter().any(|n| n == host),
            "certificate {} does not name {host}: {:?}",
            leaf.display(),
            info.dns_names
        );
        info
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "===== {:?} server log =====\n{}",
            self.server.kind,
            tail(&self.server.log_text())
        );
        eprintln!("===== knotd log =====\n{}", tail(&self.dns.log_text()));
        if let Some(w) = &self.webroot {
            eprintln!("===== webroot requests =====\n{:?}", w.requests());
        }
        if let Some(dir) = self.dir.take() {
            eprintln!("===== test files kept in {} =====", dir.keep().display());
        }
    }
}

fn tail(text: &str) -> &str {
    const MAX: usize = 20_000;
    if text.len() <= MAX {
        return text;
    }
    let mut start = text.len() - MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
