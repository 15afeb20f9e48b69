//! Public-API tests of bad input (SPEC 9): every refusal is a typed error that names
//! what was wrong and where, no input panics, and nothing already stored is changed by
//! a refused operation. Also one happy-path test of the connector helpers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use attrflow::connector::{pull, push};
use attrflow::error::{ColumnProblem, SchemaChangeProblem};
use attrflow::store::Store;
use attrflow::{
    Account, ApproveError, ConfigChangeError, ConfigError, Connector, EditError, Engine, ExportMode, Identity,
    IdentityId, ImportError, ImportReport, LinkState, MemoryConnector, MemoryStore, Op, OpStatus, OutboundError,
    PlanId, RejectionReason, Scalar, Snapshot, ValidatedConfig, ValidationErrorKind, Value,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------- fixtures

/// A fixed time: 2026-05-`day` 08:00 UTC.
fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).unwrap()
}

/// The base configuration: `hr` (authoritative), `ad` (correlated, outbound) and
/// `phone` (no rule gives its key). `hr_thresholds` is placed in `hr`.
fn config_json(hr_thresholds: Json) -> Json {
    json!({
        "identity": { "attributes": {
            "employeeNumber": { "type": "string" },
            "title": { "type": "string" },
            "hireDate": { "type": "date" },
            "groups": { "type": "string", "multi": true },
            "mail": { "type": "string" }
        } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" },
                    "title": { "type": "string" },
                    "hired": { "type": "date" },
                    "groups": { "type": "string", "multi": true }
                } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                    { "account": "hired", "identity": "hireDate", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                    { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
                ],
                "thresholds": hr_thresholds
            },
            "ad": {
                "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
                    "sam": { "type": "string" },
                    "employeeID": { "type": "string" },
                    "title": { "type": "string" },
                    "memberOf": { "type": "string", "multi": true, "entitlement": true }
                } },
                "correlation": [ [ { "account": "employeeID", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "sam", "identity": "employeeNumber", "direction": "disabled" },
                    { "account": "employeeID", "identity": "employeeNumber", "direction": "outbound" },
                    { "account": "title", "identity": "title", "direction": "outbound" },
                    { "account": "memberOf", "identity": "groups", "direction": "outbound" }
                ]
            },
            "phone": {
                "schema": { "account_id": "ext", "account_name": "ext", "attributes": {
                    "ext": { "type": "string" }, "owner": { "type": "string" }
                } },
                "flows": [ { "account": "owner", "identity": "mail", "direction": "outbound" } ]
            }
        }
    })
}

fn config(hr_thresholds: Json) -> ValidatedConfig {
    ValidatedConfig::from_json(&config_json(hr_thresholds).to_string()).unwrap()
}

const HR_COLUMNS: [&str; 4] = ["id", "title", "hired", "groups"];

fn snapshot(value: Json) -> Snapshot {
    serde_json::from_value(value).unwrap()
}

fn complete(rows: Json) -> Snapshot {
    snapshot(json!({ "mode": "complete", "columns": HR_COLUMNS, "rows": rows }))
}

/// A complete `ad` export of `rows` (sam, employeeID, title, memberOf).
fn ad_complete(rows: Json) -> Snapshot {
    snapshot(json!({ "mode": "complete", "columns": ["sam", "employeeID", "title", "memberOf"], "rows": rows }))
}

fn incremental(upserts: Json, deletes: Json) -> Snapshot {
    snapshot(json!({ "mode": "incremental", "upserts": upserts, "deletes": deletes }))
}

fn hr_rows() -> Json {
    json!([
        { "id": "E1", "title": "Engineer", "hired": "2020-01-15", "groups": ["G1", "G2"] },
        { "id": "E2", "title": "Analyst", "hired": "2021-06-01", "groups": [] },
        { "id": "E3", "title": "Clerk", "hired": "2022-03-01", "groups": ["G1"] }
    ])
}

/// An engine holding three `hr` accounts (E1..E3), each with its projected identity.
fn loaded(hr_thresholds: Json) -> Engine {
    let mut engine = Engine::new(config(hr_thresholds));
    let report = engine.import("hr", &complete(hr_rows()), at(1)).unwrap();
    if !report.applied {
        let _ = engine.approve_last().unwrap();
    }
    assert_eq!(engine.identity_count().unwrap(), 3);
    engine
}

fn identity_of(engine: &Engine, employee: &str) -> IdentityId {
    let found = engine.find_identities("employeeNumber", &json!(employee)).unwrap();
    assert_eq!(found.len(), 1, "one identity with employeeNumber {employee}");
    found[0]
}

fn account(engine: &Engine, system: &str, key: &str) -> Option<Account> {
    engine.account(system, key).unwrap()
}

/// Everything the store holds apart from its id counters: accounts, versions and bases
/// per system, identities, links and pending plans.
#[derive(Debug, PartialEq)]
struct Data {
    systems: Vec<(String, u64, Vec<Account>)>,
    identities: Vec<Identity>,
    links: Vec<(IdentityId, Vec<(String, String)>)>,
    pending: Vec<attrflow::PendingPlan>,
}

fn data(engine: &Engine) -> Data {
    let store: &MemoryStore = engine.store();
    let mut systems = Vec::new();
    for name in engine.config().systems.keys() {
        let mut accounts = Vec::new();
        store.visit_accounts(name, &mut |a| accounts.push(a.clone())).unwrap();
        accounts.sort_by(|a, b| a.key.cmp(&b.key));
        systems.push((name.to_string(), store.system_version(name).unwrap(), accounts));
    }
    let mut identities = Vec::new();
    store.visit_identities(&mut |i| identities.push(i.clone())).unwrap();
    let links = identities
        .iter()
        .map(|i| (i.id, store.accounts_of(i.id).unwrap()))
        .collect();
    Data {
        systems,
        identities,
        links,
        pending: store.pending_plans().unwrap(),
    }
}

fn rejection_summary(report: &ImportReport) -> Vec<(Option<String>, RejectionReason, Option<String>)> {
    let mut out: Vec<_> = report
        .plan
        .rejections
        .iter()
        .map(|r| (r.key.clone(), r.reason, r.attribute.clone()))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------- configuration

#[test]
fn malformed_config_json_is_a_parse_error_with_line_and_column() {
    let text = "{\n  \"identity\": {\n    \"attributes\": {\n      \"a\": { \"type\": \"string\" },\n    }\n  }\n}";
    let err = ValidatedConfig::from_json(text).unwrap_err();
    match &err {
        ConfigError::Parse { line, column, message } => {
            assert_eq!(*line, 5, "the trailing comma is detected on line 5: {message}");
            assert!(*column > 0);
            assert!(!message.is_empty());
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 5"), "{err}");
}

#[test]
fn unknown_config_key_is_a_parse_error_naming_the_key() {
    let text = r#"{ "identity": { "attributes": {} }, "sytems": {} }"#;
    let err = ValidatedConfig::from_json(text).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("sytems"), "{err}");

    let text = r#"{ "identity": { "attributes": { "a": { "type": "strnig" } } } }"#;
    let err = ValidatedConfig::from_json(text).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("strnig"), "{err}");
}

/// A validation error's kind, system, rule, attribute and path.
type Found<'a> = (
    ValidationErrorKind,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
);

