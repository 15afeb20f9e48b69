//! One history of engine calls over every kind of stored state (two systems'
//! imports with correlation, blocked plans, a host edit, outbound and provisioning with
//! confirmation, a pause with inbox and outbox, resume), and everything an engine lets
//! one observe of its store: the restart tests and the persisted-format fixtures
//! compare stores with it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "shared test helpers: not every test crate uses all of them, and they fail loudly"
)]

use attrflow::store::Store;
use attrflow::{Account, Approval, Engine, EngineState, Identity, IdentityId, PendingPlan, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value as Json};

pub fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).unwrap()
}

/// `hr` (authoritative, blocks any delete), `ad` (correlated on `employeeID`, outbound,
/// provisionable) and `phone` (a first load over its percentage limit is blocked).
pub fn config() -> ValidatedConfig {
    let json = json!({
        "identity": { "attributes": {
            "employeeNumber": { "type": "string" },
            "title": { "type": "string" },
            "hireDate": { "type": "date" },
            "groups": { "type": "string", "multi": true },
            "mail": { "type": "string", "case_exact": false }
        } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" },
                    "title": { "type": "string" },
                    "hired": { "type": "date" },
                    "groups": { "type": "string", "multi": true },
                    "mail": { "type": "string", "case_exact": false }
                } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                    { "account": "hired", "identity": "hireDate", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                    { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50, "delete": 50 },
                    { "account": "mail", "identity": "mail", "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
                ],
                "thresholds": { "max_deleted": 0 }
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
                "flows": [ { "account": "owner", "identity": "mail", "direction": "outbound" } ],
                "thresholds": { "max_pct_inserted": 50 }
            }
        }
    });
    ValidatedConfig::from_json(&json.to_string()).unwrap()
}

pub fn snapshot(value: Json) -> Snapshot {
    serde_json::from_value(value).unwrap()
}

pub fn hr(rows: Json) -> Snapshot {
    snapshot(json!({ "mode": "complete", "columns": ["id", "title", "hired", "groups", "mail"], "rows": rows }))
}

pub fn hr_rows() -> Json {
    json!([
        { "id": "E1", "title": "Engineer", "hired": "2020-01-15", "groups": ["G1", "G2"], "mail": "Ann@Example.org" },
        { "id": "E2", "title": "Analyst", "hired": "2021-06-01", "groups": [], "mail": "bob@example.org" },
        { "id": "E3", "title": "Clerk", "hired": "2022-03-01", "groups": ["G1"], "mail": "cy@example.org" }
    ])
}

pub fn ad() -> Snapshot {
    snapshot(
        json!({ "mode": "complete", "columns": ["sam", "employeeID", "title", "memberOf"], "rows": [
        { "sam": "ann", "employeeID": "E1", "title": "Engineer", "memberOf": ["G1"] },
        { "sam": "bob", "employeeID": "E2", "title": "Trainee", "memberOf": ["G9"] },
        { "sam": "ghost", "employeeID": "E9", "title": "Nobody", "memberOf": [] }
    ] }),
    )
}

pub fn phone() -> Snapshot {
    snapshot(json!({ "mode": "complete", "columns": ["ext", "owner"], "rows": [
        { "ext": "100", "owner": "ann@example.org" },
        { "ext": "101", "owner": "nobody@example.org" }
    ] }))
}

pub fn id_of<S: Store>(engine: &Engine<S>, employee: &str) -> IdentityId {
    let found = engine.find_identities("employeeNumber", &json!(employee)).unwrap();
    assert_eq!(found.len(), 1, "one identity with employeeNumber {employee}");
    found[0]
}

/// Everything an engine lets one observe of its store.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub identities: Vec<Identity>,
    pub identity_count: usize,
    pub accounts: Vec<(String, Vec<Account>)>,
    pub bases: Vec<(String, u64, u64)>,
    pub versions: Vec<(String, u64)>,
    pub accounts_of: Vec<(IdentityId, Vec<(String, String)>)>,
    pub pending: Vec<PendingPlan>,
    pub state: EngineState,
    pub index_answers: Vec<(String, String, Vec<IdentityId>)>,
    pub engine_answers: Vec<(String, Json, Vec<IdentityId>)>,
    pub unlinked: Vec<attrflow::UnlinkedAccount>,
}

/// What a version-1 state holds of an observation: version 1 did not record which
/// accounts the engine created (`Account::provisioned`), so an account created then
/// loads as not the engine's own (it is never deleted unless `delete_unowned`).
pub fn as_version_1(mut observed: Observed) -> Observed {
    for (_, accounts) in &mut observed.accounts {
        for account in accounts {
            account.provisioned = false;
        }
    }
    observed
}

