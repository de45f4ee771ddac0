//! The command upstream: the PKI's own command line (`openssl ca`, a vendor CLI) signs.
//!
//! The issue program gets the CSR (PEM) on stdin and the request in its environment:
//! `SCEAU_NAMES` (every identifier, comma-separated), `SCEAU_DNS_NAMES`, `SCEAU_IP_ADDRESSES`,
//! `SCEAU_PROFILE`, `SCEAU_NOT_BEFORE` and `SCEAU_NOT_AFTER` (RFC 3339, UTC),
//! `SCEAU_VALIDITY_DAYS` (whole days, rounded down, at least 1) and `SCEAU_VALIDITY_SECS`. It
//! prints the certificate then its chain (PEM) on stdout and exits 0. The revoke program gets
//! the certificate (PEM) on stdin, `SCEAU_SERIAL` (hex), `SCEAU_REASON` (RFC 5280 §5.3.1 code)
//! and `SCEAU_REASON_NAME`, and exits 0 once the certificate is revoked.
//!
//! Invariants:
//! - No shell: the configured argv runs as given, with an environment of its own (`PATH`,
//!   `LANG=C` and the `SCEAU_*` variables only), so nothing the server inherited leaks to it.
//! - A program that outlives its timeout is killed (its whole process group) and the attempt is
//!   retried; exit status 75 (EX_TEMPFAIL) also means "try again later"; any other failure is a
//!   refusal whose detail is the program's last line on stderr.
//! - At most [`MAX_OUTPUT`] bytes of stdout and [`MAX_STDERR`] of stderr are kept.

use std::process::Stdio;
use std::time::Duration;

use sceau_ca::{CaError, IssueRequest};
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::CommandUpstream;

/// The longest stdout read from a program (a PEM chain is a few KiB).
pub const MAX_OUTPUT: usize = 1 << 20;
/// The longest stderr kept.
pub const MAX_STDERR: usize = 64 << 10;
/// BSD sysexits EX_TEMPFAIL: the program asks to be run again later.
const EX_TEMPFAIL: i32 = 75;

pub struct CommandSigner {
    issue: Vec<String>,
    revoke: Option<Vec<String>>,
    timeout: Duration,
    /// Programs running at once (`[ra.command] concurrency`); the timeout counts from the start
    /// of the program, not of the wait for a slot.
    slots: tokio::sync::Semaphore,
}

/// What a program's run came to.
struct Run {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    // One line of at most 300 characters in a problem detail.
    line.chars().take(300).collect()
}

async fn read_capped(
    mut r: impl tokio::io::AsyncRead + Unpin,
    cap: usize,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        // Keep reading past the cap (a blocked writer would never exit), keep nothing more.
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}

impl CommandSigner {
    pub fn new(c: &CommandUpstream) -> Result<CommandSigner, crate::config::ConfigError> {
        for argv in std::iter::once(&c.issue).chain(c.revoke.as_ref()) {
            let program = std::path::Path::new(&argv[0]);
            if program.is_absolute() && !program.is_file() {
                return Err(crate::config::ConfigError(format!(
                    "command: {} does not exist",
                    program.display()
                )));
            }
        }
        Ok(CommandSigner {
            issue: c.issue.clone(),
            revoke: c.revoke.clone(),
            timeout: Duration::from_secs(c.timeout_secs.unwrap_or(60)),
            slots: tokio::sync::Semaphore::new(c.concurrency.unwrap_or(1)),
        })
    }

