-- Nonces valid on every instance of one database (issue 14): the key the instances make them
-- with, created by the first one, and every nonce redeemed, refused on reuse wherever it comes
-- back. Rows older than a nonce's lifetime are deleted by one instance's periodic job.
CREATE TABLE nonce_keys (
    id BIGINT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE nonces_redeemed (
    nonce TEXT PRIMARY KEY,
    issued_at BIGINT NOT NULL
);
CREATE INDEX nonces_redeemed_issued ON nonces_redeemed (issued_at);
