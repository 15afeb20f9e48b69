//! Lints a sync configuration without running anything:
//! `cargo run --release --example lint -- CONFIG.json`
//!
//! Prints each validation problem, then each lint finding (risks such as unstable
//! transform round trips, rules that can never win, attributes nobody writes). Exits 1
//! if the configuration is invalid, 0 otherwise (findings are warnings).

use std::process::ExitCode;

use attrflow::lint::lint;
use attrflow::Config;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: cargo run --release --example lint -- CONFIG.json");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    // A scenario file is accepted too: its `config` is linted.
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{path}: not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = json.get("config").cloned().unwrap_or(json);
    let config: Config = match serde_json::from_value(json) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: not a configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let findings = lint(&config);
    let invalid = match config.validate() {
        Ok(_) => false,
        Err(errors) => {
            println!("{errors}");
            true
        }
    };
    if findings.is_empty() {
        println!("{path}: no lint findings");
    }
    for finding in &findings {
        println!("warning: {finding}");
    }
    if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
