//! CAA (RFC 8659) with the ACME account and method parameters (RFC 8657).
//!
//! Invariants:
//! - The relevant RRset is the first non-empty CAA RRset climbing from the domain towards (not
//!   including) the root; CNAMEs at each name are followed by the resolver (RFC 8659 §3).
//! - No relevant RRset, or one without issue/issuewild properties, does not restrict issuance.
//! - An unknown property tag flagged critical forbids issuance (RFC 8659 §4.5).
//! - An issue value that does not match the RFC 8659 §4.2 grammar counts as an empty issuer, which
//!   authorises nobody. Authorisations are additive: one satisfied property is enough.
//! - A property with `accounturi` is satisfied only by that exact account URL, one with
//!   `validationmethods` only by a listed method; either parameter given twice is unsatisfiable.
//! - A failed lookup (SERVFAIL, timeout) refuses issuance as a `dns` problem.

use hickory_resolver::proto::rr::rdata::CAA;
use sceau_wire::{Identifier, ProblemType};

use crate::ValidationError;
use crate::dns::Dns;
use crate::ident;

/// Property tags we implement; a critical property with any other tag forbids issuance.
const KNOWN_TAGS: &[&str] = &["issue", "issuewild", "iodef"];

/// One CAA property as found in DNS (RFC 8659 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaaProperty {
    pub critical: bool,
    pub tag: String,
    pub value: Vec<u8>,
}

impl From<&CAA> for CaaProperty {
    fn from(caa: &CAA) -> Self {
        CaaProperty {
            critical: caa.issuer_critical,
            tag: caa.tag.clone(),
            value: caa.value.clone(),
        }
    }
}

/// A parsed `issue`/`issuewild` value (RFC 8659 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueValue {
    /// Lower-case issuer domain; `None` for an empty or malformed value (authorises nobody).
    pub issuer: Option<String>,
    /// Parameters in order, keys lower-cased.
    pub params: Vec<(String, String)>,
}

/// Parses an issue value; anything outside the grammar gives an empty issuer and no parameters.
pub fn parse_issue_value(raw: &[u8]) -> IssueValue {
    parse_strict(raw).unwrap_or(IssueValue {
        issuer: None,
        params: Vec::new(),
    })
}

fn parse_strict(raw: &[u8]) -> Option<IssueValue> {
    let text = std::str::from_utf8(raw).ok()?;
    let wsp = |c: char| c == ' ' || c == '\t';
    let (name_part, params_part) = match text.split_once(';') {
        Some((n, p)) => (n, Some(p)),
        None => (text, None),
    };
    let name = name_part.trim_matches(wsp);
    let issuer = if name.is_empty() {
        None
    } else if name.split('.').all(is_ldh_label) {
        Some(name.to_ascii_lowercase())
    } else {
        return None;
    };
    let mut params = Vec::new();
    if let Some(rest) = params_part
        .map(|p| p.trim_matches(wsp))
        .filter(|p| !p.is_empty())
    {
        for segment in rest.split(';') {
            let (key, value) = segment.trim_matches(wsp).split_once('=')?;
            let (key, value) = (key.trim_matches(wsp), value.trim_matches(wsp));
            let value_ok = value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b';');
            if !is_ldh_label(key) || !value_ok {
                return None;
            }
            params.push((key.to_ascii_lowercase(), value.to_owned()));
        }
    }
    Some(IssueValue { issuer, params })
}

/// `label = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))`
fn is_ldh_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Decides issuance from the relevant RRset. `Err` explains the refusal in a few words.
pub fn decide(
    set: &[CaaProperty],
    identities: &[String],
    wildcard: bool,
    account_uri: &str,
    method: &str,
) -> Result<(), String> {
    for p in set {
        let tag = p.tag.to_ascii_lowercase();
        if p.critical && !KNOWN_TAGS.contains(&tag.as_str()) {
            return Err(format!("critical property {:?} is not understood", p.tag));
        }
    }
    let has = |t: &str| set.iter().any(|p| p.tag.eq_ignore_ascii_case(t));
    // RFC 8659 §4.3: issuewild replaces issue for wildcards and is ignored otherwise.
    let tag = if wildcard && has("issuewild") {
        "issuewild"
    } else {
        "issue"
    };
    let relevant: Vec<IssueValue> = set
        .iter()
        .filter(|p| p.tag.eq_ignore_ascii_case(tag))
        .map(|p| parse_issue_value(&p.value))
        .collect();
    if relevant.is_empty() {
        return Ok(());
    }
    let ours = |issuer: &str| {
        identities
            .iter()
            .any(|i| i.trim_end_matches('.').eq_ignore_ascii_case(issuer))
    };
    let mut reasons = Vec::new();
    for value in &relevant {
        let Some(issuer) = &value.issuer else {
            reasons.push("an empty or malformed issuer".to_owned());
            continue;
        };
        if !ours(issuer) {
            reasons.push(format!("issuer {issuer}"));
            continue;
        }
        match params_allow(&value.params, account_uri, method) {
            Ok(()) => return Ok(()),
            Err(why) => reasons.push(format!("issuer {issuer} {why}")),
        }
    }
    Err(format!(
        "{tag} properties allow only: {}",
        reasons.join("; ")
    ))
}

