//! The signing side of the Sceau ACME server: the [`Signer`] seam, a CA whose keys live in
//! files ([`FileCa`]), CSR checks ([`csr`]) and certificate inspection ([`inspect`]).
//!
//! Invariants:
//! - Every leaf certificate follows one profile (R38, RFC 5280 §4.2): SAN with every
//!   identifier, basicConstraints CA:FALSE critical, keyUsage critical, EKU serverAuth, AKI
//!   equal to the issuing intermediate's SKI, a 16-byte positive random serial.
//! - The signer re-checks what the ACME front end already checked (R27, R36): the public key
//!   type and size, the identifier syntax, no wildcard (R42) and the validity (R39), so that a
//!   fault in the front end cannot make it sign something outside the profile.
//! - The root key never signs a leaf; only the intermediate does (R30).
//! - CA private keys are written 0600, atomically, and never regenerated over partial state.

pub mod csr;
mod error;
mod file_ca;
mod fsutil;
pub mod inspect;
mod keys;
mod names;
mod profile;
pub mod remote;

use std::future::Future;
use std::pin::Pin;

pub use error::CaError;
pub use file_ca::FileCa;
pub use profile::{MAX_LEAF_VALIDITY, SERVER_TLS_RENEW_BEFORE, SERVER_TLS_VALIDITY};
use sceau_wire::Identifier;
use time::OffsetDateTime;

/// Key algorithm of the root and issuing CA keys.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CaKeyKind {
    #[default]
    P256,
    P384,
    Rsa3072,
}

impl CaKeyKind {
    pub const ALL: [CaKeyKind; 3] = [CaKeyKind::P256, CaKeyKind::P384, CaKeyKind::Rsa3072];

    pub fn name(self) -> &'static str {
        match self {
            CaKeyKind::P256 => "p256",
            CaKeyKind::P384 => "p384",
            CaKeyKind::Rsa3072 => "rsa3072",
        }
    }
}

impl std::fmt::Display for CaKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CaKeyKind {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.to_ascii_lowercase().replace(['-', '_'], "");
        Self::ALL
            .into_iter()
            .find(|k| k.name() == n)
            .ok_or_else(|| {
                CaError::InvalidRequest(format!(
                    "unknown CA key kind {s:?} (expected p256, p384 or rsa3072)"
                ))
            })
    }
}

/// Certificate profile (R38; draft-ietf-acme-profiles names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// extendedKeyUsage serverAuth only.
    #[default]
    Server,
    /// extendedKeyUsage serverAuth and clientAuth.
    ServerClient,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Server, Profile::ServerClient];

    /// The name advertised in the directory's `meta.profiles` and accepted in newOrder.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Server => "tls-server",
            Profile::ServerClient => "tls-server-client",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Profile::Server => "TLS server certificate (extendedKeyUsage serverAuth)",
            Profile::ServerClient => {
                "TLS server and client certificate (extendedKeyUsage serverAuth, clientAuth)"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Profile> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the registration authority asks the signer to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// The CSR's SubjectPublicKeyInfo (already checked by [`csr::parse_and_check`]).
    pub public_key_spki_der: Vec<u8>,
    /// `dns` and `ip` identifiers; every one goes in the SAN, in this order.
    pub identifiers: Vec<Identifier>,
    /// Sub-second parts are dropped: X.509 times have whole seconds (RFC 5280 §4.1.2.5).
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub profile: Profile,
}

/// A freshly signed leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Leaf certificate DER.
    pub der: Vec<u8>,
    /// Leaf PEM followed by the issuing intermediate PEM (RFC 8555 §7.4.2); no root.
    pub chain_pem: String,
    /// Lowercase hex of the serial number's DER content octets.
    pub serial_hex: String,
    /// The validity as written in the certificate (whole seconds).
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// RFC 9773 §4.1 certificate identifier.
    pub ari_id: String,
}

/// The boxed future returned by [`Signer::issue`].
pub type IssueFuture<'a> = Pin<Box<dyn Future<Output = Result<Issued, CaError>> + Send + 'a>>;

/// The signing seam: a file key now; PKCS#11 (SoftHSM2) and an upstream PKI later.
pub trait Signer: Send + Sync {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a>;
    /// The issuing intermediate's certificate as PEM (nothing else).
    fn issuer_chain_pem(&self) -> String;
    fn root_pem(&self) -> String;
}

/// Lowercase hex without separators.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
