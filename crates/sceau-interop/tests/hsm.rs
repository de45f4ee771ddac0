//! certbot and lego against a Sceau CA whose root and issuing keys live on a real SoftHSM2
//! token (made by `sceau-server ca init --root-key pkcs11:… --issuing-key pkcs11:…`, no key file
//! in the data directory): each client obtains, renews and revokes, and every chain verifies
//! with `openssl verify` against Sceau's root.

mod ca_flows;

use std::process::Command;

use ca_flows::Trust;
use sceau_interop::server::sceau_server_binary;
use sceau_interop::{Interop, run_ok};
use sceau_testkit::SoftHsm;

struct HsmCa {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
}

impl HsmCa {
    fn new(token: &str) -> HsmCa {
        let hsm = SoftHsm::new(token, "41825903");
        let dir = tempfile::Builder::new()
            .prefix("sceau-hsm-")
            .tempdir()
            .unwrap();
        run_ok(
            "sceau-server ca init",
            Command::new(sceau_server_binary())
                .args(["ca", "init", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--root-key", &hsm.uri("root")])
                .args(["--issuing-key", &hsm.uri("issuing")])
                .envs(hsm.env()),
        );
        for f in ["root.key", "intermediate.key"] {
            assert!(!dir.path().join("data").join(f).exists(), "{f} written");
        }
        HsmCa { hsm, dir }
    }

    fn start(&self) -> Interop {
        Interop::start_sceau_on_with_env(&self.dir.path().join("data"), &self.hsm.env())
    }

    fn trust(&self) -> Trust {
        Trust {
            root: self.dir.path().join("data/root.pem"),
            scratch: self.dir.path().to_path_buf(),
            tls: None,
        }
    }
}

#[test]
fn certbot_obtains_renews_and_revokes_with_the_keys_on_a_token() {
    let ca = HsmCa::new("sceau-certbot");
    let env = ca.start();
    ca_flows::certbot_obtains_renews_and_revokes(&env, &ca.trust(), 1);
}

#[test]
fn lego_obtains_renews_and_revokes_with_the_keys_on_a_token() {
    let ca = HsmCa::new("sceau-lego");
    let env = ca.start();
    ca_flows::lego_obtains_renews_and_revokes(&env, &ca.trust());
}
