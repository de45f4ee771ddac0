//! HAProxy in front of several server instances: TCP mode (TLS passes through to the
//! instances), round robin per connection, a health check every 200 ms that takes a dead
//! instance out after one failure, and a failed connection sent to another instance.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool};

pub struct Haproxy {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    /// Each backend's state as HAProxy's health checks last reported it (`None`: no report
    /// yet).
    states: Arc<Mutex<Vec<Option<bool>>>>,
}

impl Haproxy {
    /// HAProxy on 127.0.0.1:`port` (a free one) spreading connections over `backends`
    /// (ports on 127.0.0.1).
    pub fn start(backends: &[u16]) -> Haproxy {
        let all: Vec<(u16, bool)> = backends.iter().map(|b| (*b, false)).collect();
        Self::start_with(&all)
    }

    /// HAProxy sending every connection to `primary`, and to `backup` only while the health
    /// checks find `primary` down (a database primary and its standby).
    pub fn start_with_backup(primary: u16, backup: u16) -> Haproxy {
        Self::start_with(&[(primary, false), (backup, true)])
    }

    /// `backends`: each port, and whether it is a backup.
    fn start_with(backends: &[(u16, bool)]) -> Haproxy {
        let haproxy = require_tool("haproxy");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n  retries 3\n  option redispatch\n\
             frontend acme\n  bind 127.0.0.1:{port}\n  default_backend instances\n\
             backend instances\n  balance roundrobin\n"
        );
        for (i, (b, backup)) in backends.iter().enumerate() {
            cfg.push_str(&format!(
                "  server i{i} 127.0.0.1:{b} check inter 200ms fall 1 rise 2{}\n",
                if *backup { " backup" } else { "" }
            ));
        }
        let file: PathBuf = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let check = Command::new(&haproxy)
            .args(["-c", "-q", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy refuses its configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run haproxy");
        // HAProxy reports each health-check transition on stderr:
        // "Server instances/i0 is UP, reason: …".
        let states = Arc::new(Mutex::new(vec![None; backends.len()]));
        {
            let states = states.clone();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let Some(rest) = line.split("Server instances/i").nth(1) else {
                        continue;
                    };
                    let (index, what) = rest.split_once(' ').unwrap_or((rest, ""));
                    if let Ok(i) = index.parse::<usize>()
                        && let Some(state) = states.lock().unwrap().get_mut(i)
                    {
                        if what.starts_with("is UP") {
                            *state = Some(true);
                        } else if what.starts_with("is DOWN") {
                            *state = Some(false);
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            port,
            child,
            _dir: dir,
            states,
        }
    }

    /// Waits until HAProxy's health checks say backend `index` is `up` (or down).
    pub fn wait_for(&self, index: usize, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.states.lock().unwrap()[index] != Some(up) {
            assert!(
                Instant::now() < deadline,
                "haproxy never saw backend {index} {}",
                if up { "up" } else { "down" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
