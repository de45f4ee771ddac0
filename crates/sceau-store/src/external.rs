//! External admin accounts (the agency guide's "AA", RFC 8555's external accounts).
