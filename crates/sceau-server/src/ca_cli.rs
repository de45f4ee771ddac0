//! `sceau-server ca`: the PKI operator's ceremonies — create the CA (dedicated or delegated),
//! import the certificate the existing PKI signed, rotate the issuing key, revoke a retired
//! issuer and sign the root's authority CRL, describe the CA.
//!
//! Invariants:
//! - Every command, refused ones and `show` included, is recorded in the audit trail with its
//!   actor; the record names keys by location and certificates by fingerprint, never key
//!   material.
//! - A PKCS#11 PIN comes from the URI's `pin-source` or `SCEAU_PKCS11_PIN`, never from argv;
//!   a `pin-value` in a URI on the command line is refused.
//! - The running server picks up a new issuer, or a new alternate chain, when its signing
//!   process starts again, which reads `ca.json`: at a restart, or at once on SIGHUP (the
//!   process restarts its signing service; requests meanwhile wait in the issuance queue).
//! - Files the commands create (keys, `ca.json`, the database) are private to the user that
//!   runs them, as under `serve`; certificates and CSRs are public.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sceau_ca::ceremony::{self, CaRecord, InitOptions, RootKey, RotateOptions};
use sceau_ca::manifest::CaMode;
use sceau_ca::{CaKeyKind, KeyRef};
use sceau_store::{AuditEntry, Store};
use serde_json::json;

use crate::{CommonArgs, ServeArgs};

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Who runs the command, for the audit trail [default: the OS user]
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// Print the record as JSON
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create the CA of the data directory and print the ceremony record
    Init {
        /// A delegated CA: make the issuing key and a CSR for the existing PKI to sign
        #[arg(long)]
        delegated: bool,
        /// The issuing CA's subject (delegated), e.g. "CN=Example Issuing CA,O=Example,C=FR"
        #[arg(long, value_name = "DN")]
        subject: Option<String>,
        /// p256, p384, rsa3072 or rsa4096
        #[arg(long, default_value = "p256")]
        key_type: String,
        /// Where the issuing key is made: a pkcs11: URI [default: intermediate.key in the data directory]
        #[arg(long, value_name = "pkcs11:URI")]
        issuing_key: Option<String>,
        /// Write the root key to this file (outside the data directory) and keep it offline (R30)
        #[arg(long, value_name = "PATH", conflicts_with = "root_key")]
        root_key_out: Option<PathBuf>,
        /// Make the root key on a token (pkcs11: URI); the running server never opens it
        #[arg(long, value_name = "pkcs11:URI")]
        root_key: Option<String>,
        /// Organization name in the CA's names [default: the configuration's, "Sceau"]
        #[arg(long)]
        organization: Option<String>,
        /// A staging CA: names and certificates say TEST (R53, R54)
        #[arg(long)]
        staging: bool,
    },
    /// Install the certificate the existing PKI signed for the pending issuing key
    Import {
        /// The issuing CA's certificate (PEM)
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The certificates above it up to the root, nearest first, root last (PEM)
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The certificate is a second one for the active issuer's key and name (cross-signed
        /// by another root): its chain is offered with Link: rel="alternate" (RFC 8555 §7.4.2)
        #[arg(long)]
        alternate: bool,
    },
    /// Bring in a new issuing key (dedicated: signed by the root now; delegated: a new CSR)
    Rotate {
        /// p256, p384, rsa3072 or rsa4096 [default: the current issuer's]
        #[arg(long)]
        key_type: Option<String>,
        /// Where the new issuing key is made: a pkcs11: URI [default: a file in the data directory]
        #[arg(long, value_name = "pkcs11:URI")]
        issuing_key: Option<String>,
        /// The root key for this ceremony when it is offline: a file or a pkcs11: URI
        #[arg(long, value_name = "PATH|pkcs11:URI")]
        root_key: Option<String>,
        /// The new issuing CA's subject (delegated) [default: the current one's]
        #[arg(long, value_name = "DN")]
        subject: Option<String>,
    },
    /// Describe the CA: mode, keys, certificates, fingerprints
    Show,
    /// Revoke a retired issuing CA: it signs nothing any more (after SIGHUP or a restart),
    /// and the next `ca arl` lists it
    RevokeIssuer {
        /// The issuer's id (`ca show` lists them)
        id: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn (or its code)
        #[arg(long)]
        reason: String,
    },
    /// Sign the authority CRL (the revoked issuers) with the root key into root.crl, which the
    /// server publishes at /crl/root.crl
    Arl {
        /// The root key for this ceremony when it is offline: a file or a pkcs11: URI
        #[arg(long, value_name = "PATH|pkcs11:URI")]
        root_key: Option<String>,
        /// Days until its nextUpdate: sign it again before then
        #[arg(long, default_value_t = 90)]
        validity_days: u32,
    },
}

