//! The AA registry: what an administrator does to external admin accounts and to the ACME
//! accounts bound to them (agency guide R1, R3, R5, R8, R9, R14–R18, R20, R21).
//!
//! Invariants:
//! - A MAC key is 256 bits from the OS CSPRNG (R20), returned once by [`Registry::create`] or
//!   [`Registry::regenerate_key`] and otherwise stored sealed; regeneration replaces the sealed
//!   key, so the old key stops binding new ACME accounts at once (R9). Accounts already bound
//!   stay bound: the binding is checked once, at newAccount (RFC 8555 §7.3.4).
//! - Inputs are checked before anything is written; a refused command changes nothing.

use std::sync::Arc;

use sceau_store::{
    AccountRecord, AccountStatusChange, AllowedName, Change, ExternalAccountRecord, Store,
    StoreError, new_id, now,
};
use serde_json::json;

use crate::names::normalise_entry;
use crate::{AdminError, MAX_VALIDITY_SECS, PROFILES, WrapKey};

/// What an administrator asks for when creating an AA.
#[derive(Debug, Clone, Default)]
pub struct NewExternalAccount {
    /// "NAME <MAIL>" (R1: an AA belongs to a named person).
    pub owner: String,
    /// Names allowed exactly.
    pub names: Vec<String>,
    /// Names allowed with every name below them.
    pub names_with_subdomains: Vec<String>,
    pub valid_for_secs: i64,
    /// Profiles beyond the default `tls-server`.
    pub extra_profiles: Vec<String>,
    pub wildcards: bool,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub account: ExternalAccountRecord,
    /// The MAC key in clear: hand it to the AA holder once, over a protected channel (R22).
    pub mac_key: Vec<u8>,
}

/// The registry over the shared store; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    /// `None` in a front end whose signer holds the MAC keys (split deployment): it can read
    /// and change external accounts but neither seal nor open a key.
    wrap: Option<Arc<WrapKey>>,
    /// R9: a MAC key older than this (seconds) binds no new ACME account; `None`: no limit.
    max_key_age: Option<i64>,
}

fn mac_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).expect("OS random source");
    key
}

/// Checks "NAME <MAIL>".
pub fn check_owner(owner: &str) -> Result<String, AdminError> {
    let bad = || {
        AdminError::Invalid(format!(
            "owner {owner:?} must be a named person with an email address: \"First Last <first.last@example.org>\" (agency guide R1)"
        ))
    };
    let o = owner.trim();
    let (name, rest) = o.split_once('<').ok_or_else(bad)?;
    let mail = rest.strip_suffix('>').ok_or_else(bad)?;
    let (local, domain) = mail.split_once('@').ok_or_else(bad)?;
    let name_ok = name.trim().chars().any(char::is_alphabetic) && !name.contains(['<', '>', '\n']);
    let mail_ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !mail.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',');
    if !(name_ok && mail_ok) {
        return Err(bad());
    }
    Ok(format!("{} <{}>", name.trim(), mail))
}

fn entries(
    names: &[String],
    subdomains: bool,
    actor: &str,
) -> Result<Vec<AllowedName>, AdminError> {
    let at = now();
    names
        .iter()
        .map(|n| {
            let name = normalise_entry(n).map_err(AdminError::Invalid)?;
            if subdomains && name.parse::<std::net::IpAddr>().is_ok() {
                return Err(AdminError::Invalid(format!(
                    "{n}: an IP address has no subdomains"
                )));
            }
            Ok(AllowedName {
                name,
                subdomains,
                added_at: at,
                added_by: actor.to_owned(),
            })
        })
        .collect()
}

fn check_profiles(profiles: &[String]) -> Result<(), AdminError> {
    for p in profiles {
        if !PROFILES.contains(&p.as_str()) {
            return Err(AdminError::Invalid(format!(
                "unknown profile {p:?}; the profiles are {}",
                PROFILES.join(", ")
            )));
        }
    }
    Ok(())
}

fn describe(names: &[AllowedName]) -> Vec<serde_json::Value> {
    names
        .iter()
        .map(|n| json!({"name": n.name, "subdomains": n.subdomains}))
        .collect()
}

impl Registry {
    pub fn new(store: Store, wrap: Arc<WrapKey>) -> Self {
        Registry {
            store,
            wrap: Some(wrap),
            max_key_age: None,
        }
    }

