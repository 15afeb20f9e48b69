//! Error review: every public refusal, triggered through the public API, printed as an
//! administrator would read it (`cargo test --test error_messages -- --nocapture`).
//! Each message must name what was wrong and where, and read as words, not as Rust.

#![allow(clippy::unwrap_used, reason = "test code: a failed setup is a failed test")]

use attrflow::lint::lint;
use attrflow::transform::Transform;
use attrflow::{Config, Engine, Op, PlanId, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, 8, 0, 0).unwrap()
}

fn config_json() -> serde_json::Value {
    json!({
        "identity": { "attributes": { "employeeNumber": { "type": "string" }, "title": { "type": "string" },
                                      "groups": { "type": "string", "multi": true } } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" }, "title": { "type": "string" }, "hired": { "type": "date" },
                    "groups": { "type": "string", "multi": true } } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50 },
                    { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50 } ],
                "thresholds": { "max_deleted": 0 }
            },
            "ad": {
                "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
                    "sam": { "type": "string" }, "title": { "type": "string" } } },
                "flows": [ { "account": "title", "identity": "title", "direction": "outbound" } ]
            }
        }
    })
}

fn engine() -> Engine {
    let mut engine = Engine::new(ValidatedConfig::from_json(&config_json().to_string()).unwrap());
    let rows = serde_json::from_value(json!([
        { "id": "E1", "title": "Engineer", "hired": "2020-01-01", "groups": ["G1", "G2"] },
        { "id": "E2", "title": "Analyst", "hired": "2021-01-01", "groups": null } ]))
    .unwrap();
    let snapshot = Snapshot::Complete {
        columns: vec!["id".into(), "title".into(), "hired".into(), "groups".into()],
        rows,
    };
    let report = engine.import("hr", &snapshot, at(1)).unwrap();
    assert!(report.applied);
    engine
}

/// Checks one message: it names every `must` word and reads as words.
fn review(label: &str, message: &str, must: &[&str]) {
    println!("{label:<28} {message}");
    assert!(!message.is_empty(), "{label}: empty message");
    for word in must {
        assert!(message.contains(word), "{label}: `{message}` does not name `{word}`");
    }
    for rust in ["Some(", "None", "IdentityId(", "PlanId(", "::", "Err(", "Ok("] {
        assert!(
            !message.contains(rust),
            "{label}: `{message}` leaks Rust syntax `{rust}`"
        );
    }
    let camel = message.split(|c: char| !c.is_alphanumeric()).find(|w| {
        let upper = w.chars().filter(|c| c.is_uppercase()).count();
        w.chars().next().is_some_and(char::is_uppercase) && upper >= 2 && w.chars().any(char::is_lowercase)
    });
    assert!(camel.is_none(), "{label}: `{message}` names a Rust type `{camel:?}`");
    assert!(
        message
            .chars()
            .next()
            .is_some_and(|c| !c.is_uppercase() || message.starts_with("E")),
        "{label}: messages start lowercase: `{message}`"
    );
}

