//! sceau-validate
