//! An HR CSV export drives an LDAP directory, end to end: new hires are provisioned as
//! entries, a moved department changes the title and the group memberships value by
//! value (the member added by hand to every group stays), a leaver is disabled at once
//! and deleted 30 days later. Every step prints what it did and why.
//!
//! Start the throwaway server, then run the example against it:
//!
//! ```sh
//! examples/ldap_server.sh 3389
//! cargo run --release --example ldap_sync --features ldap,csv -- --url ldap://127.0.0.1:3389 \
//!     examples/data/ldap_hr_1.csv examples/data/ldap_hr_2.csv examples/data/ldap_hr_3.csv
//! ```
//!
//! Options: `--config FILE` (default `examples/data/ldap_sync.json`), `--bind-dn DN` and
//! `--password PW` (default the script's admin), `--at RFC3339` (the time of the first
//! file; each next file is a day later, and the last step 31 days after the last file).

use std::collections::BTreeSet;
use std::error::Error;

use attrflow::connector::{Connector, ExportMode, OpStatus};
use attrflow::csv_connector::{read_snapshot, CsvOptions};
use attrflow::ldap_connector::{GroupMapping, LdapConnector, LdapSettings};
use attrflow::{Engine, Op, ValidatedConfig};
use chrono::{DateTime, Duration, Utc};
use ldap3::{LdapConn, Scope, SearchEntry};

const PEOPLE: &str = "ou=people,dc=example,dc=com";
const GROUPS: &str = "ou=groups,dc=example,dc=com";

struct Args {
    url: String,
    config: String,
    bind_dn: String,
    password: String,
    at: DateTime<Utc>,
    files: Vec<String>,
}

fn args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        url: "ldap://127.0.0.1:3389".into(),
        config: "examples/data/ldap_sync.json".into(),
        bind_dn: "cn=admin,dc=example,dc=com".into(),
        password: "secret".into(),
        at: DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")?.with_timezone(&Utc),
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("`{arg}` needs a value"));
        match arg.as_str() {
            "--url" => a.url = value()?,
            "--config" => a.config = value()?,
            "--bind-dn" => a.bind_dn = value()?,
            "--password" => a.password = value()?,
            "--at" => a.at = DateTime::parse_from_rfc3339(&value()?)?.with_timezone(&Utc),
            _ => a.files.push(arg),
        }
    }
    if a.files.is_empty() {
        return Err("usage: ldap_sync [--url URL] [--config FILE] HR.csv [MORE.csv ...]".into());
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let config = ValidatedConfig::from_json(&std::fs::read_to_string(&args.config)?)?;
    let mut engine = Engine::new(config);
    let mut settings = LdapSettings::new(&args.url, PEOPLE, format!("uid={{account_id}},{PEOPLE}"));
    settings.bind = Some((args.bind_dn.clone(), args.password.clone()));
    settings.filter = "(objectClass=inetOrgPerson)".into();
    settings.groups = Some(GroupMapping {
        attribute: "groups".into(),
        base_dn: GROUPS.into(),
        filter: "(objectClass=groupOfNames)".into(),
        name_attribute: "cn".into(),
        member_attribute: "member".into(),
    });
    let dir_config = engine
        .config()
        .system("dir")
        .ok_or("the configuration has no `dir` system")?;
    let mut directory = LdapConnector::connect("dir", dir_config, settings)?;

    let mut now = args.at;
    for (step, file) in args.files.iter().enumerate() {
        println!("== {now}: HR export {file}");
        let hr = engine
            .config()
            .system("hr")
            .ok_or("the configuration has no `hr` system")?;
        let csv = read_snapshot(std::fs::File::open(file)?, hr, &CsvOptions::new())?;
        let report = engine.import("hr", &csv.snapshot, now)?;
        let c = &report.plan.counts;
        println!(
            "   hr import: {} inserted, {} updated, {} deleted, {} rejected{}",
            c.inserted,
            c.updated,
            c.deleted,
            report.plan.rejections.len(),
            if report.applied { "" } else { " (blocked)" }
        );
        for change in &report.processing.scope {
            println!("   {change:?}");
        }
        // The directory as it is now (complete the first time, then what changed).
        let mode = if step == 0 {
            ExportMode::Complete
        } else {
            ExportMode::Delta
        };
        let dir_report = engine.import("dir", &directory.export(mode)?, now)?;
        println!(
            "   directory read ({mode:?}): {} entries changed outside the engine",
            dir_report.plan.counts.inserted + dir_report.plan.counts.updated + dir_report.plan.counts.deleted
        );
        push(&mut engine, &mut directory, now)?;
        show(&args)?;
        now += Duration::days(1);
    }
    now += Duration::days(30);
    println!("== {now}: 30 days after the last export, scheduled processing");
    let processed = engine.process(now)?;
    println!("   {} identities changed by time", processed.changed.len());
    push(&mut engine, &mut directory, now)?;
    show(&args)?;
    Ok(())
}

