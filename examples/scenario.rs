//! The scenario runner:
//! `cargo run --release --example scenario -- [--store memory|sqlite] FILE_OR_DIR...`
//!
//! Runs each scenario file (directories: every `*.json` inside, sorted) on a new store
//! (`memory`, the default, or `sqlite`: an in-memory SQLite database, which needs
//! `--features sqlite`), prints `ok FILE` or `FAIL FILE` with every unmet expectation,
//! then `N passed, N failed`, and exits 0 only if all passed (2 on a usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn files(arg: &Path) -> Result<Vec<PathBuf>, String> {
    if !arg.exists() {
        return Err(format!("no such file or directory: {}", arg.display()));
    }
    if arg.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
            .map_err(|e| format!("cannot read directory {}: {e}", arg.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        found.sort();
        Ok(found)
    } else {
        Ok(vec![arg.to_path_buf()])
    }
}

const USAGE: &str = "usage: cargo run --release --example scenario -- [--store memory|sqlite] FILE_OR_DIR...";

/// The store each scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    Sqlite,
}

/// Runs one scenario's text on a new store of the chosen kind (`Err`: the store could
/// not be created).
fn run(text: &str, store: StoreKind) -> Result<attrflow::scenario::Report, String> {
    match store {
        StoreKind::Memory => Ok(attrflow::scenario::run_text(text)),
        StoreKind::Sqlite => run_sqlite(text),
    }
}

#[cfg(feature = "sqlite")]
fn run_sqlite(text: &str) -> Result<attrflow::scenario::Report, String> {
    let store = attrflow::sqlite_store::SqliteStore::open_in_memory()
        .map_err(|e| format!("cannot open an in-memory SQLite store: {e}"))?;
    Ok(attrflow::scenario::run_text_with_store(text, store))
}

#[cfg(not(feature = "sqlite"))]
fn run_sqlite(_text: &str) -> Result<attrflow::scenario::Report, String> {
    Err("this build lacks the SQLite store: add `--features sqlite`".into())
}

/// Splits off `--store KIND` (or `--store=KIND`), which must come before the paths.
fn parse_args(mut args: Vec<std::ffi::OsString>) -> Result<(StoreKind, Vec<PathBuf>), String> {
    let mut kind = None;
    let first = args.first().and_then(|a| a.to_str()).map(str::to_owned);
    if let Some(first) = first {
        if first == "--store" {
            if args.len() < 2 {
                return Err("`--store` needs a value: `memory` or `sqlite`".into());
            }
            kind = Some(args[1].to_string_lossy().into_owned());
            args.drain(..2);
        } else if let Some(value) = first.strip_prefix("--store=") {
            kind = Some(value.to_owned());
            args.remove(0);
        }
    }
    let kind = match kind.as_deref() {
        None | Some("memory") => StoreKind::Memory,
        Some("sqlite") => StoreKind::Sqlite,
        Some(other) => return Err(format!("unknown store `{other}`: use `memory` or `sqlite`")),
    };
    if let Some(flag) = args.iter().filter_map(|a| a.to_str()).find(|a| a.starts_with("--")) {
        return Err(format!("unexpected option `{flag}` (`--store` comes before the paths)"));
    }
    if args.is_empty() {
        return Err("no scenario file or directory given".into());
    }
    Ok((kind, args.into_iter().map(PathBuf::from).collect()))
}

fn main() -> ExitCode {
    let (store, args) = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if store == StoreKind::Sqlite && cfg!(not(feature = "sqlite")) {
        eprintln!(
            "`--store sqlite` needs the SQLite store, which this build lacks: add `--features sqlite`, e.g.\n  \
             cargo run --release --example scenario --features sqlite -- --store sqlite FILE_OR_DIR..."
        );
        return ExitCode::from(2);
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for arg in &args {
        let paths = match files(arg) {
            Ok(p) => p,
            Err(e) => {
                println!("FAIL {}\n  {e}", arg.display());
                failed += 1;
                continue;
            }
        };
        for path in paths {
            let report = match std::fs::read_to_string(&path) {
                Ok(text) => match run(&text, store) {
                    Ok(report) => report,
                    Err(e) => {
                        println!("FAIL {}\n  {e}", path.display());
                        failed += 1;
                        continue;
                    }
                },
                Err(e) => {
                    println!("FAIL {}\n  cannot read the file: {e}", path.display());
                    failed += 1;
                    continue;
                }
            };
            if report.passed() {
                println!("ok {}", path.display());
                passed += 1;
            } else {
                println!("FAIL {}", path.display());
                for failure in &report.failures {
                    println!("  {failure}");
                }
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
