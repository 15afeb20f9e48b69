//! The next due time (SPEC 13) is exact: over random date and datetime attributes and
//! random transforms using `today`, `now`, `add_days`, `days_between` and comparisons,
//! scheduled processing changes nothing strictly between `now` and the instant
//! `next_due` returns (sampled at every midnight up to it, and densely around every date
//! the identity holds and every shift the transform applies), and does change at it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use attrflow::{Engine, Snapshot, ValidatedConfig};
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

/// A date term, an instant term, an integer term or a condition, as JSON.
fn date_term(depth: u32) -> BoxedStrategy<Json> {
    let leaf = prop_oneof![
        Just(json!({ "attr": "d1" })),
        Just(json!({ "attr": "d2" })),
        Just(json!({ "today": {} })),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => (date_term(depth - 1), -40i64..40).prop_map(|(d, k)| json!({ "add_days": [d, k] })),
    ]
    .boxed()
}

fn time_term() -> BoxedStrategy<Json> {
    prop_oneof![
        Just(json!({ "attr": "t1" })),
        Just(json!({ "now": {} })),
        (-20i64..20).prop_map(|k| json!({ "add_days": [{ "now": {} }, k] })),
        (-20i64..20).prop_map(|k| json!({ "add_days": [{ "attr": "t1" }, k] })),
    ]
    .boxed()
}

fn time_family() -> BoxedStrategy<Json> {
    prop_oneof![Just(json!({ "attr": "t1" })), Just(json!({ "now": {} }))].boxed()
}

fn int_term() -> BoxedStrategy<Json> {
    prop_oneof![
        (date_term(1), date_term(1)).prop_map(|(a, b)| json!({ "days_between": [a, b] })),
        // Between two instants, each shifted by whole days: of one family (the clock,
        // or the datetime attribute), or the clock and the attribute either way round
        // (a step function in the attribute's phase of the day).
        (time_family(), time_family(), -20i64..20, -20i64..20)
            .prop_map(|(x, y, a, b)| { json!({ "days_between": [{ "add_days": [x, a] }, { "add_days": [y, b] }] }) }),
        (-60i64..60).prop_map(|k| json!(k)),
    ]
    .boxed()
}

fn comparison() -> BoxedStrategy<Json> {
    let op = prop_oneof![Just("lt"), Just("gt"), Just("eq"), Just("ne")];
    prop_oneof![
        (op.clone(), date_term(2), date_term(2)).prop_map(|(op, a, b)| json!({ op: [a, b] })),
        (op.clone(), time_term(), time_term()).prop_map(|(op, a, b)| json!({ op: [a, b] })),
        (op, int_term(), int_term()).prop_map(|(op, a, b)| json!({ op: [a, b] })),
    ]
    .boxed()
}

fn condition() -> BoxedStrategy<Json> {
    comparison()
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(|c| json!({ "and": c })),
                prop::collection::vec(inner.clone(), 1..3).prop_map(|c| json!({ "or": c })),
                inner.clone().prop_map(|c| json!({ "not": c })),
                (inner.clone(), inner.clone(), inner).prop_map(|(a, b, c)| json!({ "if": [a, b, c] })),
            ]
        })
        .boxed()
}

fn config(computed: &Json, scope: &Json) -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" },
                "d1": { "type": "date" }, "d2": { "type": "date" }, "t1": { "type": "datetime" },
                "state": { "type": "string", "computed": { "if": [computed, "on", "off"] } }
            } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "d1": { "type": "date" }, "d2": { "type": "date" },
                        "t1": { "type": "datetime" } } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "d1", "identity": "d1", "direction": "inbound", "create": 50, "update": 50 },
                        { "account": "d2", "identity": "d2", "direction": "inbound", "create": 50, "update": 50 },
                        { "account": "t1", "identity": "t1", "direction": "inbound", "create": 50, "update": 50 }
                    ]
                },
                "app": {
                    "schema": { "account_id": "user", "account_name": "user", "attributes": { "user": { "type": "string" } } },
                    "scope": scope
                }
            }
        })
        .to_string(),
    )
    .unwrap()
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 15, 10, 30, 0).unwrap()
}

