//! Multi-perspective validation (agency guide R28; CA/Browser Forum Baseline Requirements
//! §3.2.2.9): the primary validates from where it stands and asks every remote perspective (a
//! `sceau-server validator`, on another network segment with its own resolver) to do the same
//! check at once, CAA included; the outcome follows a quorum.
//!
//! Invariants:
//! - A remote perspective passes only with a `200` whose JSON names the perspective we asked
//!   (the name configured for that URL) and says `ok`. Anything else — no answer within the
//!   timeout, a TLS certificate the validation CA did not issue for the URL's host, another
//!   status, a body over [`MAX_ANSWER`], bad JSON, another perspective's name — counts as a
//!   failure with its reason, never as a pass.
//! - Enforced: the outcome is a pass only when the primary passes and at least `quorum` remote
//!   perspectives pass. It is decided as soon as it is known (the primary failed, the quorum is
//!   reached, or too many remotes failed to reach it); the checks still running are dropped,
//!   which cancels their requests, after at most [`LATE_GRACE`] to report (a late answer never
//!   changes an outcome already known: passes and failures only add up).
//! - Log-only (roll-out): the primary decides; every remote answer is awaited (within the
//!   timeout) so that the disagreement is reported in full.
//! - Every outcome lists which perspectives agreed and which did not and why, for the
//!   authorization's error and the audit.
//! - Remote details are the validator's own one-line texts, cut to [`MAX_DETAIL`] characters.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sceau_wire::{Identifier, ProblemType};
use serde::{Deserialize, Serialize};

use crate::error::{snippet, snippet_of};
use crate::{ValidationError, Validator};

/// The path a validator answers checks on.
pub const CHECK_PATH: &str = "/v1/check";
/// The largest answer read from a remote perspective.
pub const MAX_ANSWER: usize = 16 * 1024;
/// The longest remote detail kept.
pub const MAX_DETAIL: usize = 300;
/// How long the checks still running once the outcome is known may take to be reported
/// before they are dropped.
pub const LATE_GRACE: Duration = Duration::from_millis(500);

/// What to check: one challenge (RFC 8555 §8.3, §8.4, RFC 8737), then CAA if asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Challenge {
    #[serde(rename = "http-01")]
    Http01 {
        token: String,
        key_authorization: String,
    },
    #[serde(rename = "dns-01")]
    Dns01 { key_authorization: String },
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01 { key_authorization: String },
    /// CAA alone (the re-check at issuance of an older authorization).
    None,
}

impl Challenge {
    pub fn name(&self) -> &'static str {
        match self {
            Challenge::Http01 { .. } => "http-01",
            Challenge::Dns01 { .. } => "dns-01",
            Challenge::TlsAlpn01 { .. } => "tls-alpn-01",
            Challenge::None => "none",
        }
    }
}

/// RFC 8659 with RFC 8657: the CA's identities, the requesting account and the method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaaQuery {
    /// The identifier CAA is checked for (`*.` prefixed for a wildcard, RFC 8659 §4.3).
    pub identifier: Identifier,
    pub identities: Vec<String>,
    pub account_uri: String,
    pub method: String,
}

/// One check, as sent to a remote perspective.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub identifier: Identifier,
    pub challenge: Challenge,
    pub caa: Option<CaaQuery>,
}

/// A perspective's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub perspective: String,
    pub ok: bool,
    /// The ACME problem type (URN) and detail when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckAnswer {
    pub fn from_result(perspective: &str, r: &Result<(), ValidationError>) -> CheckAnswer {
        CheckAnswer {
            perspective: perspective.to_owned(),
            ok: r.is_ok(),
            problem_type: r.as_ref().err().map(|e| e.kind.urn()),
            detail: r.as_ref().err().map(|e| e.detail.clone()),
        }
    }
}

