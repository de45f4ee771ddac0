-- STAR orders (RFC 8739, issue 16): an order with `auto-renewal` terms is a series of
-- certificates for one CSR. star_end is NULL for every other order. star_start, star_end,
-- star_lifetime and star_adjust are the terms as agreed (seconds, Unix time); star_get is 1 when
-- unauthenticated GET of the star-certificate URL was agreed. star_next is the nominal renewal
-- date (§3.5) of the next certificate and star_due when the renewal job hands it to the issuance
-- queue; both NULL once the series is complete, stopped or canceled. A renewal runs as a job of
-- the issuance queue: the order is `processing` meanwhile (shown `valid` on the wire, §3.1.1)
-- and `valid` again with its new cert_id.
ALTER TABLE orders ADD COLUMN star_start BIGINT;
ALTER TABLE orders ADD COLUMN star_end BIGINT;
ALTER TABLE orders ADD COLUMN star_lifetime BIGINT;
ALTER TABLE orders ADD COLUMN star_adjust BIGINT;
ALTER TABLE orders ADD COLUMN star_get INTEGER;
ALTER TABLE orders ADD COLUMN star_next BIGINT;
ALTER TABLE orders ADD COLUMN star_due BIGINT;
CREATE INDEX orders_star_due ON orders (star_due);
-- A series has many certificates for its one order: certificates.order_id is no longer unique.
-- The table is rebuilt (SQLite cannot drop a column constraint), with every column of 0001,
-- 0005 and 0006 and every index of 0001, 0006 and 0009, plus one on order_id.
CREATE TABLE certificates_v14 (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    der TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    ari_id TEXT NOT NULL UNIQUE,
    spki_sha256 TEXT NOT NULL,
    revoked_at BIGINT,
    revocation_reason BIGINT,
    replaced_by TEXT,
    created_at BIGINT NOT NULL,
    issuer_id TEXT,
    crl_shard BIGINT
);
INSERT INTO certificates_v14 (id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, revoked_at, revocation_reason, replaced_by, created_at, issuer_id, crl_shard)
    SELECT id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, revoked_at, revocation_reason, replaced_by, created_at, issuer_id, crl_shard FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_v14 RENAME TO certificates;
CREATE INDEX certificates_spki ON certificates (spki_sha256);
CREATE INDEX certificates_account ON certificates (account_id);
CREATE INDEX certificates_revoked ON certificates (issuer_id, crl_shard, not_after, serial, revoked_at, revocation_reason) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_created ON certificates (created_at);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_order ON certificates (order_id);
