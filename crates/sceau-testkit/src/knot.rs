//! A real authoritative DNS server (Knot DNS) for one zone, launched per test.
//!
//! Invariants:
//! - knotd runs as the current user out of a private temp dir (config, zone file, rundir,
//!   storage); dropping the [`KnotDns`] kills it and deletes the dir.
//! - The instance we talk to is ours: start-up waits until 127.0.0.1:<port> answers with the
//!   random SOA serial written into our zone file, so a stray server on a reused port is
//!   detected instead of silently answering our tests.
//! - TTLs and the SOA minimum are 1 s, so resolvers never keep stale or negative answers for long.
//! - Record changes go through `knotc` zone transactions (begin/set/unset/commit); they are
//!   synchronous and serialised by a mutex, so sync and async tests can both call them.
//! - RFC 2136 updates from the network must be signed with [`KnotDns::tsig`].

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::rr::{RData, RecordType};
use rand::Rng as _;

use crate::dnsquery;
use crate::tools::{find_tool, free_port};

/// A TSIG key (RFC 8945) accepted by the server for RFC 2136 updates of its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tsig {
    /// Key name, fully qualified (ends with a dot).
    pub name: String,
    /// Algorithm name as BIND and Knot spell it, e.g. `hmac-sha256`.
    pub algorithm: String,
    /// The shared secret, standard base64 with padding.
    pub secret_b64: String,
}

impl Tsig {
    /// The raw secret bytes.
    pub fn secret(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.secret_b64)
            .expect("testkit generated valid base64")
    }
}

/// A running knotd authoritative for one zone on 127.0.0.1 (UDP and TCP).
pub struct KnotDns {
    /// Where knotd listens, UDP and TCP.
    pub addr: SocketAddr,
    /// The (first) zone's apex, fully qualified and lower case, e.g. `test.`.
    pub zone: String,
    /// All zones served, `zone` first (see [`KnotDns::start_zones`]).
    pub zones: Vec<String>,
    /// The key allowed to send RFC 2136 updates to [`KnotDns::zone`].
    pub tsig: Tsig,
    child: Child,
    knotc: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    txn: Mutex<()>,
    dir: tempfile::TempDir,
}

const START_ATTEMPTS: usize = 5;
const START_TIMEOUT: Duration = Duration::from_secs(15);
const TTL: &str = "1";
const KEY_NAME: &str = "sceau-testkit-key.";

impl KnotDns {
    /// Starts knotd authoritative for `zone` (e.g. `"test."`) with SOA, NS and a TSIG key allowed
    /// to update it, and waits until it answers on its port.
    ///
    /// Errors (with knotd's log) if knotd/knotc are missing or knotd does not come up.
    pub fn start(zone: &str) -> io::Result<KnotDns> {
        Self::start_zones(&[zone])
    }

    /// Like [`KnotDns::start`] for several zones (e.g. `["test.", "delegated."]` to point a CNAME
    /// from one zone into another). Record methods pick the zone that contains the name; relative
    /// names belong to the first zone.
    pub fn start_zones(zones: &[&str]) -> io::Result<KnotDns> {
        Self::start_zones_on(zones, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`KnotDns::start`], listening on `ip` (an address of this host, e.g. one on a
    /// bridge that hosts in network namespaces reach) instead of 127.0.0.1.
    pub fn start_on(zone: &str, ip: IpAddr) -> io::Result<KnotDns> {
        Self::start_zones_on(&[zone], ip)
    }

    fn start_zones_on(zones: &[&str], ip: IpAddr) -> io::Result<KnotDns> {
        assert!(!zones.is_empty(), "at least one zone");
        let zones: Vec<String> = zones.iter().map(|z| absolute_zone(z)).collect();
        let knotd = find_tool("knotd").ok_or_else(|| missing("knotd"))?;
        let knotc = find_tool("knotc").ok_or_else(|| missing("knotc"))?;
        let secret: [u8; 32] = rand::thread_rng().r#gen();
        let tsig = Tsig {
            name: KEY_NAME.to_owned(),
            algorithm: "hmac-sha256".to_owned(),
            secret_b64: base64::engine::general_purpose::STANDARD.encode(secret),
        };

        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&knotd, &knotc, &zones, &tsig, ip)? {
                Ok(knot) => return Ok(knot),
                // Someone took the port between free_port() and knotd's bind: try another.
                Err(log) => last_log = log,
            }
        }
        Err(io::Error::other(format!(
            "knotd did not start after {START_ATTEMPTS} attempts (port conflicts); last log:\n{last_log}"
        )))
    }

