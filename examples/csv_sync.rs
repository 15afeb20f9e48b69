//! Imports CSV exports of one system into a fresh engine and prints what each import
//! did: counters, every rejected row with its file line, exceeded thresholds and every
//! resolution decision, explained.
//!
//! Run:
//! `cargo run --release --example csv_sync --features csv -- CONFIG.json SYSTEM FILE.csv [MORE.csv ...] [--at RFC3339]`
//!
//! With the sample data (the second file drops two accounts and is blocked by
//! `max_deleted`):
//! `cargo run --release --example csv_sync --features csv -- examples/data/csv_sync.json hr examples/data/hr.csv examples/data/hr_next.csv --at 2026-03-01T08:00:00Z`
//!
//! Without `--at`, the imports happen at the current time (read by this host program;
//! the engine itself never reads a clock). Each further file is imported a minute later.

use std::error::Error;
use std::process::ExitCode;

use attrflow::csv_connector::{read_snapshot, CsvOptions, CsvSnapshot};
use attrflow::{ChangeKind, Engine, ImportReport, ValidatedConfig};
use chrono::{DateTime, Duration, Utc};

#[allow(
    clippy::disallowed_methods,
    reason = "a host program may read the clock; the engine never does"
)]
fn clock() -> Result<DateTime<Utc>, Box<dyn Error>> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let secs = i64::try_from(since.as_secs())?;
    DateTime::from_timestamp(secs, 0).ok_or_else(|| "the clock is out of range".into())
}

struct Args {
    config: String,
    system: String,
    files: Vec<String>,
    at: Option<DateTime<Utc>>,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut positional = Vec::new();
    let mut at = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--at" {
            let text = it.next().ok_or("`--at` needs an RFC 3339 time")?;
            at = Some(DateTime::parse_from_rfc3339(&text)?.with_timezone(&Utc));
        } else {
            positional.push(arg);
        }
    }
    if positional.len() < 3 {
        return Err("usage: csv_sync CONFIG.json SYSTEM FILE.csv [MORE.csv ...] [--at RFC3339]".into());
    }
    let files = positional.split_off(2);
    let system = positional.pop().unwrap_or_default();
    let config = positional.pop().unwrap_or_default();
    Ok(Args {
        config,
        system,
        files,
        at,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)` when a file could not be imported safely.
fn run() -> Result<bool, Box<dyn Error>> {
    let args = args()?;
    let config = ValidatedConfig::from_json(&std::fs::read_to_string(&args.config)?)?;
    let system = config
        .system(&args.system)
        .ok_or_else(|| format!("the configuration has no system `{}`", args.system))?
        .clone();
    let mut engine = Engine::new(config);
    let start = match args.at {
        Some(at) => at,
        None => clock()?,
    };
    let mut all_safe = true;
    for (n, file) in args.files.iter().enumerate() {
        let now = start + Duration::minutes(i64::try_from(n)?);
        println!("\n== {file} -> system `{}` at {}", args.system, now.to_rfc3339());
        let read = read_snapshot(std::fs::File::open(file)?, &system, &CsvOptions::default())
            .map_err(|e| format!("`{file}`: {e}"))?;
        for problem in &read.problems {
            println!("   unreadable {problem}");
        }
        if !read.is_safe_to_import() {
            println!("   NOT IMPORTED: a record whose key cannot be read would be deleted");
            all_safe = false;
            continue;
        }
        let report = engine.import(&args.system, &read.snapshot, now)?;
        print_report(&report, &read);
    }
    Ok(all_safe)
}

fn print_report(r: &ImportReport, read: &CsvSnapshot) {
    println!(
        "   {} rows; plan: {}{}",
        read.lines.len(),
        r.plan.counts,
        if r.applied { "" } else { "  -> BLOCKED, nothing applied" }
    );
    for e in &r.plan.exceeded {
        let pct = e
            .percent
            .map(|p| format!(" ({p:.1}% of {} stored)", e.base.unwrap_or(0)))
            .unwrap_or_default();
        println!(
            "   threshold {} exceeded: {}{pct} > limit {}",
            e.threshold, e.count, e.limit
        );
    }
    if !r.applied {
        for change in &r.plan.changes {
            let kind = match change.kind {
                ChangeKind::Insert => "insert",
                ChangeKind::Update => "update",
                ChangeKind::Delete => "delete",
            };
            println!("   pending {kind} of `{}`", change.key);
        }
    }
    for rejection in &r.plan.rejections {
        let line = read.line_of(rejection);
        let at = line.map_or_else(|| "line ?".to_owned(), |l| format!("line {l}"));
        match line.and_then(|l| read.problem_at(l)) {
            Some(problem) => println!("   {at} rejected, account left as it was: {}", problem.message),
            // The engine numbers rows from 1; name the file line instead.
            None => println!(
                "   {}",
                rejection
                    .to_string()
                    .replacen(&format!("row {}", rejection.row + 1), &at, 1)
            ),
        }
    }
    for link in &r.links {
        let how = if link.projected { " (new identity)" } else { "" };
        println!("   account `{}`: {}{how}", link.account, link.state);
    }
    println!("   {}", r.decisions);
    for d in &r.rejected {
        println!("   - {}", d.explain());
    }
}
