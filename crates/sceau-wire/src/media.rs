//! Media types used by ACME (RFC 8555 §6.2, §7.4.2, §6.7) and the one check of a request's
//! `Content-Type`.
//!
//! Invariant: [`is_jose_json`] accepts exactly the media type `application/jose+json`, with its
//! type and subtype in any letter case (RFC 9110 §8.3.1), optionally followed by well-formed
//! parameters; nothing that merely starts with that text.

pub const JOSE_JSON: &str = "application/jose+json";
pub const PROBLEM_JSON: &str = "application/problem+json";
pub const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// Whether a `Content-Type` field value names `application/jose+json` (RFC 8555 §6.2).
///
/// RFC 9110 §8.3.1: `media-type = type "/" subtype parameters`, type and subtype are
/// case-insensitive; §5.6.6: `parameters = *( OWS ";" OWS [ parameter ] )`,
/// `parameter = token "=" ( token / quoted-string )`. The field value's own surrounding
/// whitespace is not part of it (RFC 9110 §5.5).
pub fn is_jose_json(value: &str) -> bool {
    let value = value.trim_matches(is_ows);
    let (essence, parameters) = match value.find(';') {
        Some(i) => (&value[..i], Some(&value[i..])),
        None => (value, None),
    };
    // OWS is allowed before the ";" of the first parameter, not inside the type.
    let essence = essence.trim_end_matches(is_ows);
    essence.eq_ignore_ascii_case(JOSE_JSON) && parameters.is_none_or(parameters_are_valid)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// `s` starts with ";". Quoted strings may contain ";", so this walks the text once.
fn parameters_are_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Each round starts at a ";" (the loop below leaves `i` on one or at the end).
        if b[i] != b';' {
            return false;
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i == b.len() || b[i] == b';' {
            // An empty parameter is allowed by the grammar.
            continue;
        }
        let name_start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == name_start || i == b.len() || b[i] != b'=' {
            return false;
        }
        i += 1;
        if i < b.len() && b[i] == b'"' {
            // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4)
            i += 1;
            loop {
                match b.get(i) {
                    None => return false,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        match b.get(i + 1) {
                            Some(&c) if c == b'\t' || (0x20..0x7f).contains(&c) => {}
                            _ => return false,
                        }
                        i += 2;
                    }
                    Some(&c) if c == b'\t' || c == b' ' || (0x21..0x7f).contains(&c) => i += 1,
                    Some(_) => return false,
                }
            }
        } else {
            let value_start = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if !is_token(&s[value_start..i]) {
                return false;
            }
        }
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_media_type_in_any_case() {
        for good in [
            "application/jose+json",
            "Application/JOSE+JSON",
            " application/jose+json ",
            "application/jose+json; charset=utf-8",
            "application/jose+json ;charset=\"utf-8\"",
            "application/jose+json;a=b;c=\"d;e\\\"\"",
            "application/jose+json;",
        ] {
            assert!(is_jose_json(good), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "application/jose+jsonX",
            "application/jose+json2",
            "application/jose+json+x",
            "application/json",
            "application/jose",
            "application /jose+json",
            "application/ jose+json",
            "xapplication/jose+json",
            "application/jose+json;charset",
            "application/jose+json;=x",
            "application/jose+json;a=\"unterminated",
            "application/jose+json;a=b c",
            "application/jose+json;a=b\"",
            "application/jose+json x",
        ] {
            assert!(!is_jose_json(bad), "{bad:?} should be refused");
        }
    }
}
