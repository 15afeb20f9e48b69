//! The `ldap` feature against a real OpenLDAP server (a throwaway slapd, see
//! `tests/support/slapd.rs`): exports equal what `ldapsearch` shows, every op kind is
//! applied and read back, failing ops are reported failed and leave the mirror as it
//! was, paged exports of 20,000 entries, and the faults (unreachable server, bad
//! credentials, a referral, a size limit, an entry without its key, a value that does
//! not parse) each named.
#![cfg(feature = "ldap")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use attrflow::connector::{push, Connector, ExportMode, OpStatus};
use attrflow::ldap_connector::{GroupMapping, LdapConnector, LdapSettings};
use attrflow::{Engine, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value as Json};
use support::slapd::{self, ADMIN, GROUPS, PASSWORD, PEOPLE};

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).unwrap()
}

/// HR drives `dir`, a directory: accounts keyed by `uid` (the employee number), groups
/// kept on group entries, automatic provisioning, deletion once out of scope.
fn config() -> ValidatedConfig {
    config_with(|_| {})
}

fn config_with(edit: impl FnOnce(&mut Json)) -> ValidatedConfig {
    let mut json = json!({
        "identity": { "attributes": {
            "employeeNumber": { "type": "string" },
            "givenName": { "type": "string" },
            "sn": { "type": "string" },
            "mail": { "type": "string" },
            "title": { "type": "string" },
            "groups": { "type": "string", "multi": true },
            "displayName": { "type": "string", "computed": { "concat": [{ "attr": "givenName" }, " ", { "attr": "sn" }] } }
        } },
        "systems": {
            "hr": {
                "schema": { "account_id": "id", "account_name": "id", "attributes": {
                    "id": { "type": "string" }, "givenName": { "type": "string" }, "sn": { "type": "string" },
                    "mail": { "type": "string" }, "title": { "type": "string" },
                    "groups": { "type": "string", "multi": true } } },
                "authoritative": true,
                "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                "flows": [
                    { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100, "delete": 100 },
                    { "account": "givenName", "identity": "givenName", "direction": "inbound", "create": 100, "update": 100, "delete": 100 },
                    { "account": "sn", "identity": "sn", "direction": "inbound", "create": 100, "update": 100, "delete": 100 },
                    { "account": "mail", "identity": "mail", "direction": "inbound", "create": 100, "update": 100, "delete": 100 },
                    { "account": "title", "identity": "title", "direction": "inbound", "create": 100, "update": 100, "delete": 100 },
                    { "account": "groups", "identity": "groups", "direction": "inbound", "create": 100, "update": 100, "delete": 100 }
                ]
            },
            "dir": {
                "schema": { "account_id": "uid", "account_name": "uid", "attributes": {
                    "uid": { "type": "string", "case_exact": false }, "cn": { "type": "string" }, "sn": { "type": "string" },
                    "mail": { "type": "string" }, "title": { "type": "string" },
                    "employeeNumber": { "type": "string" },
                    "groups": { "type": "string", "multi": true, "entitlement": true } } },
                "correlation": [ [ { "account": "employeeNumber", "identity": "employeeNumber" } ] ],
                "provisioning": { "auto": true },
                "scope": { "not": { "is_empty": { "attr": "employeeNumber" } } },
                "deprovisioning": { "delete_after_days": 0 },
                "flows": [
                    { "account": "uid", "identity": "employeeNumber", "direction": "disabled" },
                    { "account": "employeeNumber", "identity": "employeeNumber", "direction": "outbound" },
                    { "account": "cn", "identity": "displayName", "direction": "outbound" },
                    { "account": "sn", "identity": "sn", "direction": "outbound" },
                    { "account": "mail", "identity": "mail", "direction": "outbound" },
                    { "account": "title", "identity": "title", "direction": "outbound" },
                    { "account": "groups", "identity": "groups", "direction": "outbound" }
                ]
            }
        }
    });
    edit(&mut json);
    ValidatedConfig::from_json(&json.to_string()).unwrap()
}

