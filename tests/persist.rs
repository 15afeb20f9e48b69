//! The in-memory store's whole state round-trips through its versioned document after
//! any history of operations, and damaged documents are refused without a partial state.

#![allow(clippy::unwrap_used, reason = "test code: a failed setup is a failed test")]

use attrflow::{DecodeError, Engine, MemoryStore, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

fn config() -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" }, "title": { "type": "string", "case_exact": false },
                "hired": { "type": "date" }, "groups": { "type": "string", "multi": true },
                "state": { "type": "string", "computed": { "if": [ { "lt": [ { "attr": "hired" }, { "today": {} } ] }, "active", "prehire" ] } } } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "title": { "type": "string" }, "hired": { "type": "date" },
                        "groups": { "type": "string", "multi": true } } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                        { "account": "hired", "identity": "hired", "direction": "inbound", "create": 50, "update": 50 },
                        { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50, "delete": 50 } ],
                    "thresholds": { "max_pct_deleted": 40.0 }
                },
                "ad": {
                    "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
                        "sam": { "type": "string" }, "emp": { "type": "string" }, "title": { "type": "string" },
                        "memberOf": { "type": "string", "multi": true, "entitlement": true } } },
                    "correlation": [ [ { "account": "emp", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "title", "identity": "title", "direction": "bidirectional", "create": 30, "update": 60 },
                        { "account": "memberOf", "identity": "groups", "direction": "outbound" } ]
                }
            },
            "roles": { "staff": { "criteria": { "eq": [ { "attr": "state" }, "active" ] }, "grants": { "ad": { "memberOf": [ "Staff" ] } } } }
        })
        .to_string(),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Hr(Vec<(u8, u8, bool, Vec<u8>)>),
    Ad(Vec<(u8, u8, u8)>),
    Approve,
    Outbound,
    Pause,
    Resume,
    Process,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop::collection::vec((0u8..6, 0u8..4, any::<bool>(), prop::collection::vec(0u8..4, 0..3)), 0..6).prop_map(Step::Hr),
        2 => prop::collection::vec((0u8..4, 0u8..6, 0u8..4), 0..4).prop_map(Step::Ad),
        1 => Just(Step::Approve),
        2 => Just(Step::Outbound),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => Just(Step::Process),
    ]
}

fn at(hour: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hour as i64 * 7)
}

