//! Rate limits: the one place where the server decides that a client asks too much.
//!
//! Invariants:
//! - A refused request changes nothing and gets `rateLimited` (HTTP 429, RFC 8555 §6.7) with a
//!   `Retry-After` (§6.6) of the seconds until the limit has room again, and a detail naming
//!   the limit and its setting.
//! - Limits on accounts, orders, authorizations and external account bindings count rows the
//!   database holds (sliding windows over their creation times), so they hold across restarts
//!   and across instances sharing one database. Counting and creating are separate statements:
//!   concurrent requests may overshoot a limit by the number in flight, never by more.
//! - Per-address limits on cheap requests (newNonce) are token buckets in this process's memory,
//!   bounded in the number of addresses they track.
//! - Refusals are logged as one summary line per limit per minute, never one per request, so a
//!   client hammering a limit cannot flood the log.
//! - The R29 limit on failed validations (per account, per name, per hour) lives here too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sceau_store::{AuditEntry, Store, WindowCount, now};
use sceau_wire::ProblemType;
use serde_json::json;

use crate::{AcmeError, AcmeResult};

/// At most `count` events per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    /// `COUNT/PERIOD` with PERIOD a number and a unit (`s`, `m`, `h`, `d`; `1h`, `10s`), or
    /// `off` for no limit.
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("{text:?} is not COUNT/PERIOD (for example 50/1h) or \"off\"");
        let (count, period) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = parse_period(period.trim()).ok_or_else(bad)?;
        if count == 0 || period.is_zero() {
            return Err(format!(
                "{text:?}: a rate needs a count and a period above zero (or \"off\")"
            ));
        }
        Ok(Some(Rate { count, period }))
    }

    fn describe(self) -> String {
        format!("{}/{}", self.count, describe_period(self.period))
    }
}

/// A maximum number, or `off`.
pub fn parse_count(text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!("{text:?} is not a number above zero or \"off\"")),
    }
}

/// A rate's period: a duration, where a bare unit (`5/d`) means one of it.
fn parse_period(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        sceau_wire::duration::parse(text).ok()
    } else {
        sceau_wire::duration::parse(&format!("1{text}")).ok()
    }
}

/// A length of time such as `90s`, `30m`, `1h`, `2d`, `1w` or `1y` (365 days), above zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    sceau_wire::duration::parse(text)
}

fn describe_period(d: Duration) -> String {
    sceau_wire::duration::describe(d)
}

/// Every rate limit's setting; `None` turns a limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// New ACME accounts per client address.
    pub accounts_per_address: Option<Rate>,
    /// New orders per ACME account.
    pub orders_per_account: Option<Rate>,
    /// New authorizations (names to validate) per ACME account.
    pub names_per_account: Option<Rate>,
    /// Pending, unexpired authorizations one account may hold.
    pub pending_authzs_per_account: Option<u32>,
    /// Failed external account bindings per EAB key id, and bindings naming an unknown key
    /// id per client address.
    pub eab_failures_per_key: Option<Rate>,
    /// newNonce requests per client address.
    pub nonces_per_address: Option<Rate>,
    /// Failed console logins (password or second factor) per user name...
    pub console_failures_per_user: Option<Rate>,
    /// ...and per client address.
    pub console_failures_per_address: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let rate = |count, secs| {
            Some(Rate {
                count,
                period: Duration::from_secs(secs),
            })
        };
        RateLimits {
            accounts_per_address: rate(50, 3600),
            orders_per_account: rate(300, 3600),
            names_per_account: rate(1000, 3600),
            pending_authzs_per_account: Some(1000),
            eab_failures_per_key: rate(10, 3600),
            nonces_per_address: rate(2000, 10),
            console_failures_per_user: rate(5, 900),
            console_failures_per_address: rate(20, 900),
        }
    }
}

/// The limits of one server process: their settings, the in-memory buckets, the refusal log.
pub struct Limiter {
    pub settings: RateLimits,
    nonces: Buckets,
    /// Console sessions opened before login (each a database row), per address.
    console_sessions: Buckets,
    log: RefusalLog,
}

