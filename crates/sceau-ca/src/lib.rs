//! The signing side of the Sceau ACME server: the [`Signer`] seam, the CA the signing process
//! holds ([`Ca`]) with keys in files or on a PKCS#11 token ([`KeyHandle`]), the CA modes and
//! their ceremonies ([`ceremony`]), the root's authority CRL ([`arl`]), CSR checks ([`csr`])
//! and certificate inspection ([`inspect`]).
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

pub mod arl;
mod ca;
mod ca_key;
pub mod ceremony;
pub mod csr;
pub mod der;
mod error;
mod fsutil;
pub mod inspect;
mod keys;
pub mod manifest;
mod names;
pub mod pkcs11;
mod profile;
pub mod remote;

use std::future::Future;
use std::pin::Pin;

pub use ca::{Ca, LoadedIssuer, OpenOptions, fingerprint_sha256};
pub use ca_key::{CaKey, FileKey, KeyHandle, KeyRef};
pub use error::CaError;
pub use profile::{MAX_LEAF_VALIDITY, SERVER_TLS_RENEW_BEFORE, SERVER_TLS_VALIDITY, TEST_MARK};
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
    Rsa4096,
}

impl CaKeyKind {
    pub const ALL: [CaKeyKind; 4] = [
        CaKeyKind::P256,
        CaKeyKind::P384,
        CaKeyKind::Rsa3072,
        CaKeyKind::Rsa4096,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CaKeyKind::P256 => "p256",
            CaKeyKind::P384 => "p384",
            CaKeyKind::Rsa3072 => "rsa3072",
            CaKeyKind::Rsa4096 => "rsa4096",
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
                CaError::Refused(format!(
                    "unknown CA key kind {s:?} (expected p256, p384, rsa3072 or rsa4096)"
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
    /// The serial the issuance queue reserved (DER INTEGER content octets, positive); `None`
    /// draws a random one.
    pub serial: Option<Vec<u8>>,
    /// The CRL shard of the certificate: with a public URL configured, the certificate
    /// carries that shard's CRL distribution point ([`crl_url`]).
    pub crl_shard: Option<u32>,
    /// The CSR as the client sent it (DER), for an upstream CA that signs it itself (RA mode);
    /// a local CA uses only the checked fields above.
    pub csr_der: Option<Vec<u8>>,
    /// Whose issuance this is, for the signing process's own policy check (R35).
    pub gate: Option<GateInfo>,
    /// The upstream transaction this request continues: the ticket of an earlier attempt's
    /// [`CaError::Pending`] (RA mode). Opaque to everything but the signer that made it, which
    /// checks it belongs to this request's key before it uses it.
    pub resume: Option<String>,
}

/// What the signing process checks for itself before it signs (agency guide R35): the ACME
/// account (its state, its external account, the names and profile that allows).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateInfo {
    pub account_id: String,
    /// The profile the order asked for; `None`: the default.
    pub profile: Option<String>,
}

/// What the front end asks an upstream CA to revoke (RA mode; RFC 8555 §7.6 forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// The certificate (DER), whose serial and issuer name the upstream needs.
    pub cert_der: Vec<u8>,
    /// RFC 5280 §5.3.1 reason code (already checked as an end-entity reason).
    pub reason: u8,
}

/// The URL of a CRL shard of an issuer under `public_url` (RFC 5280 §4.2.1.13 in the leaf,
/// §5.2.5 in the CRL): one function for both, so that they are equal.
pub fn crl_url(public_url: &str, issuer_id: &str, shard: u32) -> String {
    format!(
        "{}/crl/{issuer_id}/{shard}.crl",
        public_url.trim_end_matches('/')
    )
}

/// The OCSP responder URL under `public_url` (RFC 5280 §4.2.2.1 id-ad-ocsp).
pub fn ocsp_url(public_url: &str) -> String {
    format!("{}/ocsp", public_url.trim_end_matches('/'))
}

/// A freshly signed leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Leaf certificate DER.
    pub der: Vec<u8>,
    /// Leaf PEM followed by the issuing intermediate and any certificate above it but the root
    /// (RFC 8555 §7.4.2).
    pub chain_pem: String,
    /// The same leaf followed by each alternate chain (a cross-signed issuer, RFC 8555 §7.4.2
    /// `Link: rel="alternate"`).
    pub alternate_chains: Vec<String>,
    /// Lowercase hex of the serial number's DER content octets.
    pub serial_hex: String,
    /// The validity as written in the certificate (whole seconds).
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// RFC 9773 §4.1 certificate identifier.
    pub ari_id: String,
    /// Which issuer signed it (hex of its subjectKeyIdentifier).
    pub issuer_id: String,
}

/// The boxed future every [`Signer`] operation returns.
pub type SignFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CaError>> + Send + 'a>>;
/// The future of [`Signer::issue`].
pub type IssueFuture<'a> = SignFuture<'a, Issued>;

