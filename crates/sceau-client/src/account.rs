//! Accounts (RFC 8555 §7.3): registration with optional external account binding, lookup,
//! update, key rollover and deactivation.
//!
//! Invariant: an [`Eab`] never prints its MAC key, and nothing in this module stores it; once
//! the account is bound the caller can forget it (R92).

use sceau_wire::jws::{self, Signer};
use sceau_wire::{AccountKey, AccountStatus, AccountUpdate, KeyChange, NewAccount};

use crate::client::AcmeClient;
use crate::error::{Error, Result};

/// An ACME account as the client holds it: its URL (the `kid`) and its key.
#[derive(Debug)]
pub struct Account {
    pub url: String,
    pub key: AccountKey,
}

impl Account {
    pub fn signer(&self) -> Signer<'_> {
        Signer::Kid(&self.url)
    }

    /// The key authorization for a challenge token (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.key.jwk().thumbprint())
    }
}

/// External account binding credentials (RFC 8555 §7.3.4).
pub struct Eab {
    pub key_id: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Eab {{ key_id: {:?}, hmac_key: <redacted> }}",
            self.key_id
        )
    }
}

impl Eab {
    /// Decodes a MAC key as CAs hand them out: base64url (unpadded or padded) or standard base64.
    pub fn decode_hmac_key(text: &str) -> Result<Vec<u8>> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
        let t = text.trim();
        let key = URL_SAFE_NO_PAD
            .decode(t)
            .or_else(|_| URL_SAFE.decode(t))
            .or_else(|_| STANDARD.decode(t))
            .map_err(|_| Error::Config("the EAB HMAC key is not base64 or base64url".into()))?;
        if key.is_empty() {
            return Err(Error::Config("the EAB HMAC key is empty".into()));
        }
        Ok(key)
    }
}

#[derive(Debug, Default)]
pub struct NewAccountOptions {
    pub contact: Vec<String>,
    pub terms_of_service_agreed: bool,
    pub eab: Option<Eab>,
}

impl AcmeClient {
    /// Registers `key` (RFC 8555 §7.3). An existing account for the key is returned as is.
    pub async fn new_account(
        &self,
        key: AccountKey,
        options: &NewAccountOptions,
    ) -> Result<(Account, sceau_wire::Account)> {
        let url = self.directory().new_account.clone();
        let meta = self.directory().meta.clone().unwrap_or_default();
        if meta.external_account_required && options.eab.is_none() {
            return Err(Error::Config(format!(
                "the server {} requires external account binding: give the key id and HMAC key \
                 (SCEAU_EAB_KID/SCEAU_EAB_HMAC_KEY or --eab-file)",
                self.directory_url()
            )));
        }
        if meta.terms_of_service.is_some() && !options.terms_of_service_agreed {
            return Err(Error::Config(format!(
                "the server has terms of service ({}): read them and pass --agree-tos",
                meta.terms_of_service.unwrap_or_default()
            )));
        }
        let binding = options
            .eab
            .as_ref()
            .map(|eab| sceau_wire::eab::sign(&eab.key_id, &eab.hmac_key, &url, &key.jwk()));
        let payload = NewAccount {
            contact: (!options.contact.is_empty()).then(|| options.contact.clone()),
            terms_of_service_agreed: options.terms_of_service_agreed.then_some(true),
            only_return_existing: None,
            external_account_binding: binding,
        };
        let resp = self.post_json(&key, Signer::Jwk, &url, &payload).await?;
        let location = resp.location.clone().ok_or_else(|| Error::Protocol {
            url: url.clone(),
            status: resp.status,
            reason: "newAccount answer has no Location header".into(),
        })?;
        let object = resp.json()?;
        Ok((Account { url: location, key }, object))
    }

    /// Finds the account of `key` without creating one (RFC 8555 §7.3.1).
    pub async fn find_account(&self, key: AccountKey) -> Result<Account> {
        let url = self.directory().new_account.clone();
        let payload = NewAccount {
            only_return_existing: Some(true),
            ..Default::default()
        };
        let resp = self.post_json(&key, Signer::Jwk, &url, &payload).await?;
        let location = resp.location.ok_or_else(|| Error::Protocol {
            url,
            status: resp.status,
            reason: "no Location header for the existing account".into(),
        })?;
        Ok(Account { url: location, key })
    }

    /// Fetches the account object (POST-as-GET, RFC 8555 §6.3).
    pub async fn account_info(&self, account: &Account) -> Result<sceau_wire::Account> {
        self.post(&account.key, account.signer(), &account.url, None)
            .await?
            .json()
    }

    pub async fn update_contact(
        &self,
        account: &Account,
        contact: Vec<String>,
    ) -> Result<sceau_wire::Account> {
        let payload = AccountUpdate {
            contact: Some(contact),
            ..Default::default()
        };
        self.post_json(&account.key, account.signer(), &account.url, &payload)
            .await?
            .json()
    }

    /// Deactivates the account (RFC 8555 §7.3.6); the server refuses it from then on.
    pub async fn deactivate_account(&self, account: &Account) -> Result<sceau_wire::Account> {
        let payload = AccountUpdate {
            status: Some(AccountStatus::Deactivated),
            ..Default::default()
        };
        self.post_json(&account.key, account.signer(), &account.url, &payload)
            .await?
            .json()
    }

    /// Replaces the account key (RFC 8555 §7.3.5): the inner JWS is signed by the new key over
    /// {account, oldKey}, the outer by the old key. Returns the account with its new key.
    pub async fn key_change(&self, account: Account, new_key: AccountKey) -> Result<Account> {
        let url = self.directory().key_change.clone();
        let inner_payload = KeyChange {
            account: account.url.clone(),
            old_key: account.key.jwk(),
        };
        let inner_bytes = serde_json::to_vec(&inner_payload).expect("serialises");
        let inner = jws::sign(&new_key, Signer::Jwk, None, &url, Some(&inner_bytes))
            .map_err(|e| Error::Key(format!("signing keyChange: {e}")))?;
        self.post_json(&account.key, account.signer(), &url, &inner)
            .await?;
        Ok(Account {
            url: account.url,
            key: new_key,
        })
    }
}
