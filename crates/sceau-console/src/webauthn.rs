//! Passkeys (W3C Web Authentication Level 2) as the console's second factor: registration
//! (§7.1) and authentication (§7.2) ceremonies for ES256 credentials, without attestation
//! (the console asks for `none`: it trusts the person who registers, logged in already with a
//! fresh second factor, not the authenticator's maker).
//!
//! Invariants:
//! - The relying party id is the console's host name (an IP address cannot be one, §5.1.3
//!   note; such a console offers TOTP only), and the origin must be `https://` that host with
//!   the request's port.
//! - A challenge is 32 random bytes kept with the session and cleared as it is read: each
//!   answers one ceremony.
//! - An assertion counts only when the user was present (flag UP), its signature verifies
//!   over `authenticatorData || SHA-256(clientDataJSON)` with the stored key, and its
//!   signature counter, when the authenticator keeps one, has grown (§6.1.1: else a copy).
//! - The CBOR reader takes definite lengths only, 16 levels deep at most, within its input.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use serde::Deserialize;

/// A CBOR data item (RFC 8949), the kinds WebAuthn uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Other,
}

impl Cbor {
    fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Reads one CBOR item from the front of `b`; the item and the rest.
pub fn cbor(b: &[u8]) -> Result<(Cbor, &[u8]), String> {
    item(b, 0)
}

fn item(b: &[u8], depth: usize) -> Result<(Cbor, &[u8]), String> {
    if depth > 16 {
        return Err("CBOR nested too deep".into());
    }
    let (&first, rest) = b.split_first().ok_or("CBOR ends early")?;
    let major = first >> 5;
    let info = first & 0x1f;
    let (arg, mut rest) = match info {
        0..=23 => (u64::from(info), rest),
        24..=27 => {
            let n = 1usize << (info - 24);
            if rest.len() < n {
                return Err("CBOR ends early".into());
            }
            let v = rest[..n].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
            (v, &rest[n..])
        }
        _ => return Err("indefinite or reserved CBOR length".into()),
    };
    let take = |rest: &[u8], n: u64| -> Result<(Vec<u8>, usize), String> {
        let n = usize::try_from(n).map_err(|_| "CBOR length too large")?;
        if rest.len() < n {
            return Err("CBOR ends early".into());
        }
        Ok((rest[..n].to_vec(), n))
    };
    let value = match major {
        0 => Cbor::Int(i128::from(arg)),
        1 => Cbor::Int(-1 - i128::from(arg)),
        2 => {
            let (v, n) = take(rest, arg)?;
            rest = &rest[n..];
            Cbor::Bytes(v)
        }
        3 => {
            let (v, n) = take(rest, arg)?;
            rest = &rest[n..];
            Cbor::Text(String::from_utf8(v).map_err(|_| "CBOR text is not UTF-8")?)
        }
        4 => {
            let mut items = Vec::new();
            for _ in 0..arg.min(1024) {
                let (v, r) = item(rest, depth + 1)?;
                items.push(v);
                rest = r;
            }
            Cbor::Array(items)
        }
        5 => {
            let mut entries = Vec::new();
            for _ in 0..arg.min(1024) {
                let (k, r) = item(rest, depth + 1)?;
                let (v, r) = item(r, depth + 1)?;
                entries.push((k, v));
                rest = r;
            }
            Cbor::Map(entries)
        }
        _ => Cbor::Other,
    };
    Ok((value, rest))
}

/// What `clientDataJSON` says (§5.8.1).
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

fn check_client_data(json: &[u8], kind: &str, challenge: &str, origin: &str) -> Result<(), String> {
    let c: ClientData = serde_json::from_slice(json).map_err(|e| format!("clientDataJSON: {e}"))?;
    if c.kind != kind {
        return Err(format!("clientDataJSON type is {:?}, not {kind}", c.kind));
    }
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        c.challenge.as_bytes(),
        challenge.as_bytes(),
    )
    .is_err()
    {
        return Err("the challenge is not this session's".into());
    }
    if c.origin != origin || c.cross_origin {
        return Err(format!("the origin {:?} is not {origin}", c.origin));
    }
    Ok(())
}

/// The parts of authenticator data (§6.1) checked here.
struct AuthData<'a> {
    flags: u8,
    sign_count: u32,
    /// Attested credential data, when present: credential id and COSE key bytes.
    attested: Option<(Vec<u8>, &'a [u8])>,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

fn auth_data<'a>(b: &'a [u8], rp_id: &str) -> Result<AuthData<'a>, String> {
    if b.len() < 37 {
        return Err("authenticator data too short".into());
    }
    if b[..32] != *digest(&SHA256, rp_id.as_bytes()).as_ref() {
        return Err(format!("the credential is not for {rp_id}"));
    }
    let flags = b[32];
    if flags & UP == 0 {
        return Err("the user was not present".into());
    }
    let sign_count = u32::from_be_bytes([b[33], b[34], b[35], b[36]]);
    let attested = if flags & AT != 0 {
        let rest = &b[37..];
        if rest.len() < 18 {
            return Err("attested credential data too short".into());
        }
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if len > 1023 || rest.len() < 18 + len {
            return Err("bad credential id length".into());
        }
        Some((rest[18..18 + len].to_vec(), &rest[18 + len..]))
    } else {
        None
    };
    Ok(AuthData {
        flags,
        sign_count,
        attested,
    })
}