/// Names of the limits, as settings and in log lines.
const ACCOUNTS: &str = "limit_accounts_per_address";
const ORDERS: &str = "limit_orders_per_account";
const NAMES: &str = "limit_names_per_account";
const PENDING: &str = "limit_pending_authzs_per_account";
const EAB: &str = "limit_eab_failures_per_key";
const NONCES: &str = "limit_nonces_per_address";
const FAILED_VALIDATIONS: &str = "max_failed_validations_per_hour";
const CONSOLE_USER: &str = "limit_console_failures_per_user";
const CONSOLE_SESSIONS: &str = "console_sessions_per_address";
const CONSOLE_ADDRESS: &str = "limit_console_failures_per_address";

/// `limit_events` kinds.
const EVENT_EAB_FAILED: &str = "eab.failed";
const EVENT_EAB_UNKNOWN: &str = "eab.unknown_kid";
const EVENT_CONSOLE_USER: &str = "console.failed.user";
const EVENT_CONSOLE_ADDRESS: &str = "console.failed.address";

fn refusal(limit: &str, detail: String, retry_after: u64) -> AcmeError {
    let mut err = AcmeError::new(
        ProblemType::RateLimited,
        format!("{detail} (server setting {limit}); retry in {retry_after} s"),
    );
    err.retry_after = Some(retry_after.max(1));
    err
}

/// Seconds until a window of `period` that holds `w` has room for one more event.
fn retry_after(w: WindowCount, period: Duration, now: i64) -> u64 {
    let oldest = w.oldest.unwrap_or(now);
    (oldest + period.as_secs() as i64 - now).max(1) as u64
}

impl Limiter {
    pub fn new(settings: RateLimits) -> Self {
        Limiter {
            settings,
            nonces: Buckets::new(100_000),
            console_sessions: Buckets::new(100_000),
            log: RefusalLog::default(),
        }
    }

    fn refuse(&self, limit: &'static str, subject: &str, err: AcmeError) -> AcmeError {
        self.log.note(limit, subject);
        err
    }

    /// The refusal of a sliding-window limit: `what` happened in the last `rate.period`, and
    /// the window has room again when the oldest event in `w` leaves it.
    fn window_full(
        &self,
        limit: &'static str,
        subject: &str,
        what: String,
        rate: Rate,
        w: WindowCount,
        now: i64,
    ) -> AcmeError {
        let err = refusal(
            limit,
            format!(
                "{what} in the last {} (limit {})",
                describe_period(rate.period),
                rate.describe()
            ),
            retry_after(w, rate.period, now),
        );
        self.refuse(limit, subject, err)
    }

    /// newAccount from `ip` (only when an account would be created).
    pub async fn new_account(&self, store: &Store, ip: Option<&str>) -> AcmeResult<()> {
        let (Some(rate), Some(ip)) = (self.settings.accounts_per_address, ip) else {
            return Ok(());
        };
        let now = now();
        let w = store
            .accounts_created_from(ip, now - rate.period.as_secs() as i64)
            .await?;
        if w.count >= i64::from(rate.count) {
            return Err(self.window_full(
                ACCOUNTS,
                ip,
                format!("{} new accounts from {ip}", w.count),
                rate,
                w,
                now,
            ));
        }
        Ok(())
    }

