//! Anti-replay nonces (RFC 8555 §6.5).
//!
//! A nonce is `prefix || base64url(counter ‖ issued_at ‖ tag)`: a 64-bit counter that grows with
//! every nonce issued, the issuing second, and an HMAC-SHA-256 tag (truncated to 128 bits)
//! over both under a key that never leaves this process. Issuing keeps no state, so no number
//! of newNonce requests can push out the nonces other clients hold (with a pool of issued
//! nonces, 100,000 newNonce requests evicted every outstanding nonce).
//!
//! Invariants:
//! - [`NoncePool::consume`] is true at most once per nonce: the tag proves this pool issued
//!   it; a nonce older than [`MAX_AGE`] or at or below the watermark is refused; otherwise its
//!   counter goes into the set of redeemed counters, where a replay finds it.
//! - Only redemptions, which need a verified JWS, ever fill the redeemed set. When it holds
//!   `capacity` counters, the lowest is dropped and the watermark rises to it, so memory stays
//!   bounded and a dropped counter still cannot be replayed (it is at or below the watermark).
//! - Counters increase with time, so the redeemed set is also ordered by age: counters issued
//!   more than [`MAX_AGE`] ago are dropped first, without lowering what the age check refuses.
//! - Several instances on one database ([`NoncePool::shared`]): one key, kept in the database,
//!   so a nonce any instance issued verifies on every one; each starts its counter at a random
//!   point, so two instances never issue the same nonce; the redemption is recorded in the
//!   database (`Store::redeem_nonce`), where a replay on any instance finds it. The in-memory
//!   redeemed set then serves only while storage takes no writes (nothing a replay could
//!   change can change then), so that reads go on being served.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;

/// How long a nonce may wait between issue and use.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);
const TAG_LEN: usize = 16;
const BODY_LEN: usize = 8 + 8;

pub struct NoncePool {
    key: hmac::Key,
    next: AtomicU64,
    capacity: usize,
    prefix: String,
    redeemed: Mutex<Redeemed>,
    /// Redemptions are recorded in the database, not in `redeemed` (several instances).
    shared: bool,
}

struct Redeemed {
    /// Counters redeemed and above the watermark, with the second each was issued.
    counters: BTreeSet<(u64, u64)>,
    /// Every counter at or below it is refused.
    watermark: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NoncePool {
    /// A pool that remembers up to `capacity` redeemed nonces; `prefix` starts every nonce.
    pub fn new(capacity: usize, prefix: &str) -> Self {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).expect("OS random source");
        Self::with_key(&secret, 1, capacity, prefix, false)
    }

    /// A pool of one of several instances sharing `secret` (see the module invariants); the
    /// caller records each redemption in the database.
    pub fn shared(secret: &[u8], prefix: &str) -> Self {
        let mut start = [0u8; 8];
        aws_lc_rs::rand::fill(&mut start).expect("OS random source");
        // Top bit clear: 2^63 counters from any start never wrap.
        let start = u64::from_be_bytes(start) >> 1;
        Self::with_key(secret, start.max(1), 100_000, prefix, true)
    }

    fn with_key(secret: &[u8], start: u64, capacity: usize, prefix: &str, shared: bool) -> Self {
        NoncePool {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            next: AtomicU64::new(start),
            capacity: capacity.max(1),
            prefix: prefix.to_owned(),
            redeemed: Mutex::new(Redeemed {
                counters: BTreeSet::new(),
                watermark: 0,
            }),
            shared,
        }
    }

    /// Whether redemptions go to the database ([`NoncePool::shared`]).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let tag = hmac::sign(&self.key, body);
        tag.as_ref()[..TAG_LEN]
            .try_into()
            .expect("SHA-256 is longer")
    }

    pub fn issue(&self) -> String {
        self.issue_at(now_secs())
    }

    fn issue_at(&self, at: u64) -> String {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; BODY_LEN + TAG_LEN];
        raw[..8].copy_from_slice(&counter.to_be_bytes());
        raw[8..BODY_LEN].copy_from_slice(&at.to_be_bytes());
        let tag = self.tag(&raw[..BODY_LEN]);
        raw[BODY_LEN..].copy_from_slice(&tag);
        format!("{}{}", self.prefix, sceau_wire::b64::encode(raw))
    }

    /// True exactly once for a nonce this pool issued less than [`MAX_AGE`] ago.
    pub fn consume(&self, nonce: &str) -> bool {
        self.consume_at(nonce, now_secs())
    }

    /// Whether `nonce` was issued by a pool with this key less than [`MAX_AGE`] ago, whatever
    /// its redemption: its (counter, issuing second).
    pub fn verify(&self, nonce: &str) -> Option<(u64, u64)> {
        self.verify_at(nonce, now_secs())
    }

    fn verify_at(&self, nonce: &str, now: u64) -> Option<(u64, u64)> {
        let encoded = nonce.strip_prefix(self.prefix.as_str())?;
        let raw = sceau_wire::b64::decode(encoded).ok()?;
        if raw.len() != BODY_LEN + TAG_LEN {
            return None;
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        // Constant-time comparison: the tag is a MAC.
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.tag(body), tag).ok()?;
        let counter = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        let issued = u64::from_be_bytes(body[8..].try_into().expect("8 bytes"));
        if issued > now + 60 || issued + MAX_AGE.as_secs() < now {
            return None;
        }
        Some((counter, issued))
    }

    fn consume_at(&self, nonce: &str, now: u64) -> bool {
        let Some((counter, issued)) = self.verify_at(nonce, now) else {
            return false;
        };
        let max_age = MAX_AGE.as_secs();
        let mut r = self.redeemed.lock().expect("nonce lock");
        if counter <= r.watermark || !r.counters.insert((counter, issued)) {
            return false;
        }
        // Forget what the age check refuses anyway, then keep within capacity.
        while let Some(&(c, at)) = r.counters.first() {
            if at + max_age >= now && r.counters.len() <= self.capacity {
                break;
            }
            r.counters.pop_first();
            r.watermark = r.watermark.max(c);
        }
        true
    }

    /// Redeemed nonces remembered now (for tests of the memory bound).
    pub fn redeemed_len(&self) -> usize {
        self.redeemed.lock().expect("nonce lock").counters.len()
    }
}

