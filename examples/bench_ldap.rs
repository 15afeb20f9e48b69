//! Measures the LDAP connector against `ldapsearch` / `ldapmodify` on the same server in
//! the same run: a complete export of N entries (paged, 500 a page, both), and 1,000
//! modifications applied (an outbound plan of 1,000 title changes through the
//! connector; an LDIF of 1,000 replaces through `ldapmodify`).
//!
//! ```sh
//! examples/ldap_server.sh 3389
//! cargo run --release --example bench_ldap --features ldap -- --url ldap://127.0.0.1:3389 --entries 20000
//! ```
//!
//! Loads the entries first (through `ldapadd`), into an empty `ou=people`.

use std::error::Error;
use std::io::Write;
use std::process::{Command, Stdio};

use attrflow::connector::{Connector, ExportMode, OpStatus};
use attrflow::ldap_connector::{LdapConnector, LdapSettings};
use attrflow::{Engine, Snapshot, ValidatedConfig};
use chrono::{DateTime, Utc};
use serde_json::json;

const PEOPLE: &str = "ou=people,dc=example,dc=com";
const ADMIN: &str = "cn=admin,dc=example,dc=com";
const PASSWORD: &str = "secret";

#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark host reads the clock; the engine never does"
)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

fn tool(url: &str, program: &str, args: &[&str], input: &str) -> Result<usize, Box<dyn Error>> {
    let mut child = Command::new(program)
        .args(["-x", "-H", url, "-D", ADMIN, "-w", PASSWORD])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!("{program} failed").into());
    }
    Ok(out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"dn: "))
        .count())
}

fn config() -> Result<ValidatedConfig, Box<dyn Error>> {
    let json = json!({
        "identity": { "attributes": { "employeeNumber": { "type": "string" }, "title": { "type": "string" } } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" }, "title": { "type": "string" } } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 100, "update": 100 }
                ]
            },
            "dir": {
                "schema": { "account_id": "uid", "account_name": "uid", "attributes": {
                    "uid": { "type": "string", "case_exact": false }, "cn": { "type": "string" },
                    "sn": { "type": "string" }, "title": { "type": "string" }, "employeeNumber": { "type": "string" } } },
                "correlation": [ [ { "account": "employeeNumber", "identity": "employeeNumber" } ] ],
                "flows": [ { "account": "title", "identity": "title", "direction": "outbound" } ]
            }
        }
    });
    Ok(ValidatedConfig::from_json(&json.to_string())?)
}

fn hr(n: usize, changed: usize) -> Result<Snapshot, Box<dyn Error>> {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let title = if i < changed { "Manager" } else { "Staff" };
            json!({ "id": format!("p{i:06}"), "title": title })
        })
        .collect();
    Ok(Snapshot::Complete {
        columns: vec!["id".into(), "title".into()],
        rows: serde_json::from_value(serde_json::Value::Array(rows))?,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut url = "ldap://127.0.0.1:3389".to_owned();
    let mut n = 20_000usize;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--url" => url = it.next().ok_or("--url needs a value")?,
            "--entries" => n = it.next().ok_or("--entries needs a value")?.parse()?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let ldif: String = (0..n)
        .map(|i| {
            format!(
                "dn: uid=p{i:06},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: p{i:06}\ncn: Person {i}\nsn: P{i}\ntitle: Staff\nemployeeNumber: p{i:06}\n\n"
            )
        })
        .collect();
    let (loaded, secs) = timed(|| tool(&url, "ldapadd", &[], &ldif));
    loaded?;
    println!(
        "loaded {n} entries with ldapadd in {secs:.2} s ({:.0} entries/s)",
        n as f64 / secs
    );

    // Complete export: ldapsearch (paged, 500) against the connector (paged, 500).
    let filter = "(objectClass=inetOrgPerson)";
    let (found, peer) = timed(|| {
        tool(
            &url,
            "ldapsearch",
            &[
                "-LLL",
                "-E",
                "pr=500/noprompt",
                "-b",
                PEOPLE,
                filter,
                "uid",
                "cn",
                "sn",
                "title",
                "employeeNumber",
            ],
            "",
        )
    });
    let found = found?;
    let mut engine = Engine::new(config()?);
    let dir_config = engine.config().system("dir").ok_or("no dir system")?.clone();
    let mut settings = LdapSettings::new(&url, PEOPLE, format!("uid={{account_id}},{PEOPLE}"));
    settings.bind = Some((ADMIN.into(), PASSWORD.into()));
    settings.filter = filter.into();
    let mut dir = LdapConnector::connect("dir", &dir_config, settings)?;
    let (snapshot, ours) = timed(|| dir.export(ExportMode::Complete));
    let snapshot = snapshot?;
    let rows = match &snapshot {
        Snapshot::Complete { rows, .. } => rows.len(),
        _ => 0,
    };
    println!(
        "complete export of {n}: ldapsearch {found} entries in {peer:.3} s ({:.0}/s); connector {rows} rows in {ours:.3} s ({:.0}/s); ratio {:.2}x",
        found as f64 / peer,
        rows as f64 / ours,
        ours / peer
    );

    // 1,000 modifications: ldapmodify of an LDIF against the connector applying the
    // engine's plan of the same size.
    let now: DateTime<Utc> = "2026-03-02T08:00:00Z".parse()?;
    let loaded = engine.import("hr", &hr(n, 0)?, now)?.applied && engine.import("dir", &snapshot, now)?.applied;
    if !loaded {
        return Err("the imports were blocked".into());
    }
    let changes = 1000.min(n);
    let modify: String = (n - changes..n)
        .map(|i| format!("dn: uid=p{i:06},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Lead\n\n"))
        .collect();
    let (done, peer) = timed(|| tool(&url, "ldapmodify", &[], &modify));
    done?;
    if !engine.import("hr", &hr(n, changes)?, now)?.applied {
        return Err("the HR import was blocked".into());
    }
    let plan = engine.outbound("dir", now)?;
    let (statuses, ours) = timed(|| dir.apply(&plan.ops));
    let applied = statuses.iter().filter(|s| **s == OpStatus::Applied).count();
    println!(
        "{changes} modifications: ldapmodify {peer:.3} s ({:.0}/s); connector {applied} of {} ops in {ours:.3} s ({:.0}/s); ratio {:.2}x",
        changes as f64 / peer,
        plan.ops.len(),
        applied as f64 / ours,
        ours / peer
    );
    Ok(())
}
