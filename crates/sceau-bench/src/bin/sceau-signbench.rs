//! `sceau-signbench`: CA signatures per second with the key on a PKCS#11 token against the
//! same operation with the key in a file, in one run, through the CA's own signing path
//! (`KeyHandle::sign`, and whole leaf certificates with `Ca::sign`). `bench/pkcs11-sign.sh`
//! makes a SoftHSM2 token and runs it:
//! `sceau-signbench --dir DIR --pkcs11 'pkcs11:token=bench?module-path=…&pin-source=file:…'`.
//! Keys are generated fresh in DIR (files) and on the token (labels `bench-KIND-PID-*`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sceau_ca::ceremony::{InitOptions, RootKey};
use sceau_ca::{Ca, CaKeyKind, IssueRequest, KeyHandle, KeyRef, OpenOptions, Profile};
use sceau_wire::Identifier;

#[derive(Debug, Parser)]
#[command(
    name = "sceau-signbench",
    version,
    about = "CA signatures per second: PKCS#11 token key against file key"
)]
struct Args {
    /// Directory for the file keys and the benchmark CAs (must exist).
    #[arg(long)]
    dir: PathBuf,
    /// Token URI without object/id: `pkcs11:token=LABEL?module-path=…&pin-source=file:…`.
    #[arg(long)]
    pkcs11: String,
    /// Key kinds to measure.
    #[arg(long, value_delimiter = ',', default_value = "p256,rsa3072")]
    kinds: Vec<CaKeyKind>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

/// The token URI with `object=LABEL` added to its path.
fn with_object(uri: &str, label: &str) -> String {
    match uri.split_once('?') {
        Some((path, query)) => format!("{path};object={label}?{query}"),
        None => format!("{uri};object={label}"),
    }
}

struct Figure {
    count: u64,
    elapsed: Duration,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn mean_us(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.count as f64
    }
}

/// Runs `op` for `seconds`, after one warm-up call.
fn measure(
    seconds: f64,
    mut op: impl FnMut() -> Result<(), sceau_ca::CaError>,
) -> Result<Figure, sceau_ca::CaError> {
    op()?;
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut count = 0;
    while start.elapsed() < limit {
        op()?;
        count += 1;
    }
    Ok(Figure {
        count,
        elapsed: start.elapsed(),
    })
}

/// A to-be-signed certificate is about this long.
const MESSAGE: [u8; 700] = [0x5a; 700];

fn raw_signatures(key: &KeyHandle, seconds: f64) -> Result<Figure, sceau_ca::CaError> {
    measure(seconds, || key.sign(&MESSAGE).map(drop))
}

fn certificates(
    dir: &Path,
    kind: CaKeyKind,
    keys: Option<(String, String)>,
    seconds: f64,
) -> Result<Figure, sceau_ca::CaError> {
    let mut opts = InitOptions::dedicated(kind, "Bench Org");
    if let Some((root, issuing)) = keys {
        opts.root_key = RootKey::Pkcs11(root);
        opts.issuing_key = Some(KeyRef::Pkcs11(issuing));
    }
    sceau_ca::ceremony::init(dir, &opts)?;
    let ca = Ca::open(
        dir,
        &OpenOptions {
            create: None,
            staging: false,
        },
    )?;
    // One leaf key for every certificate: only the CA's signature is measured.
    let leaf = rcgen::KeyPair::generate()?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&leaf);
    measure(seconds, || {
        let now = time::OffsetDateTime::now_utc();
        ca.sign(&IssueRequest {
            public_key_spki_der: spki.clone(),
            identifiers: vec![Identifier::dns("bench.example")],
            not_before: now,
            not_after: now + time::Duration::days(30),
            profile: Profile::Server,
            serial: None,
            crl_shard: None,
            csr_der: None,
            gate: None,
            resume: None,
        })
        .map(drop)
    })
}

fn run(args: &Args) -> Result<(), sceau_ca::CaError> {
    let pid = std::process::id();
    println!(
        "{:<8} {:<6} {:<12} {:>8} {:>10} {:>10}",
        "kind", "key", "operation", "count", "per_s", "mean_us"
    );
    let line = |kind: CaKeyKind, at: &str, op: &str, f: &Figure| {
        println!(
            "{:<8} {:<6} {:<12} {:>8} {:>10.1} {:>10.0}",
            kind.name(),
            at,
            op,
            f.count,
            f.per_second(),
            f.mean_us()
        );
    };
    for &kind in &args.kinds {
        let file = KeyRef::File(args.dir.join(format!("bench-{kind}-{pid}.key")))
            .generate(&args.dir, kind)?;
        let token = KeyRef::Pkcs11(with_object(&args.pkcs11, &format!("bench-{kind}-{pid}")))
            .generate(&args.dir, kind)?;
        line(
            kind,
            "file",
            "signature",
            &raw_signatures(&file, args.seconds)?,
        );
        line(
            kind,
            "token",
            "signature",
            &raw_signatures(&token, args.seconds)?,
        );
        drop((file, token));
        let file_ca = args.dir.join(format!("ca-file-{kind}-{pid}"));
        line(
            kind,
            "file",
            "certificate",
            &certificates(&file_ca, kind, None, args.seconds)?,
        );
        let token_ca = args.dir.join(format!("ca-token-{kind}-{pid}"));
        let uris = (
            with_object(&args.pkcs11, &format!("bench-{kind}-{pid}-root")),
            with_object(&args.pkcs11, &format!("bench-{kind}-{pid}-issuing")),
        );
        line(
            kind,
            "token",
            "certificate",
            &certificates(&token_ca, kind, Some(uris), args.seconds)?,
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sceau-signbench: {e}");
            ExitCode::from(1)
        }
    }
}