/// RFC 8657 §3 (accounturi) and §4 (validationmethods).
fn params_allow(
    params: &[(String, String)],
    account_uri: &str,
    method: &str,
) -> Result<(), String> {
    let values = |key: &str| {
        params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    match values("accounturi").as_slice() {
        [] => {}
        [uri] if *uri == account_uri => {}
        [uri] => return Err(format!("for account {uri}")),
        _ => return Err("with several accounturi parameters (unsatisfiable)".to_owned()),
    }
    match values("validationmethods").as_slice() {
        [] => {}
        [list] if list.split(',').any(|m| m.eq_ignore_ascii_case(method)) => {}
        [list] => return Err(format!("with validationmethods={list}")),
        _ => return Err("with several validationmethods parameters (unsatisfiable)".to_owned()),
    }
    Ok(())
}

/// What an operator is shown when a name is asked for (agency guide R7): the relevant CAA
/// record set (RFC 8659 §3: the closest one up the tree) and what it means for this CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaaReport {
    /// Where the set was found; `None`: no CAA record up to the root.
    pub at: Option<String>,
    /// The records, as zone-file text (`0 issue "ca.example"`).
    pub records: Vec<String>,
    /// One line: whether this CA may issue for the name (http-01, any account), and why.
    pub verdict: String,
}

pub(crate) async fn report(dns: &Dns, identities: &[String], id: &Identifier) -> CaaReport {
    let domain = match ident::domain(id) {
        Ok(d) => d,
        Err(e) => {
            return CaaReport {
                at: None,
                records: Vec::new(),
                verdict: e.detail,
            };
        }
    };
    let (wildcard, base) = match domain.strip_prefix("*.") {
        Some(base) => (true, base.to_owned()),
        None => (false, domain.clone()),
    };
    let mut name = base.as_str();
    loop {
        let set = match dns.caa(name).await {
            Ok(set) => set,
            Err(e) => {
                return CaaReport {
                    at: Some(name.to_owned()),
                    records: Vec::new(),
                    verdict: format!("the CAA lookup failed: {}", e.detail),
                };
            }
        };
        if !set.is_empty() {
            let props: Vec<CaaProperty> = set.iter().map(CaaProperty::from).collect();
            let records = props
                .iter()
                .map(|p| {
                    format!(
                        "{} {} \"{}\"",
                        u8::from(p.critical) * 128,
                        p.tag,
                        String::from_utf8_lossy(&p.value)
                    )
                })
                .collect();
            let verdict = if identities.is_empty() {
                "CAA is not enforced by this server (no caa_identities configured)".to_owned()
            } else {
                match decide(&props, identities, wildcard, "", "http-01") {
                    Ok(()) => "this CA may issue for the name".to_owned(),
                    Err(why) => format!("this CA may not issue for the name: {why}"),
                }
            };
            return CaaReport {
                at: Some(name.to_owned()),
                records,
                verdict,
            };
        }
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => name = parent,
            _ => {
                return CaaReport {
                    at: None,
                    records: Vec::new(),
                    verdict: "no CAA record: any CA may issue (RFC 8659 §3)".to_owned(),
                };
            }
        }
    }
}

