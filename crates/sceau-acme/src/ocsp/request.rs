//! OCSP request parsing (RFC 6960 §4.1.1, profiled by RFC 5019 §2.1), for POST bodies and the
//! GET form (RFC 6960 App. A.1: `<url>/<url-encoding of base64 of the DER request>`).
//!
//! Invariants:
//! - Only what a responder needs leaves this module: the one CertID (hash algorithm, issuer
//!   name and key hashes, serial) and whether a nonce was asked for. Anything else is checked
//!   for shape and ignored (requestorName, the optional signature: RFC 5019 §2.1.2 lets a
//!   responder ignore it, and we answer only public status).
//! - Exactly one Request per OCSPRequest (RFC 5019 §2.1.1: "OCSPRequests conforming to this
//!   profile MUST include only one Request"); more is [`RequestError::TooManyRequests`].
//! - The serial is the INTEGER's content octets as stored (lowercase hex of them is the key of
//!   `certificates.serial`): a non-minimal or negative INTEGER is malformed, never rewritten,
//!   so the CertID we echo is the one asked about.
//! - The parser never panics and allocates at most a copy of its input (it is fuzzed:
//!   `fuzz/fuzz_targets/ocsp_request.rs`).
//!
//! This file depends only on x509-parser's DER reader and the base64 crate, so that the fuzz
//! target can include it without the rest of sceau-acme.

use base64::Engine;
use x509_parser::der_parser::asn1_rs::{Any, Class, FromDer, Tag};

/// Largest request body or decoded GET request accepted. An unsigned request for one CertID
/// with a nonce is about 120 octets; 4 KiB leaves room for a signed request carrying its
/// signer's certificate (which we ignore) and refuses anything that could only be abuse.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// The CertID hash algorithms we answer for (RFC 5019 §2.1.1 mandates SHA-1; RFC 6960 §4.3
/// lets clients use SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    pub const ALL: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    /// The name stored in `ocsp_responses.hash_alg`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
        }
    }

    /// The OBJECT IDENTIFIER's content octets: id-sha1 1.3.14.3.2.26, id-sha256
    /// 2.16.840.1.101.3.4.2.1.
    pub fn oid(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
            HashAlg::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
        }
    }

    /// Octets of a digest.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
        }
    }

    fn from_oid(content: &[u8]) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|h| h.oid() == content)
    }
}

/// The one CertID of a request (RFC 6960 §4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub hash: HashAlg,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// The serialNumber INTEGER's content octets (minimal, positive).
    pub serial: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    pub cert_id: CertId,
    /// The request carried a nonce extension (id-pkix-ocsp-nonce, RFC 6960 §4.4.1). It is not
    /// echoed: pre-signed responses cannot carry it (RFC 5019 §2.2.1 lets a responder leave
    /// it out; RFC 8954 §2.1 keeps that), so only the log notes it.
    pub nonce: bool,
}

/// Why a request cannot be answered; each maps to one OCSPResponseStatus (RFC 6960 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed OCSP request: {0}")]
    Malformed(&'static str),
    #[error("an OCSP request holds {0} requests; this responder answers one (RFC 5019 §2.1.1)")]
    TooManyRequests(usize),
    #[error("OCSP request over {MAX_REQUEST_BYTES} octets")]
    TooLarge,
    /// A CertID hash other than SHA-1 and SHA-256: we cannot tell which issuer it names, so
    /// we are not authoritative for it (answered `unauthorized`).
    #[error("CertID hash algorithm not supported")]
    UnsupportedHash,
}

/// id-pkix-ocsp-nonce 1.3.6.1.5.5.7.48.1.2, content octets.
const NONCE_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

fn malformed(why: &'static str) -> RequestError {
    RequestError::Malformed(why)
}

/// One DER TLV from the front of `input`, with the rest.
fn take(input: &[u8]) -> Result<(Any<'_>, &[u8]), RequestError> {
    let (rest, any) = Any::from_der(input).map_err(|_| malformed("not DER"))?;
    Ok((any, rest))
}

/// The content of a universal TLV of tag `tag`, which must be all of `input`'s front element.
fn expect<'a>(
    input: &'a [u8],
    tag: Tag,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), RequestError> {
    let (any, rest) = take(input)?;
    if any.class() != Class::Universal || any.tag() != tag {
        return Err(malformed(what));
    }
    let constructed = any.header.is_constructed();
    if constructed != matches!(tag, Tag::Sequence | Tag::Set) {
        return Err(malformed(what));
    }
    Ok((any.data, rest))
}

/// Every element of a SEQUENCE's content.
fn elements(mut content: &[u8]) -> Result<Vec<Any<'_>>, RequestError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (any, rest) = take(content)?;
        out.push(any);
        content = rest;
    }
    Ok(out)
}

fn is_context(any: &Any<'_>, n: u32) -> bool {
    any.class() == Class::ContextSpecific && any.tag() == Tag(n) && any.header.is_constructed()
}

