//! The DNS name check (`sceau_wire::dns::check_dns_name`), which the signer's CSR checks use,
//! and the identifier normaliser built on it (`sceau_wire::dns::normalise_identifier`, all of
//! newOrder's identifier syntax). Besides not panicking: an accepted name is the input
//! lowercased, passes again unchanged, has only LDH labels of 1 to 63 characters in at most
//! 253, and the idna crate's strict UTS #46 ToASCII (an independent reading of the A-labels)
//! gives it back; a refusal is one printable line; a normalised identifier normalises to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sceau_wire::Identifier;
use sceau_wire::dns::{check_dns_name, normalise_identifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for wildcard in [false, true] {
        match check_dns_name(text, wildcard) {
            Ok(name) => {
                assert_eq!(name, text.to_ascii_lowercase());
                assert!(name.len() <= 253);
                assert_eq!(check_dns_name(&name, wildcard).as_ref(), Ok(&name));
                let base = match name.strip_prefix("*.") {
                    Some(base) => {
                        assert!(wildcard);
                        base
                    }
                    None => &name,
                };
                for label in base.split('.') {
                    assert!((1..=63).contains(&label.len()), "{label:?}");
                    assert!(
                        label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    );
                }
                assert_eq!(
                    idna::domain_to_ascii_strict(base).ok().as_deref(),
                    Some(base)
                );
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.chars().any(char::is_control), "{message:?}");
            }
        }
        for id in [Identifier::dns(text), Identifier::ip(text)] {
            match normalise_identifier(&id, wildcard) {
                Ok(n) => {
                    assert_eq!(n.kind, id.kind);
                    assert_eq!(normalise_identifier(&n, wildcard).as_ref(), Ok(&n));
                    if n.is_dns() {
                        assert_eq!(check_dns_name(&n.value, wildcard).as_ref(), Ok(&n.value));
                    } else {
                        assert_eq!(n.value, text);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(!message.chars().any(char::is_control), "{message:?}");
                }
            }
        }
    }
});