fn key_kind(text: &str) -> Result<CaKeyKind, String> {
    text.parse::<CaKeyKind>()
        .map_err(|e| format!("--key-type: {e}"))
}

fn token_uri(flag: &str, uri: &str) -> Result<String, String> {
    if !uri.starts_with("pkcs11:") {
        return Err(format!("{flag} takes a pkcs11: URI, not {uri:?}"));
    }
    let lower = uri.to_ascii_lowercase();
    if lower.contains("pin-value=") {
        return Err(format!(
            "{flag}: a PIN on the command line is visible to every local user; use pin-source=FILE in the URI or SCEAU_PKCS11_PIN"
        ));
    }
    Ok(uri.to_owned())
}

fn absolute(flag: &str, p: &std::path::Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
}

/// A PEM file given to `ca import`: read whole, and refused at once if it is not text.
fn read_pem_file(p: &PathBuf) -> Result<String, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "certificate refused: {} is not a PEM file (it is not text)",
            p.display()
        )
    })
}

/// `--root-key` of a ceremony: a token URI, or a file relative to where the operator stands
/// (not to the data directory, where relative key paths of ca.json point).
fn ceremony_root_key(k: &str) -> Result<KeyRef, String> {
    if k.starts_with("pkcs11:") {
        token_uri("--root-key", k).map(KeyRef::Pkcs11)
    } else {
        absolute("--root-key", std::path::Path::new(k)).map(KeyRef::File)
    }
}

fn print_record(record: &CaRecord, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(record).expect("record serialises")
        );
    } else {
        print!("{record}");
    }
}

