//! PKIMessage (RFC 4210 §5.1, module PKIXCMP of Appendix F: EXPLICIT TAGS) and the bodies this
//! client sends and reads; CRMF pieces (RFC 4211, IMPLICIT TAGS) for the revocation request.
//!
//! ```text
//! PKIMessage ::= SEQUENCE { header PKIHeader, body PKIBody,
//!     protection [0] PKIProtection OPTIONAL, extraCerts [1] SEQUENCE OF CMPCertificate OPTIONAL }
//! PKIHeader ::= SEQUENCE { pvno INTEGER, sender GeneralName, recipient GeneralName,
//!     messageTime [0] GeneralizedTime OPTIONAL, protectionAlg [1] AlgorithmIdentifier OPTIONAL,
//!     senderKID [2] KeyIdentifier OPTIONAL, recipKID [3] KeyIdentifier OPTIONAL,
//!     transactionID [4] OCTET STRING OPTIONAL, senderNonce [5] OCTET STRING OPTIONAL,
//!     recipNonce [6] OCTET STRING OPTIONAL, freeText [7] PKIFreeText OPTIONAL,
//!     generalInfo [8] SEQUENCE OF InfoTypeAndValue OPTIONAL }
//! ```
//!
//! Invariants:
//! - [`parse`] keeps the received header and body encodings as they came, so the protection is
//!   checked over exactly what was protected (ProtectedPart, §5.1.3).
//! - [`parse`] never panics and reads every field with its tag checked; unknown bodies are kept
//!   as [`Body::Other`] with their number so the caller can refuse them by name.

use sceau_wire::der;

use crate::asn1::{Der, ParseError, Tlv, bad, single, tag};
use crate::error::{PkiStatus, StatusInfo};
use crate::protect::is;

/// PKIBody choice numbers (RFC 4210 §5.1.2).
pub mod body {
    pub const IP: u8 = 1;
    pub const CP: u8 = 3;
    pub const P10CR: u8 = 4;
    pub const RR: u8 = 11;
    pub const RP: u8 = 12;
    pub const PKICONF: u8 = 19;
    pub const ERROR: u8 = 23;
    pub const CERT_CONF: u8 = 24;
    pub const POLL_REQ: u8 = 25;
    pub const POLL_REP: u8 = 26;

    /// The ASN.1 name of a body choice, for error messages.
    pub fn name(n: u8) -> &'static str {
        const NAMES: [&str; 27] = [
            "ir", "ip", "cr", "cp", "p10cr", "popdecc", "popdecr", "kur", "kup", "krr", "krp",
            "rr", "rp", "ccr", "ccp", "ckuann", "cann", "rann", "crlann", "pkiconf", "nested",
            "genm", "genp", "error", "certConf", "pollReq", "pollRep",
        ];
        NAMES.get(usize::from(n)).copied().unwrap_or("unknown")
    }
}

/// id-it-implicitConfirm, RFC 4210 §5.1.1.1.
const IMPLICIT_CONFIRM: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 4, 13];

/// A GeneralName directoryName with an empty Name: the NULL-DN of RFC 4210 §5.1.1 for a party
/// that has no name to give.
pub fn null_dn() -> Vec<u8> {
    der::explicit(4, &der::seq(&[]))
}

/// A GeneralName directoryName `[4] Name` (a CHOICE, so explicitly tagged, RFC 5280 §4.2.1.6).
pub fn directory_name(name_der: &[u8]) -> Vec<u8> {
    der::explicit(4, name_der)
}

/// What goes into the header of one request.
pub struct HeaderFields<'a> {
    /// 2 (cmp2000) unless a field of RFC 9810 needs 3 (cmp2021).
    pub pvno: i64,
    pub sender: &'a [u8],
    pub recipient: &'a [u8],
    pub protection_alg: &'a [u8],
    pub sender_kid: Option<&'a [u8]>,
    pub transaction_id: &'a [u8],
    pub sender_nonce: &'a [u8],
    pub recip_nonce: Option<&'a [u8]>,
    pub implicit_confirm: bool,
}