#[test]
fn invalid_config_lists_every_problem_with_kind_and_place() {
    let text = json!({
        "identity": { "attributes": { "employeeNumber": { "type": "string" } } },
        "systems": {
            "hr": {
                "schema": { "account_id": "emp", "account_name": "groups", "attributes": {
                    "id": { "type": "string" },
                    "groups": { "type": "string", "multi": true },
                    "active": { "type": "boolean", "entitlement": true }
                } },
                "correlation": [ [ { "account": "idd", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeNumber", "direction": "inbound", "create": 101 },
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "delete": -5 }
                ]
            }
        }
    })
    .to_string();
    let err = ValidatedConfig::from_json(&text).unwrap_err();
    let ConfigError::Invalid(errors) = &err else {
        panic!("expected validation errors, got {err:?}");
    };
    let found: Vec<Found<'_>> = errors
        .0
        .iter()
        .map(|e| {
            let p = e.place();
            (
                e.kind(),
                p.system.as_deref(),
                p.rule.as_deref(),
                p.attribute.as_deref(),
                p.path.as_str(),
            )
        })
        .collect();
    let expected = [
        (
            ValidationErrorKind::InvalidKeyAttribute,
            Some("hr"),
            None,
            Some("emp"),
            "systems.hr.schema.account_id",
        ),
        (
            ValidationErrorKind::InvalidKeyAttribute,
            Some("hr"),
            None,
            Some("groups"),
            "systems.hr.schema.account_name",
        ),
        (
            ValidationErrorKind::BooleanEntitlement,
            Some("hr"),
            None,
            Some("active"),
            "systems.hr.schema.attributes.active",
        ),
        (
            ValidationErrorKind::UnknownAttribute,
            Some("hr"),
            Some("correlation[0]"),
            Some("idd"),
            "systems.hr.correlation[0][0].account",
        ),
        (
            ValidationErrorKind::UnknownAttribute,
            Some("hr"),
            Some("flows[0]"),
            Some("employeNumber"),
            "systems.hr.flows[0].identity",
        ),
        (
            ValidationErrorKind::ScoreOutOfRange,
            Some("hr"),
            Some("flows[0]"),
            Some("employeNumber"),
            "systems.hr.flows[0].create",
        ),
        (
            ValidationErrorKind::ScoreOutOfRange,
            Some("hr"),
            Some("flows[1]"),
            Some("employeeNumber"),
            "systems.hr.flows[1].delete",
        ),
    ];
    for e in &expected {
        assert!(found.contains(e), "missing {e:?} in {found:#?}");
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let message = err.to_string();
    for name in ["emp", "groups", "active", "idd", "employeNumber", "101", "-5"] {
        assert!(message.contains(name), "`{name}` not named in: {message}");
    }
    // The misspelt identity attribute comes with a suggestion.
    let typo = errors
        .0
        .iter()
        .find(|e| e.place().path == "systems.hr.flows[0].identity")
        .unwrap();
    assert_eq!(typo.hint(), Some("did you mean `employeeNumber`?"));
}

// ---------------------------------------------------------------- scenario files

const GOOD_SCENARIO: &str = r#"{
  "format": "attrflow-scenario/1",
  "name": "minimal",
  "config": { "identity": { "attributes": { "employeeNumber": { "type": "string" } } },
              "systems": { "hr": { "schema": { "account_id": "id", "account_name": "id",
                                               "attributes": { "id": { "type": "string" } } },
                                   "authoritative": true,
                                   "flows": [ { "account": "id", "identity": "employeeNumber",
                                                "direction": "inbound", "create": 100 } ] } } },
  "steps": [ { "at": "2026-05-01T08:00:00Z",
               "import": { "system": "hr", "mode": "complete", "columns": ["id"], "rows": [ { "id": "E1" } ] },
               "expect": { "identity_count": 1 } } ]
}"#;

fn failure_text(report: &attrflow::scenario::Report) -> String {
    report
        .failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn reserved_system_names_and_ill_typed_or_non_entitlement_grants_are_refused() {
    let text = json!({
        "identity": { "attributes": { "dept": { "type": "string" } } },
        "systems": {
            "@host": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": { "id": { "type": "string" } } }
            },
            "app": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" },
                    "levels": { "type": "integer", "multi": true, "entitlement": true },
                    "tags": { "type": "string", "multi": true }
                } }
            }
        },
        "roles": { "staff": {
            "criteria": { "is_empty": "dept" },
            "grants": { "app": { "levels": ["3", "notanumber"], "tags": ["t1"] } }
        } }
    })
    .to_string();
    let err = ValidatedConfig::from_json(&text).unwrap_err();
    let ConfigError::Invalid(errors) = &err else {
        panic!("expected validation errors, got {err:?}");
    };
    let mut found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|e| (e.kind().as_str(), e.place().path.as_str()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("grant_not_entitlement", "roles.staff.grants.app.tags"),
            ("invalid_grant_value", "roles.staff.grants.app.levels[1]"),
            ("reserved_system_name", "systems.@host"),
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("notanumber") && message.contains("`@host`"),
        "{message}"
    );
}

#[test]
fn a_valid_scenario_passes() {
    let report = attrflow::scenario::run_text(GOOD_SCENARIO);
    assert!(report.passed(), "{}", failure_text(&report));
    assert_eq!(report.name.as_deref(), Some("minimal"));
}

#[test]
fn malformed_scenario_json_is_a_failing_report() {
    let text = &GOOD_SCENARIO[..GOOD_SCENARIO.len() / 2];
    let report = attrflow::scenario::run_text(text);
    assert!(!report.passed());
    let message = failure_text(&report);
    assert!(message.contains("line"), "{message}");
    assert!(message.contains("column"), "{message}");

    let report = attrflow::scenario::run_text("");
    assert!(!report.passed());
    let report = attrflow::scenario::run_text("[1, 2, 3]");
    assert!(!report.passed());
}

#[test]
fn scenario_with_an_unknown_key_is_a_failing_report_naming_it() {
    let text = GOOD_SCENARIO.replace("\"expect\"", "\"expcet\"");
    let report = attrflow::scenario::run_text(&text);
    assert!(!report.passed());
    assert!(failure_text(&report).contains("expcet"), "{}", failure_text(&report));

    let text = GOOD_SCENARIO.replace("\"identity_count\"", "\"identity_cuont\"");
    let report = attrflow::scenario::run_text(&text);
    assert!(!report.passed());
    assert!(
        failure_text(&report).contains("identity_cuont"),
        "{}",
        failure_text(&report)
    );
}

#[test]
fn scenario_with_a_wrong_format_tag_is_a_failing_report_naming_it() {
    let text = GOOD_SCENARIO.replace("attrflow-scenario/1", "attrflow-scenario/9");
    let report = attrflow::scenario::run_text(&text);
    assert!(!report.passed());
    let message = failure_text(&report);
    assert!(message.contains("attrflow-scenario/9"), "{message}");
    assert!(report.failures.iter().all(|f| f.step.is_none()), "{message}");
}

#[test]
fn scenario_with_an_invalid_config_is_a_failing_report_naming_the_problem() {
    let text = GOOD_SCENARIO.replace("\"identity\": \"employeeNumber\"", "\"identity\": \"employeeNumbr\"");
    assert_ne!(text, GOOD_SCENARIO);
    let report = attrflow::scenario::run_text(&text);
    assert!(!report.passed());
    let message = failure_text(&report);
    assert!(message.contains("employeeNumbr"), "{message}");
    assert!(message.contains("unknown_attribute"), "{message}");
    assert!(report.failures.iter().all(|f| f.step.is_none()), "{message}");

    // A config that does not even have the configuration's shape.
    let text = GOOD_SCENARIO.replace("\"authoritative\": true", "\"authoritativ\": true");
    let report = attrflow::scenario::run_text(&text);
    assert!(!report.passed());
    assert!(
        failure_text(&report).contains("authoritativ"),
        "{}",
        failure_text(&report)
    );
}

// ---------------------------------------------------------------- import: rows

#[test]
fn rows_with_wrong_types_are_rejected_and_keep_their_stored_account() {
    let mut engine = loaded(json!({}));
    let before = data(&engine);
    let e1 = account(&engine, "hr", "E1");
    let e2 = account(&engine, "hr", "E2");
    let e3 = account(&engine, "hr", "E3");
    let report = engine
        .import(
            "hr",
            &complete(json!([
                { "id": "E1", "title": "Staff Engineer", "hired": "15/01/2020", "groups": ["G1", "G2"] },
                { "id": "E2", "title": 42, "hired": "2021-06-01", "groups": [] },
                { "id": "E3", "title": "Clerk", "hired": "2022-03-01", "groups": [{ "cn": "G1" }] }
            ])),
            at(2),
        )
        .unwrap();
    assert!(report.applied);
    assert_eq!(
        rejection_summary(&report),
        vec![
            (Some("E1".into()), RejectionReason::InvalidValue, Some("hired".into())),
            (Some("E2".into()), RejectionReason::InvalidValue, Some("title".into())),
            (Some("E3".into()), RejectionReason::InvalidValue, Some("groups".into())),
        ]
    );
    for r in &report.plan.rejections {
        let text = r.to_string();
        assert!(text.contains(r.key.as_deref().unwrap()), "{text}");
        assert!(text.contains(r.attribute.as_deref().unwrap()), "{text}");
        assert!(text.contains("invalid_value"), "{text}");
    }
    // Rejected rows in complete mode are not deletes; nothing changes.
    assert!(report.plan.changes.is_empty(), "{:?}", report.plan.changes);
    assert!(report.plan.counts.is_zero());
    assert_eq!(report.decisions.total(), 0);
    assert!(report.rejected.is_empty());
    assert_eq!(account(&engine, "hr", "E1"), e1);
    assert_eq!(account(&engine, "hr", "E2"), e2);
    assert_eq!(account(&engine, "hr", "E3"), e3);
    assert_eq!(data(&engine), before);
}

