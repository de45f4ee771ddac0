//! A SoftHSM2 token of a test's own: a configuration file, a token directory, one token with
//! a user PIN in a file (0600). Processes that use it get `SOFTHSM2_CONF` from
//! [`SoftHsm::env`] — never the test process's own environment, which other tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's softhsm2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub struct SoftHsm {
    dir: tempfile::TempDir,
    pub token: String,
    /// The user PIN (also in [`SoftHsm::pin_file`]).
    pub pin: String,
    /// The security officer's PIN, which nothing but the token's initialisation uses.
    pub so_pin: String,
}

impl SoftHsm {
    /// Initialises a token labelled `token`. Panics with a clear message when SoftHSM2 is
    /// missing (install it with the README's test command).
    pub fn new(token: &str, pin: &str) -> SoftHsm {
        SoftHsm::with_so_pin(token, pin, "12344321")
    }

    /// [`SoftHsm::new`] with this SO PIN (a test that looks for leaked PINs picks its own).
    pub fn with_so_pin(token: &str, pin: &str, so_pin: &str) -> SoftHsm {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "{SOFTHSM_MODULE} is missing: install Debian softhsm2 (scripts/install-test-deps.sh)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("tokens")).expect("token dir");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .expect("softhsm2.conf");
        let hsm = SoftHsm {
            dir,
            token: token.to_owned(),
            pin: pin.to_owned(),
            so_pin: so_pin.to_owned(),
        };
        write_private(&hsm.pin_file(), &format!("{pin}\n"));
        let out = Command::new(crate::require_tool("softhsm2-util"))
            .env("SOFTHSM2_CONF", hsm.conf())
            .args(["--init-token", "--free", "--label", token])
            .args(["--pin", pin, "--so-pin", so_pin])
            .output()
            .expect("run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf(&self) -> PathBuf {
        self.path().join("softhsm2.conf")
    }

    /// Where the token's objects are on disk (move it away to make the token disappear).
    pub fn token_dir(&self) -> PathBuf {
        self.path().join("tokens")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.path().join("pin")
    }

    /// An RFC 7512 URI for the object labelled `object` on this token, with the module and
    /// the PIN file in its query.
    pub fn uri(&self, object: &str) -> String {
        self.key_uri(&format!("object={object}"))
    }

    /// An RFC 7512 URI on this token with more path attributes (`path_attrs`, e.g.
    /// `object=k;id=%01`), with the module and the PIN file in its query.
    pub fn key_uri(&self, path_attrs: &str) -> String {
        format!(
            "pkcs11:token={};{path_attrs}?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
            self.token,
            self.pin_file().display()
        )
    }

    /// The environment a process needs to see this token.
    pub fn env(&self) -> [(String, String); 1] {
        [("SOFTHSM2_CONF".into(), self.conf().display().to_string())]
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("PIN file");
    f.write_all(text.as_bytes()).expect("PIN file");
}
