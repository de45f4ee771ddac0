//! A client-side guard that keeps newOrder requests and authorization fetches from being in
//! flight at the same time, for CAs that deadlock when they overlap (Pebble 2.4: its authz
//! handler holds the authz write lock while waiting for the store lock, and newOrder holds the
//! store read lock while it read-locks every authz; a queued store writer closes the cycle).
//!
//! Invariants:
//! - Requests of one class run concurrently with each other; the two classes never overlap.
//! - Neither class starves: once a request of the other class waits, new arrivals of the
//!   active class wait too, and when the active class drains, every waiter of the other class
//!   is admitted at once (so a class keeps its concurrency in batches).
//! - An `enter` future is never dropped while it waits (callers await it to completion);
//!   dropping it would leave its waiter counted.

use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    NewOrder,
    Authorization,
}

impl Class {
    fn index(self) -> usize {
        match self {
            Class::NewOrder => 0,
            Class::Authorization => 1,
        }
    }
}

const CLASSES: [Class; 2] = [Class::NewOrder, Class::Authorization];

#[derive(Default)]
struct State {
    active: Option<Class>,
    in_flight: usize,
    waiting: [usize; 2],
    /// Bumped each time a class's waiters are admitted; a waiter leaves when it moves on.
    admitted: [u64; 2],
}

#[derive(Default)]
pub struct ClassGuard {
    state: Mutex<State>,
    admitted: Notify,
}

/// Held for the duration of one request; leaves the class on drop.
pub struct Pass<'a> {
    guard: &'a ClassGuard,
}

impl ClassGuard {
    pub async fn enter(&self, class: Class) -> Pass<'_> {
        let i = class.index();
        let ticket = {
            let mut s = self.state.lock().expect("guard lock");
            match s.active {
                None => {
                    s.active = Some(class);
                    s.in_flight = 1;
                    return Pass { guard: self };
                }
                Some(active) if active == class && s.waiting[1 - i] == 0 => {
                    s.in_flight += 1;
                    return Pass { guard: self };
                }
                _ => {
                    s.waiting[i] += 1;
                    s.admitted[i]
                }
            }
        };
        loop {
            // Registered before the check so that an admission in between is not missed.
            let admitted = self.admitted.notified();
            tokio::pin!(admitted);
            admitted.as_mut().enable();
            if self.state.lock().expect("guard lock").admitted[i] != ticket {
                return Pass { guard: self };
            }
            admitted.await;
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut s = self.guard.state.lock().expect("guard lock");
        s.in_flight -= 1;
        if s.in_flight > 0 {
            return;
        }
        let current = s.active.map_or(0, Class::index);
        let next = [1 - current, current]
            .into_iter()
            .find(|&j| s.waiting[j] > 0);
        match next {
            Some(j) => {
                s.active = Some(CLASSES[j]);
                s.in_flight = s.waiting[j];
                s.waiting[j] = 0;
                s.admitted[j] += 1;
                self.guard.admitted.notify_waiters();
            }
            None => s.active = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn classes_never_overlap_and_same_class_shares() {
        let guard = Arc::new(ClassGuard::default());
        let in_flight = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let max_same = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (guard, in_flight, max_same) = (guard.clone(), in_flight.clone(), max_same.clone());
            tasks.push(tokio::spawn(async move {
                let (mine, other, class) = if i % 2 == 0 {
                    (0, 1, Class::NewOrder)
                } else {
                    (1, 0, Class::Authorization)
                };
                for _ in 0..5 {
                    let _pass = guard.enter(class).await;
                    let now = in_flight[mine].fetch_add(1, Ordering::SeqCst) + 1;
                    max_same.fetch_max(now, Ordering::SeqCst);
                    assert_eq!(
                        in_flight[other].load(Ordering::SeqCst),
                        0,
                        "classes overlapped"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    assert_eq!(
                        in_flight[other].load(Ordering::SeqCst),
                        0,
                        "classes overlapped"
                    );
                    in_flight[mine].fetch_sub(1, Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("no starvation")
                .unwrap();
        }
        assert!(
            max_same.load(Ordering::SeqCst) > 1,
            "one class must run requests concurrently"
        );
    }
}
