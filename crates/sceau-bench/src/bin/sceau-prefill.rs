//! `sceau-prefill`: fills a Sceau database with synthetic issuance history before a benchmark,
//! so that throughput can be compared between an empty database and one holding a million
//! certificates. Run it on a stopped server's database:
//! `sceau-prefill --database sqlite://DATA/sceau.db --certificates 1000000`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sceau-prefill",
    version,
    about = "Fill a Sceau database with synthetic certificates"
)]
struct Args {
    /// Database URL, as `sceau-server --database` takes it (sqlite://PATH or postgres://…).
    #[arg(long)]
    database: String,
    /// Number of synthetic certificates (each with its order, authorization, challenges and audit events).
    #[arg(long)]
    certificates: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let store = match sceau_store::Store::open(&args.database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sceau-prefill: cannot open {}: {e}", args.database);
            return ExitCode::from(2);
        }
    };
    let before = store
        .count(sceau_store::Table::Certificates)
        .await
        .unwrap_or(0);
    let mut last_report = Instant::now();
    let result = store
        .prefill(args.certificates, |done| {
            if last_report.elapsed().as_secs() >= 10 {
                eprintln!("sceau-prefill: {done} certificates written");
                last_report = Instant::now();
            }
        })
        .await;
    if let Err(e) = result {
        eprintln!("sceau-prefill: {e}");
        return ExitCode::from(1);
    }
    let after = store
        .count(sceau_store::Table::Certificates)
        .await
        .unwrap_or(0);
    println!(
        "prefilled={} certificates_stored={after} (before: {before}) elapsed_s={:.1}",
        args.certificates,
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