/// Computes the directory's plan, applies it, confirms what succeeded
/// ([`attrflow::connector::push`]), and says why each op is there.
fn push(engine: &mut Engine, directory: &mut LdapConnector, now: DateTime<Utc>) -> Result<(), Box<dyn Error>> {
    let (plan, statuses) = attrflow::connector::push(engine, directory, now)?;
    if plan.is_blocked() {
        println!("   outbound blocked by {:?}: approve it to go on", plan.exceeded);
        return Ok(());
    }
    for (op, status) in plan.ops.iter().zip(&statuses) {
        let outcome = match status {
            OpStatus::Applied => "applied and confirmed".to_owned(),
            OpStatus::Failed(m) => format!("FAILED: {m}"),
        };
        println!("   {} — {outcome}", explain(engine, op));
    }
    for skip in &plan.skipped {
        println!("   skipped {}: {}", skip.account, skip.message);
    }
    Ok(())
}

/// One op in words, with the reason the engine has for it.
fn explain(engine: &Engine, op: &Op) -> String {
    let who = engine
        .identity(op.identity())
        .ok()
        .flatten()
        .map(|i| i.value("displayName").to_string())
        .unwrap_or_default();
    match op {
        Op::Create(c) => format!(
            "create uid={} for {who}: in the directory's scope with no account (automatic provisioning), groups {}",
            c.account,
            c.attributes.get("groups").map(|g| g.to_string()).unwrap_or_default()
        ),
        Op::Update(u) => {
            let mut parts: Vec<String> = u.set.iter().map(|(a, v)| format!("{a} := {v}")).collect();
            parts.extend(u.add.iter().map(|(a, v)| format!("{a} + {}", list(v))));
            parts.extend(u.remove.iter().map(|(a, v)| format!("{a} - {}", list(v))));
            format!(
                "update uid={} for {who}: {} (the identity's values differ)",
                u.account,
                parts.join(", ")
            )
        }
        Op::Delete(d) => format!(
            "delete uid={} for {who}: out of scope for longer than delete_after_days",
            d.account
        ),
    }
}

fn list(values: &[attrflow::Scalar]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

/// What the directory holds now, read with a plain LDAP search.
fn show(args: &Args) -> Result<(), Box<dyn Error>> {
    let mut conn = LdapConn::new(&args.url)?;
    conn.simple_bind(&args.bind_dn, &args.password)?.success()?;
    let (people, _) = conn
        .search(
            PEOPLE,
            Scope::OneLevel,
            "(objectClass=inetOrgPerson)",
            vec!["uid", "title", "employeeType"],
        )?
        .success()?;
    let mut lines = BTreeSet::new();
    for e in people.into_iter().map(SearchEntry::construct) {
        let get = |a: &str| e.attrs.get(a).map(|v| v.join(",")).unwrap_or_default();
        lines.insert(format!("     {}: {} {}", get("uid"), get("title"), get("employeeType")));
    }
    let (groups, _) = conn
        .search(
            GROUPS,
            Scope::OneLevel,
            "(objectClass=groupOfNames)",
            vec!["cn", "member"],
        )?
        .success()?;
    println!("   directory now:");
    for line in lines {
        println!("{line}");
    }
    for g in groups.into_iter().map(SearchEntry::construct) {
        let name = g.attrs.get("cn").map(|v| v.join(",")).unwrap_or_default();
        let members: Vec<String> = g
            .attrs
            .get("member")
            .map(|m| {
                m.iter()
                    .map(|d| d.split(',').next().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        println!("     group {name}: {}", members.join(" "));
    }
    conn.unbind()?;
    Ok(())
}
