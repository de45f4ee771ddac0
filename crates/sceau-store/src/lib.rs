//! sceau-store
