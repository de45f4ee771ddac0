//! A CMP client (RFC 4210 / RFC 9810, over HTTP per RFC 6712, in the shape of the Lightweight
//! CMP Profile, RFC 9483) for Sceau as a registration authority in front of an existing PKI:
//! PKCS#10 enrollment (p10cr → cp → certConf → pkiConf), polling of delayed enrollment
//! (pollReq / pollRep), and revocation (rr → rp).
//!
//! Invariants:
//! - Every response is refused unless its protection verifies ([`protect`]): a PBM with the
//!   shared secret, or a signature by a configured upstream certificate. Unprotected responses,
//!   error messages included, are refused.
//! - Every response carries our transactionID, and its recipNonce is the senderNonce of the
//!   request it answers (RFC 4210 §5.1.1); its senderNonce becomes the recipNonce of our next
//!   request in the transaction.
//! - A new transaction gets 16 random octets of transactionID, each request 16 random octets of
//!   senderNonce (RFC 9483 §3.1).
//! - An issued certificate is returned only after it was confirmed: a certConf answered by
//!   pkiConf, unless implicit confirmation was both requested and granted. A certificate whose
//!   public key is not the CSR's is refused, and the refusal is sent to the CA in the certConf.
//! - A "waiting" answer never blocks the caller: [`CmpClient::request_p10`] and
//!   [`CmpClient::poll`] return [`Polled::Wait`] with the CA's checkAfter and a [`Transaction`]
//!   that can be saved (serde) and polled later, even by another process.

mod asn1;
mod config;
mod error;
pub mod message;
mod protect;
mod transport;

use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use sceau_wire::der;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

pub use asn1::ParseError;
pub use config::{CmpConfig, Credentials, DEFAULT_PBM_ITERATIONS};
pub use error::{CmpError, FAIL_INFO_NAMES, PkiStatus, ProtectionError, StatusInfo};
use message::{Body, HeaderFields};
use protect::{PbmRequest, SigningKey, Verifier};

/// The shortest wait between two polls of the convenience loop, whatever checkAfter says.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// One CMP transaction (RFC 4210 §5.1.1 transactionID) between two of its requests: what a
/// queue saves to poll a waiting enrollment later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transaction {
    id: Vec<u8>,
    /// The last response's senderNonce: our next request's recipNonce.
    recip_nonce: Option<Vec<u8>>,
    /// certReqId the CA gave in its waiting answer (-1 for p10cr, RFC 9810 §5.3.4).
    cert_req_id: i64,
    /// The CSR's SubjectPublicKeyInfo, which the issued certificate must carry.
    spki_der: Vec<u8>,
    implicit_confirm_requested: bool,
}

impl Transaction {
    fn new(spki_der: Vec<u8>, implicit_confirm_requested: bool) -> Transaction {
        Transaction {
            id: protect::random::<16>().to_vec(),
            recip_nonce: None,
            cert_req_id: -1,
            spki_der,
            implicit_confirm_requested,
        }
    }

    /// The transactionID, in hex (for logs).
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The SubjectPublicKeyInfo of the CSR this transaction enrolls.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
}

/// What an enrollment step came to.
#[derive(Debug)]
pub enum Polled {
    Ready(Enrolled),
    /// The CA is still working on it: poll again after this long (pollRep checkAfter).
    Wait(Duration),
}

/// A certificate the upstream issued and we confirmed.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub cert_der: Vec<u8>,
    /// The issuing chain found in extraCerts and caPubs, nearest first, without a self-signed
    /// root.
    pub chain_der: Vec<Vec<u8>>,
    /// caPubs as sent (CA certificates the CA suggests we trust, RFC 4210 §5.3.4).
    pub ca_pubs_der: Vec<Vec<u8>>,
    /// accepted or grantedWithMods, with the CA's statusString.
    pub status: PkiStatus,
    pub status_texts: Vec<String>,
    /// No certConf was sent: the CA granted implicit confirmation.
    pub implicitly_confirmed: bool,
}

/// A verified response, owned.
struct Reply {
    body: Body,
    body_number: u8,
    implicit_confirm: bool,
    extra_certs: Vec<Vec<u8>>,
}

enum Step {
    Issued(Box<Enrolled>),
    Wait(Duration),
    PollNow,
}

