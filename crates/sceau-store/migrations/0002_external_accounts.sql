-- External admin accounts ("AA", agency guide R1-R22): the external accounts of RFC 8555
-- section 7.3.4 to which every ACME account is bound. Portable SQL as in 0001. Integers are BIGINT
-- so that one decoder reads them on SQLite and PostgreSQL alike.
CREATE TABLE external_accounts (
    kid TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    -- valid, suspended or deactivated (deactivated is final)
    status TEXT NOT NULL,
    -- hex of the AES-256-GCM nonce, ciphertext and tag of the MAC key, the kid as associated data
    mac_key TEXT NOT NULL,
    key_regenerations BIGINT NOT NULL,
    key_updated_at BIGINT NOT NULL,
    -- JSON array of the certificate profiles this AA may order
    profiles TEXT NOT NULL,
    wildcards BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE external_account_names (
    kid TEXT NOT NULL,
    name TEXT NOT NULL,
    -- 1: the entry also covers every name below it (R27 explicit subdomain entry)
    subdomains BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (kid, name)
);
-- Every change of an AA's parameters, with who and when (R49 reports)
CREATE TABLE external_account_changes (
    id TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX external_account_changes_kid ON external_account_changes (kid, at);
-- Why an ACME account is suspended: cause 'admin' (the account itself) or 'external' (its AA).
-- The account's status is 'suspended' exactly while it has at least one hold.
CREATE TABLE account_holds (
    account_id TEXT NOT NULL,
    cause TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (account_id, cause)
);
CREATE INDEX accounts_eab_kid ON accounts (eab_kid)
