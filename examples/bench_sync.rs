//! Times a complete-mode import of N accounts x 20 string attributes against a store
//! already holding the previous export, then an incremental import of 1,000 changes.
//!
//! ```text
//! python3 ../shared/perf/gen.py 1000000 /tmp/gen1m
//! cargo run --release --example bench_sync -- --accounts 1000000 --dir /tmp/gen1m
//! cargo run --release --example bench_sync -- --accounts 100000     # data made in process
//! ```
//!
//! With `--dir`, `DIR/old.csv` is the stored state, `DIR/new.csv` the fresh export and
//! the plan's counters are checked against `DIR/expected.json`. Without it, equivalent
//! data (an `id` and 19 string attributes; 1% of rows updated in 1-3 attributes, 0.5%
//! deleted, 0.5% inserted; shuffled; seeded) is generated in process.
//!
//! Phases: load (read `old.csv` and import it into an empty store: every account
//! inserted, correlated, projected to a new identity, its values resolved), prepare +
//! diff + thresholds (the import, which a `max_pct_deleted` limit of 0.1% blocks so that
//! the plan can be timed apart), apply + resolution (approval of that plan: mirror,
//! correlation, resolution), outbound plan (`Engine::outbound`), and an incremental import
//! of 1,000 changes. With `--bulk-load`, the store is instead filled directly through
//! the `Store` API (one linked account and one identity per row, as the load would
//! leave them). `--cycle` adds provisioning every identity into a directory (`dir`),
//! confirmation, and the outbound plan and confirmation after the import;
//! `--three-systems` imports a directory and a phone system over the same people after
//! the load; `--store sqlite` (with `--features sqlite`) runs on a temporary SQLite file
//! and reports its size (`--db PATH` names the file and keeps it). Peak memory is the
//! process's `VmHWM`. The store is measured twice after the load: the growth of the
//! process's RSS (which counts memory the allocator freed but kept) and the growth of
//! the live heap bytes (counted by an instrumented system allocator: what the store
//! holds; `RUSTFLAGS="--cfg bench_plain_alloc"` builds it without the counting, whose
//! atomics slow the threaded phases, and then reports no heap bytes). This is host code: it reads files and the clock; the engine does neither.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "host code: the example times the engine with the clock"
)]

use std::borrow::Cow;
use std::time::Instant;

use attrflow::prepare::Table;
use attrflow::{
    Account, Approval, ChangeKind, Engine, Identity, IdentityId, LinkState, MemoryStore, Observer, Phase, Progress,
    Provenance, Scalar, Snapshot, Stage, Store, ValidatedConfig, Value,
};
use indicatif::{ProgressBar, ProgressStyle};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// The system allocator, counting: the live heap bytes of the store. Counting costs
/// every allocation a few shared atomic additions, which threads decoding side by side
/// contend for; built with `RUSTFLAGS="--cfg bench_plain_alloc"` the example runs on
/// the plain system allocator (times as a host sees them) and reports no heap bytes.
#[cfg_attr(not(bench_plain_alloc), global_allocator)]
static HEAP: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;
use serde_json::{json, Map, Value as Json};

/// The columns of `gen.py`.
const HEADER: [&str; 20] = [
    "id",
    "givenName",
    "sn",
    "mail",
    "title",
    "department",
    "manager",
    "employeeType",
    "phone",
    "mobile",
    "location",
    "company",
    "costCenter",
    "hireDate",
    "terminationDate",
    "status",
    "upn",
    "displayName",
    "employeeNumber",
    "country",
];

const INCREMENTAL: usize = 1_000;
/// Incremental rounds timed (the median is reported).
const INCREMENTAL_ROUNDS: usize = 5;

/// The workload shared with the criterion benches: `hr` authoritative, keyed by `id`,
/// every attribute flowing into the identity attribute of the same name.
#[path = "../benches/common/mod.rs"]
mod common;

use common::at;

/// The shared configuration, with a deletion limit of 0.1% so that the import's plan
/// blocks and its phases can be timed apart.
fn config(cycle: bool, three: bool, lifecycle: bool) -> ValidatedConfig {
    let mut json = common::config_json(json!({ "thresholds": { "max_pct_deleted": 0.1 } }));
    if lifecycle {
        // A time-based rule over every identity: `next_due` has something to search.
        json["identity"]["attributes"]["contract"] = json!({ "type": "string", "computed": { "if": [
            { "and": [ { "not": { "is_empty": { "attr": "terminationDate" } } },
                       { "lt": [ { "attr": "terminationDate" }, { "today": {} } ] } ] },
            "ended", "current" ] } });
    }
    let json = if cycle || three {
        common::with_directory(json)
    } else {
        json
    };
    let json = if three { common::with_phone(json) } else { json };
    ValidatedConfig::from_json(&json.to_string()).expect("the benchmark configuration is valid")
}

