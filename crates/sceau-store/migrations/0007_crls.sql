-- The current CRL of each shard of each issuer (RFC 5280 section 5), as signed: every instance
-- serves it from here. `number` is the cRLNumber (strictly increasing per shard: the next is
-- above both the last and the signing time in milliseconds, so it also increases after a
-- restore); `dirty`: a certificate of the shard was revoked since it was signed.
CREATE TABLE crls (
    issuer_id TEXT NOT NULL,
    shard BIGINT NOT NULL,
    number BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der TEXT NOT NULL,
    dirty BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, shard)
)
