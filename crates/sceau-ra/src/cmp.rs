//! The CMP upstream: enrollment with p10cr and revocation with rr through [`sceau_cmp`].
//!
//! Invariants:
//! - A refusal by the CA (rejection, an error message, a certificate we refuse) is final for
//!   the request and quotes the CA's own statusString and failInfo; an unreachable, slow or
//!   busy (systemUnavail) CA is retried by the issuance queue with a new request.
//! - A CA that answered "waiting" has the request: past the attempt's deadline its
//!   transaction goes back to the queue as a ticket ([`CaError::Pending`]) and is continued
//!   with pollReq, never doubled by a second p10cr. A ticket is used only for the key it
//!   enrolls.

use std::time::{Duration, Instant};

use sceau_ca::CaError;
use sceau_cmp::{CmpClient, CmpConfig, CmpError, Credentials, DEFAULT_PBM_ITERATIONS, Transaction};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{CmpUpstream, ConfigError, read_certs, read_secret_file};

pub struct CmpSigner {
    client: CmpClient,
}

/// Tickets of this upstream: `cmp:` and the transaction as base64url JSON (no secret in it:
/// transactionID, the last nonce, certReqId, the CSR's key).
const TICKET_PREFIX: &str = "cmp:";

fn transaction_ticket(tx: &Transaction) -> String {
    let json = serde_json::to_vec(tx).expect("a transaction serializes");
    format!("{TICKET_PREFIX}{}", sceau_wire::b64::encode(&json))
}

fn ticket_transaction(ticket: &str) -> Option<Transaction> {
    let json = sceau_wire::b64::decode(ticket.strip_prefix(TICKET_PREFIX)?).ok()?;
    serde_json::from_slice(&json).ok()
}

fn upstream_error(e: CmpError) -> CaError {
    if e.is_transient() {
        CaError::Unavailable(format!("CMP upstream: {e}"))
    } else {
        CaError::Upstream(format!("CMP upstream: {e}"))
    }
}

impl CmpSigner {
    pub async fn new(c: &CmpUpstream) -> Result<CmpSigner, ConfigError> {
        let credentials = match (
            &c.mac_reference,
            &c.mac_secret_file,
            &c.key_file,
            &c.cert_file,
        ) {
            (Some(reference), Some(secret), _, _) => Credentials::Mac {
                reference: reference.as_bytes().to_vec(),
                secret: read_secret_file(secret)?,
                iterations: c.mac_iterations.unwrap_or(DEFAULT_PBM_ITERATIONS),
            },
            (_, _, Some(key), Some(cert)) => {
                let key_pem = read_secret_file(key)?;
                let key_pem = String::from_utf8_lossy(&key_pem);
                let key =
                    sceau_wire::key::pem_decode(&key_pem, "PRIVATE KEY").ok_or_else(|| {
                        ConfigError(format!(
                            "cmp.key_file {}: no PKCS#8 PEM private key",
                            key.display()
                        ))
                    })?;
                let mut certs = read_certs(cert, "cmp.cert_file")?;
                let cert_der = certs.remove(0);
                Credentials::Signature {
                    key_pkcs8_der: key,
                    cert_der,
                    chain_der: certs,
                }
            }
            _ => return Err(ConfigError("cmp credentials are incomplete".into())),
        };
        let mut config = CmpConfig::new(c.url.clone(), credentials);
        config.implicit_confirm = c.implicit_confirm;
        if let Some(t) = c.timeout_secs {
            config.timeout = Duration::from_secs(t);
        }
        if let Some(p) = &c.response_signers {
            config.upstream_certs = read_certs(p, "cmp.response_signers")?;
        }
        if let Some(p) = &c.tls_roots {
            config.tls_roots_pem = Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError(format!("cmp.tls_roots: cannot read {}: {e}", p.display()))
            })?);
        }
        let client = CmpClient::new(config)
            .await
            .map_err(|e| ConfigError(e.to_string()))?;
        Ok(CmpSigner { client })
    }

    /// Enrolls the CSR, or continues the transaction of `resume`, polling a waiting CA until
    /// `deadline`; the certificate, then the chain the CA sent (extraCerts, caPubs). A CA still
    /// waiting at the deadline gives [`CaError::Pending`] with the transaction as its ticket.
    pub async fn issue(
        &self,
        csr_der: &[u8],
        spki_der: &[u8],
        resume: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Vec<u8>>, CaError> {
        let saved = resume.and_then(|t| match ticket_transaction(t) {
            Some(tx) if tx.spki_der() == spki_der => Some(tx),
            // Not a CMP transaction of this request (the upstream changed kind, a row edited
            // by hand): it is not this request's, so a new request doubles nothing.
            _ => {
                tracing::warn!("a saved upstream ticket is not a CMP transaction for this key; sending a new request");
                None
            }
        });
        let enrolled = match saved {
            Some(tx) => {
                tracing::info!(transaction = %tx.id_hex(), "continuing the CMP transaction the CA is still working on");
                self.client.resume_by(tx, deadline).await
            }
            None => self.client.enroll_p10_by(csr_der, deadline).await,
        };
        let enrolled = match enrolled {
            Ok(e) => e,
            Err(CmpError::StillWaiting {
                transaction,
                check_after,
            }) => {
                return Err(CaError::Pending {
                    detail: format!(
                        "CMP transaction {} waiting, checkAfter {} s",
                        transaction.id_hex(),
                        check_after.as_secs()
                    ),
                    ticket: transaction_ticket(&transaction),
                    after: check_after,
                });
            }
            Err(e) => return Err(upstream_error(e)),
        };
        let mut certs = vec![enrolled.cert_der];
        certs.extend(enrolled.chain_der);
        certs.extend(enrolled.ca_pubs_der);
        Ok(certs)
    }

    pub async fn revoke(&self, cert_der: &[u8], reason: u8) -> Result<(), CaError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        self.client
            .revoke(cert.raw_serial(), cert.issuer().as_raw(), reason)
            .await
            .map_err(upstream_error)
    }
}