fn settings(url: &str) -> LdapSettings {
    let mut s = LdapSettings::new(url, PEOPLE, format!("uid={{account_id}},{PEOPLE}"));
    s.bind = Some((ADMIN.into(), PASSWORD.into()));
    s.filter = "(objectClass=inetOrgPerson)".into();
    s.groups = Some(GroupMapping {
        attribute: "groups".into(),
        base_dn: GROUPS.into(),
        filter: "(objectClass=groupOfNames)".into(),
        name_attribute: "cn".into(),
        member_attribute: "member".into(),
    });
    s
}

fn connector(engine: &Engine, url: &str) -> LdapConnector {
    let system = engine.config().system("dir").unwrap();
    LdapConnector::connect("dir", system, settings(url)).unwrap()
}

/// A group whose first member is the admin entry: added by hand, never the engine's.
fn add_group(url: &str, name: &str) {
    slapd::ldap_tool(
        url,
        "ldapadd",
        &[],
        Some(&format!(
            "dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}\nmember: {ADMIN}\n"
        )),
    );
}

fn hr(rows: Json) -> Snapshot {
    let columns = ["id", "givenName", "sn", "mail", "title", "groups"];
    Snapshot::Complete {
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: serde_json::from_value(rows).unwrap(),
    }
}

/// `ldapsearch` of one entry or subtree: attribute (lower case) -> sorted values, by DN.
fn search(url: &str, base: &str, filter: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let text = slapd::ldap_tool(url, "ldapsearch", &["-LLL", "-b", base, filter], None);
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (dn, name, value) in slapd::ldif(&text) {
        out.entry(dn.to_lowercase())
            .or_default()
            .entry(name.to_lowercase())
            .or_default()
            .insert(value);
    }
    out
}

fn members(url: &str, group: &str) -> BTreeSet<String> {
    search(url, &format!("cn={group},{GROUPS}"), "(objectClass=*)")
        .into_values()
        .next()
        .and_then(|e| e.get("member").cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.to_lowercase())
        .collect()
}

fn dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}").to_lowercase()
}

