//! The organisation's existing PKI as a registration authority's tests see it: a real OpenSSL
//! root and issuing CA ([`UpstreamPki`]), the operator's HTTPS certificate for the RA's front
//! end, and the command upstream ([`CommandUpstream`]): shell scripts around `openssl ca`, as an
//! operator would write them, whose behaviour a test switches (down, refusing, misbehaving).
//!
//! Invariants:
//! - What the scripts sign is recorded in the issuing CA's own `index.txt`, so a test can ask
//!   the upstream's database (not Sceau's) what it issued and revoked.
//! - Keys are written 0600; nothing here reads Sceau's files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::openssl_ca::{ISSUING_CA_EXT, run_openssl as openssl};
use crate::{OpenSslCa, Validity};

/// A TLS server leaf: serverAuth only, AKI and SKI, CA:FALSE.
pub const LEAF_EXT: &str = "basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

fn private(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Root → issuing CA, and the RA front end's HTTPS certificate (`tls.pem`, `tls.key`).
pub struct UpstreamPki {
    pub dir: tempfile::TempDir,
    pub root: OpenSslCa,
    pub issuing: OpenSslCa,
}

impl UpstreamPki {
    pub fn new() -> UpstreamPki {
        let dir = tempfile::Builder::new()
            .prefix("sceau-ra-pki-")
            .tempdir()
            .expect("tempdir");
        let mut root = OpenSslCa::root(&dir.path().join("root"), "Upstream Root").expect("root");
        let issuing = root
            .subordinate(
                &dir.path().join("issuing"),
                "Upstream Issuing CA",
                ISSUING_CA_EXT,
            )
            .expect("issuing CA");
        let mut pki = UpstreamPki { dir, root, issuing };
        pki.leaf("tls", "localhost", "DNS:localhost, IP:127.0.0.1");
        let chain =
            fs::read_to_string(pki.path("tls-leaf.pem")).expect("leaf") + &pki.issuing.chain_pem();
        fs::write(pki.path("tls.pem"), chain).expect("write tls.pem");
        pki
    }

    /// A fresh P-256 key `<name>.key` (0600) and its certificate `<name>-leaf.pem` for `san`
    /// (an OpenSSL subjectAltName value), signed by the issuing CA.
    pub fn leaf(&mut self, name: &str, cn: &str, san: &str) -> PathBuf {
        let d = self.dir.path().to_owned();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        openssl(
            &d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &csr,
            ],
        );
        private(&d.join(&key));
        let leaf = d.join(format!("{name}-leaf.pem"));
        self.issuing
            .sign(
                &d.join(&csr),
                &leaf,
                &format!("{LEAF_EXT}subjectAltName = {san}\n"),
                Validity::Days(30),
            )
            .expect("sign leaf");
        leaf
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root_pem(&self) -> PathBuf {
        self.root.cert.clone()
    }

    /// The `[ra]` table's files part: the roots to chain to (this PKI's) and the front end's
    /// certificate.
    pub fn ra_table(&self, attempt_secs: u64) -> String {
        self.ra_table_for(&self.root_pem(), attempt_secs)
    }

    /// [`UpstreamPki::ra_table`] for an upstream whose certificates chain to `roots` (another
    /// CA: Pebble, a second Sceau), the front end keeping this PKI's certificate.
    pub fn ra_table_for(&self, roots: &Path, attempt_secs: u64) -> String {
        format!(
            "[ra]\nupstream_roots = {:?}\ntls_cert = {:?}\ntls_key = {:?}\nattempt_timeout_secs = {attempt_secs}\n",
            roots,
            self.path("tls.pem"),
            self.path("tls.key"),
        )
    }

    /// `openssl ca`'s own record of `serial_hex`: `V` (valid), `R` (revoked) or `None`.
    pub fn upstream_status(&self, serial_hex: &str) -> Option<char> {
        let index = fs::read_to_string(self.issuing.dir().join("index.txt")).expect("index.txt");
        let want = serial_hex.trim_start_matches('0').to_ascii_uppercase();
        index.lines().find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() > 3 && f[3].trim_start_matches('0').eq_ignore_ascii_case(&want))
                .then(|| f[0].chars().next().unwrap_or('?'))
        })
    }

    /// How many certificates the issuing CA signed and revoked, per its `index.txt`.
    pub fn upstream_counts(&self) -> (usize, usize) {
        let index = fs::read_to_string(self.issuing.dir().join("index.txt")).expect("index.txt");
        let all = index.lines().filter(|l| !l.is_empty()).count();
        let revoked = index.lines().filter(|l| l.starts_with('R')).count();
        (all, revoked)
    }
}

impl Default for UpstreamPki {
    fn default() -> Self {
        Self::new()
    }
}

