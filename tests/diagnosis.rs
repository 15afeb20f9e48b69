//! Public-API tests of the import diagnosis (SPEC 12.1): each finding carries its
//! evidence (columns, counts, example keys, words), a blocked plan keeps it for the
//! review, and an approved plan still shows it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use attrflow::{Approval, Engine, Snapshot, SuspicionKind, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, 8, 0, 0).unwrap()
}

fn engine() -> Engine {
    let config = json!({
        "identity": { "attributes": { "employeeNumber": { "type": "string" }, "title": { "type": "string" } } },
        "systems": { "hr": {
            "schema": { "account_id": "id", "account_name": "id", "attributes": {
                "id": { "type": "string" }, "title": { "type": "string" } } },
            "authoritative": true,
            "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
            "flows": [
                { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
            ],
            "thresholds": { "max_updated": 10 }
        } }
    });
    Engine::new(ValidatedConfig::from_json(&config.to_string()).unwrap())
}

fn rows(n: usize, blanked: usize) -> Snapshot {
    let rows = (0..n)
        .map(|i| json!({ "id": format!("E{i:02}"), "title": if i < blanked { None } else { Some(format!("T{i}")) } }))
        .collect::<Vec<_>>();
    Snapshot::Complete {
        columns: vec!["id".into(), "title".into()],
        rows: serde_json::from_value(json!(rows)).unwrap(),
    }
}

#[test]
fn a_blanked_column_is_named_with_its_evidence_and_kept_with_the_blocked_plan() {
    let mut engine = engine();
    let first = engine.import("hr", &rows(40, 0), at(1)).unwrap();
    assert!(first.applied && first.plan.diagnosis.is_empty());
    let report = engine.import("hr", &rows(40, 33), at(2)).unwrap();
    assert!(!report.applied);
    let [finding] = report.plan.diagnosis.as_slice() else {
        panic!("one finding expected: {:?}", report.plan.diagnosis);
    };
    assert_eq!(finding.kind, SuspicionKind::MassBlanking);
    assert_eq!(finding.columns, ["title"]);
    assert_eq!((finding.count, finding.of), (33, 40));
    assert_eq!(finding.examples, ["E00", "E01", "E02", "E03", "E04"]);
    assert!(
        finding.message.contains("`title`") && finding.message.contains("82%"),
        "{}",
        finding.message
    );
    // The pending plan carries it for the review, and so does the approved one.
    let pending = engine.pending_plans().unwrap();
    assert!(matches!(&pending[..], [attrflow::PendingPlan::Import(p)] if p.diagnosis == report.plan.diagnosis));
    let Approval::Import(approved) = engine.approve_last().unwrap() else {
        panic!("an import plan was pending");
    };
    assert_eq!(approved.plan.diagnosis, report.plan.diagnosis);
    assert_eq!(approved.plan.counts.updated, 33);
}