/// Parses a DER OCSPRequest (RFC 6960 §4.1.1).
pub fn parse(der: &[u8]) -> Result<OcspRequest, RequestError> {
    if der.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge);
    }
    // OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
    let (ocsp_request, trailing) = expect(der, Tag::Sequence, "OCSPRequest is not a SEQUENCE")?;
    if !trailing.is_empty() {
        return Err(malformed("data after the OCSPRequest"));
    }
    let (tbs, after_tbs) = expect(ocsp_request, Tag::Sequence, "TBSRequest is not a SEQUENCE")?;
    match elements(after_tbs)?.as_slice() {
        [] => {}
        // Signed requests are accepted and their signature ignored (RFC 5019 §2.1.2).
        [sig] if is_context(sig, 0) => {}
        _ => return Err(malformed("unexpected field after TBSRequest")),
    }
    // TBSRequest ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1,
    //   requestorName [1] EXPLICIT GeneralName OPTIONAL, requestList SEQUENCE OF Request,
    //   requestExtensions [2] EXPLICIT Extensions OPTIONAL }
    let fields = elements(tbs)?;
    let mut i = 0;
    if fields.get(i).is_some_and(|f| is_context(f, 0)) {
        // DER leaves a DEFAULT value out, but v1 written out is common: accept v1 only.
        let (version, rest) = expect(fields[i].data, Tag::Integer, "version is not an INTEGER")?;
        if version != [0] || !rest.is_empty() {
            return Err(malformed("OCSP request version is not v1"));
        }
        i += 1;
    }
    if fields.get(i).is_some_and(|f| is_context(f, 1)) {
        i += 1;
    }
    let list = fields.get(i).ok_or(malformed("no requestList"))?;
    if list.class() != Class::Universal || list.tag() != Tag::Sequence {
        return Err(malformed("requestList is not a SEQUENCE"));
    }
    i += 1;
    let mut nonce = false;
    if let Some(ext) = fields.get(i).filter(|f| is_context(f, 2)) {
        nonce = has_nonce(ext.data)?;
        i += 1;
    }
    if i != fields.len() {
        return Err(malformed("unexpected field in TBSRequest"));
    }
    let requests = elements(list.data)?;
    let request = match requests.as_slice() {
        [] => return Err(malformed("empty requestList")),
        [one] => one,
        many => return Err(RequestError::TooManyRequests(many.len())),
    };
    // Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
    if request.class() != Class::Universal || request.tag() != Tag::Sequence {
        return Err(malformed("Request is not a SEQUENCE"));
    }
    let (cert_id, after) = expect(request.data, Tag::Sequence, "CertID is not a SEQUENCE")?;
    match elements(after)?.as_slice() {
        [] => {}
        [ext] if is_context(ext, 0) => nonce |= has_nonce(ext.data)?,
        _ => return Err(malformed("unexpected field in Request")),
    }
    Ok(OcspRequest {
        cert_id: parse_cert_id(cert_id)?,
        nonce,
    })
}

/// CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING,
/// issuerKeyHash OCTET STRING, serialNumber CertificateSerialNumber }
fn parse_cert_id(content: &[u8]) -> Result<CertId, RequestError> {
    let (alg, rest) = expect(content, Tag::Sequence, "hashAlgorithm is not a SEQUENCE")?;
    let (oid, params) = expect(alg, Tag::Oid, "hashAlgorithm has no OID")?;
    // Parameters absent or NULL (RFC 5754 §2: both are seen for SHA-2; OpenSSL writes NULL).
    if !(params.is_empty() || params == [0x05, 0x00]) {
        return Err(malformed("hashAlgorithm parameters"));
    }
    let (name_hash, rest) = expect(
        rest,
        Tag::OctetString,
        "issuerNameHash is not an OCTET STRING",
    )?;
    let (key_hash, rest) = expect(
        rest,
        Tag::OctetString,
        "issuerKeyHash is not an OCTET STRING",
    )?;
    let (serial, rest) = expect(rest, Tag::Integer, "serialNumber is not an INTEGER")?;
    if !rest.is_empty() {
        return Err(malformed("unexpected field in CertID"));
    }
    // X.690 §8.3.2: minimal; RFC 5280 §4.1.2.2: positive, at most 20 octets (21 with the
    // leading zero of a high first bit).
    let minimal = match serial {
        [] => false,
        [0x00, next, ..] => next & 0x80 != 0,
        [0xff, next, ..] => next & 0x80 == 0,
        _ => true,
    };
    if !minimal || serial[0] & 0x80 != 0 || serial.len() > 21 {
        return Err(malformed("serialNumber is not a minimal positive INTEGER"));
    }
    let hash = HashAlg::from_oid(oid).ok_or(RequestError::UnsupportedHash)?;
    if name_hash.len() != hash.digest_len() || key_hash.len() != hash.digest_len() {
        return Err(malformed("CertID hash length does not match its algorithm"));
    }
    Ok(CertId {
        hash,
        issuer_name_hash: name_hash.to_vec(),
        issuer_key_hash: key_hash.to_vec(),
        serial: serial.to_vec(),
    })
}