pub fn observe<S: Store>(engine: &Engine<S>) -> Observed {
    let store = engine.store();
    let mut identities = Vec::new();
    store.visit_identities(&mut |i| identities.push(i.clone())).unwrap();
    let systems = ["ad", "hr", "phone", "unknown"];
    let mut accounts = Vec::new();
    let mut bases = Vec::new();
    let mut versions = Vec::new();
    for system in systems {
        let mut held = Vec::new();
        store.visit_accounts(system, &mut |a| held.push(a.clone())).unwrap();
        held.sort_by(|a, b| a.key.cmp(&b.key));
        for account in &held {
            assert_eq!(store.account(system, &account.key).unwrap().as_ref(), Some(account));
        }
        accounts.push((system.to_owned(), held));
        let base = store.account_base(system).unwrap();
        bases.push((system.to_owned(), base.accounts, base.link_values));
        versions.push((system.to_owned(), store.system_version(system).unwrap()));
    }
    let mut accounts_of = Vec::new();
    for id in identities.iter().map(|i| i.id).chain([IdentityId::from_raw(999)]) {
        accounts_of.push((id, store.accounts_of(id).unwrap()));
    }
    let mut index_answers = Vec::new();
    for (attribute, key) in [
        ("employeeNumber", "E1"),
        ("employeeNumber", "E2"),
        ("employeeNumber", "E3"),
        ("employeeNumber", "E4"),
        ("employeeNumber", "e1"),
        ("employeeNumber", "E9"),
        ("mail", "ann@example.org"),
        ("mail", "Ann@Example.org"),
        ("title", "Engineer"),
    ] {
        index_answers.push((
            attribute.to_owned(),
            key.to_owned(),
            store.find_identities(attribute, key).unwrap(),
        ));
    }
    let mut engine_answers = Vec::new();
    for (attribute, value) in [
        ("title", json!("Lead")),
        ("title", json!("Analyst")),
        ("groups", json!("G1")),
        ("mail", json!("ANN@example.org")),
    ] {
        let found = engine.find_identities(attribute, &value).unwrap();
        engine_answers.push((attribute.to_owned(), value, found));
    }
    Observed {
        identity_count: store.identity_count().unwrap(),
        identities,
        accounts,
        bases,
        versions,
        accounts_of,
        pending: store.pending_plans().unwrap(),
        state: store.engine_state().unwrap(),
        index_answers,
        engine_answers,
        unlinked: engine.unlinked().unwrap(),
    }
}

/// The steps before the restart: imports of two systems with correlation, two blocked
/// plans (one over a percentage limit on a first load), a host edit, outbound with
/// confirmation, and provisioning with confirmation.
pub fn before_restart<S: Store>(engine: &mut Engine<S>) {
    let report = engine.import("hr", &hr(hr_rows()), at(1)).unwrap();
    assert!(report.applied);
    let report = engine.import("ad", &ad(), at(2)).unwrap();
    assert!(report.applied);
    let report = engine.import("phone", &phone(), at(2)).unwrap();
    assert!(!report.applied, "a first load over a percentage limit is blocked");
    let rows = json!([hr_rows()[0].clone(), hr_rows()[1].clone()]);
    let report = engine.import("hr", &hr(rows), at(3)).unwrap();
    assert!(!report.applied, "a delete is blocked");

    let e1 = id_of(engine, "E1");
    engine
        .set_attributes(e1, &[("title".into(), json!("Lead"))], at(4))
        .unwrap();
    let plan = engine.outbound("ad", at(5)).unwrap();
    assert!(!plan.ops.is_empty());
    assert!(!plan.is_blocked());
    engine.confirm(&plan.ops, at(5)).unwrap();

    let e3 = id_of(engine, "E3");
    let plan = engine.provision("ad", e3, at(6)).unwrap();
    assert_eq!(plan.ops.len(), 1);
    engine.confirm(&plan.ops, at(6)).unwrap();
}

/// The steps after the restart: approvals of both blocked plans (ids and counters must
/// have survived), then a pause: a new hire waits in the inbox, outbound ops in the
/// outbox.
pub fn after_restart<S: Store>(engine: &mut Engine<S>) {
    let pending = engine.pending_plans().unwrap();
    assert_eq!(pending.len(), 2);
    for plan in pending {
        let Approval::Import(report) = engine.approve(plan.id()).unwrap() else {
            panic!("only import plans were blocked");
        };
        assert!(report.applied);
    }
    engine.pause().unwrap();
    let rows = json!([
        hr_rows()[0].clone(),
        { "id": "E2", "title": "Senior Analyst", "hired": "2021-06-01", "groups": ["G2"], "mail": "bob@example.org" },
        { "id": "E4", "title": "Engineer", "hired": "2026-05-08", "groups": ["G2"], "mail": "dee@example.org" }
    ]);
    let report = engine.import("hr", &hr(rows), at(8)).unwrap();
    assert!(report.applied, "the mirror is updated while paused");
    assert!(!engine.inbox().unwrap().is_empty());
    let plan = engine.outbound("ad", at(9)).unwrap();
    assert!(plan.ops.is_empty(), "held while paused");
}

/// After the second restart: resume, and sync what the inbox brought.
pub fn after_resume<S: Store>(engine: &mut Engine<S>) {
    let resumed = engine.resume().unwrap();
    assert_eq!(resumed.imports.len(), 1);
    let plan = engine.outbound("ad", at(10)).unwrap();
    assert!(!plan.ops.is_empty());
    engine.confirm(&plan.ops, at(10)).unwrap();
}
