//! The revocation status relying parties get, as stored, on SQLite and on a real PostgreSQL
//! server: CRL shard rows committed by compare-and-swap on their number (a lost race changes
//! nothing), a revocation that marks its shard dirty and deletes the certificate's pre-signed
//! OCSP responses in its own transaction, the lookback of expired certificates, and a `good`
//! OCSP response that cannot be stored once the certificate is revoked.

mod common;

use common::Backend;

use sceau_store::*;

#[tokio::test]
async fn sqlite() {
    crls_and_ocsp(Backend::Sqlite(tempfile::tempdir().unwrap())).await
}

#[tokio::test]
async fn postgres() {
    crls_and_ocsp(Backend::Postgres(sceau_testkit::Postgres::start())).await
}

fn crl(number: i64, this_update: i64) -> StoredCrl {
    StoredCrl {
        number,
        this_update,
        next_update: this_update + 86400,
        der: vec![0x30, 0x03, 0x02, 0x01, number as u8],
    }
}

fn ocsp(tag: u8, now: i64) -> StoredOcsp {
    StoredOcsp {
        der: vec![0x30, 0x01, tag],
        this_update: now,
        next_update: now + 3600,
    }
}

async fn crls_and_ocsp(b: Backend) {
    let store = Store::open(&b.url()).await.unwrap();
    store
        .insert_account(&common::account("a1", "t1"))
        .await
        .unwrap();
    let t = now();
    // Issuer "ab", shard 1 (see common::issue).
    let c1 = common::issue(&store, "a1", &["one.test"], "0a01", t + 86400, t).await;
    let c2 = common::issue(&store, "a1", &["two.test"], "0a02", t + 86400, t).await;
    let expired = common::issue(&store, "a1", &["old.test"], "0a03", t - 7200, t - 9000).await;

    // A shard's first CRL: the placeholder is not served; the CAS from 0 commits.
    store.add_crl_placeholder("ab", 1).await.unwrap();
    store.add_crl_placeholder("ab", 1).await.unwrap();
    assert!(store.crl("ab", 1).await.unwrap().is_none());
    assert!(store.crl_state("ab", 1).await.unwrap().is_none());
    store.commit_crl("ab", 1, 0, 0, &crl(5, t)).await.unwrap();
    assert_eq!(store.crl("ab", 1).await.unwrap(), Some(crl(5, t)));

    // Of two signers that read number 5, the second loses and changes nothing; a number that
    // does not go forward is refused.
    store
        .commit_crl("ab", 1, 5, 0, &crl(7, t + 1))
        .await
        .unwrap();
    let lost = store.commit_crl("ab", 1, 5, 0, &crl(8, t + 2)).await;
    assert!(matches!(lost, Err(StoreError::Conflict(_))), "{lost:?}");
    let back = store.commit_crl("ab", 1, 7, 0, &crl(7, t + 3)).await;
    assert!(matches!(back, Err(StoreError::Conflict(_))), "{back:?}");
    assert_eq!(store.crl("ab", 1).await.unwrap(), Some(crl(7, t + 1)));

    // Pre-signed responses for both certificates.
    for c in [&c1, &c2] {
        for alg in ["sha1", "sha256"] {
            assert!(
                store
                    .put_ocsp_response(&c.serial, alg, &ocsp(1, t), true)
                    .await
                    .unwrap()
            );
        }
    }
    assert!(store.ocsp_response("0a01", "sha1").await.unwrap().is_some());

    // The revocation: the shard is dirty, c1's responses are gone, c2's stay.
    store.revoke_cert(&c1.id, 1, t).await.unwrap();
    store.revoke_cert(&expired.id, 4, t - 8000).await.unwrap();
    let state = store.crl_state("ab", 1).await.unwrap().unwrap();
    assert_eq!((state.number, state.dirty), (7, 2));
    for alg in ["sha1", "sha256"] {
        assert!(store.ocsp_response("0a01", alg).await.unwrap().is_none());
        assert!(store.ocsp_response("0a02", alg).await.unwrap().is_some());
    }
    // A `good` response signed before the revocation cannot be stored after it; `revoked` can.
    assert!(
        !store
            .put_ocsp_response("0a01", "sha1", &ocsp(1, t), true)
            .await
            .unwrap()
    );
    assert!(store.ocsp_response("0a01", "sha1").await.unwrap().is_none());
    assert!(
        store
            .put_ocsp_response("0a01", "sha1", &ocsp(2, t), false)
            .await
            .unwrap()
    );
    let cert = store.ocsp_cert("0a01").await.unwrap().unwrap();
    assert_eq!((cert.revoked_at, cert.reason), (Some(t), Some(1)));
    // Revoking again changes nothing.
    assert!(store.revoke_cert(&c1.id, 4, t + 5).await.is_err());
    assert_eq!(store.crl_state("ab", 1).await.unwrap().unwrap().dirty, 2);

    // What the shard's next CRL lists: the expired certificate only within the lookback.
    let listed = |rows: Vec<RevokedSerial>| -> Vec<(String, Option<i64>)> {
        let mut v: Vec<_> = rows.into_iter().map(|r| (r.serial, r.reason)).collect();
        v.sort();
        v
    };
    assert_eq!(
        listed(store.crl_revoked("ab", 1, t - 86400).await.unwrap()),
        vec![("0a01".to_owned(), Some(1)), ("0a03".to_owned(), Some(4))]
    );
    assert_eq!(
        listed(store.crl_revoked("ab", 1, t - 3600).await.unwrap()),
        vec![("0a01".to_owned(), Some(1))]
    );
    assert!(store.crl_revoked("ab", 2, 0).await.unwrap().is_empty());
    assert!(store.crl_revoked("cd", 1, 0).await.unwrap().is_empty());

    // A commit that read one revocation leaves the other counted: the shard stays dirty.
    store
        .commit_crl("ab", 1, 7, 1, &crl(9, t + 4))
        .await
        .unwrap();
    assert_eq!(store.crl_state("ab", 1).await.unwrap().unwrap().dirty, 1);
    store
        .commit_crl("ab", 1, 9, 1, &crl(10, t + 5))
        .await
        .unwrap();
    assert_eq!(store.crl_state("ab", 1).await.unwrap().unwrap().dirty, 0);
    assert_eq!(store.crl_states().await.unwrap().len(), 1);

    // Expired responses are swept.
    assert!(store.delete_expired_ocsp(t + 7200).await.unwrap() >= 3);
    assert!(
        store
            .ocsp_response("0a02", "sha256")
            .await
            .unwrap()
            .is_none()
    );
}