pub fn header(h: &HeaderFields<'_>) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let mut parts = vec![
        der::int(h.pvno),
        h.sender.to_vec(),
        h.recipient.to_vec(),
        der::explicit(
            0,
            &der::generalized_time(
                now.year().clamp(0, 9999) as u16,
                now.month() as u8,
                now.day(),
                now.hour(),
                now.minute(),
                now.second(),
            ),
        ),
        der::explicit(1, h.protection_alg),
    ];
    if let Some(kid) = h.sender_kid {
        parts.push(der::explicit(2, &der::octets(kid)));
    }
    parts.push(der::explicit(4, &der::octets(h.transaction_id)));
    parts.push(der::explicit(5, &der::octets(h.sender_nonce)));
    if let Some(n) = h.recip_nonce {
        parts.push(der::explicit(6, &der::octets(n)));
    }
    if h.implicit_confirm {
        let itav = der::seq(&[&der::oid(IMPLICIT_CONFIRM), &der::null()]);
        parts.push(der::explicit(8, &der::seq(&[&itav])));
    }
    der::tlv(der::SEQUENCE, &parts.concat())
}

/// ProtectedPart ::= SEQUENCE { header, body } (RFC 4210 §5.1.3).
pub fn protected_part(header: &[u8], body: &[u8]) -> Vec<u8> {
    der::seq(&[header, body])
}

/// The whole PKIMessage from its parts.
pub fn message(header: &[u8], body: &[u8], protection: &[u8], extra_certs: &[Vec<u8>]) -> Vec<u8> {
    let mut parts = vec![
        header.to_vec(),
        body.to_vec(),
        der::explicit(0, &der::bits(protection)),
    ];
    if !extra_certs.is_empty() {
        parts.push(der::explicit(
            1,
            &der::tlv(der::SEQUENCE, &extra_certs.concat()),
        ));
    }
    der::tlv(der::SEQUENCE, &parts.concat())
}

/// `p10cr [4] CertificationRequest` (RFC 4210 §5.3.1 with a PKCS#10 request).
pub fn p10cr(csr_der: &[u8]) -> Vec<u8> {
    der::explicit(body::P10CR, csr_der)
}

/// `certConf [24] CertConfirmContent`: one CertStatus (RFC 4210 §5.3.18); `hash_alg` (an
/// AlgorithmIdentifier) only where the certificate's signature algorithm names no digest, which
/// needs pvno 3 (RFC 9810 §5.3.18). A rejection carries its PKIStatusInfo.
pub fn cert_conf(
    cert_hash: &[u8],
    cert_req_id: i64,
    rejection: Option<&str>,
    hash_alg: Option<&[u8]>,
) -> Vec<u8> {
    let mut status = vec![der::octets(cert_hash), der::int(cert_req_id)];
    if let Some(text) = rejection {
        // rejection with failInfo incorrectData (bit 7, the last bit of the first octet, so
        // no unused bits: X.690 §11.2.2 drops trailing zero bits of a named bit list).
        let fail_info = der::tlv(0x03, &[0x00, 0x01]);
        status.push(der::seq(&[
            &der::int(2),
            &der::seq(&[&der::utf8(text)]),
            &fail_info,
        ]));
    }
    if let Some(alg) = hash_alg {
        status.push(der::explicit(0, alg));
    }
    der::explicit(
        body::CERT_CONF,
        &der::seq(&[&der::tlv(der::SEQUENCE, &status.concat())]),
    )
}

/// `pollReq [25] PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER }` (§5.3.22).
pub fn poll_req(cert_req_id: i64) -> Vec<u8> {
    der::explicit(
        body::POLL_REQ,
        &der::seq(&[&der::seq(&[&der::int(cert_req_id)])]),
    )
}

/// `rr [11] RevReqContent` with one RevDetails (RFC 4210 §5.3.9): the CertTemplate names the
/// certificate by `[1] serialNumber` (IMPLICIT INTEGER) and `[3] issuer` (a Name, a CHOICE,
/// hence explicitly tagged) as RFC 9483 §4.2 asks, and crlEntryDetails carries the reasonCode
/// extension (RFC 5280 §5.3.1).
pub fn rr(serial_be: &[u8], issuer_name_der: &[u8], reason: u8) -> Vec<u8> {
    // The INTEGER's content octets under the implicit tag (X.690 §8.3: minimal, sign octet).
    let digits = der::strip_zeros(serial_be);
    let mut serial = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        serial.push(0);
    }
    serial.extend_from_slice(digits);
    let template = der::seq(&[
        &der::implicit_primitive(1, &serial),
        &der::explicit(3, issuer_name_der),
    ]);
    let reason_ext = der::seq(&[
        &der::oid(&[2, 5, 29, 21]),
        &der::octets(&der::enumerated(reason)),
    ]);
    let details = der::seq(&[&template, &der::seq(&[&reason_ext])]);
    der::explicit(body::RR, &der::seq(&[&details]))
}

