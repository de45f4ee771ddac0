//! CPU time spent by this process and by the server under test (with every process it
//! started) during the measured window, read from `/proc` (Linux), so that a run says what
//! one certificate costs each side and not only how many came out.
//!
//! Invariants:
//! - Times are `utime + stime` of each live process (fields 14 and 15 of `/proc/PID/stat`),
//!   in clock ticks of 1/100 s: the kernel exports them in `USER_HZ`, which is 100 on every
//!   Linux architecture Sceau runs on.
//! - A process of the tree that exits inside the window takes its ticks with it, so the server
//!   figure is a lower bound when processes come and go (sceau-server's do not).

use crate::rss;

/// Clock ticks per second in `/proc/PID/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// `utime + stime` of one process, in ticks.
pub fn ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ticks(&stat)
}

/// The command name may hold spaces and parentheses, so fields are counted after its last `)`:
/// there, field 3 (`state`) is the first, which puts utime and stime at indexes 11 and 12.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Summed ticks of `pid` and its descendants; `None` if `pid` itself cannot be read.
pub fn tree_ticks(pid: u32) -> Option<u64> {
    let mut sum = 0;
    for p in rss::tree(pid) {
        match ticks(&p.to_string()) {
            Some(t) => sum += t,
            None if p == pid => return None,
            None => {}
        }
    }
    Some(sum)
}

/// CPU readings at the start of the measured window.
pub struct Window {
    own: Option<u64>,
    server: Option<(u32, u64)>,
}

/// Milliseconds of CPU per issued certificate.
pub struct PerCert {
    pub own_ms: Option<f64>,
    pub server_ms: Option<f64>,
}

impl Window {
    pub fn open(server_pid: Option<u32>) -> Self {
        Window {
            own: ticks("self"),
            server: server_pid.and_then(|pid| Some((pid, tree_ticks(pid)?))),
        }
    }

    pub fn close(&self, issued: u64) -> PerCert {
        let per_cert = |before: u64, after: u64| {
            (issued > 0).then(|| {
                after.saturating_sub(before) as f64 * 1000.0
                    / TICKS_PER_SECOND as f64
                    / issued as f64
            })
        };
        PerCert {
            own_ms: self
                .own
                .zip(ticks("self"))
                .and_then(|(b, a)| per_cert(b, a)),
            server_ms: self
                .server
                .and_then(|(pid, b)| per_cert(b, tree_ticks(pid)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_and_system_ticks_after_the_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_ticks(stat), Some(325));
        assert_eq!(parse_ticks("42 (x) S 1"), None);
        assert_eq!(parse_ticks("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let window = Window::open(None);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = window.close(1);
        let own = spent.own_ms.expect("own /proc stat");
        assert!(own >= 150.0, "{own} ms of CPU for a 300 ms busy loop");
        assert!(spent.server_ms.is_none());
        assert!(
            window.close(0).own_ms.is_none(),
            "nothing issued: no per-certificate figure"
        );
    }
}
