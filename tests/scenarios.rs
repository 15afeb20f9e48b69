//! Acceptance scenarios: runs every `*.json` scenario file of `tests/scenarios/` (the
//! crate's own, one or more per SPEC section) and, when the directory exists, of
//! `../shared/scenarios/` through [`attrflow::scenario::run_text`], and fails listing
//! every failing file with every unmet expectation.

use std::path::{Path, PathBuf};

/// The fewest files `tests/scenarios/` must hold, so the test cannot pass vacuously.
const MIN_OWN_SCENARIOS: usize = 10;

/// Every `*.json` file directly inside `dir`, sorted; `Err` when the directory cannot be read.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read an entry of {}: {e}", dir.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|x| x == "json") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Runs one scenario file; `None` when it passed, otherwise a report of its failures.
fn run_file(path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(format!("FAIL {}\n  cannot read the file: {e}", path.display())),
    };
    let report = attrflow::scenario::run_text(&text);
    if report.passed() {
        return None;
    }
    let mut out = format!("FAIL {}", path.display());
    if let Some(name) = &report.name {
        out.push_str(&format!(" ({name})"));
    }
    for failure in &report.failures {
        out.push_str(&format!("\n  {failure}"));
    }
    Some(out)
}

#[test]
fn every_scenario_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own_dir = root.join("tests").join("scenarios");
    let own = json_files(&own_dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        own.len() >= MIN_OWN_SCENARIOS,
        "expected at least {MIN_OWN_SCENARIOS} scenario files in {}, found {}",
        own_dir.display(),
        own.len()
    );

    let mut files = own;
    let shared_dir = root.join("..").join("shared").join("scenarios");
    if shared_dir.is_dir() {
        files.extend(json_files(&shared_dir).unwrap_or_else(|e| panic!("{e}")));
    }

    let failures: Vec<String> = files.iter().filter_map(|path| run_file(path)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenario files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