fn run(engine: &mut Engine, step: &Step, now: DateTime<Utc>) {
    match step {
        Step::Hr(rows) => {
            let rows = rows
                .iter()
                .map(|(id, title, future, groups)| {
                    let hired = if *future { "2026-02-01" } else { "2025-01-01" };
                    let groups: Vec<String> = groups.iter().map(|g| format!("G{g}")).collect();
                    json!({ "id": format!("E{id}"), "title": format!("T{title}"), "hired": hired, "groups": groups })
                        .as_object()
                        .cloned()
                        .unwrap()
                })
                .collect();
            let columns = ["id", "title", "hired", "groups"].map(String::from).to_vec();
            // Applied or blocked for review: both are histories to persist.
            let _ = engine.import("hr", &Snapshot::Complete { columns, rows }, now).unwrap();
        }
        Step::Ad(rows) => {
            let rows = rows
                .iter()
                .map(|(sam, emp, title)| {
                    json!({ "sam": format!("s{sam}"), "emp": format!("E{emp}"), "title": format!("t{title}"), "memberOf": ["Manual"] })
                        .as_object()
                        .cloned()
                        .unwrap()
                })
                .collect();
            let columns = ["sam", "emp", "title", "memberOf"].map(String::from).to_vec();
            let _ = engine.import("ad", &Snapshot::Complete { columns, rows }, now).unwrap();
        }
        Step::Approve => {
            // Nothing blocked, or a plan made stale by a later step: refused, and fine.
            if let Err(e) = engine.approve_last() {
                assert!(matches!(e.kind(), "no_blocked_plan" | "stale_plan"), "approve: {e}");
            }
        }
        Step::Outbound => {
            let plan = engine.outbound("ad", now).unwrap();
            if !plan.is_blocked() {
                let _ = engine.confirm(&plan.ops, now).unwrap();
            }
        }
        Step::Pause => engine.pause().unwrap(),
        Step::Resume => {
            // Resuming an engine that is not paused is refused, and fine.
            if let Err(e) = engine.resume() {
                assert_eq!(e.kind(), "not_paused", "resume: {e}");
            }
        }
        Step::Process => {
            let _ = engine.process(now).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// After every step, the store decodes from its own encoding to an equal store, and
    /// encoding is deterministic.
    #[test]
    fn state_round_trips_after_any_history(steps in prop::collection::vec(step(), 1..14)) {
        let mut engine = Engine::new(config());
        for (i, s) in steps.iter().enumerate() {
            run(&mut engine, s, at(i));
            let bytes = engine.store().encode();
            let decoded = MemoryStore::decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, engine.store());
            prop_assert_eq!(decoded.encode(), bytes);
        }
        // An engine over the decoded store continues exactly as the original.
        let decoded = MemoryStore::decode(&engine.store().encode()).unwrap();
        let mut resumed = Engine::with_store(config(), decoded).unwrap();
        run(&mut engine, &Step::Outbound, at(99));
        run(&mut resumed, &Step::Outbound, at(99));
        prop_assert_eq!(resumed.store(), engine.store());
    }

    /// Any damage to a document is refused with a typed error (never a panic, never a
    /// partial store): truncation anywhere, or one byte changed.
    #[test]
    fn damaged_documents_are_refused(cut in 0.0f64..1.0, flip in 0.0f64..1.0, byte in any::<u8>()) {
        let mut engine = Engine::new(config());
        run(&mut engine, &Step::Hr(vec![(1, 1, false, vec![1]), (2, 2, true, vec![])]), at(0));
        run(&mut engine, &Step::Ad(vec![(1, 1, 1)]), at(1));
        let bytes = engine.store().encode();
        let truncated = &bytes[..(bytes.len() as f64 * cut) as usize];
        prop_assert!(MemoryStore::decode(truncated).is_err());
        let mut flipped = bytes.clone();
        let i = (flipped.len() as f64 * flip) as usize % flipped.len();
        flipped[i] = byte;
        // A changed byte either still describes a consistent store or is refused.
        if let Ok(store) = MemoryStore::decode(&flipped) {
            prop_assert_eq!(MemoryStore::decode(&store.encode()).unwrap(), store);
        }
    }
}

#[test]
fn another_version_is_named() {
    let text = String::from_utf8(MemoryStore::new().encode())
        .unwrap()
        .replacen("\"version\":1", "\"version\":9", 1);
    let err = MemoryStore::decode(text.as_bytes()).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedVersion { found: 9, supported: 1 });
    assert!(err.to_string().contains("version 9"), "{err}");
}

#[test]
fn a_store_out_of_identity_ids_refuses_the_import_and_keeps_everyone() {
    let mut engine = Engine::new(config());
    run(
        &mut engine,
        &Step::Hr(vec![(1, 1, false, vec![1]), (2, 2, true, vec![])]),
        at(0),
    );
    let mut document: serde_json::Value = serde_json::from_slice(&engine.store().encode()).unwrap();
    document["next_identity"] = json!(u64::MAX - 1);
    let store = MemoryStore::decode(&serde_json::to_vec(&document).unwrap()).unwrap();
    let mut engine = Engine::with_store(config(), store).unwrap();
    // Everything but the id counters (ids handed out before the refusal stay used).
    let data = |engine: &Engine| {
        let mut document: serde_json::Value = serde_json::from_slice(&engine.store().encode()).unwrap();
        let fields = document.as_object_mut().unwrap();
        fields.remove("next_identity");
        fields.remove("next_plan");
        document
    };
    let before = data(&engine);
    // Three new people: one id is left, so the third projection cannot be made.
    let rows = json!([
        { "id": "E1", "title": "t1", "hired": "2020-01-01", "groups": [] },
        { "id": "E2", "title": "t2", "hired": "2020-01-01", "groups": [] },
        { "id": "N1", "title": "n", "hired": "2020-01-01", "groups": [] },
        { "id": "N2", "title": "n", "hired": "2020-01-01", "groups": [] },
        { "id": "N3", "title": "n", "hired": "2020-01-01", "groups": [] }
    ]);
    let snapshot: Snapshot =
        serde_json::from_value(json!({ "mode": "incremental", "upserts": rows, "deletes": [] })).unwrap();
    let err = engine.import("hr", &snapshot, at(1)).unwrap_err();
    assert!(err.to_string().contains("identity id"), "{err}");
    assert_eq!(data(&engine), before, "a refused import changes no record");
    assert_eq!(engine.identity_count().unwrap(), 2);
}

