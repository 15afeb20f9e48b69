//! A small, realistic story: HR is authoritative, a directory (AD) and a phone system
//! are correlated to it. It shows the configuration lint, a precedence conflict, a
//! rejected row, a blocked blank export, an outbound plan with role-granted groups, and a
//! leaver whose computed lifecycle state revokes those groups when processing runs
//! after the termination date, each with the engine's explanation.
//!
//! Run: `cargo run --release --example quickstart`

use attrflow::lint::lint;
use attrflow::{Decision, Engine, ImportReport, Observer, Op, OutboundPlan, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

const CONFIG: &str = r#"{
  "identity": { "attributes": {
    "employeeNumber": { "type": "string" },
    "displayName":    { "type": "string" },
    "department":     { "type": "string", "case_exact": false },
    "hireDate":       { "type": "date" },
    "terminationDate": { "type": "date" },
    "phone":          { "type": "string" },
    "lifecycle":      { "type": "string", "computed":
      { "if": [ { "and": [ { "not": { "is_empty": { "attr": "terminationDate" } } },
                           { "lt": [ { "attr": "terminationDate" }, { "today": {} } ] } ] },
                "inactive", "active" ] } }
  } },
  "systems": {
    "hr": {
      "schema": { "account_id": "emp_id", "account_name": "emp_id", "attributes": {
        "emp_id": { "type": "string" }, "name": { "type": "string" }, "dept": { "type": "string" },
        "hired": { "type": "date" }, "term": { "type": "date" }, "phone": { "type": "string" } } },
      "authoritative": true,
      "correlation": [ [ { "account": "emp_id", "identity": "employeeNumber" } ] ],
      "flows": [
        { "account": "emp_id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
        { "account": "name",   "identity": "displayName",    "direction": "inbound", "create": 80, "update": 80, "delete": 80 },
        { "account": "dept",   "identity": "department",     "direction": "inbound", "create": 60, "update": 60, "delete": 60 },
        { "account": "hired",  "identity": "hireDate",       "direction": "inbound", "create": 90, "update": 90 },
        { "account": "term",   "identity": "terminationDate", "direction": "inbound", "create": 90, "update": 90, "delete": 90 },
        { "account": "phone",  "identity": "phone",          "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
      ],
      "thresholds": { "max_deleted": 1, "max_pct_deleted": 20.0 }
    },
    "ad": {
      "schema": { "account_id": "sAMAccountName", "account_name": "sAMAccountName", "attributes": {
        "sAMAccountName": { "type": "string", "case_exact": false }, "employeeID": { "type": "string" },
        "displayName": { "type": "string" }, "department": { "type": "string", "case_exact": false },
        "telephoneNumber": { "type": "string" },
        "memberOf": { "type": "string", "multi": true, "entitlement": true } } },
      "correlation": [ [ { "account": "employeeID", "identity": "employeeNumber" } ] ],
      "flows": [
        { "account": "displayName", "identity": "displayName", "direction": "outbound" },
        { "account": "department", "identity": "department", "direction": "bidirectional", "create": 30, "update": 45 },
        { "account": "telephoneNumber", "identity": "phone", "direction": "outbound" }
      ],
      "thresholds": { "max_updated": 100 }
    },
    "tel": {
      "schema": { "account_id": "line", "account_name": "line", "attributes": {
        "line": { "type": "string" }, "owner": { "type": "string" }, "number": { "type": "string" } } },
      "correlation": [ [ { "account": "owner", "identity": "employeeNumber" } ] ],
      "flows": [ { "account": "number", "identity": "phone", "direction": "inbound", "create": 40, "update": 55 } ]
    }
  },
  "roles": {
    "staff": { "criteria": { "eq": [ { "attr": "lifecycle" }, "active" ] }, "grants": { "ad": { "memberOf": [ "CN=Staff" ] } } },
    "sales": { "criteria": { "eq": [ { "attr": "department" }, "Sales" ] }, "grants": { "ad": { "memberOf": [ "CN=Sales" ] } } }
  },
  "lifecycle": { "attribute": "lifecycle", "revoke_roles_in": [ "inactive" ] }
}"#;

fn day(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).single().unwrap_or_default()
}

fn rows(value: serde_json::Value) -> Vec<attrflow::Row> {
    serde_json::from_value(value).unwrap_or_default()
}

fn complete(columns: &[&str], value: serde_json::Value) -> Snapshot {
    Snapshot::Complete {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: rows(value),
    }
}

/// Imports with an observer that keeps each applied decision's explanation (the report
/// itself keeps counts and the rejected decisions).
fn import(
    engine: &mut Engine,
    system: &str,
    snapshot: &Snapshot,
    now: DateTime<Utc>,
) -> Result<(ImportReport, Vec<String>), attrflow::ImportError> {
    let mut applied = Vec::new();
    let mut on_decision = |d: &Decision| {
        if d.reason().is_none() {
            applied.push(d.explain());
        }
    };
    let report = engine.import_observed(
        system,
        snapshot,
        now,
        &mut Observer::new().on_decision(&mut on_decision),
    )?;
    Ok((report, applied))
}

fn report(title: &str, (r, applied): &(ImportReport, Vec<String>)) {
    println!("\n== {title}");
    let c = r.plan.counts;
    println!(
        "   plan: {} inserted, {} updated, {} deleted{}",
        c.inserted,
        c.updated,
        c.deleted,
        if r.applied { "" } else { "  -> BLOCKED, nothing applied" }
    );
    for e in &r.plan.exceeded {
        let pct = e
            .percent
            .map(|p| format!(" ({p:.0}% of {} stored)", e.base.unwrap_or(0)))
            .unwrap_or_default();
        println!(
            "   threshold {} exceeded: {}{pct} > limit {}",
            e.threshold, e.count, e.limit
        );
    }
    // The likely cause, with its evidence: where the review of a blocked plan starts.
    for suspicion in &r.plan.diagnosis {
        println!("   diagnosis {}: {}", suspicion.kind.as_str(), suspicion.message);
    }
    for rejection in &r.plan.rejections {
        println!("   {rejection}");
    }
    for link in &r.links {
        let how = if link.projected {
            " (a new identity: projection)"
        } else {
            ""
        };
        println!("   account `{}`: {}{how}", link.account, link.state);
    }
    // Show every rejected decision; summarise long runs of applied ones.
    for d in applied.iter().take(3) {
        println!("   - {d}");
    }
    if applied.len() > 3 {
        println!("   - ... and {} more values applied", applied.len() - 3);
    }
    for d in &r.rejected {
        println!("   - {}", d.explain());
    }
}

fn plan(title: &str, p: &OutboundPlan) {
    println!("\n== {title}");
    if p.ops.is_empty() {
        println!("   nothing to send: every account already holds what its identity says");
    }
    for op in &p.ops {
        match op {
            Op::Update(u) => {
                for (attribute, value) in &u.set {
                    println!("   {} `{}`: set {attribute} = {value}", u.system, u.account);
                }
                for (attribute, values) in &u.add {
                    println!("   {} `{}`: add {attribute} {}", u.system, u.account, list(values));
                }
                for (attribute, values) in &u.remove {
                    println!("   {} `{}`: remove {attribute} {}", u.system, u.account, list(values));
                }
            }
            Op::Create(c) => println!("   {}: create `{}`", c.system, c.account),
            Op::Delete(d) => println!("   {}: delete `{}`", d.system, d.account),
        }
    }
}

fn list(values: &[attrflow::Scalar]) -> String {
    values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ValidatedConfig::from_json(CONFIG)?;
    println!("== 0. The configuration lint, before anything runs");
    for finding in lint(config.config()) {
        println!("   warning: {finding}");
    }
    let mut engine = Engine::new(config);

    let hr_columns = ["emp_id", "name", "dept", "hired", "term", "phone"];
    let hr = complete(
        &hr_columns,
        json!([
            { "emp_id": "E1", "name": "Jane Doe",   "dept": "Sales",   "hired": "2019-04-01", "term": null, "phone": "555-0100" },
            { "emp_id": "E2", "name": "Ali Smith",  "dept": "Finance", "hired": "2021-09-15", "term": null, "phone": null },
            { "emp_id": "E3", "name": "Kim Lee",    "dept": "Legal",   "hired": "2023-01-09", "term": null, "phone": "555-0300" }
        ]),
    );
    report(
        "1. HR, the authoritative source, is loaded: each employee becomes an identity",
        &import(&mut engine, "hr", &hr, day(1, 8))?,
    );

    let ad = complete(
        &[
            "sAMAccountName",
            "employeeID",
            "displayName",
            "department",
            "telephoneNumber",
            "memberOf",
        ],
        json!([
            { "sAMAccountName": "jdoe",   "employeeID": "E1", "displayName": "Jane Doe",  "department": "Marketing", "telephoneNumber": "555-0100", "memberOf": ["CN=VPN"] },
            { "sAMAccountName": "asmith", "employeeID": "E2", "displayName": "A. Smith",  "department": "FINANCE",   "telephoneNumber": null, "memberOf": [] },
            { "sAMAccountName": "svc-backup", "employeeID": null, "displayName": "Backup", "department": null, "telephoneNumber": null, "memberOf": null }
        ]),
    );
    report(
        "2. The directory is correlated by employeeID; a manual department edit loses to HR (45 < 60)",
        &import(&mut engine, "ad", &ad, day(2, 8))?,
    );

    let tel = complete(
        &["line", "owner", "number"],
        json!([{ "line": "L7", "owner": "E1", "number": "555-0199" }]),
    );
    report(
        "3. The phone system's number displaces HR's initial value (update 55 >= create 50)",
        &import(&mut engine, "tel", &tel, day(3, 8))?,
    );

    let hr_bad = complete(
        &hr_columns,
        json!([
            { "emp_id": "E1", "name": "Jane Doe",   "dept": "Sales",   "hired": "01/04/2019", "term": null, "phone": "555-0100" },
            { "emp_id": "E2", "name": "Ali Smith",  "dept": "Finance", "hired": "2021-09-15", "term": null, "phone": null },
            { "emp_id": "E3", "name": "Kim Lee",    "dept": "Legal",   "hired": "2023-01-09", "term": null, "phone": "555-0300" }
        ]),
    );
    report(
        "4. A bad date in HR: the row is rejected and E1 keeps its stored data",
        &import(&mut engine, "hr", &hr_bad, day(4, 8))?,
    );

    let blank = complete(&hr_columns, json!([]));
    report(
        "5. HR sends a blank file: the thresholds block it before anyone is deleted",
        &import(&mut engine, "hr", &blank, day(5, 8))?,
    );
    println!("   pending plans awaiting review: {}", engine.pending_plans()?.len());

    let outbound = engine.outbound("ad", day(5, 9))?;
    plan(
        "6. Outbound to the directory: only values that differ are sent",
        &outbound,
    );
    let confirmed = engine.confirm(&outbound.ops, day(5, 9))?;
    println!("   the host applied and confirmed {} update(s)", confirmed.updated);
    plan(
        "7. Asked again, the directory needs nothing",
        &engine.outbound("ad", day(5, 10))?,
    );

    let leaver = Snapshot::Incremental {
        upserts: rows(json!([{ "emp_id": "E2", "term": "2026-03-20" }])),
        deletes: Vec::new(),
    };
    report(
        "8. HR records a termination date for Ali Smith (a leaver)",
        &import(&mut engine, "hr", &leaver, day(6, 8))?,
    );
    for (step, d, label) in [("9", 15, "before"), ("10", 21, "after")] {
        let processed = engine.process(day(d, 6))?;
        println!("\n== {step}. Scheduled processing on 2026-03-{d} ({label} the termination date)");
        for change in &processed.changes {
            println!(
                "   {}: {} {} -> {}",
                change.identity, change.attribute, change.old, change.new
            );
        }
        for access in &processed.access {
            println!(
                "   {}: {} {} revoked {}",
                access.identity,
                access.system,
                access.attribute,
                list(&access.revoked)
            );
        }
        if processed.changes.is_empty() {
            println!("   nothing changes: {} identities examined", processed.examined);
        }
    }
    let revoke = engine.outbound("ad", day(21, 7))?;
    plan(
        "11. Outbound to the directory removes the leaver's role group; the manual VPN group of jdoe stays",
        &revoke,
    );
    let _ = engine.confirm(&revoke.ops, day(21, 7))?;
    Ok(())
}
