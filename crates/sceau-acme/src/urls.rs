//! The server's URL space. Every object URL is `<base>/acme/<kind>/<id>`; request URLs are
//! checked against these exact strings (RFC 8555 §6.4).

#[derive(Debug, Clone)]
pub struct Urls {
    base: String,
}

impl Urls {
    pub fn new(base: &str) -> Self {
        Urls {
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn directory(&self) -> String {
        format!("{}/directory", self.base)
    }

    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn new_nonce(&self) -> String {
        self.path("/acme/new-nonce")
    }
    pub fn new_account(&self) -> String {
        self.path("/acme/new-account")
    }
    pub fn new_order(&self) -> String {
        self.path("/acme/new-order")
    }
    pub fn revoke_cert(&self) -> String {
        self.path("/acme/revoke-cert")
    }
    pub fn key_change(&self) -> String {
        self.path("/acme/key-change")
    }
    pub fn renewal_info(&self) -> String {
        self.path("/acme/renewal-info")
    }
    pub fn account(&self, id: &str) -> String {
        self.path(&format!("/acme/acct/{id}"))
    }
    pub fn orders(&self, account_id: &str) -> String {
        self.path(&format!("/acme/acct/{account_id}/orders"))
    }
    pub fn order(&self, id: &str) -> String {
        self.path(&format!("/acme/order/{id}"))
    }
    pub fn finalize(&self, id: &str) -> String {
        self.path(&format!("/acme/order/{id}/finalize"))
    }
    pub fn authz(&self, id: &str) -> String {
        self.path(&format!("/acme/authz/{id}"))
    }
    pub fn challenge(&self, id: &str) -> String {
        self.path(&format!("/acme/chall/{id}"))
    }
    pub fn certificate(&self, id: &str) -> String {
        self.path(&format!("/acme/cert/{id}"))
    }
    /// RFC 8739 §3.1.1: the rolling certificate of STAR order `order_id`.
    pub fn star_certificate(&self, order_id: &str) -> String {
        self.path(&format!("/acme/star/{order_id}"))
    }

    /// The account id in an account URL used as `kid`, if it is one of ours.
    pub fn account_id_from_kid<'a>(&self, kid: &'a str) -> Option<&'a str> {
        let id = kid.strip_prefix(&self.base)?.strip_prefix("/acme/acct/")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }
}