    /// `Ok(Err(log))` means "port taken, retry"; `Err` is a hard failure.
    fn try_start(
        knotd: &Path,
        knotc: &Path,
        zones: &[String],
        tsig: &Tsig,
        ip: IpAddr,
    ) -> io::Result<Result<KnotDns, String>> {
        let dir = tempfile::Builder::new().prefix("sceau-knot-").tempdir()?;
        let port = free_port();
        let addr = SocketAddr::new(ip, port);
        // Serial in 1..2^31: distinctive enough to recognise our own instance on the port.
        let serial: u32 = rand::thread_rng().gen_range(1..0x8000_0000);

        let root = dir.path();
        for sub in ["run", "storage", "zones"] {
            std::fs::create_dir(root.join(sub))?;
        }
        let socket = root.join("run/knot.sock");
        let log = root.join("knotd.log");
        for zone in zones {
            std::fs::write(
                root.join(format!("zones/{zone}db")),
                zone_file(zone, serial),
            )?;
        }
        let conf = root.join("knot.conf");
        write_private(&conf, config(root, &socket, addr, zones, tsig).as_bytes())?;

        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawning {}: {e}", knotd.display())))?;

        let mut knot = KnotDns {
            addr,
            zone: zones[0].clone(),
            zones: zones.to_vec(),
            tsig: tsig.clone(),
            child,
            knotc: knotc.to_owned(),
            socket,
            log,
            txn: Mutex::new(()),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = knot.child.try_wait()? {
                let log = knot.log_text();
                if log.contains("already in use") {
                    return Ok(Err(log));
                }
                return Err(io::Error::other(format!(
                    "knotd exited ({status}) at start:\n{log}"
                )));
            }
            if knot.is_ready(serial) {
                return Ok(Ok(knot));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "knotd did not answer on {addr} within {START_TIMEOUT:?}:\n{}",
                    knot.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn is_ready(&self, serial: u32) -> bool {
        let ours = self.zones.iter().all(|zone| {
            dnsquery::query_with_timeout(
                self.addr,
                zone,
                RecordType::SOA,
                Duration::from_millis(200),
            )
            .is_ok_and(|ans| {
                ans.iter()
                    .any(|r| matches!(r, RData::SOA(soa) if soa.serial == serial))
            })
        });
        // The control socket comes up after the listeners.
        ours && self.socket.exists() && self.knotc_raw(&["status"]).is_ok()
    }

    /// knotd's log so far (stdout and stderr), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instance's private directory (config, zone file, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fully qualified, lower-case form of `name`.
    ///
    /// `name` is absolute if it ends with a dot, is a zone name, or ends with `.<zone>` for one
    /// of our zones (so `www.test` with zone `test.` is `www.test.`); `@` and `""` are the first
    /// zone's apex; anything else is relative to the first zone.
    pub fn fqdn(&self, name: &str) -> String {
        let name = name.to_ascii_lowercase();
        let in_zone = |zone: &String| {
            let bare = zone.trim_end_matches('.');
            bare.is_empty() || name == bare || name.ends_with(&format!(".{bare}"))
        };
        if name.ends_with('.') {
            name
        } else if name.is_empty() || name == "@" {
            self.zone.clone()
        } else if self.zones.iter().any(in_zone) {
            format!("{name}.")
        } else {
            format!("{name}.{}", self.zone)
        }
    }

    /// The zone (of ours) holding the absolute name `fqdn`: the longest matching apex.
    fn zone_of(&self, fqdn: &str) -> &str {
        self.zones
            .iter()
            .filter(|z| *z == "." || fqdn == z.as_str() || fqdn.ends_with(&format!(".{z}")))
            .max_by_key(|z| z.len())
            .unwrap_or_else(|| panic!("{fqdn} is in none of the zones {:?}", self.zones))
    }

    /// Points `name` at `ip` (A for IPv4, AAAA for IPv6), replacing that RRset.
    pub fn set_a(&self, name: &str, ip: IpAddr) {
        let owner = self.fqdn(name);
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        self.transaction(&owner, |t| {
            t.unset(&owner, rtype);
            t.set(&owner, rtype, &ip.to_string());
        });
    }

    /// Adds one TXT record `value` at `name` (other TXT records there stay).
    pub fn add_txt(&self, name: &str, value: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.set(&owner, "TXT", &txt_rdata(value)));
    }

    /// Removes the whole TXT RRset at `name` (no error if there is none).
    pub fn remove_txt(&self, name: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.unset(&owner, "TXT"));
    }

    /// The TXT values at `name` as served over the network now (each record's strings joined).
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.query(name, RecordType::TXT)
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Answer records of `rtype` at `name`, asked over UDP (TCP if truncated). Panics on
    /// network or server errors; NXDOMAIN/NODATA give an empty list.
    pub fn query(&self, name: &str, rtype: RecordType) -> Vec<RData> {
        let owner = self.fqdn(name);
        dnsquery::query(self.addr, &owner, rtype)
            .unwrap_or_else(|e| panic!("query {owner} {rtype} at {}: {e}", self.addr))
    }

    /// Replaces the CAA RRset at `name` with one record (RFC 8659 §4.1).
    pub fn set_caa(&self, name: &str, flags: u8, tag: &str, value: &str) {
        self.set_caa_records(name, &[(flags, tag, value)]);
    }

    /// Replaces the CAA RRset at `name` with these `(flags, tag, value)` records.
    pub fn set_caa_records(&self, name: &str, records: &[(u8, &str, &str)]) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| {
            t.unset(&owner, "CAA");
            for (flags, tag, value) in records {
                t.set(
                    &owner,
                    "CAA",
                    &format!("{flags} {tag} {}", quote(value.as_bytes())),
                );
            }
        });
    }

    /// Removes the CAA RRset at `name` (no error if there is none).
    pub fn remove_caa(&self, name: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.unset(&owner, "CAA"));
    }

    /// Makes `name` a CNAME to `target` (relative targets are in the zone), replacing any CNAME.
    pub fn set_cname(&self, name: &str, target: &str) {
        let owner = self.fqdn(name);
        let target = self.fqdn(target);
        self.transaction(&owner, |t| {
            t.unset(&owner, "CNAME");
            t.set(&owner, "CNAME", &target);
        });
    }

    /// Removes the CNAME at `name` (no error if there is none).
    pub fn remove_cname(&self, name: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.unset(&owner, "CNAME"));
    }

    /// Adds one record given in zone-file presentation form, e.g. `("x", "MX", "10 mail.test.")`.
    pub fn add_record(&self, name: &str, rtype: &str, rdata: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.set(&owner, rtype, rdata));
    }

    /// Removes the `rtype` RRset at `name` (no error if there is none).
    pub fn remove_rrset(&self, name: &str, rtype: &str) {
        let owner = self.fqdn(name);
        self.transaction(&owner, |t| t.unset(&owner, rtype));
    }

    /// Writes a BIND-style key file (`key "<name>" { algorithm ...; secret "..."; };`), as read
    /// by `nsupdate -k` and Sceau's client, with mode 0600.
    pub fn write_tsig_key_file(&self, path: &Path) -> io::Result<()> {
        let t = &self.tsig;
        let text = format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            t.name, t.algorithm, t.secret_b64
        );
        write_private(path, text.as_bytes())
    }

    /// Writes a Knot-style key file (`hmac-sha256:<name>:<secret>`), as read by `knsupdate -k`
    /// and `kdig -k`, with mode 0600.
    pub fn write_knot_key_file(&self, path: &Path) -> io::Result<()> {
        let t = &self.tsig;
        write_private(
            path,
            format!("{}:{}:{}\n", t.algorithm, t.name, t.secret_b64).as_bytes(),
        )
    }

    /// Runs `body` in a knotc transaction on the zone holding `owner` (absolute).
    fn transaction(&self, owner: &str, body: impl FnOnce(&mut Txn<'_>)) {
        let zone = self.zone_of(owner).to_owned();
        // A panicking test thread poisons the lock but leaves no transaction open (see below).
        let _guard = self.txn.lock().unwrap_or_else(|p| p.into_inner());
        self.knotc(&["zone-begin", &zone]);
        let mut txn = Txn {
            knot: self,
            zone: zone.clone(),
            failed: None,
        };
        body(&mut txn);
        if let Some(err) = txn.failed {
            let _ = self.knotc_raw(&["zone-abort", &zone]);
            panic!("{err}");
        }
        self.knotc(&["zone-commit", &zone]);
    }

    fn knotc(&self, args: &[&str]) -> String {
        self.knotc_raw(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs knotc against our control socket; `Err` carries its output.
    fn knotc_raw(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.knotc)
            .arg("-s")
            .arg(&self.socket)
            .args(["-t", "10"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", self.knotc.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("knotc {} failed: {}", args.join(" "), text.trim()))
        }
    }
}

struct Txn<'a> {
    knot: &'a KnotDns,
    zone: String,
    failed: Option<String>,
}

impl Txn<'_> {
    fn set(&mut self, owner: &str, rtype: &str, rdata: &str) {
        if self.failed.is_none()
            && let Err(e) = self
                .knot
                .knotc_raw(&["zone-set", &self.zone, owner, TTL, rtype, rdata])
        {
            self.failed = Some(e);
        }
    }

    fn unset(&mut self, owner: &str, rtype: &str) {
        if self.failed.is_none()
            && let Err(e) = self.knot.knotc_raw(&["zone-unset", &self.zone, owner, rtype])
            // Removing what is not there is what the caller wanted anyway.
            && !e.contains("no such") && !e.contains("(not exists)")
        {
            self.failed = Some(e);
        }
    }
}