#[test]
fn several_values_for_a_single_valued_attribute_are_rejected() {
    let mut engine = loaded(json!({}));
    let before = data(&engine);
    let report = engine
        .import(
            "hr",
            &incremental(
                json!([ { "id": "E1", "title": ["Engineer", "Manager"], "hired": "not a date" } ]),
                json!([]),
            ),
            at(2),
        )
        .unwrap();
    // multiple_values ranks before invalid_value.
    assert_eq!(
        rejection_summary(&report),
        vec![(Some("E1".into()), RejectionReason::MultipleValues, Some("title".into()))]
    );
    assert!(report.plan.changes.is_empty());
    assert_eq!(data(&engine), before);
}

#[test]
fn duplicate_keys_reject_every_row_sharing_the_key_once() {
    let mut engine = loaded(json!({}));
    let before = data(&engine);
    let report = engine
        .import(
            "hr",
            &complete(json!([
                { "id": "E1", "title": "Engineer", "hired": "2020-01-15", "groups": ["G1", "G2"] },
                { "id": "E2", "title": "Analyst", "hired": "2021-06-01" },
                { "id": "E2", "title": "Senior Analyst", "hired": "2021-06-01" },
                { "id": ["E2"], "title": "Lead Analyst", "hired": "2021-06-01" },
                { "id": "E3", "title": "Clerk", "hired": "2022-03-01", "groups": ["G1"] }
            ])),
            at(2),
        )
        .unwrap();
    assert_eq!(
        rejection_summary(&report),
        vec![(Some("E2".into()), RejectionReason::DuplicateKey, Some("id".into()))]
    );
    assert!(report.plan.rejections[0].to_string().contains("E2"));
    assert!(report.plan.changes.is_empty(), "a rejected key is not a delete");
    assert_eq!(data(&engine), before);

    // In incremental mode an upsert and a delete of one key are duplicates too.
    let report = engine
        .import(
            "hr",
            &incremental(json!([ { "id": "E3", "title": "Boss" } ]), json!(["E3"])),
            at(3),
        )
        .unwrap();
    assert_eq!(
        rejection_summary(&report),
        vec![(Some("E3".into()), RejectionReason::DuplicateKey, Some("id".into()))]
    );
    assert_eq!(data(&engine), before);
}

#[test]
fn rows_without_a_key_are_rejected_and_delete_nothing() {
    let mut engine = loaded(json!({}));
    let before = data(&engine);
    let report = engine
        .import(
            "hr",
            &complete(json!([
                { "id": "E1", "title": "Engineer", "hired": "2020-01-15", "groups": ["G1", "G2"] },
                { "id": "E2", "title": "Analyst", "hired": "2021-06-01" },
                { "id": "E3", "title": "Clerk", "hired": "2022-03-01", "groups": ["G1"] },
                { "id": null, "title": "Ghost" },
                { "id": "", "title": "Ghost" },
                { "title": "Ghost" }
            ])),
            at(2),
        )
        .unwrap();
    assert_eq!(
        rejection_summary(&report),
        vec![(None, RejectionReason::MissingKey, Some("id".into())); 3]
    );
    for r in &report.plan.rejections {
        assert!(r.to_string().contains("`id`"), "{r}");
    }
    assert!(report.plan.changes.is_empty());
    assert_eq!(data(&engine), before);
}

#[test]
fn unknown_attribute_in_an_incremental_row_is_rejected() {
    let mut engine = loaded(json!({}));
    let before = data(&engine);
    let report = engine
        .import(
            "hr",
            &incremental(json!([ { "id": "E1", "title": "Boss", "salary": 100 } ]), json!([])),
            at(2),
        )
        .unwrap();
    assert_eq!(
        rejection_summary(&report),
        vec![(Some("E1".into()), RejectionReason::UnknownColumn, Some("salary".into()))]
    );
    assert!(report.plan.rejections[0].to_string().contains("salary"));
    assert_eq!(data(&engine), before);
}

// ---------------------------------------------------------------- import: whole refusals

#[test]
fn a_dropped_column_refuses_the_whole_import() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let snapshot = snapshot(json!({
        "mode": "complete", "columns": ["id", "title", "groups"],
        "rows": [ { "id": "E1", "title": "Boss", "groups": [] } ]
    }));
    let err = engine.import("hr", &snapshot, at(2)).unwrap_err();
    assert_eq!(
        err,
        ImportError::Columns {
            system: "hr".into(),
            problems: vec![ColumnProblem::Missing("hired".into())],
        }
    );
    assert_eq!(err.kind(), "missing_column");
    let message = err.to_string();
    assert!(message.contains("`hr`") && message.contains("`hired`"), "{message}");
    assert_eq!(engine.store(), &before);
}

#[test]
fn an_unknown_column_refuses_the_whole_import() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let snapshot = snapshot(json!({
        "mode": "complete", "columns": ["id", "title", "hired", "groups", "salary"],
        "rows": [ { "id": "E1", "title": "Boss", "salary": 1 } ]
    }));
    let err = engine.import("hr", &snapshot, at(2)).unwrap_err();
    assert_eq!(
        err,
        ImportError::Columns {
            system: "hr".into(),
            problems: vec![ColumnProblem::Unknown("salary".into())],
        }
    );
    assert_eq!(err.kind(), "unknown_column");
    let message = err.to_string();
    assert!(message.contains("`hr`") && message.contains("`salary`"), "{message}");
    assert_eq!(engine.store(), &before);
}

#[test]
fn every_column_problem_is_reported_at_once() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let snapshot = snapshot(json!({
        "mode": "complete", "columns": ["id", "title", "salary"], "rows": []
    }));
    let err = engine.import("hr", &snapshot, at(2)).unwrap_err();
    let ImportError::Columns { system, problems } = &err else {
        panic!("expected a column refusal, got {err:?}");
    };
    assert_eq!(system, "hr");
    assert_eq!(
        problems,
        &vec![
            ColumnProblem::Missing("hired".into()),
            ColumnProblem::Missing("groups".into()),
            ColumnProblem::Unknown("salary".into()),
        ]
    );
    for name in ["hired", "groups", "salary"] {
        assert!(err.to_string().contains(name), "{err}");
    }
    // An empty complete snapshot with bad columns must not delete everything.
    assert_eq!(engine.store(), &before);
}

#[test]
fn import_into_an_unknown_system_is_refused() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let err = engine.import("crm", &complete(hr_rows()), at(2)).unwrap_err();
    assert_eq!(err, ImportError::UnknownSystem("crm".into()));
    assert_eq!(err.kind(), "unknown_system");
    assert!(err.to_string().contains("`crm`"), "{err}");
    assert_eq!(engine.store(), &before);
}

// ---------------------------------------------------------------- approval

#[test]
fn approve_with_nothing_blocked_is_refused() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let err = engine.approve_last().unwrap_err();
    assert_eq!(err, ApproveError::NoBlockedPlan);
    assert_eq!(err.kind(), "no_blocked_plan");
    let err = engine.approve(PlanId::from_raw(1)).unwrap_err();
    assert_eq!(err, ApproveError::NoBlockedPlan);
    assert_eq!(engine.store(), &before);
}

/// An engine with E1..E3 stored and a blocked complete import that deletes E2 and E3.
fn blocked() -> (Engine, PlanId) {
    let mut engine = loaded(json!({ "max_deleted": 1 }));
    let report = engine
        .import(
            "hr",
            &complete(json!([ { "id": "E1", "title": "Engineer", "hired": "2020-01-15", "groups": ["G1", "G2"] } ])),
            at(2),
        )
        .unwrap();
    assert!(!report.applied);
    assert_eq!(report.plan.counts.deleted, 2);
    assert_eq!(
        report
            .plan
            .exceeded
            .iter()
            .map(|e| e.threshold.as_str())
            .collect::<Vec<_>>(),
        vec!["max_deleted"]
    );
    assert!(account(&engine, "hr", "E2").is_some());
    (engine, report.plan.id)
}

