//! Challenge solvers: how the client proves control of each identifier.
//!
//! [`Method`] is the serialisable choice (stored with a managed certificate); [`Presented`]
//! is what one issuance put in place. Invariant: everything [`Presented::present`] created is
//! undone by [`Presented::cleanup`], which the issuance always calls, on success and failure
//! alike (R64); listeners are stopped when dropped.

pub mod dns;
pub mod hook;
pub mod http;
pub mod tlsalpn;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use sceau_wire::{Identifier, challenge_type};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to answer challenges for an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Method {
    /// http-01 served by our own listener.
    Http01 {
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
    },
    /// http-01 through files under an existing web server's document root.
    Webroot { dir: PathBuf },
    /// dns-01 through RFC 2136 dynamic update (TSIG-signed when a key file is given).
    Dns01Update {
        server: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tsig_key_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        check_servers: Vec<SocketAddr>,
        #[serde(default = "default_propagation")]
        propagation_timeout_secs: u64,
    },
    /// dns-01 through a hook program (see [`hook`]).
    Dns01Hook { program: PathBuf },
    /// tls-alpn-01 served by our own listener.
    TlsAlpn01 {
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
    },
    /// Answers http-01 without putting anything in place: for a CA that trusts this account
    /// without checking (an upstream CA that pre-authorizes a registration authority, which
    /// validated the names itself).
    Trusted,
}

fn default_propagation() -> u64 {
    120
}

impl Method {
    /// The ACME challenge type this method answers.
    pub fn challenge_type(&self) -> &'static str {
        match self {
            Method::Http01 { .. } | Method::Webroot { .. } | Method::Trusted => {
                challenge_type::HTTP_01
            }
            Method::Dns01Update { .. } | Method::Dns01Hook { .. } => challenge_type::DNS_01,
            Method::TlsAlpn01 { .. } => challenge_type::TLS_ALPN_01,
        }
    }

    /// A short human name, used in errors and events.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Http01 { .. } => "http-01 (listener)",
            Method::Webroot { .. } => "http-01 (webroot)",
            Method::Dns01Update { .. } => "dns-01 (RFC 2136 update)",
            Method::Dns01Hook { .. } => "dns-01 (hook)",
            Method::TlsAlpn01 { .. } => "tls-alpn-01",
            Method::Trusted => "trusted (nothing presented)",
        }
    }

    fn listen_addr(port: u16, address: Option<IpAddr>) -> SocketAddr {
        SocketAddr::new(address.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), port)
    }
}

/// The method for each identifier: a default and per-name overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub default: Method,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_identifier: BTreeMap<String, Method>,
}

impl Plan {
    pub fn single(method: Method) -> Self {
        Plan {
            default: method,
            per_identifier: BTreeMap::new(),
        }
    }

    pub fn method_for(&self, identifier: &Identifier) -> &Method {
        self.per_identifier
            .get(&identifier.value)
            .unwrap_or(&self.default)
    }
}

/// One challenge to put in place.
#[derive(Debug, Clone)]
pub struct ChallengeTask {
    pub identifier: Identifier,
    pub method: Method,
    pub token: String,
    pub key_authorization: String,
}

impl ChallengeTask {
    /// base64url(SHA-256(key authorization)), the dns-01 TXT value (RFC 8555 §8.4).
    pub fn dns_value(&self) -> String {
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.key_authorization.as_bytes(),
        );
        sceau_wire::b64::encode(d.as_ref())
    }

    fn fail(&self, detail: impl Into<String>) -> Error {
        Error::Challenge {
            identifier: self.identifier.value.clone(),
            method: self.method.label().to_owned(),
            detail: detail.into(),
            problem: None,
        }
    }
}

enum Undo {
    Webroot(http::WebrootFile),
    Dns(Box<(dns::DnsUpdater, dns::AddedRecord)>),
    Hook(hook::DnsHookCall),
}

