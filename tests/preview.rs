//! The preview of a configuration change (SPEC 12.2): it changes nothing (the
//! persisted state is byte for byte the same after it) and reports exactly what
//! replacing the configuration, processing every identity and an outbound plan per
//! system do when carried out on a copy (a property over random populations and
//! configuration changes). Refusals are `replace_config`'s own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use attrflow::{ConfigChangeError, Engine, IdentityId, MemoryStore, Snapshot, Store, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, day, 8, 0, 0).unwrap()
}

/// `hr` feeding identities; `app` provisioned for identities in `scope`, receiving
/// the computed `displayName` and role-granted groups.
fn config(display: Json, scope: Json, sales_group: &str) -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" }, "status": { "type": "string" },
                "department": { "type": "string" },
                "displayName": { "type": "string", "computed": display }
            } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "status": { "type": "string" }, "dept": { "type": "string" } } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "status", "identity": "status", "direction": "inbound", "create": 80, "update": 80, "delete": 80 },
                        { "account": "dept", "identity": "department", "direction": "inbound", "create": 80, "update": 80, "delete": 80 }
                    ]
                },
                "app": {
                    "schema": { "account_id": "user", "account_name": "user", "attributes": {
                        "user": { "type": "string" }, "name": { "type": "string" }, "locked": { "type": "boolean" },
                        "groups": { "type": "string", "multi": true, "entitlement": true } } },
                    "flows": [
                        { "account": "user", "identity": "employeeNumber", "direction": "disabled" },
                        { "account": "name", "identity": "displayName", "direction": "outbound" }
                    ],
                    "scope": scope,
                    "provisioning": { "auto": true },
                    "deprovisioning": { "disable": { "locked": true }, "delete_after_days": 0 },
                    "thresholds": { "max_deleted": 3 }
                }
            },
            "roles": { "sales": { "criteria": { "eq": [ { "attr": "department" }, "Sales" ] },
                                  "grants": { "app": { "groups": [ sales_group ] } } } }
        })
        .to_string(),
    )
    .unwrap()
}

fn old_config() -> ValidatedConfig {
    config(
        json!({ "concat": [ { "attr": "employeeNumber" }, " (", { "attr": "department" }, ")" ] }),
        json!({ "eq": [ { "attr": "status" }, "active" ] }),
        "Sales",
    )
}

/// One of several changes an administrator makes: a new display name rule, a new
/// scope, a renamed group.
fn new_config(which: u8) -> ValidatedConfig {
    let display = json!({ "upper": { "attr": "employeeNumber" } });
    let scope = json!({ "eq": [ { "attr": "department" }, "Sales" ] });
    let old_display = json!({ "concat": [ { "attr": "employeeNumber" }, " (", { "attr": "department" }, ")" ] });
    let old_scope = json!({ "eq": [ { "attr": "status" }, "active" ] });
    match which % 4 {
        0 => config(display, old_scope, "Sales"),
        1 => config(old_display, scope, "Sales"),
        2 => config(old_display, old_scope, "Sales-EU"),
        _ => config(display, scope, "Sales-EU"),
    }
}

fn engine(people: &[(bool, bool)]) -> Engine {
    let mut engine = Engine::new(old_config());
    let rows: Vec<Json> = people
        .iter()
        .enumerate()
        .map(|(i, &(active, sales))| {
            json!({ "id": format!("e{i}"), "status": if active { "active" } else { "left" },
                    "dept": if sales { "Sales" } else { "Eng" } })
        })
        .collect();
    let snapshot = Snapshot::Complete {
        columns: vec!["id".into(), "status".into(), "dept".into()],
        rows: serde_json::from_value(Json::Array(rows)).unwrap(),
    };
    assert!(engine.import("hr", &snapshot, at(1)).unwrap().applied);
    let plan = engine.outbound("app", at(1)).unwrap();
    if !plan.is_blocked() {
        engine.confirm(&plan.ops, at(1)).unwrap();
    }
    engine
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_preview_changes_nothing_and_reports_what_the_change_does(
        people in prop::collection::vec((any::<bool>(), any::<bool>()), 0..10),
        which in any::<u8>(),
    ) {
        let engine = engine(&people);
        let before = engine.store().encode();
        let preview = engine.preview_config(new_config(which), false, at(2)).unwrap();
        prop_assert_eq!(&engine.store().encode(), &before);

        // The same steps carried out for real on a copy.
        let mut real = Engine::with_store(old_config(), MemoryStore::decode(&before).unwrap()).unwrap();
        let change = real.replace_config(new_config(which), false, at(2)).unwrap();
        let mut ids: Vec<IdentityId> = Vec::new();
        real.store().visit_identities(&mut |i| ids.push(i.id)).unwrap();
        let processing = real.process_identities(&ids, at(2)).unwrap();
        prop_assert_eq!(&preview.change, &change);
        prop_assert_eq!(&preview.processing.changes, &processing.changes);
        prop_assert_eq!(&preview.processing.access, &processing.access);
        prop_assert_eq!(&preview.processing.scope, &processing.scope);
        let mut plans = Vec::new();
        for system in ["hr", "app"] {
            plans.push(real.outbound(system, at(2)).unwrap());
        }
        prop_assert_eq!(preview.plans.len(), plans.len());
        for (p, r) in preview.plans.iter().zip(&plans) {
            prop_assert_eq!(&p.ops, &r.ops);
            prop_assert_eq!(p.counts, r.counts);
            prop_assert_eq!(&p.exceeded, &r.exceeded);
        }
    }
}

#[test]
fn a_refused_preview_gives_replace_configs_error_and_changes_nothing() {
    let mut engine = engine(&[(true, true), (true, false)]);
    let before = engine.store().encode();
    // Removing `app`, which holds accounts, is refused without `force`.
    let mut without_app = old_config().config().clone();
    without_app.systems.shift_remove("app");
    without_app.roles.clear();
    let without_app = without_app.validate().unwrap();
    let previewed = engine.preview_config(without_app.clone(), false, at(2)).unwrap_err();
    assert_eq!(engine.store().encode(), before);
    let replaced = engine.replace_config(without_app, false, at(2)).unwrap_err();
    assert_eq!(previewed, replaced);
    assert!(matches!(previewed, ConfigChangeError::Refused { .. }));
    assert_eq!(engine.store().encode(), before);
}
