//! Provisioning and the whole-system outbound plan read identities through
//! `Store::visit_identities_by_id_reading` and `Store::visit_linked_accounts_reading`,
//! which let a store lend only the values of the attributes the plan reads (both stores
//! do). The plans must be those made from whole identities: the per-identity outbound
//! plan (`outbound_for`, whole identities) gives the same ops, and provisioning's
//! creates hold the values they are made of, with rules whose transforms read
//! attributes that flow nowhere themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use attrflow::store::Store;
use attrflow::{Engine, IdentityId, MemoryStore, Op, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).unwrap()
}

/// `hr` gives people; `dir` receives a display name made of two attributes that flow
/// nowhere else, an upper-cased title, a mail as is and a department only for some.
fn config() -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" }, "givenName": { "type": "string" },
                "sn": { "type": "string" }, "title": { "type": "string" },
                "mail": { "type": "string" }, "department": { "type": "string" },
                "unread": { "type": "string" }
            } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "givenName": { "type": "string" }, "sn": { "type": "string" },
                        "title": { "type": "string" }, "mail": { "type": "string" },
                        "department": { "type": "string" }, "unread": { "type": "string" }
                    } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "givenName", "identity": "givenName", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "sn", "identity": "sn", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "title", "identity": "title", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "mail", "identity": "mail", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "department", "identity": "department", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "unread", "identity": "unread", "direction": "inbound", "create": 100, "update": 100 }
                    ]
                },
                "dir": {
                    "schema": { "account_id": "uid", "account_name": "uid", "attributes": {
                        "uid": { "type": "string" }, "displayName": { "type": "string" },
                        "title": { "type": "string" }, "mail": { "type": "string" },
                        "department": { "type": "string" }
                    } },
                    "correlation": [ [ { "account": "uid", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "uid", "identity": "employeeNumber", "direction": "outbound" },
                        { "account": "displayName", "identity": "givenName", "direction": "outbound",
                          "out": { "concat": [ { "attr": "givenName" }, " ", { "attr": "sn" } ] } },
                        { "account": "title", "identity": "title", "direction": "outbound",
                          "out": { "upper": { "attr": "title" } } },
                        { "account": "mail", "identity": "mail", "direction": "outbound" },
                        { "account": "department", "identity": "department", "direction": "outbound" }
                    ]
                }
            }
        })
        .to_string(),
    )
    .unwrap()
}

fn snapshot(columns: &[&str], rows: Vec<serde_json::Value>) -> Snapshot {
    serde_json::from_value(json!({ "mode": "complete", "columns": columns, "rows": rows })).unwrap()
}

fn hr(people: usize) -> Snapshot {
    let rows = (0..people)
        .map(|i| {
            json!({ "id": format!("E{i}"), "givenName": format!("G{}", i % 5), "sn": format!("S{i}"),
                    "title": format!("t{}", i % 3), "mail": format!("m{i}@x"),
                    "department": if i % 4 == 0 { String::new() } else { format!("D{}", i % 2) },
                    "unread": format!("u{i}") })
        })
        .collect();
    snapshot(
        &["id", "givenName", "sn", "title", "mail", "department", "unread"],
        rows,
    )
}

/// The directory holds the first `held` people, some values stale.
fn dir(held: usize) -> Snapshot {
    let rows = (0..held)
        .map(|i| {
            json!({ "uid": format!("E{i}"), "displayName": if i % 2 == 0 { format!("G{} S{i}", i % 5) } else { "old".to_owned() },
                    "title": format!("T{}", (i + i % 2) % 3), "mail": format!("m{i}@x"), "department": "D1" })
        })
        .collect();
    snapshot(&["uid", "displayName", "title", "mail", "department"], rows)
}

fn loaded<S: Store>(store: S, people: usize, held: usize) -> Engine<S> {
    let mut engine = Engine::with_store(config(), store).unwrap();
    assert!(engine.import("hr", &hr(people), at(1)).unwrap().applied);
    assert!(engine.import("dir", &dir(held), at(2)).unwrap().applied);
    engine
}

