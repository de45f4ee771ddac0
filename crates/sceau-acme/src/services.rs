//! The ACME endpoints as services (RFC 8555 §7; RFC 8738; RFC 9773; draft-ietf-acme-profiles).
//!
//! Invariants:
//! - Validation runs in a spawned task that outlives the request that started it; the request
//!   waits for it at most `validation_wait`, then answers with the challenge as stored.
//! - An order's certificate URL is returned only after the certificate and the order's `valid`
//!   status were committed together.
//! - At start-up [`Acme::recover`] finishes what a crash interrupted: challenges left in
//!   `processing` are validated again, orders left in `processing` are issued from their CSR.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sceau_ca::{IssueRequest, Profile};
use sceau_store::{
    AccountRecord, AuditEntry, AuthzRecord, CertRecord, ChallengeRecord, OrderRecord, StoreError,
    new_id, now,
};
use sceau_wire::types::challenge_type;
use sceau_wire::{
    AccountStatus, AccountUpdate, AuthorizationStatus, AuthorizationUpdate, Directory, Finalize,
    Identifier, Jwk, KeyChange, Meta, NewAccount, NewOrder, OrdersList, ParsedJws, Problem,
    ProblemType, RenewalInfo, Revocation, Subproblem, SuggestedWindow, b64, eab, reason,
};
use serde_json::json;

use crate::render::{self, ts};
use crate::request::{KeyRule, Verified, VerifiedKey, jws_error};
use crate::{Acme, AcmeError, AcmeResult, Body, EabMode, Reply};

/// The POST endpoints, each with the id from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    NewAccount,
    Account(String),
    Orders(String),
    KeyChange,
    NewOrder,
    Order(String),
    Finalize(String),
    Authz(String),
    Challenge(String),
    Cert(String),
    Revoke,
}

impl Endpoint {
    fn key_rule(&self) -> KeyRule {
        match self {
            Endpoint::NewAccount => KeyRule::Jwk,
            Endpoint::Revoke => KeyRule::Either,
            _ => KeyRule::Kid,
        }
    }
}

pub const PROFILE_SERVER: &str = "tls-server";
pub const PROFILE_SERVER_CLIENT: &str = "tls-server-client";
const ORDERS_PAGE: i64 = 100;

fn key_authorization(token: &str, jwk: &Jwk) -> String {
    // RFC 8555 §8.1
    format!("{token}.{}", jwk.thumbprint())
}

fn random_token() -> String {
    // RFC 8555 §8.3: at least 128 bits of entropy.
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    b64::encode(bytes)
}

fn spki_sha256(spki: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why an order's wildcard names are refused (see `normalise_identifier`).
const NO_WILDCARDS: &str = "wildcard names are not issued (agency guide R42)";
const WILDCARDS_NEED_BINDING: &str = "wildcard names are only issued to accounts bound to an external account that allows them (R42)";

/// Checks and normalises one identifier; the error is the subproblem to report.
/// `wildcard_refusal`: `None` if a leading `*.` label is allowed, else why it is not.
fn normalise_identifier(
    id: &Identifier,
    wildcard_refusal: Option<&str>,
) -> Result<Identifier, Subproblem> {
    let refuse = |kind, detail: &str| Err(Subproblem::new(kind, detail, id.clone()));
    match id.kind.as_str() {
        Identifier::DNS => {
            let name = id.value.to_ascii_lowercase();
            if let Some(base) = name.strip_prefix("*.") {
                if let Some(why) = wildcard_refusal {
                    return refuse(ProblemType::RejectedIdentifier, why);
                }
                // RFC 8555 §7.1.3: the base name must itself be a valid name.
                return match normalise_identifier(&Identifier::dns(base), Some(NO_WILDCARDS)) {
                    Ok(b) => Ok(Identifier::dns(format!("*.{}", b.value))),
                    Err(sub) => Err(Subproblem {
                        identifier: Some(id.clone()),
                        ..sub
                    }),
                };
            }
            if name.is_empty() || name.len() > 253 || name.ends_with('.') {
                return refuse(ProblemType::RejectedIdentifier, "not a valid DNS name");
            }
            for label in name.split('.') {
                if !sceau_wire::is_ldh_label(label) {
                    return refuse(
                        ProblemType::RejectedIdentifier,
                        &format!("DNS label {label:?} is not a valid LDH label"),
                    );
                }
            }
            if name.parse::<IpAddr>().is_ok()
                || name
                    .split('.')
                    .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
            {
                return refuse(
                    ProblemType::RejectedIdentifier,
                    "an IP address must use the \"ip\" identifier type (RFC 8738)",
                );
            }
            Ok(Identifier::dns(name))
        }
        Identifier::IP => match id.value.parse::<IpAddr>() {
            // RFC 8738 §3: the textual form must be canonical (RFC 5952 for IPv6).
            Ok(ip) if ip.to_string() == id.value => Ok(Identifier::ip(ip.to_string())),
            Ok(_) => refuse(
                ProblemType::Malformed,
                "IP address is not in canonical form (RFC 8738 §3)",
            ),
            Err(_) => refuse(ProblemType::Malformed, "not a valid IP address"),
        },
        other => refuse(
            ProblemType::UnsupportedIdentifier,
            &format!("identifier type {other:?} is not supported"),
        ),
    }
}

/// One problem from several subproblems (RFC 8555 §6.7.1): their type if they agree, else
/// `compound`.
fn identifiers_error(subproblems: Vec<Subproblem>) -> AcmeError {
    let first = subproblems[0].kind.clone();
    let kind = if subproblems.iter().all(|s| s.kind == first) {
        ProblemType::from_urn(&first).unwrap_or(ProblemType::RejectedIdentifier)
    } else {
        ProblemType::Compound
    };
    let names: Vec<_> = subproblems
        .iter()
        .filter_map(|s| s.identifier.as_ref().map(|i| i.value.clone()))
        .collect();
    AcmeError::new(kind, format!("cannot issue for {}", names.join(", ")))
        .with_subproblems(subproblems)
}

fn validate_contacts(contacts: &[String]) -> AcmeResult<()> {
    if contacts.len() > 10 {
        return Err(AcmeError::new(
            ProblemType::InvalidContact,
            "at most 10 contacts",
        ));
    }
    for c in contacts {
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(AcmeError::new(
                ProblemType::UnsupportedContact,
                format!("contact {c:?}: only mailto: URLs are supported"),
            ));
        };
        let valid = match addr.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && domain.contains('.')
                    && !addr.contains([',', ' ', '<', '>', '?', '\n'])
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
        if !valid {
            return Err(AcmeError::new(
                ProblemType::InvalidContact,
                format!("contact {c:?} is not a valid email address"),
            ));
        }
    }
    Ok(())
}