/// Everything one issuance has put in place.
#[derive(Default)]
pub struct Presented {
    http: BTreeMap<SocketAddr, http::Http01Listener>,
    tls: BTreeMap<SocketAddr, tlsalpn::TlsAlpnListener>,
    undo: Vec<(ChallengeTask, Undo)>,
}

impl Presented {
    /// Puts one challenge in place. For dns-01 it returns once the record is visible.
    pub async fn present(&mut self, task: &ChallengeTask) -> Result<()> {
        http::check_token(&task.token).map_err(|e| task.fail(e.to_string()))?;
        match &task.method {
            Method::Trusted => {}
            Method::Http01 { port, address } => {
                let addr = Method::listen_addr(*port, *address);
                let listener = match self.http.entry(addr) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(
                        http::Http01Listener::bind(addr)
                            .await
                            .map_err(|e| task.fail(e.to_string()))?,
                    ),
                };
                listener.add(&task.token, &task.key_authorization)?;
            }
            Method::Webroot { dir } => {
                let f = http::WebrootFile::write(dir, &task.token, &task.key_authorization)
                    .map_err(|e| task.fail(e.to_string()))?;
                self.undo.push((task.clone(), Undo::Webroot(f)));
            }
            Method::TlsAlpn01 { port, address } => {
                let addr = Method::listen_addr(*port, *address);
                let listener = match self.tls.entry(addr) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(
                        tlsalpn::TlsAlpnListener::bind(addr)
                            .await
                            .map_err(|e| task.fail(e.to_string()))?,
                    ),
                };
                listener.add(&task.identifier.value, &task.key_authorization)?;
            }
            Method::Dns01Update {
                server,
                tsig_key_file,
                check_servers,
                propagation_timeout_secs,
            } => {
                if !task.identifier.is_dns() {
                    return Err(task.fail("dns-01 cannot validate an IP address (RFC 8738 §7); use http-01 or tls-alpn-01"));
                }
                let key = tsig_key_file
                    .as_deref()
                    .map(dns::TsigKey::load)
                    .transpose()?;
                let mut updater = dns::DnsUpdater::new(*server, key);
                updater.check_servers = check_servers.clone();
                updater.propagation_timeout = Duration::from_secs(*propagation_timeout_secs);
                let added = updater
                    .add_txt(&task.identifier.value, &task.dns_value())
                    .await
                    .map_err(|e| task.fail(e.to_string()))?;
                self.undo.push((
                    task.clone(),
                    Undo::Dns(Box::new((updater.clone(), added.clone()))),
                ));
                updater
                    .wait_visible(&added)
                    .await
                    .map_err(|e| task.fail(e.to_string()))?;
            }
            Method::Dns01Hook { program } => {
                if !task.identifier.is_dns() {
                    return Err(task.fail("dns-01 cannot validate an IP address (RFC 8738 §7); use http-01 or tls-alpn-01"));
                }
                let call = hook::DnsHookCall {
                    program: program.clone(),
                    domain: task.identifier.value.clone(),
                    txt_value: task.dns_value(),
                    token: task.token.clone(),
                    key_authorization: task.key_authorization.clone(),
                };
                // Registered before running: a hook that half-succeeded still gets its cleanup.
                self.undo.push((task.clone(), Undo::Hook(call.clone())));
                call.run("present")
                    .await
                    .map_err(|e| task.fail(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Removes everything; returns the errors of the removals that failed.
    pub async fn cleanup(mut self) -> Vec<Error> {
        let mut errors = Vec::new();
        for (task, undo) in self.undo.drain(..).rev() {
            let r = match undo {
                Undo::Webroot(f) => f.remove(),
                Undo::Dns(b) => b.0.remove_txt(&b.1).await,
                Undo::Hook(call) => call.run("cleanup").await,
            };
            if let Err(e) = r {
                errors.push(task.fail(format!("cleanup failed: {e}")));
            }
        }
        self.http.clear();
        self.tls.clear();
        errors
    }
}
