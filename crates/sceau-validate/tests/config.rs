//! Defaults and the system-resolver mode.

use std::time::Duration;

use sceau_validate::{Validator, ValidatorConfig};

#[tokio::test]
async fn defaults_follow_the_rfcs_and_system_resolver_builds() {
    let cfg = ValidatorConfig::default();
    assert_eq!(cfg.dns_server, None);
    assert_eq!(cfg.http01_port, 80); // RFC 8555 §8.3
    assert_eq!(cfg.tlsalpn01_port, 443); // RFC 8737 §3
    assert_eq!(cfg.timeout, Duration::from_secs(10));
    assert!(cfg.caa_identities.is_empty());
    assert_eq!(cfg.address_policy, sceau_validate::AddressPolicy::default());
    let v = Validator::new(cfg).expect("system resolver from /etc/resolv.conf");
    // Clones share one client and resolver and keep the configuration.
    let c = v.clone();
    assert_eq!(c.config().http01_port, 80);
}