    /// newOrder by `account_id` that would create `new_names` authorizations.
    pub async fn new_order(
        &self,
        store: &Store,
        account_id: &str,
        new_names: usize,
    ) -> AcmeResult<()> {
        let s = &self.settings;
        if s.orders_per_account.is_none()
            && s.names_per_account.is_none()
            && s.pending_authzs_per_account.is_none()
        {
            return Ok(());
        }
        let now = now();
        let since = |r: Option<Rate>| r.map_or(now, |r| now - r.period.as_secs() as i64);
        let load = store
            .order_load(
                account_id,
                since(s.orders_per_account),
                since(s.names_per_account),
                now,
            )
            .await?;
        let new_names = new_names as i64;
        if let Some(rate) = s.orders_per_account
            && load.orders.count >= i64::from(rate.count)
        {
            return Err(self.window_full(
                ORDERS,
                account_id,
                format!("{} new orders by this account", load.orders.count),
                rate,
                load.orders,
                now,
            ));
        }
        if let Some(rate) = s.names_per_account
            && new_names > 0
            && load.names.count + new_names > i64::from(rate.count)
        {
            return Err(self.window_full(
                NAMES,
                account_id,
                format!(
                    "this order needs {new_names} new authorizations and the account created {}",
                    load.names.count
                ),
                rate,
                load.names,
                now,
            ));
        }
        if let Some(max) = s.pending_authzs_per_account
            && new_names > 0
            && load.pending + new_names > i64::from(max)
        {
            let err = refusal(
                PENDING,
                format!(
                    "this order needs {new_names} new authorizations and the account holds {} pending ones (limit {max}); complete or deactivate them, or let them expire",
                    load.pending
                ),
                // Pending authorizations leave by being answered or by expiring: no fixed time.
                60,
            );
            return Err(self.refuse(PENDING, account_id, err));
        }
        Ok(())
    }

    /// Before checking an external account binding's MAC: refused when this key id failed too
    /// often lately.
    pub async fn eab_attempt(&self, store: &Store, kid: &str) -> AcmeResult<()> {
        let Some(rate) = self.settings.eab_failures_per_key else {
            return Ok(());
        };
        let now = now();
        let w = store
            .limit_events_since(EVENT_EAB_FAILED, kid, now - rate.period.as_secs() as i64)
            .await?;
        if w.count >= i64::from(rate.count) {
            return Err(self.window_full(
                EAB,
                kid,
                format!(
                    "{} failed external account bindings for this key id",
                    w.count
                ),
                rate,
                w,
                now,
            ));
        }
        Ok(())
    }

    /// A binding for an existing key id whose MAC did not verify: counted and audited (the
    /// audit row commits with the count).
    pub async fn eab_failed(
        &self,
        store: &Store,
        kid: &str,
        ip: Option<&str>,
        why: &str,
    ) -> AcmeResult<()> {
        let Some(rate) = self.settings.eab_failures_per_key else {
            return Ok(());
        };
        let now = now();
        let audit = AuditEntry {
            event: "eab.failed",
            account_id: None,
            client_ip: ip,
            detail: json!({"kid": kid, "reason": why}),
        };
        store
            .record_limit_event(
                EVENT_EAB_FAILED,
                kid,
                now,
                now - rate.period.as_secs() as i64,
                Some(&audit),
            )
            .await?;
        audit.log();
        Ok(())
    }

    /// A binding that names no usable key id: counted per client address, so that guessing
    /// key ids is as limited as guessing MACs. Audited while under the limit.
    pub async fn eab_unknown(&self, store: &Store, kid: &str, ip: Option<&str>) -> AcmeResult<()> {
        let (Some(rate), Some(ip)) = (self.settings.eab_failures_per_key, ip) else {
            return Ok(());
        };
        let now = now();
        let since = now - rate.period.as_secs() as i64;
        let w = store
            .limit_events_since(EVENT_EAB_UNKNOWN, ip, since)
            .await?;
        if w.count >= i64::from(rate.count) {
            return Err(self.window_full(
                EAB,
                ip,
                format!(
                    "{} external account bindings with unknown key ids from {ip}",
                    w.count
                ),
                rate,
                w,
                now,
            ));
        }
        let audit = AuditEntry {
            event: "eab.unknown_kid",
            account_id: None,
            client_ip: Some(ip),
            detail: json!({"kid": kid}),
        };
        store
            .record_limit_event(EVENT_EAB_UNKNOWN, ip, now, since, Some(&audit))
            .await?;
        audit.log();
        Ok(())
    }

