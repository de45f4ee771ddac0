//! Running external programs (ACME clients, openssl, curl) with a deadline.
//!
//! Invariants:
//! - Every child runs in its own process group with stdin closed, so an interactive prompt
//!   fails instead of hanging, and a timeout kills the whole group (hooks, helpers) that we
//!   started, never anything else.
//! - Output is always captured and kept with the command line, so a failing assertion shows
//!   exactly what the client printed. Secrets are passed through files or the environment,
//!   never on argv, so printing the command line is safe.

use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for one client invocation: lego polls with back-off, certbot's python start
/// is slow on a loaded 2-core machine, but nothing legitimate takes minutes.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// The result of one finished (or killed) program.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the test was doing, for messages.
    pub label: String,
    /// The program and its arguments.
    pub command: String,
    /// `None` when the deadline passed and the process group was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exited with status 0 before the deadline.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout followed by stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics (failing the test) with the full output unless the program succeeded.
    #[track_caller]
    pub fn expect_success(self) -> Run {
        if !self.success() {
            panic!("{} failed\n{self}", self.label);
        }
        self
    }

    /// Panics with the full output unless the program exited non-zero (a timeout is not the
    /// failure a test expects, so it panics too).
    #[track_caller]
    pub fn expect_failure(self) -> Run {
        match self.status {
            Some(s) if !s.success() => self,
            _ => panic!("{} was expected to fail\n{self}", self.label),
        }
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed after the deadline".to_owned(),
        };
        write!(
            f,
            "command: {}\nstatus: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.command, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (or `timeout`), capturing stdout and stderr.
///
/// Panics if the program cannot be started at all (missing tool = failing test).
pub fn run(label: &str, cmd: &mut Command, timeout: Duration) -> Run {
    let command = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start `{command}`: {e}"));
    let pid = child.id();
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(pid);
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{label}: waiting for `{command}`: {e}"),
        }
    };
    // A helper left behind in the group (a hook's background job) would hold the pipes open.
    kill_group(pid);
    Run {
        label: label.to_owned(),
        command,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `cmd` with [`CLIENT_TIMEOUT`] and panics unless it succeeds.
#[track_caller]
pub fn run_ok(label: &str, cmd: &mut Command) -> Run {
    run(label, cmd, CLIENT_TIMEOUT).expect_success()
}

/// Runs `cmd`, a second revocation of a certificate the client revoked already: it must fail,
/// and what the client printed must carry the server's `alreadyRevoked` problem (RFC 8555
/// §7.6).
#[track_caller]
pub fn assert_revoked_again_refused(label: &str, cmd: &mut Command) {
    let again = run(label, cmd, CLIENT_TIMEOUT).expect_failure();
    assert!(
        again
            .output()
            .contains("urn:ietf:params:acme:error:alreadyRevoked"),
        "second revocation not refused with alreadyRevoked\n{again}"
    );
}

/// Sends SIGKILL to the process group `pgid` (one we created with `process_group(0)`).
pub(crate) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let r = run(
            "sh",
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err\n");
        assert_eq!(r.status.and_then(|s| s.code()), Some(3));
        assert!(!r.success());
    }

    #[test]
    fn deadline_kills_the_whole_group() {
        let start = Instant::now();
        // The background sleep keeps stdout open: only killing the group lets us return.
        let r = run(
            "sleeper",
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        );
        assert!(r.status.is_none());
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    #[should_panic(expected = "was expected to fail")]
    fn expect_failure_rejects_success() {
        run("true", &mut Command::new("true"), Duration::from_secs(10)).expect_failure();
    }
}
