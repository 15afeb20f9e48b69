//! Outbound plan computation over 10,000 linked accounts: a second system `ad`
//! (correlated on `id` = `hrId`) receives 5 attributes from the identities; 1% of its
//! accounts hold a stale value, so the plan has about 100 update ops.
//!
//! `outbound_for`: the plan for 100 changed identities against stores of 10,000 and
//! 1,000,000 linked identities (SPEC 10.1: its cost grows with the identities given,
//! not with the store). `ATTRFLOW_BENCH_SIZES=10000` runs the small store only.
//!
//! `cargo bench --bench outbound -- --quick`

#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

mod common;

use attrflow::prepare::Table;
use attrflow::{Engine, Snapshot, ValidatedConfig};
use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;

const ROWS: usize = 10_000;
const PUSHED: [&str; 5] = ["mail", "title", "department", "phone", "displayName"];

fn config() -> ValidatedConfig {
    let mut config = common::config_json(json!({}));
    let mut attributes = serde_json::Map::new();
    attributes.insert("id".into(), json!({ "type": "string" }));
    for name in PUSHED {
        attributes.insert(name.into(), json!({ "type": "string" }));
    }
    let flows: Vec<_> = PUSHED
        .iter()
        .map(|name| json!({ "account": name, "identity": name, "direction": "outbound" }))
        .collect();
    config["systems"]["ad"] = json!({
        "schema": { "account_id": "id", "account_name": "id", "attributes": attributes },
        "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
        "flows": flows
    });
    ValidatedConfig::from_json(&config.to_string()).expect("valid")
}

fn outbound(c: &mut Criterion) {
    let config = config();
    let (old, _) = common::tables(ROWS);
    let mut engine: Engine = common::loaded(&config, old);
    let mut ad = Table::new(std::iter::once("id").chain(PUSHED).map(String::from).collect());
    for i in 0..ROWS {
        let row = common::row(i);
        let stale = i % 100 == 0;
        let cells = std::iter::once(row[0].clone()).chain(PUSHED.iter().map(|name| {
            if stale {
                format!("{name}-stale")
            } else {
                format!("{name}-{i}")
            }
        }));
        ad.push_row(cells).expect("one cell per column");
    }
    let report = engine
        .import("ad", &Snapshot::Table(ad), common::at(2))
        .expect("accepted");
    assert!(report.applied);
    let plan = engine.outbound("ad", common::at(3)).expect("a plan");
    assert_eq!(plan.ops.len(), ROWS / 100);

    let mut group = c.benchmark_group("outbound");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(BenchmarkId::from_parameter(format!("{ROWS}_linked")), |b| {
        b.iter(|| engine.outbound("ad", common::at(3)).expect("a plan"));
    });
    group.finish();
}

/// `hr` (id, title, department) and `ad` receiving both, correlated on the key.
fn small_config() -> ValidatedConfig {
    let config = json!({
        "identity": { "attributes": {
            "hrId": { "type": "string" }, "title": { "type": "string" }, "department": { "type": "string" } } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" }, "title": { "type": "string" }, "department": { "type": "string" } } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
                "flows": [
                    { "account": "id", "identity": "hrId", "direction": "inbound", "create": 100, "update": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50 },
                    { "account": "department", "identity": "department", "direction": "inbound", "create": 50, "update": 50 }
                ]
            },
            "ad": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" }, "title": { "type": "string" }, "department": { "type": "string" } } },
                "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
                "flows": [
                    { "account": "title", "identity": "title", "direction": "outbound" },
                    { "account": "department", "identity": "department", "direction": "outbound" }
                ]
            }
        }
    });
    ValidatedConfig::from_json(&config.to_string()).expect("valid")
}

/// A store of `n` identities linked in `hr` and `ad`, 100 of which then got a new
/// title from HR: the engine and those 100 identities.
fn changed_store(n: usize) -> (Engine, Vec<attrflow::IdentityId>) {
    let config = small_config();
    let mut engine = Engine::new(config);
    let columns: Vec<String> = ["id", "title", "department"].map(String::from).to_vec();
    for system in ["hr", "ad"] {
        let mut table = Table::new(columns.clone());
        for i in 0..n {
            let cells = [
                format!("E{i:07}"),
                format!("title-{}", i % 50),
                format!("dept-{}", i % 20),
            ];
            table.push_row(cells).expect("one cell per column");
        }
        let report = engine
            .import(system, &Snapshot::Table(table), common::at(1))
            .expect("accepted");
        assert!(report.applied);
    }
    let step = n / 100;
    let upserts: Vec<serde_json::Value> = (0..100)
        .map(|k| json!({ "id": format!("E{:07}", k * step), "title": "promoted" }))
        .collect();
    let delta: Snapshot =
        serde_json::from_value(json!({ "mode": "incremental", "upserts": upserts, "deletes": [] })).expect("a delta");
    let report = engine.import("hr", &delta, common::at(2)).expect("accepted");
    assert_eq!(report.changed.len(), 100);
    (engine, report.changed)
}

fn outbound_for(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("ATTRFLOW_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 1_000_000]);
    let mut group = c.benchmark_group("outbound_for");
    group.sample_size(10);
    group.throughput(Throughput::Elements(100));
    for n in sizes {
        let (mut engine, changed) = changed_store(n);
        let plan = engine.outbound_for("ad", &changed, common::at(3)).expect("a plan");
        assert_eq!(plan.ops.len(), 100);
        group.bench_function(BenchmarkId::new("100_identities", n), |b| {
            b.iter(|| engine.outbound_for("ad", &changed, common::at(3)).expect("a plan"));
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    outbound(&mut criterion);
    outbound_for(&mut criterion);
    criterion.final_summary();
}