#[test]
fn approve_of_an_unknown_plan_id_is_refused() {
    let (mut engine, id) = blocked();
    assert_ne!(id, PlanId::from_raw(999));
    let before = engine.store().clone();
    let err = engine.approve(PlanId::from_raw(999)).unwrap_err();
    assert_eq!(err, ApproveError::UnknownPlan(PlanId::from_raw(999)));
    assert_eq!(err.kind(), "unknown_plan");
    assert!(err.to_string().contains("999"), "{err}");
    assert_eq!(engine.store(), &before);
    // The real plan is still there and can be approved.
    let approval = engine.approve(id).unwrap();
    assert!(matches!(approval, attrflow::Approval::Import(ref r) if r.applied));
    assert!(account(&engine, "hr", "E2").is_none());
}

#[test]
fn approve_of_a_stale_plan_is_refused_and_discards_it() {
    let (mut engine, id) = blocked();
    // An applied change to hr's stored accounts makes the blocked plan stale.
    let report = engine
        .import(
            "hr",
            &incremental(json!([ { "id": "E1", "title": "Boss" } ]), json!([])),
            at(3),
        )
        .unwrap();
    assert!(report.applied);
    assert_eq!(report.plan.counts.updated, 1);
    let before = data(&engine);
    let err = engine.approve_last().unwrap_err();
    assert_eq!(
        err,
        ApproveError::StalePlan {
            plan: id,
            system: "hr".into()
        }
    );
    assert_eq!(err.kind(), "stale_plan");
    assert!(err.to_string().contains("`hr`"), "{err}");
    // Nothing of the plan was applied; the plan itself is discarded.
    let after = data(&engine);
    assert!(after.pending.is_empty());
    assert_eq!(
        Data {
            pending: Vec::new(),
            ..before
        },
        after
    );
    assert!(account(&engine, "hr", "E2").is_some());
    assert!(account(&engine, "hr", "E3").is_some());
    assert_eq!(engine.approve(id).unwrap_err(), ApproveError::NoBlockedPlan);
}

// ---------------------------------------------------------------- provisioning

/// Provisions an `ad` account for an identity and confirms it.
fn provision_ad(engine: &mut Engine, identity: IdentityId, now: DateTime<Utc>) -> Op {
    let plan = engine.provision("ad", identity, now).unwrap();
    assert!(!plan.is_blocked());
    assert_eq!(plan.ops.len(), 1);
    let report = engine.confirm(&plan.ops, now).unwrap();
    assert_eq!(report.created, 1);
    plan.ops[0].clone()
}

#[test]
fn provisioning_an_already_provisioned_identity_is_refused() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let op = provision_ad(&mut engine, e1, at(2));
    assert_eq!(op.account(), "E1");
    let before = engine.store().clone();
    let err = engine.provision("ad", e1, at(3)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::AlreadyProvisioned {
            identity: e1,
            system: "ad".into(),
            account: "E1".into()
        }
    );
    assert_eq!(err.kind(), "already_provisioned");
    let message = err.to_string();
    assert!(message.contains("`ad`") && message.contains("`E1`"), "{message}");
    assert_eq!(engine.store(), &before);
}

/// A create handed out, then an import links the identity to another account of the
/// system: confirming the create is refused (one account per identity and system), and
/// nothing changes.
#[test]
fn confirming_a_create_for_an_identity_an_import_linked_meanwhile_is_refused() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let plan = engine.provision("ad", e1, at(2)).unwrap();
    assert_eq!(plan.ops.len(), 1);
    let ad = incremental(json!([{ "sam": "ann", "employeeID": "E1" }]), json!([]));
    assert!(engine.import("ad", &ad, at(3)).unwrap().applied);
    let before = engine.store().clone();
    let err = engine.confirm(&plan.ops, at(4)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::AlreadyProvisioned {
            identity: e1,
            system: "ad".into(),
            account: "ann".into()
        }
    );
    assert_eq!(engine.store(), &before);
}

#[test]
fn provisioning_without_an_account_id_is_refused() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let before = engine.store().clone();
    let err = engine.provision("phone", e1, at(2)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::NoAccountId {
            identity: e1,
            system: "phone".into(),
            attribute: "ext".into()
        }
    );
    assert_eq!(err.kind(), "no_account_id");
    let message = err.to_string();
    assert!(message.contains("`phone`") && message.contains("`ext`"), "{message}");
    assert_eq!(engine.store(), &before);
}

#[test]
fn provisioning_an_unknown_identity_or_system_is_refused() {
    let mut engine = loaded(json!({}));
    let before = engine.store().clone();
    let ghost = IdentityId::from_raw(999);
    let err = engine.provision("ad", ghost, at(2)).unwrap_err();
    assert_eq!(err, OutboundError::UnknownIdentity(ghost));
    assert_eq!(err.kind(), "unknown_identity");
    assert!(err.to_string().contains("999"), "{err}");

    let e1 = identity_of(&engine, "E1");
    let err = engine.provision("crm", e1, at(2)).unwrap_err();
    assert_eq!(err, OutboundError::UnknownSystem("crm".into()));
    assert!(err.to_string().contains("`crm`"), "{err}");

    let err = engine.outbound("crm", at(2)).unwrap_err();
    assert_eq!(err, OutboundError::UnknownSystem("crm".into()));
    assert_eq!(engine.store(), &before);
}

#[test]
fn provisioning_onto_a_key_a_stored_account_holds_is_refused_at_the_request() {
    let mut engine = loaded(json!({}));
    let e2 = identity_of(&engine, "E2");
    // An ad account `E2` that correlates to no one (its employeeID is unknown).
    let ad =
        snapshot(json!({ "mode": "incremental", "upserts": [ { "sam": "E2", "employeeID": "X9" } ], "deletes": [] }));
    let report = engine.import("ad", &ad, at(2)).unwrap();
    assert!(report.applied);
    let before = engine.store().clone();
    let err = engine.provision("ad", e2, at(3)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::AccountExists {
            system: "ad".into(),
            account: "E2".into()
        }
    );
    assert_eq!(engine.store(), &before, "a refused request changes nothing");
    // In a batch, the stored key's refusal keeps its place among the others.
    let ghost = IdentityId::from_raw(999);
    let err = engine.provision_many("ad", &[ghost, e2, ghost], at(3)).unwrap_err();
    let OutboundError::ProvisioningRefused { refusals, .. } = &err else {
        panic!("{err:?}");
    };
    let kinds: Vec<&str> = refusals.iter().map(OutboundError::kind).collect();
    assert_eq!(kinds, ["unknown_identity", "account_exists", "unknown_identity"]);
    assert_eq!(engine.store(), &before, "a refused batch changes nothing");
}

#[test]
fn a_second_provisioning_before_the_first_is_confirmed_is_refused() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let first = engine.provision("ad", e1, at(2)).unwrap();
    assert_eq!(first.ops.len(), 1);
    let pending = &engine.identity(e1).unwrap().unwrap().pending_creates;
    assert_eq!(
        pending.get("ad").map(|p| (p.account.as_str(), p.since)),
        Some(("E1", at(2)))
    );
    let before = engine.store().clone();
    let err = engine.provision("ad", e1, at(3)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::ProvisionPending {
            identity: e1,
            system: "ad".into(),
            account: "E1".into(),
            since: at(2)
        }
    );
    assert_eq!(err.kind(), "provision_pending");
    assert!(err.to_string().contains("cancel_provision"), "{err}");
    // In a batch too, and the batch provisions no one.
    let e2 = identity_of(&engine, "E2");
    let err = engine.provision_many("ad", &[e2, e1], at(3)).unwrap_err();
    assert_eq!(err.kind(), "provisioning_refused");
    assert_eq!(engine.store(), &before, "a refused request changes nothing");
    // Confirming the create settles it; the identity is then provisioned.
    engine.confirm(&first.ops, at(4)).unwrap();
    assert!(engine.identity(e1).unwrap().unwrap().pending_creates.is_empty());
    assert_eq!(
        engine.provision("ad", e1, at(5)).unwrap_err().kind(),
        "already_provisioned"
    );
}

#[test]
fn a_cancelled_provisioning_can_be_requested_again() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    assert_eq!(engine.provision("ad", e1, at(2)).unwrap().ops.len(), 1);
    let cancelled = engine.cancel_provision("ad", e1).unwrap();
    assert_eq!(cancelled.map(|p| p.account), Some("E1".to_owned()));
    assert_eq!(
        engine.cancel_provision("ad", e1).unwrap(),
        None,
        "nothing pending any more"
    );
    assert_eq!(engine.cancel_provision("crm", e1).unwrap_err().kind(), "unknown_system");
    let ghost = IdentityId::from_raw(999);
    assert_eq!(
        engine.cancel_provision("ad", ghost).unwrap_err().kind(),
        "unknown_identity"
    );
    let again = engine.provision("ad", e1, at(3)).unwrap();
    assert_eq!(again.ops.len(), 1);
}

#[test]
fn an_import_that_links_the_account_settles_a_pending_provisioning() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    assert_eq!(engine.provision("ad", e1, at(2)).unwrap().ops.len(), 1);
    // The host applied the create but never confirmed it; the directory's export shows
    // the account, and correlation links it.
    let employee = engine.identity(e1).unwrap().unwrap().value("employeeNumber").clone();
    let ad = snapshot(json!({ "mode": "incremental",
        "upserts": [ { "sam": "E1", "employeeID": employee.to_json() } ], "deletes": [] }));
    assert!(engine.import("ad", &ad, at(3)).unwrap().applied);
    assert!(account(&engine, "ad", "E1").is_some_and(|a| a.identity() == Some(e1)));
    assert!(engine.identity(e1).unwrap().unwrap().pending_creates.is_empty());
}

#[test]
fn provisioning_many_identities_gives_one_plan() {
    let mut engine = loaded(json!({}));
    let ids: Vec<IdentityId> = ["E3", "E1", "E2"].iter().map(|e| identity_of(&engine, e)).collect();
    let plan = engine.provision_many("ad", &ids, at(2)).unwrap();
    assert!(!plan.is_blocked());
    let keys: Vec<&str> = plan.ops.iter().map(Op::account).collect();
    assert_eq!(keys, ["E1", "E2", "E3"], "creates in key order");
    assert_eq!(plan.counts.inserted, 3);
    let report = engine.confirm(&plan.ops, at(2)).unwrap();
    assert_eq!(report.created, 3);
    for (id, key) in ids.iter().zip(["E3", "E1", "E2"]) {
        let stored = account(&engine, "ad", key).unwrap();
        assert_eq!(stored.identity(), Some(*id));
    }
    assert!(engine.outbound("ad", at(3)).unwrap().ops.is_empty());
}

#[test]
fn a_provisioning_batch_with_refused_requests_lists_them_all_and_provisions_none() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let e2 = identity_of(&engine, "E2");
    let e3 = identity_of(&engine, "E3");
    let _ = provision_ad(&mut engine, e1, at(2));
    let ghost = IdentityId::from_raw(999);
    let before = engine.store().clone();
    let err = engine
        .provision_many("ad", &[e2, e1, ghost, e3, e2], at(3))
        .unwrap_err();
    let OutboundError::ProvisioningRefused {
        system,
        requested,
        refusals,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((system.as_str(), *requested), ("ad", 5));
    let kinds: Vec<&str> = refusals.iter().map(OutboundError::kind).collect();
    assert_eq!(
        kinds,
        ["already_provisioned", "unknown_identity", "already_provisioned"]
    );
    assert_eq!(
        refusals[2],
        OutboundError::AlreadyProvisioned {
            identity: e2,
            system: "ad".into(),
            account: "E2".into()
        },
        "the second request for one identity collides with the first"
    );
    assert_eq!(err.kind(), "provisioning_refused");
    let message = err.to_string();
    assert!(message.contains("3 of 5") && message.contains("`ad`"), "{message}");
    assert_eq!(engine.store(), &before, "a refused batch provisions none");
}

#[test]
fn a_provisioning_batch_refuses_two_identities_that_would_share_a_key() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let e2 = identity_of(&engine, "E2");
    // E2 takes E1's employee number by a direct edit: both would be created as `E1`.
    let _ = engine
        .set_attributes(e2, &[("employeeNumber".into(), json!("E1"))], at(2))
        .unwrap();
    let err = engine.provision_many("ad", &[e1, e2], at(3)).unwrap_err();
    let OutboundError::ProvisioningRefused { refusals, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        refusals.as_slice(),
        [OutboundError::AccountExists {
            system: "ad".into(),
            account: "E1".into()
        }]
    );
}

#[test]
fn a_new_blocked_outbound_plan_replaces_the_older_one_of_its_system() {
    let config = edited(|c| c["systems"]["ad"]["thresholds"] = json!({ "max_updated": 0 }));
    let mut engine = Engine::new(config);
    let _ = engine.import("hr", &complete(hr_rows()), at(1)).unwrap();
    let ids: Vec<IdentityId> = ["E1", "E2"].iter().map(|e| identity_of(&engine, e)).collect();
    let plan = engine.provision_many("ad", &ids, at(2)).unwrap();
    let _ = engine.confirm(&plan.ops, at(2)).unwrap();
    let titles = json!([ { "id": "E1", "title": "Lead" } ]);
    let _ = engine.import("hr", &incremental(titles, json!([])), at(3)).unwrap();
    let first = engine.outbound("ad", at(4)).unwrap();
    assert!(first.is_blocked());
    let second = engine.outbound("ad", at(5)).unwrap();
    assert!(second.is_blocked());
    let waiting: Vec<PlanId> = engine
        .pending_plans()
        .unwrap()
        .iter()
        .map(attrflow::PendingPlan::id)
        .collect();
    assert_eq!(waiting, [second.id], "only the newer blocked outbound plan waits");
    assert_eq!(
        engine.approve(first.id).unwrap_err(),
        ApproveError::UnknownPlan(first.id)
    );
    assert!(engine.approve(second.id).is_ok());
}

// ---------------------------------------------------------------- confirmation

/// `op` with its account key replaced (ops are built by the engine; a host may
/// deserialize one from its own records).
fn with_account(op: &Op, account: &str) -> Op {
    let mut raw = serde_json::to_value(op).unwrap();
    raw["account"] = json!(account);
    serde_json::from_value(raw).unwrap()
}

#[test]
fn confirming_an_update_of_an_unknown_account_records_nothing() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let e2 = identity_of(&engine, "E2");
    provision_ad(&mut engine, e1, at(2));
    provision_ad(&mut engine, e2, at(2));
    // hr changes both titles; ad gets two update ops.
    let report = engine
        .import(
            "hr",
            &incremental(
                json!([ { "id": "E1", "title": "Lead" }, { "id": "E2", "title": "Senior Analyst" } ]),
                json!([]),
            ),
            at(3),
        )
        .unwrap();
    assert_eq!(report.plan.counts.updated, 2);
    let plan = engine.outbound("ad", at(4)).unwrap();
    assert_eq!(plan.ops.len(), 2, "{:?}", plan.ops);
    assert!(plan.ops.iter().all(|op| matches!(op, Op::Update(_))));

    let ghost = with_account(&plan.ops[0], "ghost");
    let batch = vec![plan.ops[0].clone(), ghost, plan.ops[1].clone()];
    let before = engine.store().clone();
    let err = engine.confirm(&batch, at(4)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::UnknownAccount {
            system: "ad".into(),
            account: "ghost".into()
        }
    );
    assert_eq!(err.kind(), "unknown_account");
    let message = err.to_string();
    assert!(message.contains("`ad`") && message.contains("`ghost`"), "{message}");
    assert_eq!(engine.store(), &before, "a refused batch records none of its ops");

    // The good ops alone are accepted.
    let report = engine.confirm(&plan.ops, at(4)).unwrap();
    assert_eq!(report.updated, 2);
    assert!(engine.outbound("ad", at(5)).unwrap().ops.is_empty());
}

/// `op` with one field of its JSON form replaced (a host may build ops itself).
fn with_field(op: &Op, field: &str, value: Json) -> Op {
    let mut raw = serde_json::to_value(op).unwrap();
    raw[field] = value;
    serde_json::from_value(raw).unwrap()
}

