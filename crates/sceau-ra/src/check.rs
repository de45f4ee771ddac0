//! What the RA checks in a certificate the upstream CA returned, whatever the upstream says:
//! only a certificate that passes every check reaches the client.
//!
//! Invariants (issue 13; agency guide R27, R36, R38, R39):
//! - its public key is the CSR's;
//! - its SAN holds exactly the order's identifiers, no more and no fewer, and any subject
//!   commonName is one of them;
//! - it is a leaf (not a CA, no certificate or CRL signing), within the requested validity (a
//!   backdated notBefore of at most [`BACKDATE_ALLOWANCE`] is accepted, a later notAfter is
//!   not), and its extendedKeyUsage is the profile's: serverAuth, plus clientAuth only in the
//!   server-and-client profile (or when the operator accepts it from an upstream whose
//!   template always adds it);
//! - it chains, through the certificates the upstream sent, to one of the configured upstream
//!   roots, by RFC 5280 path validation (rustls-webpki), at the time of the check.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rustls_pki_types::{CertificateDer, UnixTime};
use sceau_ca::{IssueRequest, Issued, Profile};
use sceau_wire::Identifier;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How much earlier than requested an upstream may start the validity (CAs commonly backdate
/// a little against clock skew).
pub const BACKDATE_ALLOWANCE: time::Duration = time::Duration::hours(1);
/// Clock tolerance on the requested notAfter.
const SKEW: time::Duration = time::Duration::minutes(5);

/// The trust anchors returned certificates must chain to.
pub struct Roots {
    ders: Vec<Vec<u8>>,
}

impl Roots {
    pub fn new(ders: Vec<Vec<u8>>) -> Result<Roots, String> {
        for (i, d) in ders.iter().enumerate() {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(d.as_slice())).map_err(|e| {
                format!("upstream root {} is not a usable certificate: {e:?}", i + 1)
            })?;
        }
        Ok(Roots { ders })
    }

    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }
}

fn normal(id: &Identifier) -> (String, String) {
    let value = match id.kind.as_str() {
        "ip" => id
            .value
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| id.value.clone()),
        _ => id.value.to_ascii_lowercase(),
    };
    (id.kind.clone(), value)
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