    /// A registry that holds no wrap key (see [`Registry`]'s `wrap`).
    pub fn without_wrap_key(store: Store) -> Self {
        Registry {
            store,
            wrap: None,
            max_key_age: None,
        }
    }

    fn wrap(&self) -> Result<&WrapKey, AdminError> {
        self.wrap.as_deref().ok_or_else(|| {
            AdminError::WrapKey(
                "this process holds no wrap key: MAC keys are the signer's (run admin with the signer's data directory)".into(),
            )
        })
    }

    /// R9: refuse new bindings with a MAC key older than `secs` (`None`: no limit); the
    /// holder or an operator regenerates the key.
    pub fn with_max_key_age(mut self, secs: Option<i64>) -> Self {
        self.max_key_age = secs.filter(|s| *s > 0);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn missing(kid: &str) -> impl Fn(StoreError) -> AdminError + '_ {
        move |e| match e {
            StoreError::NotFound => AdminError::UnknownExternalAccount(kid.to_owned()),
            StoreError::Conflict(what) => AdminError::State(what),
            e => AdminError::Store(e),
        }
    }

    pub async fn create(
        &self,
        req: &NewExternalAccount,
        actor: &str,
    ) -> Result<Created, AdminError> {
        let owner = check_owner(&req.owner)?;
        if req.names.is_empty() && req.names_with_subdomains.is_empty() {
            return Err(AdminError::Invalid(
                "an external account needs at least one allowed name (--domain)".into(),
            ));
        }
        if req.valid_for_secs <= 0 || req.valid_for_secs > MAX_VALIDITY_SECS {
            return Err(AdminError::Invalid(format!(
                "an external account is valid at most 3 years (agency guide R8); asked for {} days",
                req.valid_for_secs / 86400
            )));
        }
        check_profiles(&req.extra_profiles)?;
        let mut names = entries(&req.names, false, actor)?;
        names.extend(entries(&req.names_with_subdomains, true, actor)?);
        names.sort_by(|a, b| a.name.cmp(&b.name).then(b.subdomains.cmp(&a.subdomains)));
        names.dedup_by(|a, b| a.name == b.name);
        let mut profiles = vec![PROFILES[0].to_owned()];
        for p in &req.extra_profiles {
            if !profiles.contains(p) {
                profiles.push(p.clone());
            }
        }
        let kid = new_id();
        let key = mac_key();
        let t = now();
        let account = ExternalAccountRecord {
            kid: kid.clone(),
            owner,
            status: "valid".into(),
            mac_key_sealed: self.wrap()?.seal(&kid, &key),
            key_regenerations: 0,
            key_updated_at: t,
            profiles,
            wildcards: req.wildcards,
            not_after: t + req.valid_for_secs,
            created_at: t,
            created_by: actor.to_owned(),
            names,
        };
        let change = Change {
            actor,
            action: "external_account.created",
            detail: json!({
                "owner": account.owner, "names": describe(&account.names), "not_after": account.not_after,
                "profiles": account.profiles, "wildcards": account.wildcards,
            }),
        };
        self.store
            .insert_external_account(&account, &change)
            .await?;
        Ok(Created {
            account,
            mac_key: key,
        })
    }

    pub async fn get(&self, kid: &str) -> Result<ExternalAccountRecord, AdminError> {
        self.store
            .external_account(kid)
            .await
            .map_err(Self::missing(kid))
    }

    pub async fn list(&self) -> Result<Vec<ExternalAccountRecord>, AdminError> {
        Ok(self.store.external_accounts().await?)
    }

    pub async fn linked_accounts(&self, kid: &str) -> Result<Vec<AccountRecord>, AdminError> {
        self.get(kid).await?;
        Ok(self.store.accounts_of_external(kid).await?)
    }

    /// Adds names (R6 approval is the administrator running this command).
    pub async fn add_names(
        &self,
        kid: &str,
        names: &[String],
        subdomains: bool,
        actor: &str,
    ) -> Result<usize, AdminError> {
        if names.is_empty() {
            return Err(AdminError::Invalid(
                "name at least one domain to add".into(),
            ));
        }
        let entries = entries(names, subdomains, actor)?;
        let change = Change {
            actor,
            action: "external_account.names_added",
            detail: json!({"names": describe(&entries)}),
        };
        self.store
            .add_external_names(kid, &entries, &change)
            .await
            .map_err(Self::missing(kid))
    }