#[test]
fn confirm_refuses_ops_that_do_not_fit_the_store_or_schema() {
    let config = edited(|c| c["systems"]["ad"]["schema"]["attributes"]["sam"]["case_exact"] = json!(false));
    let mut engine = Engine::new(config);
    let _ = engine.import("hr", &complete(hr_rows()), at(1)).unwrap();
    let e1 = identity_of(&engine, "E1");
    let plan = engine.provision("ad", e1, at(2)).unwrap();
    let create = plan.ops[0].clone();
    let raw = serde_json::to_value(&create).unwrap();
    let attributes = |edit: &dyn Fn(&mut Json)| {
        let mut a = raw["attributes"].clone();
        edit(&mut a);
        with_field(&create, "attributes", a)
    };
    let cases: Vec<(Op, &str)> = vec![
        (with_field(&create, "identity", json!(999)), "unknown_identity"),
        (with_field(&create, "account", json!("")), "invalid_key"),
        (with_field(&create, "account", json!("NotLower")), "invalid_key"),
        (
            attributes(&|a| a["title"] = json!({ "single": { "integer": 5 } })),
            "invalid_value",
        ),
        (
            attributes(&|a| a["title"] = json!({ "multi": [ { "text": "A" }, { "text": "B" } ] })),
            "invalid_value",
        ),
    ];
    let before = engine.store().clone();
    for (op, kind) in &cases {
        let Err(err) = engine.confirm(std::slice::from_ref(op), at(2)) else {
            panic!("accepted: {op:?}");
        };
        assert_eq!(err.kind(), *kind, "{op:?}: {err}");
        assert!(err.to_string().contains("`ad`") || *kind == "unknown_identity", "{err}");
        assert_eq!(engine.store(), &before, "{kind}: nothing is recorded");
    }
    // Two creates for one identity in one batch: the second is refused, and so the batch.
    let twice = vec![create.clone(), with_field(&create, "account", json!("other"))];
    let err = engine.confirm(&twice, at(2)).unwrap_err();
    assert_eq!(err.kind(), "already_provisioned", "{err}");
    assert_eq!(engine.store(), &before);
    // The op as planned is accepted, and the state still loads.
    assert_eq!(engine.confirm(&[create], at(2)).unwrap().created, 1);
    let reloaded = attrflow::MemoryStore::decode(&engine.store().encode()).unwrap();
    assert_eq!(&reloaded, engine.store());
}

#[test]
fn confirming_a_create_of_an_existing_account_records_nothing() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let e2 = identity_of(&engine, "E2");
    let op = provision_ad(&mut engine, e1, at(2));
    let fresh = engine.provision("ad", e2, at(3)).unwrap().ops;
    let before = engine.store().clone();
    let batch = vec![fresh[0].clone(), op];
    let err = engine.confirm(&batch, at(3)).unwrap_err();
    assert_eq!(
        err,
        OutboundError::AccountExists {
            system: "ad".into(),
            account: "E1".into()
        }
    );
    assert_eq!(err.kind(), "account_exists");
    assert!(err.to_string().contains("`E1`"), "{err}");
    assert_eq!(engine.store(), &before);
}

// ---------------------------------------------------------------- host edits

#[test]
fn set_attributes_with_an_unknown_attribute_writes_nothing() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let before = engine.store().clone();
    let err = engine
        .set_attributes(
            e1,
            &[("title".into(), json!("Boss")), ("nickname".into(), json!("Bob"))],
            at(2),
        )
        .unwrap_err();
    assert_eq!(
        err,
        EditError::UnknownAttribute {
            attribute: "nickname".into(),
            hint: None
        }
    );
    assert_eq!(err.kind(), "unknown_attribute");
    assert!(err.to_string().contains("`nickname`"), "{err}");
    assert_eq!(engine.store(), &before, "the valid `title` is not written either");
}

#[test]
fn set_attributes_with_an_invalid_value_writes_nothing() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let before = engine.store().clone();
    for (attribute, value) in [
        ("hireDate", json!("yesterday")),
        ("hireDate", json!(20200115)),
        ("title", json!(["Boss", "Chief"])),
        ("title", json!({ "text": "Boss" })),
    ] {
        let err = engine
            .set_attributes(
                e1,
                &[("title".into(), json!("Boss")), (attribute.into(), value.clone())],
                at(2),
            )
            .unwrap_err();
        assert!(
            matches!(&err, EditError::InvalidValue { attribute: a, .. } if a == attribute),
            "{value}: {err:?}"
        );
        assert_eq!(err.kind(), "invalid_value");
        assert!(err.to_string().contains(&format!("`{attribute}`")), "{err}");
        assert_eq!(engine.store(), &before, "{value}");
    }
    let err = engine
        .set_attributes(IdentityId::from_raw(999), &[("title".into(), json!("Boss"))], at(2))
        .unwrap_err();
    assert_eq!(err, EditError::UnknownIdentity(IdentityId::from_raw(999)));
    assert_eq!(engine.store(), &before);
}

#[test]
fn setting_a_computed_attribute_is_refused() {
    let config = edited(|c| {
        c["identity"]["attributes"]["label"] =
            json!({ "type": "string", "computed": { "concat": [ { "attr": "title" }, "!" ] } });
    });
    let mut engine = Engine::new(config);
    let _ = engine.import("hr", &complete(hr_rows()), at(1)).unwrap();
    let e1 = identity_of(&engine, "E1");
    assert_eq!(
        engine.identity(e1).unwrap().unwrap().value("label").to_json(),
        json!("Engineer!")
    );
    let before = engine.store().clone();
    let err = engine
        .set_attributes(
            e1,
            &[("title".into(), json!("Boss")), ("label".into(), json!("mine"))],
            at(2),
        )
        .unwrap_err();
    assert_eq!(err, EditError::ComputedAttribute("label".into()));
    assert_eq!(err.kind(), "computed_attribute");
    assert!(err.to_string().contains("`label`"), "{err}");
    assert_eq!(engine.store(), &before, "nothing is written");
}

// ---------------------------------------------------------------- configuration changes

/// The base configuration with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Json)) -> ValidatedConfig {
    let mut raw = config_json(json!({}));
    edit(&mut raw);
    ValidatedConfig::from_json(&raw.to_string()).unwrap()
}

