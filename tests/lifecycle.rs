//! Public-API tests of joiner, mover, leaver and sync triggers (SPEC 10-11): what the
//! engine remembers survives a restart of either store, a refused confirmation changes
//! nothing, connectors carry out deletes, and `outbound_for` holds exactly the ops of
//! `outbound` for the identities given (a property over random populations).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use std::collections::BTreeSet;

use attrflow::connector::push;
use attrflow::store::Store;
use attrflow::{
    DeleteOp, Engine, IdentityId, MemoryConnector, MemoryStore, Op, OutboundError, Snapshot, ValidatedConfig,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

/// 2026-03-`day` 08:00 UTC.
fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, 8, 0, 0).unwrap()
}

/// `hr` (authoritative: id, login, status, dept) and `app`: in scope while `status` is
/// `active`, provisioned automatically, locked when out of scope, deleted after 7 days;
/// `dept` flows out and a role grants `Sales` to the sales department.
fn config() -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" }, "login": { "type": "string" },
                "status": { "type": "string" }, "department": { "type": "string" }
            } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "login": { "type": "string" },
                        "status": { "type": "string" }, "dept": { "type": "string" } } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "login", "identity": "login", "direction": "inbound", "create": 80, "update": 80, "delete": 80 },
                        { "account": "status", "identity": "status", "direction": "inbound", "create": 80, "update": 80, "delete": 80 },
                        { "account": "dept", "identity": "department", "direction": "inbound", "create": 80, "update": 80, "delete": 80 }
                    ]
                },
                "app": {
                    "schema": { "account_id": "user", "account_name": "user", "attributes": {
                        "user": { "type": "string" }, "dept": { "type": "string" }, "locked": { "type": "boolean" },
                        "groups": { "type": "string", "multi": true, "entitlement": true } } },
                    "correlation": [ [ { "account": "user", "identity": "login" } ] ],
                    "flows": [
                        { "account": "user", "identity": "login", "direction": "disabled" },
                        { "account": "dept", "identity": "department", "direction": "outbound" }
                    ],
                    "scope": { "eq": [ { "attr": "status" }, "active" ] },
                    "provisioning": { "auto": true },
                    "deprovisioning": { "disable": { "locked": true }, "enable": { "locked": false }, "delete_after_days": 7 }
                }
            },
            "roles": { "sales": { "criteria": { "eq": [ { "attr": "department" }, "Sales" ] },
                                  "grants": { "app": { "groups": [ "Sales" ] } } } }
        })
        .to_string(),
    )
    .unwrap()
}

fn hr(rows: Json) -> Snapshot {
    Snapshot::Complete {
        columns: ["id", "login", "status", "dept"].map(String::from).to_vec(),
        rows: serde_json::from_value(rows).unwrap(),
    }
}

fn person(id: &str, login: Option<&str>, status: &str, dept: &str) -> Json {
    json!({ "id": id, "login": login, "status": status, "dept": dept })
}

fn id_of<S: Store>(engine: &Engine<S>, employee: &str) -> IdentityId {
    engine.find_identities("employeeNumber", &json!(employee)).unwrap()[0]
}

/// Two hires provisioned and confirmed, then `E2` leaves on day 2.
fn story<S: Store>(engine: &mut Engine<S>) {
    let rows = json!([
        person("E1", Some("ann"), "active", "Sales"),
        person("E2", Some("bob"), "active", "Eng")
    ]);
    assert!(engine.import("hr", &hr(rows), at(1)).unwrap().applied);
    let plan = engine.outbound("app", at(1)).unwrap();
    assert_eq!(plan.counts.inserted, 2);
    engine.confirm(&plan.ops, at(1)).unwrap();
    let rows = json!([
        person("E1", Some("ann"), "active", "Sales"),
        person("E2", Some("bob"), "left", "Eng")
    ]);
    let report = engine.import("hr", &hr(rows), at(2)).unwrap();
    assert_eq!(report.changed, vec![id_of(engine, "E2")]);
}