/// Whether scheduled processing at `t` would change anything stored.
fn changes(engine: &mut Engine, t: DateTime<Utc>) -> bool {
    let report = engine.preview_process(t).unwrap();
    !report.changes.is_empty() || !report.scope.is_empty() || !report.access.is_empty()
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nothing_changes_before_the_next_due_time_and_something_changes_at_it(
        computed in condition(),
        scope in condition(),
        d1 in -200i64..200,
        d2 in -200i64..200,
        t1 in -10_000_000i64..10_000_000,
        t1_millis in prop_oneof![Just(0i64), 0i64..1000],
        offset in 0i64..86_400,
    ) {
        let now = base() + TimeDelta::seconds(offset);
        let day = |k: i64| (base() + TimeDelta::days(k)).date_naive();
        let t1 = base() + TimeDelta::seconds(t1) + TimeDelta::milliseconds(t1_millis);
        let mut engine = Engine::new(config(&computed, &scope));
        let rows = json!([{ "id": "E1", "d1": day(d1).to_string(), "d2": day(d2).to_string(), "t1": t1.to_rfc3339() }]);
        let snapshot = Snapshot::Complete {
            columns: ["id", "d1", "d2", "t1"].map(String::from).to_vec(),
            rows: serde_json::from_value(rows).unwrap(),
        };
        prop_assert!(engine.import("hr", &snapshot, now).unwrap().applied);
        let _ = engine.process(now).unwrap();
        let due = engine.next_due(now).unwrap();
        let end = due.at.unwrap_or(now + TimeDelta::days(600)).min(now + TimeDelta::days(600));
        // Every midnight before it, and a second either side of every date the identity
        // holds, shifted by every day count the transforms may add.
        let mut samples: Vec<DateTime<Utc>> = Vec::new();
        let mut midnight_t = midnight(now.date_naive()) + TimeDelta::days(1);
        while midnight_t < end {
            samples.push(midnight_t);
            midnight_t += TimeDelta::days(1);
        }
        // Every day's instant at the attribute's time of day, where counts between the
        // clock and it step (a second either side).
        let mut phase = t1 + TimeDelta::days((now - t1).num_days() - 1);
        while phase < end {
            for s in [-1i64, 0, 1] {
                samples.push(phase + TimeDelta::seconds(s));
            }
            phase += TimeDelta::days(1);
        }
        for k in -62i64..=62 {
            for anchor in [midnight(day(d1)), midnight(day(d2)), t1, midnight(t1.date_naive()), now] {
                let t = anchor + TimeDelta::days(k);
                for s in [-1i64, 0, 1] {
                    samples.push(t + TimeDelta::seconds(s));
                }
            }
        }
        samples.push(now + TimeDelta::seconds(1));
        for t in samples {
            let t = DateTime::from_timestamp(t.timestamp(), 0).unwrap();
            if t > now && t < end {
                prop_assert!(!changes(&mut engine, t), "a change at {t} before the next due time {:?}", due.at);
            }
        }
        if let Some(at) = due.at {
            prop_assert!(at > now);
            prop_assert_eq!(at.timestamp_subsec_nanos(), 0);
            prop_assert!(changes(&mut engine, at), "nothing changes at the next due time {at}");
            prop_assert_eq!(due.identities.len(), 1);
        }
    }
}

#[test]
fn nothing_time_based_has_no_due_time_and_failing_transforms_report_errors() {
    let mut engine = Engine::new(config(&json!({ "lt": [{ "attr": "d1" }, "2026-01-01"] }), &json!(true)));
    let snapshot = Snapshot::Complete {
        columns: ["id", "d1", "d2", "t1"].map(String::from).to_vec(),
        rows: serde_json::from_value(json!([{ "id": "E1", "d1": "2025-01-01", "d2": null, "t1": null }])).unwrap(),
    };
    assert!(engine.import("hr", &snapshot, base()).unwrap().applied);
    let due = engine.next_due(base()).unwrap();
    assert_eq!((due.at, due.identities.len(), due.errors.len()), (None, 0, 0));
    // A comparison of a date with a boolean fails to evaluate at every time.
    let mut engine = Engine::new(config(&json!({ "lt": [{ "today": {} }, true] }), &json!(true)));
    assert!(engine.import("hr", &snapshot, base()).unwrap().applied);
    let due = engine.next_due(base()).unwrap();
    assert_eq!(due.at, None);
    assert!(
        due.errors
            .iter()
            .any(|e| e.attribute == "state" && e.kind == "wrong_type"),
        "{:?}",
        due.errors
    );
}