fn refused_kinds(err: &ConfigChangeError) -> Vec<&'static str> {
    match err {
        ConfigChangeError::Refused { problems } => problems.iter().map(SchemaChangeProblem::kind).collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn changing_the_key_attribute_is_refused_unless_forced() {
    let mut engine = loaded(json!({}));
    let old = engine.config().clone();
    let before = engine.store().clone();
    let new = edited(|c| c["systems"]["hr"]["schema"]["account_id"] = json!("title"));
    let err = engine.replace_config(new, false, at(2)).unwrap_err();
    assert_eq!(refused_kinds(&err), vec!["immutable_key_change"]);
    let ConfigChangeError::Refused { problems } = &err else {
        unreachable!()
    };
    assert_eq!(
        problems[0],
        SchemaChangeProblem::ImmutableKeyChange {
            system: "hr".into(),
            field: "account_id".into(),
            from: "id".into(),
            to: "title".into()
        }
    );
    assert!(problems[0].forcible());
    let message = err.to_string();
    for name in ["`hr`", "`account_id`", "`id`", "`title`"] {
        assert!(message.contains(name), "{name} in {message}");
    }
    assert_eq!(engine.store(), &before);
    assert_eq!(engine.config(), &old);
}

#[test]
fn removing_an_attribute_with_values_is_refused_unless_forced() {
    let mut engine = loaded(json!({}));
    let old = engine.config().clone();
    let before = engine.store().clone();
    let new = edited(|c| {
        let hr = &mut c["systems"]["hr"];
        hr["schema"]["attributes"].as_object_mut().unwrap().remove("title");
        hr["flows"].as_array_mut().unwrap().retain(|f| f["account"] != "title");
    });
    let err = engine.replace_config(new, false, at(2)).unwrap_err();
    assert_eq!(refused_kinds(&err), vec!["attribute_has_values"]);
    let ConfigChangeError::Refused { problems } = &err else {
        unreachable!()
    };
    assert_eq!(
        problems[0],
        SchemaChangeProblem::AttributeHasValues {
            system: "hr".into(),
            attribute: "title".into(),
            accounts: 3
        }
    );
    let message = err.to_string();
    assert!(message.contains("`hr`") && message.contains("`title`"), "{message}");
    assert_eq!(engine.store(), &before);
    assert_eq!(engine.config(), &old);
}

#[test]
fn narrowing_a_multi_valued_attribute_is_refused_even_when_forced() {
    let mut engine = loaded(json!({}));
    let old = engine.config().clone();
    let before = engine.store().clone();
    // E1 holds two groups. Remove `title` too: every refusal is reported together.
    let new = edited(|c| {
        let hr = &mut c["systems"]["hr"];
        hr["schema"]["attributes"]["groups"]["multi"] = json!(false);
        hr["schema"]["attributes"].as_object_mut().unwrap().remove("title");
        hr["flows"].as_array_mut().unwrap().retain(|f| f["account"] != "title");
    });
    for force in [false, true] {
        let err = engine.replace_config(new.clone(), force, at(2)).unwrap_err();
        let mut kinds = refused_kinds(&err);
        kinds.sort_unstable();
        // Without force both are refusals; under force only what force cannot override.
        let expected = if force {
            vec!["multi_values_present"]
        } else {
            vec!["attribute_has_values", "multi_values_present"]
        };
        assert_eq!(kinds, expected, "force={force}");
        let ConfigChangeError::Refused { problems } = &err else {
            unreachable!()
        };
        let multi = problems.iter().find(|p| p.kind() == "multi_values_present").unwrap();
        assert_eq!(
            multi,
            &SchemaChangeProblem::MultiValuesPresent {
                system: "hr".into(),
                attribute: "groups".into(),
                accounts: 1
            }
        );
        assert!(!multi.forcible());
        let message = err.to_string();
        assert!(message.contains("`hr`") && message.contains("`groups`"), "{message}");
        if !force {
            assert!(message.contains("`title`"), "{message}");
        }
        assert_eq!(engine.store(), &before, "force={force}");
        assert_eq!(engine.config(), &old, "force={force}");
    }
}

// ---------------------------------------------------------------- connectors

#[test]
fn push_confirms_only_ops_the_connector_applied() {
    let mut engine = loaded(json!({}));
    let columns: Vec<String> = ["sam", "employeeID", "title", "memberOf"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut ad = MemoryConnector::new("ad", "sam", columns);
    for (sam, employee, title) in [
        ("jdoe", "E1", "Old"),
        ("asmith", "E2", "Analyst"),
        ("bbrown", "E3", "Old"),
    ] {
        let row = json!({ "sam": sam, "employeeID": employee, "title": title, "memberOf": [] });
        ad.upsert(row.as_object().unwrap().clone());
    }
    let report = pull(&mut engine, &mut ad, ExportMode::Complete, at(2)).unwrap();
    assert!(report.applied);
    assert_eq!(report.plan.counts.inserted, 3);
    assert!(engine.unlinked().unwrap().is_empty(), "every ad account correlates");

    ad.refuse_ops_on("bbrown");
    let (plan, statuses) = push(&mut engine, &mut ad, at(3)).unwrap();
    // jdoe: title and groups; asmith: nothing (title equal, no groups); bbrown: title and groups.
    let accounts: Vec<&str> = plan.ops.iter().map(Op::account).collect();
    assert_eq!(accounts, vec!["bbrown", "jdoe"]);
    assert_eq!(statuses.len(), 2);
    assert!(matches!(statuses[0], OpStatus::Failed(ref m) if m.contains("bbrown")));
    assert_eq!(statuses[1], OpStatus::Applied);

    // The applied op is confirmed: the mirror and the target hold the new values.
    let jdoe = account(&engine, "ad", "jdoe").unwrap();
    assert_eq!(jdoe.value("title").to_json(), json!("Engineer"));
    assert_eq!(jdoe.value("memberOf").to_json(), json!(["G1", "G2"]));
    assert_eq!(ad.row("jdoe").unwrap()["title"], json!("Engineer"));
    // The refused op is not.
    let bbrown = account(&engine, "ad", "bbrown").unwrap();
    assert_eq!(bbrown.value("title").to_json(), json!("Old"));
    assert_eq!(ad.row("bbrown").unwrap()["title"], json!("Old"));

    // It is planned again, identically; the confirmed one is not.
    let again = engine.outbound("ad", at(4)).unwrap();
    assert_eq!(again.ops, vec![plan.ops[0].clone()]);

    // The delta of the target shows only what changed, and importing it changes nothing.
    let report = pull(&mut engine, &mut ad, ExportMode::Delta, at(5)).unwrap();
    assert!(report.plan.changes.is_empty(), "{:?}", report.plan.changes);
    assert_eq!(ad.system(), "ad");
}

// ---------------------------------------------------------------- pause and resume

#[test]
fn resume_applies_each_queued_import_as_it_would_have_been_applied_unpaused() {
    let imports = [
        (json!([ { "id": "E9", "title": "Trainee" } ]), at(2)),
        (json!([ { "id": "E9", "title": "Engineer" } ]), at(3)),
        (json!([ { "id": "E1", "title": "" } ]), at(4)),
    ];
    let mut unpaused = loaded(json!({}));
    for (rows, now) in &imports {
        let _ = unpaused
            .import("hr", &incremental(rows.clone(), json!([])), *now)
            .unwrap();
    }
    let mut paused = loaded(json!({}));
    paused.pause().unwrap();
    for (rows, now) in &imports {
        let _ = paused
            .import("hr", &incremental(rows.clone(), json!([])), *now)
            .unwrap();
    }
    let report = paused.resume().unwrap();
    assert_eq!(report.imports.len(), 3);
    let everyone = |engine: &Engine| {
        let mut out = Vec::new();
        engine.store().visit_identities(&mut |i| out.push(i.clone())).unwrap();
        out
    };
    // Values, provenance (system, strength, create or update, time) and all.
    assert_eq!(everyone(&paused), everyone(&unpaused));
    let e9 = identity_of(&paused, "E9");
    let identity = paused.identity(e9).unwrap().unwrap();
    let provenance = identity.provenance("title").unwrap();
    assert_eq!((provenance.phase, provenance.at), (attrflow::Phase::Update, at(3)));
}

#[test]
fn resume_reports_entries_of_a_system_removed_while_paused() {
    let mut engine = loaded(json!({}));
    engine.pause().unwrap();
    let ad =
        snapshot(json!({ "mode": "incremental", "upserts": [ { "sam": "x1", "employeeID": "E1" } ], "deletes": [] }));
    let _ = engine.import("ad", &ad, at(2)).unwrap();
    let without_ad = edited(|c| {
        c["systems"].as_object_mut().unwrap().remove("ad");
    });
    let _ = engine.replace_config(without_ad, true, at(3)).unwrap();
    let report = engine.resume().unwrap();
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(
        (
            report.dropped[0].system.as_str(),
            report.dropped[0].work.account.as_str()
        ),
        ("ad", "x1")
    );
}

// ---------------------------------------------------------------- resource budget

/// `levels` nested `replace`s, each making a text ten times longer: twelve ask 10^12
/// bytes of a 2 KB configuration.
fn replace_bomb(levels: usize) -> Json {
    let mut t = json!({ "attr": "title" });
    for _ in 0..levels {
        t = json!({ "replace": [t, "a", "aaaaaaaaaa"] });
    }
    t
}

#[test]
fn a_transform_that_grows_past_its_budget_on_ordinary_values_is_refused_by_validation() {
    let mut raw = config_json(json!({}));
    raw["identity"]["attributes"]["label"] = json!({ "type": "string", "computed": replace_bomb(12) });
    // Lint finishes (it used to allocate gigabytes and abort); validation refuses.
    let _findings = attrflow::lint::lint(&serde_json::from_value(raw.clone()).unwrap());
    let err = ValidatedConfig::from_json(&raw.to_string()).unwrap_err();
    let problems = match &err {
        attrflow::ConfigError::Invalid(problems) => &problems.0,
        other => panic!("expected validation errors, got {other:?}"),
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind().as_str(), "transform_too_large");
    assert_eq!(problems[0].place().attribute.as_deref(), Some("label"));
}

#[test]
fn a_transform_that_would_grow_past_its_budget_is_refused_at_evaluation() {
    // Four levels pass validation (1 KiB of `a`s would make 10 MiB) ...
    let config = edited(|c| {
        c["identity"]["attributes"]["label"] = json!({ "type": "string", "computed": replace_bomb(4) });
    });
    let mut engine = Engine::new(config);
    // ... but a 20 KiB title would make 200 MiB.
    let report = engine
        .import(
            "hr",
            &complete(json!([ { "id": "E1", "title": "a".repeat(20 * 1024), "groups": [] } ])),
            at(1),
        )
        .unwrap();
    assert!(report.applied);
    let e1 = identity_of(&engine, "E1");
    assert!(
        engine.identity(e1).unwrap().unwrap().value("label").is_empty(),
        "no value is made"
    );
    let errors = &report.processing.errors;
    assert!(
        errors
            .iter()
            .any(|e| e.attribute == "label" && e.kind == "too_large" && e.message.contains("budget")),
        "the error names the attribute and the budget: {errors:?}"
    );
}

/// Every public report reads as one line for an administrator or a log, with the
/// figures it holds (`main() -> Result<(), Box<dyn Error>>` hosts print them as they are).
#[test]
fn reports_display_what_they_hold() {
    let mut engine = Engine::new(config(json!({ "max_deleted": 1 })));
    let load = engine.import("hr", &complete(hr_rows()), at(1)).unwrap();
    assert_eq!(
        load.to_string(),
        format!(
            "import {} of `hr`: applied; 3 inserted, 0 updated, 0 deleted; multi-valued: 3 values added, 0 removed (0 updated accounts); 0 rows rejected; {}; 3 accounts correlated; 3 identities changed",
            load.plan.id, load.decisions
        )
    );
    let leavers = engine.import("hr", &complete(json!([])), at(2)).unwrap();
    assert!(!leavers.applied);
    let text = leavers.to_string();
    assert!(
        text.contains("blocked, nothing applied (0 inserted, 0 updated, 3 deleted;"),
        "{text}"
    );
    assert!(text.contains("max_deleted: 3, over the limit of 1"), "{text}");
    assert_eq!(
        leavers.plan.exceeded[0].to_string(),
        "max_deleted: 3, over the limit of 1"
    );

    let ad = json!([{ "sam": "a1", "employeeID": "E1", "title": "Old", "memberOf": [] }]);
    let _ = engine.import("ad", &ad_complete(ad), at(3)).unwrap();
    let plan = engine.outbound("ad", at(3)).unwrap();
    let text = plan.to_string();
    assert!(
        text.starts_with(&format!("outbound {} for `ad`: {} ops (", plan.id, plan.ops.len())),
        "{text}"
    );
    assert!(text.contains(&plan.counts.to_string()), "{text}");
    assert!(!text.contains("blocked"), "{text}");
    let confirmed = engine.confirm(&plan.ops, at(3)).unwrap();
    assert_eq!(
        confirmed.to_string(),
        format!(
            "confirmed: 0 accounts created, {} updated, 0 deleted; 0 identities linked or unlinked",
            confirmed.updated
        )
    );
    let processed = engine.process(at(4)).unwrap();
    let text = processed.to_string();
    assert!(
        text.starts_with(&format!("processing: {} identities examined", processed.examined)),
        "{text}"
    );
}

/// An `invalid_value` rejection names the value and the type it did not parse as
/// (cut to 80 characters), so a schema that declares the wrong type is found from the
/// first rejection.
#[test]
fn an_invalid_value_rejection_names_the_value_and_the_declared_type() {
    let mut engine = Engine::new(config(json!({})));
    let long = "x".repeat(200);
    let rows = json!([
        { "id": "E1", "title": "Engineer", "hired": "next Monday", "groups": [] },
        { "id": "E2", "title": "Analyst", "hired": 20210601, "groups": [] },
        { "id": "E3", "title": "Clerk", "hired": long, "groups": [] }
    ]);
    let report = engine.import("hr", &complete(rows), at(1)).unwrap();
    let invalid: Vec<(String, attrflow::ValueType)> = report
        .plan
        .rejections
        .iter()
        .map(|r| {
            assert_eq!(r.reason, RejectionReason::InvalidValue);
            let i = r.invalid.as_ref().expect("the value and its type");
            (i.value.clone(), i.expected)
        })
        .collect();
    let cut = format!("{}...", "x".repeat(80));
    assert_eq!(
        invalid,
        vec![
            ("next Monday".to_owned(), attrflow::ValueType::Date),
            ("20210601".to_owned(), attrflow::ValueType::Date),
            (cut, attrflow::ValueType::Date),
        ]
    );
    let text = report.plan.rejections[0].to_string();
    assert!(
        text.contains("the value `next Monday` of `hired` does not parse as date, the type its schema declares"),
        "{text}"
    );
    let json = serde_json::to_value(&report.plan.rejections[0]).unwrap();
    assert_eq!(json["invalid"], json!({ "value": "next Monday", "expected": "date" }));
}

#[test]
fn set_attributes_suggests_the_declared_name_closest_to_a_misspelt_one() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let err = engine
        .set_attributes(e1, &[("titel".into(), json!("Boss"))], at(2))
        .unwrap_err();
    assert_eq!(
        err,
        EditError::UnknownAttribute {
            attribute: "titel".into(),
            hint: Some("did you mean `title`?".into())
        }
    );
    assert_eq!(
        err.to_string(),
        "identity attribute `titel` is not declared; did you mean `title`?"
    );
}

#[test]
fn a_host_edit_explains_itself_as_one() {
    let mut engine = loaded(json!({}));
    let e1 = identity_of(&engine, "E1");
    let decisions = engine
        .set_attributes(e1, &[("mail".into(), json!("e1@example.com"))], at(2))
        .unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        decisions[0].to_string(),
        format!("`mail` of {e1}: `e1@example.com` set by the host's direct edit (@host, create, score 100) applied; the attribute was empty")
    );
}