impl Drop for KnotDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing(tool: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("test needs {tool}: install it with the README's test command"),
    )
}

fn absolute_zone(zone: &str) -> String {
    let zone = zone.to_ascii_lowercase();
    if zone.ends_with('.') {
        zone
    } else {
        format!("{zone}.")
    }
}

/// Zone-file form of a TXT value: quoted character-strings of at most 255 bytes (RFC 1035 §3.3).
fn txt_rdata(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".to_owned();
    }
    bytes.chunks(255).map(quote).collect::<Vec<_>>().join(" ")
}

fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

fn zone_file(zone: &str, serial: u32) -> String {
    // SOA minimum 1 s: negative answers are not cached for longer (RFC 2308 §5).
    format!(
        "$ORIGIN {zone}\n$TTL {TTL}\n\
         @ SOA ns.{zone} hostmaster.{zone} {serial} 3600 600 86400 1\n\
         @ NS ns.{zone}\n\
         ns A 127.0.0.1\n"
    )
}

fn config(root: &Path, socket: &Path, addr: SocketAddr, zones: &[String], tsig: &Tsig) -> String {
    let root = root.display();
    let mut zone_section = String::new();
    for zone in zones {
        let _ = write!(
            zone_section,
            r#"  - domain: {zone}
    storage: "{root}/zones"
    file: "{zone}db"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    acl: update
"#
        );
    }
    format!(
        r#"server:
    rundir: "{root}/run"
    listen: {ip}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{root}/storage"
control:
    listen: "{socket}"
log:
  - target: stderr
    any: info
key:
  - id: {key}
    algorithm: {alg}
    secret: {secret}
acl:
  - id: update
    key: {key}
    action: update
zone:
{zone_section}"#,
        ip = addr.ip(),
        port = addr.port(),
        socket = socket.display(),
        key = tsig.name,
        alg = tsig.algorithm,
        secret = tsig.secret_b64,
    )
}

/// Writes a file holding a secret: temp file 0600 in the same dir, fsync, rename.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("key path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let res = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