pub(crate) async fn check(
    dns: &Dns,
    identities: &[String],
    id: &Identifier,
    account_uri: &str,
    method: &str,
) -> Result<(), ValidationError> {
    let domain = ident::domain(id)?;
    let (wildcard, base) = match domain.strip_prefix("*.") {
        Some(base) => (true, base.to_owned()),
        None => (false, domain.clone()),
    };
    let mut name = base.as_str();
    loop {
        let set = dns.caa(name).await?;
        if !set.is_empty() {
            let props: Vec<CaaProperty> = set.iter().map(CaaProperty::from).collect();
            return decide(&props, identities, wildcard, account_uri, method).map_err(|why| {
                ValidationError::new(
                    ProblemType::Caa,
                    format!("CAA at {name} forbids issuance for {domain} ({method}): {why}"),
                )
            });
        }
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => name = parent,
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(critical: bool, tag: &str, value: &str) -> CaaProperty {
        CaaProperty {
            critical,
            tag: tag.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    const ACCT: &str = "https://ca.test/acme/acct/1";

    fn ok(set: &[CaaProperty], wildcard: bool, method: &str) -> bool {
        decide(set, &["ourca.example".to_owned()], wildcard, ACCT, method).is_ok()
    }

    #[test]
    fn parses_issue_values() {
        let v = parse_issue_value(
            b" ourca.example ; accounturi=https://x/1 ;validationmethods=dns-01,http-01 ",
        );
        assert_eq!(v.issuer.as_deref(), Some("ourca.example"));
        assert_eq!(
            v.params,
            [
                ("accounturi".to_owned(), "https://x/1".to_owned()),
                ("validationmethods".to_owned(), "dns-01,http-01".to_owned())
            ]
        );
        assert_eq!(parse_issue_value(b";").issuer, None);
        assert_eq!(
            parse_issue_value(b"OurCA.Example;").issuer.as_deref(),
            Some("ourca.example")
        );
        for bad in [
            "%%%%%",
            "ourca.example; novalue",
            "-bad.example",
            "a..b",
            "ca; a=b c",
            "ca; a=b;",
        ] {
            assert_eq!(parse_issue_value(bad.as_bytes()).issuer, None, "{bad}");
        }
    }

    #[test]
    fn decisions() {
        assert!(ok(&[], false, "http-01"));
        assert!(ok(&[prop(false, "iodef", "mailto:x@y")], false, "http-01"));
        assert!(ok(
            &[prop(false, "issue", "ourca.example")],
            false,
            "http-01"
        ));
        assert!(ok(
            &[prop(false, "ISSUE", "OURCA.EXAMPLE")],
            false,
            "http-01"
        ));
        assert!(!ok(
            &[prop(false, "issue", "other.example")],
            false,
            "http-01"
        ));
        assert!(!ok(&[prop(false, "issue", ";")], false, "http-01"));
        assert!(!ok(&[prop(false, "issue", "%%%%")], false, "http-01"));
        // Additive.
        assert!(ok(
            &[
                prop(false, "issue", ";"),
                prop(false, "issue", "ourca.example")
            ],
            false,
            "dns-01"
        ));
        // Unknown critical tag refuses even with a matching issue; unknown non-critical is ignored.
        assert!(!ok(
            &[
                prop(false, "issue", "ourca.example"),
                prop(true, "tbs", "x")
            ],
            false,
            "http-01"
        ));
        assert!(ok(
            &[
                prop(false, "issue", "ourca.example"),
                prop(false, "tbs", "x")
            ],
            false,
            "http-01"
        ));
        // issuewild only for wildcards, and then it replaces issue.
        let set = [
            prop(false, "issue", "other.example"),
            prop(false, "issuewild", "ourca.example"),
        ];
        assert!(!ok(&set, false, "dns-01"));
        assert!(ok(&set, true, "dns-01"));
        assert!(ok(&[prop(false, "issue", "ourca.example")], true, "dns-01"));
        assert!(!ok(
            &[
                prop(false, "issuewild", ";"),
                prop(false, "issue", "ourca.example")
            ],
            true,
            "dns-01"
        ));
        // RFC 8657.
        let acct = format!("ourca.example; accounturi={ACCT}");
        assert!(ok(&[prop(false, "issue", &acct)], false, "http-01"));
        assert!(!ok(
            &[prop(
                false,
                "issue",
                "ourca.example; accounturi=https://ca.test/acme/acct/2"
            )],
            false,
            "http-01"
        ));
        let twice = format!("ourca.example; accounturi={ACCT}; accounturi={ACCT}");
        assert!(!ok(&[prop(false, "issue", &twice)], false, "http-01"));
        let vm = "ourca.example; validationmethods=dns-01,tls-alpn-01";
        assert!(ok(&[prop(false, "issue", vm)], false, "dns-01"));
        assert!(ok(&[prop(false, "issue", vm)], false, "tls-alpn-01"));
        assert!(!ok(&[prop(false, "issue", vm)], false, "http-01"));
        assert!(!ok(
            &[prop(false, "issue", "ourca.example; validationmethods=")],
            false,
            "http-01"
        ));
    }
}
