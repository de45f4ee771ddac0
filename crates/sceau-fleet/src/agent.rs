//! `sceau agent`: what each machine runs, from a timer, without root (R58).
//!
//! Its directory (`--dir`, 0700) holds `agent.json` (its name, the manager's URL and the
//! certificates it keeps), `manager-ca.pem` (the only root it trusts for the manager), its
//! client certificate and key (0600), and `pending/NAME.key` (0600) while a CSR waits for the
//! CA. Certificates are installed under `--cert-dir` (default `DIR/live`) with the files and
//! modes of `sceau issue` (privkey.pem 0600 or 0640, the rest 0644), atomically.
//!
//! Invariants:
//! - Every CSR is made with a key generated for it (R66); the key is written (0600) before the
//!   CSR is sent, so a crash never loses the key of a certificate the CA will sign, and it is
//!   sent nowhere: only the CSR leaves the machine.
//! - A certificate is installed only when it certifies the pending key and the configured
//!   names; the manager is told only once the files and the deploy hook are done.
//! - A manager that cannot be reached changes nothing locally; the next run picks up where
//!   this one stopped (an agent offline for weeks catches up on its first run).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sceau_client::certinfo::CertInfo;
use sceau_client::files::{CertFiles, Modes, ensure_dir, write_atomic};
use sceau_wire::{AccountKey, Identifier, KeyKind};
use serde::{Deserialize, Serialize};

use crate::api::{AgentInfo, ApiError, CertStatus, EnrolRequest, Installed, SubmitCsr};
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "agent.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The name the manager knows this machine by.
    pub name: String,
    /// The manager's base URL, e.g. https://manager.example.org:8555
    pub manager: String,
    #[serde(default)]
    pub certs: Vec<AgentCert>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentCert {
    pub name: String,
    pub domains: Vec<String>,
    #[serde(default = "default_key")]
    pub key_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_hook: Option<String>,
    /// privkey.pem 0640 instead of 0600, for a service reading it through its group.
    #[serde(default)]
    pub group_readable: bool,
}

fn default_key() -> String {
    KeyKind::P256.name().to_owned()
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
    fn ca(&self) -> PathBuf {
        self.dir.join("manager-ca.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    fn pending(&self, name: &str) -> PathBuf {
        self.dir.join("pending").join(format!("{name}.key"))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))
}

/// The agent's side of the API.
pub struct ManagerLink {
    base: String,
    http: reqwest::Client,
}

