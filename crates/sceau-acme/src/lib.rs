//! sceau-acme