#[test]
fn joiners_movers_and_leavers_reach_the_directory_op_by_op() {
    let Some(server) = slapd::start() else { return };
    let url = &server.url;
    add_group(url, "staff");
    add_group(url, "sales");
    let mut engine = Engine::new(config());
    let people = json!([
        { "id": "E1", "givenName": "Ann", "sn": "Lee", "mail": "ann@example.com", "title": "Engineer", "groups": ["staff"] },
        { "id": "E2", "givenName": "Bob", "sn": "Roe", "mail": "bob@example.com", "title": "Seller", "groups": ["sales", "staff"] }
    ]);
    assert!(engine.import("hr", &hr(people), at(1)).unwrap().applied);
    let mut dir = connector(&engine, url);

    // Joiners: one add per identity, group memberships on the groups.
    let (plan, statuses) = push(&mut engine, &mut dir, at(1)).unwrap();
    assert_eq!(plan.counts.inserted, 2, "{plan:?}");
    assert!(statuses.iter().all(|s| *s == OpStatus::Applied), "{statuses:?}");
    let e1 = search(url, &dn("E1"), "(objectClass=*)").remove(&dn("E1")).unwrap();
    assert_eq!(e1["cn"], BTreeSet::from(["Ann Lee".to_owned()]));
    assert_eq!(e1["title"], BTreeSet::from(["Engineer".to_owned()]));
    assert_eq!(
        members(url, "staff"),
        BTreeSet::from([ADMIN.to_lowercase(), dn("E1"), dn("E2")])
    );
    assert_eq!(members(url, "sales"), BTreeSet::from([ADMIN.to_lowercase(), dn("E2")]));

    // The directory's export matches what the engine confirmed: nothing to do.
    let report = attrflow::connector::pull(&mut engine, &mut dir, ExportMode::Complete, at(2)).unwrap();
    assert!(report.applied);
    assert_eq!(
        report.plan.counts.updated + report.plan.counts.inserted + report.plan.counts.deleted,
        0,
        "{:?}",
        report.plan.counts
    );
    assert!(engine.outbound("dir", at(2)).unwrap().ops.is_empty());

    // A mover: a new title and a move from staff to sales, value by value (the manual
    // member stays).
    let moved = json!([
        { "id": "E1", "givenName": "Ann", "sn": "Lee", "mail": "ann@example.com", "title": "Manager", "groups": ["sales"] },
        { "id": "E2", "givenName": "Bob", "sn": "Roe", "mail": "bob@example.com", "title": "Seller", "groups": ["sales", "staff"] }
    ]);
    assert!(engine.import("hr", &hr(moved), at(3)).unwrap().applied);
    let (plan, statuses) = push(&mut engine, &mut dir, at(3)).unwrap();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(statuses, vec![OpStatus::Applied]);
    let e1 = search(url, &dn("E1"), "(objectClass=*)").remove(&dn("E1")).unwrap();
    assert_eq!(e1["title"], BTreeSet::from(["Manager".to_owned()]));
    assert_eq!(members(url, "staff"), BTreeSet::from([ADMIN.to_lowercase(), dn("E2")]));
    assert_eq!(
        members(url, "sales"),
        BTreeSet::from([ADMIN.to_lowercase(), dn("E1"), dn("E2")])
    );

    // A leaver: out of scope, deleted (delete_after_days 0), and out of its groups.
    let left = json!([
        { "id": "E1", "givenName": "Ann", "sn": "Lee", "mail": "ann@example.com", "title": "Manager", "groups": ["sales"] }
    ]);
    assert!(engine.import("hr", &hr(left), at(4)).unwrap().applied);
    let (plan, statuses) = push(&mut engine, &mut dir, at(4)).unwrap();
    assert_eq!(plan.counts.deleted, 1, "{plan:?}");
    assert!(statuses.iter().all(|s| *s == OpStatus::Applied), "{statuses:?}");
    assert!(search(url, PEOPLE, "(uid=E2)").is_empty(), "the entry is gone");
    assert_eq!(members(url, "sales"), BTreeSet::from([ADMIN.to_lowercase(), dn("E1")]));
    assert_eq!(members(url, "staff"), BTreeSet::from([ADMIN.to_lowercase()]));
    assert!(engine.account("dir", "E2").unwrap().is_none());
}

/// Rows of a snapshot by key: attribute -> sorted values as text.
fn rows_by_key(rows: &[attrflow::Row], key: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    rows.iter()
        .map(|row| {
            let values = row
                .iter()
                .map(|(name, cell)| {
                    let texts: BTreeSet<String> = match cell {
                        Json::Null => BTreeSet::new(),
                        Json::Array(items) => items.iter().map(text).collect(),
                        other => BTreeSet::from([text(other)]),
                    };
                    (name.to_lowercase(), texts)
                })
                .filter(|(_, v)| !v.is_empty())
                .collect();
            (text(&row[key]), values)
        })
        .collect()
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What `ldapsearch` shows of the accounts, as the rows the connector should give: the
/// schema's attributes by key, and the groups from the group entries.
fn expected_rows(url: &str) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let schema = ["uid", "cn", "sn", "mail", "title", "employeenumber"];
    let people = search(url, PEOPLE, "(objectClass=inetOrgPerson)");
    let groups = search(url, GROUPS, "(objectClass=groupOfNames)");
    people
        .iter()
        .map(|(dn, attrs)| {
            let mut row: BTreeMap<String, BTreeSet<String>> = attrs
                .iter()
                .filter(|(name, _)| schema.contains(&name.as_str()))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let held: BTreeSet<String> = groups
                .values()
                .filter(|g| {
                    g.get("member")
                        .is_some_and(|m| m.iter().any(|m| m.to_lowercase() == *dn))
                })
                .filter_map(|g| g.get("cn").and_then(|c| c.first().cloned()))
                .collect();
            if !held.is_empty() {
                row.insert("groups".into(), held);
            }
            (attrs["uid"].first().cloned().unwrap_or_default(), row)
        })
        .collect()
}

