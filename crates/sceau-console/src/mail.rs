//! Scheduled reports by e-mail (agency guide R49): an SMTP client (RFC 5321) that upgrades
//! every connection with STARTTLS (RFC 3207) before it says anything else, and the job that
//! mails each external account's owner its weekly or monthly report.
//!
//! Invariants:
//! - Nothing is sent in clear: a server that does not offer STARTTLS, or whose certificate
//!   does not verify against the configured roots, gets no message (`starttls = false` only
//!   for a relay on this machine, named as such).
//! - The SMTP password is read from a 0600 file and sent only inside TLS (AUTH PLAIN).
//! - Each reply is awaited within [`REPLY_TIMEOUT`] and bounded in size; a server that stalls
//!   or floods costs the job one run, not the process.
//! - A report is recorded as sent (its account's `report_sends` row) only after the server
//!   accepted the message, so a failed run is tried again at the next run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest wait for one SMTP reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The system's trust bundle (Debian's ca-certificates), used without `tls_roots`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Longest SMTP reply accepted (lines of a multi-line reply together).
const MAX_REPLY: usize = 64 * 1024;

/// `[reports]` in the server's TOML file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// The SMTP server, `HOST:PORT` (submission, 587, usually).
    pub smtp_server: String,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// `weekly` or `monthly`.
    #[serde(default = "weekly")]
    pub period: String,
    /// PEM roots for the SMTP server's certificate [default: the platform's].
    pub tls_roots: Option<PathBuf>,
    /// AUTH PLAIN user, with its password in `password_file` (0600).
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Plain SMTP without STARTTLS, for a relay on this machine only.
    #[serde(default = "yes")]
    pub starttls: bool,
    /// How often the job looks for reports due [default: 3600].
    pub check_every_secs: Option<u64>,
}

fn weekly() -> String {
    "weekly".into()
}

fn yes() -> bool {
    true
}

impl ReportsConfig {
    /// The period in seconds; a bad value is a one-line error.
    pub fn period_secs(&self) -> Result<i64, String> {
        match self.period.as_str() {
            "weekly" => Ok(7 * 86400),
            "monthly" => Ok(30 * 86400),
            other => Err(format!(
                "reports.period is weekly or monthly, not {other:?}"
            )),
        }
    }

    /// Checks the settings and reads the secrets, before anything runs.
    pub fn load(&self) -> Result<Mailer, String> {
        self.period_secs()?;
        let (host, port) = self
            .smtp_server
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_matches(['[', ']']).to_owned(),
                    p.parse::<u16>().ok()?,
                ))
            })
            .ok_or_else(|| {
                format!(
                    "reports.smtp_server must be HOST:PORT, not {:?}",
                    self.smtp_server
                )
            })?;
        address_of(&self.from).ok_or_else(|| {
            format!(
                "reports.from must be an e-mail address, not {:?}",
                self.from
            )
        })?;
        let password = match (&self.username, &self.password_file) {
            (Some(_), Some(f)) => {
                let bytes = sceau_ca::read_private_file(f)
                    .map_err(|e| format!("reports.password_file: {e}"))?;
                Some(String::from_utf8_lossy(&bytes).trim().to_owned())
            }
            (None, None) => None,
            _ => return Err("reports needs both username and password_file, or neither".into()),
        };
        // A private PKI's mail server is usually under its own roots; without them, the
        // system's bundle.
        let roots_file = self
            .tls_roots
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
        let pem = std::fs::read(&roots_file).map_err(|e| {
            format!(
                "reports.tls_roots: cannot read {}: {e}",
                roots_file.display()
            )
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| format!("reports.tls_roots {}: {e}", roots_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("reports.tls_roots {}: {e}", roots_file.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "reports.tls_roots {} holds no certificate",
                roots_file.display()
            ));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Mailer {
            host,
            port,
            from: self.from.clone(),
            username: self.username.clone(),
            password,
            starttls: self.starttls,
            tls: Arc::new(tls),
        })
    }
}

/// The address inside `Name <address>` (or the whole text), if it looks like one.
pub fn address_of(text: &str) -> Option<String> {
    // A line break anywhere could end a header line: such text names no one.
    if text.contains(char::is_control) {
        return None;
    }
    let a = match (text.rfind('<'), text.rfind('>')) {
        (Some(i), Some(j)) if i < j => &text[i + 1..j],
        _ => text,
    }
    .trim();
    let ok = a.len() <= 254
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        && !a.contains(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';')
        });
    ok.then(|| a.to_owned())
}

