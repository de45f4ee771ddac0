//! `sceau-server admin cert list|show|revoke` against certificates issued by the real server:
//! every filter of the list, the details of one certificate (checked against OpenSSL's reading
//! of the same certificate), revocation of one certificate and the bulk procedures of the
//! agency guide (Annex A.5 by ACME account, A.2 by external account, since a time), the dry
//! run, the confirmation, the audit rows, and bad input that must change nothing.

mod admin_support;
mod support;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use admin_support::*;
use sceau_store::{CertQuery, CrlState, Store};
use sceau_wire::b64;
use serde_json::{Value, json};
use support::{Http01, Raw, Server, issue};

fn der_of(chain: &str) -> Vec<u8> {
    sceau_wire::key::pem_decode_all(chain, "CERTIFICATE").remove(0)
}

fn serial_of(chain: &str) -> String {
    sceau_ca::inspect::cert_info(&der_of(chain))
        .unwrap()
        .serial_hex
}

fn json_of(server: &Server, args: &[&str]) -> Value {
    let text = admin_ok(server, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The serials of a `cert list --json` answer (or of one of a revoke answer's lists).
fn serials(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|c| {
            c.get("serial")
                .unwrap_or(c)
                .as_str()
                .unwrap_or_else(|| panic!("no serial in {c}"))
                .to_owned()
        })
        .collect()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).clone()).collect()
}

fn listed(server: &Server, filters: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["cert", "list", "--json"];
    args.extend(filters);
    serials(&json_of(server, &args))
}

async fn revoke_acme(c: &Raw, chain: &str, reason: u8) -> support::Resp {
    let url = c.dir.revoke_cert.clone();
    c.post(
        &url,
        Some(&json!({"certificate": b64::encode(der_of(chain)), "reason": reason})),
    )
    .await
}

/// Revocation state of every certificate and every CRL shard row: what a refused command
/// must leave exactly as it was.
async fn snapshot(store: &Store) -> (Vec<(String, Option<i64>, Option<i64>)>, Vec<CrlState>) {
    let all = store
        .find_certs(&CertQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.cert.serial, c.cert.revoked_at, c.cert.revocation_reason))
        .collect();
    (all, store.crl_states().await.unwrap())
}

/// Makes sure each certificate's CRL shard has its row (a placeholder if the CRL job has not
/// signed it yet), so that a revocation has a dirty mark to set.
async fn shard_rows(store: &Store, serials: &[&String]) {
    for s in serials {
        let c = store.cert_by_serial(s).await.unwrap();
        let (issuer, shard) = (c.issuer_id.unwrap(), c.crl_shard.unwrap() as u32);
        let exists = store
            .crl_states()
            .await
            .unwrap()
            .iter()
            .any(|r| r.issuer_id == issuer && r.shard == shard);
        if !exists {
            store.add_crl_placeholder(&issuer, shard).await.unwrap();
        }
    }
}

/// The shard of `serial` took the revocation: still dirty, or already signed again by the
/// running server's CRL job (its number moved on).
async fn assert_shard_took_revocation(store: &Store, before: &[CrlState], serial: &str) {
    let c = store.cert_by_serial(serial).await.unwrap();
    let (issuer, shard) = (c.issuer_id.unwrap(), c.crl_shard.unwrap() as u32);
    let find = |rows: &[CrlState]| {
        rows.iter()
            .find(|r| r.issuer_id == issuer && r.shard == shard)
            .cloned()
            .unwrap()
    };
    let (was, now) = (find(before), find(&store.crl_states().await.unwrap()));
    assert!(
        now.dirty > was.dirty || now.number > was.number,
        "shard {shard} of {serial} is neither dirty nor signed again: {was:?} -> {now:?}"
    );
}