#[test]
fn every_refusal_reads_as_words() {
    // Configuration: parse errors and validation errors.
    let parse = ValidatedConfig::from_json("{ \"identity\": ").unwrap_err();
    review("config parse", &parse.to_string(), &["line 1", "column"]);
    let mut bad = config_json();
    bad["systems"]["hr"]["flows"][1]["account"] = json!("titel");
    bad["systems"]["hr"]["flows"][1]["create"] = json!(150);
    bad["systems"]["hr"]["schema"]["account_id"] = json!("key");
    let invalid = ValidatedConfig::from_json(&bad.to_string()).unwrap_err();
    review(
        "config invalid",
        &invalid.to_string(),
        &[
            "3 problem",
            "systems.hr.flows[1].account",
            "`titel`",
            "did you mean `title`",
            "150",
            "`key`",
        ],
    );

    // Imports: whole-import refusals and row rejections.
    let mut e = engine();
    let err = e
        .import(
            "crm",
            &Snapshot::Incremental {
                upserts: vec![],
                deletes: vec![],
            },
            at(2),
        )
        .unwrap_err();
    review("import unknown system", &err.to_string(), &["`crm`"]);
    let cols = Snapshot::Complete {
        columns: vec!["id".into(), "Title".into()],
        rows: vec![],
    };
    let err = e.import("hr", &cols, at(2)).unwrap_err();
    review(
        "import columns",
        &err.to_string(),
        &["`hr`", "`title`", "`Title`", "`hired`", "erase"],
    );
    let rows =
        serde_json::from_value(json!([{ "id": "E1", "hired": "01/02/2020" }, { "id": "E3", "nope": 1 }])).unwrap();
    let report = e
        .import(
            "hr",
            &Snapshot::Incremental {
                upserts: rows,
                deletes: vec![],
            },
            at(2),
        )
        .unwrap();
    for rejection in &report.plan.rejections {
        let text = rejection.to_string();
        let key = rejection.key.clone().unwrap();
        review("row rejection", &text, &[&format!("`{key}`"), "left as it was"]);
    }

    // Approvals.
    let err = e.approve_last().unwrap_err();
    review("approve nothing", &err.to_string(), &["no blocked plan"]);
    let blank = Snapshot::Complete {
        columns: vec!["id".into(), "title".into(), "hired".into(), "groups".into()],
        rows: vec![],
    };
    let blocked = e.import("hr", &blank, at(3)).unwrap();
    assert!(!blocked.applied);
    let err = e.approve(PlanId::from_raw(999)).unwrap_err();
    review("approve unknown", &err.to_string(), &["plan #999"]);
    let upsert = serde_json::from_value(json!([{ "id": "E1", "title": "Lead" }])).unwrap();
    let _ = e
        .import(
            "hr",
            &Snapshot::Incremental {
                upserts: upsert,
                deletes: vec![],
            },
            at(3),
        )
        .unwrap();
    let err = e.approve(blocked.plan.id).unwrap_err();
    review("approve stale", &err.to_string(), &["stale", "`hr`", "import again"]);

    // Provisioning and confirmation.
    let e1 = e.find_identities("employeeNumber", &json!("E1")).unwrap()[0];
    let err = e.provision("ad", e1, at(4)).unwrap_err();
    review("provision no key", &err.to_string(), &["`ad`", "`sam`", "identity #"]);
    let err = e.provision("hr", e1, at(4)).unwrap_err();
    review("provision twice", &err.to_string(), &["`hr`", "`E1`", "already"]);
    let err = e.provision("crm", e1, at(4)).unwrap_err();
    review("provision unknown system", &err.to_string(), &["`crm`"]);
    {
        // A second request before the first create is confirmed.
        let mut keyed = config_json();
        keyed["systems"]["ad"]["flows"] = json!([
            { "account": "sam", "identity": "employeeNumber", "direction": "disabled" },
            { "account": "title", "identity": "title", "direction": "outbound" } ]);
        let mut k = Engine::new(ValidatedConfig::from_json(&keyed.to_string()).unwrap());
        let rows = serde_json::from_value(json!([{ "id": "E1", "title": "Engineer", "hired": null, "groups": null }]))
            .unwrap();
        let snapshot = Snapshot::Complete {
            columns: vec!["id".into(), "title".into(), "hired".into(), "groups".into()],
            rows,
        };
        assert!(k.import("hr", &snapshot, at(1)).unwrap().applied);
        let id = k.find_identities("employeeNumber", &json!("E1")).unwrap()[0];
        let first = k.provision("ad", id, at(2)).unwrap();
        assert_eq!(first.ops.len(), 1);
        let err = k.provision("ad", id, at(3)).unwrap_err();
        review(
            "provision pending",
            &err.to_string(),
            &["`ad`", "`E1`", "cancel_provision", "identity #"],
        );
    }
    // A transform that would grow past the evaluation budget.
    let mut growing = config_json();
    let mut bomb = json!({ "attr": "employeeNumber" });
    for _ in 0..8 {
        bomb = json!({ "replace": [bomb, "a", "aaaaaaaaaa"] });
    }
    growing["identity"]["attributes"]["label"] = json!({ "type": "string", "computed": bomb });
    let err = ValidatedConfig::from_json(&growing.to_string()).unwrap_err();
    review(
        "transform too large",
        &err.to_string(),
        &["identity.attributes.label.computed", "budget", "bytes"],
    );
    let ghost: Op = serde_json::from_value(
        json!({ "op": "update", "system": "ad", "account": "nobody", "identity": 1,
                                                   "set": { "title": { "single": { "text": "x" } } } }),
    )
    .unwrap();
    let err = e.confirm(&[ghost], at(4)).unwrap_err();
    review(
        "confirm unknown account",
        &err.to_string(),
        &["`nobody`", "`ad`", "not stored"],
    );

    // Host edits.
    let err = e
        .set_attributes(e1, &[("nickname".into(), json!("J"))], at(5))
        .unwrap_err();
    review("edit unknown attribute", &err.to_string(), &["`nickname`"]);
    let err = e
        .set_attributes(e1, &[("groups".into(), json!({ "a": 1 }))], at(5))
        .unwrap_err();
    review("edit invalid value", &err.to_string(), &["`groups`", "invalid"]);

    // Configuration changes against stored accounts.
    let mut narrower = config_json();
    narrower["systems"]["hr"]["schema"]["attributes"]["groups"]["multi"] = json!(false);
    narrower["identity"]["attributes"]["groups"]["multi"] = json!(false);
    narrower["systems"]["hr"]["schema"]["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("hired");
    let err = e
        .replace_config(ValidatedConfig::from_json(&narrower.to_string()).unwrap(), false, at(6))
        .unwrap_err();
    review(
        "config change refused",
        &err.to_string(),
        &["`hired`", "`groups`", "single-valued", "force"],
    );

    // Controls.
    let err = e.clear_loop("ad", "nobody", "title").unwrap_err();
    review("clear unknown loop", &err.to_string(), &["`title`", "`nobody`", "`ad`"]);
    let err = e.resume().unwrap_err();
    review("resume not paused", &err.to_string(), &["not paused"]);

    // Transforms: parse and evaluation errors.
    let err = Transform::from_json(&json!({ "concat": ["a", { "shout": "b" }] })).unwrap_err();
    review("transform parse", &err.to_string(), &["`shout`", "concat[1]"]);
    let lower = Transform::from_json(&json!({ "lower": { "attr": "age" } })).unwrap();
    let source =
        std::collections::BTreeMap::from([("age".to_owned(), attrflow::Value::Single(attrflow::Scalar::Integer(3)))]);
    let err = lower.eval(&source, at(6)).unwrap_err();
    review("transform eval", &err.to_string(), &["`lower`", "integer"]);

    // Rejected decisions explain themselves.
    let mut e = engine();
    let rows = serde_json::from_value(json!([{ "sam": "jdoe", "title": "Boss" }])).unwrap();
    let _ = e
        .import(
            "ad",
            &Snapshot::Complete {
                columns: vec!["sam".into(), "title".into()],
                rows,
            },
            at(7),
        )
        .unwrap();
    let unlinked = e.unlinked().unwrap();
    review("unmatched account", &unlinked[0].state.to_string(), &["unmatched"]);

    // The lint explains each finding.
    let config: Config = serde_json::from_value(config_json()).unwrap();
    for finding in lint(&config) {
        // Each finding names where it is: an identity attribute or a system's part.
        let place = finding
            .rules
            .first()
            .map(|r| r.split('.').take(2).collect::<Vec<_>>().join("."));
        review(
            "lint finding",
            &finding.to_string(),
            &[place.as_deref().unwrap_or("identity.attributes")],
        );
    }
}