impl Validator {
    /// One perspective's whole check: the challenge, then CAA when asked (RFC 8659 §3: once
    /// control is shown, before issuance).
    pub async fn check(&self, req: &CheckRequest) -> Result<(), ValidationError> {
        let id = &req.identifier;
        match &req.challenge {
            Challenge::Http01 {
                token,
                key_authorization,
            } => self.http01(id, token, key_authorization).await?,
            Challenge::Dns01 { key_authorization } => self.dns01(id, key_authorization).await?,
            Challenge::TlsAlpn01 { key_authorization } => {
                self.tls_alpn01(id, key_authorization).await?
            }
            Challenge::None => {}
        }
        match &req.caa {
            Some(q) => {
                self.caa_for(&q.identities, &q.identifier, &q.account_uri, &q.method)
                    .await
            }
            None => Ok(()),
        }
    }
}

/// Enforce the quorum, or only report disagreement (roll-out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    LogOnly,
}

/// BR §3.2.2.9's table: with 2 to 5 remote perspectives one may disagree, with 6 or more two.
/// With one remote perspective it must agree.
pub fn default_quorum(remotes: usize) -> usize {
    match remotes {
        0 | 1 => remotes,
        2..=5 => remotes - 1,
        n => n - 2,
    }
}

/// A remote perspective: its name and where it answers.
#[derive(Clone, Debug)]
pub struct RemoteSpec {
    pub name: String,
    pub url: String,
}

