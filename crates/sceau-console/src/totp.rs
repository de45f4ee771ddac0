//! Time-based one-time passwords (RFC 6238 on RFC 4226's HOTP), as authenticator apps
//! implement them: HMAC-SHA-1, 30-second steps, 6 digits, secrets in base32 (RFC 4648 §6)
//! inside an `otpauth://totp/` URI for the enrolment QR code.
//!
//! Invariants:
//! - A code is checked against the current step and one step either side (RFC 6238 §5.2: a
//!   validation window for clock drift and transmission delay), in constant time per step.
//! - This module says which step a code belongs to; refusing a step already used (replay) is
//!   the store's compare-and-swap (`Store::take_totp_step`), so it holds across instances.

use aws_lc_rs::hmac;

/// RFC 6238 §4: the time step X, in seconds.
pub const STEP_SECS: i64 = 30;
/// Digits of a code (RFC 4226 §5.3 allows 6 to 8; apps show 6).
pub const DIGITS: u32 = 6;
/// Length of a generated secret: 160 bits, RFC 4226 §4's recommended size for HMAC-SHA-1.
pub const SECRET_LEN: usize = 20;

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_LEN];
    aws_lc_rs::rand::fill(&mut s).expect("OS random source");
    s
}

/// The time step of Unix time `t` (RFC 6238 §4.2, T0 = 0).
pub fn step_at(t: i64) -> i64 {
    t.div_euclid(STEP_SECS)
}

/// HOTP (RFC 4226 §5.3) of `secret` at counter `step`, as the zero-padded decimal code.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &(step as u64).to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte picks four bytes.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    format!(
        "{:0width$}",
        bin % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The step within one step of `now` whose code is `code`, if any. `code` may carry spaces
/// (apps show "123 456").
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut found = None;
    // Every candidate is computed and compared, so the time taken says nothing about which
    // one matched.
    for step in [current - 1, current, current + 1] {
        let expected = code_at(secret, step);
        if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes())
            .is_ok()
        {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 §6 base32, without padding (what authenticator apps read).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The enrolment URI (the Key Uri Format of authenticator apps): issuer and account name
/// percent-encoded, the secret in base32.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows, reduced to 6 digits (the last six of the 8-digit
    /// values: HOTP truncation modulo 10^6 keeps them).
    #[test]
    fn rfc6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, code8) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(code_at(secret, step_at(t)), code8[2..], "t = {t}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let secret = new_secret();
        let now = 1_800_000_015;
        let code = code_at(&secret, step_at(now));
        assert_eq!(matching_step(&secret, &code, now), Some(step_at(now)));
        assert_eq!(matching_step(&secret, &code, now + 30), Some(step_at(now)));
        assert_eq!(matching_step(&secret, &code, now - 30), Some(step_at(now)));
        assert_eq!(matching_step(&secret, &code, now + 90), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(&secret, &spaced, now), Some(step_at(now)));
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 §10.
        for (input, out) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), out);
        }
    }

    #[test]
    fn the_uri_escapes_names() {
        let uri = otpauth_uri("Sceau", "alice smith", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Sceau:alice%20smith?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Sceau&algorithm=SHA1&digits=6&period=30"
        );
    }
}