/// A client of one upstream CMP server.
pub struct CmpClient {
    config: CmpConfig,
    transport: transport::Transport,
    signer: Option<SigningKey>,
    sender: Vec<u8>,
    recipient: Vec<u8>,
    sender_kid: Option<Vec<u8>>,
}

impl CmpClient {
    /// Checks the configuration (URL, key matching its certificate, upstream certificates) and
    /// prepares the HTTP client; nothing is sent yet.
    pub async fn new(config: CmpConfig) -> Result<CmpClient, CmpError> {
        let transport = transport::Transport::new(
            &config.url,
            config.timeout,
            config.connect_timeout,
            config.max_response_bytes,
            config.tls_roots_pem.as_deref(),
        )?;
        for (i, c) in config.upstream_certs.iter().enumerate() {
            X509Certificate::from_der(c)
                .map_err(|e| CmpError::Config(format!("upstream certificate {i}: {e}")))?;
        }
        let (signer, sender, sender_kid) = match &config.credentials {
            Credentials::Mac {
                reference,
                secret,
                iterations,
            } => {
                if secret.is_empty() {
                    return Err(CmpError::Config("the MAC secret is empty".into()));
                }
                if !(100..=protect::MAX_ITERATIONS as u32).contains(iterations) {
                    return Err(CmpError::Config(format!(
                        "PBM iterations {iterations} outside 100..={}",
                        protect::MAX_ITERATIONS
                    )));
                }
                // The secret is found by senderKID; the sender has no name (RFC 9483 §3.1).
                (None, message::null_dn(), Some(reference.clone()))
            }
            Credentials::Signature {
                key_pkcs8_der,
                cert_der,
                ..
            } => {
                let key = SigningKey::from_pkcs8(key_pkcs8_der, cert_der)?;
                let (_, cert) = X509Certificate::from_der(cert_der)
                    .map_err(|e| CmpError::Config(format!("protection certificate: {e}")))?;
                // sender is our certificate's subject, senderKID its subjectKeyIdentifier
                // (RFC 9483 §3.1).
                let kid = cert
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                        _ => None,
                    });
                (
                    Some(key),
                    message::directory_name(cert.subject().as_raw()),
                    kid,
                )
            }
        };
        let recipient = match &config.recipient {
            Some(name) => message::directory_name(name),
            None => message::null_dn(),
        };
        Ok(CmpClient {
            config,
            transport,
            signer,
            sender,
            recipient,
            sender_kid,
        })
    }

    /// Enrolls a PKCS#10 CSR, polling a waiting request until [`CmpConfig::poll_deadline`].
    pub async fn enroll_p10(&self, csr_der: &[u8]) -> Result<Enrolled, CmpError> {
        self.enroll_p10_by(csr_der, Instant::now() + self.config.poll_deadline)
            .await
    }

    /// Enrolls, polling as the CA asks until `deadline`; past it the error
    /// [`CmpError::StillWaiting`] hands back the transaction to poll later.
    pub async fn enroll_p10_by(
        &self,
        csr_der: &[u8],
        deadline: Instant,
    ) -> Result<Enrolled, CmpError> {
        let (tx, polled) = self.request_p10(csr_der).await?;
        self.wait_by(tx, polled, deadline).await
    }

    /// Continues a transaction an earlier [`CmpError::StillWaiting`] handed back (perhaps saved
    /// by another process): polls at once, then as the CA asks until `deadline`.
    pub async fn resume_by(
        &self,
        mut tx: Transaction,
        deadline: Instant,
    ) -> Result<Enrolled, CmpError> {
        let polled = self.poll(&mut tx).await?;
        self.wait_by(tx, polled, deadline).await
    }

    async fn wait_by(
        &self,
        mut tx: Transaction,
        mut polled: Polled,
        deadline: Instant,
    ) -> Result<Enrolled, CmpError> {
        loop {
            match polled {
                Polled::Ready(e) => return Ok(e),
                Polled::Wait(after) => {
                    let after = after.max(MIN_POLL_INTERVAL);
                    // checkAfter comes from the upstream: a huge one must not overflow.
                    if Instant::now()
                        .checked_add(after)
                        .is_none_or(|t| t > deadline)
                    {
                        return Err(CmpError::StillWaiting {
                            transaction: Box::new(tx),
                            check_after: after,
                        });
                    }
                    tokio::time::sleep(after).await;
                    polled = self.poll(&mut tx).await?;
                }
            }
        }
    }

    /// Sends a p10cr (RFC 4210 §5.3.1) and handles the answer: the certificate (confirmed), or
    /// [`Polled::Wait`] with the transaction to [`CmpClient::poll`] later.
    pub async fn request_p10(&self, csr_der: &[u8]) -> Result<(Transaction, Polled), CmpError> {
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
                .map_err(|e| {
                    CmpError::InvalidRequest(format!("the CSR is not DER PKCS#10: {e}"))
                })?;
        let spki = csr.certification_request_info.subject_pki.raw.to_vec();
        let implicit = self.config.implicit_confirm;
        let mut tx = Transaction::new(spki, implicit);
        let reply = self
            .exchange(&mut tx, &message::p10cr(csr_der), 2, implicit)
            .await?;
        let polled = self.settle(&mut tx, reply).await?;
        Ok((tx, polled))
    }

    /// Asks about a waiting enrollment (pollReq, RFC 4210 §5.3.22).
    pub async fn poll(&self, tx: &mut Transaction) -> Result<Polled, CmpError> {
        let reply = self
            .exchange(tx, &message::poll_req(tx.cert_req_id), 2, false)
            .await?;
        self.settle(tx, reply).await
    }

    /// Asks the CA to revoke the certificate `serial_be` (unsigned big-endian) of the issuer
    /// `issuer_name_der` (the DER Name) for CRLReason `reason` (RFC 5280 §5.3.1).
    pub async fn revoke(
        &self,
        serial_be: &[u8],
        issuer_name_der: &[u8],
        reason: u8,
    ) -> Result<(), CmpError> {
        if reason > 10 || reason == 7 {
            return Err(CmpError::InvalidRequest(format!(
                "CRLReason {reason} does not exist (RFC 5280 §5.3.1)"
            )));
        }
        if der::strip_zeros(serial_be).is_empty() {
            return Err(CmpError::InvalidRequest(
                "the serial number must be positive (RFC 5280 §4.1.2.2)".into(),
            ));
        }
        let mut tx = Transaction::new(Vec::new(), false);
        let reply = self
            .exchange(
                &mut tx,
                &message::rr(serial_be, issuer_name_der, reason),
                2,
                false,
            )
            .await?;
        match reply.body {
            Body::RevRep(list) => {
                let [status] = list.as_slice() else {
                    return Err(ParseError {
                        what: format!("rp: {} statuses for one RevDetails", list.len()),
                    }
                    .into());
                };
                match status.status {
                    PkiStatus::Accepted
                    | PkiStatus::GrantedWithMods
                    | PkiStatus::RevocationWarning
                    | PkiStatus::RevocationNotification => Ok(()),
                    PkiStatus::Rejection => Err(CmpError::Rejected(status.clone())),
                    _ => Err(CmpError::UnexpectedStatus(status.clone())),
                }
            }
            _ => Err(unexpected("rp", reply.body_number)),
        }
    }

    /// The answer to a p10cr or pollReq: the certificate (then confirmed), a wait, or — for a
    /// waiting cp — one pollReq right away to learn checkAfter.
    async fn settle(&self, tx: &mut Transaction, reply: Reply) -> Result<Polled, CmpError> {
        let mut reply = reply;
        for _ in 0..2 {
            match self.classify(tx, &reply)? {
                Step::Issued(e) => return self.confirm(tx, *e, reply.implicit_confirm).await,
                Step::Wait(d) => return Ok(Polled::Wait(d)),
                Step::PollNow => {
                    reply = self
                        .exchange(tx, &message::poll_req(tx.cert_req_id), 2, false)
                        .await?;
                }
            }
        }
        // Waiting again right after a poll: come back soon.
        Ok(Polled::Wait(Duration::from_secs(1)))
    }

    fn classify(&self, tx: &mut Transaction, reply: &Reply) -> Result<Step, CmpError> {
        match &reply.body {
            Body::CertRep { ca_pubs, responses } => {
                let [r] = responses.as_slice() else {
                    return Err(ParseError {
                        what: format!(
                            "CertRepMessage: {} responses to one request",
                            responses.len()
                        ),
                    }
                    .into());
                };
                match r.status.status {
                    PkiStatus::Waiting => {
                        tx.cert_req_id = r.cert_req_id;
                        Ok(Step::PollNow)
                    }
                    PkiStatus::Accepted | PkiStatus::GrantedWithMods => {
                        if r.encrypted {
                            return Err(CmpError::CertificateRefused(
                                "the CA sent an encryptedCert, which was not asked for".into(),
                            ));
                        }
                        let cert = r.cert.clone().ok_or_else(|| ParseError {
                            what: "CertResponse: accepted without a certificate".into(),
                        })?;
                        tx.cert_req_id = r.cert_req_id;
                        let pool: Vec<&Vec<u8>> =
                            reply.extra_certs.iter().chain(ca_pubs.iter()).collect();
                        Ok(Step::Issued(Box::new(Enrolled {
                            chain_der: chain_of(&cert, &pool),
                            cert_der: cert,
                            ca_pubs_der: ca_pubs.clone(),
                            status: r.status.status,
                            status_texts: r.status.texts.clone(),
                            implicitly_confirmed: false,
                        })))
                    }
                    PkiStatus::Rejection => Err(CmpError::Rejected(r.status.clone())),
                    _ => Err(CmpError::UnexpectedStatus(r.status.clone())),
                }
            }
            Body::PollRep(entries) => {
                let (_, after, _) = entries
                    .iter()
                    .find(|(id, _, _)| *id == tx.cert_req_id)
                    .or(entries.first())
                    .expect("poll_rep refuses an empty list");
                Ok(Step::Wait(Duration::from_secs(*after as u64)))
            }
            _ => Err(unexpected("cp or pollRep", reply.body_number)),
        }
    }

    /// certConf (RFC 4210 §5.3.18) unless implicit confirmation was requested and granted; a
    /// certificate for another key is refused in the certConf too.
    async fn confirm(
        &self,
        tx: &mut Transaction,
        mut enrolled: Enrolled,
        granted_implicit: bool,
    ) -> Result<Polled, CmpError> {
        let (_, cert) = X509Certificate::from_der(&enrolled.cert_der)
            .map_err(|e| CmpError::CertificateRefused(format!("not an X.509 certificate: {e}")))?;
        let refusal = (cert.public_key().raw != tx.spki_der.as_slice())
            .then_some("the certificate does not certify the CSR's public key");
        if refusal.is_none() && tx.implicit_confirm_requested && granted_implicit {
            enrolled.implicitly_confirmed = true;
            return Ok(Polled::Ready(enrolled));
        }
        // certHash with the digest of the certificate's own signature algorithm; with none
        // (EdDSA) SHA-256 named in hashAlg, which needs pvno 3 (RFC 9810 §5.3.18).
        let (alg, hash_alg, pvno) = match protect::cert_hash_alg(&enrolled.cert_der) {
            Some(a) => (a, None, 2),
            None => (
                &digest::SHA256,
                Some(der::seq(&[&der::oid(protect::oids::SHA256)])),
                3,
            ),
        };
        let hash = digest::digest(alg, &enrolled.cert_der);
        let body = message::cert_conf(hash.as_ref(), tx.cert_req_id, refusal, hash_alg.as_deref());
        let reply = self.exchange(tx, &body, pvno, false).await;
        if let Some(why) = refusal {
            return Err(CmpError::CertificateRefused(why.into()));
        }
        let reply = reply?;
        match reply.body {
            Body::PkiConf => Ok(Polled::Ready(enrolled)),
            _ => Err(unexpected("pkiConf", reply.body_number)),
        }
    }

    /// One request/response of the transaction, the response's protection and header checked.
    async fn exchange(
        &self,
        tx: &mut Transaction,
        body: &[u8],
        pvno: i64,
        implicit_confirm: bool,
    ) -> Result<Reply, CmpError> {
        let nonce = protect::random::<16>();
        let pbm = match &self.config.credentials {
            Credentials::Mac { iterations, .. } => Some(PbmRequest::new(*iterations)),
            Credentials::Signature { .. } => None,
        };
        let alg = match (&pbm, &self.signer) {
            (Some(p), _) => p.alg_id(),
            (None, Some(s)) => s.alg_id(),
            (None, None) => unreachable!("new() sets a signer for signature credentials"),
        };
        let header = message::header(&HeaderFields {
            pvno,
            sender: &self.sender,
            recipient: &self.recipient,
            protection_alg: &alg,
            sender_kid: self.sender_kid.as_deref(),
            transaction_id: &tx.id,
            sender_nonce: &nonce,
            recip_nonce: tx.recip_nonce.as_deref(),
            implicit_confirm,
        });
        let protected = message::protected_part(&header, body);
        let (protection, extra) = match (&self.config.credentials, &pbm, &self.signer) {
            (Credentials::Mac { secret, .. }, Some(p), _) => (p.mac(secret, &protected), vec![]),
            (
                Credentials::Signature {
                    cert_der,
                    chain_der,
                    ..
                },
                _,
                Some(s),
            ) => {
                // The protection certificate goes first (RFC 9483 §3.3).
                let extra = std::iter::once(cert_der)
                    .chain(chain_der)
                    .cloned()
                    .collect();
                (s.sign(&protected)?, extra)
            }
            _ => unreachable!("credentials and signer agree"),
        };
        let request = message::message(&header, body, &protection, &extra);
        let bytes = self.transport.post(request).await?;
        let m = message::parse(&bytes)?;

        let (Some(alg), Some(protection)) = (m.protection_alg, m.protection) else {
            return Err(ProtectionError::Missing.into());
        };
        let secret = match &self.config.credentials {
            Credentials::Mac { secret, .. } => Some(secret.as_slice()),
            Credentials::Signature { .. } => None,
        };
        Verifier {
            secret,
            upstream_certs: &self.config.upstream_certs,
        }
        .verify(&alg, &m.protected_part, protection)?;

        if !(2..=3).contains(&m.pvno) {
            return Err(CmpError::Header(format!("unsupported pvno {}", m.pvno)));
        }
        if m.transaction_id != Some(tx.id.as_slice()) {
            return Err(CmpError::Header("transactionID is not ours".into()));
        }
        if m.recip_nonce != Some(nonce.as_slice()) {
            return Err(CmpError::Header(
                "recipNonce is not the senderNonce of our request".into(),
            ));
        }
        let sender_nonce = m
            .sender_nonce
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CmpError::Header("senderNonce missing".into()))?;
        tx.recip_nonce = Some(sender_nonce.to_vec());
        if let Body::Error {
            status,
            code,
            details,
        } = m.body
        {
            return Err(CmpError::ErrorMessage {
                status,
                code,
                details,
            });
        }
        Ok(Reply {
            body: m.body,
            body_number: m.body_number,
            implicit_confirm: m.implicit_confirm,
            extra_certs: m.extra_certs,
        })
    }
}