    /// newNonce from `ip`.
    pub fn nonce(&self, ip: Option<IpAddr>) -> AcmeResult<()> {
        let (Some(rate), Some(ip)) = (self.settings.nonces_per_address, ip) else {
            return Ok(());
        };
        match self.nonces.take(ip, rate) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let err = refusal(
                    NONCES,
                    format!(
                        "too many new nonces for {ip} (limit {}); every ACME response carries a fresh nonce in Replay-Nonce",
                        rate.describe()
                    ),
                    wait.as_secs().max(1),
                );
                Err(self.refuse(NONCES, &ip.to_string(), err))
            }
        }
    }

    /// Before the console opens a session for a visitor not logged in (a database row each):
    /// at most 30 a minute per address, so that a client reloading the login page in a loop
    /// cannot fill the database.
    pub fn console_session(&self, ip: Option<IpAddr>) -> AcmeResult<()> {
        let Some(ip) = ip else { return Ok(()) };
        let rate = Rate {
            count: 30,
            period: Duration::from_secs(60),
        };
        self.console_sessions.take(ip, rate).map_err(|wait| {
            let err = refusal(
                CONSOLE_SESSIONS,
                format!("too many console sessions opened from {ip} (limit 30/1m)"),
                wait.as_secs().max(1),
            );
            self.refuse(CONSOLE_SESSIONS, &ip.to_string(), err)
        })
    }

    /// Before checking a console login (password or second factor) of `user` from `ip`:
    /// refused while either failed too often lately (guessing a password, or a code, is
    /// limited per account and per address, across instances).
    pub async fn console_attempt(&self, store: &Store, user: &str, ip: &str) -> AcmeResult<()> {
        let now = now();
        for (limit, kind, subject, rate, what) in [
            (
                CONSOLE_USER,
                EVENT_CONSOLE_USER,
                user,
                self.settings.console_failures_per_user,
                "failed logins for this user",
            ),
            (
                CONSOLE_ADDRESS,
                EVENT_CONSOLE_ADDRESS,
                ip,
                self.settings.console_failures_per_address,
                "failed logins from this address",
            ),
        ] {
            let Some(rate) = rate else { continue };
            let w = store
                .limit_events_since(kind, subject, now - rate.period.as_secs() as i64)
                .await?;
            if w.count >= i64::from(rate.count) {
                return Err(self.window_full(
                    limit,
                    subject,
                    format!("{} {what}", w.count),
                    rate,
                    w,
                    now,
                ));
            }
        }
        Ok(())
    }

    /// A console login that failed: counted for the user and the address, audited with the
    /// reason (which the person trying is not told).
    pub async fn console_failed(
        &self,
        store: &Store,
        user: &str,
        ip: &str,
        why: &str,
    ) -> AcmeResult<()> {
        let now = now();
        let audit = AuditEntry {
            event: "console.login_failed",
            account_id: None,
            client_ip: Some(ip),
            detail: json!({"user": user, "reason": why}),
        };
        let mut audited = false;
        for (kind, subject, rate) in [
            (
                EVENT_CONSOLE_USER,
                user,
                self.settings.console_failures_per_user,
            ),
            (
                EVENT_CONSOLE_ADDRESS,
                ip,
                self.settings.console_failures_per_address,
            ),
        ] {
            let Some(rate) = rate else { continue };
            let with = (!audited).then_some(&audit);
            store
                .record_limit_event(kind, subject, now, now - rate.period.as_secs() as i64, with)
                .await?;
            audited = true;
        }
        if !audited {
            store.audit(&audit).await?;
        }
        audit.log();
        Ok(())
    }

    /// R29: before starting a validation of `identifier` for `account_id`.
    pub async fn validation_attempt(
        &self,
        store: &Store,
        limit: Option<u32>,
        account_id: &str,
        identifier: &str,
    ) -> AcmeResult<()> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let failed = store
            .failed_validations_since(account_id, identifier, now() - 3600)
            .await?;
        if failed >= i64::from(limit) {
            let err = refusal(
                FAILED_VALIDATIONS,
                format!(
                    "{failed} failed validations for {identifier} in the last hour (limit {limit}, agency guide R29); fix the challenge response and retry later"
                ),
                3600,
            );
            return Err(self.refuse(FAILED_VALIDATIONS, account_id, err));
        }
        Ok(())
    }
}

