//! One issuance from order to downloaded chain (RFC 8555 §7.1 overview, steps in §7.4–7.5).
//!
//! Invariants:
//! - With [`KeySource::Generate`], a new key pair is made for this certificate and never
//!   reused (R66); the returned chain is checked to certify exactly that key.
//! - Challenges are cleaned up whatever the outcome (R64).
//! - Nothing is written to disk here: the caller installs the result only when it is complete.

use std::time::{Duration, Instant};

use sceau_wire::{
    AccountKey, AuthorizationStatus, AutoRenewal, ChallengeStatus, Identifier, KeyKind, NewOrder,
    OrderStatus, ProblemType,
};

use crate::account::Account;
use crate::certinfo::CertInfo;
use crate::client::AcmeClient;
use crate::csr;
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::solver::{ChallengeTask, Plan, Presented};

/// Where the certificate key comes from.
pub enum KeySource {
    /// A fresh key of this type (the default and R66's rule).
    Generate(KeyKind),
    /// An existing key (explicit opt-in; the caller logs a warning).
    Reuse(AccountKey),
    /// A CSR made elsewhere; the key stays on its machine.
    Csr(Vec<u8>),
}

pub struct IssueRequest {
    pub identifiers: Vec<Identifier>,
    pub key: KeySource,
    pub plan: Plan,
    /// RFC 9773 §5: the ARI identifier of the certificate this one replaces.
    pub replaces: Option<String>,
    pub profile: Option<String>,
    /// RFC 8739: order a STAR series with these terms instead of one certificate.
    pub auto_renewal: Option<AutoRenewal>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct Issued {
    pub order_url: String,
    pub certificate_url: String,
    pub chain_pem: String,
    /// PKCS#8 PEM of the certificate key; `None` for a CSR made elsewhere.
    pub key_pem: Option<String>,
    pub info: CertInfo,
    /// A STAR order: the terms the server agreed (RFC 8739 §3.1.1); `certificate_url` is then
    /// the series' rolling star-certificate URL.
    pub auto_renewal: Option<AutoRenewal>,
}

/// Runs one order to completion.
pub async fn issue(
    client: &AcmeClient,
    account: &Account,
    request: IssueRequest,
    events: &EventSink,
) -> Result<Issued> {
    if request.identifiers.is_empty() {
        return Err(Error::Config(
            "no identifier to certify: give at least one --domain".into(),
        ));
    }
    let deadline = Instant::now() + request.timeout;
    let mut new_order = NewOrder {
        identifiers: request.identifiers.clone(),
        replaces: request.replaces.clone(),
        profile: request.profile.clone(),
        auto_renewal: request.auto_renewal.clone(),
        ..Default::default()
    };
    let order = match client.new_order(account, &new_order).await {
        // RFC 9773 §5: the predecessor was replaced already (by another copy of this state, a
        // restored backup, another client). `replaces` is only a hint to the CA; the
        // certificate is still needed, so order it as a plain new one rather than fail every
        // renewal from now on.
        Err(e)
            if new_order.replaces.is_some()
                && e.problem()
                    .is_some_and(|p| p.is(ProblemType::AlreadyReplaced)) =>
        {
            tracing::warn!(
                replaces = new_order.replaces.as_deref(),
                "the certificate was already replaced; ordering without \"replaces\": {e}"
            );
            new_order.replaces = None;
            client.new_order(account, &new_order).await?
        }
        other => other?,
    };
    events(&Event::OrderCreated {
        order: order.url.clone(),
        identifiers: request
            .identifiers
            .iter()
            .map(|i| i.value.clone())
            .collect(),
    });

    // RFC 8555 §7.5: one authorization per identifier; pick the challenge our plan answers.
    let mut tasks = Vec::new();
    for authz_url in &order.order.authorizations {
        let (authz, _) = client.get_authorization(account, authz_url).await?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let method = request.plan.method_for(&authz.identifier).clone();
        let wanted = method.challenge_type();
        let Some(ch) = authz.challenges.iter().find(|c| c.kind == wanted) else {
            let offered: Vec<&str> = authz.challenges.iter().map(|c| c.kind.as_str()).collect();
            return Err(Error::Challenge {
                identifier: authz.identifier.value.clone(),
                method: method.label().into(),
                detail: format!(
                    "the server does not offer {wanted} (offered: {}); choose another method",
                    offered.join(", ")
                ),
                problem: None,
            });
        };
        let token = ch.token.clone().ok_or_else(|| Error::Challenge {
            identifier: authz.identifier.value.clone(),
            method: method.label().into(),
            detail: "the challenge has no token".into(),
            problem: None,
        })?;
        tasks.push((
            authz_url.clone(),
            ch.url.clone(),
            ChallengeTask {
                identifier: authz.identifier.clone(),
                method,
                key_authorization: account.key_authorization(&token),
                token,
            },
        ));
    }

    let mut presented = Presented::default();
    let outcome = answer_all(client, account, &mut presented, &tasks, deadline, events).await;
    for e in presented.cleanup().await {
        tracing::warn!("{e}");
        events(&Event::Failure {
            name: None,
            error: e.to_string(),
            problem: None,
        });
    }
    outcome?;

    // RFC 8555 §7.4: finalize once the order is ready.
    let order_state = client
        .poll_order(account, &order.url, true, deadline)
        .await?;
    if order_state.status == OrderStatus::Invalid {
        return Err(order_failed(&order_state));
    }
    let (csr_der, key) = match request.key {
        KeySource::Generate(kind) => {
            let key = csr::generate_key(kind)?;
            (csr::build_csr(&key, &request.identifiers)?, Some(key))
        }
        KeySource::Reuse(key) => (csr::build_csr(&key, &request.identifiers)?, Some(key)),
        KeySource::Csr(der) => (der, None),
    };
    let finalized = if order_state.status == OrderStatus::Ready {
        Some(client.finalize(account, &order, &csr_der).await?)
    } else {
        None
    };
    // RFC 8555 §7.4: the finalize answer is the order itself; a CA that signs at once already
    // says valid (or invalid), and polling would only cost a round trip.
    let done = match finalized {
        Some(o)
            if (o.status == OrderStatus::Valid
                && (o.certificate.is_some() || o.star_certificate.is_some()))
                || o.status == OrderStatus::Invalid =>
        {
            o
        }
        _ => {
            client
                .poll_order(account, &order.url, false, deadline)
                .await?
        }
    };
    if done.status != OrderStatus::Valid {
        return Err(order_failed(&done));
    }
    // RFC 8739 §3.1.1: a STAR order names its rolling certificate instead.
    let cert_url = match &request.auto_renewal {
        None => done.certificate.clone(),
        Some(_) => done.star_certificate.clone(),
    }
    .ok_or_else(|| Error::Order("valid order without certificate URL".into()))?;
    let chain = client.download_certificate(account, &cert_url).await?;
    let info = CertInfo::from_pem_chain(&chain.pem)?;
    if let Some(key) = &key {
        let spki = key_spki(key)?;
        if spki != info.public_key_der {
            return Err(Error::Certificate(
                "the issued certificate does not certify the key we generated".into(),
            ));
        }
    }
    Ok(Issued {
        order_url: order.url,
        certificate_url: cert_url,
        chain_pem: chain.pem,
        key_pem: key.map(|k| k.to_pem()),
        info,
        auto_renewal: done.auto_renewal.clone(),
    })
}

fn order_failed(order: &sceau_wire::Order) -> Error {
    match &order.error {
        Some(p) => Error::Order(p.to_string()),
        None => Error::Order("the server marked the order invalid without saying why".into()),
    }
}

async fn answer_all(
    client: &AcmeClient,
    account: &Account,
    presented: &mut Presented,
    tasks: &[(String, String, ChallengeTask)],
    deadline: Instant,
    events: &EventSink,
) -> Result<()> {
    for (_, _, task) in tasks {
        presented.present(task).await?;
    }
    for (_, ch_url, task) in tasks {
        client
            .respond_challenge(account, ch_url)
            .await
            .map_err(|e| Error::Challenge {
                identifier: task.identifier.value.clone(),
                method: task.method.label().into(),
                detail: e.to_string(),
                problem: e.problem().cloned().map(Box::new),
            })?;
        events(&Event::ChallengeAnswered {
            identifier: task.identifier.value.clone(),
            method: task.method.label().into(),
            challenge: ch_url.clone(),
        });
    }
    for (authz_url, ch_url, task) in tasks {
        let authz = client
            .poll_authorization(account, authz_url, deadline)
            .await?;
        if authz.status == AuthorizationStatus::Valid {
            events(&Event::ChallengeValid {
                identifier: task.identifier.value.clone(),
                method: task.method.label().into(),
            });
            continue;
        }
        let ch = authz.challenges.iter().find(|c| c.url == *ch_url);
        let problem = ch.and_then(|c| c.error.clone());
        let detail = match (&problem, ch.map(|c| c.status)) {
            (Some(p), _) => p.to_string(),
            (None, Some(ChallengeStatus::Invalid)) => {
                "the server marked the challenge invalid".into()
            }
            _ => format!("authorization is {:?}", authz.status),
        };
        return Err(Error::Challenge {
            identifier: task.identifier.value.clone(),
            method: task.method.label().into(),
            detail,
            problem: problem.map(Box::new),
        });
    }
    Ok(())
}

/// The DER SubjectPublicKeyInfo of a key, to compare with a certificate's.
pub fn key_spki(key: &AccountKey) -> Result<Vec<u8>> {
    let kp = rcgen::KeyPair::try_from(key.to_pkcs8_der().as_slice())
        .map_err(|e| Error::Key(e.to_string()))?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&kp))
}