/// A response as read: header fields, body, and what protection is checked over.
#[derive(Debug)]
pub struct Message<'a> {
    pub pvno: i64,
    pub sender: &'a [u8],
    pub protection_alg: Option<Tlv<'a>>,
    pub sender_kid: Option<&'a [u8]>,
    pub transaction_id: Option<&'a [u8]>,
    pub sender_nonce: Option<&'a [u8]>,
    pub recip_nonce: Option<&'a [u8]>,
    /// generalInfo holds id-it-implicitConfirm: the server granted implicit confirmation.
    pub implicit_confirm: bool,
    pub body: Body,
    pub body_number: u8,
    /// ProtectedPart over the received header and body octets.
    pub protected_part: Vec<u8>,
    pub protection: Option<&'a [u8]>,
    pub extra_certs: Vec<Vec<u8>>,
}

/// The bodies this client understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// ip or cp: CertRepMessage.
    CertRep {
        ca_pubs: Vec<Vec<u8>>,
        responses: Vec<CertResponse>,
    },
    /// pollRep entries: (certReqId, checkAfter seconds, reason).
    PollRep(Vec<(i64, i64, Vec<String>)>),
    PkiConf,
    /// rp: one PKIStatusInfo per RevDetails of the request.
    RevRep(Vec<StatusInfo>),
    Error {
        status: StatusInfo,
        code: Option<i64>,
        details: Vec<String>,
    },
    Other,
}

/// CertResponse (§5.3.4): certOrEncCert's plain certificate only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertResponse {
    pub cert_req_id: i64,
    pub status: StatusInfo,
    pub cert: Option<Vec<u8>>,
    /// An encryptedCert was sent instead (not supported: we never ask for one).
    pub encrypted: bool,
}