impl Acme {
    // ---- entry points -------------------------------------------------------------------

    pub fn directory(&self) -> Directory {
        let u = &self.urls;
        Directory {
            new_nonce: u.new_nonce(),
            new_account: u.new_account(),
            new_order: u.new_order(),
            new_authz: None,
            revoke_cert: u.revoke_cert(),
            key_change: u.key_change(),
            renewal_info: Some(u.renewal_info()),
            meta: Some(Meta {
                terms_of_service: self.config.terms_of_service.clone(),
                website: self.config.website.clone(),
                caa_identities: self.config.caa_identities.clone(),
                external_account_required: self.config.eab == EabMode::Required,
                profiles: [
                    (
                        PROFILE_SERVER.to_owned(),
                        "TLS server certificate: serverAuth, at most 90 days (default)".to_owned(),
                    ),
                    (
                        PROFILE_SERVER_CLIENT.to_owned(),
                        "TLS server and client certificate: serverAuth and clientAuth, for mTLS"
                            .to_owned(),
                    ),
                ]
                .into(),
            }),
        }
    }

    /// Dispatches a POST after verifying it; `url` is the full request URL.
    pub async fn post(
        self: &Arc<Self>,
        endpoint: Endpoint,
        url: &str,
        body: &[u8],
        client_ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        let req = self.verify(url, body, endpoint.key_rule()).await?;
        match endpoint {
            Endpoint::NewAccount => self.new_account(&req, client_ip).await,
            Endpoint::Account(id) => self.account(&req, &id, client_ip).await,
            Endpoint::Orders(id) => self.orders(&req, &id, url).await,
            Endpoint::KeyChange => self.key_change(&req, client_ip).await,
            Endpoint::NewOrder => self.new_order(&req, client_ip).await,
            Endpoint::Order(id) => self.get_order(&req, &id).await,
            Endpoint::Finalize(id) => self.finalize(&req, &id, client_ip).await,
            Endpoint::Authz(id) => self.authz(&req, &id, client_ip).await,
            Endpoint::Challenge(id) => self.challenge(&req, &id, client_ip).await,
            Endpoint::Cert(id) => {
                if !req.jws.is_post_as_get() {
                    return Err(AcmeError::malformed(
                        "certificate download is a POST-as-GET (empty payload)",
                    ));
                }
                let cert = self.owned_cert(req.account()?, &id).await?;
                Ok(self.cert_reply(cert))
            }
            Endpoint::Revoke => self.revoke(&req, client_ip).await,
        }
    }

    /// Certificates are public: unauthenticated GET is also served (as Boulder and Pebble do).
    pub async fn get_certificate(&self, id: &str) -> AcmeResult<Reply> {
        let cert = self.store.cert_by_id(id).await.map_err(|e| match e {
            StoreError::NotFound => AcmeError::not_found("certificate"),
            e => e.into(),
        })?;
        Ok(self.cert_reply(cert))
    }