/// Reads a response and checks its MAC with `secret`, outside any transaction: what the
/// `cmp_response` fuzz target drives, and a diagnostic for a captured upstream answer. Returns
/// the body's choice name.
pub fn inspect_response(bytes: &[u8], secret: &[u8]) -> Result<&'static str, CmpError> {
    let m = message::parse(bytes)?;
    let (Some(alg), Some(protection)) = (m.protection_alg, m.protection) else {
        return Err(ProtectionError::Missing.into());
    };
    Verifier {
        secret: Some(secret),
        upstream_certs: &[],
    }
    .verify(&alg, &m.protected_part, protection)?;
    Ok(message::body::name(m.body_number))
}

fn unexpected(expected: &'static str, got: u8) -> CmpError {
    CmpError::UnexpectedBody {
        expected,
        got: message::body::name(got),
    }
}

/// The issuers of `leaf` found in `pool`, nearest first, by name (RFC 5280 §6.1: issuer of one
/// is subject of the next), stopping at a self-issued certificate, which is left out.
fn chain_of(leaf: &[u8], pool: &[&Vec<u8>]) -> Vec<Vec<u8>> {
    let parsed: Vec<(&Vec<u8>, X509Certificate<'_>)> = pool
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| (*d, c)))
        .collect();
    let Ok((_, mut current)) = X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let mut chain: Vec<Vec<u8>> = Vec::new();
    for _ in 0..8 {
        let issuer = current.issuer().as_raw();
        if issuer == current.subject().as_raw() {
            break;
        }
        let Some((der, next)) = parsed.iter().find(|(_, c)| c.subject().as_raw() == issuer) else {
            break;
        };
        if next.subject().as_raw() == next.issuer().as_raw() || chain.contains(der) {
            break;
        }
        chain.push((*der).clone());
        current = next.clone();
    }
    chain
}
