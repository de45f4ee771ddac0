//! Accounts (RFC 8555 §7.3): creation with external account binding, update, deactivation,
//! the orders list, key rollover.

use sceau_store::{AccountRecord, StoreError, new_id, now};
use sceau_wire::{
    AccountStatus, AccountUpdate, KeyChange, NewAccount, OrdersList, ParsedJws, ProblemType, eab,
};
use serde_json::json;

use super::{ORDERS_PAGE, spki_sha256};
use crate::render;
use crate::request::{Verified, jws_error};
use crate::{Acme, AcmeError, AcmeResult, EabMode, Reply};

pub(super) fn validate_contacts(contacts: &[String]) -> AcmeResult<()> {
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
    pub(super) async fn new_account(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
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
        self.refuse_certified_key(&req.jwk).await?;
        self.limits.new_account(&self.store, ip).await?;
        let eab_kid = self.check_eab(req, &payload, ip).await?;
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

    /// RFC 8555 §11.1: "an account public key [must not be] in a certificate". A key this CA
    /// certified cannot become an account key (newAccount, keyChange); the other direction is
    /// checked at finalize.
    pub(super) async fn refuse_certified_key(&self, jwk: &sceau_wire::Jwk) -> AcmeResult<()> {
        let spki_hashes: Vec<String> = sceau_ca::inspect::spki_der_candidates(jwk)
            .iter()
            .map(|der| spki_sha256(der))
            .collect();
        if self.store.key_certified(&spki_hashes).await? {
            return Err(AcmeError::new(
                ProblemType::BadPublicKey,
                "this key is in a certificate issued by this CA; a certified key cannot be an account key (RFC 8555 §11.1): use a separate account key",
            ));
        }
        Ok(())
    }

    /// RFC 8555 §7.3.4: the binding must be present when required and verify when present.
    /// Failures are counted per key id (and unknown key ids per client address) and audited;
    /// too many refuse further attempts for a while (see `limits`).
    pub(super) async fn check_eab(
        &self,
        req: &Verified,
        payload: &NewAccount,
        ip: Option<&str>,
    ) -> AcmeResult<Option<String>> {
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
        self.limits.eab_attempt(&self.store, &kid).await?;
        let input = match eab::check(binding, &self.urls.new_account(), &req.jwk) {
            Ok(input) => input,
            Err(e @ eab::EabError::KeyMismatch) => {
                self.limits
                    .eab_failed(&self.store, &kid, ip, &e.to_string())
                    .await?;
                return Err(AcmeError::unauthorized(e.to_string()));
            }
            Err(other) => return Err(AcmeError::malformed(other.to_string())),
        };
        match self.policy.check_mac(&kid, &input).await? {
            None => {
                self.limits.eab_unknown(&self.store, &kid, ip).await?;
                Err(AcmeError::unauthorized(format!(
                    "external account {kid:?} is unknown, suspended or expired, or its MAC key is past the server's maximum age (R9: regenerate it)"
                )))
            }
            Some(true) => Ok(Some(kid)),
            Some(false) => {
                let e = eab::EabError::BadMac;
                self.limits
                    .eab_failed(&self.store, &kid, ip, &e.to_string())
                    .await?;
                Err(AcmeError::unauthorized(e.to_string()))
            }
        }
    }

    pub(super) fn own_account<'a>(
        &self,
        req: &'a Verified,
        id: &str,
    ) -> AcmeResult<&'a AccountRecord> {
        let account = req.account()?;
        if account.id != id {
            return Err(AcmeError::unauthorized(
                "the account URL does not match the signing account",
            ));
        }
        Ok(account)
    }

    pub(super) async fn account(
        &self,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
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

    pub(super) async fn orders(&self, req: &Verified, id: &str, url: &str) -> AcmeResult<Reply> {
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
    pub(super) async fn key_change(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
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
        self.refuse_certified_key(&new_jwk).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