/// What the engine must remember across a restart: the accounts it created and since
/// when each identity is out of scope, seen through the plans it computes.
fn remembered<S: Store>(engine: &mut Engine<S>) {
    let bob = id_of(engine, "E2");
    let identity = engine.identity(bob).unwrap().unwrap();
    assert_eq!(identity.out_of_scope.get("app"), Some(&at(2)));
    let account = engine.account("app", "bob").unwrap().unwrap();
    assert!(account.provisioned);
    let disable = engine.outbound("app", at(3)).unwrap();
    assert_eq!(disable.counts.updated, 1);
    engine.confirm(&disable.ops, at(3)).unwrap();
    assert!(engine.account("app", "bob").unwrap().unwrap().disabled);
    let due = at(2) + TimeDelta::days(7);
    assert!(engine
        .outbound("app", due - TimeDelta::seconds(1))
        .unwrap()
        .ops
        .is_empty());
    let delete = engine.outbound("app", due).unwrap();
    assert_eq!(
        delete.ops,
        vec![Op::Delete(
            serde_json::from_value(json!({ "system": "app", "account": "bob", "identity": bob })).unwrap()
        )]
    );
    let report = engine.confirm(&delete.ops, due).unwrap();
    assert_eq!((report.deleted, report.changed.clone()), (1, vec![bob]));
    assert!(engine.account("app", "bob").unwrap().is_none());
    assert!(engine.store().accounts_of(bob).unwrap().iter().all(|(s, _)| s != "app"));
}

#[test]
fn ownership_and_scope_survive_a_memory_store_restart() {
    let mut engine = Engine::new(config());
    story(&mut engine);
    let bytes = engine.into_store().encode();
    let mut reloaded = Engine::with_store(config(), MemoryStore::decode(&bytes).unwrap()).unwrap();
    remembered(&mut reloaded);
}

