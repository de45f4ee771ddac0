//! certbot and lego against a delegated Sceau CA: the existing PKI is a real OpenSSL CA (a
//! root made with `openssl req -x509` and a policy CA below it, both run with `openssl ca`)
//! that signed the CSR of `sceau-server ca init --delegated`, installed with `ca import`. Each
//! client obtains, renews and revokes, and every chain it saves verifies with `openssl verify`
//! against the PKI's root, the only root its users trust.

use std::path::PathBuf;
use std::process::Command;

mod ca_flows;

use ca_flows::Trust;
use sceau_interop::server::sceau_server_binary;
use sceau_interop::{Interop, run_ok};
use sceau_testkit::openssl_ca::{ISSUING_CA_EXT, POLICY_CA_EXT};
use sceau_testkit::{OpenSslCa, Validity};
use tempfile::TempDir;

/// A delegated CA under a two-level OpenSSL PKI.
struct Pki {
    dir: TempDir,
    data: PathBuf,
    /// The PKI's root certificate (the test's own file, not Sceau's copy).
    root: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("sceau-delegated-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let ca = |args: &[&str]| {
            run_ok(
                "sceau-server ca",
                Command::new(sceau_server_binary())
                    .arg("ca")
                    .args(args)
                    .arg("--data-dir")
                    .arg(&data),
            )
        };
        ca(&[
            "init",
            "--delegated",
            "--subject",
            "CN=Example Issuing CA,O=Example,C=FR",
        ]);
        let mut root = OpenSslCa::root(&dir.path().join("root"), "Example Root CA").unwrap();
        let mut policy = root
            .subordinate(
                &dir.path().join("policy"),
                "Example Policy CA",
                POLICY_CA_EXT,
            )
            .unwrap();
        let cert = dir.path().join("issuing.pem");
        policy
            .sign(
                &data.join("intermediate.csr"),
                &cert,
                ISSUING_CA_EXT,
                Validity::Days(365),
            )
            .unwrap();
        let chain = dir.path().join("chain.pem");
        std::fs::write(&chain, policy.chain_pem()).unwrap();
        ca(&[
            "import",
            "--cert",
            cert.to_str().unwrap(),
            "--chain",
            chain.to_str().unwrap(),
        ]);
        Pki {
            root: root.cert.clone(),
            data,
            dir,
        }
    }

    fn trust(&self) -> Trust {
        Trust {
            root: self.root.clone(),
            scratch: self.dir.path().to_path_buf(),
            tls: None,
        }
    }
}

#[test]
fn certbot_obtains_renews_and_revokes_from_a_delegated_ca() {
    let pki = Pki::new();
    let env = Interop::start_sceau_on(&pki.data);
    // The issuing CA and the policy CA above it.
    ca_flows::certbot_obtains_renews_and_revokes(&env, &pki.trust(), 2);
}

#[test]
fn lego_obtains_renews_and_revokes_from_a_delegated_ca() {
    let pki = Pki::new();
    let env = Interop::start_sceau_on(&pki.data);
    ca_flows::lego_obtains_renews_and_revokes(&env, &pki.trust());
}
