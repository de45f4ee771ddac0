-- Revocation status for relying parties (CRLs and OCSP). Each certificate is on one CRL shard
-- of its issuer, the one its CRL distribution point names.
ALTER TABLE certificates ADD COLUMN crl_shard BIGINT;
-- The revoked certificates of a shard, for its CRL: a partial index that holds revoked rows only
-- and covers what a CRL entry needs (serial, time, reason), so that signing a shard reads the
-- index alone, not a million rows of the table.
CREATE INDEX certificates_revoked ON certificates (issuer_id, crl_shard, not_after, serial, revoked_at, revocation_reason) WHERE revoked_at IS NOT NULL
