//! sceau-ca
