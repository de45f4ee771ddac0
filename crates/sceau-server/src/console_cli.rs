//! `sceau-server console`: the console's users from the command line (operators are created
//! here, never from the web), and the console's listener of `serve`.
//!
//! Invariants:
//! - A password is read from a private file (0600) or from stdin, never from argv, and never
//!   printed or logged; it is stored as an Argon2id hash only.
//! - Every command is audited with the OS user who ran it.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use sceau_admin::{Registry, WrapKey};
use sceau_console::{auth::check_user_name, password};
use sceau_store::{AuditEntry, ConsoleUser, Store, StoreError, now};
use serde_json::json;

use crate::config::Config;
use crate::{CommonArgs, ServeArgs};

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Who runs the command, for the audit trail [default: the OS user]
    #[arg(long, global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: ConsoleCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConsoleCommand {
    /// Create an operator (the PKI team); the password is read from stdin (first line) or
    /// --password-file; the second factor is set up at the first login
    AddOperator {
        /// Login name: letters, digits, . _ - @
        name: String,
        /// A private file (0600) holding the password
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the console's users
    List,
}

fn read_password(file: &Option<PathBuf>) -> Result<String, String> {
    let text = match file {
        Some(path) => crate::config::read_secret_file(path)?,
        None if stdin_is_terminal() => {
            let first = prompt_hidden("Password (12 characters or more): ")?;
            let again = prompt_hidden("The same password again: ")?;
            if first != again {
                return Err("the two passwords differ; nothing was created".into());
            }
            first
        }
        None => read_line()?,
    };
    password::check_new(&text)?;
    Ok(text)
}

fn read_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// Asks on stderr and reads a line from the terminal with its echo off, so the password is
/// not shown on the screen (nor kept in the terminal's scrollback).
fn prompt_hidden(prompt: &str) -> Result<String, String> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: tcgetattr/tcsetattr on stdin with a termios value owned here.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
            return Err("cannot read the terminal's settings".into());
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
        saved
    };
    let line = read_line();
    // SAFETY: restores the settings read above.
    unsafe {
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
    }
    line
}

pub fn run(args: ConsoleArgs) -> Result<(), String> {
    let config = crate::serve::resolve_config(&args.common, &ServeArgs::default())?;
    let actor = args.actor.clone().unwrap_or_else(crate::admin::os_user);
    crate::serve::create_data_dir(&config.data_dir)?;
    // Checked before the database is opened: a refused command changes nothing.
    let new_operator = match &args.command {
        ConsoleCommand::AddOperator {
            name,
            password_file,
        } => {
            check_user_name(name).map_err(|e| format!("{name:?}: {e}"))?;
            Some((name.clone(), read_password(password_file)?))
        }
        ConsoleCommand::List => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store = Store::open(&config.database_url()?)
            .await
            .map_err(|e| format!("database: {e}"))?;
        match new_operator {
            Some((name, pass)) => {
                let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
                    .await
                    .map_err(|e| e.to_string())?;
                let user = ConsoleUser {
                    name: name.clone(),
                    role: "operator".into(),
                    kid: None,
                    password_hash: hash,
                    totp_sealed: None,
                    totp_last_step: 0,
                    status: "active".into(),
                    created_at: now(),
                    created_by: actor.clone(),
                };
                let audit = AuditEntry {
                    event: "console.user_created",
                    account_id: None,
                    client_ip: None,
                    detail: json!({"user": name, "role": "operator", "actor": actor}),
                };
                match store.insert_console_user(&user, None, &audit).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(what)) => return Err(what),
                    Err(e) => return Err(format!("database: {e}")),
                }
                println!(
                    "operator {name} created; the authenticator (TOTP) is set up at the first login"
                );
                Ok(())
            }
            None => {
                let users = store
                    .console_users()
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                if users.is_empty() {
                    println!(
                        "no console user (create one with `sceau-server console add-operator NAME`)"
                    );
                }
                for u in users {
                    println!(
                        "{}\t{}\t{}\t{}\tcreated {} by {}",
                        u.name,
                        u.role,
                        u.status,
                        if u.totp_sealed.is_some() {
                            "totp"
                        } else {
                            "no second factor yet"
                        },
                        sceau_admin::report::when(u.created_at),
                        u.created_by
                    );
                }
                Ok(())
            }
        }
    })
}

/// The console of `serve`: its state over the server's store, or an error naming what is
/// missing.
pub fn console(
    config: &Config,
    acme: &Arc<sceau_acme::Acme>,
) -> Result<Arc<sceau_console::Console>, String> {
    let store = &acme.store;
    let totp_key = WrapKey::load_or_create_named(&config.data_dir, sceau_console::TOTP_KEY_FILE)
        .map_err(|e| format!("console: {e}"))?;
    // Creating an external account seals its MAC key: the console needs the wrap key, which a
    // front end with a separate signing service does not hold (then the console reads and
    // changes AAs, and their creation is refused with the reason).
    let registry = if config.separate_signer() {
        Registry::without_wrap_key(store.clone())
    } else {
        let wrap = WrapKey::load_or_create(&config.data_dir).map_err(|e| e.to_string())?;
        Registry::new(store.clone(), Arc::new(wrap)).with_max_key_age(config.max_key_age_secs())
    };
    Ok(sceau_console::Console::new(
        acme.clone(),
        registry,
        totp_key,
        sceau_console::Settings {
            max_key_age: config.max_key_age_secs(),
            ..sceau_console::Settings::default()
        },
    ))
}
