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

/// A port on 127.0.0.1 that was free for both UDP and TCP a moment ago.
///
/// The port is released before returning, so another process may grab it: callers that start a
/// server on it must detect a bind failure and retry with a fresh port.
pub fn free_port() -> u16 {
    for _ in 0..64 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind UDP port 0 on 127.0.0.1");
        let port = udp.local_addr().expect("local addr").port();
        // DNS servers need the same number for TCP as well.
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 64 attempts");
}