/// Whether `Extensions` (the content of the [n] EXPLICIT wrapper) holds a nonce.
/// Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
fn has_nonce(wrapped: &[u8]) -> Result<bool, RequestError> {
    let (list, rest) = expect(wrapped, Tag::Sequence, "Extensions is not a SEQUENCE")?;
    if !rest.is_empty() {
        return Err(malformed("data after Extensions"));
    }
    let mut nonce = false;
    for ext in elements(list)? {
        if ext.class() != Class::Universal || ext.tag() != Tag::Sequence {
            return Err(malformed("Extension is not a SEQUENCE"));
        }
        let (oid, _) = expect(ext.data, Tag::Oid, "extnID is not an OID")?;
        nonce |= oid == NONCE_OID;
    }
    Ok(nonce)
}

/// The DER request of a GET URL's last part: percent-decoding, then base64 (RFC 6960 App.
/// A.1; the standard alphabet, padding optional since some clients drop it). Clients differ
/// in whether they escape `/`, `+` and `=`: both forms are accepted.
pub fn decode_get(path_part: &str) -> Result<Vec<u8>, RequestError> {
    // base64 of MAX_REQUEST_BYTES, each character percent-encoded at worst.
    if path_part.len() > MAX_REQUEST_BYTES * 4 / 3 * 3 + 12 {
        return Err(RequestError::TooLarge);
    }
    let mut text = Vec::with_capacity(path_part.len());
    let mut bytes = path_part.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(hex_digit);
            let lo = bytes.next().and_then(hex_digit);
            match (hi, lo) {
                (Some(h), Some(l)) => text.push(h << 4 | l),
                _ => return Err(malformed("bad percent-encoding in the GET request")),
            }
        } else {
            text.push(b);
        }
    }
    let unpadded = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(&text);
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(unpadded)
        .map_err(|_| malformed("the GET request is not base64"))?;
    if der.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge);
    }
    Ok(der)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl ocsp -issuer … -serial 0x0102 -reqout` (SHA-1 CertID, with a nonce).
    fn sample(serial: &[u8], extra_request: bool) -> Vec<u8> {
        let tlv = sceau_ca::der::tlv;
        let alg = tlv(0x30, &[tlv(0x06, HashAlg::Sha1.oid()), vec![5, 0]].concat());
        let cert_id = tlv(
            0x30,
            &[
                alg,
                tlv(0x04, &[1; 20]),
                tlv(0x04, &[2; 20]),
                tlv(0x02, serial),
            ]
            .concat(),
        );
        let req = tlv(0x30, &cert_id);
        let list = if extra_request {
            tlv(0x30, &[req.clone(), req].concat())
        } else {
            tlv(0x30, &req)
        };
        let nonce = tlv(
            0x30,
            &[tlv(0x06, NONCE_OID), tlv(0x04, &tlv(0x04, &[9; 16]))].concat(),
        );
        let exts = tlv(0xa2, &tlv(0x30, &nonce));
        tlv(0x30, &tlv(0x30, &[list, exts].concat()))
    }

    #[test]
    fn one_sha1_cert_id_with_a_nonce() {
        let r = parse(&sample(&[0x01, 0x02], false)).unwrap();
        assert_eq!(r.cert_id.hash, HashAlg::Sha1);
        assert_eq!(r.cert_id.serial, vec![1, 2]);
        assert_eq!(r.cert_id.issuer_name_hash, vec![1; 20]);
        assert!(r.nonce);
    }

    #[test]
    fn refuses_two_requests_bad_serials_and_trailing_data() {
        assert_eq!(
            parse(&sample(&[1], true)),
            Err(RequestError::TooManyRequests(2))
        );
        for bad in [&[0x00, 0x01][..], &[0x80], &[]] {
            assert!(
                matches!(parse(&sample(bad, false)), Err(RequestError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut der = sample(&[1], false);
        der.push(0);
        assert!(matches!(parse(&der), Err(RequestError::Malformed(_))));
        assert!(matches!(parse(b"garbage"), Err(RequestError::Malformed(_))));
        assert_eq!(parse(&vec![0x30; 5000]), Err(RequestError::TooLarge));
    }

    #[test]
    fn get_form_accepts_escaped_and_raw_base64() {
        let der = sample(&[0x7f, 0xfe], false);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let escaped = b64
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D");
        assert_eq!(decode_get(&b64).unwrap(), der);
        assert_eq!(decode_get(&escaped).unwrap(), der);
        assert_eq!(decode_get(b64.trim_end_matches('=')).unwrap(), der);
        assert!(decode_get("not*base64").is_err());
        assert!(decode_get("%zz").is_err());
    }
}