/// Waits until Unix time `t` has begun, so that what is issued next is stored at or after it.
fn wait_until(t: i64) {
    while sceau_store::now() < t {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_show_find_certificates_by_every_filter() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    for h in ["www.a.test", "api.a.test", "www.b.test"] {
        server.add_host(h);
    }
    let (kid1, key1) = create_aa(&server, &["www.a.test", "api.a.test"], &[]);
    let (kid2, key2) = create_aa(&server, &["www.b.test"], &[]);
    let a1 = bound_client(&server, &kid1, &key1).await;
    let a2 = bound_client(&server, &kid1, &key1).await;
    let b1 = bound_client(&server, &kid2, &key2).await;
    let (_, chain1) = issue(&a1, &responder, &["www.a.test"]).await;
    let (_, chain2) = issue(&a1, &responder, &["www.a.test", "api.a.test"]).await;
    let (_, chain3) = issue(&a2, &responder, &["api.a.test"]).await;
    let (_, chain4) = issue(&b1, &responder, &["www.b.test"]).await;
    let (s1, s2, s3, s4) = (
        serial_of(&chain1),
        serial_of(&chain2),
        serial_of(&chain3),
        serial_of(&chain4),
    );
    assert_eq!(revoke_acme(&a1, &chain2, 4).await.status, 200);

    let all = json_of(&server, &["cert", "list", "--json"]);
    assert_eq!(serials(&all), set(&[&s1, &s2, &s3, &s4]));
    let c2 = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["serial"] == s2.as_str())
        .unwrap();
    assert_eq!(c2["status"], "revoked", "{c2}");
    assert_eq!(c2["reason"], "superseded");
    assert_eq!(c2["reason_code"], 4);
    assert!(c2["revoked_at"].as_i64().unwrap() > 0);
    // The order's identifiers, which the server keeps sorted.
    assert_eq!(c2["names"], json!(["api.a.test", "www.a.test"]));
    assert_eq!(c2["account"], account_id(&a1).as_str());
    // The URL under the configured base URL (the test server's port is a flag, not config).
    assert!(
        c2["account_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/acme/acct/{}", account_id(&a1)))
    );
    assert_eq!(c2["external_account"], kid1.as_str());
    let info = sceau_ca::inspect::cert_info(&der_of(&chain2)).unwrap();
    assert_eq!(c2["not_after"], info.not_after.unix_timestamp());
    assert_eq!(c2["not_before"], info.not_before.unix_timestamp());

    // By name: exact, in any SAN position, in any case; a name no certificate covers.
    assert_eq!(listed(&server, &["--name", "www.a.test"]), set(&[&s1, &s2]));
    assert_eq!(listed(&server, &["--name", "API.a.test"]), set(&[&s2, &s3]));
    assert!(listed(&server, &["--name", "a.test"]).is_empty());
    assert!(listed(&server, &["--name", "x.www.a.test"]).is_empty());
    // By serial, also as OpenSSL prints it (colons, upper case).
    assert_eq!(listed(&server, &["--serial", &s3]), set(&[&s3]));
    let colons = s3
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(listed(&server, &["--serial", &colons]), set(&[&s3]));
    // By ACME account (id or URL) and by external account.
    assert_eq!(
        listed(&server, &["--account", &account_id(&a2)]),
        set(&[&s3])
    );
    assert_eq!(
        listed(&server, &["--account", a1.kid.as_deref().unwrap()]),
        set(&[&s1, &s2])
    );
    assert_eq!(listed(&server, &["--external", &kid2]), set(&[&s4]));
    assert_eq!(
        listed(&server, &["--external", &kid1]),
        set(&[&s1, &s2, &s3])
    );
    // By status, and filters combined (AND).
    assert_eq!(listed(&server, &["--status", "revoked"]), set(&[&s2]));
    assert_eq!(
        listed(&server, &["--status", "valid"]),
        set(&[&s1, &s3, &s4])
    );
    assert!(listed(&server, &["--status", "expired"]).is_empty());
    assert_eq!(
        listed(&server, &["--external", &kid1, "--status", "valid"]),
        set(&[&s1, &s3])
    );
    assert_eq!(
        listed(&server, &["--name", "www.a.test", "--status", "valid"]),
        set(&[&s1])
    );
    // By expiry and by issuance time.
    assert_eq!(
        listed(&server, &["--expires-before", "2999-01-01"]).len(),
        4
    );
    assert!(listed(&server, &["--expires-within", "1h"]).is_empty());
    assert_eq!(listed(&server, &["--expires-within", "400d"]).len(), 4);
    let after_all = rfc3339(sceau_store::now() + 60);
    assert!(listed(&server, &["--expires-before", &rfc3339(sceau_store::now())]).is_empty());
    assert_eq!(listed(&server, &["--issued-since", "1h"]).len(), 4);
    assert!(listed(&server, &["--issued-since", &after_all]).is_empty());

    // The table for a person.
    let text = admin_ok(&server, &["cert", "list", "--external", &kid1]);
    assert!(text.contains("SERIAL") && text.contains(&s1) && !text.contains(&s4));
    assert!(text.contains("revoked (superseded)"), "{text}");
    assert!(text.contains("3 certificate(s)"), "{text}");

    // show: the details, checked against OpenSSL's reading of the same certificate.
    let shown = json_of(&server, &["cert", "show", &s2, "--json"]);
    assert_eq!(shown["serial"], s2.as_str());
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["reason"], "superseded");
    assert_eq!(shown["external_account"], kid1.as_str());
    assert_eq!(shown["crl_url"], Value::Null, "no public URL in the config");
    let issuer = shown["issuer"].as_str().unwrap();
    let shard = shown["crl_shard"].as_i64().unwrap();
    let pem = shown["pem"].as_str().unwrap();
    assert_eq!(
        sceau_wire::key::pem_decode(pem, "CERTIFICATE").unwrap(),
        der_of(&chain2)
    );
    assert_eq!(shown["chain_pem"], chain2.as_str());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), pem).unwrap();
    let out = Command::new(sceau_testkit::require_tool("openssl"))
        .args(["x509", "-noout", "-serial", "-text", "-in"])
        .arg(dir.path().join("c.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr_line(&out));
    let openssl_serial = text
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(
        openssl_serial.trim_start_matches('0'),
        s2.trim_start_matches('0')
    );
    assert!(
        text.contains(&format!("/crl/{issuer}/{shard}.crl")),
        "the CRL distribution point names the shard show reports: {text}"
    );
    let events: Vec<&str> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"certificate.issued") && events.contains(&"certificate.revoked"),
        "{events:?}"
    );
    // Its serial, as OpenSSL prints it, finds it too; the text form for a person.
    let text = admin_ok(&server, &["cert", "show", &openssl_serial]);
    assert!(text.contains(&format!("Certificate {s2}")), "{text}");
    assert!(text.contains("superseded") && text.contains("BEGIN CERTIFICATE"));
    assert!(text.contains(&format!("CRL shard:     {shard}")), "{text}");

    // Reads are audited with their actor, as every admin command.
    let audit = server.store().await.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "admin.certificates_listed" && e.detail["actor"] == "tester")
    );
    assert!(
        audit
            .iter()
            .any(|e| e.event == "admin.certificate_shown" && e.detail["serial"] == s2.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compromise_procedures_revoke_what_was_issued_since_a_time() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    for h in ["www.a.test", "www.b.test"] {
        server.add_host(h);
    }
    let (kid1, key1) = create_aa(&server, &["www.a.test"], &[]);
    let (kid2, key2) = create_aa(&server, &["www.b.test"], &[]);
    let compromised = bound_client(&server, &kid1, &key1).await;
    let sibling = bound_client(&server, &kid1, &key1).await;
    let other = bound_client(&server, &kid2, &key2).await;
    let store = server.store().await;

    let (_, old) = issue(&compromised, &responder, &["www.a.test"]).await;
    let s_old = serial_of(&old);
    let since = store.cert_by_serial(&s_old).await.unwrap().created_at + 1;
    wait_until(since);
    let (_, new1) = issue(&compromised, &responder, &["www.a.test"]).await;
    let (_, new2) = issue(&compromised, &responder, &["www.a.test"]).await;
    let (_, sib) = issue(&sibling, &responder, &["www.a.test"]).await;
    let (_, oth) = issue(&other, &responder, &["www.b.test"]).await;
    let (s1, s2, s_sib, s_oth) = (
        serial_of(&new1),
        serial_of(&new2),
        serial_of(&sib),
        serial_of(&oth),
    );
    shard_rows(&store, &[&s_old, &s1, &s2, &s_sib, &s_oth]).await;
    let t = rfc3339(since);
    let acct = account_id(&compromised);

    // Annex A.5 step 2, first as a dry run: exactly what would be revoked, nothing changed.
    let before = snapshot(&store).await;
    let dry = json_of(
        &server,
        &[
            "cert",
            "revoke",
            "--account",
            &acct,
            "--since",
            &t,
            "--reason",
            "keyCompromise",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(serials(&dry["would_revoke"]), set(&[&s1, &s2]), "{dry}");
    assert_eq!(
        snapshot(&store).await,
        before,
        "the dry run changed something"
    );
    let text = admin_ok(
        &server,
        &[
            "cert",
            "revoke",
            "--account",
            &acct,
            "--since",
            &t,
            "--reason",
            "1",
            "--dry-run",
        ],
    );
    assert!(
        text.contains("Would revoke 2 certificate(s), reason keyCompromise"),
        "{text}"
    );
    assert!(text.contains(&s1) && !text.contains(&s_old), "{text}");
    // Without --yes a bulk revocation is refused.
    let out = admin(
        &server,
        &[
            "cert",
            "revoke",
            "--account",
            &acct,
            "--since",
            &t,
            "--reason",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr_line(&out).contains("needs --yes"),
        "{}",
        stderr_line(&out)
    );
    assert_eq!(snapshot(&store).await, before);

    // For real, by another administrator, with a comment.
    let out = admin_as(
        &server,
        "alice",
        &[
            "cert",
            "revoke",
            "--account",
            a_url(&compromised),
            "--since",
            &t,
            "--reason",
            "keyCompromise",
            "--comment",
            "account key found on a stolen laptop",
            "--yes",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr_line(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(serials(&done["revoked"]), set(&[&s1, &s2]), "{done}");
    // The account was not deactivated first: the command says so.
    assert!(
        stderr_line(&out).contains("still valid"),
        "{}",
        stderr_line(&out)
    );
    for s in [&s1, &s2] {
        let c = store.cert_by_serial(s).await.unwrap();
        assert!(c.revoked_at.is_some());
        assert_eq!(c.revocation_reason, Some(1));
        assert_shard_took_revocation(&store, &before.1, s).await;
    }
    for s in [&s_old, &s_sib, &s_oth] {
        assert!(
            store.cert_by_serial(s).await.unwrap().revoked_at.is_none(),
            "{s} revoked"
        );
    }
    let audit = store.audit_events(None, 0).await.unwrap();
    let rows: Vec<_> = audit
        .iter()
        .filter(|e| e.event == "certificate.revoked" && e.detail["by"] == "admin:alice")
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for e in rows {
        assert_eq!(e.detail["actor"], "alice");
        assert_eq!(e.detail["reason"], 1);
        assert_eq!(e.detail["reason_name"], "keyCompromise");
        assert_eq!(e.detail["comment"], "account key found on a stolen laptop");
        assert_eq!(e.detail["procedure"], "acme_account");
        assert_eq!(e.account_id.as_deref(), Some(acct.as_str()));
    }
    // ACME clients see the revocation: revoking again is alreadyRevoked.
    let r = revoke_acme(&compromised, &new1, 0).await;
    assert_eq!(r.problem_type(), "alreadyRevoked", "{}", body(&r));

    // Annex A.2 C.a: everything the external account's accounts obtained since T; the two
    // already revoked are skipped and counted, the one from before T and the other AA's stay.
    let before = snapshot(&store).await;
    let done = json_of(
        &server,
        &[
            "cert",
            "revoke",
            "--external",
            &kid1,
            "--since",
            &t,
            "--reason",
            "cessationOfOperation",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(serials(&done["revoked"]), set(&[&s_sib]), "{done}");
    assert_eq!(serials(&done["skipped_already_revoked"]), set(&[&s1, &s2]));
    assert_shard_took_revocation(&store, &before.1, &s_sib).await;
    assert_eq!(
        store
            .cert_by_serial(&s_sib)
            .await
            .unwrap()
            .revocation_reason,
        Some(5)
    );
    assert_eq!(
        store.cert_by_serial(&s1).await.unwrap().revocation_reason,
        Some(1),
        "a revoked certificate keeps its first reason"
    );
    assert!(
        store
            .cert_by_serial(&s_old)
            .await
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        store
            .cert_by_serial(&s_oth)
            .await
            .unwrap()
            .revoked_at
            .is_none()
    );
    let text = admin_ok(
        &server,
        &[
            "cert",
            "revoke",
            "--external",
            &kid1,
            "--since",
            &t,
            "--reason",
            "1",
            "--dry-run",
        ],
    );
    assert!(
        text.contains("Would revoke 0") && text.contains("3 already revoked"),
        "{text}"
    );

    // One certificate by serial.
    let before = snapshot(&store).await;
    let text = admin_ok(
        &server,
        &[
            "cert",
            "revoke",
            "--serial",
            &s_oth,
            "--reason",
            "privilegeWithdrawn",
        ],
    );
    assert!(
        text.contains("Revoked 1 certificate(s), reason privilegeWithdrawn"),
        "{text}"
    );
    assert_eq!(
        store
            .cert_by_serial(&s_oth)
            .await
            .unwrap()
            .revocation_reason,
        Some(9)
    );
    assert_shard_took_revocation(&store, &before.1, &s_oth).await;
    assert_eq!(
        revoke_acme(&other, &oth, 0).await.problem_type(),
        "alreadyRevoked"
    );
    // Again: a clear error, nothing changed.
    let before = snapshot(&store).await;
    let out = admin(
        &server,
        &["cert", "revoke", "--serial", &s_oth, "--reason", "1"],
    );
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(
        line.contains("already revoked") && !line.contains('\n'),
        "{line}"
    );
    assert_eq!(snapshot(&store).await, before);
    assert_eq!(
        listed(&server, &["--status", "revoked"]),
        set(&[&s1, &s2, &s_sib, &s_oth])
    );
}

fn a_url(c: &Raw) -> &str {
    c.kid.as_deref().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_error_line_and_changes_nothing() {
    let mut server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let (_, chain) = issue(&c, &responder, &["www.a.test"]).await;
    let s = serial_of(&chain);
    let acct = account_id(&c);
    let store = server.store().await;
    shard_rows(&store, &[&s]).await;
    // No server jobs run meanwhile: the CRL rows can only change by the commands below.
    server.kill();
    let before = snapshot(&store).await;
    let audit_before = store.audit_events(None, 0).await.unwrap().len();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["revoke", "--serial", "0badc0de", "--reason", "1"],
            "no certificate with serial",
        ),
        (
            vec!["revoke", "--serial", "zz:12", "--reason", "1"],
            "not a serial number",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "certificateHold"],
            "certificateHold (6) is refused",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "6"],
            "certificateHold (6) is refused",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "cACompromise"],
            "cACompromise (2) does not apply to an end-entity",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "aACompromise"],
            "does not apply to an end-entity",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "removeFromCRL"],
            "removeFromCRL (8) does not apply",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "7"],
            "unknown revocation reason",
        ),
        (
            vec!["revoke", "--serial", &s, "--reason", "key compromise"],
            "unknown revocation reason",
        ),
        (
            vec![
                "revoke",
                "--account",
                "AAAAnosuchaccount",
                "--reason",
                "1",
                "--yes",
            ],
            "no ACME account",
        ),
        (
            vec![
                "revoke",
                "--external",
                "nosuchkid",
                "--since",
                "1d",
                "--reason",
                "1",
                "--yes",
            ],
            "no external account",
        ),
        (
            vec![
                "revoke",
                "--account",
                &acct,
                "--since",
                "yesterday",
                "--reason",
                "1",
                "--yes",
            ],
            "--since \"yesterday\" is not a time",
        ),
        (
            vec![
                "revoke",
                "--account",
                &acct,
                "--since",
                "2026-13-01",
                "--reason",
                "1",
                "--yes",
            ],
            "is not a time",
        ),
        (
            vec!["revoke", "--account", &acct, "--reason", "1"],
            "needs --yes",
        ),
        (
            vec![
                "revoke",
                "--account",
                &acct,
                "--reason",
                "1",
                "--dry-run",
                "--yes",
            ],
            "conflict",
        ),
        (
            vec![
                "revoke",
                "--serial",
                &s,
                "--account",
                &acct,
                "--reason",
                "1",
            ],
            "conflict",
        ),
        (
            vec![
                "revoke",
                "--account",
                &acct,
                "--external",
                &kid,
                "--reason",
                "1",
                "--yes",
            ],
            "conflict",
        ),
        (
            vec!["revoke", "--serial", &s, "--since", "1d", "--reason", "1"],
            "--since applies",
        ),
        (vec!["revoke", "--reason", "1"], "say what to revoke"),
        (vec!["revoke", "--serial", &s], "--reason is required"),
        (vec!["list", "--status", "bogus"], "--status \"bogus\""),
        (
            vec!["list", "--expires-before", "7d"],
            "--expires-before \"7d\" is not a time",
        ),
        (
            vec![
                "list",
                "--expires-before",
                "2030-01-01",
                "--expires-within",
                "1d",
            ],
            "conflict",
        ),
        (
            vec!["list", "--expires-within", "soon"],
            "is not a duration",
        ),
        (vec!["list", "--issued-since", "last week"], "is not a time"),
        (
            vec!["list", "--account", "AAAAnosuchaccount"],
            "no ACME account",
        ),
        (
            vec!["list", "--external", "nosuchkid"],
            "no external account",
        ),
        (vec!["show", "0badc0de"], "no certificate with serial"),
    ];
    for (args, expected) in &cases {
        let mut full = vec!["cert"];
        full.extend(args.iter().copied());
        let out = admin(&server, &full);
        let line = stderr_line(&out);
        assert!(!out.status.success(), "{full:?} accepted");
        assert_eq!(line.lines().count(), 1, "{full:?}: not one line: {line}");
        assert!(line.contains(expected), "{full:?}: {line}");
        assert!(out.stdout.is_empty(), "{full:?} printed a result");
        assert_eq!(snapshot(&store).await, before, "{full:?} changed something");
    }
    // Each refusal is in the audit trail (as for every admin command), and nothing else is.
    let audit = store.audit_events(None, 0).await.unwrap();
    assert_eq!(audit.len(), audit_before + cases.len());
    assert!(
        audit[audit_before..]
            .iter()
            .all(|e| e.event == "admin.refused")
    );
    assert!(!audit.iter().any(|e| e.event == "certificate.revoked"));
}
