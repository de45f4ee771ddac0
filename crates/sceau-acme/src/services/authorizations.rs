//! Authorizations and challenges (RFC 8555 §7.5, §8): reading, deactivation, starting and
//! recording validations, the R29 limit on failed validations.

use std::sync::Arc;

use sceau_store::{AccountRecord, AuditEntry, AuthzRecord, ChallengeRecord, StoreError, now};
use sceau_validate::perspectives::{
    CaaQuery, Challenge, CheckRequest, Corroboration, Mode, Perspectives,
};
use sceau_wire::types::challenge_type;
use sceau_wire::{
    AuthorizationStatus, AuthorizationUpdate, Identifier, Jwk, Problem, ProblemType, b64,
};
use serde_json::json;

use super::recovery::VALIDATION_LEASE;
use super::{found, owned};
use crate::render;
use crate::request::Verified;
use crate::{Acme, AcmeError, AcmeResult, Reply};

pub(super) fn key_authorization(token: &str, jwk: &Jwk) -> String {
    // RFC 8555 §8.1
    format!("{token}.{}", jwk.thumbprint())
}

pub(super) fn random_token() -> String {
    // RFC 8555 §8.3: at least 128 bits of entropy.
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    b64::encode(bytes)
}

impl Acme {
    pub(super) async fn owned_authz(
        &self,
        account: &AccountRecord,
        id: &str,
    ) -> AcmeResult<AuthzRecord> {
        owned(self.store.authz_by_id(id).await, account, "authorization")
    }

    pub(super) async fn authz(
        &self,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
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

    pub(super) async fn challenge(
        self: &Arc<Self>,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        let account = req.account()?;
        let challenge = found(self.store.challenge_by_id(id).await, "challenge")?;
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
    pub(super) async fn start_validation(
        self: &Arc<Self>,
        account: &AccountRecord,
        authz: &AuthzRecord,
        challenge: &ChallengeRecord,
        ip: Option<&str>,
    ) -> AcmeResult<Option<ChallengeRecord>> {
        self.limits
            .validation_attempt(
                &self.store,
                self.config.max_failed_validations_per_hour,
                &account.id,
                &authz.identifier.value,
            )
            .await?;
        match self
            .store
            .start_challenge(
                &challenge.id,
                &authz.id,
                now() + VALIDATION_LEASE.as_secs() as i64,
            )
            .await
        {
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

    /// RFC 8659 §3 / RFC 8657: what CAA is checked for once control is shown (DNS names only;
    /// a wildcard against issuewild, §4.3); `None` when CAA is off (no identities).
    pub(super) fn caa_query(
        &self,
        authz: &AuthzRecord,
        account: &AccountRecord,
        method: &str,
    ) -> Option<CaaQuery> {
        let identities = &self.config.caa_identities;
        if identities.is_empty() || !authz.identifier.is_dns() {
            return None;
        }
        let value = &authz.identifier.value;
        Some(CaaQuery {
            identifier: if authz.wildcard {
                Identifier::dns(format!("*.{value}"))
            } else {
                authz.identifier.clone()
            },
            identities: identities.clone(),
            account_uri: self.urls.account(&account.id),
            method: method.to_owned(),
        })
    }

    /// At finalize: CAA again, from every perspective under the quorum, for each of the
    /// order's authorizations validated more than `caa_recheck_after` ago (BR §3.2.2.8). A
    /// refusal is a `caa` problem naming the name, audited as `caa.recheck_failed`; the order
    /// stays `ready` (it may be finalized again once the records allow it).
    pub(super) async fn recheck_caa(
        &self,
        account: &AccountRecord,
        order: &sceau_store::OrderRecord,
        ip: Option<&str>,
    ) -> AcmeResult<()> {
        if self.config.caa_identities.is_empty() {
            return Ok(());
        }
        let oldest = now() - self.config.caa_recheck_after.as_secs() as i64;
        for authz in self.store.authzs_by_ids(&order.authz_ids).await? {
            let Some(ch) = authz
                .challenges
                .iter()
                .find(|c| c.status == "valid" && c.validated.is_some_and(|t| t < oldest))
            else {
                continue;
            };
            let Some(caa) = self.caa_query(&authz, account, &ch.kind) else {
                continue;
            };
            let request = CheckRequest {
                identifier: authz.identifier.clone(),
                challenge: Challenge::None,
                caa: Some(caa),
            };
            let found = self.perspectives.check(&request).await;
            if let Err(e) = &found.result {
                let validated = ch.validated.unwrap_or_default();
                let detail = format!(
                    "CAA checked again at issuance, the authorization of {} being validated {} s ago: {}",
                    authz.identifier.value,
                    now() - validated,
                    e.detail
                );
                let audit = AuditEntry {
                    event: "caa.recheck_failed",
                    account_id: Some(&account.id),
                    client_ip: ip,
                    detail: json!({"order": order.id, "identifier": authz.identifier.value,
                        "error": detail, "perspectives": found_json(&self.perspectives, &found)}),
                };
                self.store.audit(&audit).await?;
                audit.log();
                return Err(AcmeError::new(e.kind, detail));
            }
        }
        Ok(())
    }

    /// Runs one validation and records its outcome; never fails, errors become the outcome.
    /// Returns the challenge as recorded, or `None` if the outcome could not be recorded.
    pub(super) async fn validate(
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
        let check = match challenge.kind.as_str() {
            challenge_type::HTTP_01 => Some(Challenge::Http01 {
                token: authz.token.clone(),
                key_authorization: key_authz,
            }),
            challenge_type::DNS_01 => Some(Challenge::Dns01 {
                key_authorization: key_authz,
            }),
            challenge_type::TLS_ALPN_01 => Some(Challenge::TlsAlpn01 {
                key_authorization: key_authz,
            }),
            _ => None,
        };
        let mut perspectives = serde_json::Value::Null;
        let result = match check {
            None => Err(sceau_validate::ValidationError {
                kind: ProblemType::Malformed,
                detail: format!("unknown challenge type {}", challenge.kind),
            }),
            Some(check) => {
                let request = CheckRequest {
                    identifier: id.clone(),
                    challenge: check,
                    caa: self.caa_query(&authz, &account, &challenge.kind),
                };
                // R28: from the primary and every remote perspective, under the quorum.
                let found = self.perspectives.check(&request).await;
                perspectives = found_json(&self.perspectives, &found);
                if let Some(remotes) = self.perspectives.remotes()
                    && found.quorum_failed
                {
                    tracing::warn!(target: "sceau::audit", identifier = %id.value, challenge = %challenge.id, perspectives = %perspectives, enforced = remotes.mode() == Mode::Enforce, "remote perspectives did not corroborate the validation");
                }
                found.result
            }
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
                "perspectives": perspectives,
            }),
        };
        // Nothing would record this outcome again before a restart: wait out a storage fault.
        let recorded = crate::error::until_stored(|| {
            self.store
                .finish_challenge(&challenge.id, &authz.id, problem.as_ref(), at, &audit)
        })
        .await;
        match recorded {
            Ok(()) => {
                audit.log();
                let valid = problem.is_none();
                self.metrics.validation(&challenge.kind, valid);
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
}

/// The audit's account of the perspectives (`null` when the primary validates alone).
fn found_json(p: &Perspectives, found: &Corroboration) -> serde_json::Value {
    match p.remotes() {
        Some(_) => found.to_json(),
        None => serde_json::Value::Null,
    }
}
