//! OCSP response encoding (RFC 6960 §4.2.1, RFC 5019 §2.2): the unsigned status-only
//! answers and the BasicOCSPResponse a delegated responder signs.
//!
//! Invariants:
//! - Every response has one SingleResponse, whose CertID is the one asked about (same hash
//!   algorithm, hashes and serial), a thisUpdate and a nextUpdate (RFC 5019 §2.2.4 requires
//!   nextUpdate), responderID byKey (RFC 5019 §2.2.3 prefers it: it stays valid when the
//!   responder certificate is renewed under a new name) and the responder certificate in
//!   `certs`, so that a client chains it to the issuer (RFC 6960 §4.2.2.2).
//! - No response extension: no nonce (see [`super::request::OcspRequest::nonce`]).
//! - The signed part ([`response_data`]) is built here and only signed elsewhere (the signing
//!   process), so the key never meets a request.

use sceau_ca::der::{tlv, uint};
use time::OffsetDateTime;

use super::request::HashAlg;

/// OCSPResponseStatus (RFC 6960 §4.2.1) of the answers that carry no responseBytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    Unauthorized = 6,
}

impl Unsigned {
    /// `OCSPResponse { responseStatus }` alone (RFC 6960 §2.3: these are not signed).
    pub fn der(self) -> &'static [u8] {
        match self {
            Unsigned::MalformedRequest => &[0x30, 0x03, 0x0a, 0x01, 0x01],
            Unsigned::InternalError => &[0x30, 0x03, 0x0a, 0x01, 0x02],
            Unsigned::TryLater => &[0x30, 0x03, 0x0a, 0x01, 0x03],
            Unsigned::Unauthorized => &[0x30, 0x03, 0x0a, 0x01, 0x06],
        }
    }
}

/// CertStatus (RFC 6960 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    /// RevokedInfo; `reason` is an RFC 5280 §5.3.1 CRLReason, left out when unspecified (0),
    /// as on the CRL.
    Revoked {
        at: i64,
        reason: Option<u8>,
    },
    Unknown,
}

/// One SingleResponse's content: what the signature covers besides producedAt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Single<'a> {
    pub hash: HashAlg,
    pub issuer_name_hash: &'a [u8],
    pub issuer_key_hash: &'a [u8],
    /// The serialNumber INTEGER's content octets.
    pub serial: &'a [u8],
    pub status: CertStatus,
    pub this_update: i64,
    pub next_update: i64,
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2: UTC, whole seconds; RFC 6960 uses
/// the same form).
fn generalized_time(unix: i64) -> Vec<u8> {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x18, text.as_bytes())
}

/// CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }.
fn cert_id(s: &Single<'_>) -> Vec<u8> {
    // hashAlgorithm with NULL parameters, as OpenSSL writes it; clients compare the OID only.
    let alg = tlv(0x30, &[tlv(0x06, s.hash.oid()), vec![0x05, 0x00]].concat());
    let serial = tlv(0x02, s.serial);
    tlv(
        0x30,
        &[
            alg,
            tlv(0x04, s.issuer_name_hash),
            tlv(0x04, s.issuer_key_hash),
            serial,
        ]
        .concat(),
    )
}

/// ResponseData ::= SEQUENCE { version [0] DEFAULT v1 (left out), responderID byKey [2],
/// producedAt, responses SEQUENCE OF SingleResponse } — the DER the responder signs.
pub fn response_data(responder_key_hash: &[u8], produced_at: i64, s: &Single<'_>) -> Vec<u8> {
    let status = match s.status {
        // good [0] IMPLICIT NULL
        CertStatus::Good => vec![0x80, 0x00],
        // revoked [1] IMPLICIT RevokedInfo ::= SEQUENCE { revocationTime,
        //   revocationReason [0] EXPLICIT CRLReason OPTIONAL }
        CertStatus::Revoked { at, reason } => {
            let mut info = generalized_time(at);
            if let Some(code) = reason.filter(|c| *c != 0) {
                info.extend(tlv(0xa0, &tlv(0x0a, &[code])));
            }
            tlv(0xa1, &info)
        }
        // unknown [2] IMPLICIT UnknownInfo (NULL)
        CertStatus::Unknown => vec![0x82, 0x00],
    };
    let single = tlv(
        0x30,
        &[
            cert_id(s),
            status,
            generalized_time(s.this_update),
            // nextUpdate [0] EXPLICIT GeneralizedTime
            tlv(0xa0, &generalized_time(s.next_update)),
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[
            // byKey [2] EXPLICIT KeyHash (SHA-1 of the responder's subjectPublicKey bits)
            tlv(0xa2, &tlv(0x04, responder_key_hash)),
            generalized_time(produced_at),
            tlv(0x30, &single),
        ]
        .concat(),
    )
}

/// The whole OCSPResponse: successful, responseBytes id-pkix-ocsp-basic with the
/// BasicOCSPResponse { tbsResponseData, signatureAlgorithm ecdsa-with-SHA256, signature,
/// certs [0] EXPLICIT SEQUENCE OF Certificate }.
pub fn ocsp_response(tbs: &[u8], signature: &[u8], responder_cert_der: &[u8]) -> Vec<u8> {
    // ecdsa-with-SHA256 1.2.840.10045.4.3.2, parameters absent (RFC 5758 §3.2): the
    // responder key is always P-256 (sceau_ca::Ca::ocsp_responder).
    let sig_alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature);
    let basic = tlv(
        0x30,
        &[
            tbs.to_vec(),
            sig_alg,
            tlv(0x03, &bits),
            tlv(0xa0, &tlv(0x30, responder_cert_der)),
        ]
        .concat(),
    );
    // id-pkix-ocsp-basic 1.3.6.1.5.5.7.48.1.1
    let bytes = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01],
            ),
            tlv(0x04, &basic),
        ]
        .concat(),
    );
    tlv(0x30, &[tlv(0x0a, &[0x00]), tlv(0xa0, &bytes)].concat())
}

/// The serial's INTEGER content octets from its stored lowercase hex (already minimal).
pub fn serial_octets(hex: &str) -> Option<Vec<u8>> {
    // A stored serial is positive: re-encode through `uint` in case it lost a leading zero.
    let bytes = sceau_wire::hex::decode(hex)?;
    let int = uint(&bytes);
    Some(int[2..].to_vec()).filter(|_| int.len() < 130)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_info_carries_time_and_reason_and_unspecified_is_left_out() {
        let s = |status| Single {
            hash: HashAlg::Sha1,
            issuer_name_hash: &[1; 20],
            issuer_key_hash: &[2; 20],
            serial: &[0x05],
            status,
            this_update: 0,
            next_update: 86400,
        };
        let with = response_data(
            &[3; 20],
            0,
            &s(CertStatus::Revoked {
                at: 60,
                reason: Some(1),
            }),
        );
        let without = response_data(
            &[3; 20],
            0,
            &s(CertStatus::Revoked {
                at: 60,
                reason: Some(0),
            }),
        );
        assert!(with.windows(5).any(|w| w == [0xa0, 0x03, 0x0a, 0x01, 0x01]));
        assert_eq!(with.len(), without.len() + 5);
        assert!(with.windows(15).any(|w| w == b"19700101000100Z"));
        assert_eq!(serial_octets("00ff"), Some(vec![0x00, 0xff]));
        assert_eq!(serial_octets("7f"), Some(vec![0x7f]));
        assert_eq!(serial_octets("7"), None);
    }
}
