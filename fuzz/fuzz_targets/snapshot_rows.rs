//! Any bytes as the rows of imports into a configured engine (two systems, correlation,
//! thresholds, a multi-valued attribute, a reference and a transform): complete and
//! incremental imports, approvals and outbound with confirmation. Nothing may panic.
#![no_main]

use attrflow::{Engine, Snapshot, ValidatedConfig};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{
  "identity": { "attributes": {
    "employeeNumber": { "type": "string" }, "title": { "type": "string", "case_exact": false },
    "hired": { "type": "date" }, "level": { "type": "integer" }, "groups": { "type": "string", "multi": true },
    "manager": { "type": "reference", "match": "employeeNumber" },
    "state": { "type": "string", "computed": { "if": [ { "lt": [ { "attr": "hired" }, { "today": {} } ] }, "active", "prehire" ] } } } },
  "systems": {
    "hr": {
      "schema": { "account_id": "id", "account_name": "id", "attributes": {
        "id": { "type": "string" }, "title": { "type": "string" }, "hired": { "type": "date" },
        "level": { "type": "integer" }, "groups": { "type": "string", "multi": true }, "mgr": { "type": "reference" } } },
      "authoritative": true,
      "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
      "flows": [
        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
        { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50, "in": { "trim": { "attr": "title" } } },
        { "account": "hired", "identity": "hired", "direction": "inbound", "create": 50, "update": 50 },
        { "account": "level", "identity": "level", "direction": "inbound", "create": 50, "update": 50 },
        { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
        { "account": "mgr", "identity": "manager", "direction": "inbound", "create": 50, "update": 50 } ],
      "thresholds": { "max_pct_deleted": 50.0 }
    },
    "ad": {
      "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
        "sam": { "type": "string", "case_exact": false }, "emp": { "type": "string" }, "title": { "type": "string" },
        "memberOf": { "type": "string", "multi": true } } },
      "correlation": [ [ { "account": "emp", "identity": "employeeNumber" } ] ],
      "flows": [
        { "account": "title", "identity": "title", "direction": "bidirectional", "create": 40, "update": 60 },
        { "account": "memberOf", "identity": "groups", "direction": "outbound" } ]
    }
  }
}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = ValidatedConfig::from_json(CONFIG) else { return };
    let mut engine = Engine::new(config);
    // The input is a JSON array of imports: each an array of rows, or an object with
    // upserts / deletes. Systems alternate.
    let Ok(serde_json::Value::Array(imports)) = serde_json::from_str::<serde_json::Value>(text) else { return };
    for (i, import) in imports.iter().take(16).enumerate() {
        let (system, columns): (&str, &[&str]) = if i % 2 == 0 {
            ("hr", &["id", "title", "hired", "level", "groups", "mgr"])
        } else {
            ("ad", &["sam", "emp", "title", "memberOf"])
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1 + i as u32, 8, 0, 0).single().unwrap_or_default();
        let snapshot = match import {
            serde_json::Value::Array(rows) => Snapshot::Complete {
                columns: columns.iter().map(|c| c.to_string()).collect(),
                rows: rows.iter().filter_map(|r| r.as_object().cloned()).collect(),
            },
            other => match serde_json::from_value::<Snapshot>(other.clone()) {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        let _ = engine.import(system, &snapshot, now);
        if i % 3 == 2 {
            let _ = engine.approve_last();
        }
        if let Ok(plan) = engine.outbound("ad", now) {
            let _ = engine.confirm(&plan.ops, now);
        }
        let _ = engine.process(now);
    }
});