/// The TLS material of the primary's side of the validation links, PEM.
pub struct LinkTls {
    /// The validation CA: certifies every validator's server certificate.
    pub ca_pem: Vec<u8>,
    /// The primary's client certificate (chain) and key.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Why the remote perspectives could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PerspectivesError {
    #[error("{0}")]
    Config(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

struct Remote {
    name: String,
    url: String,
}

/// The remote perspectives, checked and ready to be asked: their names and URLs, the quorum,
/// the mode and the mutual-TLS client. Built before the server writes anything, so that a bad
/// `[perspectives]` section changes nothing.
pub struct Remotes {
    remotes: Vec<Remote>,
    quorum: usize,
    mode: Mode,
    client: reqwest::Client,
    timeout: Duration,
}

impl Remotes {
    /// `remotes` reached over mutual TLS with `tls`; `quorum` remote passes needed (`None`:
    /// [`default_quorum`]).
    pub fn new(
        remotes: Vec<RemoteSpec>,
        tls: &LinkTls,
        quorum: Option<usize>,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Remotes, PerspectivesError> {
        if remotes.is_empty() {
            return Err(PerspectivesError::Config(
                "no remote perspective is configured".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for r in &remotes {
            if r.name.is_empty() || r.name == PRIMARY || !names.insert(r.name.as_str()) {
                return Err(PerspectivesError::Config(format!(
                    "perspective name {:?} is empty, reserved or used twice",
                    r.name
                )));
            }
            let url = url::Url::parse(&r.url).map_err(|e| {
                PerspectivesError::Config(format!("perspective {}: url {:?}: {e}", r.name, r.url))
            })?;
            if url.scheme() != "https" || url.host().is_none() {
                return Err(PerspectivesError::Config(format!(
                    "perspective {}: url {:?} must be https://host[:port]",
                    r.name, r.url
                )));
            }
        }
        let quorum = quorum.unwrap_or_else(|| default_quorum(remotes.len()));
        if quorum > remotes.len() {
            return Err(PerspectivesError::Config(format!(
                "quorum {quorum} is more than the {} remote perspectives",
                remotes.len()
            )));
        }
        if quorum == 0 && mode == Mode::Enforce {
            return Err(PerspectivesError::Config(
                "quorum 0 with remote perspectives enforces nothing: use mode = \"log-only\""
                    .into(),
            ));
        }
        Ok(Remotes {
            client: client(tls, timeout)?,
            remotes: remotes
                .into_iter()
                .map(|r| Remote {
                    url: format!("{}{CHECK_PATH}", r.url.trim_end_matches('/')),
                    name: r.name,
                })
                .collect(),
            quorum,
            mode,
            timeout,
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.remotes.iter().map(|r| r.name.as_str()).collect()
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// The primary and its remote perspectives.
#[derive(Clone)]
pub struct Perspectives {
    inner: Arc<PInner>,
}

struct PInner {
    local: Validator,
    remotes: Option<Remotes>,
}

/// What one perspective found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub perspective: String,
    pub result: Result<(), ValidationError>,
}

/// The outcome of a multi-perspective check.
#[derive(Clone, Debug)]
pub struct Corroboration {
    /// What decides: the quorum's outcome when enforced, the primary's in log-only mode.
    pub result: Result<(), ValidationError>,
    /// The primary's own finding, then each remote perspective that answered before the outcome
    /// was known, in the order they answered.
    pub findings: Vec<Finding>,
    /// Remote perspectives still running when the outcome was known (their checks dropped).
    pub cancelled: Vec<String>,
    /// Whether the remote perspectives fell short of the quorum (in log-only mode: whether
    /// enforcing would have refused).
    pub quorum_failed: bool,
}

impl Corroboration {
    /// For the audit: every perspective with `ok` or its error, and the cancelled ones.
    pub fn to_json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| match &f.result {
                Ok(()) => serde_json::json!({"perspective": f.perspective, "ok": true}),
                Err(e) => serde_json::json!({"perspective": f.perspective, "ok": false,
                    "type": e.kind.name(), "detail": e.detail}),
            })
            .collect();
        serde_json::json!({"findings": findings, "cancelled": self.cancelled,
            "quorum_failed": self.quorum_failed})
    }
}

/// The name the primary's own finding goes by.
pub const PRIMARY: &str = "primary";

impl Perspectives {
    /// The primary with `remotes` (`None`: every check is local).
    pub fn new(local: Validator, remotes: Option<Remotes>) -> Perspectives {
        Perspectives {
            inner: Arc::new(PInner { local, remotes }),
        }
    }

    /// The primary's own validator (for CAA reports and the like).
    pub fn local(&self) -> &Validator {
        &self.inner.local
    }

    pub fn remotes(&self) -> Option<&Remotes> {
        self.inner.remotes.as_ref()
    }

    /// Runs `req` from the primary and every remote perspective at once; see the module's
    /// invariants for how the outcome is decided.
    pub async fn check(&self, req: &CheckRequest) -> Corroboration {
        let local = async {
            Finding {
                perspective: PRIMARY.to_owned(),
                result: self.inner.local.check(req).await,
            }
        };
        let Some(inner) = &self.inner.remotes else {
            let f = local.await;
            return Corroboration {
                result: f.result.clone(),
                findings: vec![f],
                cancelled: Vec::new(),
                quorum_failed: false,
            };
        };
        let client = &inner.client;
        let mut running: FuturesUnordered<_> = inner
            .remotes
            .iter()
            .map(|r| async move {
                let result = match tokio::time::timeout(inner.timeout, ask(client, r, req)).await {
                    Ok(r) => r,
                    Err(_) => Err(ValidationError::new(
                        ProblemType::Connection,
                        format!("no answer within {:?}", inner.timeout),
                    )),
                };
                Finding {
                    perspective: r.name.clone(),
                    result,
                }
            })
            .collect();
        let mut local = std::pin::pin!(local);
        let mut primary: Option<Finding> = None;
        let mut remote: Vec<Finding> = Vec::new();
        let n = inner.remotes.len();
        let enforce = inner.mode == Mode::Enforce;
        loop {
            let passed = remote.iter().filter(|f| f.result.is_ok()).count();
            let failed = remote.len() - passed;
            let decided = match &primary {
                Some(p) if enforce && p.result.is_err() => true,
                Some(_) if enforce => passed >= inner.quorum || failed > n - inner.quorum,
                Some(_) => remote.len() == n,
                None => false,
            };
            if decided {
                break;
            }
            tokio::select! {
                f = &mut local, if primary.is_none() => primary = Some(f),
                Some(f) = running.next(), if !running.is_empty() => remote.push(f),
            }
        }
        // The outcome is known: the checks still running get a moment to be reported (a hijacked
        // perspective usually answers as fast as the others), then are dropped.
        if !running.is_empty() {
            let grace = tokio::time::sleep(LATE_GRACE);
            let mut grace = std::pin::pin!(grace);
            loop {
                tokio::select! {
                    _ = &mut grace => break,
                    f = running.next() => match f {
                        Some(f) => remote.push(f),
                        None => break,
                    },
                }
            }
        }
        drop(running);
        let primary = primary.expect("decided after the primary");
        let answered: std::collections::HashSet<&str> =
            remote.iter().map(|f| f.perspective.as_str()).collect();
        let cancelled: Vec<String> = inner
            .remotes
            .iter()
            .filter(|r| !answered.contains(r.name.as_str()))
            .map(|r| r.name.clone())
            .collect();
        let passed = remote.iter().filter(|f| f.result.is_ok()).count();
        let quorum_failed = passed < inner.quorum;
        let result = match &primary.result {
            Err(e) => Err(ValidationError::new(
                e.kind,
                format!("{} (from the primary perspective)", e.detail),
            )),
            Ok(()) if enforce && quorum_failed => Err(quorum_error(&remote, inner.quorum, n)),
            Ok(()) => Ok(()),
        };
        let mut findings = vec![primary];
        findings.extend(remote);
        Corroboration {
            result,
            findings,
            cancelled,
            quorum_failed,
        }
    }
}

/// The problem of a quorum not reached: the first disagreeing perspective's type, and every
/// disagreeing perspective named with its reason.
fn quorum_error(remote: &[Finding], quorum: usize, n: usize) -> ValidationError {
    let passed: Vec<&str> = remote
        .iter()
        .filter(|f| f.result.is_ok())
        .map(|f| f.perspective.as_str())
        .collect();
    let failed: Vec<(&str, &ValidationError)> = remote
        .iter()
        .filter_map(|f| f.result.as_ref().err().map(|e| (f.perspective.as_str(), e)))
        .collect();
    let kind = failed
        .first()
        .map_or(ProblemType::Unauthorized, |(_, e)| e.kind);
    let reasons: Vec<String> = failed
        .iter()
        .map(|(name, e)| format!("{name}: {}", e.detail))
        .collect();
    ValidationError::new(
        kind,
        format!(
            "the primary perspective passed, but only {} of {n} remote perspectives agreed ({}), {quorum} needed (agency guide R28); disagreeing: {}",
            passed.len(),
            if passed.is_empty() {
                "none".to_owned()
            } else {
                passed.join(", ")
            },
            reasons.join("; ")
        ),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client(tls: &LinkTls, timeout: Duration) -> Result<reqwest::Client, PerspectivesError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        PerspectivesError::Config(format!("perspectives {what}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots
            .add(cert.map_err(|e| bad("tls_ca", &e))?)
            .map_err(|e| bad("tls_ca", &e))?;
    }
    if roots.is_empty() {
        return Err(PerspectivesError::Config(
            "perspectives tls_ca holds no certificate".into(),
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("tls_cert", &e))?;
    if chain.is_empty() {
        return Err(PerspectivesError::Config(
            "perspectives tls_cert holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| bad("tls_key", &e))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        // Ours (`Perspectives::check`) fires first and names the perspective that was too slow.
        .timeout(timeout + Duration::from_secs(1))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?)
}

/// One remote check; any failure to get a well-formed passing answer from the perspective we
/// asked is an error naming why.
async fn ask(
    client: &reqwest::Client,
    remote: &Remote,
    req: &CheckRequest,
) -> Result<(), ValidationError> {
    let fail = |kind: ProblemType, why: String| ValidationError::new(kind, why);
    let mut resp = client
        .post(&remote.url)
        .json(req)
        .send()
        .await
        .map_err(|e| {
            fail(
                ProblemType::Connection,
                format!("unreachable: {}", error_chain(&e)),
            )
        })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(fail(
            ProblemType::ServerInternal,
            format!("answered HTTP {}", resp.status().as_u16()),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        fail(
            ProblemType::Connection,
            format!("answer cut short: {}", error_chain(&e)),
        )
    })? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(fail(
                ProblemType::ServerInternal,
                format!("answer over {MAX_ANSWER} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: CheckAnswer = serde_json::from_slice(&body).map_err(|e| {
        fail(
            ProblemType::ServerInternal,
            format!("answer is not a check result: {e}"),
        )
    })?;
    if answer.perspective != remote.name {
        return Err(fail(
            ProblemType::ServerInternal,
            format!(
                "answered as perspective {:?}: not counted",
                snippet(&answer.perspective)
            ),
        ));
    }
    if answer.ok {
        return Ok(());
    }
    let kind = answer
        .problem_type
        .as_deref()
        .and_then(ProblemType::from_urn)
        .unwrap_or(ProblemType::ServerInternal);
    let detail = answer.detail.unwrap_or_default();
    let mut detail = snippet_of(&detail, MAX_DETAIL);
    if detail.is_empty() {
        detail = "failed, without a reason".into();
    }
    Err(ValidationError::new(kind, detail))
}

/// A reqwest error with its causes (the TLS reason is a few levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_follows_the_baseline_requirements_table() {
        assert_eq!(default_quorum(0), 0);
        assert_eq!(default_quorum(1), 1);
        assert_eq!(default_quorum(2), 1);
        assert_eq!(default_quorum(3), 2);
        assert_eq!(default_quorum(5), 4);
        assert_eq!(default_quorum(6), 4);
        assert_eq!(default_quorum(9), 7);
    }

    #[test]
    fn requests_and_answers_keep_their_shape() {
        let req = CheckRequest {
            identifier: Identifier::dns("www.example.test"),
            challenge: Challenge::Http01 {
                token: "tok".into(),
                key_authorization: "tok.thumb".into(),
            },
            caa: Some(CaaQuery {
                identifier: Identifier::dns("www.example.test"),
                identities: vec!["sceau.test".into()],
                account_uri: "https://ca/acct/1".into(),
                method: "http-01".into(),
            }),
        };
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.contains(r#""type":"http-01""#), "{text}");
        assert_eq!(serde_json::from_str::<CheckRequest>(&text).unwrap(), req);
        // An unknown field is refused, not ignored.
        let extra = text.replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<CheckRequest>(&extra).is_err());
        let answer = CheckAnswer::from_result(
            "dc2",
            &Err(ValidationError::new(ProblemType::Dns, "no A record")),
        );
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.contains("urn:ietf:params:acme:error:dns"), "{text}");
    }

    #[test]
    fn a_quorum_error_names_every_disagreeing_perspective() {
        let f = |name: &str, ok: bool| Finding {
            perspective: name.into(),
            result: if ok {
                Ok(())
            } else {
                Err(ValidationError::new(
                    ProblemType::IncorrectResponse,
                    format!("{name} saw another body"),
                ))
            },
        };
        let e = quorum_error(&[f("a", true), f("b", false), f("c", false)], 2, 3);
        assert_eq!(e.kind, ProblemType::IncorrectResponse);
        assert!(e.detail.contains("only 1 of 3"), "{}", e.detail);
        assert!(e.detail.contains("(a)"), "{}", e.detail);
        assert!(e.detail.contains("b: b saw another body"), "{}", e.detail);
        assert!(e.detail.contains("c: c saw another body"), "{}", e.detail);
    }
}
