//! Certificate profiles: the leaf profile of R38/R39 and the two CA certificates.
//!
//! Leaf (RFC 5280 §4.1, §4.2; CA/B BR §7.1): version 3; 16-octet positive random serial from
//! the OS CSPRNG (>= 64 random bits, BR §7.1); subject CN = the first DNS identifier when it
//! fits (ub-common-name 64, RFC 5280 App. A) else an empty subject; SAN with every identifier,
//! critical when the subject is empty (RFC 5280 §4.2.1.6); basicConstraints CA:FALSE critical;
//! keyUsage critical: digitalSignature, plus keyEncipherment for RSA (RSA key transport in TLS
//! 1.2); extendedKeyUsage serverAuth (+ clientAuth); AKI = issuer's SKI; SKI = RFC 7093
//! method 1 over the subject key.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyIdMethod, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::keys::KeyType;
use crate::names::SanName;
use crate::{CaError, Profile};

/// R39: a leaf certificate is valid for 90 days at most (not_after - not_before).
pub const MAX_LEAF_VALIDITY: Duration = Duration::days(90);
/// Lifetime of the server's own HTTPS certificate.
pub const SERVER_TLS_VALIDITY: Duration = Duration::days(90);
/// The server's own certificate is replaced when it has less than this left.
pub const SERVER_TLS_RENEW_BEFORE: Duration = Duration::days(30);

pub(crate) const ROOT_VALIDITY: Duration = Duration::days(3653);
pub(crate) const INTERMEDIATE_VALIDITY: Duration = Duration::days(1826);
/// CA certificates start a little in the past so that a client with a slow clock accepts them.
pub(crate) const CA_BACKDATE: Duration = Duration::minutes(5);

/// RFC 5280 App. A: ub-common-name.
const MAX_CN_LEN: usize = 64;

/// 16 random octets, top bit cleared so the INTEGER is positive (RFC 5280 §4.1.2.2), first
/// octet non-zero so the DER content is always exactly 16 octets.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| CaError::Signing("the OS random source failed".into()))?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 1;
    }
    Ok(SerialNumber::from_slice(&serial))
}

/// A serial number chosen by the issuance queue: 1 to 20 octets (RFC 5280 §4.1.2.2), positive
/// (top bit of the first octet clear), minimally encoded (first octet non-zero).
pub(crate) fn check_serial(octets: &[u8]) -> Result<SerialNumber, CaError> {
    if octets.is_empty() || octets.len() > 20 || octets[0] == 0 || octets[0] & 0x80 != 0 {
        return Err(CaError::InvalidRequest(format!(
            "serial number of {} octets is not a positive, minimally encoded INTEGER of at most 20 octets",
            octets.len()
        )));
    }
    Ok(SerialNumber::from_slice(octets))
}

/// What a staging CA's names and leaves carry (agency guide R53, R54), so that nobody takes
/// them for production.
pub const TEST_MARK: &str = "TEST - do not trust";

/// A staging leaf says TEST in its subject.
pub(crate) fn mark_test(params: &mut CertificateParams) {
    params
        .distinguished_name
        .push(DnType::OrganizationName, TEST_MARK);
}

/// Drops the sub-second part: certificates carry whole seconds.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).expect("0 is a valid nanosecond")
}

pub(crate) fn leaf_params(
    names: &[SanName],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    profile: Profile,
    key: KeyType,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.not_before = whole_seconds(not_before);
    params.not_after = whole_seconds(not_after);
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    let first_dns = names.iter().find_map(|n| match n {
        SanName::Dns(d) if d.len() <= MAX_CN_LEN => Some(d.clone()),
        _ => None,
    });
    if let Some(cn) = first_dns {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = names
        .iter()
        .map(|n| match n {
            SanName::Dns(d) => d.clone().try_into().map(SanType::DnsName),
            SanName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    // ExplicitNoCa writes basicConstraints (critical, cA absent = FALSE) and the SKI.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if profile == Profile::ServerClient {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

fn ca_params(
    cn: String,
    org: &str,
    now: OffsetDateTime,
    lifetime: Duration,
    staging: bool,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.not_before = whole_seconds(now - CA_BACKDATE);
    params.not_after = whole_seconds(now + lifetime);
    params.serial_number = Some(random_serial()?);
    params.distinguished_name = DistinguishedName::new();
    if !org.is_empty() {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    if staging {
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, TEST_MARK);
    }
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// Self-signed root: CA without a path length limit, keyCertSign + cRLSign (RFC 5280 §4.2.1.3).
pub(crate) fn root_params(
    org: &str,
    now: OffsetDateTime,
    staging: bool,
) -> Result<CertificateParams, CaError> {
    let name = if staging {
        "Sceau TEST Root CA"
    } else {
        "Sceau Root CA"
    };
    let mut params = ca_params(
        format!("{org} {name}").trim().to_owned(),
        org,
        now,
        ROOT_VALIDITY,
        staging,
    )?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(params)
}

/// Issuing intermediate (R30): pathLenConstraint 0 so it can only sign leaves; EKU limited to
/// TLS server and client so that a leaf for anything else fails chain validation.
/// `generation` counts the issuers of a CA (`ca rotate` makes the next): from the second on, it
/// ends the common name, so that two issuers of one CA are told apart by their names too.
pub(crate) fn intermediate_params(
    org: &str,
    now: OffsetDateTime,
    staging: bool,
    generation: usize,
) -> Result<CertificateParams, CaError> {
    let name = if staging {
        "Sceau TEST Issuing CA"
    } else {
        "Sceau Issuing CA"
    };
    let cn = match generation {
        0 | 1 => format!("{org} {name}"),
        n => format!("{org} {name} {n}"),
    };
    let mut params = ca_params(
        cn.trim().to_owned(),
        org,
        now,
        INTERMEDIATE_VALIDITY,
        staging,
    )?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The request a delegated CA sends the existing PKI: its subject, and the extensions an
/// issuing CA for leaves needs (the PKI decides what it signs; `ca import` checks what it did).
pub(crate) fn delegated_request_params(
    dn: DistinguishedName,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The authorityInfoAccess extension naming the OCSP responder (RFC 5280 §4.2.2.1):
/// `SEQUENCE { SEQUENCE { id-ad-ocsp, [6] IA5String url } }`, not critical.
pub(crate) fn ocsp_access(url: &str) -> rcgen::CustomExtension {
    // id-ad-ocsp 1.3.6.1.5.5.7.48.1
    let method = crate::der::tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
    let location = crate::der::tlv(0x86, url.as_bytes());
    let description = crate::der::tlv(0x30, &[method, location].concat());
    let mut ext = rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        crate::der::tlv(0x30, &description),
    );
    ext.set_criticality(false);
    ext
}
