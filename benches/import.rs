//! Import benchmarks over a store already holding N accounts (the workload of
//! `perf/README.md`: an `id` and 19 string attributes, all flowing into identities).
//!
//! - `load/10000`: the first complete import into an empty store (the time to load
//!   `old.csv` that `perf/README.md` asks to report beside the re-import).
//! - `complete_reimport/10000`: a complete snapshot with about 1% of rows updated
//!   (1-3 attributes each), 0.5% deleted and 0.5% inserted, rows shuffled.
//! - `incremental/1000_of_10000`: a delta of 1,000 upserts (updates carrying only
//!   their changed attributes, some inserts) and a few deletes.
//!
//! Every iteration imports into a fresh copy of the loaded store, so each one does the
//! whole job: prepare, diff, thresholds, mirror, correlation, resolution. The data is
//! generated in-process and deterministically; no clock is read by the engine.

#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

use attrflow::{Engine, MemoryStore, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Map, Value as Json};

mod common;

use common::ATTRIBUTES;

const ROWS: usize = 10_000;
const INCREMENTAL_CHANGES: usize = 1_000;

/// A small deterministic generator (64-bit LCG), so the workload is the same each run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0)
        .single()
        .expect("a valid fixed date")
}

/// `hr` is authoritative and keyed by `id`; every attribute flows into an identity
/// attribute of the same name.
fn config() -> ValidatedConfig {
    let mut account = Map::new();
    let mut identity = Map::new();
    let mut flows = vec![json!({ "account": "id", "identity": "hrId", "direction": "inbound",
                                 "create": 100, "update": 100 })];
    account.insert("id".into(), json!({ "type": "string" }));
    identity.insert("hrId".into(), json!({ "type": "string" }));
    for name in ATTRIBUTES {
        account.insert(name.into(), json!({ "type": "string" }));
        identity.insert(name.into(), json!({ "type": "string" }));
        flows.push(json!({ "account": name, "identity": name, "direction": "inbound",
                           "create": 50, "update": 50, "delete": 50 }));
    }
    let config = json!({
        "identity": { "attributes": identity },
        "systems": { "hr": {
            "schema": { "account_id": "id", "account_name": "id", "attributes": account },
            "authoritative": true,
            "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
            "flows": flows
        } }
    });
    ValidatedConfig::from_json(&config.to_string()).expect("the benchmark configuration is valid")
}

fn columns() -> Vec<String> {
    std::iter::once("id").chain(ATTRIBUTES).map(String::from).collect()
}

/// Row `i`: `id` = `user{i}`, each attribute `{attribute}-{i}`.
fn row(i: usize) -> Map<String, Json> {
    let mut row = Map::new();
    row.insert("id".into(), json!(format!("user{i}")));
    for name in ATTRIBUTES {
        row.insert(name.into(), json!(format!("{name}-{i}")));
    }
    row
}

/// Changes 1-3 attributes of a row; returns the changed attributes only.
fn change(row: &mut Map<String, Json>, rng: &mut Lcg) -> Map<String, Json> {
    let mut changed = Map::new();
    for _ in 0..=rng.below(3) {
        let name = ATTRIBUTES[rng.below(ATTRIBUTES.len())];
        let value = json!(format!("{name}-changed-{}", rng.next()));
        row.insert(name.into(), value.clone());
        changed.insert(name.into(), value);
    }
    changed
}

/// The old snapshot, and the new one: ~1% updated, 0.5% deleted, 0.5% inserted,
/// shuffled.
fn snapshots(n: usize) -> (Snapshot, Snapshot) {
    let old: Vec<Map<String, Json>> = (0..n).map(row).collect();
    let mut rng = Lcg(42);
    let mut new = Vec::with_capacity(n);
    for (i, r) in old.iter().enumerate() {
        match i % 200 {
            0 => {} // deleted
            1 | 2 => {
                let mut r = r.clone();
                let _ = change(&mut r, &mut rng);
                new.push(r);
            }
            _ => new.push(r.clone()),
        }
    }
    new.extend((n..n + n / 200).map(row));
    for i in (1..new.len()).rev() {
        new.swap(i, rng.below(i + 1));
    }
    let complete = |rows| Snapshot::Complete {
        columns: columns(),
        rows,
    };
    (complete(old), complete(new))
}