/// A certificate on a CRL (RFC 5280 §5.1.2.6, §5.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// DER INTEGER content octets of the serial.
    pub serial: Vec<u8>,
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 §5.3.1 reason code; `None` (unspecified) is left out of the entry.
    pub reason: Option<u8>,
}

/// A CRL to sign (RFC 5280 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlRequest {
    /// The issuer whose certificates it lists.
    pub issuer_id: String,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    /// The cRLNumber (RFC 5280 §5.2.3), big-endian octets, increasing per scope.
    pub number: Vec<u8>,
    /// The shard: the CRL then carries a critical issuingDistributionPoint
    /// (onlyContainsUserCerts, RFC 5280 §5.2.5) whose URL is, by construction, the CRL
    /// distribution point of the certificates of that shard (see [`crl_url`]).
    pub shard: Option<u32>,
    pub revoked: Vec<RevokedEntry>,
}

/// An issuer as the front end knows it: enough to build chains, CRL and OCSP identities.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssuerInfo {
    pub id: String,
    pub active: bool,
    pub cert_der: Vec<u8>,
    pub chain_pem: String,
    /// Other chains for the same issuing key (a cross-signed issuer): each the PEM
    /// certificates that follow a leaf, offered with `Link: rel="alternate"` (RFC 8555 §7.4.2).
    #[serde(default)]
    pub alternate_chains: Vec<String>,
    pub not_after: i64,
}

/// The signing seam: every signature the CA makes goes through it, whatever holds the key (a
/// file, a PKCS#11 token) and wherever it runs (the signing process, reached over its pipes).
pub trait Signer: Send + Sync {
    /// Signs a leaf certificate with the active issuer.
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a>;
    /// Signs a CRL with the key of `req.issuer_id` (active or retired).
    fn sign_crl<'a>(&'a self, req: CrlRequest) -> SignFuture<'a, Vec<u8>>;
    /// The delegated OCSP responder certificate of an issuer (RFC 6960 §4.2.2.2:
    /// id-kp-OCSPSigning, id-pkix-ocsp-nocheck), made or renewed by the signer as needed;
    /// its key never leaves the signer.
    fn ocsp_responder<'a>(&'a self, issuer_id: &'a str) -> SignFuture<'a, Vec<u8>>;
    /// Signs an OCSP `ResponseData` (DER) with the issuer's responder key; returns the
    /// signature (RFC 6960 §4.2.1) made with the algorithm of the responder certificate.
    fn sign_ocsp<'a>(&'a self, issuer_id: &'a str, tbs_der: Vec<u8>) -> SignFuture<'a, Vec<u8>>;
    /// The issuers: the active one and the retired ones still in use. Empty for an upstream
    /// CA (RA mode): it publishes its own CRLs and OCSP.
    fn issuers(&self) -> Vec<IssuerInfo>;
    /// Whether certificates are signed by an upstream CA (RA mode): it chooses the serial
    /// number, the validity within the request and the chain, and it must confirm a
    /// revocation before it is recorded ([`Signer::revoke`]).
    fn upstream(&self) -> bool {
        false
    }
    /// Has the upstream CA revoke a certificate; `Ok` only once it confirmed. A local CA has
    /// nothing to do: the revocation is recorded and published by this server's CRLs and OCSP.
    fn revoke<'a>(&'a self, req: RevokeRequest) -> SignFuture<'a, ()> {
        let _ = req;
        Box::pin(async { Ok(()) })
    }
    /// Whether the MAC key of external account `kid` made `mac` over `signing_input` (RFC 8555
    /// §7.3.4): `None` if that account cannot bind now. Only a signer holding the MAC keys (a
    /// split deployment's, so that the front end holds none) answers; others refuse.
    fn check_eab_mac<'a>(
        &'a self,
        kid: &'a str,
        signing_input: Vec<u8>,
        mac: Vec<u8>,
    ) -> SignFuture<'a, Option<bool>> {
        let _ = (kid, signing_input, mac);
        Box::pin(async { Err(CaError::Refused("this signer holds no MAC keys".into())) })
    }
    /// Whether signing is possible now (readiness); a signer in another process may be
    /// restarting.
    fn available(&self) -> bool {
        true
    }
    /// The active issuer's chain (what follows a leaf), PEM.
    fn issuer_chain_pem(&self) -> String;
    fn root_pem(&self) -> String;
}

/// Reads a file that holds a secret (a password, a MAC key, a private key): refused, in one
/// line naming the file, when group or others may read or write it (make it 0600), or when it
/// holds nothing but line ends. Its contents without trailing line ends.
pub fn read_private_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:04o}); make it 0600 (chmod 600)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(bytes)
}

/// Writes a public file (a CRL to publish, a certificate) atomically, mode 0644.
pub fn publish_file(path: &std::path::Path, data: &[u8]) -> Result<(), CaError> {
    fsutil::write_atomic(path, data, fsutil::CERT_MODE)
}

/// Lowercase hex without separators.
pub(crate) use sceau_wire::hex::encode as hex_lower;
