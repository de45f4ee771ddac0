//! sceau-testkit
