//! Resident memory of the server under test and every process it started (sceau-server signs
//! in a child process), read from `/proc` (Linux).
//!
//! Invariants:
//! - A sample is the sum of `VmRSS` over the process and its descendants at that moment; the
//!   reported peak is the largest sample, so it only grows.
//! - `hwm` sums each process's own `VmHWM`: an upper bound of the true peak of the sum, since
//!   the processes need not peak at the same moment.
//! - A process that vanishes between listing and reading is skipped; a PID that never could be
//!   read yields `None` rather than a made-up zero.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// `VmRSS` and `VmHWM` (kB) of one process.
pub fn read(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((field_kb(&text, "VmRSS:")?, field_kb(&text, "VmHWM:")?))
}

fn field_kb(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The parent PID from `/proc/PID/stat`; the command name may hold spaces and parentheses, so
/// the fields are read after its last `)`.
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants, found by scanning `/proc/*/stat` (`/proc/*/task/*/children`
/// is not available on every kernel).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            if let Some(parent) = parent_of(&stat) {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut all = vec![pid];
    let mut next = 0;
    while next < all.len() {
        if let Some(kids) = children.get(&all[next]) {
            all.extend(kids.iter().copied().filter(|k| *k != pid));
        }
        next += 1;
    }
    all
}

/// Summed `(VmRSS, VmHWM, processes read)` over `pid` and its descendants.
pub fn read_tree(pid: u32) -> Option<(u64, u64, usize)> {
    let mut sum = (0, 0, 0);
    for p in tree(pid) {
        if let Some((rss, hwm)) = read(p) {
            sum = (sum.0 + rss, sum.1 + hwm, sum.2 + 1);
        } else if p == pid {
            return None;
        }
    }
    Some(sum)
}

/// Samples a process tree's RSS in the background until [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    peak_kb: Arc<AtomicU64>,
    processes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Highest summed VmRSS seen while sampling.
    pub peak_rss_kb: u64,
    /// Sum of the processes' high-water marks since they started (includes start-up).
    pub hwm_kb: u64,
    /// Most processes seen in the tree at once.
    pub processes: usize,
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let processes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (peak_kb, processes, stop) = (peak_kb.clone(), processes.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some((rss, _, n))) =
                        tokio::task::spawn_blocking(move || read_tree(pid)).await
                    {
                        peak_kb.fetch_max(rss, Ordering::Relaxed);
                        processes.fetch_max(n, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Sampler {
            pid,
            peak_kb,
            processes,
            stop,
            task,
        }
    }

    pub async fn finish(self) -> Option<Memory> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let last = read_tree(self.pid);
        let mut peak = self.peak_kb.load(Ordering::Relaxed);
        let mut processes = self.processes.load(Ordering::Relaxed);
        if let Some((rss, _, n)) = last {
            peak = peak.max(rss);
            processes = processes.max(n);
        }
        match (peak, last) {
            (0, None) => None,
            (peak, last) => Some(Memory {
                peak_rss_kb: peak,
                hwm_kb: last.map_or(peak, |(_, hwm, _)| hwm),
                processes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let (rss, hwm) = read(std::process::id()).expect("own /proc status");
        assert!(rss > 0 && hwm >= rss, "rss={rss} hwm={hwm}");
    }

    #[test]
    fn missing_process_is_none() {
        // PIDs are capped well below u32::MAX on Linux (pid_max <= 2^22).
        assert!(read(u32::MAX).is_none());
        assert!(read_tree(u32::MAX).is_none());
    }

    #[test]
    fn parses_status_and_stat_fields() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field_kb(text, "VmRSS:"), Some(1024));
        assert_eq!(field_kb(text, "VmHWM:"), Some(2048));
        assert_eq!(field_kb(text, "VmSwap:"), None);
        assert_eq!(parent_of("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_child_counts_towards_its_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let me = std::process::id();
        assert!(
            tree(me).contains(&child.id()),
            "child {} not under {me}",
            child.id()
        );
        let (own, _) = read(me).unwrap();
        let (sum, hwm, n) = read_tree(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            n >= 2 && sum > own && hwm >= own,
            "sum={sum} own={own} hwm={hwm} n={n}"
        );
    }
}
