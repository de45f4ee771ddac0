//! Several hosts on one machine: Linux network namespaces joined by a bridge (veth pairs), and
//! point-to-point links between two of them, for tests that need distinct network paths (a
//! hijacked route, a host that owns another's address). Needs root (`ip netns`).
//!
//! Invariants:
//! - Every name (namespace, bridge, interface) carries this lab's own prefix, so two labs (two
//!   tests, two test processes) never touch each other's; interface names stay within Linux's
//!   15 characters.
//! - Drop kills every process still running in the lab's namespaces, then deletes them and the
//!   bridge; a panicking test leaves nothing behind.
//! - Traffic stays in the lab: the bridge carries only the lab's addresses and nothing forwards
//!   to the machine's other interfaces.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::tools::require_tool;

static LABS: AtomicU32 = AtomicU32::new(0);

/// A bridge in the test's own namespace, and the namespaces attached to it.
pub struct Lab {
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
    links: u32,
}

/// Runs `ip ARGS`; panics with ip's message when it fails.
fn ip(args: &[&str]) {
    let out = Command::new(require_tool("ip"))
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    /// A new bridge with `cidr` (e.g. `203.0.113.1/24`) as this namespace's address on it.
    /// Panics when not root.
    pub fn new(cidr: &str) -> Lab {
        // /proc/self belongs to the effective user.
        let euid = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc/self"),
        );
        assert_eq!(euid, 0, "this test makes network namespaces and needs root");
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        // Unique across processes too: the pid, and a counter for several labs in one.
        let prefix = format!("s{:x}{n}", std::process::id() % 0xfffff);
        let bridge = format!("{prefix}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let lab = Lab {
            prefix,
            bridge,
            namespaces: Vec::new(),
            links: 0,
        };
        ip(&["addr", "add", cidr, "dev", &lab.bridge]);
        ip(&["link", "set", &lab.bridge, "up"]);
        lab
    }

    /// Another address of this namespace on the bridge (e.g. for a server the hosts reach).
    pub fn add_address(&self, cidr: &str) {
        ip(&["addr", "add", cidr, "dev", &self.bridge]);
    }

    fn namespace(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.prefix);
        assert!(ns.len() <= 12, "namespace name {ns} too long");
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A host `name` on the bridge with address `cidr` (e.g. `203.0.113.10/24`); returns its
    /// namespace's name.
    pub fn host(&mut self, name: &str, cidr: &str) -> String {
        let ns = self.namespace(name);
        let (inside, outside) = (format!("{ns}i"), format!("{ns}o"));
        ip(&[
            "link", "add", &inside, "type", "veth", "peer", "name", &outside,
        ]);
        ip(&["link", "set", &inside, "netns", &ns]);
        ip(&["link", "set", &outside, "master", &self.bridge]);
        ip(&["link", "set", &outside, "up"]);
        ip(&["-n", &ns, "addr", "add", cidr, "dev", &inside]);
        ip(&["-n", &ns, "link", "set", &inside, "up"]);
        ns
    }

    /// A host `name` reached only through a point-to-point link from `from` (a namespace of
    /// this lab, or `None` for the test's own): `from` gets `from_cidr` on its end, the new host
    /// `to_cidr` and every address of `extra` (e.g. an address another host owns, for a
    /// hijacked route). Returns the new host's namespace.
    pub fn linked_host(
        &mut self,
        name: &str,
        from: Option<&str>,
        from_cidr: &str,
        to_cidr: &str,
        extra: &[&str],
    ) -> String {
        let ns = self.namespace(name);
        self.links += 1;
        let (near, far) = (
            format!("{}l{}a", self.prefix, self.links),
            format!("{}l{}b", self.prefix, self.links),
        );
        ip(&["link", "add", &near, "type", "veth", "peer", "name", &far]);
        ip(&["link", "set", &far, "netns", &ns]);
        ip(&["-n", &ns, "addr", "add", to_cidr, "dev", &far]);
        for cidr in extra {
            ip(&["-n", &ns, "addr", "add", cidr, "dev", &far]);
        }
        ip(&["-n", &ns, "link", "set", &far, "up"]);
        if let Some(from) = from {
            ip(&["link", "set", &near, "netns", from]);
        }
        let mut near_args = vec!["addr", "add", from_cidr, "dev", &near];
        let mut up_args = vec!["link", "set", &near, "up"];
        if let Some(from) = from {
            near_args.splice(0..0, ["-n", from]);
            up_args.splice(0..0, ["-n", from]);
        }
        ip(&near_args);
        ip(&up_args);
        ns
    }

    /// `ip ARGS` in namespace `ns` (`None`: the test's own), e.g. a route.
    pub fn ip(&self, ns: Option<&str>, args: &[&str]) {
        match ns {
            Some(ns) => {
                let mut all = vec!["-n", ns];
                all.extend_from_slice(args);
                ip(&all);
            }
            None => ip(args),
        }
    }

    /// `program` to be run inside namespace `ns` (`ip netns exec`).
    pub fn command(&self, ns: &str, program: &std::path::Path) -> Command {
        let mut c = Command::new(require_tool("ip"));
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                let pids = String::from_utf8_lossy(&out.stdout).into_owned();
                let pids: Vec<&str> = pids.split_whitespace().collect();
                if !pids.is_empty() {
                    let _ = Command::new("kill").arg("-9").args(&pids).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // Point-to-point links from the test's own namespace go with their far end's namespace.
    }
}
