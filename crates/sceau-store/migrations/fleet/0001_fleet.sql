-- Fleet mode (issue 18): the manager's agents, their certificates, the archive and the audit.
-- Private keys never reach these tables: agents send CSRs and the manager keeps only the
-- SHA-256 of each public key (to refuse a reused key, R66).

-- One row per machine. status: invited (token not yet used) | active | revoked.
CREATE TABLE fleet_agents (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    allowed TEXT NOT NULL,
    token_sha256 TEXT,
    token_expires BIGINT,
    fingerprint TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    enrolled_at BIGINT,
    revoked_at BIGINT,
    last_seen BIGINT
);

-- One row per certificate an agent keeps. state: pending (a CSR waits for the CA) | issued
-- | due (renewal due: the agent is asked for a new CSR) | failed (the CA refused the CSR).
CREATE TABLE fleet_certs (
    agent TEXT NOT NULL,
    cert_name TEXT NOT NULL,
    names TEXT NOT NULL,
    state TEXT NOT NULL,
    csr TEXT,
    spki_sha256 TEXT,
    attempts BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    last_error TEXT,
    serial TEXT,
    submitted_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (agent, cert_name)
);
CREATE INDEX fleet_certs_state ON fleet_certs (state, next_attempt);

-- Every public key ever submitted: a key is certified once (R66).
CREATE TABLE fleet_keys (
    spki_sha256 TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    cert_name TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);

-- Every certificate issued, kept after it is replaced.
CREATE TABLE fleet_archive (
    serial TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    cert_name TEXT NOT NULL,
    names TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    renew_at BIGINT NOT NULL,
    ari_id TEXT,
    ari_checked_at BIGINT,
    chain_pem TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    picked_up_at BIGINT,
    revoked_at BIGINT,
    revoked_reason BIGINT
);
CREATE INDEX fleet_archive_cert ON fleet_archive (agent, cert_name, issued_at);

-- The audit trail: who did what, when; ids start with a nanosecond timestamp.
CREATE TABLE fleet_audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    agent TEXT,
    cert_name TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX fleet_audit_agent ON fleet_audit (agent, at)
