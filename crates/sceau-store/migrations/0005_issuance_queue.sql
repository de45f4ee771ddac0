-- The durable issuance queue (sceau-acme's queue module). An order in `processing` is a job:
-- its lease (which instance signs it, until when), its next attempt, how many attempts it took,
-- its deadline and the serial number of its current attempt. Times are Unix seconds.
ALTER TABLE orders ADD COLUMN issue_owner TEXT;
ALTER TABLE orders ADD COLUMN issue_lease BIGINT;
ALTER TABLE orders ADD COLUMN issue_next BIGINT;
ALTER TABLE orders ADD COLUMN issue_attempts BIGINT;
ALTER TABLE orders ADD COLUMN issue_deadline BIGINT;
ALTER TABLE orders ADD COLUMN issue_serial TEXT;
ALTER TABLE orders ADD COLUMN issue_error TEXT;
-- Every serial number reserved for a signature, and how it ended: `reserved` while an attempt
-- runs, `issued` (its certificate is in certificates), `failed` (known not to be signed) or
-- `abandoned` (the attempt's outcome is unknown: a crash, a signer that died while signing; the
-- certificate, if one was made, was never handed out).
CREATE TABLE serials (
    serial TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- No index beyond the key: the queue reads serials by serial only, and every index is one more
-- page written per certificate.
-- Which issuing CA signed each certificate (CRLs and OCSP are per issuer).
ALTER TABLE certificates ADD COLUMN issuer_id TEXT;
-- Periodic jobs that one instance at a time runs (sceau-acme's scheduler).
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires BIGINT NOT NULL
)
