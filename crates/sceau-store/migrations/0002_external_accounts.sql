-- External admin accounts (agency guide R1–R22). Filled in by the admin-account work.
CREATE TABLE external_accounts (
    kid TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
