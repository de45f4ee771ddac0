//! Writes the seed corpus (fuzz/corpus/<target>/seed-*) and the fixed public keys the targets
//! share (fuzz_targets/common/jwks.json). Every seed is a valid input made by our own code
//! (sceau-wire, rcgen); openssl-made CSRs and certificates (make-openssl-seeds.sh) sit next to
//! them and are checked here. Run from fuzz/: `cargo run --example make_seeds`. Keys are fresh
//! on each run and only their public halves are written.

use std::fs;
use std::path::Path;

use rcgen::{CertificateParams, DnType, IsCa, KeyPair, PublicKeyData, SanType};
use sceau_wire::jws::{self, Signer};
use sceau_wire::{AccountKey, KeyKind, eab};
use serde_json::json;

const EAB_URL: &str = "https://ca.test/acme/new-account";
const EAB_MAC_KEY: [u8; 32] = [7; 32];

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn rcgen_key(key: &AccountKey) -> KeyPair {
    let der = key.to_pkcs8_der();
    KeyPair::try_from(der.as_slice()).expect("rcgen reads the key")
}

fn main() {
    let kinds = [
        (KeyKind::P256, "p256"),
        (KeyKind::P384, "p384"),
        (KeyKind::Ed25519, "ed25519"),
        (KeyKind::Rsa2048, "rsa2048"),
    ];
    let keys: Vec<(AccountKey, &str)> = kinds
        .iter()
        .map(|(k, n)| (AccountKey::generate(*k).unwrap(), *n))
        .collect();
    let jwks: Vec<_> = keys.iter().map(|(k, _)| k.jwk()).collect();
    fs::write(
        "fuzz_targets/common/jwks.json",
        serde_json::to_string_pretty(&jwks).unwrap() + "\n",
    )
    .unwrap();

    let base = "https://ca.test/acme";
    for (key, name) in &keys {
        let body = |signer, url: &str, payload: Option<&[u8]>| {
            let body =
                serde_json::to_vec(&jws::sign(key, signer, Some("bm9uY2U"), url, payload).unwrap())
                    .unwrap();
            sceau_wire::ParsedJws::parse(&body)
                .unwrap()
                .verify(&key.jwk())
                .expect("a valid JWS seed");
            body
        };
        let new_account =
            json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.test"]});
        write(
            "jws",
            &format!("new-account-{name}"),
            &body(
                Signer::Jwk,
                EAB_URL,
                Some(new_account.to_string().as_bytes()),
            ),
        );
        let kid = format!("{base}/acct/1");
        write(
            "jws",
            &format!("post-as-get-{name}"),
            &body(Signer::Kid(&kid), &format!("{base}/order/1"), None),
        );
        let order = json!({"identifiers": [{"type": "dns", "value": "xn--caf-dma.test"}, {"type": "ip", "value": "2001:db8::1"}]});
        write(
            "jws",
            &format!("new-order-{name}"),
            &body(
                Signer::Kid(&kid),
                &format!("{base}/new-order"),
                Some(order.to_string().as_bytes()),
            ),
        );
        // keyChange: the payload is itself a JWS signed by the new key's jwk.
        let url = format!("{base}/key-change");
        let inner_payload = json!({"account": kid, "oldKey": jwks[0]});
        let inner = jws::sign(
            key,
            Signer::Jwk,
            None,
            &url,
            Some(inner_payload.to_string().as_bytes()),
        )
        .unwrap();
        write(
            "jws",
            &format!("key-change-{name}"),
            &body(
                Signer::Kid(&kid),
                &url,
                Some(&serde_json::to_vec(&inner).unwrap()),
            ),
        );
    }

    // EAB: header "\n" payload (the target adds the MAC), and a whole binding object.
    let header = json!({"alg": "HS256", "kid": "kid-1", "url": EAB_URL});
    let mut split = header.to_string().into_bytes();
    split.push(b'\n');
    split.extend(serde_json::to_vec(&jwks[0]).unwrap());
    write("eab", "header-payload", &split);
    let binding = eab::sign("kid-1", &EAB_MAC_KEY, EAB_URL, &jwks[0]);
    eab::verify(&binding, &EAB_MAC_KEY, EAB_URL, &jwks[0]).expect("a valid binding seed");
    write("eab", "binding", &serde_json::to_vec(&binding).unwrap());

    // CSRs and certificates by rcgen for every key type, with DNS (A-label, wildcard) and IP
    // names; certificates are issued by a CA so they carry an Authority Key Identifier.
    let ca_key = rcgen_key(&keys[0].0);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Sceau fuzz seed CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    write("cert_info", "ca-p256", ca.der());
    for (i, (key, name)) in keys.iter().enumerate() {
        let kp = rcgen_key(key);
        let mut params = CertificateParams::new(vec![
            "www.example.test".to_owned(),
            "xn--caf-dma.test".to_owned(),
        ])
        .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("192.0.2.7".parse().unwrap()));
        params
            .subject_alt_names
            .push(SanType::IpAddress("2001:db8::7".parse().unwrap()));
        if i == 0 {
            params
                .subject_alt_names
                .push(SanType::DnsName("*.wild.test".try_into().unwrap()));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "www.example.test");
        let csr = params.serialize_request(&kp).unwrap();
        sceau_ca::csr::parse_and_check_with(csr.der(), true).expect("a valid CSR seed");
        write("csr", &format!("rcgen-{name}"), csr.der());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&kp, &issuer).unwrap();
        let info = sceau_ca::inspect::cert_info(cert.der()).expect("a valid certificate seed");
        assert!(info.ari_id.is_some());
        write("cert_info", &format!("leaf-{name}"), cert.der());
        // spki_jwk: selector i and the SPKI of fixed key i; and the JSON-jwk form.
        let spki = kp.subject_public_key_info();
        assert!(sceau_ca::inspect::spki_matches_jwk(&spki, &jwks[i]));
        let mut seed = vec![i as u8];
        seed.extend(&spki);
        write("spki_jwk", &format!("fixed-{name}"), &seed);
        let json = serde_json::to_vec(&jwks[i]).unwrap();
        let mut seed = vec![0xff];
        seed.extend((json.len() as u16).to_be_bytes());
        seed.extend(json);
        seed.extend(&spki);
        write("spki_jwk", &format!("json-{name}"), &seed);
    }

    // Seeds made by openssl (make-openssl-seeds.sh) must stay valid inputs too.
    for (target, check) in [
        (
            "csr",
            (|d: &[u8]| sceau_ca::csr::parse_and_check_with(d, true).is_ok()) as fn(&[u8]) -> bool,
        ),
        ("cert_info", |d: &[u8]| {
            sceau_ca::inspect::cert_info(d).is_ok()
        }),
    ] {
        for entry in fs::read_dir(Path::new("corpus").join(target)).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-openssl-")
            {
                assert!(
                    check(&fs::read(&path).unwrap()),
                    "{} is not valid",
                    path.display()
                );
            }
        }
    }

    for (i, name) in [
        "www.example.test",
        "XN--CAF-DMA.Test",
        "*.example.test",
        "xn--bcher-kva.example",
        "xn--mgbh0fb.xn--kgbechtv",
        "xn--ll-0ea.test",
        "xn--vek160nc2a.test",
        "a--b.c-d.test",
        "localhost",
        "10.0.0.1",
        "xn--zz.test",
        "ab--cd.test",
        "xn--caf-pia.test",
        &format!("{}.test", "a".repeat(63)),
    ]
    .iter()
    .enumerate()
    {
        write("dns_name", &format!("{i:02}"), name.as_bytes());
    }
}