/// The signing program of the command upstream: the CSR on stdin, `SCEAU_*` in the
/// environment, the PEM chain out. The file `mode` switches it: `ok`, `refuse` (exit 3 with a
/// reason), `tempfail` (exit 75), `slow`, `garbage`, `other-names`, `other-key`,
/// `code-signing`, `long` (a validity beyond the request).
const SIGN_SCRIPT: &str = r#"#!/bin/sh
set -e
ca="$1"; work="$2"
mode=$(cat "$work/mode")
cat > "$work/req.csr"
case "$mode" in
  refuse) echo "openssl-ca-wrapper: policy forbids $SCEAU_NAMES" >&2; exit 3 ;;
  tempfail) echo "the CA database is locked" >&2; exit 75 ;;
  slow) echo $$ > "$work/slow.pids"; sleep 30 & echo $! >> "$work/slow.pids"; wait; exit 0 ;;
  garbage) echo "hello"; exit 0 ;;
esac
san=""
for n in $(echo "$SCEAU_DNS_NAMES" | tr ',' ' '); do san="$san${san:+, }DNS:$n"; done
for n in $(echo "$SCEAU_IP_ADDRESSES" | tr ',' ' '); do san="$san${san:+, }IP:$n"; done
if [ "$mode" = other-names ]; then san="DNS:elsewhere.test"; fi
eku=serverAuth
if [ "$SCEAU_PROFILE" = tls-server-client ]; then eku="serverAuth, clientAuth"; fi
if [ "$mode" = code-signing ]; then eku="serverAuth, codeSigning"; fi
csr="$work/req.csr"
if [ "$mode" = other-key ]; then
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/other.key" -subj "/CN=x" -out "$work/other.csr" 2>/dev/null
  csr="$work/other.csr"
fi
days="$SCEAU_VALIDITY_DAYS"
if [ "$mode" = long ]; then days=400; fi
printf '[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = %s\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\nsubjectAltName = %s\n' "$eku" "$san" > "$work/ext.cnf"
openssl ca -batch -notext -config "$ca/openssl.cnf" -extfile "$work/ext.cnf" -extensions ext \
  -subj "/CN=${SCEAU_NAMES%%,*}" -days "$days" -in "$csr" -out "$work/leaf.pem" 2>"$work/ca.log"
cat "$work/leaf.pem" "$ca/ca.pem"
"#;

/// The revoking program: the certificate on stdin, `SCEAU_SERIAL`, `SCEAU_REASON` and
/// `SCEAU_REASON_NAME`; the file `revoke-mode` is `ok` or `refuse`. Each revocation it made is
/// a line `<serial> <reason>` of `revoked.txt`.
const REVOKE_SCRIPT: &str = r#"#!/bin/sh
set -e
ca="$1"; work="$2"
if [ "$(cat "$work/revoke-mode")" = refuse ]; then echo "revocation desk closed" >&2; exit 4; fi
cat > "$work/revoke.pem"
openssl ca -config "$ca/openssl.cnf" -revoke "$work/revoke.pem" -crl_reason "$SCEAU_REASON_NAME" 2>>"$work/ca.log"
echo "$SCEAU_SERIAL $SCEAU_REASON" >> "$work/revoked.txt"
"#;

/// `openssl ca` behind the RA's command upstream.
pub struct CommandUpstream {
    pub pki: UpstreamPki,
    pub work: PathBuf,
}

impl CommandUpstream {
    pub fn new() -> CommandUpstream {
        let pki = UpstreamPki::new();
        let work = pki.path("work");
        fs::create_dir(&work).expect("work dir");
        for (name, text) in [("sign.sh", SIGN_SCRIPT), ("revoke.sh", REVOKE_SCRIPT)] {
            let p = pki.path(name);
            fs::write(&p, text).expect("write script");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let up = CommandUpstream { pki, work };
        up.mode("ok");
        up.revoke_mode("ok");
        up
    }

    pub fn mode(&self, m: &str) {
        fs::write(self.work.join("mode"), m).expect("write mode");
    }

    pub fn revoke_mode(&self, m: &str) {
        fs::write(self.work.join("revoke-mode"), m).expect("write revoke mode");
    }

    /// The processes of the last `slow` run (the script and its sleep) still alive.
    pub fn slow_processes_alive(&self) -> Vec<u32> {
        std::fs::read_to_string(self.work.join("slow.pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .filter(|pid| {
                // A zombie is gone for our purpose: it runs nothing and holds nothing.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|st| !st.contains(") Z "))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The lines of `revoked.txt`: `<serial> <reason>` per revocation the upstream made.
    pub fn revoked(&self) -> Vec<String> {
        fs::read_to_string(self.work.join("revoked.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A server TOML file with `head` (e.g. `eab = "off"`), `[ra]` and `[ra.command]`, each
    /// program allowed `timeout_secs`; its path.
    pub fn config(&self, head: &str, timeout_secs: u64) -> PathBuf {
        let ca = self.pki.issuing.dir();
        let text = format!(
            "{head}\n{}[ra.command]\nissue = [\"/bin/sh\", {:?}, {ca:?}, {:?}]\nrevoke = [\"/bin/sh\", {:?}, {ca:?}, {:?}]\ntimeout_secs = {timeout_secs}\n",
            self.pki.ra_table(timeout_secs + 1),
            self.pki.path("sign.sh"),
            self.work,
            self.pki.path("revoke.sh"),
            self.work,
        );
        let p = self.pki.path("sceau.toml");
        fs::write(&p, text).expect("write config");
        p
    }
}

impl Default for CommandUpstream {
    fn default() -> Self {
        Self::new()
    }
}