// ------------------------------------------------------------------ CSV reading

/// Splits one CSV line (RFC 4180 quoting, no newline inside fields: `gen.py`'s files).
fn split_line<'a>(line: &'a str, cells: &mut Vec<Cow<'a, str>>) {
    cells.clear();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut text = String::new();
            let mut j = i + 1;
            let mut start = j;
            while j < bytes.len() {
                if bytes[j] == b'"' {
                    text.push_str(&line[start..j]);
                    if bytes.get(j + 1) == Some(&b'"') {
                        text.push('"');
                        j += 2;
                        start = j;
                        continue;
                    }
                    j += 1;
                    break;
                }
                j += 1;
            }
            cells.push(Cow::Owned(text));
            i = j; // at the comma or the end
        } else {
            let end = line[i..].find(',').map_or(line.len(), |p| i + p);
            cells.push(Cow::Borrowed(&line[i..end]));
            i = end;
        }
        if i >= bytes.len() {
            break;
        }
        i += 1; // the comma
        if i == bytes.len() {
            cells.push(Cow::Borrowed(""));
            break;
        }
    }
}

fn read_table(path: &str) -> Table {
    use std::io::BufRead;
    // Line by line: the file is never held whole beside the table.
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let size = file.metadata().map_or(0, |m| m.len()) as usize;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut read_line = |line: &mut String| {
        line.clear();
        let read = reader
            .read_line(line)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let kept = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(kept);
        read > 0
    };
    assert!(read_line(&mut line), "a header");
    let mut cells = Vec::new();
    split_line(&line, &mut cells);
    let columns: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
    // About 320 bytes a row in `gen.py`'s files: room for the rows without a count.
    let mut table = Table::with_capacity(columns, size / 256, size);
    while read_line(&mut line) {
        let mut cells = Vec::with_capacity(table.columns().len());
        split_line(&line, &mut cells);
        table.push_row(&cells).expect("one cell per column");
    }
    table
}

// ------------------------------------------------------------------ progress

/// A progress bar per stage of one engine call (on stderr, hidden when it is not a
/// terminal), and each stage's duration.
struct Stages {
    bar: Option<ProgressBar>,
    current: Option<(Stage, Instant)>,
    took: Vec<(Stage, f64)>,
}

impl Stages {
    fn new() -> Stages {
        Stages {
            bar: None,
            current: None,
            took: Vec::new(),
        }
    }

    fn on(&mut self, p: Progress) {
        if p.done == p.total && self.current.is_none() && self.took.last().is_some_and(|(s, _)| *s == p.stage) {
            // The closing report of a stage already finished.
            return;
        }
        if self.current.map(|(s, _)| s) != Some(p.stage) {
            self.finish();
            let bar = ProgressBar::new(p.total);
            bar.set_style(
                ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} ({per_sec})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(p.stage.to_string());
            self.bar = Some(bar);
            self.current = Some((p.stage, Instant::now()));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(p.done);
        }
        // A stage ends when it reports itself done: the work between two stages
        // (building the mirror, writing the store) is not counted in either.
        if p.done == p.total && p.total > 0 {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some((stage, since)) = self.current.take() {
            self.took.push((stage, since.elapsed().as_secs_f64()));
        }
    }

    /// "prepare 0.12 s, diff 0.05 s, ...": a stage entered several times (a first load
    /// applies its rows a part at a time, each part's accounts then identities) is
    /// summed.
    fn summary(mut self) -> String {
        self.finish();
        let mut summed: Vec<(Stage, f64)> = Vec::new();
        for (stage, took) in self.took {
            match summed.iter_mut().find(|(s, _)| *s == stage) {
                Some((_, total)) => *total += took,
                None => summed.push((stage, took)),
            }
        }
        let parts: Vec<String> = summed.iter().map(|(s, t)| format!("{s} {t:.3}")).collect();
        parts.join(", ")
    }
}

// ------------------------------------------------------------------ generation

/// SplitMix64: a small seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const GIVEN: [&str; 12] = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "Zoë",
    "Søren",
    "Björn",
    "Ana-María",
    "Wei",
    "Hiroshi",
    "Olivia",
    "Noah",
];
const SURNAMES: [&str; 12] = [
    "Smith",
    "Johnson",
    "O'Brien",
    "Müller",
    "Wiśniewski",
    "van der Berg",
    "Nguyen",
    "Tanaka",
    "Okonkwo",
    "Rossi",
    "Fitzgerald-Montgomery",
    "Chen",
];
const TITLES: [&str; 6] = [
    "Software Engineer",
    "Staff Engineer",
    "Data Analyst",
    "VP, Global Operations",
    "Head of Research & Development",
    "Recruiter",
];
const DEPARTMENTS: [&str; 6] = [
    "Engineering",
    "Sales, EMEA",
    "Finance",
    "Legal",
    "Support \"Tier 2\"",
    "IT",
];
const TYPES: [&str; 4] = ["Employee", "Contractor", "Intern", "Vendor"];
const LOCATIONS: [&str; 6] = ["New York", "London", "München", "Zürich", "São Paulo", "Tokyo"];
const COMPANIES: [&str; 4] = ["Contoso Ltd.", "Fabrikam, Inc.", "Northwind Traders", "Contoso GmbH"];
const STATUSES: [&str; 4] = ["active", "active", "active", "disabled"];
const COUNTRIES: [&str; 6] = ["US", "GB", "DE", "CH", "BR", "JP"];