    fn cert_reply(&self, cert: CertRecord) -> Reply {
        Reply {
            status: 200,
            body: Body::PemChain(cert.chain_pem),
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    async fn audit(
        &self,
        event: &str,
        account: Option<&str>,
        ip: Option<&str>,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            event,
            account_id: account,
            client_ip: ip,
            detail,
        };
        entry.log();
        if let Err(e) = self.store.audit(&entry).await {
            tracing::error!(event, error = %e, "could not write the audit trail");
        }
    }

    // ---- accounts (RFC 8555 §7.3) -------------------------------------------------------

    async fn new_account(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
        let payload: NewAccount = req.payload()?;
        let thumbprint = req.jwk.thumbprint();
        match self.store.account_by_thumbprint(&thumbprint).await {
            Ok(existing) => {
                // §7.3.1: an existing key returns its account, 200 with Location.
                if existing.status == "deactivated" {
                    return Err(AcmeError::unauthorized(
                        "the account of this key is deactivated",
                    ));
                }
                let url = self.urls.account(&existing.id);
                return Ok(Reply::json(200, render::account(&self.urls, &existing)).location(url));
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        if payload.only_return_existing == Some(true) {
            return Err(AcmeError::new(
                ProblemType::AccountDoesNotExist,
                "no account exists with this key",
            ));
        }
        let contact = payload.contact.clone().unwrap_or_default();
        validate_contacts(&contact)?;
        if self.config.terms_of_service.is_some() && payload.terms_of_service_agreed != Some(true) {
            return Err(AcmeError::malformed(
                "the terms of service must be agreed to (termsOfServiceAgreed: true)",
            ));
        }
        let eab_kid = self.check_eab(req, &payload).await?;
        let record = AccountRecord {
            id: new_id(),
            thumbprint,
            jwk: serde_json::to_string(&req.jwk).expect("jwk serialises"),
            status: "valid".into(),
            contact,
            tos_agreed: payload.terms_of_service_agreed == Some(true),
            eab_kid: eab_kid.clone(),
            created_at: now(),
            created_ip: ip.map(str::to_owned),
        };
        match self.store.insert_account(&record).await {
            Ok(()) => {}
            // Two newAccount requests with one key raced; the other won. Answer as §7.3.1 does.
            Err(StoreError::Conflict(_)) => {
                let existing = self.store.account_by_thumbprint(&record.thumbprint).await?;
                let url = self.urls.account(&existing.id);
                return Ok(Reply::json(200, render::account(&self.urls, &existing)).location(url));
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            "account.created",
            Some(&record.id),
            ip,
            json!({"eab_kid": eab_kid, "contact": record.contact}),
        )
        .await;
        let mut body = render::account(&self.urls, &record);
        if let Some(binding) = &payload.external_account_binding {
            body.external_account_binding = Some(serde_json::to_value(binding).expect("json"));
        }
        Ok(Reply::json(201, body).location(self.urls.account(&record.id)))
    }

    /// RFC 8555 §7.3.4: the binding must be present when required and verify when present.
    async fn check_eab(&self, req: &Verified, payload: &NewAccount) -> AcmeResult<Option<String>> {
        let Some(binding) = &payload.external_account_binding else {
            if self.config.eab == EabMode::Required {
                return Err(AcmeError::new(
                    ProblemType::ExternalAccountRequired,
                    "this server requires an external account binding (EAB key id and MAC key from your administrator)",
                ));
            }
            return Ok(None);
        };
        if self.config.eab == EabMode::Off {
            return Err(AcmeError::malformed(
                "external account binding is not enabled on this server",
            ));
        }
        let kid = eab::key_id(binding).map_err(|e| AcmeError::malformed(e.to_string()))?;
        let Some(key) = self.policy.mac_key(&kid).await? else {
            return Err(AcmeError::unauthorized(format!(
                "external account {kid:?} is unknown, suspended or expired"
            )));
        };
        eab::verify(binding, &key, &self.urls.new_account(), &req.jwk).map_err(|e| match e {
            eab::EabError::BadMac | eab::EabError::KeyMismatch => {
                AcmeError::unauthorized(e.to_string())
            }
            other => AcmeError::malformed(other.to_string()),
        })?;
        Ok(Some(kid))
    }

    fn own_account<'a>(&self, req: &'a Verified, id: &str) -> AcmeResult<&'a AccountRecord> {
        let account = req.account()?;
        if account.id != id {
            return Err(AcmeError::unauthorized(
                "the account URL does not match the signing account",
            ));
        }
        Ok(account)
    }

    async fn account(&self, req: &Verified, id: &str, ip: Option<&str>) -> AcmeResult<Reply> {
        let account = self.own_account(req, id)?;
        let url = self.urls.account(&account.id);
        if req.jws.is_post_as_get() {
            return Ok(Reply::json(200, render::account(&self.urls, account)).location(url));
        }
        let update: AccountUpdate = req.payload()?;
        match update.status {
            Some(AccountStatus::Deactivated) => {
                // §7.3.6: deactivation by the holder; irreversible.
                self.store
                    .set_account_status(&account.id, "valid", "deactivated")
                    .await?;
                self.audit(
                    "account.deactivated",
                    Some(&account.id),
                    ip,
                    json!({"by": "holder"}),
                )
                .await;
                let updated = self.store.account_by_id(&account.id).await?;
                return Ok(Reply::json(200, render::account(&self.urls, &updated)).location(url));
            }
            Some(other) => {
                return Err(AcmeError::malformed(format!(
                    "an account's status can only be set to \"deactivated\", not {other:?}"
                )));
            }
            None => {}
        }
        if let Some(contact) = &update.contact {
            validate_contacts(contact)?;
            self.store
                .update_account_contact(&account.id, contact)
                .await?;
            self.audit(
                "account.updated",
                Some(&account.id),
                ip,
                json!({"contact": contact}),
            )
            .await;
        }
        let updated = self.store.account_by_id(&account.id).await?;
        Ok(Reply::json(200, render::account(&self.urls, &updated)).location(url))
    }

    async fn orders(&self, req: &Verified, id: &str, url: &str) -> AcmeResult<Reply> {
        let account = self.own_account(req, id)?;
        let page: i64 = url
            .split_once("?page=")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
            .max(0);
        let mut ids = self
            .store
            .order_ids_for_account(&account.id, page * ORDERS_PAGE, ORDERS_PAGE + 1)
            .await?;
        let more = ids.len() as i64 > ORDERS_PAGE;
        ids.truncate(ORDERS_PAGE as usize);
        let list = OrdersList {
            orders: ids.iter().map(|o| self.urls.order(o)).collect(),
        };
        let mut reply = Reply::json(200, list);
        if more {
            reply = reply.link(
                format!("{}?page={}", self.urls.orders(&account.id), page + 1),
                "next",
            );
        }
        Ok(reply)
    }

    /// RFC 8555 §7.3.5, checks 2–9 in the RFC's order.
    async fn key_change(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
        let account = req.account()?;
        let outer: sceau_wire::jws::Flattened = req.payload()?;
        let inner = ParsedJws::from_flattened(outer).map_err(jws_error)?;
        let Some(new_jwk) = inner.header.jwk.clone() else {
            return Err(AcmeError::malformed(
                "the inner JWS of a keyChange must carry the new key as \"jwk\"",
            ));
        };
        if inner.header.kid.is_some() {
            return Err(AcmeError::malformed(
                "the inner JWS must not carry a \"kid\"",
            ));
        }
        if inner.header.nonce.is_some() {
            return Err(AcmeError::malformed(
                "the inner JWS must omit \"nonce\" (RFC 8555 §7.3.5)",
            ));
        }
        new_jwk
            .validate()
            .map_err(|e| AcmeError::new(ProblemType::BadPublicKey, e.to_string()))?;
        inner.verify(&new_jwk).map_err(|e| match e {
            sceau_wire::JwsError::BadSignature(_) => {
                AcmeError::malformed("the inner JWS does not verify with its own key")
            }
            other => jws_error(other),
        })?;
        let change: KeyChange = inner
            .payload_json()
            .map_err(|e| AcmeError::malformed(format!("keyChange payload: {e}")))?;
        if inner.header.url != req.jws.header.url {
            return Err(AcmeError::malformed("inner and outer JWS \"url\" differ"));
        }
        if change.account != self.urls.account(&account.id) {
            return Err(AcmeError::malformed(
                "keyChange \"account\" is not the signing account",
            ));
        }
        if change.old_key.thumbprint() != account.thumbprint {
            return Err(AcmeError::malformed(
                "keyChange \"oldKey\" is not the account's current key",
            ));
        }
        let new_thumbprint = new_jwk.thumbprint();
        if let Ok(other) = self.store.account_by_thumbprint(&new_thumbprint).await {
            let mut err =
                AcmeError::malformed("the new key is already used by an account").with_status(409);
            err.location = Some(self.urls.account(&other.id));
            return Err(err);
        }
        let new_jwk_json = serde_json::to_string(&new_jwk).expect("jwk serialises");
        self.store
            .change_account_key(
                &account.id,
                &account.thumbprint,
                &new_thumbprint,
                &new_jwk_json,
            )
            .await?;
        self.audit(
            "account.key_changed",
            Some(&account.id),
            ip,
            json!({"old": account.thumbprint, "new": new_thumbprint}),
        )
        .await;
        let updated = self.store.account_by_id(&account.id).await?;
        Ok(Reply::json(200, render::account(&self.urls, &updated))
            .location(self.urls.account(&account.id)))
    }

    // ---- orders (RFC 8555 §7.4) ---------------------------------------------------------

    async fn new_order(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
        let account = req.account()?;
        let payload: NewOrder = req.payload()?;
        if payload.identifiers.is_empty() {
            return Err(AcmeError::malformed(
                "an order needs at least one identifier",
            ));
        }
        if payload.identifiers.len() > self.config.max_identifiers {
            return Err(AcmeError::new(
                ProblemType::RejectedIdentifier,
                format!(
                    "at most {} identifiers per order",
                    self.config.max_identifiers
                ),
            ));
        }
        let mut identifiers = BTreeSet::new();
        let mut refused = Vec::new();
        let wildcard_refusal = if !self.config.allow_wildcards {
            Some(NO_WILDCARDS)
        } else if self.config.eab != EabMode::Off && account.eab_kid.is_none() {
            Some(WILDCARDS_NEED_BINDING)
        } else {
            None
        };
        for id in &payload.identifiers {
            match normalise_identifier(id, wildcard_refusal) {
                Ok(n) => {
                    identifiers.insert(n);
                }
                Err(sub) => refused.push(sub),
            }
        }
        if !refused.is_empty() {
            return Err(identifiers_error(refused));
        }
        let profile = match payload.profile.as_deref() {
            None => None,
            Some(p @ (PROFILE_SERVER | PROFILE_SERVER_CLIENT)) => Some(p.to_owned()),
            Some(other) => {
                return Err(AcmeError::new(
                    ProblemType::InvalidProfile,
                    format!("unknown profile {other:?}; see the directory's meta.profiles"),
                ));
            }
        };
        let listed: Vec<Identifier> = identifiers.iter().cloned().collect();
        self.policy.check_identifiers(account, &listed).await?;
        if let Some(p) = &profile {
            self.policy.check_profile(account, p).await?;
        }
        let now = now();
        let (not_before, not_after) = self.check_validity_request(&payload, now)?;
        if let Some(replaces) = &payload.replaces {
            self.check_replaces(account, replaces, &identifiers).await?;
        }
        let identifiers: Vec<Identifier> = identifiers.into_iter().collect();
        let pending_expires = now + self.config.pending_authz_lifetime.as_secs() as i64;
        let mut authz_ids = Vec::with_capacity(identifiers.len());
        let mut new_authzs = Vec::new();
        for ordered in &identifiers {
            // Only dns-01 can prove a wildcard (RFC 8555 §8.3, RFC 8737 §3 exclude them).
            let (id, wildcard) = ordered.authorization_target();
            let id = &id;
            // Reuse a valid authorization that outlives the order (RFC 8555 §7.4 allows it).
            if let Some(existing) = self
                .store
                .reusable_authz(&account.id, id, wildcard, now + 86400)
                .await?
            {
                authz_ids.push(existing);
                continue;
            }
            let authz_id = new_id();
            let kinds: &[&str] = if wildcard {
                &[challenge_type::DNS_01]
            } else if id.is_ip() {
                // RFC 8738 §7: dns-01 does not apply to IP identifiers.
                &[challenge_type::HTTP_01, challenge_type::TLS_ALPN_01]
            } else {
                &[
                    challenge_type::HTTP_01,
                    challenge_type::DNS_01,
                    challenge_type::TLS_ALPN_01,
                ]
            };
            let challenges = kinds
                .iter()
                .map(|k| ChallengeRecord {
                    id: new_id(),
                    authz_id: authz_id.clone(),
                    kind: (*k).to_owned(),
                    status: "pending".into(),
                    validated: None,
                    error: None,
                })
                .collect();
            new_authzs.push(AuthzRecord {
                id: authz_id.clone(),
                account_id: account.id.clone(),
                identifier: id.clone(),
                status: "pending".into(),
                expires: pending_expires,
                token: random_token(),
                wildcard,
                created_at: now,
                challenges,
            });
            authz_ids.push(authz_id);
        }
        let mut order = OrderRecord {
            id: new_id(),
            account_id: account.id.clone(),
            status: "pending".into(),
            expires: now + self.config.order_lifetime.as_secs() as i64,
            identifiers,
            authz_ids,
            not_before,
            not_after,
            profile,
            replaces: payload.replaces.clone(),
            error: None,
            csr: None,
            cert_id: None,
            created_at: now,
        };
        let audit = AuditEntry {
            event: "order.created",
            account_id: Some(&account.id),
            client_ip: ip,
            detail: json!({"order": order.id, "identifiers": order.identifiers, "profile": order.profile, "replaces": order.replaces}),
        };
        self.store.create_order(&order, &new_authzs, &audit).await?;
        audit.log();
        if new_authzs.is_empty() {
            // Every authorization was reused: the order is ready at once.
            order = self.refresh_order(order).await?;
        }
        Ok(
            Reply::json(201, render::order(&self.urls, &order))
                .location(self.urls.order(&order.id)),
        )
    }

    fn check_validity_request(
        &self,
        p: &NewOrder,
        now: i64,
    ) -> AcmeResult<(Option<i64>, Option<i64>)> {
        let nb = p.not_before.map(|t| t.unix_timestamp());
        let na = p.not_after.map(|t| t.unix_timestamp());
        let max = self.config.cert_validity.as_secs() as i64;
        let start = nb.unwrap_or(now);
        if let Some(na) = na {
            if na <= start || na <= now {
                return Err(AcmeError::malformed(
                    "notAfter must be in the future and after notBefore",
                ));
            }
            if na - start > max {
                return Err(AcmeError::malformed(format!(
                    "the requested validity exceeds this server's maximum of {} days",
                    max / 86400
                )));
            }
        }
        if let Some(nb) = nb
            && (nb < now - 3600 || nb > now + self.config.order_lifetime.as_secs() as i64)
        {
            return Err(AcmeError::malformed(
                "notBefore must be between an hour ago and the order's expiry",
            ));
        }
        Ok((nb, na))
    }

    /// RFC 9773 §5: the replaced certificate must be this account's, share an identifier, and
    /// not be replaced already.
    async fn check_replaces(
        &self,
        account: &AccountRecord,
        replaces: &str,
        ids: &BTreeSet<Identifier>,
    ) -> AcmeResult<()> {
        if sceau_wire::types::parse_ari_cert_id(replaces).is_none() {
            return Err(AcmeError::malformed(
                "\"replaces\" is not a certificate identifier (RFC 9773 §4.1)",
            ));
        }
        let cert = match self.store.cert_by_ari_id(replaces).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => {
                return Err(AcmeError::malformed(
                    "\"replaces\" names no certificate issued here",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if cert.account_id != account.id {
            return Err(AcmeError::unauthorized(
                "\"replaces\" names a certificate of another account",
            ));
        }
        let info = sceau_ca::inspect::cert_info(&cert.der)
            .map_err(|e| AcmeError::internal("reading a stored certificate", e))?;
        if !info.identifiers.iter().any(|i| ids.contains(i)) {
            return Err(AcmeError::malformed(
                "the replaced certificate shares no identifier with this order",
            ));
        }
        if let Some(by) = &cert.replaced_by {
            let replacing = self.store.order_by_id(by).await?;
            if replacing.status != "invalid" {
                return Err(AcmeError::new(
                    ProblemType::AlreadyReplaced,
                    "this certificate was already replaced by another order",
                ));
            }
        }
        Ok(())
    }

    async fn owned_order(&self, account: &AccountRecord, id: &str) -> AcmeResult<OrderRecord> {
        match self.store.order_by_id(id).await {
            Ok(o) if o.account_id == account.id => Ok(o),
            Ok(_) | Err(StoreError::NotFound) => Err(AcmeError::not_found("order")),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a pending order on from its authorizations' states (RFC 8555 §7.1.6), and any
    /// order past its expiry to invalid.
    async fn refresh_order(&self, mut order: OrderRecord) -> AcmeResult<OrderRecord> {
        let now = now();
        if matches!(order.status.as_str(), "pending" | "ready") && order.expires <= now {
            let problem = Problem::new(
                ProblemType::Malformed,
                "the order expired before it was finalized",
            );
            return self.transition_order(order, "invalid", Some(problem)).await;
        }
        if order.status != "pending" {
            return Ok(order);
        }
        let authzs = self.store.authzs_by_ids(&order.authz_ids).await?;
        let mut all_valid = true;
        for a in &authzs {
            match render::authz_status(a, now) {
                AuthorizationStatus::Valid => {}
                AuthorizationStatus::Pending => all_valid = false,
                failed => {
                    let error = a
                        .challenges
                        .iter()
                        .find_map(|c| c.error.clone())
                        .unwrap_or_else(|| {
                            Problem::new(
                                ProblemType::Unauthorized,
                                format!("authorization for {} is {failed:?}", a.identifier.value)
                                    .to_lowercase(),
                            )
                        });
                    let problem = Problem::new(
                        ProblemType::Unauthorized,
                        format!("authorization for {} failed", a.identifier.value),
                    )
                    .with_subproblems(vec![Subproblem {
                        kind: error.kind.clone(),
                        detail: error.detail.clone(),
                        identifier: Some(a.identifier.clone()),
                    }]);
                    return self.transition_order(order, "invalid", Some(problem)).await;
                }
            }
        }
        if all_valid {
            order = self.transition_order(order, "ready", None).await?;
        }
        Ok(order)
    }

    async fn transition_order(
        &self,
        mut order: OrderRecord,
        to: &str,
        error: Option<Problem>,
    ) -> AcmeResult<OrderRecord> {
        match self
            .store
            .set_order_status(&order.id, &order.status, to, error.as_ref())
            .await
        {
            Ok(()) => {
                order.status = to.to_owned();
                if error.is_some() {
                    order.error = error;
                }
                Ok(order)
            }
            // Someone else moved it first: their state is the truth.
            Err(StoreError::Conflict(_)) => Ok(self.store.order_by_id(&order.id).await?),
            Err(e) => Err(e.into()),
        }
    }

    fn order_reply(&self, order: &OrderRecord) -> Reply {
        let mut reply =
            Reply::json(200, render::order(&self.urls, order)).location(self.urls.order(&order.id));
        if order.status == "processing" {
            reply = reply.retry_after(1);
        } else if order.status == "pending" {
            reply = reply.retry_after(2);
        }
        reply
    }

    async fn get_order(&self, req: &Verified, id: &str) -> AcmeResult<Reply> {
        let order = self.owned_order(req.account()?, id).await?;
        let order = self.refresh_order(order).await?;
        Ok(self.order_reply(&order))
    }

    // ---- authorizations and challenges (RFC 8555 §7.5) ---------------------------------

    async fn owned_authz(&self, account: &AccountRecord, id: &str) -> AcmeResult<AuthzRecord> {
        match self.store.authz_by_id(id).await {
            Ok(a) if a.account_id == account.id => Ok(a),
            Ok(_) | Err(StoreError::NotFound) => Err(AcmeError::not_found("authorization")),
            Err(e) => Err(e.into()),
        }
    }

    async fn authz(&self, req: &Verified, id: &str, ip: Option<&str>) -> AcmeResult<Reply> {
        let account = req.account()?;
        let authz = self.owned_authz(account, id).await?;
        if !req.jws.is_post_as_get() {
            let update: AuthorizationUpdate = req.payload()?;
            if update.status != AuthorizationStatus::Deactivated {
                return Err(AcmeError::malformed(
                    "an authorization's status can only be set to \"deactivated\"",
                ));
            }
            // §7.5.2: only pending or valid authorizations can be deactivated.
            self.store
                .set_authz_status(&authz.id, &["pending", "valid"], "deactivated")
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => AcmeError::malformed(
                        "only a pending or valid authorization can be deactivated",
                    ),
                    e => e.into(),
                })?;
            self.audit(
                "authz.deactivated",
                Some(&account.id),
                ip,
                json!({"authz": authz.id, "identifier": authz.identifier.value}),
            )
            .await;
        }
        let authz = self.store.authz_by_id(id).await?;
        let mut reply = Reply::json(200, render::authorization(&self.urls, &authz, now()));
        if authz.status == "pending" && authz.challenges.iter().any(|c| c.status == "processing") {
            reply = reply.retry_after(1);
        }
        Ok(reply)
    }

    async fn challenge(
        self: &Arc<Self>,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        let account = req.account()?;
        let challenge = match self.store.challenge_by_id(id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(AcmeError::not_found("challenge")),
            Err(e) => return Err(e.into()),
        };
        let authz = self.owned_authz(account, &challenge.authz_id).await?;
        // §7.5.1: a POST with a JSON object (normally `{}`) asks for validation; POST-as-GET reads.
        let respond = !req.jws.is_post_as_get();
        if respond {
            let _: serde_json::Map<String, serde_json::Value> = req.payload()?;
        }
        let mut finished = None;
        if respond
            && challenge.status == "pending"
            && authz.status == "pending"
            && authz.expires > now()
        {
            finished = self
                .start_validation(account, &authz, &challenge, ip)
                .await?;
        }
        let challenge = match finished {
            Some(c) => c,
            None => self.store.challenge_by_id(id).await?,
        };
        let mut reply = Reply::json(200, render::challenge(&self.urls, &authz.token, &challenge))
            .link(self.urls.authz(&authz.id), "up");
        if challenge.status == "processing" {
            reply = reply.retry_after(1);
        }
        Ok(reply)
    }

    /// Starts a validation and waits for it up to `validation_wait`; returns the finished
    /// challenge if it finished in time.
    async fn start_validation(
        self: &Arc<Self>,
        account: &AccountRecord,
        authz: &AuthzRecord,
        challenge: &ChallengeRecord,
        ip: Option<&str>,
    ) -> AcmeResult<Option<ChallengeRecord>> {
        if let Some(limit) = self.config.max_failed_validations_per_hour {
            let failed = self
                .store
                .failed_validations_since(&account.id, &authz.identifier.value, now() - 3600)
                .await?;
            if failed >= i64::from(limit) {
                self.audit(
                    "validation.rate_limited",
                    Some(&account.id),
                    ip,
                    json!({"identifier": authz.identifier.value, "failed": failed}),
                )
                .await;
                let mut err = AcmeError::new(
                    ProblemType::RateLimited,
                    format!(
                        "{failed} failed validations for {} in the last hour (limit {limit}, agency guide R29); fix the challenge response and retry later",
                        authz.identifier.value
                    ),
                );
                err.retry_after = Some(3600);
                return Err(err);
            }
        }
        match self.store.start_challenge(&challenge.id, &authz.id).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(None), // another request started it
            Err(e) => return Err(e.into()),
        }
        // The outcome is audited in the database; the start only in the log.
        tracing::info!(target: "sceau::audit", event = "validation.started", account = %account.id, client_ip = ip, challenge = %challenge.id, kind = %challenge.kind, identifier = %authz.identifier.value);
        let task = tokio::spawn(Arc::clone(self).validate(
            account.clone(),
            authz.clone(),
            challenge.clone(),
        ));
        Ok(
            match tokio::time::timeout(self.config.validation_wait, task).await {
                Ok(Ok(done)) => done,
                _ => None,
            },
        )
    }

    /// Runs one validation and records its outcome; never fails, errors become the outcome.
    /// Returns the challenge as recorded, or `None` if the outcome could not be recorded.
    async fn validate(
        self: Arc<Self>,
        account: AccountRecord,
        authz: AuthzRecord,
        challenge: ChallengeRecord,
    ) -> Option<ChallengeRecord> {
        let jwk: Jwk = match serde_json::from_str(&account.jwk) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "stored account key is unreadable");
                return None;
            }
        };
        let key_authz = key_authorization(&authz.token, &jwk);
        let id = &authz.identifier;
        let v = &self.validator;
        let result = match challenge.kind.as_str() {
            challenge_type::HTTP_01 => v.http01(id, &authz.token, &key_authz).await,
            challenge_type::DNS_01 => v.dns01(id, &key_authz).await,
            challenge_type::TLS_ALPN_01 => v.tls_alpn01(id, &key_authz).await,
            other => Err(sceau_validate::ValidationError {
                kind: ProblemType::Malformed,
                detail: format!("unknown challenge type {other}"),
            }),
        };
        // RFC 8659 §3 / RFC 8657: CAA is checked once control is shown, before issuance.
        let result = match result {
            Ok(()) if id.is_dns() => {
                // RFC 8659 §4.3: a wildcard is checked against issuewild.
                let caa_id = if authz.wildcard {
                    Identifier::dns(format!("*.{}", id.value))
                } else {
                    id.clone()
                };
                v.caa(&caa_id, &self.urls.account(&account.id), &challenge.kind)
                    .await
            }
            other => other,
        };
        let problem = result.err().map(|e| Problem::new(e.kind, e.detail));
        let outcome = if problem.is_none() {
            "validation.succeeded"
        } else {
            "validation.failed"
        };
        let at = now();
        let audit = AuditEntry {
            event: outcome,
            account_id: Some(&account.id),
            client_ip: None,
            detail: json!({
                "challenge": challenge.id, "type": challenge.kind, "identifier": id.value,
                "error": problem.as_ref().map(|p| p.to_string()),
            }),
        };
        match self
            .store
            .finish_challenge(&challenge.id, &authz.id, problem.as_ref(), at, &audit)
            .await
        {
            Ok(()) => {
                audit.log();
                let valid = problem.is_none();
                Some(ChallengeRecord {
                    status: if valid { "valid" } else { "invalid" }.to_owned(),
                    validated: valid.then_some(at),
                    error: problem,
                    ..challenge
                })
            }
            Err(e) => {
                tracing::warn!(challenge = %challenge.id, error = %e, "validation outcome not recorded");
                None
            }
        }
    }

    // ---- finalize and certificates (RFC 8555 §7.4, §7.4.2) ------------------------------

    async fn finalize(&self, req: &Verified, id: &str, ip: Option<&str>) -> AcmeResult<Reply> {
        let account = req.account()?;
        let order = self.owned_order(account, id).await?;
        let order = self.refresh_order(order).await?;
        if order.status != "ready" {
            let mut err = AcmeError::new(
                ProblemType::OrderNotReady,
                format!(
                    "order is {}, not ready: {}",
                    order.status,
                    match order.status.as_str() {
                        "pending" => "complete its authorizations first",
                        "processing" | "valid" => "it was finalized already",
                        _ => "it failed; create a new order",
                    }
                ),
            );
            if order.status == "processing" {
                err.retry_after = Some(1);
            }
            return Err(err);
        }
        // R35: the allow-list is checked again here; a name removed since newOrder is refused.
        self.policy
            .check_identifiers(account, &order.identifiers)
            .await?;
        let payload: Finalize = req.payload()?;
        let der = b64::decode(&payload.csr)
            .map_err(|_| AcmeError::new(ProblemType::BadCsr, "\"csr\" is not base64url DER"))?;
        let parsed = self.check_csr(&order, &der).await?;
        self.store
            .start_processing(&order.id, &payload.csr)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AcmeError::new(
                    ProblemType::OrderNotReady,
                    "order was finalized concurrently",
                ),
                e => e.into(),
            })?;
        let mut processing = order.clone();
        processing.status = "processing".into();
        let order = self
            .issue(processing, parsed.public_key_spki_der, Some(account), ip)
            .await?;
        Ok(self.order_reply(&order))
    }

    /// RFC 8555 §7.4: the CSR's names must be exactly the order's; key policy; R37.
    async fn check_csr(
        &self,
        order: &OrderRecord,
        der: &[u8],
    ) -> AcmeResult<sceau_ca::csr::ParsedCsr> {
        let parsed = sceau_ca::csr::parse_and_check_with(der, self.config.allow_wildcards)
            .map_err(|e| AcmeError::new(ProblemType::BadCsr, e.to_string()))?;
        let wanted: BTreeSet<Identifier> = order.identifiers.iter().cloned().collect();
        if parsed.identifiers != wanted {
            let extra: Vec<_> = parsed
                .identifiers
                .difference(&wanted)
                .map(|i| i.value.clone())
                .collect();
            let missing: Vec<_> = wanted
                .difference(&parsed.identifiers)
                .map(|i| i.value.clone())
                .collect();
            let mut detail = "the CSR's names must be exactly the order's identifiers".to_owned();
            if !extra.is_empty() {
                detail += &format!("; not in the order: {}", extra.join(", "));
            }
            if !missing.is_empty() {
                detail += &format!("; missing from the CSR: {}", missing.join(", "));
            }
            return Err(AcmeError::new(ProblemType::BadCsr, detail));
        }
        if self.config.refuse_key_reuse
            && self
                .store
                .spki_seen(&spki_sha256(&parsed.public_key_spki_der))
                .await?
        {
            return Err(AcmeError::new(
                ProblemType::BadCsr,
                "this public key was already certified; generate a new key pair for every certificate (agency guide R37)",
            ));
        }
        Ok(parsed)
    }

    /// Signs and stores; the order must be `processing`. On a signing failure the order
    /// becomes invalid with the error.
    async fn issue(
        &self,
        mut order: OrderRecord,
        spki: Vec<u8>,
        account: Option<&AccountRecord>,
        ip: Option<&str>,
    ) -> AcmeResult<OrderRecord> {
        let now_t = time::OffsetDateTime::now_utc();
        let not_before = order
            .not_before
            .map(ts)
            .unwrap_or(now_t - Duration::from_secs(60));
        let not_after = order
            .not_after
            .map(ts)
            .unwrap_or(not_before + self.config.cert_validity);
        let profile = match order.profile.as_deref() {
            Some(PROFILE_SERVER_CLIENT) => Profile::ServerClient,
            _ => Profile::Server,
        };
        let request = IssueRequest {
            public_key_spki_der: spki.clone(),
            identifiers: order.identifiers.clone(),
            not_before,
            not_after,
            profile,
        };
        // R35: last check at the signing gate, after which nothing can change the names.
        let account = match account {
            Some(a) => a.clone(),
            None => self.store.account_by_id(&order.account_id).await?,
        };
        if let Err(e) = self
            .policy
            .check_identifiers(&account, &order.identifiers)
            .await
        {
            let _ = self
                .store
                .set_order_status(&order.id, "processing", "invalid", Some(&e.problem()))
                .await;
            return Err(e);
        }
        let issued = match self.signer.issue(request).await {
            Ok(i) => i,
            Err(e) => {
                let err = match e {
                    // The signer's own re-check of names, key and validity (defence in depth).
                    sceau_ca::CaError::InvalidRequest(detail) => {
                        AcmeError::new(ProblemType::BadCsr, detail)
                    }
                    other => AcmeError::internal("signing the certificate", other),
                };
                let _ = self
                    .store
                    .set_order_status(&order.id, "processing", "invalid", Some(&err.problem()))
                    .await;
                return Err(err);
            }
        };
        let cert = CertRecord {
            id: new_id(),
            serial: issued.serial_hex.clone(),
            account_id: order.account_id.clone(),
            order_id: order.id.clone(),
            der: issued.der,
            chain_pem: issued.chain_pem,
            not_before: issued.not_before.unix_timestamp(),
            not_after: issued.not_after.unix_timestamp(),
            ari_id: issued.ari_id,
            spki_sha256: spki_sha256(&spki),
            revoked_at: None,
            revocation_reason: None,
            replaced_by: None,
            created_at: now(),
            replaces: order.replaces.clone(),
        };
        let audit = AuditEntry {
            event: "certificate.issued",
            account_id: Some(&order.account_id),
            client_ip: ip,
            detail: json!({"order": order.id, "serial": cert.serial, "identifiers": order.identifiers, "not_after": cert.not_after, "profile": order.profile}),
        };
        self.store.finish_order(&cert, &audit).await?;
        audit.log();
        order.status = "valid".into();
        order.cert_id = Some(cert.id.clone());
        Ok(order)
    }

    async fn owned_cert(&self, account: &AccountRecord, id: &str) -> AcmeResult<CertRecord> {
        match self.store.cert_by_id(id).await {
            Ok(c) if c.account_id == account.id => Ok(c),
            Ok(_) | Err(StoreError::NotFound) => Err(AcmeError::not_found("certificate")),
            Err(e) => Err(e.into()),
        }
    }

    // ---- revocation (RFC 8555 §7.6) -----------------------------------------------------

    async fn revoke(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
        let payload: Revocation = req.payload()?;
        let der = b64::decode(&payload.certificate)
            .map_err(|_| AcmeError::malformed("\"certificate\" is not base64url DER"))?;
        let info = sceau_ca::inspect::cert_info(&der)
            .map_err(|e| AcmeError::malformed(format!("\"certificate\": {e}")))?;
        let cert = match self.store.cert_by_serial(&info.serial_hex).await {
            Ok(c) if c.der == der => c,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(
                    AcmeError::malformed("this certificate was not issued by this server")
                        .with_status(404),
                );
            }
            Err(e) => return Err(e.into()),
        };
        let reason = payload.reason.unwrap_or(reason::UNSPECIFIED);
        if !reason::is_valid(reason) {
            return Err(AcmeError::new(
                ProblemType::BadRevocationReason,
                format!("reason code {reason} is not allowed (RFC 5280 §5.3.1: 0–6, 9, 10)"),
            ));
        }
        let by = match &req.key {
            VerifiedKey::Account(account) => {
                if !self.may_revoke(account, &cert, &info).await? {
                    return Err(AcmeError::unauthorized(
                        "this account may not revoke this certificate",
                    ));
                }
                format!("account:{}", account.id)
            }
            VerifiedKey::Jwk(jwk) => {
                if !sceau_ca::inspect::spki_matches_jwk(&info.spki_der, jwk) {
                    return Err(AcmeError::unauthorized(
                        "the request is not signed by this certificate's key",
                    ));
                }
                // Policy::strict_revocation (R44): the key may sign for revocation only if its
                // certificate allows digital signatures.
                if self.policy.strict_revocation() && !info.key_usage_digital_signature {
                    return Err(AcmeError::unauthorized(
                        "this certificate's keyUsage lacks digitalSignature, so its key cannot sign a revocation request",
                    ));
                }
                "certificate-key".to_owned()
            }
        };
        if cert.revoked_at.is_some() {
            return Err(AcmeError::new(
                ProblemType::AlreadyRevoked,
                "this certificate is already revoked",
            ));
        }
        self.store
            .revoke_cert(&cert.id, reason, now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AcmeError::new(
                    ProblemType::AlreadyRevoked,
                    "this certificate is already revoked",
                ),
                e => e.into(),
            })?;
        let account = match &req.key {
            VerifiedKey::Account(a) => Some(a.id.as_str()),
            VerifiedKey::Jwk(_) => None,
        };
        self.audit(
            "certificate.revoked",
            account.or(Some(&cert.account_id)),
            ip,
            json!({"serial": cert.serial, "reason": reason, "by": by}),
        )
        .await;
        Ok(Reply {
            status: 200,
            body: Body::Empty,
            location: None,
            links: Vec::new(),
            retry_after: None,
        })
    }

    /// The issuing account, another account bound to the same external account (R46), or an
    /// account holding valid authorizations for every name (RFC 8555 §7.6).
    async fn may_revoke(
        &self,
        account: &AccountRecord,
        cert: &CertRecord,
        info: &sceau_ca::inspect::CertInfo,
    ) -> AcmeResult<bool> {
        if cert.account_id == account.id {
            return Ok(true);
        }
        if let Some(kid) = &account.eab_kid {
            let issuer = self.store.account_by_id(&cert.account_id).await?;
            if issuer.eab_kid.as_deref() == Some(kid.as_str()) {
                return Ok(true);
            }
        }
        // Policy::strict_revocation (R46): authorizations alone give no right to revoke.
        if self.policy.strict_revocation() {
            return Ok(false);
        }
        for id in &info.identifiers {
            let (target, wildcard) = id.authorization_target();
            if self
                .store
                .reusable_authz(&account.id, &target, wildcard, now())
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(!info.identifiers.is_empty())
    }

    // ---- renewal information (RFC 9773 §4) ---------------------------------------------

    pub async fn renewal_info(&self, cert_id: &str) -> AcmeResult<Reply> {
        if sceau_wire::types::parse_ari_cert_id(cert_id).is_none() {
            return Err(AcmeError::malformed(
                "not a certificate identifier (RFC 9773 §4.1)",
            ));
        }
        let cert = match self.store.cert_by_ari_id(cert_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(AcmeError::not_found("certificate")),
            Err(e) => return Err(e.into()),
        };
        let (start, end) = if cert.revoked_at.is_some() {
            // Revoked: renew now (§4.2, a window in the past).
            let n = now();
            (n - 3600, n - 60)
        } else {
            // R84: renew at two thirds of the lifetime; the window spans a twelfth of it.
            let life = cert.not_after - cert.not_before;
            let start = cert.not_before + life * 2 / 3;
            (start, start + life / 12)
        };
        let info = RenewalInfo {
            suggested_window: SuggestedWindow {
                start: ts(start),
                end: ts(end),
            },
            explanation_url: None,
        };
        Ok(Reply::json(200, info).retry_after(6 * 3600))
    }

    // ---- recovery ------------------------------------------------------------------------

    /// Finishes the work a crash interrupted (see the module invariants). Returns how many
    /// challenges and orders were resumed.
    pub async fn recover(self: &Arc<Self>) -> AcmeResult<(usize, usize)> {
        let challenges = self.store.processing_challenges().await?;
        let mut tasks = Vec::new();
        for c in &challenges {
            let authz = self.store.authz_by_id(&c.authz_id).await?;
            let account = self.store.account_by_id(&authz.account_id).await?;
            tasks.push(tokio::spawn(Arc::clone(self).validate(
                account,
                authz,
                c.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        let orders = self.store.processing_orders().await?;
        for order in &orders {
            let resumed = async {
                let csr = order
                    .csr
                    .as_deref()
                    .ok_or_else(|| AcmeError::malformed("no CSR kept"))?;
                let der = b64::decode(csr).map_err(|_| AcmeError::malformed("stored CSR"))?;
                let parsed = sceau_ca::csr::parse_and_check_with(&der, self.config.allow_wildcards)
                    .map_err(|e| AcmeError::new(ProblemType::BadCsr, e.to_string()))?;
                self.issue(order.clone(), parsed.public_key_spki_der, None, None)
                    .await
            };
            if let Err(e) = resumed.await {
                tracing::warn!(order = %order.id, error = %e, "could not resume an interrupted issuance; marking the order invalid");
                let _ = self
                    .store
                    .set_order_status(&order.id, "processing", "invalid", Some(&e.problem()))
                    .await;
            }
        }
        Ok((challenges.len(), orders.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_or_refused() {
        assert_eq!(
            normalise_identifier(&Identifier::dns("WWW.Example.TEST"), Some(NO_WILDCARDS)).unwrap(),
            Identifier::dns("www.example.test")
        );
        assert!(
            normalise_identifier(&Identifier::dns("*.example.test"), Some(NO_WILDCARDS)).is_err()
        );
        assert!(
            normalise_identifier(&Identifier::dns("bad_label.test"), Some(NO_WILDCARDS)).is_err()
        );
        assert!(
            normalise_identifier(&Identifier::dns("trailing.dot."), Some(NO_WILDCARDS)).is_err()
        );
        assert!(normalise_identifier(&Identifier::dns("10.0.0.1"), Some(NO_WILDCARDS)).is_err());
        assert_eq!(
            normalise_identifier(&Identifier::ip("10.0.0.1"), Some(NO_WILDCARDS)).unwrap(),
            Identifier::ip("10.0.0.1")
        );
        assert!(
            normalise_identifier(&Identifier::ip("2001:DB8::1"), Some(NO_WILDCARDS)).is_err(),
            "IPv6 must be canonical"
        );
        assert_eq!(
            normalise_identifier(&Identifier::ip("2001:db8::1"), Some(NO_WILDCARDS))
                .unwrap()
                .value,
            "2001:db8::1"
        );
        assert_eq!(
            normalise_identifier(&Identifier::dns("*.Example.TEST"), None).unwrap(),
            Identifier::dns("*.example.test")
        );
        assert!(normalise_identifier(&Identifier::dns("*.*.example.test"), None).is_err());
        assert!(normalise_identifier(&Identifier::dns("*.bad_label.test"), None).is_err());
        let err = normalise_identifier(
            &Identifier {
                kind: "email".into(),
                value: "a@b".into(),
            },
            None,
        )
        .unwrap_err();
        assert_eq!(err.kind, ProblemType::UnsupportedIdentifier.urn());
    }

    #[test]
    fn contacts() {
        assert!(validate_contacts(&["mailto:ops@example.test".into()]).is_ok());
        assert_eq!(
            validate_contacts(&["tel:+331".into()]).unwrap_err().kind,
            ProblemType::UnsupportedContact
        );
        assert_eq!(
            validate_contacts(&["mailto:nobody".into()])
                .unwrap_err()
                .kind,
            ProblemType::InvalidContact
        );
    }
}