/// Checks `leaf_der` (with the certificates `sent` after it, nearest first, roots allowed)
/// against the request; on success the [`Issued`] to hand out, its chain the upstream's
/// intermediates without any root. `Err` says, in one line, why it is refused.
pub fn returned_certificate(
    req: &IssueRequest,
    leaf_der: &[u8],
    sent: &[Vec<u8>],
    roots: &Roots,
    accept_client_auth: bool,
    now: OffsetDateTime,
) -> Result<Issued, String> {
    let info = sceau_ca::inspect::cert_info(leaf_der).map_err(|e| e.to_string())?;
    let (_, cert) = X509Certificate::from_der(leaf_der).map_err(|e| e.to_string())?;
    if info.spki_der != req.public_key_spki_der {
        return Err("it is for another public key than the CSR's".into());
    }
    let wanted: BTreeSet<_> = req.identifiers.iter().map(normal).collect();
    let got: BTreeSet<_> = info.identifiers.iter().map(normal).collect();
    if wanted != got {
        let show = |s: &BTreeSet<(String, String)>| {
            s.iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "its names [{}] are not the order's [{}]",
            show(&got),
            show(&wanted)
        ));
    }
    for cn in cert.subject().iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|e| format!("subject commonName: {e}"))?;
        let as_id = match cn.parse::<IpAddr>() {
            Ok(ip) => ("ip".to_owned(), ip.to_string()),
            Err(_) => ("dns".to_owned(), cn.to_ascii_lowercase()),
        };
        if !wanted.contains(&as_id) {
            return Err(format!(
                "its subject commonName {cn:?} is not one of the order's names"
            ));
        }
    }
    if info.not_before < req.not_before - BACKDATE_ALLOWANCE {
        return Err(format!(
            "its validity starts {} but {} was requested",
            info.not_before, req.not_before
        ));
    }
    if info.not_after > req.not_after + SKEW {
        return Err(format!(
            "its validity ends {} but {} was requested (R39)",
            info.not_after, req.not_after
        ));
    }
    let mut server_auth = false;
    let mut client_auth = false;
    let mut other_eku = Vec::new();
    let mut aki = None;
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0);
            }
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err("it is a CA certificate (basicConstraints CA:TRUE)".into());
            }
            ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() || ku.crl_sign() => {
                return Err("its keyUsage allows signing certificates or CRLs".into());
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                server_auth |= eku.server_auth;
                client_auth |= eku.client_auth;
                if eku.any {
                    other_eku.push("anyExtendedKeyUsage".to_owned());
                }
                for (flag, name) in [
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ] {
                    if flag {
                        other_eku.push(name.to_owned());
                    }
                }
                other_eku.extend(eku.other.iter().map(|o| o.to_id_string()));
            }
            _ => {}
        }
    }
    if !server_auth {
        return Err("its extendedKeyUsage lacks serverAuth (R38)".into());
    }
    if client_auth && req.profile == Profile::Server && !accept_client_auth {
        return Err(format!(
            "its extendedKeyUsage has clientAuth, outside the {} profile",
            req.profile
        ));
    }
    if !other_eku.is_empty() {
        return Err(format!(
            "its extendedKeyUsage has {}, outside the {} profile",
            other_eku.join(", "),
            req.profile
        ));
    }
    let intermediates: Vec<CertificateDer<'_>> = sent
        .iter()
        .filter(|d| d.as_slice() != leaf_der)
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let root_ders: Vec<CertificateDer<'_>> = roots
        .ders
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let leaf = CertificateDer::from(leaf_der);
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("{e:?}"))?;
    let when = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now.unix_timestamp().max(0) as u64,
    ));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        when,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("it does not chain to the configured upstream roots ({e:?})"))?;
    let issuer_id = match aki {
        Some(k) => sceau_wire::hex::encode(k),
        None => return Err("it has no authorityKeyIdentifier (RFC 5280 §4.2.1.1)".into()),
    };
    let mut chain_pem = sceau_wire::key::pem_encode("CERTIFICATE", leaf_der);
    for d in sent.iter().filter(|d| d.as_slice() != leaf_der) {
        let self_signed = X509Certificate::from_der(d).is_ok_and(|(_, c)| is_self_signed(&c));
        if !self_signed {
            chain_pem.push_str(&sceau_wire::key::pem_encode("CERTIFICATE", d));
        }
    }
    Ok(Issued {
        der: leaf_der.to_vec(),
        chain_pem,
        alternate_chains: Vec::new(),
        serial_hex: info.serial_hex,
        not_before: info.not_before,
        not_after: info.not_after,
        ari_id: info.ari_id.unwrap_or_default(),
        issuer_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };

    /// A root and an issuing CA below it (rcgen: a second implementation of the encoding).
    struct Pki {
        root_der: Vec<u8>,
        issuing_der: Vec<u8>,
        issuing: Issuer<'static, KeyPair>,
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        p
    }

    fn make_pki(cn: &str) -> Pki {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params(cn);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let issuing_key = KeyPair::generate().unwrap();
        let issuing_params = ca_params(&format!("{cn} issuing"));
        let issuing = issuing_params
            .signed_by(&issuing_key, &root_issuer)
            .unwrap();
        Pki {
            root_der: root.der().to_vec(),
            issuing_der: issuing.der().to_vec(),
            issuing: Issuer::new(issuing_params, issuing_key),
        }
    }

    fn request(key: &KeyPair, names: &[&str], days: i64) -> IssueRequest {
        let now = OffsetDateTime::now_utc();
        IssueRequest {
            public_key_spki_der: rcgen::PublicKeyData::subject_public_key_info(key),
            identifiers: names.iter().map(|n| Identifier::guess(n)).collect(),
            not_before: now - time::Duration::minutes(1),
            not_after: now + time::Duration::days(days),
            profile: Profile::Server,
            serial: None,
            crl_shard: None,
            csr_der: None,
            gate: None,
            resume: None,
        }
    }

    /// A leaf as a well-behaved upstream makes it; `edit` spoils it for a test.
    fn leaf(
        pki: &Pki,
        key: &KeyPair,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = now + time::Duration::days(30);
        edit(&mut p);
        p.signed_by(key, &pki.issuing).unwrap().der().to_vec()
    }

    fn check(
        pki: &Pki,
        req: &IssueRequest,
        der: &[u8],
        accept_client_auth: bool,
    ) -> Result<Issued, String> {
        let roots = Roots::new(vec![pki.root_der.clone()]).unwrap();
        let sent = vec![pki.issuing_der.clone(), pki.root_der.clone()];
        returned_certificate(
            req,
            der,
            &sent,
            &roots,
            accept_client_auth,
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn a_good_certificate_is_handed_out_with_the_intermediate_and_no_root() {
        let pki = make_pki("Good");
        let key = KeyPair::generate().unwrap();
        let req = request(&key, &["a.test", "10.0.0.1", "2001:db8::1"], 90);
        let der = leaf(
            &pki,
            &key,
            &["a.test", "10.0.0.1", "2001:0db8:0:0::1"],
            |_| {},
        );
        let issued = check(&pki, &req, &der, false).unwrap();
        assert_eq!(issued.der, der);
        let chain = sceau_wire::key::pem_decode_all(&issued.chain_pem, "CERTIFICATE");
        assert_eq!(chain, vec![der.clone(), pki.issuing_der.clone()]);
        let info = sceau_ca::inspect::cert_info(&der).unwrap();
        assert_eq!(issued.serial_hex, info.serial_hex);
        assert_eq!(Some(issued.ari_id), info.ari_id);
        // The issuer id is the issuing CA's key identifier, as for a local issuer.
        assert_eq!(issued.issuer_id.len(), 40);
    }

    #[test]
    fn each_fault_is_refused_with_its_reason() {
        let pki = make_pki("Faults");
        let key = KeyPair::generate().unwrap();
        let req = request(&key, &["a.test", "b.test"], 90);
        let names = ["a.test", "b.test"];
        let refused = |der: Vec<u8>, says: &str| {
            let e = check(&pki, &req, &der, false).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        };
        refused(leaf(&pki, &key, &["a.test"], |_| {}), "are not the order's");
        refused(
            leaf(&pki, &key, &["a.test", "b.test", "c.test"], |_| {}),
            "are not the order's",
        );
        let other = KeyPair::generate().unwrap();
        refused(leaf(&pki, &other, &names, |_| {}), "another public key");
        refused(
            leaf(&pki, &key, &names, |p| {
                p.distinguished_name.push(DnType::CommonName, "evil.test")
            }),
            "commonName",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
            "CA certificate",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.key_usages.push(KeyUsagePurpose::KeyCertSign)
            }),
            "keyUsage",
        );
        refused(
            leaf(&pki, &key, &names, |p| p.extended_key_usages = vec![]),
            "lacks serverAuth",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.extended_key_usages
                    .push(ExtendedKeyUsagePurpose::CodeSigning)
            }),
            "codeSigning",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.not_after = OffsetDateTime::now_utc() + time::Duration::days(120)
            }),
            "R39",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.not_before = OffsetDateTime::now_utc() - time::Duration::days(2)
            }),
            "validity starts",
        );
        refused(
            leaf(&pki, &key, &names, |p| {
                p.use_authority_key_identifier_extension = false
            }),
            "authorityKeyIdentifier",
        );
        // Signed by a CA under another root.
        let stranger = make_pki("Stranger");
        refused(leaf(&stranger, &key, &names, |_| {}), "does not chain");
        // Expired by the time it arrives.
        refused(
            leaf(&pki, &key, &names, |p| {
                p.not_before = OffsetDateTime::now_utc() - time::Duration::minutes(50);
                p.not_after = OffsetDateTime::now_utc() - time::Duration::minutes(10);
            }),
            "does not chain",
        );
        refused(b"not a certificate".to_vec(), "");
    }

    #[test]
    fn client_auth_needs_the_profile_or_the_operators_consent() {
        let pki = make_pki("Eku");
        let key = KeyPair::generate().unwrap();
        let mut req = request(&key, &["a.test"], 90);
        let der = leaf(&pki, &key, &["a.test"], |p| {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth)
        });
        let e = check(&pki, &req, &der, false).unwrap_err();
        assert!(e.contains("clientAuth"), "{e}");
        assert!(check(&pki, &req, &der, true).is_ok());
        req.profile = Profile::ServerClient;
        assert!(check(&pki, &req, &der, false).is_ok());
    }

    #[test]
    fn roots_that_are_not_certificates_are_refused() {
        assert!(Roots::new(vec![b"junk".to_vec()]).is_err());
    }
}