#[cfg(feature = "sqlite")]
#[test]
fn ownership_and_scope_survive_a_sqlite_store_restart() {
    use attrflow::sqlite_store::SqliteStore;
    let dir = std::env::temp_dir().join(format!("attrflow-lifecycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("attrflow.db");
    {
        let mut engine = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
        story(&mut engine);
    }
    let mut reloaded = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    remembered(&mut reloaded);
    drop(reloaded);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn confirming_a_delete_of_an_account_not_stored_changes_nothing() {
    let mut engine = Engine::new(config());
    story(&mut engine);
    let before = engine.store().encode();
    let bob = id_of(&engine, "E2");
    let ghost = |account: &str| -> DeleteOp {
        serde_json::from_value(json!({ "system": "app", "account": account, "identity": bob })).unwrap()
    };
    // A valid update first: the batch is refused as a whole.
    let lock: Op = serde_json::from_value(
        json!({ "op": "update", "system": "app", "account": "bob", "identity": bob, "set": { "locked": { "single": { "boolean": true } } } }),
    )
    .unwrap();
    let err = engine.confirm(&[lock, Op::Delete(ghost("nobody"))], at(3)).unwrap_err();
    assert!(
        matches!(&err, OutboundError::UnknownAccount { system, account } if system == "app" && account == "nobody"),
        "{err:?}"
    );
    assert_eq!(err.kind(), "unknown_account");
    // Deleting the same account twice in one batch: the second finds nothing.
    let err = engine
        .confirm(&[Op::Delete(ghost("bob")), Op::Delete(ghost("bob"))], at(3))
        .unwrap_err();
    assert!(matches!(err, OutboundError::UnknownAccount { .. }), "{err:?}");
    assert_eq!(engine.store().encode(), before);
    assert!(matches!(
        engine.sync(IdentityId::from_raw(999), at(3)),
        Err(OutboundError::UnknownIdentity(_))
    ));
}

#[test]
fn a_connector_carries_out_deletes() {
    let mut engine = Engine::new(config());
    let mut app = MemoryConnector::new(
        "app",
        "user",
        vec!["user".into(), "dept".into(), "locked".into(), "groups".into()],
    );
    let rows = json!([person("E1", Some("ann"), "active", "Sales")]);
    assert!(engine.import("hr", &hr(rows), at(1)).unwrap().applied);
    let (_, statuses) = push(&mut engine, &mut app, at(1)).unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(app.row("ann").and_then(|r| r.get("groups")), Some(&json!(["Sales"])));
    let rows = json!([person("E1", Some("ann"), "left", "Sales")]);
    assert!(engine.import("hr", &hr(rows), at(2)).unwrap().applied);
    let (lock, _) = push(&mut engine, &mut app, at(2)).unwrap();
    assert_eq!(lock.counts.updated, 1);
    assert_eq!(app.row("ann").and_then(|r| r.get("locked")), Some(&json!(true)));
    let (plan, _) = push(&mut engine, &mut app, at(9)).unwrap();
    assert_eq!(plan.counts.deleted, 1);
    assert_eq!(plan.counts.link_deleted, 1);
    assert!(app.row("ann").is_none());
    assert!(engine.account("app", "ann").unwrap().is_none());
}

#[test]
fn a_paused_import_changes_no_identity_until_resume_reports_them() {
    let mut engine = Engine::new(config());
    let rows = json!([person("E1", Some("ann"), "active", "Sales")]);
    assert!(engine.import("hr", &hr(rows), at(1)).unwrap().applied);
    engine.pause().unwrap();
    let rows = json!([
        person("E1", Some("ann"), "left", "Sales"),
        person("E2", Some("bob"), "active", "Eng")
    ]);
    let paused = engine.import("hr", &hr(rows), at(2)).unwrap();
    assert!(paused.applied && paused.changed.is_empty());
    let resumed = engine.resume().unwrap();
    let (ann, bob) = (id_of(&engine, "E1"), id_of(&engine, "E2"));
    assert_eq!(resumed.changed, vec![ann, bob]);
    assert_eq!(resumed.imports[0].changed, vec![ann, bob]);
    // Scope membership moved with the queued import's time, not resume's.
    assert_eq!(
        engine.identity(ann).unwrap().unwrap().out_of_scope.get("app"),
        Some(&at(2))
    );
    let process = engine.process(at(4)).unwrap();
    assert!(process.changed.is_empty());
}

/// One person of a random population: status, department, whether they have a login.
fn people() -> impl Strategy<Value = Vec<(bool, bool, bool)>> {
    prop::collection::vec((any::<bool>(), any::<bool>(), prop::bool::weighted(0.9)), 1..12)
}

fn rows_of(people: &[(bool, bool, bool)]) -> Json {
    let rows = people.iter().enumerate().map(|(i, &(active, sales, has_login))| {
        let login = format!("u{i}");
        person(
            &format!("E{i}"),
            has_login.then_some(login.as_str()),
            if active { "active" } else { "left" },
            if sales { "Sales" } else { "Eng" },
        )
    });
    Json::Array(rows.collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// SPEC 10.1: after a first population is provisioned and a second state imported
    /// (joiners, movers, leavers, some past the deletion delay), `outbound_for` of any
    /// set of identities holds exactly the ops of `outbound` for those identities, in
    /// the same order, with the same skips.
    #[test]
    fn outbound_for_is_outbound_restricted_to_the_identities_given(
        first in people(),
        second in people(),
        chosen in prop::collection::vec(0usize..12, 0..8),
        days in 0i64..10,
    ) {
        let mut engine = Engine::new(config());
        assert!(engine.import("hr", &hr(rows_of(&first)), at(1)).unwrap().applied);
        let plan = engine.outbound("app", at(1)).unwrap();
        engine.confirm(&plan.ops, at(1)).unwrap();
        assert!(engine.import("hr", &hr(rows_of(&second)), at(2)).unwrap().applied);
        let now = at(2) + TimeDelta::days(days);
        let ids: Vec<IdentityId> = chosen
            .iter()
            .filter_map(|i| engine.find_identities("employeeNumber", &json!(format!("E{i}"))).unwrap().first().copied())
            .collect();
        let whole = engine.outbound("app", now).unwrap();
        let part = engine.outbound_for("app", &ids, now).unwrap();
        let wanted: BTreeSet<IdentityId> = ids.iter().copied().collect();
        let expected: Vec<Op> = whole.ops.iter().filter(|op| wanted.contains(&op.identity())).cloned().collect();
        prop_assert_eq!(&part.ops, &expected);
        let skips: Vec<_> = whole.skipped.iter().filter(|s| wanted.contains(&s.identity)).cloned().collect();
        prop_assert_eq!(&part.skipped, &skips);
        prop_assert_eq!(part.base, whole.base);
    }
}
