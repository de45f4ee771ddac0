//! `sceau-server admin`: the PKI operator's commands for external admin accounts (AAs) and
//! the ACME accounts bound to them, and the server-side wiring of the AA policy.
//!
//! Invariants:
//! - Admin commands open the server's own database (same `--data-dir` / `--config`) and its
//!   `eab-wrap.key`; SQLite WAL lets them run while `serve` runs, and the server reads AAs
//!   afresh on every request, so a change applies from the next request on.
//! - A MAC key is printed once, on stdout, by `create` and `regenerate-key`; it never goes to
//!   the log or the audit trail, and is never taken from argv.
//! - Every command, read-only ones included, is recorded with its actor in the audit trail.

use sceau_admin::report::when;
use std::sync::Arc;

use clap::{Args, Subcommand};
use sceau_acme::urls::Urls;
use sceau_acme::{AcmeConfig, EabMode};
use sceau_admin::{AdminPolicy, NewExternalAccount, Registry, WrapKey, parse_duration};
use sceau_store::{ExternalAccountRecord, Store, now};
use sceau_wire::b64;
use serde_json::json;

use crate::config::Config;
use crate::{CommonArgs, ServeArgs};

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Who runs the command, for the audit trail [default: the OS user]
    #[arg(long, global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// External admin accounts: create, list, show, change, suspend, deactivate
    #[command(subcommand)]
    Account(AccountCommand),
    /// ACME accounts (bound to an external account): suspend, resume, deactivate
    #[command(subcommand)]
    AcmeAccount(AcmeAccountCommand),
    /// Certificates: list, show, revoke (one, or in bulk by the compromise procedures)
    #[command(subcommand)]
    Cert(crate::admin_cert::CertCommand),
    /// STAR series (RFC 8739): list, show with their certificates, cancel
    #[command(subcommand)]
    Star(crate::admin_star::StarCommand),
    /// PostgreSQL: create or update the front end's and the signing process's least-privilege
    /// roles (R33); run with the schema owner's URL
    DbRoles {
        /// The front end's role: reads and writes rows, changes no schema
        #[arg(long, default_value = "sceau_front")]
        front_role: String,
        /// The signing process's role: reads what its signing gate checks, nothing else
        #[arg(long, default_value = "sceau_signer")]
        signer_role: String,
        /// A file (0600) with the front end's password [default: none, for trust or
        /// certificate authentication]
        #[arg(long, value_name = "FILE")]
        front_password_file: Option<std::path::PathBuf>,
        /// A file (0600) with the signing process's password
        #[arg(long, value_name = "FILE")]
        signer_password_file: Option<std::path::PathBuf>,
    },
    /// Report on one external account: certificates, failed validations, parameter changes
    Report {
        /// The external account's EAB key id
        #[arg(long)]
        account: String,
        /// Period covered, back from now (h, d, w or y)
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an external account; prints its EAB key id and MAC key (once)
    Create {
        /// The person it belongs to: "First Last <mail@example.org>"
        #[arg(long)]
        owner: String,
        /// A name it may obtain certificates for, exactly (repeat for more)
        #[arg(long = "domain", value_name = "NAME")]
        domains: Vec<String>,
        /// A name it may obtain certificates for, with every name below it
        #[arg(long = "with-subdomains", value_name = "NAME")]
        with_subdomains: Vec<String>,
        /// Validity of the external account, at most 3y
        #[arg(long, default_value = "1y")]
        valid_for: String,
        /// Also allow this certificate profile (tls-server-client)
        #[arg(long = "profile", value_name = "PROFILE")]
        profiles: Vec<String>,
        /// Allow wildcard names under the listed names (agency guide R42 forbids them)
        #[arg(long)]
        allow_wildcards: bool,
        /// Print {"kid": …, "hmac_key": …}
        #[arg(long)]
        json: bool,
    },
    /// List external accounts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one external account: names, validity, ACME accounts, key regenerations
    Show {
        kid: String,
        #[arg(long)]
        json: bool,
    },
    /// Add allowed names
    AddDomain {
        kid: String,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The names also cover every name below them
        #[arg(long)]
        with_subdomains: bool,
    },
    /// Remove allowed names (refused from the next order, finalize or signing on)
    RemoveDomain {
        kid: String,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Replace the MAC key; the old one stops binding new ACME accounts
    RegenerateKey {
        kid: String,
        #[arg(long)]
        json: bool,
    },
    /// Allow a certificate profile
    AllowProfile { kid: String, profile: String },
    /// Withdraw a certificate profile
    WithdrawProfile { kid: String, profile: String },
    /// Set the end of validity to --valid-for from now (at most 3y)
    Renew {
        kid: String,
        #[arg(long)]
        valid_for: String,
    },
    /// Suspend the external account and its ACME accounts (reversible)
    Suspend { kid: String },
    /// Lift a suspension
    Resume { kid: String },
    /// Deactivate the external account and its ACME accounts (irreversible)
    Deactivate { kid: String },
}

#[derive(Subcommand, Debug)]
pub enum AcmeAccountCommand {
    /// Suspend one ACME account (by id or account URL)
    Suspend { account: String },
    /// Lift an administrator's suspension of one ACME account
    Resume { account: String },
    /// Deactivate one ACME account (irreversible)
    Deactivate { account: String },
}

/// The policy `serve` installs, from the configuration; also applies the policy settings
/// `AcmeConfig` carries (R29 limit).
///
/// With a signer of its own (`signer`), the MAC keys are the signer's: this process holds no
/// wrap key and asks the signer to check each binding.
pub async fn server_policy(
    config: &Config,
    eab: EabMode,
    store: &Store,
    acme: &mut AcmeConfig,
    signer: &Arc<dyn sceau_ca::Signer>,
) -> Result<Arc<dyn sceau_acme::Policy>, String> {
    acme.max_failed_validations_per_hour = match config.max_failed_validations_per_hour {
        0 => None,
        n => Some(n),
    };
    if config.separate_signer() {
        let signer = signer.clone();
        let oracle: sceau_admin::MacOracle = Arc::new(move |kid, input| {
            let signer = signer.clone();
            Box::pin(async move {
                signer
                    .check_eab_mac(&kid, input.signing_input, input.mac)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let registry = Registry::without_wrap_key(store.clone());
        return Ok(Arc::new(AdminPolicy::with_mac_oracle(
            registry, eab, oracle,
        )));
    }
    let wrap = WrapKey::load_or_create(&config.data_dir).map_err(|e| e.to_string())?;
    let registry =
        Registry::new(store.clone(), Arc::new(wrap)).with_max_key_age(config.max_key_age_secs());
    Ok(Arc::new(AdminPolicy::new(registry, eab)))
}

pub(crate) fn os_user() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn names_text(aa: &ExternalAccountRecord) -> String {
    aa.names
        .iter()
        .map(|n| {
            if n.subdomains {
                format!("{} (and its subdomains)", n.name)
            } else {
                n.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("json"));
}

pub fn run(args: AdminArgs) -> Result<(), String> {
    let config = crate::serve::resolve_config(&args.common, &ServeArgs::default())?;
    let actor = args.actor.clone().unwrap_or_else(os_user);
    crate::serve::create_data_dir(&config.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = Store::open(&config.database_url()?)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let wrap = WrapKey::load_or_create(&config.data_dir).map_err(|e| e.to_string())?;
        let registry = Registry::new(store, Arc::new(wrap));
        let urls = Urls::new(&config.base_url());
        let described = format!("{:?}", args.command);
        let public_url = config.public_url.as_deref();
        // RA mode: the upstream CA revokes first (sceau_acme::revoke_certificate); the
        // operator's command reaches it with the service's own credentials.
        let upstream = match (&config.ra, &args.command) {
            (Some(ra), AdminCommand::Cert(c)) if c.revokes() => {
                let limits = sceau_ra::Limits {
                    max_validity: time::Duration::days(90),
                    allow_wildcards: false,
                };
                Some(
                    sceau_ra::RaSigner::open(ra, limits)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            _ => None,
        };
        let upstream = upstream.as_ref().map(|s| s as &dyn sceau_ca::Signer);
        match dispatch(&registry, &urls, public_url, upstream, &actor, args.command).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // A refused command changed nothing, but the attempt belongs in the trail.
                let change = sceau_store::Change {
                    actor: &actor,
                    action: "refused",
                    detail: json!({"command": described, "error": e.to_string()}),
                };
                let _ = registry
                    .store()
                    .record_admin_event(None, None, &change)
                    .await;
                Err(e.to_string())
            }
        }
    })
}

async fn dispatch(
    r: &Registry,
    urls: &Urls,
    public_url: Option<&str>,
    upstream: Option<&dyn sceau_ca::Signer>,
    actor: &str,
    command: AdminCommand,
) -> Result<(), sceau_admin::AdminError> {
    match command {
        AdminCommand::Account(c) => account(r, urls, actor, c).await,
        AdminCommand::Cert(c) => {
            crate::admin_cert::run(r, urls, public_url, upstream, actor, c).await
        }
        AdminCommand::Star(c) => crate::admin_star::run(r, urls, actor, c).await,
        AdminCommand::AcmeAccount(c) => {
            let (id, change) = match &c {
                AcmeAccountCommand::Suspend { account } => {
                    (account, r.suspend_acme_account(account, actor).await?)
                }
                AcmeAccountCommand::Resume { account } => {
                    (account, r.resume_acme_account(account, actor).await?)
                }
                AcmeAccountCommand::Deactivate { account } => {
                    (account, r.deactivate_acme_account(account, actor).await?)
                }
            };
            let id = Registry::acme_account_id(id);
            println!("ACME account {id} is now {}", change.status);
            if change.still_held_by_external {
                println!("(it stays suspended while its external account is suspended)");
            }
            Ok(())
        }
        AdminCommand::DbRoles {
            front_role,
            signer_role,
            front_password_file,
            signer_password_file,
        } => {
            let password = |f: &Option<std::path::PathBuf>| {
                f.as_deref()
                    .map(crate::config::read_secret_file)
                    .transpose()
                    .map_err(sceau_admin::AdminError::Invalid)
            };
            let (fp, sp) = (
                password(&front_password_file)?,
                password(&signer_password_file)?,
            );
            r.store()
                .set_up_roles(
                    &sceau_store::roles::Role {
                        name: &front_role,
                        password: fp.as_deref(),
                    },
                    &sceau_store::roles::Role {
                        name: &signer_role,
                        password: sp.as_deref(),
                    },
                )
                .await?;
            let change = sceau_store::Change {
                actor,
                action: "db_roles",
                detail: json!({"front_role": front_role, "signer_role": signer_role}),
            };
            r.store().record_admin_event(None, None, &change).await?;
            println!(
                "role {front_role} (front end: rows, no schema) and role {signer_role} (signing gate: reads {}) are set up",
                sceau_store::roles::SIGNER_TABLES.join(", ")
            );
            Ok(())
        }
        AdminCommand::Report {
            account,
            since,
            json,
        } => {
            let since = now() - parse_duration(&since)?;
            let report = r.report(&account, since).await?;
            r.record_read("report_read", Some(&account), actor).await?;
            if json {
                print_json(&serde_json::to_value(&report).expect("json"));
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
    }
}

async fn account(
    r: &Registry,
    urls: &Urls,
    actor: &str,
    command: AccountCommand,
) -> Result<(), sceau_admin::AdminError> {
    match command {
        AccountCommand::Create {
            owner,
            domains,
            with_subdomains,
            valid_for,
            profiles,
            allow_wildcards,
            json,
        } => {
            let request = NewExternalAccount {
                owner,
                names: domains,
                names_with_subdomains: with_subdomains,
                valid_for_secs: parse_duration(&valid_for)?,
                extra_profiles: profiles,
                wildcards: allow_wildcards,
            };
            let created = r.create(&request, actor).await?;
            let aa = &created.account;
            let key = b64::encode(&created.mac_key);
            if json {
                print_json(&json!({"kid": aa.kid, "hmac_key": key}));
            } else {
                println!("External account created for {}", aa.owner);
                println!("  EAB key id:   {}", aa.kid);
                println!("  EAB MAC key:  {key}");
                println!("  valid until:  {}", when(aa.not_after));
                println!("  names:        {}", names_text(aa));
                println!("  profiles:     {}", aa.profiles.join(", "));
                println!(
                    "The MAC key is shown only this once: hand it to {} over a protected channel.",
                    aa.owner
                );
                println!("Client use: --eab-kid {} --eab-hmac-key <MAC key>", aa.kid);
            }
            Ok(())
        }
        AccountCommand::List { json } => {
            let all = r.list().await?;
            r.record_read("external_accounts_listed", None, actor)
                .await?;
            let mut rows = Vec::new();
            for aa in &all {
                let accounts = r.store().accounts_of_external(&aa.kid).await?;
                rows.push((aa, accounts.len()));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(aa, n)| json!({"kid": aa.kid, "owner": aa.owner, "status": aa.status, "not_after": aa.not_after, "names": aa.names.iter().map(|n| &n.name).collect::<Vec<_>>(), "acme_accounts": n}))
                    .collect();
                print_json(&json!(list));
            } else if rows.is_empty() {
                println!(
                    "No external accounts. Create one with: sceau-server admin account create --owner \"NAME <MAIL>\" --domain NAME"
                );
            } else {
                println!(
                    "{:<24} {:<12} {:<21} {:>5}  OWNER / NAMES",
                    "KID", "STATUS", "VALID UNTIL", "ACME"
                );
                for (aa, n) in rows {
                    let status = if aa.status == "valid" && aa.not_after <= now() {
                        "expired"
                    } else {
                        aa.status.as_str()
                    };
                    println!(
                        "{:<24} {:<12} {:<21} {:>5}  {}",
                        aa.kid,
                        status,
                        when(aa.not_after),
                        n,
                        aa.owner
                    );
                    println!("{:<66}{}", "", names_text(aa));
                }
            }
            Ok(())
        }
        AccountCommand::Show { kid, json } => {
            let aa = r.get(&kid).await?;
            let accounts = r.store().accounts_of_external(&kid).await?;
            r.record_read("external_account_shown", Some(&kid), actor)
                .await?;
            if json {
                print_json(&json!({
                    "kid": aa.kid, "owner": aa.owner, "status": aa.status, "expired": aa.not_after <= now(),
                    "not_after": aa.not_after, "created_at": aa.created_at, "created_by": aa.created_by,
                    "key_regenerations": aa.key_regenerations, "key_updated_at": aa.key_updated_at,
                    "profiles": aa.profiles, "wildcards": aa.wildcards,
                    "names": aa.names.iter().map(|n| json!({"name": n.name, "subdomains": n.subdomains, "added_at": n.added_at, "added_by": n.added_by})).collect::<Vec<_>>(),
                    "acme_accounts": accounts.iter().map(|a| json!({"id": a.id, "url": urls.account(&a.id), "status": a.status, "contact": a.contact, "created_at": a.created_at})).collect::<Vec<_>>(),
                }));
            } else {
                println!("External account {}", aa.kid);
                println!("  owner:             {}", aa.owner);
                let expired = if aa.not_after <= now() {
                    " (expired)"
                } else {
                    ""
                };
                println!("  status:            {}{expired}", aa.status);
                println!("  valid until:       {}", when(aa.not_after));
                println!(
                    "  created:           {} by {}",
                    when(aa.created_at),
                    aa.created_by
                );
                println!(
                    "  key regenerations: {} (last key {})",
                    aa.key_regenerations,
                    when(aa.key_updated_at)
                );
                println!("  profiles:          {}", aa.profiles.join(", "));
                println!(
                    "  wildcards:         {}",
                    if aa.wildcards { "allowed" } else { "refused" }
                );
                println!("  names:");
                for n in &aa.names {
                    let sub = if n.subdomains {
                        " (and its subdomains)"
                    } else {
                        ""
                    };
                    println!(
                        "    {}{sub}  added {} by {}",
                        n.name,
                        when(n.added_at),
                        n.added_by
                    );
                }
                println!("  ACME accounts: {}", accounts.len());
                for a in &accounts {
                    println!(
                        "    {}  {}  created {}  {}",
                        a.id,
                        a.status,
                        when(a.created_at),
                        a.contact.join(",")
                    );
                }
            }
            Ok(())
        }
        AccountCommand::AddDomain {
            kid,
            names,
            with_subdomains,
        } => {
            let n = r.add_names(&kid, &names, with_subdomains, actor).await?;
            println!("{n} name(s) added to external account {kid}");
            Ok(())
        }
        AccountCommand::RemoveDomain { kid, names } => {
            r.remove_names(&kid, &names, actor).await?;
            println!("removed from external account {kid}: {}", names.join(", "));
            Ok(())
        }
        AccountCommand::RegenerateKey { kid, json } => {
            let (key, count) = r.regenerate_key(&kid, actor).await?;
            let key = b64::encode(&key);
            if json {
                print_json(&json!({"kid": kid, "hmac_key": key}));
            } else {
                println!("New MAC key for external account {kid} (regeneration {count}):");
                println!("  EAB MAC key:  {key}");
                println!(
                    "The old key no longer binds new ACME accounts; accounts already bound keep working."
                );
            }
            Ok(())
        }
        AccountCommand::AllowProfile { kid, profile } => {
            let p = r.set_profile(&kid, &profile, true, actor).await?;
            println!("external account {kid} may use: {}", p.join(", "));
            Ok(())
        }
        AccountCommand::WithdrawProfile { kid, profile } => {
            let p = r.set_profile(&kid, &profile, false, actor).await?;
            println!("external account {kid} may use: {}", p.join(", "));
            Ok(())
        }
        AccountCommand::Renew { kid, valid_for } => {
            let t = r.renew(&kid, parse_duration(&valid_for)?, actor).await?;
            println!("external account {kid} is valid until {}", when(t));
            Ok(())
        }
        AccountCommand::Suspend { kid } => {
            r.suspend(&kid, actor).await?;
            println!("external account {kid} and its ACME accounts are suspended");
            Ok(())
        }
        AccountCommand::Resume { kid } => {
            r.resume(&kid, actor).await?;
            println!(
                "external account {kid} is valid again, with its ACME accounts (except those suspended on their own)"
            );
            Ok(())
        }
        AccountCommand::Deactivate { kid } => {
            r.deactivate(&kid, actor).await?;
            println!("external account {kid} and its ACME accounts are deactivated");
            Ok(())
        }
    }
}
