-- Recovery after a restart looks for orders and challenges left in `processing`, and a partial
-- index holds only those rows, so the other status changes of an issuance (pending, ready,
-- valid, invalid) no longer rewrite an index page each. Same syntax on SQLite and PostgreSQL.
DROP INDEX orders_status;
CREATE INDEX orders_processing ON orders (id) WHERE status = 'processing';
DROP INDEX challenges_status;
CREATE INDEX challenges_processing ON challenges (id) WHERE status = 'processing'
