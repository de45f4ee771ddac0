//! `sceau-prefill`: fills a Sceau database with synthetic issuance history before a benchmark,
//! so that throughput can be compared between an empty database and one holding a million
//! certificates. Run it on a stopped server's database:
//! `sceau-prefill --database sqlite://DATA/sceau.db --certificates 1000000`, or for the CRL
//! benchmark revoked certificates of one issuer spread over its shards:
//! `sceau-prefill --database … --revoked 1000000 --issuer ID --shards 16`, or for the STAR
//! renewal benchmark (RFC 8739) series each with its own key whose next certificates fall due
//! evenly over a span: `sceau-prefill --database … --star 10000 --star-due-in 120
//! --star-spread 600` (prints `star_due_first=` and `star_due_last=`, Unix seconds).

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
    #[arg(long, default_value_t = 0)]
    certificates: u64,
    /// Number of synthetic revoked certificates of `--issuer` (what a CRL job reads).
    #[arg(long, default_value_t = 0)]
    revoked: u64,
    /// The issuer id (`sceau-server ca show --json`) of the revoked certificates.
    #[arg(long, requires = "revoked")]
    issuer: Option<String>,
    /// The server's CRL shards (`--crl-shards`) to spread them over.
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Number of synthetic STAR series, each with its own P-256 key and name
    /// `s<i>.<star-domain>`, first certificate issued, next one due.
    #[arg(long, default_value_t = 0)]
    star: u64,
    /// The series' lifetime in seconds (renewed certificates are pre-dated by 2/3 of it).
    #[arg(long, default_value_t = 3600)]
    star_lifetime: i64,
    /// Seconds from now until the first series is due.
    #[arg(long, default_value_t = 120)]
    star_due_in: i64,
    /// Seconds over which the series fall due, evenly.
    #[arg(long, default_value_t = 600)]
    star_spread: i64,
    /// Parent domain of the series' names.
    #[arg(long, default_value = "star.bench.test")]
    star_domain: String,
}

/// `n` STAR series due evenly from `first` over `spread` seconds, ending a day later.
fn star_rows(
    n: u64,
    lifetime: i64,
    first: i64,
    spread: i64,
    domain: &str,
) -> Result<Vec<sceau_store::SyntheticStar>, rcgen::Error> {
    // RFC 8739 §3.5 with the server's f = 2/3 (sceau_acme::star::server_adjust).
    let adjust = (lifetime * 2 + 2) / 3;
    (0..n)
        .map(|i| {
            let name = format!("s{i}.{domain}");
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = rcgen::CertificateParams::new(vec![name.clone()])?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name.as_str());
            let csr = params.serialize_request(&key)?;
            let due = first + (i as i64 * spread) / n.max(1) as i64;
            Ok(sceau_store::SyntheticStar {
                name,
                csr_b64: sceau_wire::b64::encode(csr.der()),
                lifetime,
                adjust,
                end: first + spread + 86_400,
                next: due + adjust,
                due,
            })
        })
        .collect()
}

/// `n` revoked certificates: unexpired (90 days), revoked an hour ago, reasons cycling over
/// the end-entity codes, serials of 16 random-looking octets.
fn revoked_rows(
    n: u64,
    issuer: String,
    shards: u32,
) -> impl Iterator<Item = sceau_store::SyntheticRevoked> {
    let now = sceau_store::now();
    let reasons = [None, Some(1u8), Some(3), Some(4), Some(5), Some(9)];
    (0..n).map(move |i| {
        // A bijective mix of the index: distinct serials that look random; first bit clear.
        let x = (u128::from(i) ^ 0x5ce4_u128)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            >> 1;
        let serial = format!("{:032x}", x | (1u128 << 120));
        sceau_store::SyntheticRevoked {
            serial,
            issuer_id: issuer.clone(),
            crl_shard: (i % u64::from(shards.max(1))) as u32,
            not_after: now + 90 * 86400,
            revoked_at: now - 3600,
            reason: reasons[(i % reasons.len() as u64) as usize],
        }
    })
}

/// A progress line on stderr at most every ten seconds.
struct Progress(Instant);

impl Progress {
    fn tick(&mut self, done: u64, what: &str) {
        if self.0.elapsed().as_secs() >= 10 {
            eprintln!("sceau-prefill: {done} {what}");
            self.0 = Instant::now();
        }
    }
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
    let mut progress = Progress(Instant::now());
    if args.revoked > 0 {
        let Some(issuer) = args.issuer.clone() else {
            eprintln!("sceau-prefill: --revoked needs --issuer");
            return ExitCode::from(2);
        };
        let result = store
            .prefill_revoked(revoked_rows(args.revoked, issuer, args.shards), |done| {
                progress.tick(done, "revoked certificates written")
            })
            .await;
        match result {
            Ok(n) => println!(
                "prefilled_revoked={n} shards={} elapsed_s={:.1}",
                args.shards,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("sceau-prefill: {e}");
                return ExitCode::from(1);
            }
        }
        if args.certificates == 0 {
            return ExitCode::SUCCESS;
        }
    }
    if args.star > 0 {
        if args.star_lifetime < 60 || args.star_spread < 0 || args.star_due_in < 0 {
            eprintln!(
                "sceau-prefill: --star-lifetime takes at least 60 s, --star-due-in and --star-spread at least 0"
            );
            return ExitCode::from(2);
        }
        let first = sceau_store::now() + args.star_due_in;
        let rows = match star_rows(
            args.star,
            args.star_lifetime,
            first,
            args.star_spread,
            &args.star_domain,
        ) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sceau-prefill: cannot make the series' CSRs: {e}");
                return ExitCode::from(1);
            }
        };
        let last = rows.last().map_or(first, |r| r.due);
        match store
            .prefill_star(rows, |done| progress.tick(done, "STAR series written"))
            .await
        {
            Ok(n) => println!(
                "prefilled_star={n} star_due_first={first} star_due_last={last} elapsed_s={:.1}",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("sceau-prefill: {e}");
                return ExitCode::from(1);
            }
        }
        if args.certificates == 0 {
            return ExitCode::SUCCESS;
        }
    }
    let result = store
        .prefill(args.certificates, |done| {
            progress.tick(done, "certificates written")
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