/// A configured SMTP sender.
pub struct Mailer {
    host: String,
    port: u16,
    from: String,
    username: Option<String>,
    password: Option<String>,
    starttls: bool,
    tls: Arc<rustls::ClientConfig>,
}

/// A message: a text part, an HTML part and one attachment.
pub struct Message<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    pub attachment_name: &'a str,
    pub attachment: &'a [u8],
    pub attachment_type: &'a str,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    /// One reply: its code and text; an error past the timeout, the size limit, or on a
    /// malformed line.
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(
                REPLY_TIMEOUT,
                (&mut self.io)
                    .take((MAX_REPLY - text.len().min(MAX_REPLY)) as u64 + 1)
                    .read_line(&mut line),
            )
            .await
            .map_err(|_| "the SMTP server did not answer in time".to_owned())?
            .map_err(|e| format!("SMTP connection: {e}"))?;
            if n == 0 {
                return Err("the SMTP server closed the connection".into());
            }
            if text.len() + line.len() > MAX_REPLY {
                return Err("the SMTP server's reply is too long".into());
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed SMTP reply {line:?}"))?;
            text.push_str(line.get(4..).unwrap_or("").trim_end());
            text.push(' ');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text.trim_end().to_owned()));
            }
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        let io = self.io.get_mut();
        io.write_all(line.as_bytes())
            .await
            .and(io.write_all(b"\r\n").await)
            .and(io.flush().await)
            .map_err(|e| format!("SMTP connection: {e}"))
    }

    /// Sends `line` and wants a reply of class `class` (2 or 3).
    async fn command(&mut self, line: &str, class: u16, what: &str) -> Result<String, String> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if code / 100 != class {
            return Err(format!("the SMTP server refused {what}: {code} {text}"));
        }
        Ok(text)
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 in lines of 76 (RFC 2045 §6.8).
fn b64_lines(bytes: &[u8]) -> String {
    let text = b64(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A header value, RFC 2047-encoded when it is not plain ASCII.
fn header_text(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        clean
    } else {
        format!("=?utf-8?B?{}?=", b64(clean.as_bytes()))
    }
}

fn mime(from: &str, m: &Message<'_>) -> String {
    let mut rnd = [0u8; 12];
    aws_lc_rs::rand::fill(&mut rnd).expect("OS random source");
    let boundary = format!("sceau-{}", sceau_wire::hex::encode(&rnd));
    let alt = format!("{boundary}-alt");
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n\
         --{alt}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{text}\r\n\
         --{alt}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{html}\r\n\
         --{alt}--\r\n\
         --{boundary}\r\nContent-Type: {atype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{aname}\"\r\n\r\n{attachment}\r\n\
         --{boundary}--\r\n",
        from = header_text(from),
        to = header_text(m.to),
        subject = header_text(m.subject),
        text = b64_lines(m.text.as_bytes()),
        html = b64_lines(m.html.as_bytes()),
        atype = m.attachment_type,
        aname = m.attachment_name,
        attachment = b64_lines(m.attachment),
    )
}

impl Mailer {
    /// Sends `m`; `Err` says which step failed and what the server said.
    pub async fn send(&self, m: &Message<'_>) -> Result<(), String> {
        let to = address_of(m.to).ok_or_else(|| format!("{:?} is not an e-mail address", m.to))?;
        let from = address_of(&self.from).expect("checked at load");
        let tcp = tokio::time::timeout(
            REPLY_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| format!("connecting to {}:{} timed out", self.host, self.port))?
        .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        let mut c = Conn {
            io: BufReader::new(Box::new(tcp) as Box<dyn Stream>),
        };
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(format!("the SMTP server greeted with {code} {text}"));
        }
        let helo = "EHLO sceau.invalid";
        let ehlo = c.command(helo, 2, "EHLO").await?;
        if self.starttls {
            if !ehlo.to_ascii_uppercase().contains("STARTTLS") {
                return Err("the SMTP server does not offer STARTTLS; nothing was sent".into());
            }
            c.command("STARTTLS", 2, "STARTTLS").await?;
            let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("SMTP server name {}: {e}", self.host))?;
            let plain = c.io.into_inner();
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, plain)
                .await
                .map_err(|e| format!("TLS with the SMTP server: {e}; nothing was sent"))?;
            c = Conn {
                io: BufReader::new(Box::new(tls) as Box<dyn Stream>),
            };
            c.command(helo, 2, "EHLO").await?;
        }
        if let (Some(user), Some(pass)) = (&self.username, &self.password) {
            let token = b64(format!("\0{user}\0{pass}").as_bytes());
            c.command(&format!("AUTH PLAIN {token}"), 2, "the login")
                .await?;
        }
        c.command(&format!("MAIL FROM:<{from}>"), 2, "the sender")
            .await?;
        c.command(&format!("RCPT TO:<{to}>"), 2, "the recipient")
            .await?;
        c.command("DATA", 3, "DATA").await?;
        // Dot-stuffing (RFC 5321 §4.5.2); the body is base64 parts and headers, so only a
        // header line could start with a dot.
        let body: String = mime(&self.from, m)
            .split("\r\n")
            .map(|l| {
                if l.starts_with('.') {
                    format!(".{l}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        c.command(&format!("{body}\r\n."), 2, "the message").await?;
        let _ = c.send("QUIT").await;
        Ok(())
    }
}

/// The job: mails every external account (not deactivated) whose report is due — never sent,
/// or last sent `period` seconds ago or more — its report since then. Returns how many were
/// sent; an account whose mail failed is tried again at the next run.
pub async fn send_due_reports(
    c: &crate::Console,
    mailer: &Mailer,
    period: i64,
) -> Result<usize, String> {
    let t = sceau_store::now();
    let accounts = c.registry.list().await.map_err(|e| e.to_string())?;
    let mut sent = 0;
    let mut failures = Vec::new();
    for aa in accounts.iter().filter(|a| a.status != "deactivated") {
        let last = c
            .store
            .report_sent_at(&aa.kid)
            .await
            .map_err(|e| e.to_string())?;
        if last.is_some_and(|l| t - l < period) {
            continue;
        }
        let Some(to) = address_of(&aa.owner) else {
            tracing::warn!(kid = %aa.kid, "the external account's owner has no e-mail address; no report sent");
            continue;
        };
        let report = c
            .registry
            .report(&aa.kid, last.unwrap_or(t - period))
            .await
            .map_err(|e| e.to_string())?;
        let html = crate::reports::html(c, &report).map_err(|e| e.to_string())?;
        let csv = crate::reports::csv(&report);
        let subject = crate::reports::subject(&report);
        let date = sceau_admin::report::when(t)
            .get(..10)
            .unwrap_or("")
            .to_owned();
        let message = Message {
            to: &aa.owner,
            subject: &subject,
            text: &report.to_text(),
            html: &html,
            attachment_name: &format!("sceau-report-{date}.csv"),
            attachment: csv.as_bytes(),
            attachment_type: "text/csv",
        };
        match mailer.send(&message).await {
            Ok(()) => {
                let audit = sceau_store::AuditEntry {
                    event: "report.sent",
                    account_id: None,
                    client_ip: None,
                    detail: serde_json::json!({"kid": aa.kid, "to": to, "since": report.since, "until": report.until}),
                };
                c.store
                    .set_report_sent(&aa.kid, t, &audit)
                    .await
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
            Err(e) => failures.push(format!("{}: {e}", aa.kid)),
        }
    }
    if failures.is_empty() {
        Ok(sent)
    } else {
        Err(format!(
            "{} report(s) not sent, tried again at the next run: {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_in_owners() {
        assert_eq!(
            address_of("Alice Martin <alice@example.org>").as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(
            address_of("bob@example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(address_of("Eve <eve@x.org>\r\nBcc: all@x.org"), None);
        assert_eq!(address_of("not an address"), None);
        assert_eq!(address_of("a@b.c>, <d@e.f"), None);
    }

    #[test]
    fn headers_are_encoded_and_stripped_of_controls() {
        assert_eq!(header_text("plain"), "plain");
        assert_eq!(header_text("a\r\nBcc: x"), "aBcc: x");
        assert!(header_text("Zoé").starts_with("=?utf-8?B?"));
    }
}
