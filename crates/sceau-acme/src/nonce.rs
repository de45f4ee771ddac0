//! Anti-replay nonces (RFC 8555 §6.5): 128 random bits, each accepted once.
//!
//! Invariant: a nonce is in `live` from the moment it is handed out until it is consumed or
//! evicted; consumption removes it, so a replay finds nothing. Capacity is bounded: the oldest
//! nonces are evicted first, and a client holding one gets `badNonce` and retries, as it must.
//! Nonces are held in memory by the instance that issued them; several instances behind one
//! name need sticky routing or a shared nonce service (the prefix leaves room for routing).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

pub struct NoncePool {
    inner: Mutex<Inner>,
    capacity: usize,
    prefix: String,
}

struct Inner {
    live: HashSet<String>,
    order: VecDeque<String>,
}

impl NoncePool {
    pub fn new(capacity: usize, prefix: &str) -> Self {
        NoncePool {
            inner: Mutex::new(Inner {
                live: HashSet::new(),
                order: VecDeque::new(),
            }),
            capacity,
            prefix: prefix.to_owned(),
        }
    }

    pub fn issue(&self) -> String {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
        let nonce = format!("{}{}", self.prefix, sceau_wire::b64::encode(bytes));
        let mut inner = self.inner.lock().expect("nonce lock");
        while inner.order.len() >= self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.live.remove(&old);
            }
        }
        inner.live.insert(nonce.clone());
        inner.order.push_back(nonce.clone());
        nonce
    }

    /// True exactly once for a nonce this pool issued and has not evicted.
    pub fn consume(&self, nonce: &str) -> bool {
        // The deque entry stays until evicted; `live` is the source of truth.
        self.inner.lock().expect("nonce lock").live.remove(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nonce_once_and_bounded() {
        let pool = NoncePool::new(3, "");
        let a = pool.issue();
        assert!(pool.consume(&a));
        assert!(!pool.consume(&a), "replay must fail");
        assert!(!pool.consume("never-issued"));
        let b = pool.issue();
        for _ in 0..3 {
            pool.issue();
        }
        assert!(!pool.consume(&b), "evicted nonce is refused");
    }
}