    /// Removes names; refused whole if one of them is not on the list. From the moment this
    /// returns, orders for those names are refused at newOrder, finalize and signing (R35).
    pub async fn remove_names(
        &self,
        kid: &str,
        names: &[String],
        actor: &str,
    ) -> Result<(), AdminError> {
        if names.is_empty() {
            return Err(AdminError::Invalid(
                "name at least one domain to remove".into(),
            ));
        }
        let normalised: Vec<String> = names
            .iter()
            .map(|n| normalise_entry(n).map_err(AdminError::Invalid))
            .collect::<Result<_, _>>()?;
        let change = Change {
            actor,
            action: "external_account.names_removed",
            detail: json!({"names": normalised}),
        };
        self.store
            .remove_external_names(kid, &normalised, &change)
            .await
            .map_err(Self::missing(kid))
    }

    /// R9: a new MAC key; returns it (in clear, once) and the new regeneration count.
    pub async fn regenerate_key(
        &self,
        kid: &str,
        actor: &str,
    ) -> Result<(Vec<u8>, i64), AdminError> {
        let aa = self.get(kid).await?;
        if aa.status == "deactivated" {
            return Err(AdminError::State(
                "the external account is deactivated".into(),
            ));
        }
        let key = mac_key();
        let sealed = self.wrap()?.seal(kid, &key);
        let change = Change {
            actor,
            action: "external_account.key_regenerated",
            detail: json!({"regenerations": aa.key_regenerations + 1}),
        };
        let count = self
            .store
            .replace_external_mac_key(kid, aa.key_regenerations, &sealed, &change)
            .await
            .map_err(Self::missing(kid))?;
        Ok((key, count))
    }

    /// Allows or withdraws a certificate profile (the default `tls-server` stays).
    pub async fn set_profile(
        &self,
        kid: &str,
        profile: &str,
        allowed: bool,
        actor: &str,
    ) -> Result<Vec<String>, AdminError> {
        check_profiles(&[profile.to_owned()])?;
        if profile == PROFILES[0] && !allowed {
            return Err(AdminError::Invalid(format!(
                "{profile} is the default profile and cannot be withdrawn"
            )));
        }
        let aa = self.get(kid).await?;
        let mut profiles = aa.profiles.clone();
        profiles.retain(|p| p != profile);
        if allowed {
            profiles.push(profile.to_owned());
        }
        let action = if allowed {
            "external_account.profile_allowed"
        } else {
            "external_account.profile_withdrawn"
        };
        let change = Change {
            actor,
            action,
            detail: json!({"profile": profile}),
        };
        self.store
            .set_external_profiles(kid, &profiles, &change)
            .await
            .map_err(Self::missing(kid))?;
        Ok(profiles)
    }

    /// Sets the end of validity to `valid_for_secs` from now (renewal, Annex A.1), at most R8's.
    pub async fn renew(
        &self,
        kid: &str,
        valid_for_secs: i64,
        actor: &str,
    ) -> Result<i64, AdminError> {
        if valid_for_secs <= 0 || valid_for_secs > MAX_VALIDITY_SECS {
            return Err(AdminError::Invalid(
                "an external account is valid at most 3 years (agency guide R8)".into(),
            ));
        }
        let not_after = now() + valid_for_secs;
        let change = Change {
            actor,
            action: "external_account.renewed",
            detail: json!({"not_after": not_after}),
        };
        self.store
            .set_external_not_after(kid, not_after, &change)
            .await
            .map_err(Self::missing(kid))?;
        Ok(not_after)
    }

    /// R15: suspends the AA and, through it, every ACME account bound to it.
    pub async fn suspend(&self, kid: &str, actor: &str) -> Result<(), AdminError> {
        let change = Change {
            actor,
            action: "external_account.suspended",
            detail: json!({}),
        };
        self.store
            .set_external_status(kid, &["valid"], "suspended", &change)
            .await
            .map_err(Self::missing(kid))
    }

    /// Lifts the AA's suspension; its ACME accounts become valid again unless an administrator
    /// suspended them on their own.
    pub async fn resume(&self, kid: &str, actor: &str) -> Result<(), AdminError> {
        let change = Change {
            actor,
            action: "external_account.resumed",
            detail: json!({}),
        };
        self.store
            .set_external_status(kid, &["suspended"], "valid", &change)
            .await
            .map_err(Self::missing(kid))
    }