/// A delta of `changes` upserts over `n` stored rows: 90% updates carrying only their
/// changed attributes, 10% inserts; plus `changes / 100` deletes.
fn delta(n: usize, changes: usize) -> Snapshot {
    let mut rng = Lcg(7);
    let mut upserts = Vec::with_capacity(changes);
    for c in 0..changes {
        if c % 10 == 9 {
            upserts.push(row(n + c));
        } else {
            let i = (c * 9 + 3) % n;
            let mut r = row(i);
            let mut changed = change(&mut r, &mut rng);
            changed.insert("id".into(), json!(format!("user{i}")));
            upserts.push(changed);
        }
    }
    let deletes = (0..changes / 100)
        .map(|d| json!(format!("user{}", (d * 9 + 5) % n)))
        .collect();
    Snapshot::Incremental { upserts, deletes }
}

/// The store after loading `old` (one identity per account).
fn loaded(config: &ValidatedConfig, old: &Snapshot) -> MemoryStore {
    let mut engine = Engine::new(config.clone());
    let report = engine.import("hr", old, at(1)).expect("the load is accepted");
    assert!(report.applied && report.plan.rejections.is_empty());
    engine.into_store()
}

fn fresh(config: &ValidatedConfig, store: &MemoryStore) -> Engine {
    Engine::with_store(config.clone(), store.clone()).expect("the memory store does not fail")
}

fn complete_reimport(c: &mut Criterion) {
    let config = config();
    let (old, new) = snapshots(ROWS);
    let store = loaded(&config, &old);

    // Check the workload once: the counts the bench claims.
    let report = fresh(&config, &store).import("hr", &new, at(2)).expect("accepted");
    assert!(report.applied);
    let counts = report.plan.counts;
    assert_eq!(
        (counts.inserted, counts.updated, counts.deleted),
        ((ROWS / 200) as u64, (ROWS / 100) as u64, (ROWS / 200) as u64)
    );

    let mut group = c.benchmark_group("complete_reimport");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_with_input(BenchmarkId::from_parameter(ROWS), &new, |b, new| {
        b.iter_batched_ref(
            || fresh(&config, &store),
            |engine| engine.import("hr", new, at(2)).expect("accepted"),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let config = config();
    let (old, _) = snapshots(ROWS);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_with_input(BenchmarkId::from_parameter(ROWS), &old, |b, old| {
        b.iter_batched_ref(
            || Engine::new(config.clone()),
            |engine| engine.import("hr", old, at(1)).expect("accepted"),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn incremental(c: &mut Criterion) {
    let config = config();
    let (old, _) = snapshots(ROWS);
    let store = loaded(&config, &old);
    let delta = delta(ROWS, INCREMENTAL_CHANGES);

    let report = fresh(&config, &store).import("hr", &delta, at(2)).expect("accepted");
    assert!(report.applied && report.plan.rejections.is_empty());
    let counts = report.plan.counts;
    assert_eq!(counts.inserted, (INCREMENTAL_CHANGES / 10) as u64);
    assert!(counts.updated > 0 && counts.deleted > 0);

    let mut group = c.benchmark_group("incremental");
    group.sample_size(10);
    group.throughput(Throughput::Elements(INCREMENTAL_CHANGES as u64));
    group.bench_with_input(
        BenchmarkId::from_parameter(format!("{INCREMENTAL_CHANGES}_of_{ROWS}")),
        &delta,
        |b, delta| {
            b.iter_batched_ref(
                || fresh(&config, &store),
                |engine| engine.import("hr", delta, at(2)).expect("accepted"),
                BatchSize::LargeInput,
            );
        },
    );
    group.finish();
}

// What `criterion_group!` / `criterion_main!` expand to, written out: the macro's
// generated function would be undocumented.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    load(&mut criterion);
    complete_reimport(&mut criterion);
    incremental(&mut criterion);
    criterion.final_summary();
}