pub fn run(args: CaArgs) -> Result<(), String> {
    // As under `serve`: keys, ca.json and the database this creates are the user's alone;
    // certificates set their public mode themselves.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    let config = crate::serve::resolve_config(&args.common, &ServeArgs::default())?;
    let actor = args.actor.clone().unwrap_or_else(crate::admin::os_user);
    let dir = config.data_dir.clone();
    let described = format!("{:?}", args.command);
    if let CaCommand::Arl {
        root_key,
        validity_days,
    } = &args.command
    {
        let outcome = root_key
            .as_deref()
            .map(ceremony_root_key)
            .transpose()
            .and_then(|root_key| {
                let opts = sceau_ca::arl::ArlOptions {
                    root_key,
                    validity_days: *validity_days,
                };
                sceau_ca::arl::sign_arl(&dir, &opts).map_err(|e| e.to_string())
            });
        let (event, detail) = match &outcome {
            Ok(record) => ("ca.arl", json!({"actor": actor, "record": record})),
            Err(e) => (
                "ca.refused",
                json!({"actor": actor, "command": described, "error": e}),
            ),
        };
        record_audit(&config, event, detail)?;
        let record = outcome?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&record).expect("record serialises")
            );
        } else {
            print!("{record}");
        }
        eprintln!(
            "A running sceau-server serves it at /crl/root.crl at once; sign it again before its nextUpdate."
        );
        return Ok(());
    }
    let outcome = (|| -> Result<(&'static str, CaRecord), String> {
        match &args.command {
            CaCommand::Init {
                delegated,
                subject,
                key_type,
                issuing_key,
                root_key_out,
                root_key,
                organization,
                staging,
            } => {
                let root_key = match (root_key_out, root_key) {
                    (Some(p), _) => RootKey::OutFile(absolute("--root-key-out", p)?),
                    (None, Some(uri)) => RootKey::Pkcs11(token_uri("--root-key", uri)?),
                    (None, None) => RootKey::DataDir,
                };
                let opts = InitOptions {
                    mode: if *delegated {
                        CaMode::Delegated
                    } else {
                        CaMode::Dedicated
                    },
                    kind: key_kind(key_type)?,
                    organization: organization
                        .clone()
                        .unwrap_or_else(|| config.organization.clone()),
                    subject: subject.clone(),
                    issuing_key: issuing_key
                        .as_deref()
                        .map(|u| token_uri("--issuing-key", u).map(KeyRef::Pkcs11))
                        .transpose()?,
                    root_key,
                    staging: *staging || config.staging,
                };
                crate::serve::create_data_dir(&dir)?;
                let record = ceremony::init(&dir, &opts).map_err(|e| e.to_string())?;
                Ok(("ca.init", record))
            }
            CaCommand::Import {
                cert,
                chain,
                alternate,
            } => {
                let read = |p: &PathBuf| read_pem_file(p);
                let (cert, chain) = (read(cert)?, read(chain)?);
                if *alternate {
                    let record = ceremony::import_alternate(&dir, &cert, &chain)
                        .map_err(|e| e.to_string())?;
                    Ok(("ca.import_alternate", record))
                } else {
                    let record =
                        ceremony::import(&dir, &cert, &chain).map_err(|e| e.to_string())?;
                    Ok(("ca.import", record))
                }
            }
            CaCommand::Rotate {
                key_type,
                issuing_key,
                root_key,
                subject,
            } => {
                let opts = RotateOptions {
                    kind: key_type.as_deref().map(key_kind).transpose()?,
                    issuing_key: issuing_key
                        .as_deref()
                        .map(|u| token_uri("--issuing-key", u).map(KeyRef::Pkcs11))
                        .transpose()?,
                    root_key: root_key.as_deref().map(ceremony_root_key).transpose()?,
                    subject: subject.clone(),
                };
                let record = ceremony::rotate(&dir, &opts).map_err(|e| e.to_string())?;
                Ok(("ca.rotate", record))
            }
            CaCommand::Show => Ok(("ca.show", ceremony::show(&dir).map_err(|e| e.to_string())?)),
            CaCommand::RevokeIssuer { id, reason } => {
                let code = sceau_ca::arl::issuer_reason(reason).map_err(|e| e.to_string())?;
                let record = ceremony::revoke_issuer(&dir, id, code).map_err(|e| e.to_string())?;
                Ok(("ca.revoke_issuer", record))
            }
            CaCommand::Arl { .. } => unreachable!("handled above"),
        }
    })();
    let (event, detail) = match &outcome {
        Ok((event, record)) => (*event, json!({"actor": actor, "record": record})),
        Err(e) => (
            "ca.refused",
            json!({"actor": actor, "command": described, "error": e}),
        ),
    };
    record_audit(&config, event, detail)?;
    let (_, record) = outcome?;
    print_record(&record, args.json);
    match &args.command {
        CaCommand::Import { .. } | CaCommand::Rotate { .. } => {
            if record
                .issuers
                .iter()
                .any(|i| i.state == sceau_ca::manifest::IssuerState::Pending)
            {
                eprintln!(
                    "Next: have the existing PKI sign the request above, then run `sceau-server ca import`."
                );
            } else {
                eprintln!(
                    "A running sceau-server uses the change once it receives SIGHUP (or after its next restart)."
                );
            }
        }
        CaCommand::RevokeIssuer { .. } => eprintln!(
            "Next: sign the authority CRL (`sceau-server ca arl`, with --root-key for an offline root); a running sceau-server stops using the issuer once it receives SIGHUP."
        ),
        _ => {}
    }
    Ok(())
}

/// Writes the command's audit row; the database is the server's (created if needed).
fn record_audit(
    config: &crate::config::Config,
    event: &str,
    detail: serde_json::Value,
) -> Result<(), String> {
    let url = config.database_url()?;
    if url.starts_with("sqlite:") && !config.data_dir.exists() {
        // A refused `init` into a directory that could not be made: nowhere to record it.
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = Store::open(&url)
            .await
            .map_err(|e| format!("database (for the audit trail): {e}"))?;
        let entry = AuditEntry {
            event,
            account_id: None,
            client_ip: None,
            detail,
        };
        entry.log();
        store
            .audit(&entry)
            .await
            .map_err(|e| format!("audit trail: {e}"))
    })
}