    /// R16: deactivates the AA and every ACME account bound to it, for good.
    pub async fn deactivate(&self, kid: &str, actor: &str) -> Result<(), AdminError> {
        let change = Change {
            actor,
            action: "external_account.deactivated",
            detail: json!({}),
        };
        self.store
            .set_external_status(kid, &["valid", "suspended"], "deactivated", &change)
            .await
            .map_err(Self::missing(kid))
    }

    fn acme_missing(id: &str) -> impl Fn(StoreError) -> AdminError + '_ {
        move |e| match e {
            StoreError::NotFound => AdminError::UnknownAcmeAccount(id.to_owned()),
            StoreError::Conflict(what) => AdminError::State(what),
            e => AdminError::Store(e),
        }
    }

    /// An ACME account's id from its id or its URL (`…/acme/acct/<id>`).
    pub fn acme_account_id(text: &str) -> &str {
        text.trim()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(text)
    }

    pub async fn suspend_acme_account(
        &self,
        account: &str,
        actor: &str,
    ) -> Result<AccountStatusChange, AdminError> {
        let id = Self::acme_account_id(account);
        let change = Change {
            actor,
            action: "acme_account.suspended",
            detail: json!({"account": id}),
        };
        self.store
            .admin_suspend_account(id, &change)
            .await
            .map_err(Self::acme_missing(id))
    }

    pub async fn resume_acme_account(
        &self,
        account: &str,
        actor: &str,
    ) -> Result<AccountStatusChange, AdminError> {
        let id = Self::acme_account_id(account);
        let change = Change {
            actor,
            action: "acme_account.resumed",
            detail: json!({"account": id}),
        };
        self.store
            .admin_resume_account(id, &change)
            .await
            .map_err(Self::acme_missing(id))
    }

    pub async fn deactivate_acme_account(
        &self,
        account: &str,
        actor: &str,
    ) -> Result<AccountStatusChange, AdminError> {
        let id = Self::acme_account_id(account);
        let change = Change {
            actor,
            action: "acme_account.deactivated",
            detail: json!({"account": id}),
        };
        self.store
            .admin_deactivate_account(id, &change)
            .await
            .map_err(Self::acme_missing(id))
    }

    /// The MAC key of an AA that may bind a new ACME account now, or why not.
    pub async fn usable_mac_key(&self, kid: &str) -> Result<Result<Vec<u8>, String>, AdminError> {
        let aa = match self.store.external_account(kid).await {
            Ok(a) => a,
            Err(StoreError::NotFound) => return Ok(Err("unknown".into())),
            Err(e) => return Err(e.into()),
        };
        if aa.status != "valid" {
            return Ok(Err(aa.status));
        }
        if aa.not_after <= now() {
            return Ok(Err("expired".into()));
        }
        if let Some(max) = self.max_key_age
            && now() - aa.key_updated_at > max
        {
            return Ok(Err(format!(
                "MAC key {} days old, over the limit of {} days (R9): regenerate it",
                (now() - aa.key_updated_at) / 86400,
                max / 86400
            )));
        }
        Ok(Ok(self.wrap()?.open(kid, &aa.mac_key_sealed)?))
    }

    /// Records an administrator's read-only command in the audit trail.
    pub async fn record_read(
        &self,
        what: &str,
        kid: Option<&str>,
        actor: &str,
    ) -> Result<(), AdminError> {
        let change = Change {
            actor,
            action: what,
            detail: json!({"kid": kid}),
        };
        Ok(self.store.record_admin_event(None, None, &change).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(
            check_owner("  Alice Martin <alice@example.org> ").unwrap(),
            "Alice Martin <alice@example.org>"
        );
        for bad in [
            "",
            "alice@example.org",
            "Alice",
            "<alice@example.org>",
            "Alice <alice>",
            "Alice <alice@example.org",
            "Alice <a b@example.org>",
        ] {
            assert!(check_owner(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn account_ids_from_urls() {
        assert_eq!(
            Registry::acme_account_id("https://ca.test:14000/acme/acct/AbC-_9"),
            "AbC-_9"
        );
        assert_eq!(Registry::acme_account_id("AbC-_9"), "AbC-_9");
    }
}