/// Reads a PKIMessage. Protection is not checked here (see `protect`), only its shape.
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    let top = single(bytes, tag::SEQUENCE, "PKIMessage")?;
    let mut m = top.inner();
    let header = m.expect(tag::SEQUENCE, "PKIHeader")?;
    let body_tlv = m.next("PKIBody")?;
    let protection = match m.optional(tag::ctx(0), "protection")? {
        Some(t) => Some(
            t.explicit_inner(tag::BIT_STRING, "protection")?
                .whole_octet_bits("protection")?,
        ),
        None => None,
    };
    let mut extra_certs = Vec::new();
    if let Some(t) = m.optional(tag::ctx(1), "extraCerts")? {
        let mut certs = t.explicit_inner(tag::SEQUENCE, "extraCerts")?.inner();
        while !certs.is_empty() {
            extra_certs.push(certs.expect(tag::SEQUENCE, "extraCerts")?.raw.to_vec());
        }
    }
    m.finish("PKIMessage")?;

    let mut h = header.inner();
    let pvno = h.expect(tag::INTEGER, "pvno")?.int("pvno")?;
    let sender = h.next("sender")?.raw;
    h.next("recipient")?;
    let mut out = Message {
        pvno,
        sender,
        protection_alg: None,
        sender_kid: None,
        transaction_id: None,
        sender_nonce: None,
        recip_nonce: None,
        implicit_confirm: false,
        body: Body::Other,
        body_number: 0,
        protected_part: protected_part(header.raw, body_tlv.raw),
        protection,
        extra_certs,
    };
    let mut last = None;
    while !h.is_empty() {
        let t = h.next("PKIHeader field")?;
        let n = match t.tag {
            0xa0..=0xa8 => t.tag & 0x1f,
            other => return Err(bad(format!("PKIHeader: unexpected field 0x{other:02x}"))),
        };
        if last.is_some_and(|l| n <= l) {
            return Err(bad("PKIHeader: fields out of order or repeated"));
        }
        last = Some(n);
        match n {
            0 => {
                t.explicit_inner(tag::GENERALIZED_TIME, "messageTime")?;
            }
            1 => out.protection_alg = Some(t.explicit_inner(tag::SEQUENCE, "protectionAlg")?),
            2 => out.sender_kid = Some(t.explicit_inner(tag::OCTET_STRING, "senderKID")?.content),
            3 => {
                t.explicit_inner(tag::OCTET_STRING, "recipKID")?;
            }
            4 => {
                out.transaction_id = Some(
                    t.explicit_inner(tag::OCTET_STRING, "transactionID")?
                        .content,
                )
            }
            5 => {
                out.sender_nonce = Some(t.explicit_inner(tag::OCTET_STRING, "senderNonce")?.content)
            }
            6 => out.recip_nonce = Some(t.explicit_inner(tag::OCTET_STRING, "recipNonce")?.content),
            7 => {
                free_text(&t.explicit_inner(tag::SEQUENCE, "freeText")?)?;
            }
            _ => {
                let mut infos = t.explicit_inner(tag::SEQUENCE, "generalInfo")?.inner();
                while !infos.is_empty() {
                    let itav = infos.expect(tag::SEQUENCE, "InfoTypeAndValue")?;
                    let mut i = itav.inner();
                    let oid = i.expect(tag::OID, "infoType")?;
                    if is(oid.raw, IMPLICIT_CONFIRM) {
                        out.implicit_confirm = true;
                    }
                }
            }
        }
    }

    if body_tlv.tag & 0xe0 != 0xa0 {
        return Err(bad("PKIBody: not a context-specific constructed choice"));
    }
    let n = body_tlv.tag & 0x1f;
    out.body_number = n;
    out.body = match n {
        body::IP | body::CP => {
            cert_rep(&body_tlv.explicit_inner(tag::SEQUENCE, "CertRepMessage")?)?
        }
        body::POLL_REP => poll_rep(&body_tlv.explicit_inner(tag::SEQUENCE, "PollRepContent")?)?,
        body::PKICONF => {
            body_tlv.explicit_inner(tag::NULL, "PKIConfirmContent")?;
            Body::PkiConf
        }
        body::RP => rev_rep(&body_tlv.explicit_inner(tag::SEQUENCE, "RevRepContent")?)?,
        body::ERROR => error_msg(&body_tlv.explicit_inner(tag::SEQUENCE, "ErrorMsgContent")?)?,
        _ => Body::Other,
    };
    Ok(out)
}

/// PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String.
fn free_text(t: &Tlv<'_>) -> Result<Vec<String>, ParseError> {
    let mut d = t.inner();
    let mut out = Vec::new();
    while !d.is_empty() {
        out.push(d.next("PKIFreeText")?.utf8("PKIFreeText")?);
    }
    Ok(out)
}

/// PKIStatusInfo ::= SEQUENCE { status, statusString PKIFreeText OPTIONAL, failInfo BIT STRING
/// OPTIONAL } (§5.2.3).
fn status_info(t: &Tlv<'_>) -> Result<StatusInfo, ParseError> {
    if t.tag != tag::SEQUENCE {
        return Err(bad("PKIStatusInfo is not a SEQUENCE"));
    }
    let mut d = t.inner();
    let status = PkiStatus::from_int(d.expect(tag::INTEGER, "PKIStatus")?.int("PKIStatus")?);
    let texts = match d.optional(tag::SEQUENCE, "statusString")? {
        Some(s) => free_text(&s)?,
        None => Vec::new(),
    };
    let mut fail_bits = Vec::new();
    if let Some(f) = d.optional(tag::BIT_STRING, "failInfo")? {
        let (bits, unused) = f.bit_string("failInfo")?;
        let total = bits.len() * 8 - usize::from(unused);
        // Bit 0 is the most significant bit of the first octet (X.690 §8.6.2.1).
        for i in 0..total.min(256) {
            if bits[i / 8] & (0x80 >> (i % 8)) != 0 {
                fail_bits.push(i as u8);
            }
        }
    }
    d.finish("PKIStatusInfo")?;
    Ok(StatusInfo {
        status,
        texts,
        fail_bits,
    })
}

/// CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE OF CMPCertificate OPTIONAL,
/// response SEQUENCE OF CertResponse } (§5.3.4).
fn cert_rep(t: &Tlv<'_>) -> Result<Body, ParseError> {
    let mut d = t.inner();
    let mut ca_pubs = Vec::new();
    if let Some(c) = d.optional(tag::ctx(1), "caPubs")? {
        let mut certs = c.explicit_inner(tag::SEQUENCE, "caPubs")?.inner();
        while !certs.is_empty() {
            ca_pubs.push(certs.expect(tag::SEQUENCE, "caPubs")?.raw.to_vec());
        }
    }
    let mut list = d.expect(tag::SEQUENCE, "CertRepMessage.response")?.inner();
    d.finish("CertRepMessage")?;
    let mut responses = Vec::new();
    while !list.is_empty() {
        let r = list.expect(tag::SEQUENCE, "CertResponse")?;
        let mut r = r.inner();
        let cert_req_id = r.expect(tag::INTEGER, "certReqId")?.int("certReqId")?;
        let status = status_info(&r.next("CertResponse.status")?)?;
        let mut cert = None;
        let mut encrypted = false;
        if let Some(kp) = r.optional(tag::SEQUENCE, "CertifiedKeyPair")? {
            let mut kp = kp.inner();
            let choice = kp.next("CertOrEncCert")?;
            match choice.tag {
                // certificate [0] CMPCertificate (explicit: CMPCertificate is a CHOICE).
                0xa0 => {
                    let c = choice.explicit_inner(tag::SEQUENCE, "certificate")?;
                    cert = Some(c.raw.to_vec());
                }
                0xa1 => encrypted = true,
                _ => return Err(bad("CertOrEncCert: unknown choice")),
            }
            // privateKey [0] and publicationInfo [1] may follow; we asked for neither.
        }
        r.optional(tag::OCTET_STRING, "rspInfo")?;
        r.finish("CertResponse")?;
        responses.push(CertResponse {
            cert_req_id,
            status,
            cert,
            encrypted,
        });
    }
    Ok(Body::CertRep { ca_pubs, responses })
}

/// PollRepContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER, checkAfter INTEGER,
/// reason PKIFreeText OPTIONAL } (§5.3.22).
fn poll_rep(t: &Tlv<'_>) -> Result<Body, ParseError> {
    let mut d = t.inner();
    let mut out = Vec::new();
    while !d.is_empty() {
        let mut e = d.expect(tag::SEQUENCE, "PollRep")?.inner();
        let id = e.expect(tag::INTEGER, "certReqId")?.int("certReqId")?;
        let after = e.expect(tag::INTEGER, "checkAfter")?.int("checkAfter")?;
        if after < 0 {
            return Err(bad("checkAfter: negative"));
        }
        let reason = match e.optional(tag::SEQUENCE, "reason")? {
            Some(r) => free_text(&r)?,
            None => Vec::new(),
        };
        e.finish("PollRep")?;
        out.push((id, after, reason));
    }
    if out.is_empty() {
        return Err(bad("PollRepContent: empty"));
    }
    Ok(Body::PollRep(out))
}

/// RevRepContent ::= SEQUENCE { status SEQUENCE OF PKIStatusInfo, revCerts [0] OPTIONAL,
/// crls [1] OPTIONAL } (§5.3.10).
fn rev_rep(t: &Tlv<'_>) -> Result<Body, ParseError> {
    let mut d = t.inner();
    let mut list = d.expect(tag::SEQUENCE, "RevRepContent.status")?.inner();
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(status_info(&list.next("PKIStatusInfo")?)?);
    }
    d.optional(tag::ctx(0), "revCerts")?;
    d.optional(tag::ctx(1), "crls")?;
    d.finish("RevRepContent")?;
    Ok(Body::RevRep(out))
}

/// ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails
/// PKIFreeText OPTIONAL } (§5.3.21).
fn error_msg(t: &Tlv<'_>) -> Result<Body, ParseError> {
    let mut d: Der<'_> = t.inner();
    let status = status_info(&d.next("ErrorMsgContent.pKIStatusInfo")?)?;
    let code = match d.optional(tag::INTEGER, "errorCode")? {
        Some(c) => Some(c.int("errorCode")?),
        None => None,
    };
    let details = match d.optional(tag::SEQUENCE, "errorDetails")? {
        Some(s) => free_text(&s)?,
        None => Vec::new(),
    };
    d.finish("ErrorMsgContent")?;
    Ok(Body::Error {
        status,
        code,
        details,
    })
}
