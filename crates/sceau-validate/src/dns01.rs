//! dns-01 (RFC 8555 §8.4).
//!
//! Invariants:
//! - The TXT lookup at `_acme-challenge.<domain>` follows CNAMEs (R62: a CNAME into a dedicated
//!   zone), through the validation DNS only, uncached.
//! - Any one TXT record equal to base64url(SHA-256(key authorization)) validates; others at the
//!   same name are ignored. A wildcard is validated at its base domain.
//! - NXDOMAIN → `dns`; the name exists without TXT → `unauthorized`; only wrong values →
//!   `incorrectResponse`, whose detail counts the records and names the expected value but never
//!   repeats the values found (they are the zone's text, not ours).

use sceau_wire::Identifier;

use crate::dns::Dns;
use crate::{ValidationError, dns01_txt_value, ident};

pub(crate) async fn validate(
    dns: &Dns,
    id: &Identifier,
    key_authorization: &str,
) -> Result<(), ValidationError> {
    let domain = ident::dns01_domain(id)?;
    let name = format!("_acme-challenge.{domain}");
    let values = dns.txt(&name).await?;
    let expected = dns01_txt_value(key_authorization);
    if values.contains(&expected) {
        return Ok(());
    }
    if values.is_empty() {
        return Err(ValidationError::new(
            sceau_wire::ProblemType::Unauthorized,
            format!("dns-01 for {domain}: no TXT record at {name}"),
        ));
    }
    Err(ValidationError::new(
        sceau_wire::ProblemType::IncorrectResponse,
        format!(
            "dns-01 for {domain}: {} TXT record(s) at {name}, none is the expected {expected:?}",
            values.len(),
        ),
    ))
}
