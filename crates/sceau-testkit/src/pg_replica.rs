//! A PostgreSQL primary with a synchronous streaming standby, for failover tests: a commit
//! returns only once the standby has it (`synchronous_standby_names`, `synchronous_commit =
//! on`), so killing the primary with SIGKILL and promoting the standby loses no acknowledged
//! write.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::{bin, command, stop};
use crate::tools::free_port;

/// One server of the pair.
pub struct PgNode {
    pub port: u16,
    data: PathBuf,
    child: Option<Child>,
}

impl PgNode {
    fn start(data: &Path, socket_dir: &Path) -> PgNode {
        let port = free_port();
        let child = command(bin("postgres"))
            .arg("-D")
            .arg(data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(socket_dir)
            .args(["-c", "max_connections=200", "-c", "wal_level=replica"])
            .args(["-c", "hot_standby=on", "-c", "wal_sender_timeout=5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run postgres");
        let node = PgNode {
            port,
            data: data.to_owned(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !node.sql_ok("SELECT 1") {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        node
    }

    /// `psql -c sql` on database `postgres`: its output, or `None` if it failed.
    pub fn sql(&self, sql: &str) -> Option<String> {
        self.sql_in("postgres", sql)
    }

    /// `psql -c sql` on database `db` (unaligned, tuples only).
    pub fn sql_in(&self, db: &str, sql: &str) -> Option<String> {
        let out = std::process::Command::new(bin("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-c", sql])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn sql_ok(&self, sql: &str) -> bool {
        self.sql(sql).is_some()
    }

    /// SIGKILL to the postmaster and every backend, as a crash would: no shutdown checkpoint,
    /// no goodbye to clients.
    pub fn kill9(&mut self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
            .expect("postmaster.pid");
        let children: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
                    .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                    .collect()
            })
            .unwrap_or_default();
        // Some backends may exit on their own between the listing and the kill.
        for victim in std::iter::once(&pid).chain(&children) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", victim])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(c);
        }
    }
}

pub struct ReplicatedPostgres {
    pub primary: PgNode,
    pub standby: PgNode,
    _dir: tempfile::TempDir,
}

impl ReplicatedPostgres {
    /// A primary with database `sceau`, and a standby streaming from it synchronously.
    pub fn start() -> ReplicatedPostgres {
        let dir = tempfile::Builder::new()
            .prefix("sceau-pgrep-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let primary_data = dir.path().join("primary");
        let out = command(bin("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&primary_data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let primary = PgNode::start(&primary_data, dir.path());
        assert!(primary.sql_ok("CREATE DATABASE sceau"));

        let standby_data = dir.path().join("standby");
        let out = command(bin("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "--checkpoint=fast", "-D"])
            .arg(&standby_data)
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The name the primary waits for, on top of what -R wrote (the last line wins).
        let auto = standby_data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name=standby1'\n",
            primary.port
        ));
        std::fs::write(&auto, conf).unwrap();
        let standby = PgNode::start(&standby_data, dir.path());

        assert!(primary.sql_ok("ALTER SYSTEM SET synchronous_standby_names = 'standby1'"));
        assert!(primary.sql_ok("SELECT pg_reload_conf()"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while primary
            .sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
            .as_deref()
            != Some("sync")
        {
            assert!(
                Instant::now() < deadline,
                "the standby did not become synchronous"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ReplicatedPostgres {
            primary,
            standby,
            _dir: dir,
        }
    }

    /// Promotes the standby to primary and waits until it takes writes.
    pub fn promote(&self) {
        assert_eq!(
            self.standby.sql("SELECT pg_promote(true, 30)").as_deref(),
            Some("t"),
            "the standby did not promote"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.standby.sql("SELECT pg_is_in_recovery()").as_deref() != Some("f") {
            assert!(
                Instant::now() < deadline,
                "the standby is still in recovery"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
