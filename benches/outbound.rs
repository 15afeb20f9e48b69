//! Outbound plan computation over 10,000 linked accounts: a second system `ad`
//! (correlated on `id` = `hrId`) receives 5 attributes from the identities; 1% of its
//! accounts hold a stale value, so the plan has about 100 update ops.
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

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    outbound(&mut criterion);
    criterion.final_summary();
}
