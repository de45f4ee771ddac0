//! Locating external tools and finding free loopback ports.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;

/// Directories searched after `$PATH`: daemons such as `knotd` live in `sbin`, which is often
/// missing from an unprivileged user's `$PATH`.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// Looks `name` up on `$PATH` and in the usual `sbin` directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of a tool a test cannot run without; panics (failing the test) when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name)
        .unwrap_or_else(|| panic!("test needs {name}: install it with the README's test command"))
}

/// A port on 127.0.0.1 that was free for both UDP and TCP a moment ago, and that no other test
/// process on this machine has been handed in the last [`RESERVATION`].
///
/// Ports come from 10000–32767, below the kernel's ephemeral range (32768–60999), so that the
/// outgoing connections of the many tests running at once (each takes an ephemeral local port)
/// cannot occupy a port between the moment it is chosen here and the moment a server binds it.
/// Each port handed out is reserved by a marker file created with `O_EXCL` in a directory shared
/// by every test process (nextest runs each test in its own process). The port is still released
/// before returning: callers that start a server on it must detect a bind failure.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let dir = std::env::temp_dir().join("sceau-testkit-ports");
    std::fs::create_dir_all(&dir).expect("create the port reservation directory");
    for _ in 0..512 {
        // RandomState is seeded from the OS: a random start, different in every process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 10_000 + (h.finish() % 22_768) as u16;
        let marker = dir.join(port.to_string());
        if let Ok(meta) = std::fs::metadata(&marker) {
            let stale = meta
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > RESERVATION);
            if !stale {
                continue;
            }
            let _ = std::fs::remove_file(&marker);
        }
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_err()
        {
            continue; // another process reserved it just now
        }
        let udp_free = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        // DNS servers need the same number for TCP as well.
        if udp_free && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 512 attempts");
}

/// How long a port handed out by [`free_port`] is kept from other test processes.
const RESERVATION: std::time::Duration = std::time::Duration::from_secs(600);
