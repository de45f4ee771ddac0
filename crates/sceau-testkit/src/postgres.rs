//! A throwaway PostgreSQL server for tests: `initdb` in a temp dir, `postgres` on a free
//! loopback port with trust authentication, one database `sceau`. Dropped, it is stopped and
//! its directory removed.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI), the cluster is made
//! and run as the `postgres` system user the Debian package creates.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::free_port;

pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/sceau`
    pub url: String,
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

pub(crate) fn bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("test needs PostgreSQL ({name}): install it with the README's test command")
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `program args` as the `postgres` user when we are root.
pub(crate) fn command(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_inner(None, None)
    }

    /// A server that accepts only TLS connections (R32), with `cert_pem` (its chain) and
    /// `key_pem`: a plain connection is rejected by pg_hba.conf. Clients verify it with
    /// `?sslmode=verify-full&sslrootcert=ROOT`.
    pub fn start_tls(cert_pem: &std::path::Path, key_pem: &std::path::Path) -> Postgres {
        Self::start_inner(None, Some((cert_pem, key_pem)))
    }

    /// A server that requires `password` (SCRAM-SHA-256) for the `postgres` role: a client
    /// that connects proves it used the password. [`Postgres::url`] has no password;
    /// [`Postgres::url_with_password`] has it.
    pub fn start_with_password(password: &str) -> Postgres {
        Self::start_inner(Some(password), None)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/sceau`.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/sceau",
            self.port
        )
    }

    fn start_inner(
        password: Option<&str>,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("sceau-pg-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let mut initdb = command(bin("initdb"));
        match password {
            Some(pw) => {
                let pwfile = dir.path().join("pwfile");
                std::fs::write(&pwfile, pw).expect("password file");
                std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
                initdb
                    .args(["-A", "scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
            None => {
                initdb.args(["-A", "trust"]);
            }
        }
        let out = initdb
            .args(["-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_args: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            // The server reads its key only if the postgres user owns it, mode 0600.
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).expect("copy the server certificate");
            std::fs::copy(key, &k).expect("copy the server key");
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let owned = Command::new("chown")
                    .arg("postgres")
                    .args([&c, &k])
                    .status()
                    .expect("chown");
                assert!(owned.success(), "chown postgres of the TLS files");
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n",
            )
            .expect("pg_hba.conf");
            tls_args = vec![
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", c.display()),
                "-c".into(),
                format!("ssl_key_file={}", k.display()),
            ];
        }
        let port = free_port();
        let child = command(bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(&tls_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run postgres");
        let mut pg = Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/sceau"),
            port,
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = Command::new(bin("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "sceau",
                ])
                .env("PGPASSWORD", password.unwrap_or(""))
                .env(
                    "PGSSLMODE",
                    if tls.is_some() { "require" } else { "prefer" },
                )
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if created {
                break;
            }
            if let Some(status) = pg.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}

/// Stops a server started by [`command`]: SIGTERM (runuser forwards it to postgres, a fast
/// shutdown), then SIGKILL after 10 s.
pub(crate) fn stop(mut c: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}
