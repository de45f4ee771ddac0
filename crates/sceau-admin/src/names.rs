//! Allowed names of an AA and the matching rule (agency guide R26, R27, R34, R42).
//!
//! Invariants:
//! - A name matches an entry only if it is the entry itself, or lies below it and the entry
//!   says "and its subdomains". Label boundaries count: `badexample.test` is not below
//!   `example.test`.
//! - A wildcard identifier (`*.x`) matches only when the AA allows wildcards and `x` itself is
//!   allowed by the list; without that permission it is refused whatever the list says.
//! - Comparison is on normalised forms: lower-case DNS names without a final dot, canonical IP
//!   text (RFC 5952 for IPv6), so `WWW.Example.TEST` and `www.example.test` are one name.

use std::net::IpAddr;

use sceau_store::AllowedName;
use sceau_wire::Identifier;

/// Normalises a list entry given by an administrator; the error says why it is not a name.
pub fn normalise_entry(text: &str) -> Result<String, String> {
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = t.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") || name.contains('*') {
        return Err(format!(
            "{text:?}: wildcard entries are not allowed (agency guide R42); list each name, or use --with-subdomains"
        ));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{text:?} is not a DNS name"));
    }
    for label in name.split('.') {
        if !sceau_wire::is_ldh_label(label) {
            return Err(format!(
                "{text:?}: label {label:?} is not a valid DNS label"
            ));
        }
    }
    if name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{text:?} looks like an IP address but is not a valid one"
        ));
    }
    Ok(name)
}

fn entry_covers(entry: &AllowedName, name: &str) -> bool {
    if entry.name == name {
        return true;
    }
    entry.subdomains
        && name.len() > entry.name.len() + 1
        && name.ends_with(&entry.name)
        && name.as_bytes()[name.len() - entry.name.len() - 1] == b'.'
}

/// Why an identifier is refused, or `None` if the list allows it.
pub fn refusal(list: &[AllowedName], wildcards: bool, id: &Identifier) -> Option<String> {
    let value = id.value.to_ascii_lowercase();
    let value = value.trim_end_matches('.');
    if id.kind == Identifier::IP {
        let canonical = value
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| value.to_owned());
        return if list.iter().any(|e| e.name == canonical) {
            None
        } else {
            Some(format!("{} is not on the allowed list", id.value))
        };
    }
    if id.kind != Identifier::DNS {
        return Some(format!("identifier type {:?} is not allowed", id.kind));
    }
    let (name, wildcard) = match value.strip_prefix("*.") {
        Some(base) => (base, true),
        None => (value, false),
    };
    if wildcard && !wildcards {
        return Some(format!(
            "{}: wildcard certificates are not allowed for this account (agency guide R42)",
            id.value
        ));
    }
    if list.iter().any(|e| entry_covers(e, name)) {
        None
    } else if list.iter().any(|e| name.ends_with(&format!(".{}", e.name))) {
        Some(format!(
            "{} is not on the allowed list: a subdomain is allowed only if it is listed itself (agency guide R27)",
            id.value
        ))
    } else {
        Some(format!("{} is not on the allowed list", id.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, subdomains: bool) -> AllowedName {
        AllowedName {
            name: name.into(),
            subdomains,
            added_at: 0,
            added_by: "t".into(),
        }
    }

    #[test]
    fn exact_names_only_unless_subdomains_are_listed() {
        let list = [
            entry("www.example.test", false),
            entry("corp.test", true),
            entry("10.0.0.1", false),
            entry("2001:db8::1", false),
        ];
        let ok = |v: &str| refusal(&list, false, &Identifier::dns(v)).is_none();
        assert!(ok("www.example.test"));
        assert!(ok("WWW.Example.TEST"));
        assert!(!ok("example.test"));
        assert!(!ok("a.www.example.test"), "subdomain of an exact entry");
        assert!(ok("corp.test"));
        assert!(ok("a.corp.test"));
        assert!(ok("a.b.corp.test"));
        assert!(!ok("badcorp.test"), "label boundary");
        assert!(!ok("other.test"));
        assert!(refusal(&list, false, &Identifier::ip("10.0.0.1")).is_none());
        assert!(refusal(&list, false, &Identifier::ip("10.0.0.2")).is_some());
        assert!(
            refusal(&list, false, &Identifier::ip("2001:DB8::1")).is_none(),
            "IPv6 compared canonically"
        );
        assert!(
            refusal(
                &list,
                false,
                &Identifier {
                    kind: "email".into(),
                    value: "a@corp.test".into()
                }
            )
            .is_some()
        );
        let why = refusal(&list, false, &Identifier::dns("a.www.example.test")).unwrap();
        assert!(why.contains("R27"), "{why}");
    }

    #[test]
    fn wildcards_need_the_accounts_permission() {
        let list = [entry("corp.test", false), entry("www.example.test", false)];
        let wild = Identifier::dns("*.corp.test");
        assert!(refusal(&list, false, &wild).unwrap().contains("R42"));
        assert!(refusal(&list, true, &wild).is_none());
        assert!(refusal(&list, true, &Identifier::dns("*.other.test")).is_some());
    }

    #[test]
    fn entries_are_normalised_or_refused() {
        assert_eq!(
            normalise_entry("WWW.Example.Test.").unwrap(),
            "www.example.test"
        );
        assert_eq!(normalise_entry("2001:DB8:0::1").unwrap(), "2001:db8::1");
        assert_eq!(normalise_entry("10.0.0.1").unwrap(), "10.0.0.1");
        for bad in [
            "*.example.test",
            "a*.test",
            "",
            "bad_label.test",
            "-a.test",
            "10.0.0.300",
            "a..test",
        ] {
            assert!(normalise_entry(bad).is_err(), "{bad:?} accepted");
        }
    }
}
