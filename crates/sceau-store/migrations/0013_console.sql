-- The web console (issue 15): the people who log in, and their sessions.
-- A user is an operator (the PKI team) or the holder of one external account (kid). The
-- password is an Argon2id PHC string; the TOTP secret is stored sealed (hex) like the EAB MAC keys
-- (never in clear); totp_last_step is the last time step a code was accepted for, so a code is
-- never accepted twice (RFC 6238 §5.2). Recovery codes are stored as SHA-256 hex, one row each,
-- used at most once.
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    kid TEXT,
    password_hash TEXT NOT NULL,
    totp_sealed TEXT,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE console_recovery_codes (
    name TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (name, code_sha256)
);
-- A session is a random token held in a cookie; only its SHA-256 is stored. user_name is NULL
-- before login (the login form's CSRF token lives there too); stage says how far the login got
-- ('anonymous', 'password', 'enrol', 'done'); mfa_at is when a second factor was last given.
CREATE TABLE console_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT,
    stage TEXT NOT NULL,
    csrf TEXT NOT NULL,
    pending_totp TEXT,
    created_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    mfa_at BIGINT
);
CREATE INDEX console_sessions_seen ON console_sessions (seen_at);
-- An operator invites the holder of an external account: the invitation's token (its SHA-256
-- here) sets the holder's first password, once, before it expires. Until then the user is
-- 'invited' and cannot log in.
CREATE TABLE console_invitations (
    token_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
-- A holder asks for a name; an operator approves or refuses it (agency guide R6). The CAA
-- records found when it was asked are kept with it (R7), for the operator who decides.
CREATE TABLE name_requests (
    id TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    name TEXT NOT NULL,
    subdomains BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    caa TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    reason TEXT
);
CREATE INDEX name_requests_status ON name_requests (status, requested_at);
CREATE INDEX name_requests_kid ON name_requests (kid, requested_at);
-- When each external account's scheduled report (R49) was last accepted by the mail server.
CREATE TABLE report_sends (
    kid TEXT PRIMARY KEY,
    sent_at BIGINT NOT NULL
);
-- Passkeys (WebAuthn Level 2): a second factor instead of a TOTP code. The public key is the
-- uncompressed P-256 point (hex) of an ES256 credential; sign_count only grows (a copied
-- authenticator shows itself by reusing a count). The session holds the challenge of the
-- ceremony in progress.
CREATE TABLE console_passkeys (
    credential_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX console_passkeys_name ON console_passkeys (name);
ALTER TABLE console_sessions ADD COLUMN webauthn_challenge TEXT;