/// A new key for [`NoncePool::shared`] (32 random octets, base64url), which the first instance
/// stores for the others (`Store::nonce_key`).
pub fn new_shared_key() -> String {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).expect("OS random source");
    sceau_wire::b64::encode(secret)
}

impl crate::Acme {
    /// Redeems a nonce from a client: true exactly once per nonce this server (any of its
    /// instances, with a shared key) issued less than [`MAX_AGE`] ago.
    pub(crate) async fn redeem_nonce(&self, nonce: &str) -> crate::AcmeResult<bool> {
        if !self.nonces.is_shared() {
            return Ok(self.nonces.consume(nonce));
        }
        match self.nonces.verify(nonce) {
            None => Ok(false),
            Some((_, issued)) => match self.store.redeem_nonce(nonce, issued as i64).await {
                Ok(first) => Ok(first),
                // Storage takes no writes now (read-only, away): nothing a request could change
                // can change either, so this instance alone keeps the nonce from a replay here
                // and the reads go on being served.
                Err(e) if e.storage_fault().is_some() => Ok(self.nonces.consume(nonce)),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// With a shared key: one instance forgets, every few minutes, the redemptions of nonces
    /// too old to be accepted anyway.
    pub fn start_nonce_upkeep(
        self: &std::sync::Arc<Self>,
        scheduler: &crate::scheduler::Scheduler,
    ) {
        if !self.nonces.is_shared() {
            return;
        }
        let me = std::sync::Arc::clone(self);
        scheduler.every(
            "nonce-upkeep",
            Duration::from_secs(300),
            Duration::from_secs(60),
            crate::scheduler::Scope::OneInstance,
            move || {
                let me = std::sync::Arc::clone(&me);
                async move {
                    let before = now_secs().saturating_sub(MAX_AGE.as_secs() + 120);
                    me.store
                        .forget_nonces_before(before as i64)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_pools_verify_each_others_nonces_and_never_collide() {
        let secret = [7u8; 32];
        let a = NoncePool::shared(&secret, "");
        let b = NoncePool::shared(&secret, "");
        assert!(a.is_shared() && !NoncePool::new(10, "").is_shared());
        let from_a: Vec<String> = (0..1000).map(|_| a.issue()).collect();
        let from_b: Vec<String> = (0..1000).map(|_| b.issue()).collect();
        for n in &from_a {
            assert!(
                b.verify(n).is_some(),
                "a nonce of one instance verifies on the other"
            );
        }
        let mut all: BTreeSet<&String> = from_a.iter().collect();
        all.extend(from_b.iter());
        assert_eq!(all.len(), 2000, "two instances never issue the same nonce");
        let stranger = NoncePool::shared(&[8u8; 32], "");
        assert!(stranger.verify(&from_a[0]).is_none(), "another key");
        let now = now_secs();
        let old = a.issue_at(now - MAX_AGE.as_secs() - 1);
        assert!(b.verify_at(&old, now).is_none(), "too old");
    }

    #[test]
    fn each_nonce_once() {
        let pool = NoncePool::new(3, "");
        let a = pool.issue();
        assert!(pool.consume(&a));
        assert!(!pool.consume(&a), "replay must fail");
        assert!(!pool.consume("never-issued"));
        assert!(!pool.consume(""));
    }

    #[test]
    fn issuing_never_evicts_outstanding_nonces() {
        let pool = NoncePool::new(1000, "");
        let held = pool.issue();
        for _ in 0..200_000 {
            pool.issue();
        }
        assert!(
            pool.consume(&held),
            "a held nonce survives any number of issues"
        );
    }

    #[test]
    fn redeemed_set_is_bounded_and_dropped_nonces_stay_refused() {
        let pool = NoncePool::new(3, "");
        let nonces: Vec<String> = (0..10).map(|_| pool.issue()).collect();
        // Redeem the newest first, then the oldest: the oldest is below the watermark.
        for n in &nonces[5..] {
            assert!(pool.consume(n));
        }
        assert!(pool.redeemed_len() <= 3);
        for n in &nonces[5..] {
            assert!(!pool.consume(n), "replay after eviction");
        }
        assert!(!pool.consume(&nonces[0]), "below the watermark");
    }

    #[test]
    fn forged_other_pool_and_expired_nonces_are_refused() {
        let pool = NoncePool::new(100, "p-");
        let other = NoncePool::new(100, "p-");
        assert!(!pool.consume(&other.issue()), "another pool's key");
        let good = pool.issue();
        // Flip one bit of the counter: the tag no longer matches.
        let mut raw = sceau_wire::b64::decode(good.strip_prefix("p-").unwrap()).unwrap();
        raw[7] ^= 1;
        assert!(!pool.consume(&format!("p-{}", sceau_wire::b64::encode(&raw))));
        assert!(
            !pool.consume(good.strip_prefix("p-").unwrap()),
            "prefix missing"
        );
        let now = now_secs();
        let old = pool.issue_at(now - MAX_AGE.as_secs() - 1);
        assert!(!pool.consume_at(&old, now), "too old");
        let fresh = pool.issue_at(now - 10);
        assert!(pool.consume_at(&fresh, now));
        assert!(pool.consume(&good));
    }
}
