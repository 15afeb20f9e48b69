//! Configuration validation (`ValidatedConfig::from_json`): the 20-attribute workload
//! configuration, and a large one of 20 systems x 50 attributes.
//!
//! `cargo bench --bench validate -- --quick`

#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

mod common;

use attrflow::ValidatedConfig;
use criterion::{BenchmarkId, Criterion};
use serde_json::json;

fn large() -> String {
    let mut identity = serde_json::Map::new();
    identity.insert("hrId".into(), json!({ "type": "string" }));
    for a in 0..50 {
        identity.insert(format!("attr{a}"), json!({ "type": "string" }));
    }
    let mut systems = serde_json::Map::new();
    for s in 0..20 {
        let mut attributes = serde_json::Map::new();
        attributes.insert("id".into(), json!({ "type": "string" }));
        let mut flows = vec![json!({ "account": "id", "identity": "hrId", "direction": "inbound", "create": 100 })];
        for a in 0..50 {
            attributes.insert(format!("attr{a}"), json!({ "type": "string" }));
            let direction = if s == 0 { "inbound" } else { "outbound" };
            flows.push(json!({ "account": format!("attr{a}"), "identity": format!("attr{a}"),
                               "direction": direction, "create": 50, "update": 50 }));
        }
        systems.insert(
            format!("system{s}"),
            json!({
                "schema": { "account_id": "id", "account_name": "id", "attributes": attributes },
                "authoritative": s == 0,
                "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
                "flows": flows
            }),
        );
    }
    json!({ "identity": { "attributes": identity }, "systems": systems }).to_string()
}

fn validate(c: &mut Criterion) {
    let inputs = [
        ("workload", common::config_json(json!({})).to_string()),
        ("20x50", large()),
    ];
    let mut group = c.benchmark_group("validate");
    for (name, text) in &inputs {
        ValidatedConfig::from_json(text).expect("valid");
        group.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| ValidatedConfig::from_json(text).expect("valid"));
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    validate(&mut criterion);
    criterion.final_summary();
}