fn ids<S: Store>(engine: &Engine<S>) -> Vec<IdentityId> {
    let mut ids = Vec::new();
    engine.store().visit_identities(&mut |i| ids.push(i.id)).unwrap();
    ids
}

/// The identities with no `dir` account.
fn unheld<S: Store>(engine: &Engine<S>) -> Vec<IdentityId> {
    ids(engine)
        .into_iter()
        .filter(|&id| {
            engine
                .store()
                .accounts_of(id)
                .unwrap()
                .iter()
                .all(|(system, _)| system != "dir")
        })
        .collect()
}

/// The whole-system plan (identities read in part) is the plan of every identity (read
/// whole, one at a time).
fn whole_system_plan_is_the_plan_of_every_identity<S: Store>(store: S) {
    let mut engine = loaded(store, 60, 40);
    let whole = engine.outbound("dir", at(3)).unwrap();
    let all = ids(&engine);
    let each = engine.outbound_for("dir", &all, at(3)).unwrap();
    assert!(whole.ops.len() >= 20, "stale values give updates: {:?}", whole.ops);
    assert!(
        whole
            .ops
            .iter()
            .any(|op| matches!(op, Op::Update(u) if u.set.contains_key("displayName"))),
        "{:?}",
        whole.ops
    );
    assert_eq!(whole.ops, each.ops);
    assert_eq!(whole.skipped, each.skipped);
}

/// Provisioning's creates hold the values their rules and transforms make.
fn provisioning_reads_the_values_its_creates_are_made_of<S: Store>(store: S) {
    let mut engine = loaded(store, 60, 40);
    let unheld = unheld(&engine);
    let plan = engine.provision_many("dir", &unheld, at(3)).unwrap();
    assert_eq!(plan.ops.len(), 20);
    for op in &plan.ops {
        let Op::Create(create) = op else { panic!("{op:?}") };
        let n: usize = create.account.trim_start_matches('E').parse().unwrap();
        assert_eq!(
            create.attributes["displayName"],
            attrflow::Value::from(format!("G{} S{n}", n % 5).as_str())
        );
        assert_eq!(
            create.attributes["title"],
            attrflow::Value::from(format!("T{}", n % 3).as_str())
        );
        assert_eq!(
            create.attributes["mail"],
            attrflow::Value::from(format!("m{n}@x").as_str())
        );
        assert_eq!(create.attributes.contains_key("department"), n % 4 != 0, "{create:?}");
    }
}

#[test]
fn the_memory_stores_plans_read_in_part_are_those_of_whole_identities() {
    whole_system_plan_is_the_plan_of_every_identity(MemoryStore::new());
    provisioning_reads_the_values_its_creates_are_made_of(MemoryStore::new());
}

#[cfg(feature = "sqlite")]
#[test]
fn the_sqlite_stores_plans_read_in_part_are_those_of_whole_identities() {
    use attrflow::sqlite_store::SqliteStore;
    whole_system_plan_is_the_plan_of_every_identity(SqliteStore::open_in_memory().unwrap());
    provisioning_reads_the_values_its_creates_are_made_of(SqliteStore::open_in_memory().unwrap());
}

#[cfg(feature = "sqlite")]
#[test]
fn both_stores_plan_alike() {
    use attrflow::sqlite_store::SqliteStore;
    let mut memory = loaded(MemoryStore::new(), 300, 200);
    let mut sqlite = loaded(SqliteStore::open_in_memory().unwrap(), 300, 200);
    assert_eq!(
        memory.outbound("dir", at(3)).unwrap().ops,
        sqlite.outbound("dir", at(3)).unwrap().ops
    );
    let unheld = unheld(&memory);
    assert_eq!(unheld, self::unheld(&sqlite));
    let from_memory = memory.provision_many("dir", &unheld, at(3)).unwrap();
    let from_sqlite = sqlite.provision_many("dir", &unheld, at(3)).unwrap();
    assert_eq!(from_memory.ops.len(), 100);
    assert_eq!(from_memory.ops, from_sqlite.ops);
}