    async fn run(
        &self,
        argv: &[String],
        env: Vec<(&'static str, String)>,
        input: Vec<u8>,
    ) -> Result<Run, CaError> {
        let _slot =
            self.slots.acquire().await.map_err(|_| {
                CaError::Unavailable("the command upstream is shutting down".into())
            })?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LANG", "C")
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            CaError::Unavailable(format!(
                "the upstream command {} does not start: {e}",
                argv[0]
            ))
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let work = async {
            // A program that does not read its input must not block us: write, then close.
            let feed = async {
                let _ = stdin.write_all(&input).await;
                drop(stdin);
            };
            let (_, out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, MAX_OUTPUT),
                read_capped(stderr, MAX_STDERR),
                child.wait()
            );
            Ok::<_, std::io::Error>(Run {
                status: status?,
                stdout: out?,
                stderr: err?,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(run)) => Ok(run),
            Ok(Err(e)) => Err(CaError::Unavailable(format!(
                "the upstream command {}: {e}",
                argv[0]
            ))),
            Err(_) => {
                if let Some(pid) = pid {
                    // SAFETY: kill(2) has no memory effects; it signals the process group the
                    // child leads (process_group(0)), grandchildren included.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                Err(CaError::Unavailable(format!(
                    "the upstream command {} did not finish within {} s (killed)",
                    argv[0],
                    self.timeout.as_secs()
                )))
            }
        }
    }

    fn failure(argv0: &str, run: &Run) -> CaError {
        let said = last_line(&run.stderr);
        let how = match run.status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".into(),
        };
        let text = if said.is_empty() {
            format!("the upstream command {argv0} {how}")
        } else {
            format!("the upstream command {argv0} {how}: {said}")
        };
        if run.status.code() == Some(EX_TEMPFAIL) {
            CaError::Unavailable(text)
        } else {
            CaError::Upstream(text)
        }
    }

    /// Runs the issue program; the certificates it printed, leaf first.
    pub async fn issue(&self, req: &IssueRequest) -> Result<Vec<Vec<u8>>, CaError> {
        let csr = req
            .csr_der
            .as_deref()
            .ok_or_else(|| CaError::InvalidRequest("the request carries no CSR".into()))?;
        let join = |kind: &str| {
            req.identifiers
                .iter()
                .filter(|i| i.kind == kind)
                .map(|i| i.value.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let names: Vec<&str> = req.identifiers.iter().map(|i| i.value.as_str()).collect();
        let secs = (req.not_after - req.not_before).whole_seconds().max(1);
        let rfc3339 = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let env = vec![
            ("SCEAU_NAMES", names.join(",")),
            ("SCEAU_DNS_NAMES", join("dns")),
            ("SCEAU_IP_ADDRESSES", join("ip")),
            ("SCEAU_PROFILE", req.profile.name().to_owned()),
            ("SCEAU_NOT_BEFORE", rfc3339(req.not_before)),
            ("SCEAU_NOT_AFTER", rfc3339(req.not_after)),
            ("SCEAU_VALIDITY_DAYS", (secs / 86400).max(1).to_string()),
            ("SCEAU_VALIDITY_SECS", secs.to_string()),
        ];
        let pem = sceau_wire::key::pem_encode("CERTIFICATE REQUEST", csr);
        let run = self.run(&self.issue, env, pem.into_bytes()).await?;
        if !run.status.success() {
            return Err(Self::failure(&self.issue[0], &run));
        }
        let text = String::from_utf8_lossy(&run.stdout);
        let certs = sceau_wire::key::pem_decode_all(&text, "CERTIFICATE");
        if certs.is_empty() {
            return Err(CaError::Upstream(format!(
                "the upstream command {} printed no PEM certificate",
                self.issue[0]
            )));
        }
        Ok(certs)
    }

    /// Runs the revoke program; `Ok` once it exited 0.
    pub async fn revoke(
        &self,
        cert_der: &[u8],
        serial_hex: &str,
        reason: u8,
    ) -> Result<(), CaError> {
        let Some(argv) = &self.revoke else {
            return Err(CaError::Upstream(
                "no revoke command is configured ([ra.command] revoke): the upstream CA cannot be asked to revoke".into(),
            ));
        };
        let env = vec![
            ("SCEAU_SERIAL", serial_hex.to_owned()),
            ("SCEAU_REASON", reason.to_string()),
            (
                "SCEAU_REASON_NAME",
                sceau_wire::reason::name(reason)
                    .unwrap_or("unspecified")
                    .to_owned(),
            ),
        ];
        let pem = sceau_wire::key::pem_encode("CERTIFICATE", cert_der);
        let run = self.run(argv, env, pem.into_bytes()).await?;
        if run.status.success() {
            Ok(())
        } else {
            Err(Self::failure(&argv[0], &run))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sceau_ca::Profile;

    fn signer(script: &str, timeout_secs: u64) -> CommandSigner {
        CommandSigner::new(&CommandUpstream {
            issue: vec!["/bin/sh".into(), "-c".into(), script.into()],
            revoke: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            timeout_secs: Some(timeout_secs),
            concurrency: None,
        })
        .unwrap()
    }

    fn request() -> IssueRequest {
        let now = time::OffsetDateTime::now_utc();
        IssueRequest {
            public_key_spki_der: vec![1],
            identifiers: vec![
                sceau_wire::Identifier::dns("a.test"),
                sceau_wire::Identifier::ip("10.0.0.1"),
            ],
            not_before: now,
            not_after: now + time::Duration::days(30),
            profile: Profile::Server,
            serial: None,
            crl_shard: None,
            csr_der: Some(b"csr".to_vec()),
            gate: None,
            resume: None,
        }
    }

    #[tokio::test]
    async fn the_program_sees_the_request_and_nothing_the_server_inherited() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let s = signer(&format!("env > {0}; cat >> {0}; exit 3", out.display()), 10);
        let e = s.issue(&request()).await.unwrap_err();
        assert!(matches!(e, CaError::Upstream(_)), "{e}");
        let seen = std::fs::read_to_string(&out).unwrap();
        assert!(seen.contains("SCEAU_NAMES=a.test,10.0.0.1"), "{seen}");
        assert!(seen.contains("SCEAU_DNS_NAMES=a.test\n"), "{seen}");
        assert!(seen.contains("SCEAU_IP_ADDRESSES=10.0.0.1\n"), "{seen}");
        assert!(seen.contains("SCEAU_PROFILE=tls-server\n"), "{seen}");
        assert!(seen.contains("SCEAU_VALIDITY_DAYS=30\n"), "{seen}");
        assert!(
            seen.contains("-----BEGIN CERTIFICATE REQUEST-----"),
            "{seen}"
        );
        // cargo sets dozens of CARGO_* variables in this test process: none reach the program.
        for line in seen
            .lines()
            .filter(|l| l.contains('=') && !l.starts_with('-'))
        {
            let name = line.split('=').next().unwrap();
            assert!(
                name.starts_with("SCEAU_") || ["PATH", "LANG", "PWD", "SHLVL", "_"].contains(&name),
                "leaked {name}"
            );
        }
    }

    #[tokio::test]
    async fn exit_statuses_and_output_decide_retry_or_refusal() {
        let e = signer("echo 'first'; echo 'CA busy, try later' >&2; exit 75", 10)
            .issue(&request())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CaError::Unavailable(m) if m.contains("CA busy, try later")),
            "{e}"
        );
        let e = signer(
            "echo 'detail one' >&2; echo 'name not in policy' >&2; exit 2",
            10,
        )
        .issue(&request())
        .await
        .unwrap_err();
        assert!(
            matches!(&e, CaError::Upstream(m) if m.ends_with("exited with status 2: name not in policy")),
            "{e}"
        );
        // Megabytes of garbage: capped, and refused for holding no certificate.
        let e = signer("cat >/dev/null; head -c 5000000 /dev/zero", 10)
            .issue(&request())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("printed no PEM certificate"), "{e}");
        // Killed at its timeout, its children with it; retried later.
        let t = std::time::Instant::now();
        let e = signer("sleep 20 & sleep 20", 1)
            .issue(&request())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CaError::Unavailable(m) if m.contains("within 1 s")),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // Revocation: exit 0 confirms, anything else is the upstream's refusal.
        assert!(
            signer("cat >/dev/null; exit 0", 5)
                .revoke(b"c", "01", 1)
                .await
                .is_ok()
        );
        let e = signer("echo 'already gone' >&2; exit 1", 5)
            .revoke(b"c", "01", 1)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already gone"), "{e}");
        let none = CommandSigner::new(&CommandUpstream {
            issue: vec!["/bin/true".into()],
            revoke: None,
            timeout_secs: None,
            concurrency: None,
        })
        .unwrap();
        assert!(
            none.revoke(b"c", "01", 1)
                .await
                .unwrap_err()
                .to_string()
                .contains("no revoke command")
        );
    }
}