/// Per-address token buckets: each address may take `rate.count` tokens at once, refilled at
/// `rate.count / rate.period`. At most `max_addresses` are tracked; when full, buckets that
/// are full again (idle long enough) are forgotten first, then the whole table, which only
/// ever forgives.
struct Buckets {
    table: Mutex<HashMap<IpAddr, Bucket>>,
    max_addresses: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    fn new(max_addresses: usize) -> Self {
        Buckets {
            table: Mutex::new(HashMap::new()),
            max_addresses,
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&self, ip: IpAddr, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        let capacity = f64::from(rate.count);
        let per_sec = capacity / rate.period.as_secs_f64();
        let mut table = self.table.lock().expect("bucket lock");
        if table.len() >= self.max_addresses && !table.contains_key(&ip) {
            table.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
            if table.len() >= self.max_addresses {
                table.clear();
            }
        }
        let b = table.entry(ip).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

/// One log line per limit per minute: how many requests it refused and for how many subjects.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    since: Instant,
    refused: u64,
    subjects: std::collections::HashSet<String>,
}

const LOG_INTERVAL: Duration = Duration::from_secs(60);

impl RefusalLog {
    fn note(&self, limit: &'static str, subject: &str) {
        let interval = LOG_INTERVAL;
        let mut state = self.state.lock().expect("log lock");
        let now = Instant::now();
        let w = state.entry(limit).or_insert_with(|| Window {
            since: now,
            refused: 0,
            subjects: Default::default(),
        });
        let first = w.refused == 0;
        w.refused += 1;
        if w.subjects.len() < 1000 {
            w.subjects.insert(subject.to_owned());
        }
        if first {
            tracing::warn!(
                limit,
                subject,
                "rate limit reached; further refusals are summarised once a minute"
            );
        } else if now.duration_since(w.since) >= interval {
            tracing::warn!(
                limit,
                refused = w.refused,
                subjects = w.subjects.len(),
                "rate limit refusals in the last minute"
            );
            *w = Window {
                since: now,
                refused: 0,
                subjects: Default::default(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(
            Rate::parse("50/1h").unwrap(),
            Some(Rate {
                count: 50,
                period: Duration::from_secs(3600)
            })
        );
        assert_eq!(
            Rate::parse("200/10s").unwrap().unwrap().describe(),
            "200/10s"
        );
        assert_eq!(Rate::parse("5/d").unwrap().unwrap().period.as_secs(), 86400);
        assert_eq!(Rate::parse("OFF").unwrap(), None);
        assert_eq!(
            Rate::parse("5/1w").unwrap().unwrap().period.as_secs(),
            7 * 86400
        );
        for bad in [
            "", "50", "50/", "/1h", "0/1h", "5/0h", "5/1x", "x/1h", "-1/1h", "5/1hh",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count("1000").unwrap(), Some(1000));
        assert_eq!(parse_count("off").unwrap(), None);
        assert!(parse_count("0").is_err());
        assert!(parse_count("ten").is_err());
    }

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let b = Buckets::new(10);
        let rate = Rate {
            count: 3,
            period: Duration::from_secs(3),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(b.take(ip, rate).is_ok());
        }
        let wait = b.take(ip, rate).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another address is not affected.
        assert!(b.take("192.0.2.2".parse().unwrap(), rate).is_ok());
    }

    #[test]
    fn bucket_table_stays_bounded() {
        let b = Buckets::new(100);
        let rate = Rate {
            count: 1,
            period: Duration::from_secs(3600),
        };
        for i in 0..1000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = b.take(ip, rate);
            assert!(b.table.lock().unwrap().len() <= 100);
        }
    }
}