impl ManagerLink {
    fn new(base: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let tls = crate::tls::client_config(ca_pem, cert_pem, key_pem)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(sceau_client::http::USER_AGENT)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Tls(format!("HTTP client: {e}")))?;
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(Error::Config(format!(
                "the manager URL must be https://…, not {base}"
            )));
        }
        Ok(ManagerLink { base, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            url: self.base.clone(),
            detail: error_chain(&e),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<ApiError>(&text) {
            Ok(e) if status.is_client_error() => Err(Error::Refused {
                kind: e.kind,
                detail: e.detail,
            }),
            Ok(e) => Err(Error::Unreachable {
                url: self.base.clone(),
                detail: format!("{status}: {}", e.detail),
            }),
            Err(_) => Err(Error::Unreachable {
                url: self.base.clone(),
                detail: format!("{status}"),
            }),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
        resp.json().await.map_err(|e| Error::Unreachable {
            url: String::new(),
            detail: format!("bad answer: {e}"),
        })
    }

    async fn status(&self, name: &str) -> Result<Option<CertStatus>> {
        match self
            .call(reqwest::Method::GET, &format!("/v1/certs/{name}"), None)
            .await
        {
            Ok(r) => Ok(Some(Self::json(r).await?)),
            Err(Error::Refused { kind, .. }) if kind == "unknownCertificate" => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `sceau agent enrol`: makes the client identity, uses the one-time token, writes the agent
/// directory. Nothing stays behind when the manager refuses.
pub async fn enrol(
    dir: &Path,
    manager: &str,
    manager_ca: &Path,
    token_file: &Path,
) -> Result<AgentInfo> {
    let files = Files {
        dir: dir.to_owned(),
    };
    if files.config().exists() {
        return Err(Error::Config(format!(
            "{} exists: this directory already holds an enrolled agent",
            files.config().display()
        )));
    }
    let token = read(token_file)?.trim().to_owned();
    if token.is_empty() {
        return Err(Error::Config(format!("{} is empty", token_file.display())));
    }
    let ca_pem = read(manager_ca)?;
    let host = hostname();
    let identity = crate::tls::agent_identity(&host)?;
    let link = ManagerLink::new(manager, &ca_pem, &identity.cert_pem, &identity.key_pem)?;
    let resp = link
        .call(
            reqwest::Method::POST,
            "/v1/enrol",
            Some(serde_json::to_value(EnrolRequest { token }).expect("serialises")),
        )
        .await?;
    let info: AgentInfo = ManagerLink::json(resp).await?;
    ensure_dir(dir, 0o700)?;
    write_atomic(&files.key(), identity.key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert(), identity.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&files.ca(), ca_pem.as_bytes(), 0o644)?;
    save(
        &files,
        &AgentConfig {
            name: info.name.clone(),
            manager: manager.trim_end_matches('/').to_owned(),
            certs: Vec::new(),
        },
    )?;
    Ok(info)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "agent".into())
}

fn save(files: &Files, config: &AgentConfig) -> Result<()> {
    Ok(write_atomic(
        &files.config(),
        serde_json::to_string_pretty(config)
            .expect("serialises")
            .as_bytes(),
        0o600,
    )?)
}

pub fn load(dir: &Path) -> Result<AgentConfig> {
    let files = Files {
        dir: dir.to_owned(),
    };
    let text = std::fs::read_to_string(files.config()).map_err(|e| {
        Error::Config(format!(
            "{}: {e}; run `sceau agent enrol` first",
            files.config().display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", files.config().display())))
}

/// `sceau agent cert add`: records a certificate to keep (replacing one of the same name).
pub fn add_cert(dir: &Path, cert: AgentCert) -> Result<()> {
    sceau_client::state::check_name(&cert.name)?;
    if cert.domains.is_empty() {
        return Err(Error::Config("give at least one --domain".into()));
    }
    for d in &cert.domains {
        if crate::names::normalise(d).is_none() {
            return Err(Error::Config(format!("{d:?} is not a DNS name")));
        }
    }
    KeyKind::from_name(&cert.key_type)
        .ok_or_else(|| Error::Config(format!("unknown key type {}", cert.key_type)))?;
    let files = Files {
        dir: dir.to_owned(),
    };
    let mut config = load(dir)?;
    config.certs.retain(|c| c.name != cert.name);
    config.certs.push(cert);
    save(&files, &config)
}

/// What one run did for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A new certificate is installed (and its deploy hook ran).
    Installed { serial: String },
    /// The current certificate is installed and nothing is due.
    UpToDate { serial: String },
    /// A CSR waits at the manager; the next run installs the certificate.
    Waiting,
}

/// `sceau agent run`: every configured certificate, each at most `wait` for the manager.
pub async fn run(
    dir: &Path,
    cert_dir: &Path,
    wait: Duration,
    force: bool,
) -> Vec<(String, Result<Outcome>)> {
    let config = match load(dir) {
        Ok(c) => c,
        Err(e) => return vec![("agent".into(), Err(e))],
    };
    let files = Files {
        dir: dir.to_owned(),
    };
    let link = match (|| {
        ManagerLink::new(
            &config.manager,
            &read(&files.ca())?,
            &read(&files.cert())?,
            &read(&files.key())?,
        )
    })() {
        Ok(l) => l,
        Err(e) => return vec![("agent".into(), Err(e))],
    };
    let mut out = Vec::new();
    for cert in &config.certs {
        let r = one(&link, &files, cert_dir, cert, wait, force).await;
        out.push((cert.name.clone(), r));
    }
    out
}

fn sorted_names(domains: &[String]) -> Vec<String> {
    let mut v: Vec<String> = domains
        .iter()
        .filter_map(|d| crate::names::normalise(d))
        .collect();
    v.sort();
    v.dedup();
    v
}

async fn submit(
    link: &ManagerLink,
    files: &Files,
    cert: &AgentCert,
    replace: bool,
) -> Result<CertStatus> {
    let kind = KeyKind::from_name(&cert.key_type)
        .ok_or_else(|| Error::Config(format!("unknown key type {}", cert.key_type)))?;
    let key = sceau_client::csr::generate_key(kind)?;
    let ids: Vec<Identifier> = cert
        .domains
        .iter()
        .map(|d| Identifier::dns(d.clone()))
        .collect();
    let csr = sceau_client::csr::build_csr(&key, &ids)?;
    ensure_dir(&files.dir.join("pending"), 0o700)?;
    write_atomic(&files.pending(&cert.name), key.to_pem().as_bytes(), 0o600)?;
    let body = SubmitCsr {
        csr: sceau_wire::b64::encode(&csr),
        replace,
    };
    let resp = link
        .call(
            reqwest::Method::PUT,
            &format!("/v1/certs/{}", cert.name),
            Some(serde_json::to_value(body).expect("serialises")),
        )
        .await?;
    ManagerLink::json(resp).await
}

async fn one(
    link: &ManagerLink,
    files: &Files,
    cert_dir: &Path,
    cert: &AgentCert,
    wait: Duration,
    force: bool,
) -> Result<Outcome> {
    let deadline = Instant::now() + wait;
    let installed = CertFiles::new(cert_dir, &cert.name, Modes::new(cert.group_readable));
    let installed_serial = installed
        .read_fullchain()
        .and_then(|pem| CertInfo::from_pem_chain(&pem).ok())
        .map(|i| i.serial_hex);
    let mut status = link.status(&cert.name).await?;
    let mut submitted = false;
    loop {
        let names_changed = status
            .as_ref()
            .is_some_and(|s| s.names != sorted_names(&cert.domains));
        let needs_csr = match &status {
            None => true,
            Some(s) => {
                s.csr_wanted
                    || names_changed
                    || (s.state == "pending" && !files.pending(&cert.name).exists())
                    || (force && !submitted)
            }
        };
        if needs_csr && !submitted {
            let replace = force || names_changed;
            status = Some(submit(link, files, cert, replace).await?);
            submitted = true;
            continue;
        }
        let s = status.clone().expect("known by now");
        match s.state.as_str() {
            "issued" => {
                let serial = s.serial.clone().unwrap_or_default();
                if installed_serial.as_deref() == Some(serial.as_str()) {
                    if !s.picked_up {
                        report_installed(link, &cert.name, &serial).await?;
                    }
                    return Ok(Outcome::UpToDate { serial });
                }
                install(link, files, &installed, cert, &serial).await?;
                return Ok(Outcome::Installed { serial });
            }
            "failed" if submitted => {
                return Err(Error::Refused {
                    kind: "refused".into(),
                    detail: format!(
                        "the CA refused the CSR for {}: {}",
                        cert.name,
                        s.error.unwrap_or_default()
                    ),
                });
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Ok(Outcome::Waiting);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = link.status(&cert.name).await?;
    }
}

async fn report_installed(link: &ManagerLink, name: &str, serial: &str) -> Result<()> {
    link.call(
        reqwest::Method::POST,
        &format!("/v1/certs/{name}/installed"),
        Some(
            serde_json::to_value(Installed {
                serial: serial.to_owned(),
            })
            .expect("serialises"),
        ),
    )
    .await?;
    Ok(())
}

async fn install(
    link: &ManagerLink,
    files: &Files,
    installed: &CertFiles,
    cert: &AgentCert,
    serial: &str,
) -> Result<()> {
    let chain = link
        .call(
            reqwest::Method::GET,
            &format!("/v1/certs/{}/chain", cert.name),
            None,
        )
        .await?
        .text()
        .await
        .map_err(|e| Error::Unreachable {
            url: link.base.clone(),
            detail: e.to_string(),
        })?;
    let info = CertInfo::from_pem_chain(&chain)?;
    if info.serial_hex != serial {
        return Err(Error::Config(format!(
            "the manager sent certificate {} instead of {serial}",
            info.serial_hex
        )));
    }
    let mismatch = |what: &str| {
        Error::Config(format!(
            "{}: the manager's certificate {serial} {what}; it is not installed",
            cert.name
        ))
    };
    if sorted_names(
        &info
            .names
            .iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>(),
    ) != sorted_names(&cert.domains)
    {
        return Err(mismatch("is not for the configured names"));
    }
    let pending = files.pending(&cert.name);
    let key_pem = std::fs::read_to_string(&pending)
        .map_err(|_| mismatch("arrived but this agent holds no pending key for it"))?;
    let key = AccountKey::from_pem(&key_pem)
        .map_err(|e| Error::Config(format!("{}: {e}", pending.display())))?;
    if sceau_client::issue::key_spki(&key)? != info.public_key_der {
        return Err(mismatch("does not certify this agent's pending key"));
    }
    installed.install(Some(&key_pem), &chain, sceau_client::state::default_keep())?;
    if let Some(hook) = &cert.deploy_hook {
        // Installed but not deployed: the manager is not told, so it keeps alerting.
        let domains: Vec<&str> = cert.domains.iter().map(String::as_str).collect();
        sceau_client::files::run_deploy_hook(installed, &cert.name, &domains, hook).await?;
    }
    report_installed(link, &cert.name, serial).await?;
    let _ = std::fs::remove_file(&pending);
    Ok(())
}