#[test]
fn a_document_missing_the_inbox_or_outbox_is_refused_not_emptied() {
    let mut engine = Engine::new(config());
    run(&mut engine, &Step::Hr(vec![(1, 1, false, vec![1])]), at(0));
    engine.pause().unwrap();
    run(&mut engine, &Step::Hr(vec![(1, 2, false, vec![1])]), at(2));
    assert_eq!(engine.inbox().unwrap().len(), 1);
    let document: serde_json::Value = serde_json::from_slice(&engine.store().encode()).unwrap();
    for field in ["inbox", "outbox", "paused"] {
        let mut damaged = document.clone();
        damaged["engine"].as_object_mut().unwrap().remove(field);
        let err = MemoryStore::decode(&serde_json::to_vec(&damaged).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::Inconsistent(_)), "{field}: {err:?}");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(MemoryStore::decode(&serde_json::to_vec(&document).unwrap()).is_ok());
}

#[test]
fn a_history_with_every_kind_of_state_round_trips_holding_it() {
    let mut engine = Engine::new(config());
    run(
        &mut engine,
        &Step::Hr(vec![(1, 1, false, vec![1]), (2, 2, true, vec![2, 3])]),
        at(0),
    );
    run(&mut engine, &Step::Ad(vec![(1, 1, 1), (2, 2, 0), (3, 5, 0)]), at(1));
    run(&mut engine, &Step::Outbound, at(2));
    // Most of HR leaves at once: blocked by max_pct_deleted, kept for review.
    run(&mut engine, &Step::Hr(vec![]), at(3));
    engine.pause().unwrap();
    run(&mut engine, &Step::Ad(vec![(1, 1, 2)]), at(5));

    let decoded = MemoryStore::decode(&engine.store().encode()).unwrap();
    assert_eq!(&decoded, engine.store());
    let resumed = Engine::with_store(config(), decoded).unwrap();
    // What the history built is all there: not an empty store that trivially round-trips.
    assert_eq!(resumed.identity_count().unwrap(), 2);
    assert_eq!(resumed.pending_plans().unwrap().len(), 1);
    // The paused AD import: s1 changed, s2 and s3 gone (the mirror is written; the
    // identity side waits in the inbox).
    assert_eq!(resumed.inbox().unwrap().len(), 3);
    let e1 = resumed.account("hr", "E1").unwrap().unwrap();
    let linked = e1.identity().unwrap();
    let identity = resumed.identity(linked).unwrap().unwrap();
    assert_eq!(
        identity.value("title"),
        &attrflow::Value::Single(attrflow::Scalar::Text("T1".into()))
    );
    assert_eq!(identity.provenance("title").unwrap().system, "hr");
    let s1 = resumed.account("ad", "s1").unwrap().unwrap();
    assert_eq!(s1.identity(), Some(linked));
    assert!(
        !s1.pushed.is_empty() || !s1.echoes.is_empty(),
        "the confirmed outbound left its echoes"
    );
    assert_eq!(resumed.account("ad", "s3").unwrap(), None);
}
