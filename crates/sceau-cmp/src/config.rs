//! What a [`crate::CmpClient`] needs to talk to one upstream CA.
//!
//! Invariant: `Debug` never prints the MAC secret or the private key.

use std::fmt;
use std::time::Duration;

/// PBM iterationCount of requests unless configured otherwise.
pub const DEFAULT_PBM_ITERATIONS: u32 = 10_000;

/// How our requests are protected (RFC 4210 §5.1.3; RFC 9483 §3.2).
#[derive(Clone)]
pub enum Credentials {
    /// Password-based MAC with a secret shared with the CA and the reference (senderKID) it
    /// knows the secret by.
    Mac {
        reference: Vec<u8>,
        secret: Vec<u8>,
        /// PBM iterationCount; RFC 9481 §6.1.1 asks for at least 100.
        iterations: u32,
    },
    /// A signature with our key; `cert_der` goes first in extraCerts, then `chain_der`.
    Signature {
        key_pkcs8_der: Vec<u8>,
        cert_der: Vec<u8>,
        chain_der: Vec<Vec<u8>>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Mac {
                reference,
                iterations,
                ..
            } => f
                .debug_struct("Mac")
                .field("reference", &String::from_utf8_lossy(reference))
                .field("iterations", iterations)
                .finish_non_exhaustive(),
            Credentials::Signature { chain_der, .. } => f
                .debug_struct("Signature")
                .field("chain_len", &chain_der.len())
                .finish_non_exhaustive(),
        }
    }
}

/// One upstream CMP server and how to talk to it.
#[derive(Debug, Clone)]
pub struct CmpConfig {
    /// `http(s)://host[:port]/path` of the CMP endpoint (RFC 6712 §3.6).
    pub url: String,
    pub credentials: Credentials,
    /// Certificates whose signatures are accepted on responses (the CA's CMP signer). A
    /// MAC-protected response is accepted with the [`Credentials::Mac`] secret instead.
    pub upstream_certs: Vec<Vec<u8>>,
    /// The CA's name (DER Name) for the header's recipient; the NULL-DN when `None`.
    pub recipient: Option<Vec<u8>>,
    /// Ask for implicit confirmation (RFC 4210 §5.1.1.1); a certConf is still sent unless the
    /// CA grants it.
    pub implicit_confirm: bool,
    /// Per HTTP exchange, connection to last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    /// How long [`crate::CmpClient::enroll_p10`] keeps polling a waiting request.
    pub poll_deadline: Duration,
    /// PEM trust bundle for an https URL; the platform's roots when `None`.
    pub tls_roots_pem: Option<String>,
}

impl CmpConfig {
    /// A configuration with the defaults: no implicit confirmation, 30 s per exchange, 10 s to
    /// connect, 1 MiB responses at most, 5 minutes of polling.
    pub fn new(url: impl Into<String>, credentials: Credentials) -> CmpConfig {
        CmpConfig {
            url: url.into(),
            credentials,
            upstream_certs: Vec::new(),
            recipient: None,
            implicit_confirm: false,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            poll_deadline: Duration::from_secs(300),
            tls_roots_pem: None,
        }
    }

    /// MAC credentials with the default iteration count.
    pub fn mac(reference: impl Into<Vec<u8>>, secret: impl Into<Vec<u8>>) -> Credentials {
        Credentials::Mac {
            reference: reference.into(),
            secret: secret.into(),
            iterations: DEFAULT_PBM_ITERATIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let c = CmpConfig::new("http://ca/", CmpConfig::mac("ref", "hunter2-secret"));
        let s = format!("{c:?}");
        assert!(s.contains("ref"));
        assert!(!s.contains("hunter2"));
    }
}
