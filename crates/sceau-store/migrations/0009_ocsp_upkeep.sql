-- What the OCSP job reads to find certificates that need their first responses, without a
-- scan of every certificate: the ones issued since its last run, and the ones revoked since
-- (a revocation deletes their responses). The second is partial: it holds revoked rows only.
CREATE INDEX certificates_created ON certificates (created_at);
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL
