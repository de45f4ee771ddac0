-- Pre-signed OCSP responses (RFC 6960, RFC 5019 profile) by serial and by the hash algorithm
-- of the CertID they answer (sha1, sha256): answering costs no signature. A revocation deletes
-- the serial's responses in its own transaction, so no `good` response outlives it.
CREATE TABLE ocsp_responses (
    serial TEXT NOT NULL,
    hash_alg TEXT NOT NULL,
    der TEXT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    PRIMARY KEY (serial, hash_alg)
);
CREATE INDEX ocsp_responses_due ON ocsp_responses (next_update)
