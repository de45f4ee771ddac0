//! The one syntax check of DNS names a client asks for (order identifiers, CSR names, names in
//! configuration), so that the server's front end and its signer cannot disagree about a name.
//!
//! Invariants of a name [`check_dns_name`] returns:
//! - it is the preferred name syntax of RFC 1035 §2.3.1 (with RFC 1123 §2.1's leading digits):
//!   labels of 1 to 63 letters, digits and hyphens, neither first nor last a hyphen, at most
//!   253 characters in all (255 octets on the wire, RFC 1035 §2.3.4), no trailing dot, in
//!   lowercase;
//! - its last label is not all digits, so it cannot be read as an IPv4 address (RFC 1123 §2.1,
//!   RFC 3696 §2);
//! - no label has `--` in positions 3 and 4 (RFC 5890 §2.3.1 reserves them, RFC 5891
//!   §4.2.3.1) unless it is an `xn--` A-label, and every A-label is valid: its Punycode
//!   (RFC 3492) decodes to a non-ASCII U-label, that U-label is valid IDNA2008 (RFC 5891 §5.4:
//!   UTS #46 processing with CheckHyphens, CheckBidi and CheckJoiners, plus RFC 5892's
//!   code point categories and CONTEXTO rules), and converting it back gives exactly the same
//!   A-label (RFC 5891 §5.4 round trip; RFC 8555 §7.1.4 requires the check);
//! - a wildcard is only ever the whole first label `*`, and only when the caller allows one.
//!
//! Errors are one line each and name the offending label; U-labels are shown escaped.
//!
//! [`normalise_identifier`] is the normal form of a whole ACME identifier built on it: `dns`
//! values through [`check_dns_name`], `ip` values in canonical text (RFC 8738 §3). A value it
//! returns is returned unchanged when normalised again.

use std::net::IpAddr;

use icu_properties::CodePointMapData;
use icu_properties::props::{GeneralCategory, Script};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::Identifier;

/// RFC 1035 §2.3.4: 255 octets on the wire are 253 characters of text without the final dot.
pub const MAX_NAME_LEN: usize = 253;
/// RFC 1035 §2.3.4.
pub const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("non-ASCII characters; use the xn-- A-label form (RFC 5890 §2.3.2.1)")]
    NonAscii,
    #[error("longer than {MAX_NAME_LEN} characters (RFC 1035 §2.3.4)")]
    TooLong,
    #[error("trailing dot")]
    TrailingDot,
    #[error("empty label")]
    EmptyLabel,
    #[error("label {0:?} is longer than {MAX_LABEL_LEN} characters (RFC 1035 §2.3.4)")]
    LabelTooLong(String),
    #[error("label {0:?} has characters other than letters, digits and '-' (RFC 1035 §2.3.1)")]
    BadCharacter(String),
    #[error("label {0:?} starts or ends with '-' (RFC 1035 §2.3.1)")]
    EdgeHyphen(String),
    #[error(
        "label {0:?} has \"--\" in positions 3 and 4 but is not an xn-- A-label (RFC 5891 §4.2.3.1)"
    )]
    ReservedHyphens(String),
    #[error("label {0:?} is not valid Punycode (RFC 3492)")]
    BadPunycode(String),
    #[error("label {0:?} decodes to ASCII only, so it is not an A-label (RFC 5890 §2.3.2.1)")]
    AsciiALabel(String),
    #[error(
        "label {label:?} decodes to {ulabel:?}, which does not convert back to the same A-label (RFC 5891 §5.4)"
    )]
    NoRoundTrip { label: String, ulabel: String },
    #[error("label {label:?} decodes to {ulabel:?}, which is not a valid IDNA U-label: {why}")]
    BadULabel {
        label: String,
        ulabel: String,
        why: String,
    },
    #[error("the labels break the Bidi rule for names with right-to-left labels (RFC 5893 §2)")]
    Bidi,
    #[error("the last label is all digits, like an IP address (RFC 1123 §2.1)")]
    NumericLast,
    #[error("wildcard names are not accepted here")]
    Wildcard,
    #[error("'*' is only allowed as the whole first label of a longer name")]
    MisplacedWildcard,
}

/// Why an identifier has no normal form; see [`normalise_identifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("not a valid DNS name: {0}")]
    Name(NameError),
    #[error("an IP address must use the \"ip\" identifier type (RFC 8738)")]
    IpAsDns,
    #[error("not a valid IP address")]
    NotIp,
    #[error("IP address is not in canonical form (RFC 8738 §3)")]
    NotCanonical,
    #[error("identifier type {0:?} is not supported")]
    UnsupportedType(String),
}

/// The normal form of an ACME identifier: a `dns` value checked by [`check_dns_name`] (a
/// wildcard only with `allow_wildcard`, else `Name(NameError::Wildcard)`), an `ip` value that
/// must already be the canonical text of its address (RFC 8738 §3, RFC 5952 for IPv6), so that
/// the certificate matches the order byte for byte.
pub fn normalise_identifier(
    id: &Identifier,
    allow_wildcard: bool,
) -> Result<Identifier, IdentifierError> {
    match id.kind.as_str() {
        Identifier::DNS if id.value.parse::<IpAddr>().is_ok() => Err(IdentifierError::IpAsDns),
        Identifier::DNS => check_dns_name(&id.value, allow_wildcard)
            .map(Identifier::dns)
            .map_err(IdentifierError::Name),
        Identifier::IP => match id.value.parse::<IpAddr>() {
            Ok(ip) if ip.to_string() == id.value => Ok(Identifier::ip(id.value.clone())),
            Ok(_) => Err(IdentifierError::NotCanonical),
            Err(_) => Err(IdentifierError::NotIp),
        },
        other => Err(IdentifierError::UnsupportedType(other.to_owned())),
    }
}

/// Checks `name` (see the module invariants) and returns it in lowercase. With
/// `allow_wildcard`, a leading `*.` label is accepted (RFC 8555 §7.1.3, RFC 6125 §6.4.3) and the
/// rest is checked as a name; without it, such a name is [`NameError::Wildcard`].
pub fn check_dns_name(name: &str, allow_wildcard: bool) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if !name.is_ascii() {
        return Err(NameError::NonAscii);
    }
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    match name.strip_prefix("*.") {
        Some(_) if !allow_wildcard => Err(NameError::Wildcard),
        Some(base) => check_plain(base).map(|()| name),
        None => check_plain(&name).map(|()| name),
    }
}

/// A lowercase ASCII name without wildcard; the length and trailing dot are already checked.
fn check_plain(name: &str) -> Result<(), NameError> {
    let mut has_a_label = false;
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.contains('*') {
            return Err(NameError::MisplacedWildcard);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label.to_owned()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NameError::BadCharacter(label.to_owned()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::EdgeHyphen(label.to_owned()));
        }
        if label.get(2..4) == Some("--") {
            if !label.starts_with("xn--") {
                return Err(NameError::ReservedHyphens(label.to_owned()));
            }
            check_a_label(label)?;
            has_a_label = true;
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericLast);
    }
    // RFC 5893 §2's Bidi rule binds every label of a name that has a right-to-left one, so it
    // is checked on the whole name once each label is known to be valid on its own.
    if has_a_label && uts46_to_ascii(name).as_deref() != Some(name) {
        return Err(NameError::Bidi);
    }
    Ok(())
}

/// UTS #46 ToASCII with the options IDNA2008 registration needs: STD3 ASCII rules,
/// CheckHyphens, DNS lengths (CheckBidi and CheckJoiners are always on in the idna crate).
fn uts46_to_ascii(input: &str) -> Option<String> {
    Uts46::new()
        .to_ascii(
            input.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Verify,
        )
        .ok()
        .map(|s| s.into_owned())
}

