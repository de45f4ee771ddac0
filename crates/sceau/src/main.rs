//! `sceau`, the ACME client command. Exit status: 0 success; 1 a failure (the last stderr line
//! says what went wrong and what to do), or for `status` a certificate past `--warn-days`;
//! 2 bad command line.

mod account;
mod cli;
mod ctx;
mod fleet;
mod issue;
mod misc;
mod star;

use std::process::ExitCode;

use clap::Parser;
use sceau_client::events::Event;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.verbose {
        "sceau=debug,sceau_client=debug,sceau_fleet=debug"
    } else if matches!(cli.command, Command::Manager(fleet::ManagerCmd::Serve(_))) {
        // A service: what it issues and refuses belongs in its journal.
        "sceau_fleet=info,warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // Fleet mode keeps its own directories; it does not touch the client's state.
    let fleet = match &cli.command {
        Command::Manager(cmd) => Some(fleet::run_manager(cmd).await),
        Command::Agent(cmd) => Some(fleet::run_agent(cmd).await),
        _ => None,
    };
    if let Some(r) = fleet {
        return match r {
            Ok(n) => ExitCode::from(n),
            Err(e) => {
                eprintln!("sceau: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let ctx = match ctx::Ctx::new(&cli) {
        Ok(c) => c,
        Err(e) => return fail(None, &e),
    };
    let events = ctx.events.clone();
    let result = match &cli.command {
        Command::Account(cmd) => account::run(&ctx, cmd).await.map(|_| 0),
        Command::Issue(a) => issue::run_issue(&ctx, a).await.map(|_| 0),
        Command::Revoke(a) => misc::run_revoke(&ctx, a).await.map(|_| 0),
        Command::Status(a) => misc::run_status(&ctx, a),
        Command::Renew(a) => issue::run_renew(ctx, a).await,
        Command::Star(cmd) => star::run(&ctx, cmd).await,
        Command::Manager(_) | Command::Agent(_) => unreachable!("handled above"),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            match cli.command {
                Command::Renew(_) => eprintln!(
                    "sceau: error: {n} certificate(s) failed to renew; see the lines above and the event log"
                ),
                Command::Star(_) => eprintln!(
                    "sceau: error: {n} STAR series could not be fetched; see the lines above and the event log"
                ),
                _ => {}
            }
            ExitCode::from(1)
        }
        Err(e) => fail(Some(&events), &e),
    }
}

fn fail(events: Option<&sceau_client::EventSink>, e: &sceau_client::Error) -> ExitCode {
    if let Some(events) = events {
        events(&Event::Failure {
            name: None,
            error: e.to_string(),
            problem: e.problem().cloned(),
        });
    }
    eprintln!("sceau: error: {e}");
    ExitCode::from(1)
}
