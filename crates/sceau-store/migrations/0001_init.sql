-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Identifiers are random text (no
-- sequences), times are Unix seconds in BIGINT, JSON documents are TEXT, blobs are hex TEXT.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    contact TEXT NOT NULL,
    tos_agreed BIGINT NOT NULL,
    eab_kid TEXT,
    created_at BIGINT NOT NULL,
    created_ip TEXT
);
CREATE TABLE authzs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    identifier_type TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    status TEXT NOT NULL,
    expires BIGINT NOT NULL,
    token TEXT NOT NULL,
    wildcard BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX authzs_reuse ON authzs (account_id, identifier_value, status);
CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    authz_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    validated BIGINT,
    error TEXT
);
CREATE INDEX challenges_authz ON challenges (authz_id);
CREATE INDEX challenges_status ON challenges (status);
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    status TEXT NOT NULL,
    expires BIGINT NOT NULL,
    identifiers TEXT NOT NULL,
    authz_ids TEXT NOT NULL,
    not_before BIGINT,
    not_after BIGINT,
    profile TEXT,
    replaces TEXT,
    error TEXT,
    csr TEXT,
    cert_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX orders_account ON orders (account_id, created_at);
CREATE INDEX orders_status ON orders (status);
CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL UNIQUE,
    der TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    ari_id TEXT NOT NULL UNIQUE,
    spki_sha256 TEXT NOT NULL,
    revoked_at BIGINT,
    revocation_reason BIGINT,
    replaced_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX certificates_spki ON certificates (spki_sha256);
CREATE INDEX certificates_account ON certificates (account_id);
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    account_id TEXT,
    client_ip TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_account ON audit (account_id, at);
CREATE INDEX audit_event ON audit (event, account_id, at);
