//! A small, realistic story: HR is authoritative, a directory (AD) and a phone system
//! are correlated to it. It shows a precedence conflict, a rejected row, a blocked
//! blank export and an outbound plan, each with the engine's explanation.
//!
//! Run: `cargo run --release --example quickstart`

use attrflow::{Engine, ImportReport, Op, OutboundPlan, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

const CONFIG: &str = r#"{
  "identity": { "attributes": {
    "employeeNumber": { "type": "string" },
    "displayName":    { "type": "string" },
    "department":     { "type": "string", "case_exact": false },
    "hireDate":       { "type": "date" },
    "phone":          { "type": "string" }
  } },
  "systems": {
    "hr": {
      "schema": { "account_id": "emp_id", "account_name": "emp_id", "attributes": {
        "emp_id": { "type": "string" }, "name": { "type": "string" }, "dept": { "type": "string" },
        "hired": { "type": "date" }, "phone": { "type": "string" } } },
      "authoritative": true,
      "correlation": [ [ { "account": "emp_id", "identity": "employeeNumber" } ] ],
      "flows": [
        { "account": "emp_id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
        { "account": "name",   "identity": "displayName",    "direction": "inbound", "create": 80, "update": 80, "delete": 80 },
        { "account": "dept",   "identity": "department",     "direction": "inbound", "create": 60, "update": 60, "delete": 60 },
        { "account": "hired",  "identity": "hireDate",       "direction": "inbound", "create": 90, "update": 90 },
        { "account": "phone",  "identity": "phone",          "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
      ],
      "thresholds": { "max_deleted": 1, "max_pct_deleted": 20.0 }
    },
    "ad": {
      "schema": { "account_id": "sAMAccountName", "account_name": "sAMAccountName", "attributes": {
        "sAMAccountName": { "type": "string", "case_exact": false }, "employeeID": { "type": "string" },
        "displayName": { "type": "string" }, "department": { "type": "string", "case_exact": false },
        "telephoneNumber": { "type": "string" } } },
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
  }
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

fn report(title: &str, r: &ImportReport) {
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
    let (rejected, applied): (Vec<_>, Vec<_>) = r.decisions.iter().partition(|d| d.reason().is_some());
    for d in applied.iter().take(3) {
        println!("   - {}", d.explain());
    }
    if applied.len() > 3 {
        println!("   - ... and {} more values applied", applied.len() - 3);
    }
    for d in rejected {
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
            }
            Op::Create(c) => println!("   {}: create `{}`", c.system, c.account),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ValidatedConfig::from_json(CONFIG)?;
    let mut engine = Engine::new(config);

    let hr_columns = ["emp_id", "name", "dept", "hired", "phone"];
    let hr = complete(
        &hr_columns,
        json!([
            { "emp_id": "E1", "name": "Jane Doe",   "dept": "Sales",   "hired": "2019-04-01", "phone": "555-0100" },
            { "emp_id": "E2", "name": "Ali Smith",  "dept": "Finance", "hired": "2021-09-15", "phone": null },
            { "emp_id": "E3", "name": "Kim Lee",    "dept": "Legal",   "hired": "2023-01-09", "phone": "555-0300" }
        ]),
    );
    report(
        "1. HR, the authoritative source, is loaded: each employee becomes an identity",
        &engine.import("hr", &hr, day(1, 8))?,
    );

    let ad = complete(
        &[
            "sAMAccountName",
            "employeeID",
            "displayName",
            "department",
            "telephoneNumber",
        ],
        json!([
            { "sAMAccountName": "jdoe",   "employeeID": "E1", "displayName": "Jane Doe",  "department": "Marketing", "telephoneNumber": "555-0100" },
            { "sAMAccountName": "asmith", "employeeID": "E2", "displayName": "A. Smith",  "department": "FINANCE",   "telephoneNumber": null },
            { "sAMAccountName": "svc-backup", "employeeID": null, "displayName": "Backup", "department": null, "telephoneNumber": null }
        ]),
    );
    report(
        "2. The directory is correlated by employeeID; a manual department edit loses to HR (45 < 60)",
        &engine.import("ad", &ad, day(2, 8))?,
    );

    let tel = complete(
        &["line", "owner", "number"],
        json!([{ "line": "L7", "owner": "E1", "number": "555-0199" }]),
    );
    report(
        "3. The phone system's number displaces HR's initial value (update 55 >= create 50)",
        &engine.import("tel", &tel, day(3, 8))?,
    );

    let hr_bad = complete(
        &hr_columns,
        json!([
            { "emp_id": "E1", "name": "Jane Doe",   "dept": "Sales",   "hired": "01/04/2019", "phone": "555-0100" },
            { "emp_id": "E2", "name": "Ali Smith",  "dept": "Finance", "hired": "2021-09-15", "phone": null },
            { "emp_id": "E3", "name": "Kim Lee",    "dept": "Legal",   "hired": "2023-01-09", "phone": "555-0300" }
        ]),
    );
    report(
        "4. A bad date in HR: the row is rejected and E1 keeps its stored data",
        &engine.import("hr", &hr_bad, day(4, 8))?,
    );

    let blank = complete(&hr_columns, json!([]));
    report(
        "5. HR sends a blank file: the thresholds block it before anyone is deleted",
        &engine.import("hr", &blank, day(5, 8))?,
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
    Ok(())
}
