//! Orders (RFC 8555 §7.4, §7.1.6): creation with their authorizations, validity requests,
//! ARI `replaces` (RFC 9773 §5), state refresh.

use std::collections::BTreeSet;

use sceau_store::{
    AccountRecord, AuditEntry, AuthzRecord, ChallengeRecord, OrderRecord, StoreError, new_id, now,
};
use sceau_wire::types::challenge_type;
use sceau_wire::{AuthorizationStatus, Identifier, NewOrder, Problem, ProblemType, Subproblem};
use serde_json::json;

use super::authorizations::random_token;
use super::identifiers::{
    NO_WILDCARDS, WILDCARDS_NEED_BINDING, identifiers_error, normalise_identifier,
};
use super::{PROFILE_SERVER, PROFILE_SERVER_CLIENT, owned};
use crate::render;
use crate::request::Verified;
use crate::{Acme, AcmeError, AcmeResult, EabMode, Reply};

impl Acme {
    pub(super) async fn new_order(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
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
            match normalise_identifier(id, wildcard_refusal)
                .and_then(|n| self.config.identifiers.check(&n).map(|()| n))
            {
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
        let star = self.check_auto_renewal(&payload, now)?;
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
            star,
        };
        self.limits
            .new_order(&self.store, &account.id, new_authzs.len())
            .await?;
        let audit = AuditEntry {
            event: "order.created",
            account_id: Some(&account.id),
            client_ip: ip,
            detail: json!({"order": order.id, "identifiers": order.identifiers, "profile": order.profile, "replaces": order.replaces,
                "auto_renewal": order.star.as_ref().map(|t| json!({"start": t.start, "end": t.end, "lifetime": t.lifetime, "adjust": t.adjust, "allow_get": t.allow_get}))}),
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

    pub(super) fn check_validity_request(
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
    pub(super) async fn check_replaces(
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

    pub(super) async fn owned_order(
        &self,
        account: &AccountRecord,
        id: &str,
    ) -> AcmeResult<OrderRecord> {
        owned(self.store.order_by_id(id).await, account, "order")
    }

    /// Moves a pending order on from its authorizations' states (RFC 8555 §7.1.6), and any
    /// order past its expiry to invalid.
    pub(super) async fn refresh_order(&self, mut order: OrderRecord) -> AcmeResult<OrderRecord> {
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

    pub(super) async fn transition_order(
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

    pub(super) fn order_reply(&self, order: &OrderRecord) -> Reply {
        let mut reply =
            Reply::json(200, render::order(&self.urls, order)).location(self.urls.order(&order.id));
        if order.status == "processing" {
            reply = reply.retry_after(1);
        } else if order.status == "pending" {
            reply = reply.retry_after(2);
        }
        reply
    }

    pub(super) async fn get_order(&self, req: &Verified, id: &str) -> AcmeResult<Reply> {
        let order = self.owned_order(req.account()?, id).await?;
        let order = self.refresh_order(order).await?;
        Ok(self.order_reply(&order))
    }
}
