//! Resident memory of the server under test, read from `/proc/PID/status` (Linux).
//!
//! Invariant: the peak only grows; a sample that cannot be read (process gone) is skipped, and
//! a PID that never could be read yields `None` rather than a made-up zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Reads `VmRSS` and `VmHWM` (kB) of `pid`.
pub fn read(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((field_kb(&text, "VmRSS:")?, field_kb(&text, "VmHWM:")?))
}

fn field_kb(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Samples a process's RSS in the background until [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    peak_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Highest VmRSS seen while sampling.
    pub peak_rss_kb: u64,
    /// The kernel's high-water mark since the process started (includes start-up).
    pub hwm_kb: u64,
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (peak_kb, stop) = (peak_kb.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some((rss, _)) = read(pid) {
                        peak_kb.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Sampler {
            pid,
            peak_kb,
            stop,
            task,
        }
    }

    pub async fn finish(self) -> Option<Memory> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let last = read(self.pid);
        let mut peak = self.peak_kb.load(Ordering::Relaxed);
        if let Some((rss, _)) = last {
            peak = peak.max(rss);
        }
        match (peak, last) {
            (0, None) => None,
            (peak, last) => Some(Memory {
                peak_rss_kb: peak,
                hwm_kb: last.map_or(peak, |(_, hwm)| hwm),
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
    }

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field_kb(text, "VmRSS:"), Some(1024));
        assert_eq!(field_kb(text, "VmHWM:"), Some(2048));
        assert_eq!(field_kb(text, "VmSwap:"), None);
    }
}