fn person(uid: &str, title: &str, mails: &[&str]) -> String {
    let mut ldif = format!(
        "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Person {uid}\nsn: {uid}\ntitle: {title}\nemployeeNumber: {uid}\n"
    );
    for m in mails {
        ldif.push_str(&format!("mail: {m}\n"));
    }
    ldif.push('\n');
    ldif
}

#[test]
fn complete_and_delta_exports_equal_what_ldapsearch_shows() {
    let Some(server) = slapd::start() else { return };
    let url = &server.url;
    let people = [
        person("a1", "Engineer", &["a1@example.com", "ann@example.com"]),
        person("a2", "Seller", &[]),
        person("a3", "Clerk", &["a3@example.com"]),
    ]
    .concat();
    slapd::ldap_tool(url, "ldapadd", &[], Some(&people));
    slapd::ldap_tool(
        url,
        "ldapadd",
        &[],
        Some(&format!(
            "dn: cn=staff,{GROUPS}\nobjectClass: groupOfNames\ncn: staff\nmember: uid=a1,{PEOPLE}\nmember: uid=a3,{PEOPLE}\n"
        )),
    );
    let engine = Engine::new(config());
    let mut dir = connector(&engine, url);
    let Snapshot::Complete { columns, rows } = dir.export(ExportMode::Complete).unwrap() else {
        panic!("a complete export")
    };
    assert_eq!(
        columns,
        ["uid", "cn", "sn", "mail", "title", "employeeNumber", "groups"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(rows_by_key(&rows, "uid"), expected_rows(url));
    let watermark = dir.watermark().map(str::to_owned);
    assert!(watermark.is_some());

    // Changes a second later: one modified, one added, one deleted, one moved between
    // groups (its entry unchanged).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    slapd::ldap_tool(
        url,
        "ldapmodify",
        &[],
        Some(&format!(
            "dn: uid=a2,{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Manager\n\n\
             dn: uid=a1,{PEOPLE}\nchangetype: delete\n\n\
             dn: cn=staff,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=a2,{PEOPLE}\n-\ndelete: member\nmember: uid=a1,{PEOPLE}\n\n"
        )),
    );
    slapd::ldap_tool(url, "ldapadd", &[], Some(&person("a4", "Intern", &[])));
    let Snapshot::Incremental { upserts, deletes } = dir.export(ExportMode::Delta).unwrap() else {
        panic!("a delta export")
    };
    assert_eq!(deletes, vec![json!("a1")]);
    let got = rows_by_key(&upserts, "uid");
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a2", "a4"], "{got:?}");
    let expected = expected_rows(url);
    assert_eq!(got["a2"], expected["a2"], "the modified entry, with its new group");
    assert_eq!(got["a4"], expected["a4"]);
    assert!(dir.watermark() > watermark.as_deref(), "the watermark moves on");
    // Nothing changed since: the watermark's second is read again, but entries as they
    // were are left out.
    let Snapshot::Incremental { upserts, deletes } = dir.export(ExportMode::Delta).unwrap() else {
        panic!("a delta export")
    };
    assert!(upserts.is_empty() && deletes.is_empty(), "{upserts:?} {deletes:?}");
    // A membership changed on the group entry alone: the account's groups are upserted.
    slapd::ldap_tool(
        url,
        "ldapmodify",
        &[],
        Some(&format!(
            "dn: cn=staff,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=a4,{PEOPLE}\n\n"
        )),
    );
    let Snapshot::Incremental { upserts, deletes } = dir.export(ExportMode::Delta).unwrap() else {
        panic!("a delta export")
    };
    assert!(deletes.is_empty());
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    assert_eq!(text(&upserts[0]["uid"]), "a4");
    assert_eq!(upserts[0]["groups"], json!(["staff"]));
}

#[test]
fn failing_ops_are_reported_with_their_ldap_result_and_leave_the_mirror_as_it_was() {
    let Some(server) = slapd::start() else { return };
    let url = &server.url;
    add_group(url, "staff");
    // An entry the engine does not know holds E1's DN already.
    slapd::ldap_tool(url, "ldapadd", &[], Some(&person("E1", "Squatter", &[])));
    let mut engine = Engine::new(config());
    let people = json!([
        { "id": "E1", "givenName": "Ann", "sn": "Lee", "mail": "ann@example.com", "title": "Engineer", "groups": ["staff"] },
        { "id": "E2", "givenName": "Bob", "sn": "Roe", "mail": "bö@example.com", "title": "Seller", "groups": [] },
        { "id": "E3", "givenName": "Cy", "sn": "Poe", "mail": "cy@example.com", "title": "Clerk", "groups": ["nosuchgroup"] },
        { "id": "E4", "givenName": "Di", "sn": "Fox", "mail": "di@example.com", "title": "Boss", "groups": ["staff"] }
    ]);
    assert!(engine.import("hr", &hr(people), at(1)).unwrap().applied);
    let mut dir = connector(&engine, url);
    let (plan, statuses) = push(&mut engine, &mut dir, at(1)).unwrap();
    let by_key: BTreeMap<&str, &OpStatus> = plan.ops.iter().map(|o| o.account()).zip(&statuses).collect();
    let failed = |key: &str| match by_key[key] {
        OpStatus::Failed(m) => m.clone(),
        OpStatus::Applied => panic!("{key} was applied"),
    };
    assert!(failed("e1").contains("68 (entryAlreadyExists)"), "{}", failed("e1"));
    assert!(failed("e2").contains("21 (invalidAttributeSyntax)"), "{}", failed("e2"));
    assert!(
        failed("e3").contains("no group named `nosuchgroup`"),
        "{}",
        failed("e3")
    );
    assert_eq!(by_key["e4"], &OpStatus::Applied);
    // Only E4 was confirmed; the failed creates left nothing behind in the directory.
    for key in ["e1", "e2", "e3"] {
        assert!(engine.account("dir", key).unwrap().is_none(), "{key}");
    }
    assert!(engine.account("dir", "e4").unwrap().is_some());
    assert!(search(url, PEOPLE, "(uid=E3)").is_empty(), "the add of E3 was undone");
    let squatter = search(url, PEOPLE, "(uid=E1)");
    assert_eq!(squatter[&dn("E1")]["title"], BTreeSet::from(["Squatter".to_owned()]));
    assert_eq!(members(url, "staff"), BTreeSet::from([ADMIN.to_lowercase(), dn("E4")]));
}

#[test]
fn a_paged_export_reads_20000_entries_past_the_size_limit() {
    let Some(server) = slapd::start() else { return };
    let url = &server.url;
    let ldif: String = (0..20_000).map(|i| person(&format!("p{i:05}"), "Staff", &[])).collect();
    slapd::ldap_tool(url, "ldapadd", &[], Some(&ldif));
    let engine = Engine::new(config());
    let mut dir = connector(&engine, url);
    let Snapshot::Complete { rows, .. } = dir.export(ExportMode::Complete).unwrap() else {
        panic!("a complete export")
    };
    assert_eq!(rows.len(), 20_000);
    let keys: BTreeSet<String> = rows.iter().map(|r| text(&r["uid"])).collect();
    assert_eq!(keys.len(), 20_000);
    // Without paging, the server's size limit (1,000 here) stops the search: named.
    // (The root DN has no limits: this search binds anonymously.)
    let mut settings = settings(url);
    settings.page_size = None;
    settings.bind = None;
    let system = engine.config().system("dir").unwrap();
    let mut unpaged = LdapConnector::connect("dir", system, settings).unwrap();
    let Err(err) = unpaged.export(ExportMode::Complete) else {
        panic!("an unpaged search of 20,000 entries passed the size limit")
    };
    assert!(err.to_string().contains("4 (sizeLimitExceeded)"), "{err}");
}

#[test]
fn faults_are_typed_errors_or_rejections_naming_the_entry() {
    let Some(server) = slapd::start() else { return };
    let url = &server.url;
    let engine = Engine::new(config());
    let system = engine.config().system("dir").unwrap();
    // Nothing listens: a connection error naming the URL.
    let closed = format!("ldap://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let err = LdapConnector::connect("dir", system, settings(&closed)).unwrap_err();
    assert!(
        err.to_string().contains("cannot connect") && err.to_string().contains(&closed),
        "{err}"
    );
    // Bad credentials.
    let mut wrong = settings(url);
    wrong.bind = Some((ADMIN.into(), "wrong".into()));
    let err = LdapConnector::connect("dir", system, wrong).unwrap_err();
    assert!(err.to_string().contains("49 (invalidCredentials)"), "{err}");
    // A base outside the server's naming context: the referral is named.
    let mut elsewhere = settings(url);
    elsewhere.base_dn = "ou=people,dc=other,dc=org".into();
    let err = LdapConnector::connect("dir", system, elsewhere)
        .unwrap()
        .export(ExportMode::Complete)
        .unwrap_err();
    assert!(err.to_string().contains("referral"), "{err}");
    // An entry without the key attribute: rejected by prepare; its row names the DN.
    slapd::ldap_tool(
        url,
        "ldapadd",
        &[],
        Some(&format!(
            "dn: cn=nokey,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: nokey\nsn: nokey\n\n{}",
            person("ok1", "Clerk", &[])
        )),
    );
    let mut engine = Engine::new(config());
    let mut dir = connector(&engine, url);
    let report = attrflow::connector::pull(&mut engine, &mut dir, ExportMode::Complete, at(1)).unwrap();
    let rejected = &report.plan.rejections;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].reason.as_str(), "missing_key");
    assert_eq!(
        dir.dn_of_row(rejected[0].row),
        Some(format!("cn=nokey,{PEOPLE}").as_str())
    );
    // A value that does not parse as its schema type (an integer here): rejected, named.
    let typed =
        config_with(|c| c["systems"]["dir"]["schema"]["attributes"]["employeeNumber"] = json!({ "type": "integer" }));
    let mut engine = Engine::new(typed);
    let system = engine.config().system("dir").unwrap();
    let mut dir = LdapConnector::connect("dir", system, settings(url)).unwrap();
    let report = attrflow::connector::pull(&mut engine, &mut dir, ExportMode::Complete, at(1)).unwrap();
    let bad: Vec<_> = report
        .plan
        .rejections
        .iter()
        .filter(|r| r.attribute.as_deref() == Some("employeeNumber"))
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", report.plan.rejections);
    assert_eq!(dir.dn_of_row(bad[0].row), Some(format!("uid=ok1,{PEOPLE}").as_str()));
}

