-- Rate limits (sceau-acme's limits module) count rows the tables already hold; these indexes keep
-- each count a short index range scan. Portable SQL as in 0001.
CREATE INDEX accounts_created_ip ON accounts (created_ip, created_at);
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
-- The names-per-account limit sums what each order created, over the orders_account index.
ALTER TABLE orders ADD COLUMN new_authzs BIGINT
