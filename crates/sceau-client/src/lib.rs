//! sceau-client
