//! `sceau account …` and the account lookup every other command uses.

use std::path::Path;

use sceau_client::account::{Account, Eab, NewAccountOptions};
use sceau_client::events::Event;
use sceau_client::state::AccountRecord;
use sceau_client::{AcmeClient, Error, Result};
use sceau_wire::{AccountKey, KeyKind};

use crate::cli::{AccountCmd, RegisterArgs};
use crate::ctx::{Ctx, connect};

pub fn key_kind(name: &str) -> Result<KeyKind> {
    KeyKind::from_name(name).ok_or_else(|| {
        Error::Config(format!(
            "unknown key type {name:?}: use p256, p384, ed25519, rsa2048, rsa3072 or rsa4096"
        ))
    })
}

/// EAB credentials from a file or the environment (never argv; R90–R92).
pub fn read_eab(file: Option<&Path>) -> Result<Option<Eab>> {
    let (kid, hmac) = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(Error::io(format!("reading the EAB file {}", p.display())))?;
            let mut kid = None;
            let mut hmac = None;
            let mut bare = Vec::new();
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                match line.split_once('=') {
                    Some((k, v)) if matches!(k.trim(), "kid" | "key_id" | "eab_kid") => {
                        kid = Some(v.trim().to_owned())
                    }
                    Some((k, v)) if matches!(k.trim(), "hmac_key" | "hmac" | "eab_hmac_key") => {
                        hmac = Some(v.trim().to_owned())
                    }
                    _ => bare.push(line.to_owned()),
                }
            }
            if kid.is_none() && hmac.is_none() && bare.len() == 2 {
                (Some(bare[0].clone()), Some(bare[1].clone()))
            } else {
                (kid, hmac)
            }
        }
        None => (
            std::env::var("SCEAU_EAB_KID").ok(),
            std::env::var("SCEAU_EAB_HMAC_KEY").ok(),
        ),
    };
    match (kid, hmac) {
        (Some(key_id), Some(h)) => Ok(Some(Eab {
            key_id,
            hmac_key: Eab::decode_hmac_key(&h)?,
        })),
        (None, None) => Ok(None),
        _ => Err(Error::Config(
            "EAB needs both a key id and an HMAC key (kid=… and hmac_key=…)".into(),
        )),
    }
}

/// The stored account for `server`, or a new registration when `register` allows it.
pub async fn ensure_account(
    ctx: &Ctx,
    client: &AcmeClient,
    register: Option<&RegisterArgs>,
) -> Result<Account> {
    let server = client.directory_url().to_owned();
    if let Some((account, _)) = ctx.state.load_account(&server)? {
        return Ok(account);
    }
    let Some(reg) = register else {
        return Err(Error::Config(format!(
            "no account for {server} in {}: run `sceau account register --server {server}` first",
            ctx.state.root.display()
        )));
    };
    register_account(ctx, client, reg).await
}

async fn register_account(ctx: &Ctx, client: &AcmeClient, reg: &RegisterArgs) -> Result<Account> {
    let kind = key_kind(&reg.account_key_type)?;
    let eab = read_eab(reg.eab_file.as_deref())?;
    let eab_key_id = eab.as_ref().map(|e| e.key_id.clone());
    let key = AccountKey::generate(kind).map_err(|e| Error::Key(e.to_string()))?;
    let options = NewAccountOptions {
        contact: reg.contact.clone(),
        terms_of_service_agreed: reg.agree_tos,
        eab,
    };
    let (account, _) = client.new_account(key, &options).await?;
    let record = AccountRecord {
        server: client.directory_url().to_owned(),
        url: account.url.clone(),
        contact: reg.contact.clone(),
        key_type: kind.name().to_owned(),
        created: now(),
        eab_key_id,
    };
    ctx.state.save_account(&account, &record)?;
    (ctx.events)(&Event::AccountCreated {
        server: record.server.clone(),
        account: account.url.clone(),
    });
    if let Some(p) = &reg.eab_file {
        eprintln!(
            "sceau: the account is bound; delete the EAB file {} now (its MAC key is no longer needed)",
            p.display()
        );
    }
    Ok(account)
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub async fn run(ctx: &Ctx, cmd: &AccountCmd) -> Result<()> {
    match cmd {
        AccountCmd::Register { server, register } => {
            let client = connect(&server.server, server.ca_bundle.as_deref()).await?;
            if let Some((a, _)) = ctx.state.load_account(client.directory_url())? {
                println!("{}", a.url);
                return Ok(());
            }
            let account = register_account(ctx, &client, register).await?;
            println!("{}", account.url);
        }
        AccountCmd::Show { server } => {
            let client = connect(&server.server, server.ca_bundle.as_deref()).await?;
            let account = ensure_account(ctx, &client, None).await?;
            let info = client.account_info(&account).await?;
            let out = serde_json::json!({
                "url": account.url,
                "key_type": account.key.kind().name(),
                "thumbprint": account.key.jwk().thumbprint(),
                "account": info,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serialises")
            );
        }
        AccountCmd::Rollover {
            server,
            account_key_type,
        } => {
            let client = connect(&server.server, server.ca_bundle.as_deref()).await?;
            let (account, mut record) = ctx
                .state
                .load_account(client.directory_url())?
                .ok_or_else(|| {
                    Error::Config(format!("no account for {}", client.directory_url()))
                })?;
            let kind = key_kind(account_key_type)?;
            let new_key = AccountKey::generate(kind).map_err(|e| Error::Key(e.to_string()))?;
            let account = client.key_change(account, new_key).await?;
            record.key_type = kind.name().to_owned();
            ctx.state.save_account(&account, &record)?;
            (ctx.events)(&Event::AccountKeyChanged {
                server: record.server,
                account: account.url.clone(),
                key_type: kind.name().to_owned(),
            });
            println!("{}", account.key.jwk().thumbprint());
        }
        AccountCmd::Deactivate { server, yes } => {
            if !yes {
                return Err(Error::Config(
                    "deactivation cannot be undone: add --yes to confirm".into(),
                ));
            }
            let client = connect(&server.server, server.ca_bundle.as_deref()).await?;
            let account = ensure_account(ctx, &client, None).await?;
            client.deactivate_account(&account).await?;
            // Keep the files for the record but out of the way, so a new registration can happen.
            let dir = ctx.state.account_dir(client.directory_url());
            let _ = std::fs::rename(
                &dir,
                dir.with_extension(format!("deactivated-{}", now().replace(':', ""))),
            );
            (ctx.events)(&Event::AccountDeactivated {
                server: client.directory_url().to_owned(),
                account: account.url,
            });
        }
    }
    Ok(())
}
