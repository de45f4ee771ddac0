//! Which names an agent may have: the operator's list of exact names and `*.zone` patterns.
//!
//! Invariant: a pattern `*.zone` covers names strictly under `zone` (any depth), never `zone`
//! itself; a requested wildcard `*.x.zone` is covered by `*.zone` or by the exact `*.x.zone`.
//! Comparison is on lowercase A-labels without a trailing dot.

/// Normalises a name or pattern for comparison; `None` when it is not a plausible DNS name.
pub fn normalise(name: &str) -> Option<String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let body = n.strip_prefix("*.").unwrap_or(&n);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    ok.then_some(n)
}

/// Whether `name` is covered by one of `allowed`.
pub fn allowed(allowed: &[String], name: &str) -> bool {
    let Some(name) = normalise(name) else {
        return false;
    };
    allowed.iter().filter_map(|p| normalise(p)).any(|p| {
        if p == name {
            return true;
        }
        match p.strip_prefix("*.") {
            Some(zone) => name
                .strip_suffix(zone)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_what_they_say() {
        let a = vec!["db1.example.org".to_owned(), "*.web.example.org".to_owned()];
        assert!(allowed(&a, "db1.example.org"));
        assert!(allowed(&a, "DB1.Example.org."));
        assert!(allowed(&a, "www.web.example.org"));
        assert!(allowed(&a, "a.b.web.example.org"));
        assert!(allowed(&a, "*.web.example.org"));
        assert!(!allowed(&a, "web.example.org"));
        assert!(!allowed(&a, "db2.example.org"));
        assert!(!allowed(&a, "evilweb.example.org"));
        assert!(!allowed(&a, "x.db1.example.org"));
        assert!(!allowed(&a, "bad_name.web.example.org"));
        assert!(!allowed(&[], "db1.example.org"));
        assert_eq!(normalise("-x.org"), None);
    }
}
