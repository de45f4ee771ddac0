//! OpenSSL's own CMP server (`openssl cmp -port …`, the mock server of OpenSSL 3): the real
//! upstream CA of the CMP client's tests and of registration-authority mode's. Its switches
//! (`-pkistatus`, `-failure`, `-poll_count`, `-check_after`, `-send_error`) drive the refusal
//! and polling cases.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool};

/// `openssl cmp -port …` on a free loopback port, killed on drop.
pub struct MockCmp {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MockCmp {
    /// Starts the mock with `args` (after `-port`), waits until it accepts connections.
    pub fn start(args: &[&str]) -> MockCmp {
        for _ in 0..5 {
            if let Some(mock) = Self::try_start_on(free_port(), args) {
                return mock;
            }
        }
        panic!("no free port for the openssl cmp mock server");
    }

    /// Starts the mock on `port` (an upstream coming back where it was); panics if it cannot.
    pub fn start_on(port: u16, args: &[&str]) -> MockCmp {
        Self::try_start_on(port, args)
            .unwrap_or_else(|| panic!("port {port} is taken: the openssl cmp mock cannot start"))
    }

    /// `None` when another process holds the port.
    fn try_start_on(port: u16, args: &[&str]) -> Option<MockCmp> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("mock.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(require_tool("openssl"))
            .arg("cmp")
            .args(["-port", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start openssl cmp");
        let mut mock = MockCmp {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = mock.child.try_wait() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(mock);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = mock.log_text();
        assert!(
            text.contains("unable to bind") || text.contains("Address already in use"),
            "openssl cmp mock server did not start: {text}"
        );
        None
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/pkix/", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many CMP requests the mock received so far.
    pub fn requests(&self) -> usize {
        self.log_text().matches("Received request").count()
    }
}

impl Drop for MockCmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
