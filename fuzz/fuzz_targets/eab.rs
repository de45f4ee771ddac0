//! External account bindings (sceau_wire::eab). The input is `header` "\n" `payload`
//! ["\n" `signature`]: without a signature the harness computes the right MAC, so the checks
//! behind the MAC (URL, nonce, the payload key) are reached; the input is also tried as the
//! binding's JSON object, as it arrives inside newAccount.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use aws_lc_rs::hmac;
use libfuzzer_sys::fuzz_target;
use sceau_wire::jws::Flattened;
use sceau_wire::{Jwk, b64, eab};

fn check(binding: &Flattened) {
    let _ = eab::key_id(binding);
    let account = &common::jwks()[0];
    if eab::verify(binding, &common::EAB_MAC_KEY, common::EAB_URL, account).is_ok() {
        // verify's invariant: the payload is exactly the account key, public members only.
        let payload = b64::decode(&binding.payload).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            Jwk::from_value(value).unwrap().thumbprint(),
            account.thumbprint()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let protected = b64::encode(parts.next().unwrap_or_default());
    let payload = b64::encode(parts.next().unwrap_or_default());
    let signature = match parts.next() {
        Some(sig) => b64::encode(sig),
        None => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &common::EAB_MAC_KEY);
            b64::encode(hmac::sign(
                &key,
                format!("{protected}.{payload}").as_bytes(),
            ))
        }
    };
    check(&Flattened {
        protected,
        payload,
        signature,
    });
    if let Ok(binding) = serde_json::from_slice::<Flattened>(data) {
        check(&binding);
    }
});