fn new_id(rng: &mut Rng) -> String {
    let (a, b) = (rng.next(), rng.next());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A fresh value for attribute `col` (1..20) of a row.
fn attr_value(rng: &mut Rng, col: usize, row: &[String], ids: &[String]) -> String {
    let phone = |rng: &mut Rng| {
        format!(
            "+1 {} {} {:04}",
            200 + rng.below(790),
            200 + rng.below(800),
            rng.below(10_000)
        )
    };
    match HEADER[col] {
        "givenName" => rng.pick(&GIVEN).to_owned(),
        "sn" => rng.pick(&SURNAMES).to_owned(),
        "mail" => format!(
            "{}.{}{}@contoso.example.com",
            row[1].to_lowercase(),
            row[2].to_lowercase(),
            rng.below(100)
        ),
        "title" => rng.pick(&TITLES).to_owned(),
        "department" => rng.pick(&DEPARTMENTS).to_owned(),
        "manager" if !ids.is_empty() => ids[rng.below(ids.len())].clone(),
        "employeeType" => rng.pick(&TYPES).to_owned(),
        "phone" => phone(rng),
        "mobile" if rng.below(10) < 7 => phone(rng),
        "location" => rng.pick(&LOCATIONS).to_owned(),
        "company" => rng.pick(&COMPANIES).to_owned(),
        "costCenter" => format!("CC-{:04}-{}", rng.below(9999) + 1, (b'A' + rng.below(8) as u8) as char),
        "hireDate" => format!(
            "{}-{:02}-{:02}",
            1985 + rng.below(41),
            1 + rng.below(12),
            1 + rng.below(28)
        ),
        "terminationDate" if rng.below(20) == 0 => format!("{}-{:02}-01", 2024 + rng.below(4), 1 + rng.below(12)),
        "status" => rng.pick(&STATUSES).to_owned(),
        "upn" => format!(
            "{}.{}{}@corp.contoso.example.com",
            row[1].to_lowercase(),
            row[2].to_lowercase(),
            rng.below(1000)
        ),
        "displayName" => format!("{}, {}", row[2], row[1]),
        "employeeNumber" => format!("{:07}", rng.below(9_999_999) + 1),
        "country" => rng.pick(&COUNTRIES).to_owned(),
        _ => String::new(),
    }
}

fn make_row(rng: &mut Rng, id: String, ids: &[String]) -> Vec<String> {
    let mut row = vec![id];
    for col in 1..HEADER.len() {
        let v = attr_value(rng, col, &row, ids);
        row.push(v);
    }
    row
}

/// Old and new tables plus the expected counters, like `gen.py`.
fn generate(n: usize) -> (Table, Table, Expected) {
    let mut rng = Rng(20_261_122);
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let id = new_id(&mut rng);
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    let old: Vec<Vec<String>> = ids.iter().map(|id| make_row(&mut rng, id.clone(), &ids)).collect();
    let (n_upd, n_del, n_ins) = (n / 100, n / 200, n / 200);
    // Distinct rows to update and delete: a shuffled prefix of the positions.
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..(n_upd + n_del).min(n) {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut new = old.clone();
    let mut changed_cells = 0;
    for &i in &order[..n_upd] {
        let k = 1 + rng.below(3);
        let mut cols: Vec<usize> = Vec::new();
        while cols.len() < k {
            let c = 1 + rng.below(HEADER.len() - 1);
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        for c in cols {
            let mut v = new[i][c].clone();
            for _ in 0..100 {
                v = attr_value(&mut rng, c, &new[i], &ids);
                if v != new[i][c] {
                    break;
                }
            }
            if v == new[i][c] {
                v.push_str(" (updated)");
            }
            new[i][c] = v;
            changed_cells += 1;
        }
    }
    let deleted: std::collections::HashSet<usize> = order[n_upd..n_upd + n_del].iter().copied().collect();
    let mut new: Vec<Vec<String>> = new
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !deleted.contains(i))
        .map(|(_, r)| r)
        .collect();
    for _ in 0..n_ins {
        let mut id = new_id(&mut rng);
        while !seen.insert(id.clone()) {
            id = new_id(&mut rng);
        }
        new.push(make_row(&mut rng, id, &ids));
    }
    for i in (1..new.len()).rev() {
        let j = rng.below(i + 1);
        new.swap(i, j);
    }
    let table = |rows: &[Vec<String>]| {
        let mut t = Table::new(HEADER.iter().map(|c| (*c).to_owned()).collect());
        for r in rows {
            t.push_row(r).expect("one cell per column");
        }
        t
    };
    let expected = Expected {
        inserted: n_ins as u64,
        updated: n_upd as u64,
        deleted: n_del as u64,
        changed_cells,
    };
    (table(&old), table(&new), expected)
}

// ------------------------------------------------------------------ measuring

#[derive(Debug, PartialEq)]
struct Expected {
    inserted: u64,
    updated: u64,
    deleted: u64,
    changed_cells: u64,
}

fn read_expected(dir: &str) -> Expected {
    let text = std::fs::read_to_string(format!("{dir}/expected.json")).expect("expected.json");
    let v: Json = serde_json::from_str(&text).expect("expected.json is JSON");
    let get = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("expected.json lacks {k}"));
    Expected {
        inserted: get("inserted"),
        updated: get("updated"),
        deleted: get("deleted"),
        changed_cells: get("changed_cells"),
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The bytes of a table written as CSV (cells and separators, no quoting).
fn csv_bytes(table: &Table) -> usize {
    (0..table.len())
        .map(|r| table.row(r).map(|c| c.len() + 1).sum::<usize>())
        .sum()
}

/// The exports of a directory and a phone system over the people of the HR export:
/// `dir` (one account per person: `uid` = the HR `id`, with mail, title, department,
/// display name and manager as HR has them) and `phone` (one line per person:
/// `ext` = the phone number, `owner` = the employee number, mail).
fn other_exports(hr: &Table) -> (Table, Table) {
    let col = |name: &str| HEADER.iter().position(|h| *h == name).expect("a gen.py column");
    let dir_columns = ["uid", "mail", "title", "department", "displayName", "manager"];
    let dir_from = [
        0,
        col("mail"),
        col("title"),
        col("department"),
        col("displayName"),
        col("manager"),
    ];
    let mut dir = Table::new(dir_columns.iter().map(|c| c.to_string()).collect());
    let mut phone = Table::new(vec!["ext".into(), "owner".into(), "mail".into()]);
    // A phone line for each person with a number and an employee number of their own
    // (gen.py repeats a few of each: those lines would be ambiguous).
    let mut uses: std::collections::HashMap<(usize, &str), usize> = std::collections::HashMap::new();
    for r in 0..hr.len() {
        for c in [col("phone"), col("employeeNumber")] {
            *uses.entry((c, hr.cell(r, c).unwrap_or(""))).or_default() += 1;
        }
    }
    let unique = |c: usize, v: &str| !v.is_empty() && uses.get(&(c, v)) == Some(&1);
    for r in 0..hr.len() {
        let cell = |c: usize| hr.cell(r, c).unwrap_or("");
        dir.push_row(dir_from.iter().map(|&c| cell(c))).expect("six cells");
        let number = cell(col("phone"));
        if unique(col("phone"), number) && unique(col("employeeNumber"), cell(col("employeeNumber"))) {
            phone
                .push_row([number, cell(col("employeeNumber")), cell(col("mail"))])
                .expect("three cells");
        }
    }
    (dir, phone)
}

/// A delta of `n` upserts: existing accounts (from the table) with 1-3 attributes
/// changed, carrying only the key and the changed attributes.
fn delta(table: &Table, n: usize, seed: u64) -> Snapshot {
    let mut rng = Rng(seed);
    let mut upserts = Vec::with_capacity(n);
    let rows = table.len();
    for c in 0..n {
        let r = (c * 7919 + 13) % rows;
        let mut row = Map::new();
        row.insert("id".into(), json!(table.cell(r, 0).expect("a key")));
        for _ in 0..=rng.below(3) {
            let col = 1 + rng.below(HEADER.len() - 1);
            row.insert(
                HEADER[col].into(),
                json!(format!("{}-changed-{}", HEADER[col], rng.next())),
            );
        }
        upserts.push(row);
    }
    Snapshot::Incremental {
        upserts,
        deletes: Vec::new(),
    }
}

/// The state a load leaves, built through the `Store` API: per row an identity holding
/// the values (provenance `hr`) and the account linked to it.
fn bulk_load<S: Store>(config: ValidatedConfig, mut store: S, table: &Table) -> Engine<S> {
    let mut accounts = Vec::with_capacity(table.len());
    let mut identities = Vec::with_capacity(table.len());
    for r in 0..table.len() {
        let id = IdentityId::from_raw(r as u64 + 1);
        let mut identity = Identity::new(id, at(1));
        let mut account = Account::new(table.cell(r, 0).expect("a key"));
        for (c, text) in table.row(r).enumerate() {
            if text.is_empty() {
                continue;
            }
            let value = Value::single(Scalar::Text(text.to_owned().into()));
            let (name, strength) = if c == 0 { ("hrId", 100) } else { (HEADER[c], 50) };
            identity.set(
                name,
                value.clone(),
                Provenance::new("hr", strength, Phase::Create, at(1)),
            );
            account.attributes.insert(HEADER[c].to_owned().into(), value);
        }
        account.link = LinkState::Linked(id);
        accounts.push(account);
        identities.push(identity);
    }
    store.begin().expect("a unit of work");
    store
        .put_identities(identities)
        .expect("the store takes the identities");
    store
        .put_accounts("hr", accounts)
        .expect("the store takes the accounts");
    store.bump_system_version("hr").expect("a version");
    store.commit().expect("the bulk load commits");
    Engine::with_store(config, store).expect("an engine over the store")
}

/// The command line.
struct Options {
    accounts: usize,
    dir: Option<String>,
    bulk: bool,
    cycle: bool,
    three: bool,
    lifecycle: bool,
    /// How many times the complete import (blocked) runs; the median is reported.
    import_rounds: usize,
    /// How many incremental imports of 1,000 changes run; the median is reported.
    incremental_rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let options = Options {
        accounts: arg("--accounts").map_or(100_000, |v| v.parse().expect("--accounts N")),
        dir: arg("--dir"),
        bulk: flag("--bulk-load"),
        cycle: flag("--cycle"),
        three: flag("--three-systems"),
        lifecycle: flag("--lifecycle"),
        import_rounds: arg("--import-rounds")
            .map_or(1, |v| v.parse().expect("--import-rounds N"))
            .max(1),
        incremental_rounds: arg("--incremental-rounds")
            .map_or(INCREMENTAL_ROUNDS, |v| v.parse().expect("--incremental-rounds N"))
            .max(1),
    };
    println!(
        "bench_sync: {} accounts x {} attributes, source: {}",
        options.accounts,
        HEADER.len(),
        options.dir.as_deref().unwrap_or("generated in process")
    );
    assert!(
        !(options.bulk && options.cycle),
        "--cycle measures the engine's load: not with --bulk-load"
    );
    assert!(
        !(options.three && (options.bulk || options.cycle)),
        "--three-systems runs alone"
    );
    let config = config(options.cycle, options.three, options.lifecycle);
    match arg("--store").as_deref() {
        None | Some("memory") => run(&options, config, MemoryStore::new, None),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => {
            // `--db PATH` keeps the file for a look inside (`sqlite3 PATH`); by default
            // it is a temporary file, removed at the end.
            let keep = arg("--db").map(std::path::PathBuf::from);
            let path = keep
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("attrflow-bench-{}.db", std::process::id())));
            let _ = std::fs::remove_file(&path);
            let open = || attrflow::sqlite_store::SqliteStore::open(&path).expect("a SQLite file");
            run(&options, config, open, Some(&path));
            if keep.is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
        Some(other) => panic!("--store {other}: memory, or sqlite (with --features sqlite)"),
    }
}

/// The whole benchmark over the store `open` makes; `file` is the store's database
/// file, when it has one (its size is reported).
fn run<S: Store>(options: &Options, config: ValidatedConfig, open: impl Fn() -> S, file: Option<&std::path::Path>) {
    let &Options {
        accounts,
        ref dir,
        bulk,
        cycle,
        three,
        lifecycle,
        ..
    } = options;
    let mut engine = Engine::with_store(config.clone(), open()).expect("an engine over the store");
    let rss0 = status_kib("VmRSS:");
    let heap = Region::new(HEAP);

    // ---- load
    let t = Instant::now();
    let (old, pending_new, expected) = match &dir {
        Some(d) => (read_table(&format!("{d}/old.csv")), None, Some(read_expected(d))),
        None => {
            let (old, new, expected) = generate(accounts);
            (old, Some(new), Some(expected))
        }
    };
    let read_old = t.elapsed();
    assert_eq!(old.len(), accounts, "old.csv holds --accounts rows");
    let old_bytes = csv_bytes(&old);
    // Made before the load consumes `old`; consumed (and dropped) by their imports.
    let mut others = three.then(|| other_exports(&old));
    let t = Instant::now();
    let mut stages = Stages::new();
    if bulk {
        drop(engine);
        engine = bulk_load(config, open(), &old);
        drop(old);
    } else {
        let snapshot = Snapshot::Table(old);
        let mut on_progress = |p: Progress| stages.on(p);
        // As an audit log would, the load takes each account change as it is applied
        // instead of a report holding all of them (20M attribute changes at 1M).
        let mut changed_values = 0u64;
        let mut on_change = |c: &attrflow::AccountChange| changed_values += c.attributes.len() as u64;
        // And each link event (a million of them) as it is made.
        let mut projected = 0usize;
        let mut on_link = |l: &attrflow::LinkEvent| projected += usize::from(l.projected);
        let report = engine
            .import_observed(
                "hr",
                &snapshot,
                at(1),
                &mut Observer::new()
                    .on_progress(&mut on_progress)
                    .on_change(&mut on_change)
                    .on_link(&mut on_link),
            )
            .expect("the load is accepted");
        assert!(report.links.is_empty(), "the observer took the link events");
        assert_eq!(projected, accounts, "every account projected its identity");
        assert!(report.applied && report.plan.rejections.is_empty(), "the load applies");
        assert_eq!(report.plan.counts.inserted, accounts as u64);
        assert!(changed_values >= accounts as u64, "every change reached the observer");
    }
    let load_import = t.elapsed();
    let load_stages = stages.summary();
    // The next due time over the loaded store (with `--lifecycle`, a date rule per
    // identity); a host calls it after every processing run.
    let next_due = lifecycle.then(|| {
        let t = Instant::now();
        let due = engine.next_due(at(1)).expect("the next due time");
        (t.elapsed(), due.at, due.identities.len())
    });
    // The peak so far is the load's (the new export is not read yet).
    let load_peak_kib = status_kib("VmHWM:");
    let store_kib = status_kib("VmRSS:").saturating_sub(rss0);
    let heap_change = heap.change();
    let store_heap_kib =
        (heap_change.bytes_allocated as u64).saturating_sub(heap_change.bytes_deallocated as u64) / 1024;

    // ---- three systems: a directory and a phone system over the same people
    let mut three_steps: Vec<(String, std::time::Duration)> = Vec::new();
    let mut three_csv_bytes = 0usize;
    if let Some((dir, phone)) = others.take() {
        for (system, table) in [("dir", dir), ("phone", phone)] {
            let rows = table.len();
            three_csv_bytes += csv_bytes(&table);
            let t = Instant::now();
            let report = engine
                .import(system, &Snapshot::Table(table), at(1))
                .expect("the export is accepted");
            assert!(report.applied && report.plan.rejections.is_empty(), "{system} applies");
            let linked = report
                .links
                .iter()
                .filter(|l| matches!(l.state, LinkState::Linked(_)))
                .count();
            assert_eq!(linked, rows, "every {system} account correlates");
            three_steps.push((format!("import {system} ({rows} accounts, correlated)"), t.elapsed()));
        }
    }
    let three_kib = status_kib("VmRSS:").saturating_sub(rss0);
    // What the store holds (RSS also counts memory the allocator freed but kept).
    let three_heap = heap.change();
    let three_heap_kib = (three_heap.bytes_allocated as u64).saturating_sub(three_heap.bytes_deallocated as u64) / 1024;

    // ---- cycle: provision every identity into `dir`, confirm
    let mut cycle_steps: Vec<(String, std::time::Duration)> = Vec::new();
    if cycle {
        let mut ids = Vec::with_capacity(accounts);
        Store::visit_identities(engine.store(), &mut |i| ids.push(i.id)).expect("visit");
        let t = Instant::now();
        let plan = engine
            .provision_many("dir", &ids, at(1))
            .expect("every identity is provisioned");
        cycle_steps.push((format!("provision {} identities into dir", ids.len()), t.elapsed()));
        let t = Instant::now();
        let report = engine.confirm(&plan.ops, at(1)).expect("the creates are confirmed");
        assert_eq!(report.created, accounts);
        cycle_steps.push((format!("confirm {} creates", report.created), t.elapsed()));
    }

    // ---- complete import
    let t = Instant::now();
    let new = match (&dir, pending_new) {
        (Some(d), _) => read_table(&format!("{d}/new.csv")),
        (None, Some(new)) => new,
        (None, None) => unreachable!(),
    };
    let read_new = t.elapsed();
    let snapshot = Snapshot::Table(new);
    // The blocked import changes nothing but the kept plan (each round's replaces the
    // last), so it can be repeated: the median round is the figure.
    let mut import_rounds = Vec::with_capacity(options.import_rounds);
    let mut last = None;
    if options.import_rounds > 1 {
        eprintln!(
            "bench_sync: {} rounds of the complete import begin",
            options.import_rounds
        );
    }
    for _ in 0..options.import_rounds {
        drop(last.take()); // the previous round's report, before the next one is made
        let t = Instant::now();
        let mut import_stages = Stages::new();
        let report = {
            let mut on_progress = |p: Progress| import_stages.on(p);
            engine
                .import_observed(
                    "hr",
                    &snapshot,
                    at(2),
                    &mut Observer::new().on_progress(&mut on_progress),
                )
                .expect("the import is accepted")
        };
        import_rounds.push((t.elapsed(), import_stages.summary()));
        last = Some(report);
    }
    let report = last.expect("at least one import round");
    import_rounds.sort_by_key(|(took, _)| *took);
    let (prepare_diff, import_stages) = import_rounds.swap_remove(import_rounds.len() / 2);
    let diagnosis: Vec<&str> = report.plan.diagnosis.iter().map(|d| d.kind.as_str()).collect();
    assert!(!report.applied, "the 0.1% deletion limit blocks the plan");
    let plan = report.plan;
    let counts = plan.counts;
    let changed_cells: u64 = plan
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Update)
        .map(|c| c.attributes.len() as u64)
        .sum();
    let got = Expected {
        inserted: counts.inserted,
        updated: counts.updated,
        deleted: counts.deleted,
        changed_cells,
    };
    println!(
        "counters: inserted={} updated={} deleted={} changed_cells={}",
        got.inserted, got.updated, got.deleted, got.changed_cells
    );
    if let Some(expected) = &expected {
        assert_eq!(&got, expected, "the plan's counters match the expected ones");
        println!(
            "counters match {}",
            if dir.is_some() {
                "expected.json"
            } else {
                "the generator"
            }
        );
    }
    let t = Instant::now();
    let approval = engine.approve(plan.id).expect("the plan is approved");
    let apply = t.elapsed();
    let Approval::Import(applied) = approval else {
        panic!("an import plan")
    };
    assert!(applied.applied);
    let decisions = applied.decisions.total();
    drop(applied);
    drop(snapshot);

    let t = Instant::now();
    let outbound = engine.outbound("hr", at(2)).expect("an outbound plan");
    let outbound_time = t.elapsed();
    let ops = outbound.ops.len();
    if cycle {
        let t = Instant::now();
        let plan = engine.outbound("dir", at(2)).expect("an outbound plan");
        cycle_steps.push((format!("outbound dir ({} ops)", plan.ops.len()), t.elapsed()));
        let t = Instant::now();
        let report = engine.confirm(&plan.ops, at(2)).expect("the ops are confirmed");
        cycle_steps.push((format!("confirm {} updates", report.updated), t.elapsed()));
        let t = Instant::now();
        let again = engine.outbound("dir", at(2)).expect("an outbound plan");
        assert!(again.ops.is_empty(), "confirmed ops leave nothing to do");
        cycle_steps.push(("outbound dir again (nothing to do)".into(), t.elapsed()));
    }

    // ---- incremental
    let delta_rows = {
        let export = engine.store();
        let mut keys = Vec::new();
        Store::visit_accounts(export, "hr", &mut |a| keys.push(a.key.clone())).expect("visit");
        keys.sort();
        let mut t = Table::new(vec!["id".into()]);
        for k in keys {
            t.push_row([k]).expect("one cell");
        }
        t
    };
    // Five rounds of 1,000 changes (new values each round): the first runs on cold
    // caches; the median is the figure compared across store sizes.
    if options.incremental_rounds > INCREMENTAL_ROUNDS {
        println!("{} incremental rounds begin", options.incremental_rounds);
    }
    let mut rounds = Vec::with_capacity(options.incremental_rounds);
    for round in 0..options.incremental_rounds {
        let delta = delta(&delta_rows, INCREMENTAL, 7 + round as u64);
        let t = Instant::now();
        let report = engine.import("hr", &delta, at(3)).expect("the delta is accepted");
        rounds.push(t.elapsed());
        assert!(report.applied && report.plan.rejections.is_empty());
    }
    let mut sorted = rounds.clone();
    sorted.sort();
    let incremental = sorted[sorted.len() / 2];

    let s = |d: std::time::Duration| d.as_secs_f64();
    let import = prepare_diff + apply;
    println!("phase                                  seconds");
    println!("read old.csv into a table              {:>8.3}", s(read_old));
    let how = if bulk {
        "bulk load through Store API    "
    } else {
        "load: import old into empty store"
    };
    println!("{how}      {:>8.3}", s(load_import));
    if !bulk {
        println!("  stages: {load_stages}");
        if let Some((took, at, due)) = next_due {
            println!(
                "next_due after the load ({at:?}, {due} due) {:>8.3}",
                took.as_secs_f64()
            );
        }
    }
    println!("read new.csv into a table              {:>8.3}", s(read_new));
    println!(
        "prepare + diff + thresholds            {:>8.3}{}",
        s(prepare_diff),
        if options.import_rounds > 1 {
            format!(" (median of {})", options.import_rounds)
        } else {
            String::new()
        }
    );
    println!("  stages: {import_stages}; diagnosis: {diagnosis:?}");
    println!("apply + resolution ({decisions} decisions) {:>8.3}", s(apply));
    println!("outbound plan ({ops} ops)                {:>8.3}", s(outbound_time));
    println!(
        "incremental import of {INCREMENTAL} changes     {:>8.3} (median of {}: {})",
        s(incremental),
        rounds.len(),
        rounds
            .iter()
            .take(INCREMENTAL_ROUNDS)
            .map(|d| format!("{:.4}", s(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if three {
        println!("three systems (after the load):");
        for (step, time) in &three_steps {
            println!("  {step:<37}{:>8.3}", s(*time));
        }
        let csvs = old_bytes + three_csv_bytes;
        println!(
            "store RSS, three systems: {:.1} MiB ({:.2}x the three CSVs' {:.1} MiB)",
            mib(three_kib),
            three_kib as f64 * 1024.0 / csvs as f64,
            csvs as f64 / 1_048_576.0
        );
        println!(
            "store heap, three systems (live bytes): {:.1} MiB ({:.2}x the three CSVs)",
            mib(three_heap_kib),
            three_heap_kib as f64 * 1024.0 / csvs as f64
        );
    }
    if cycle {
        let mut total = load_import + import;
        println!("cycle (after the load, and with the import above):");
        for (step, time) in &cycle_steps {
            println!("  {step:<37}{:>8.3}", s(*time));
            total += *time;
        }
        println!(
            "whole cycle (load .. confirm)          {:>8.3}  ({:.2}x the load)",
            s(total),
            s(total) / s(load_import)
        );
    }
    println!("import (prepare..resolution)           {:>8.3}", s(import));
    println!(
        "import + outbound plan                 {:>8.3}",
        s(import + outbound_time)
    );
    println!(
        "load + import (incl. reading both CSVs) {:>8.3}",
        s(read_old + load_import + read_new + import)
    );
    println!(
        "accounts/s (import)                    {:>8.0}",
        accounts as f64 / s(import)
    );
    println!("old.csv cells: {:.1} MiB", old_bytes as f64 / 1_048_576.0);
    println!("store RSS after load (tables dropped): {:.1} MiB", mib(store_kib));
    println!(
        "store heap after load (live bytes): {:.1} MiB ({:.2}x the cells of old.csv)",
        mib(store_heap_kib),
        store_heap_kib as f64 * 1024.0 / old_bytes as f64
    );
    println!(
        "peak memory (VmHWM): {:.1} MiB (by the end of the load: {:.1} MiB)",
        mib(status_kib("VmHWM:")),
        mib(load_peak_kib)
    );
    if let Some(file) = file {
        drop(engine);
        let bytes = std::fs::metadata(file).map_or(0, |m| m.len());
        println!(
            "database file: {:.1} MiB ({:.2}x old.csv)",
            bytes as f64 / 1_048_576.0,
            bytes as f64 / old_bytes as f64
        );
    }
}
