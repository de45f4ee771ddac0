-- Rate limits (sceau-acme's limits module) count rows the tables already hold; these indexes keep
-- each count a short index range scan. Portable SQL as in 0001.
CREATE INDEX accounts_created_ip ON accounts (created_ip, created_at);
CREATE INDEX authzs_account_created ON authzs (account_id, created_at);
CREATE INDEX authzs_pending ON authzs (account_id, expires) WHERE status = 'pending';
-- Events that count against a limit and have no table of their own: failed external account
-- bindings per key id, bindings naming an unknown key id per client address.
CREATE TABLE limit_events (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX limit_events_subject ON limit_events (kind, subject, at);
-- RFC 8555 section 11.1: the RFC 7638 thumbprint of every certified public key, so that
-- newAccount and keyChange refuse a key that is in a certificate (NULL in rows issued before).
ALTER TABLE certificates ADD COLUMN key_thumbprint TEXT;
CREATE INDEX certificates_key_thumbprint ON certificates (key_thumbprint)