#[test]
fn identities_page_in_id_order_and_find_identities_agrees_with_a_scan() {
    let mut engine = loaded(json!({}));
    let more = json!([
        { "id": "E4", "title": "engineer", "hired": "2020-01-15", "groups": [] },
        { "id": "E5", "title": "Engineer", "hired": "2020-01-15", "groups": [] }
    ]);
    let _ = engine.import("hr", &incremental(more, json!([])), at(2)).unwrap();
    // Pages of two: every identity once, in id order.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = engine.identities(after, 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        all.extend(page);
    }
    assert_eq!(all.len(), engine.identity_count().unwrap());
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert!(engine.identities(after, 2).unwrap().is_empty());
    assert!(engine.identities(None, 0).unwrap().is_empty());
    // An indexed attribute (correlation's employeeNumber) and a scanned one (title)
    // answer as a scan of every identity does.
    for (attribute, value) in [
        ("employeeNumber", "E4"),
        ("employeeNumber", "e4"),
        ("title", "Engineer"),
    ] {
        let scanned: Vec<IdentityId> = all
            .iter()
            .filter(|i| i.value(attribute).as_str() == Some(value))
            .map(|i| i.id)
            .collect();
        assert_eq!(
            engine.find_identities(attribute, &json!(value)).unwrap(),
            scanned,
            "{attribute} = {value}"
        );
    }
    assert_eq!(engine.find_identities("employeeNumber", &json!("E4")).unwrap().len(), 1);
}

#[test]
fn values_convert_from_plain_rust_values_and_read_back_as_text() {
    assert_eq!(Value::from("x"), Value::Single(Scalar::Text("x".into())));
    assert_eq!(Value::from(String::new()), Value::Empty);
    assert_eq!(Value::from(42), Value::Single(Scalar::Integer(42)));
    assert_eq!(Value::from(true), Value::Single(Scalar::Boolean(true)));
    assert_eq!(Value::from("x").as_str(), Some("x"));
    assert_eq!(Value::from(42).as_str(), None);
    let groups = Value::multi(
        vec![Scalar::Text("b".into()), Scalar::Integer(1), Scalar::Text("a".into())],
        true,
    );
    assert_eq!(groups.texts().collect::<Vec<_>>(), vec!["a", "b"]);
}

#[test]
fn unlinked_accounts_are_named_by_system_and_key() {
    let mut engine = loaded(json!({}));
    let rows = json!([{ "sam": "x1", "employeeID": "E404", "title": "t", "memberOf": [] }]);
    let _ = engine.import("ad", &ad_complete(rows), at(2)).unwrap();
    let unlinked = engine.unlinked().unwrap();
    assert_eq!(unlinked.len(), 1);
    assert_eq!((unlinked[0].system.as_str(), unlinked[0].key.as_str()), ("ad", "x1"));
    assert_eq!(unlinked[0].state, LinkState::Unmatched);
}