/// RFC 5891 §5.4 for one lowercase `xn--` label.
fn check_a_label(label: &str) -> Result<(), NameError> {
    let ulabel = idna::punycode::decode_to_string(&label[4..])
        .ok_or_else(|| NameError::BadPunycode(label.to_owned()))?;
    if ulabel.is_ascii() {
        return Err(NameError::AsciiALabel(label.to_owned()));
    }
    let bad = |why: String| NameError::BadULabel {
        label: label.to_owned(),
        ulabel: ulabel.clone(),
        why,
    };
    check_code_points(&ulabel).map_err(bad)?;
    // The U-label must be what IDNA processing of itself keeps unchanged (NFC, no mapped
    // character such as an upper-case letter), and must encode back to this very label: a
    // decoder's leniency must not give two spellings of one name.
    match uts46_to_ascii(&ulabel) {
        Some(back) if back == label => Ok(()),
        Some(_) => Err(NameError::NoRoundTrip {
            label: label.to_owned(),
            ulabel,
        }),
        None => Err(bad(
            "refused by IDNA processing (UTS #46: disallowed character, hyphen, joiner or bidi rule)"
                .into(),
        )),
    }
}

/// RFC 5892 §2 and §3: which code points a U-label may hold, beyond what UTS #46 checks (it
/// accepts symbols and punctuation that IDNA2008 disallows, and does not know CONTEXTO).
fn check_code_points(ulabel: &str) -> Result<(), String> {
    let chars: Vec<char> = ulabel.chars().collect();
    let gc = CodePointMapData::<GeneralCategory>::new();
    let script = CodePointMapData::<Script>::new();
    let has = |lo: u32, hi: u32| chars.iter().any(|c| (lo..=hi).contains(&(*c as u32)));
    for (i, &c) in chars.iter().enumerate() {
        let cp = c as u32;
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        let context_ok = match cp {
            // §2.6 Exceptions: PVALID whatever their category.
            0x00DF | 0x03C2 | 0x06FD | 0x06FE | 0x0F0B | 0x3007 => continue,
            // §2.6 Exceptions: DISALLOWED although letters or marks.
            0x0640 | 0x07FA | 0x302E | 0x302F | 0x3031..=0x3035 | 0x303B => false,
            // §2.9 OldHangulJamo: DISALLOWED.
            0x1100..=0x11FF | 0xA960..=0xA97F | 0xD7B0..=0xD7FF => false,
            // §2.8 JoinControl: CONTEXTJ, whose rules (Appendix A.1, A.2) UTS #46
            // CheckJoiners applies.
            0x200C | 0x200D => continue,
            // Appendix A.3 MIDDLE DOT: between two 'l' (Catalan).
            0x00B7 => before == Some('l') && after == Some('l'),
            // A.4 GREEK LOWER NUMERAL SIGN: followed by a Greek character.
            0x0375 => after.is_some_and(|a| script.get(a) == Script::Greek),
            // A.5, A.6 HEBREW GERESH, GERSHAYIM: preceded by a Hebrew character.
            0x05F3 | 0x05F4 => before.is_some_and(|b| script.get(b) == Script::Hebrew),
            // A.7 KATAKANA MIDDLE DOT: the label has Hiragana, Katakana or Han.
            0x30FB => chars.iter().any(|&o| {
                let s = script.get(o);
                s == Script::Hiragana || s == Script::Katakana || s == Script::Han
            }),
            // A.8, A.9: Arabic-Indic and Extended Arabic-Indic digits do not mix.
            0x0660..=0x0669 => !has(0x06F0, 0x06F9),
            0x06F0..=0x06F9 => !has(0x0660, 0x0669),
            // §2.1 LetterDigits: PVALID; every other category is DISALLOWED (§2.10 Unassigned
            // included). Upper-case letters are left to the UTS #46 mapping check.
            _ => matches!(
                gc.get(c),
                GeneralCategory::LowercaseLetter
                    | GeneralCategory::UppercaseLetter
                    | GeneralCategory::OtherLetter
                    | GeneralCategory::DecimalNumber
                    | GeneralCategory::ModifierLetter
                    | GeneralCategory::NonspacingMark
                    | GeneralCategory::SpacingMark
            ),
        };
        if !context_ok {
            return Err(format!(
                "U+{cp:04X} is not allowed here (RFC 5892 §2, Appendix A)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> String {
        check_dns_name(name, false).unwrap_or_else(|e| panic!("{name:?} refused: {e}"))
    }

    fn err(name: &str) -> NameError {
        check_dns_name(name, false)
            .err()
            .unwrap_or_else(|| panic!("{name:?} accepted"))
    }

    #[test]
    fn ldh_names() {
        assert_eq!(ok("WWW.Example.TEST"), "www.example.test");
        assert_eq!(ok("localhost"), "localhost");
        assert_eq!(ok("1host.2.test"), "1host.2.test");
        assert_eq!(ok("a-b.c-d.test"), "a-b.c-d.test");
        assert_eq!(err(""), NameError::Empty);
        assert_eq!(err("a..b"), NameError::EmptyLabel);
        assert_eq!(err(".a"), NameError::EmptyLabel);
        assert_eq!(err("a.b."), NameError::TrailingDot);
        assert_eq!(err("-a.b"), NameError::EdgeHyphen("-a".into()));
        assert_eq!(err("a-.b"), NameError::EdgeHyphen("a-".into()));
        assert_eq!(err("a_b.c"), NameError::BadCharacter("a_b".into()));
        assert_eq!(err("a b.c"), NameError::BadCharacter("a b".into()));
        assert_eq!(err("bücher.test"), NameError::NonAscii);
        assert_eq!(err("10.0.0.1"), NameError::NumericLast);
        assert_eq!(err("host.123"), NameError::NumericLast);
        assert_eq!(err("a.*.b"), NameError::MisplacedWildcard);
        assert_eq!(err("a*.b"), NameError::MisplacedWildcard);
    }

    #[test]
    fn lengths() {
        let l63 = "a".repeat(63);
        assert_eq!(ok(&format!("{l63}.test")), format!("{l63}.test"));
        assert_eq!(
            err(&format!("{}.test", "a".repeat(64))),
            NameError::LabelTooLong("a".repeat(64))
        );
        // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253
        let n253 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(n253.len(), 253);
        assert_eq!(ok(&n253), n253);
        let n254 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(62));
        assert_eq!(err(&n254), NameError::TooLong);
        // The wildcard counts towards the total.
        let w253 = format!("*.{l63}.{l63}.{l63}.{}", "b".repeat(59));
        assert_eq!(w253.len(), 253);
        assert!(check_dns_name(&w253, true).is_ok());
        let w254 = format!("*.{l63}.{l63}.{l63}.{}", "b".repeat(60));
        assert_eq!(check_dns_name(&w254, true), Err(NameError::TooLong));
    }

    #[test]
    fn hyphens_in_positions_3_and_4() {
        assert_eq!(
            err("ab--cd.test"),
            NameError::ReservedHyphens("ab--cd".into())
        );
        assert_eq!(
            err("x.AB--cd.test"),
            NameError::ReservedHyphens("ab--cd".into())
        );
        // Elsewhere they are fine.
        assert_eq!(ok("a--b.test"), "a--b.test");
        assert_eq!(ok("abc--d.test"), "abc--d.test");
    }

    #[test]
    fn a_labels() {
        assert_eq!(ok("xn--caf-dma.test"), "xn--caf-dma.test");
        assert_eq!(
            ok("XN--CAF-DMA.Test"),
            "xn--caf-dma.test",
            "A-labels are lowercased"
        );
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(
            ok("xn--zca.test"),
            "xn--zca.test",
            "ß is PVALID (RFC 5892 §2.6)"
        );
        assert_eq!(ok("xn--wgv71a.test"), "xn--wgv71a.test");
        assert_eq!(ok("xn--mxac.xn--caf-dma"), "xn--mxac.xn--caf-dma");
        assert_eq!(ok("xn--ll-0ea.test"), "xn--ll-0ea.test", "l·l (A.3)");
        assert_eq!(
            ok("xn--vek160nc2a.test"),
            "xn--vek160nc2a.test",
            "日・本 (A.7)"
        );

        assert_eq!(err("xn--zz.test"), NameError::BadPunycode("xn--zz".into()));
        assert_eq!(err("xn--.test"), NameError::EdgeHyphen("xn--".into()));
        assert_eq!(
            err("xn--abc-.test"),
            NameError::EdgeHyphen("xn--abc-".into())
        );
        // "cafÉ" and "cafe\u{301}" decode, but IDNA maps them to "café", whose A-label is
        // xn--caf-dma: not the same label, so not a valid A-label.
        for no_round_trip in ["xn--caf-pia", "xn--cafe-yvc"] {
            assert!(
                matches!(
                    err(&format!("{no_round_trip}.test")),
                    NameError::NoRoundTrip { .. }
                ),
                "{no_round_trip}"
            );
        }
        // Symbols and punctuation IDNA2008 disallows, context rules that fail.
        for bad in [
            "xn--ls8h",     // U+1F4A9, So
            "xn--e5g",      // U+2177 small roman numeral, Nl
            "xn--ab-0ea",   // a·b: MIDDLE DOT not between two 'l'
            "xn--xb-63b",   // KERAIA not followed by Greek
            "xn--abc-qs4b", // KATAKANA MIDDLE DOT without Japanese script
            "xn--8hb20a",   // both kinds of Arabic-Indic digits
            "xn--a-eoc",    // U+0640 TATWEEL, an exception DISALLOWED
            "xn--ypd",      // U+1100, old Hangul Jamo
        ] {
            assert!(
                matches!(err(&format!("{bad}.test")), NameError::BadULabel { .. }),
                "{bad}: {:?}",
                err(&format!("{bad}.test"))
            );
        }
        // ZWJ at the start breaks CONTEXTJ (A.2).
        assert!(matches!(err("xn--x-tgn.test"), NameError::BadULabel { .. }));
    }

    #[test]
    fn wildcards() {
        assert_eq!(err("*.example.test"), NameError::Wildcard);
        assert_eq!(
            check_dns_name("*.Example.TEST", true),
            Ok("*.example.test".into())
        );
        assert_eq!(
            check_dns_name("*.*.example.test", true),
            Err(NameError::MisplacedWildcard)
        );
        assert_eq!(check_dns_name("*", true), Err(NameError::MisplacedWildcard));
        assert_eq!(
            check_dns_name("*.ab--cd.test", true),
            Err(NameError::ReservedHyphens("ab--cd".into()))
        );
        assert_eq!(
            check_dns_name("*.xn--zz.test", true),
            Err(NameError::BadPunycode("xn--zz".into()))
        );
    }

    #[test]
    fn identifiers() {
        let n = |id: Identifier, w| normalise_identifier(&id, w);
        assert_eq!(
            n(Identifier::dns("WWW.Example.TEST"), false),
            Ok(Identifier::dns("www.example.test"))
        );
        assert_eq!(
            n(Identifier::dns("*.example.test"), false),
            Err(IdentifierError::Name(NameError::Wildcard))
        );
        assert_eq!(
            n(Identifier::dns("*.example.test"), true),
            Ok(Identifier::dns("*.example.test"))
        );
        assert_eq!(
            n(Identifier::dns("10.0.0.1"), false),
            Err(IdentifierError::IpAsDns)
        );
        assert_eq!(
            n(Identifier::dns("::1"), false),
            Err(IdentifierError::IpAsDns)
        );
        assert_eq!(
            n(Identifier::ip("2001:db8::1"), false),
            Ok(Identifier::ip("2001:db8::1"))
        );
        assert_eq!(
            n(Identifier::ip("2001:DB8::1"), false),
            Err(IdentifierError::NotCanonical)
        );
        assert_eq!(
            n(Identifier::ip("010.0.0.1"), false),
            Err(IdentifierError::NotIp)
        );
        assert_eq!(
            n(Identifier::ip("example.test"), false),
            Err(IdentifierError::NotIp)
        );
        let email = Identifier {
            kind: "email".into(),
            value: "a@b".into(),
        };
        assert_eq!(
            n(email, false),
            Err(IdentifierError::UnsupportedType("email".into()))
        );
    }

    #[test]
    fn errors_are_one_line_and_escaped() {
        // U+202E RIGHT-TO-LEFT OVERRIDE is Cf: refused, and shown escaped.
        let label = format!("xn--{}", idna::punycode::encode_str("a\u{202e}b").unwrap());
        let e = err(&format!("{label}.test")).to_string();
        assert!(!e.contains('\u{202e}') && !e.contains('\n'), "{e}");
    }
}