/// The uncompressed P-256 point of an ES256 COSE key (RFC 9053 §7.1.1: kty 2, alg -7, crv 1).
fn es256_key(cose: &Cbor) -> Result<Vec<u8>, String> {
    let int = |k: i128| cose.get(&Cbor::Int(k));
    if int(1) != Some(&Cbor::Int(2))
        || int(3) != Some(&Cbor::Int(-7))
        || int(-1) != Some(&Cbor::Int(1))
    {
        return Err("only ES256 (P-256) passkeys are accepted".into());
    }
    match (int(-2), int(-3)) {
        (Some(Cbor::Bytes(x)), Some(Cbor::Bytes(y))) if x.len() == 32 && y.len() == 32 => {
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            Ok(point)
        }
        _ => Err("malformed COSE key".into()),
    }
}

/// A registered credential: id, public key, counter, user verified.
pub struct Registered {
    pub credential_id: Vec<u8>,
    pub public_key: Vec<u8>,
    pub sign_count: u32,
    pub user_verified: bool,
}

/// §7.1: checks a registration and returns the credential.
pub fn register(
    client_data_json: &[u8],
    attestation_object: &[u8],
    challenge: &str,
    origin: &str,
    rp_id: &str,
) -> Result<Registered, String> {
    check_client_data(client_data_json, "webauthn.create", challenge, origin)?;
    let (att, _) = cbor(attestation_object)?;
    let Some(Cbor::Bytes(ad)) = att.get(&Cbor::Text("authData".into())) else {
        return Err("the attestation object has no authData".into());
    };
    let a = auth_data(ad, rp_id)?;
    let Some((id, key_bytes)) = a.attested else {
        return Err("the registration carries no credential".into());
    };
    let (cose, _) = cbor(key_bytes)?;
    let public_key = es256_key(&cose)?;
    Ok(Registered {
        credential_id: id,
        public_key,
        sign_count: a.sign_count,
        user_verified: a.flags & UV != 0,
    })
}

/// §7.2: checks an assertion against the stored key and counter; the new counter.
#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    public_key: &[u8],
    stored_count: u32,
    challenge: &str,
    origin: &str,
    rp_id: &str,
) -> Result<u32, String> {
    check_client_data(client_data_json, "webauthn.get", challenge, origin)?;
    let a = auth_data(authenticator_data, rp_id)?;
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(digest(&SHA256, client_data_json).as_ref());
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&signed, signature)
        .map_err(|_| "the passkey's signature does not verify".to_owned())?;
    if (a.sign_count != 0 || stored_count != 0) && a.sign_count <= stored_count {
        return Err("the passkey's counter did not grow: a copied authenticator?".into());
    }
    Ok(a.sign_count)
}

/// The relying party id for a console reached at `host` (the Host header), if it can be
/// one: a DNS name, not an IP address.
pub fn rp_id_of(host: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    };
    let ok = !name.is_empty()
        && name.parse::<std::net::IpAddr>().is_err()
        && !name.starts_with('[')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_reads_what_webauthn_sends() {
        // {1: 2, 3: -7, -1: 1, "k": h'0102', "a": [1, "x"]}
        let bytes = [
            0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x61, b'k', 0x42, 1, 2, 0x61, b'a', 0x82,
            0x01, 0x61, b'x',
        ];
        let (v, rest) = cbor(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(v.get(&Cbor::Int(3)), Some(&Cbor::Int(-7)));
        assert_eq!(
            v.get(&Cbor::Text("k".into())),
            Some(&Cbor::Bytes(vec![1, 2]))
        );
        assert!(cbor(&[0x5f]).is_err(), "indefinite length");
        assert!(cbor(&[0x42, 1]).is_err(), "ends early");
        let deep = [0x81u8; 40];
        assert!(cbor(&deep).is_err(), "too deep");
    }

    #[test]
    fn rp_ids_are_host_names_only() {
        assert_eq!(rp_id_of("localhost:14443").as_deref(), Some("localhost"));
        assert_eq!(
            rp_id_of("Console.Example.org").as_deref(),
            Some("console.example.org")
        );
        assert_eq!(rp_id_of("127.0.0.1:14443"), None);
        assert_eq!(rp_id_of("[::1]:14443"), None);
        assert_eq!(rp_id_of("evil/host"), None);
    }
}
