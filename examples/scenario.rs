//! The scenario runner: `cargo run --release --example scenario -- FILE_OR_DIR...`
//!
//! Runs each scenario file (directories: every `*.json` inside, sorted) on the
//! in-memory store, prints `ok FILE` or `FAIL FILE` with every unmet expectation, then
//! `N passed, N failed`, and exits 0 only if all passed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn files(arg: &Path) -> Result<Vec<PathBuf>, String> {
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

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: cargo run --release --example scenario -- FILE_OR_DIR...");
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
                Ok(text) => attrflow::scenario::run_text(&text),
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