#[test]
fn binds_over_starttls_and_ldaps() {
    let Some(server) = slapd::start() else { return };
    let Some(ldaps) = server.ldaps_url.clone() else {
        eprintln!("skipped: no TLS listener (openssl missing)");
        return;
    };
    slapd::ldap_tool(&server.url, "ldapadd", &[], Some(&person("t1", "Clerk", &[])));
    let engine = Engine::new(config());
    let system = engine.config().system("dir").unwrap();
    let export = |settings: LdapSettings| -> Result<usize, String> {
        let mut dir = LdapConnector::connect("dir", system, settings).map_err(|e| e.to_string())?;
        match dir.export(ExportMode::Complete).map_err(|e| e.to_string())? {
            Snapshot::Complete { rows, .. } => Ok(rows.len()),
            _ => Err("not a complete export".into()),
        }
    };
    // StartTLS on the plain port, then ldaps://; the test certificate is self-signed.
    let mut starttls = settings(&server.url);
    starttls.starttls = true;
    starttls.no_tls_verify = true;
    assert_eq!(export(starttls.clone()), Ok(1));
    let mut over_tls = settings(&ldaps);
    over_tls.no_tls_verify = true;
    assert_eq!(export(over_tls), Ok(1));
    // Verified against the system's roots, the self-signed certificate is refused.
    starttls.no_tls_verify = false;
    let err = export(starttls).unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");
}
