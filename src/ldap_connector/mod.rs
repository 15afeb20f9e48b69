//! An LDAP directory (OpenLDAP, 389 DS, Active Directory) as a [`Connector`], behind
//! the `ldap` feature, on the `ldap3` crate's synchronous API with rustls for TLS.
//!
//! - **Export.** A complete export is a paged search (RFC 2696) of
//!   [`LdapSettings::base_dn`] with [`LdapSettings::filter`], typed by the system's
//!   schema: multi-valued attributes as sets, booleans from `TRUE` / `FALSE`, integers,
//!   GeneralizedTime (`20261203170000Z`) as datetimes and dates. A delta export holds the
//!   entries whose `modifyTimestamp` is at or after the watermark the previous export
//!   left ([`LdapConnector::watermark`]; inclusive, so an entry modified within the same
//!   second is read again, which the engine treats as unchanged), plus deletions found by
//!   a key-only listing compared with the keys of the previous export. Without a previous
//!   export a delta is a complete export. OpenLDAP keeps `modifyTimestamp` on every
//!   entry; on Active Directory the same shape serves with `uSNChanged` as the watermark
//!   (or the DirSync control, which also reports deletions), which this connector does
//!   not implement.
//! - **Ops.** A `create` is an LDAP add at the DN of [`LdapSettings::dn_template`] (its
//!   `{account_id}` replaced by the key, escaped as an RDN value) with
//!   [`LdapSettings::object_classes`]; an `update` one modify with `replace` for
//!   single-valued attributes and per-value `add` / `delete` for multi-valued ones (a
//!   value added by hand is never touched); a `delete` an LDAP delete. Each op reports
//!   success or the LDAP result code and message, so `confirm` receives exactly what was
//!   applied.
//! - **Group membership on group entries.** With [`LdapSettings::groups`], one
//!   multi-valued schema attribute holds group names, but the directory keeps membership
//!   as `member` DNs on the group entries: exports read every group once, ops add and
//!   delete `member` values on the groups. An op that touches the account entry and
//!   groups is undone as far as the directory allows when a later step fails, and is
//!   reported failed.
//!
//! A rejected row of an export (a value that does not parse as its schema type, an entry
//! without the key attribute) is named by its position; [`LdapConnector::dn_of_row`]
//! gives the entry's DN.
//!
//! # Example
//!
//! A host that reads the directory, then writes what the engine plans for it (see the
//! `ldap_sync` example for a whole run):
//!
//! ```no_run
//! use attrflow::connector::{pull, push, ExportMode};
//! use attrflow::ldap_connector::{GroupMapping, LdapConnector, LdapSettings};
//! use attrflow::{Engine, ValidatedConfig};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = ValidatedConfig::from_json(&std::fs::read_to_string("sync.json")?)?;
//!     let mut engine = Engine::new(config);
//!     let people = "ou=people,dc=example,dc=com";
//!     let mut settings = LdapSettings::new("ldaps://ldap.example.com", people, format!("uid={{account_id}},{people}"));
//!     settings.bind = Some(("cn=sync,dc=example,dc=com".into(), "secret".into()));
//!     settings.filter = "(objectClass=inetOrgPerson)".into();
//!     settings.groups = Some(GroupMapping {
//!         attribute: "groups".into(),
//!         base_dn: "ou=groups,dc=example,dc=com".into(),
//!         filter: "(objectClass=groupOfNames)".into(),
//!         name_attribute: "cn".into(),
//!         member_attribute: "member".into(),
//!     });
//!     let system = engine.config().system("dir").ok_or("no `dir` system")?.clone();
//!     let mut directory = LdapConnector::connect("dir", &system, settings)?;
//!     let now = "2026-03-02T08:00:00Z".parse()?;
//!     let report = pull(&mut engine, &mut directory, ExportMode::Complete, now)?;
//!     for rejection in &report.plan.rejections {
//!         eprintln!("{}: {rejection}", directory.dn_of_row(rejection.row).unwrap_or("?"));
//!     }
//!     let (plan, statuses) = push(&mut engine, &mut directory, now)?;
//!     println!("{} ops, {} applied", plan.ops.len(), statuses.iter().filter(|s| **s == attrflow::OpStatus::Applied).count());
//!     Ok(())
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConn, LdapConnSettings, Mod, Scope, SearchEntry};

use crate::config::{AccountSchema, SystemConfig};
use crate::connector::{Connector, ConnectorError, ExportMode, OpStatus};
use crate::outbound::{CreateOp, DeleteOp, Op, UpdateOp};
use crate::prepare::{key_text, Row, Snapshot};
use crate::text::Text;
use crate::value::Scalar;

mod text;
use text::{attr, cell, check, escape_rdn_value, ldap_text, newer, normalize_dn, result_text, set_cell};

/// Group membership kept on group entries instead of on the account entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMapping {
    /// The schema's multi-valued attribute whose values are group names.
    pub attribute: String,
    /// Where the groups are, e.g. `ou=groups,dc=example,dc=com`.
    pub base_dn: String,
    /// Which entries are groups, e.g. `(objectClass=groupOfNames)`.
    pub filter: String,
    /// The group attribute holding its name (the value of [`GroupMapping::attribute`]),
    /// e.g. `cn`.
    pub name_attribute: String,
    /// The group attribute holding member DNs, e.g. `member`.
    pub member_attribute: String,
}

/// How to reach and read a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// Accept any server certificate (throwaway test servers only).
    pub no_tls_verify: bool,
    /// The DN and password of a simple bind; `None` binds anonymously.
    pub bind: Option<(String, String)>,
    /// The base of the accounts' subtree search.
    pub base_dn: String,
    /// Which entries are accounts, e.g. `(objectClass=inetOrgPerson)`.
    pub filter: String,
    /// The DN of a new account, with `{account_id}` for its key.
    pub dn_template: String,
    /// The object classes of a new account.
    pub object_classes: Vec<String>,
    /// Entries per page of a paged search; `None` searches without paging (and meets
    /// the server's size limit).
    pub page_size: Option<u32>,
    /// How long one connection attempt or operation may take.
    pub timeout: Duration,
    /// Group membership kept on group entries.
    pub groups: Option<GroupMapping>,
}

impl LdapSettings {
    /// Settings with the defaults: no TLS upgrade, anonymous, `(objectClass=*)`, pages of
    /// 500, a 30 s timeout, no group mapping.
    pub fn new(url: impl Into<String>, base_dn: impl Into<String>, dn_template: impl Into<String>) -> LdapSettings {
        LdapSettings {
            url: url.into(),
            starttls: false,
            no_tls_verify: false,
            bind: None,
            base_dn: base_dn.into(),
            filter: "(objectClass=*)".into(),
            dn_template: dn_template.into(),
            object_classes: vec!["top".into(), "inetOrgPerson".into()],
            page_size: Some(500),
            timeout: Duration::from_secs(30),
            groups: None,
        }
    }
}

/// One directory as the accounts of one system.
pub struct LdapConnector {
    system: String,
    schema: AccountSchema,
    /// Whether keys compare exactly (else canonical in lower case, as the engine has them).
    key_exact: bool,
    settings: LdapSettings,
    conn: LdapConn,
    /// The newest `modifyTimestamp` of the last export.
    watermark: Option<String>,
    /// Keys of the last export, with their DNs.
    dns: BTreeMap<String, String>,
    /// Account key by DN (lower case), for member values.
    keys_by_dn: BTreeMap<String, String>,
    /// Group DN by group name, and the groups of each account key, as last read.
    group_dns: BTreeMap<String, String>,
    memberships: BTreeMap<String, BTreeSet<String>>,
    /// The DN of each row of the last export, in row order.
    row_dns: Vec<String>,
    /// The rows of the last export whose `modifyTimestamp` is the watermark: a delta
    /// reads that second again (changes later within it must not be missed), and
    /// leaves out the entries among them that are as they were.
    at_watermark: BTreeMap<String, Row>,
}

impl std::fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConnector")
            .field("system", &self.system)
            .field("url", &self.settings.url)
            .field("base_dn", &self.settings.base_dn)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

impl LdapConnector {
    /// Connects (StartTLS when asked) and binds. `system` must be configured; its
    /// schema types the export.
    pub fn connect(
        system: &str,
        config: &SystemConfig,
        settings: LdapSettings,
    ) -> Result<LdapConnector, ConnectorError> {
        let fail = |m: String| ConnectorError::new(system, m);
        if !settings.dn_template.contains("{account_id}") {
            return Err(fail(format!(
                "the DN template `{}` has no `{{account_id}}`",
                settings.dn_template
            )));
        }
        if let Some(groups) = &settings.groups {
            match config.schema.attributes.get(groups.attribute.as_str()) {
                Some(a) if a.multi => {}
                _ => {
                    return Err(fail(format!(
                        "the group attribute `{}` is not a multi-valued attribute of the schema",
                        groups.attribute
                    )))
                }
            }
        }
        let conn_settings = LdapConnSettings::new()
            .set_conn_timeout(settings.timeout)
            .set_starttls(settings.starttls)
            .set_no_tls_verify(settings.no_tls_verify);
        let mut conn = LdapConn::with_settings(conn_settings, &settings.url)
            .map_err(|e| fail(format!("cannot connect to {}: {e}", settings.url)))?;
        conn.with_timeout(settings.timeout);
        if let Some((dn, password)) = &settings.bind {
            check("bind", conn.simple_bind(dn, password)).map_err(|m| fail(format!("{m} (as `{dn}`)")))?;
        }
        Ok(LdapConnector {
            system: system.to_owned(),
            schema: config.schema.clone(),
            key_exact: config.key_case_exact(),
            settings,
            conn,
            watermark: None,
            dns: BTreeMap::new(),
            keys_by_dn: BTreeMap::new(),
            group_dns: BTreeMap::new(),
            memberships: BTreeMap::new(),
            row_dns: Vec::new(),
            at_watermark: BTreeMap::new(),
        })
    }

    /// The newest `modifyTimestamp` the last export saw (GeneralizedTime): where the
    /// next delta export starts. A host that persists it passes it back with
    /// [`LdapConnector::set_watermark`].
    pub fn watermark(&self) -> Option<&str> {
        self.watermark.as_deref()
    }

    /// Sets where the next delta export starts.
    pub fn set_watermark(&mut self, watermark: Option<String>) {
        self.watermark = watermark;
    }

    /// The DN of row `row` of the last export (what a rejection's `row` names).
    pub fn dn_of_row(&self, row: usize) -> Option<&str> {
        self.row_dns.get(row).map(String::as_str)
    }

    /// The DN of an account: as last exported, else from the template.
    pub fn dn_of(&self, key: &str) -> String {
        match self.dns.get(&self.canonical(key)) {
            Some(dn) => dn.clone(),
            None => self
                .settings
                .dn_template
                .replace("{account_id}", &escape_rdn_value(key)),
        }
    }

    /// Every entry of a subtree search, paged when the settings say so.
    fn search(&mut self, base: &str, filter: &str, attrs: Vec<String>) -> Result<Vec<SearchEntry>, ConnectorError> {
        let mut adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![Box::new(EntriesOnly::new())];
        if let Some(size) = self.settings.page_size {
            adapters.push(Box::new(PagedResults::new(i32::try_from(size).unwrap_or(i32::MAX))));
        }
        let system = self.system.clone();
        let fail = |m: String| ConnectorError::new(&system, m);
        let mut stream = self
            .conn
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .map_err(|e| fail(format!("search of `{base}` failed: {e}")))?;
        let mut entries = Vec::new();
        loop {
            match stream.next() {
                // ldap3 panics on an entry whose BER does not parse: a damaged or
                // hostile server must not take the host down with it.
                Ok(Some(entry)) => {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(entry))) {
                        Ok(entry) => entries.push(entry),
                        Err(_) => {
                            return Err(fail(format!(
                                "search of `{base}`: the server sent an entry that does not parse"
                            )))
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(fail(format!("search of `{base}` failed: {e}"))),
            }
        }
        let result = stream.result();
        if result.rc != 0 {
            return Err(fail(format!("search of `{base}`: {}", result_text("search", &result))));
        }
        Ok(entries)
    }

    /// Reads every group: name -> DN, and account key -> group names.
    fn read_groups(&mut self) -> Result<(), ConnectorError> {
        let Some(groups) = self.settings.groups.clone() else {
            return Ok(());
        };
        let entries = self.search(
            &groups.base_dn,
            &groups.filter,
            vec![groups.name_attribute.clone(), groups.member_attribute.clone()],
        )?;
        self.group_dns.clear();
        self.memberships.clear();
        for entry in entries {
            let Some(name) = attr(&entry, &groups.name_attribute).and_then(|v| v.first()).cloned() else {
                continue;
            };
            for member in attr(&entry, &groups.member_attribute).into_iter().flatten() {
                if let Some(key) = self.keys_by_dn.get(&normalize_dn(member)) {
                    self.memberships.entry(key.clone()).or_default().insert(name.clone());
                }
            }
            self.group_dns.insert(name, entry.dn);
        }
        Ok(())
    }

    /// The attributes read from account entries.
    fn account_attributes(&self) -> Vec<String> {
        let group_attr = self.settings.groups.as_ref().map(|g| g.attribute.as_str());
        let mut attrs: Vec<String> = self
            .schema
            .attributes
            .keys()
            .filter(|a| Some(a.as_str()) != group_attr)
            .map(|a| a.to_string())
            .collect();
        attrs.push("modifyTimestamp".into());
        attrs
    }

    /// One entry as a row of the schema's attributes (the group attribute aside).
    fn row_of(&self, entry: &SearchEntry) -> Row {
        let group_attr = self.settings.groups.as_ref().map(|g| g.attribute.as_str());
        let mut row = Row::new();
        for (name, declared) in &self.schema.attributes {
            if Some(name.as_str()) == group_attr {
                continue;
            }
            let values = attr(entry, name).map(Vec::as_slice).unwrap_or_default();
            row.insert(name.to_string(), cell(values, declared.value_type, declared.multi));
        }
        row
    }

    /// An entry's account key, canonical as the engine holds it.
    fn key_of(&self, entry: &SearchEntry) -> Option<String> {
        let raw = attr(entry, &self.schema.account_id).and_then(|v| v.first())?;
        Some(self.canonical(raw))
    }

    fn canonical(&self, key: &str) -> String {
        key_text(&serde_json::Value::String(key.to_owned()), self.key_exact).unwrap_or_else(|| key.to_owned())
    }

    fn complete(&mut self) -> Result<Snapshot, ConnectorError> {
        let entries = self.search(
            &self.settings.base_dn.clone(),
            &self.settings.filter.clone(),
            self.account_attributes(),
        )?;
        self.dns.clear();
        self.keys_by_dn.clear();
        self.row_dns.clear();
        let mut newest = self.watermark.clone();
        for entry in &entries {
            if let Some(key) = self.key_of(entry) {
                self.dns.insert(key.clone(), entry.dn.clone());
                self.keys_by_dn.insert(normalize_dn(&entry.dn), key);
            }
            newest = newer(newest, attr(entry, "modifyTimestamp").and_then(|v| v.first()));
        }
        self.read_groups()?;
        let mut rows = Vec::with_capacity(entries.len());
        self.at_watermark.clear();
        for entry in &entries {
            let mut row = self.row_of(entry);
            if let Some(groups) = &self.settings.groups {
                let held = self.key_of(entry).and_then(|k| self.memberships.get(&k).cloned());
                row.insert(groups.attribute.clone(), set_cell(held.unwrap_or_default()));
            }
            if let Some(key) = self.stamped_at(entry, newest.as_deref()) {
                self.at_watermark.insert(key, row.clone());
            }
            rows.push(row);
            self.row_dns.push(entry.dn.clone());
        }
        self.watermark = newest;
        Ok(Snapshot::Complete {
            columns: self.schema.attributes.keys().map(|a| a.to_string()).collect(),
            rows,
        })
    }

    /// The entry's key if its `modifyTimestamp` is `stamp`.
    fn stamped_at(&self, entry: &SearchEntry, stamp: Option<&str>) -> Option<String> {
        let at = attr(entry, "modifyTimestamp").and_then(|v| v.first())?;
        (Some(at.as_str()) == stamp).then(|| self.key_of(entry)).flatten()
    }

    fn delta(&mut self) -> Result<Snapshot, ConnectorError> {
        let Some(since) = self.watermark.clone() else {
            return self.complete();
        };
        if self.dns.is_empty() {
            return self.complete();
        }
        let base = self.settings.base_dn.clone();
        let filter = format!("(&{}(modifyTimestamp>={}))", self.settings.filter, since);
        let changed = self.search(&base, &filter, self.account_attributes())?;
        // Deletions: the keys listed now against those of the previous export.
        let listed = self.search(
            &base,
            &self.settings.filter.clone(),
            vec![self.schema.account_id.clone()],
        )?;
        let now_keys: BTreeMap<String, String> = listed
            .iter()
            .filter_map(|e| Some((self.key_of(e)?, e.dn.clone())))
            .collect();
        let deletes: Vec<serde_json::Value> = self
            .dns
            .keys()
            .filter(|k| !now_keys.contains_key(*k))
            .map(|k| serde_json::Value::String(k.clone()))
            .collect();
        self.keys_by_dn = now_keys.iter().map(|(k, dn)| (normalize_dn(dn), k.clone())).collect();
        self.dns = now_keys;
        let before = std::mem::take(&mut self.memberships);
        self.read_groups()?;
        let mut upserts = Vec::new();
        let mut newest = self.watermark.clone();
        let mut seen = BTreeSet::new();
        self.row_dns.clear();
        for entry in &changed {
            newest = newer(newest, attr(entry, "modifyTimestamp").and_then(|v| v.first()));
        }
        let previous = std::mem::take(&mut self.at_watermark);
        for entry in &changed {
            let mut row = self.row_of(entry);
            let key = self.key_of(entry);
            if let (Some(groups), Some(key)) = (&self.settings.groups, &key) {
                row.insert(
                    groups.attribute.clone(),
                    set_cell(self.memberships.get(key).cloned().unwrap_or_default()),
                );
                seen.insert(key.clone());
            }
            if let Some(key) = self.stamped_at(entry, newest.as_deref()) {
                self.at_watermark.insert(key, row.clone());
            }
            // Read again only because the watermark's second is read again.
            let unchanged = self
                .stamped_at(entry, Some(since.as_str()))
                .is_some_and(|k| previous.get(&k) == Some(&row));
            if unchanged {
                continue;
            }
            upserts.push(row);
            self.row_dns.push(entry.dn.clone());
        }
        if newest.as_deref() == Some(since.as_str()) {
            // Nothing newer: the watermark's rows stay those to compare with.
            for (key, row) in previous {
                self.at_watermark.entry(key).or_insert(row);
            }
        }
        // Accounts whose group membership changed, though their entry did not.
        if let Some(groups) = self.settings.groups.clone() {
            let keys: BTreeSet<&String> = before.keys().chain(self.memberships.keys()).collect();
            for key in keys {
                let (was, is) = (before.get(key), self.memberships.get(key));
                if was != is && !seen.contains(key) && self.dns.contains_key(key) {
                    let mut row = Row::new();
                    row.insert(self.schema.account_id.clone(), serde_json::Value::String(key.clone()));
                    row.insert(groups.attribute.clone(), set_cell(is.cloned().unwrap_or_default()));
                    upserts.push(row);
                    self.row_dns.push(self.dn_of(key));
                }
            }
        }
        self.watermark = newest;
        Ok(Snapshot::Incremental { upserts, deletes })
    }

    /// The DN of a group by name, as last read.
    fn group_dn(&self, name: &str) -> Result<String, String> {
        self.group_dns
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no group named `{name}` under the groups' base"))
    }

    /// Adds (or deletes) `dn` as a member of one group.
    fn change_member(&mut self, dn: &str, group: &str, add: bool) -> Result<(), String> {
        let Some(mapping) = &self.settings.groups else {
            return Ok(());
        };
        let group = self.group_dn(group)?;
        let values = HashSet::from([dn.to_owned()]);
        let attribute = mapping.member_attribute.clone();
        let m = if add {
            Mod::Add(attribute, values)
        } else {
            Mod::Delete(attribute, values)
        };
        check(&format!("modify of group `{group}`"), self.conn.modify(&group, vec![m]))
    }

    /// Adds (or deletes) `dn` as a member of each group; on a failure, undoes the ones
    /// done and returns the failure.
    fn change_members(&mut self, dn: &str, groups: &[String], add: bool) -> Result<(), String> {
        for (done, name) in groups.iter().enumerate() {
            if let Err(e) = self.change_member(dn, name, add) {
                let _ = self.undo_members(dn, groups.get(..done).unwrap_or_default(), add);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reverses [`LdapConnector::change_members`] of `groups` (best effort: stops at the
    /// first group the directory refuses).
    fn undo_members(&mut self, dn: &str, groups: &[String], added: bool) -> Result<(), String> {
        for name in groups {
            self.change_member(dn, name, !added)?;
        }
        Ok(())
    }

    fn group_attr(&self) -> Option<&str> {
        self.settings.groups.as_ref().map(|g| g.attribute.as_str())
    }

    fn create(&mut self, c: &CreateOp) -> Result<(), String> {
        let dn = self.dn_of(&c.account);
        let mut attrs: Vec<(String, HashSet<String>)> = vec![(
            "objectClass".into(),
            self.settings.object_classes.iter().cloned().collect(),
        )];
        let mut groups = Vec::new();
        for (name, value) in &c.attributes {
            if Some(name.as_str()) == self.group_attr() {
                groups = value.scalars().iter().map(|s| s.to_string()).collect();
                continue;
            }
            let values: HashSet<String> = value.scalars().iter().map(ldap_text).collect();
            if !values.is_empty() {
                attrs.push((name.to_string(), values));
            }
        }
        check(&format!("add of `{dn}`"), self.conn.add(&dn, attrs))?;
        if let Err(e) = self.change_members(&dn, &groups, true) {
            // Not half-applied: the entry goes again.
            let _ = self.conn.delete(&dn);
            return Err(e);
        }
        let key = self.canonical(&c.account);
        self.keys_by_dn.insert(normalize_dn(&dn), key.clone());
        self.dns.insert(key.clone(), dn);
        self.memberships.insert(key, groups.into_iter().collect());
        Ok(())
    }

    fn update(&mut self, u: &UpdateOp) -> Result<(), String> {
        let dn = self.dn_of(&u.account);
        let group_attr = self.group_attr().map(str::to_owned);
        let is_group = |a: &Text| Some(a.as_str()) == group_attr.as_deref();
        let mut mods: Vec<Mod<String>> = Vec::new();
        for (name, value) in u.set.iter().filter(|(a, _)| !is_group(a)) {
            mods.push(Mod::Replace(
                name.to_string(),
                value.scalars().iter().map(ldap_text).collect(),
            ));
        }
        for (name, items) in u.add.iter().filter(|(a, _)| !is_group(a)) {
            mods.push(Mod::Add(name.to_string(), items.iter().map(ldap_text).collect()));
        }
        for (name, items) in u.remove.iter().filter(|(a, _)| !is_group(a)) {
            mods.push(Mod::Delete(name.to_string(), items.iter().map(ldap_text).collect()));
        }
        let names = |m: Option<&Vec<Scalar>>| -> Vec<String> {
            m.map(|v| v.iter().map(|s| s.to_string()).collect()).unwrap_or_default()
        };
        let (join, leave) = match &group_attr {
            Some(a) => (names(u.add.get(a.as_str())), names(u.remove.get(a.as_str()))),
            None => (Vec::new(), Vec::new()),
        };
        // Groups first, then the entry: both are undone if a later step fails.
        self.change_members(&dn, &join, true)?;
        if let Err(e) = self.change_members(&dn, &leave, false) {
            let _ = self.undo_members(&dn, &join, true);
            return Err(e);
        }
        if !mods.is_empty() {
            if let Err(e) = check(&format!("modify of `{dn}`"), self.conn.modify(&dn, mods)) {
                let _ = self.undo_members(&dn, &leave, false);
                let _ = self.undo_members(&dn, &join, true);
                return Err(e);
            }
        }
        let held = self.memberships.entry(self.canonical(&u.account)).or_default();
        held.extend(join);
        for g in &leave {
            held.remove(g);
        }
        Ok(())
    }

    fn delete(&mut self, d: &DeleteOp) -> Result<(), String> {
        let dn = self.dn_of(&d.account);
        let key = self.canonical(&d.account);
        let groups: Vec<String> = self
            .memberships
            .get(&key)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default();
        // No dangling member DNs: leave the groups first, rejoin them if the delete fails.
        self.change_members(&dn, &groups, false)?;
        if let Err(e) = check(&format!("delete of `{dn}`"), self.conn.delete(&dn)) {
            let _ = self.undo_members(&dn, &groups, false);
            return Err(e);
        }
        self.dns.remove(&key);
        self.keys_by_dn.remove(&normalize_dn(&dn));
        self.memberships.remove(&key);
        Ok(())
    }
}

impl Connector for LdapConnector {
    fn system(&self) -> &str {
        &self.system
    }

    fn export(&mut self, mode: ExportMode) -> Result<Snapshot, ConnectorError> {
        match mode {
            ExportMode::Complete => self.complete(),
            ExportMode::Delta => self.delta(),
        }
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<OpStatus> {
        // Group names resolve against the groups as they are now.
        if self.settings.groups.is_some() && self.group_dns.is_empty() {
            if let Err(e) = self.read_groups() {
                return ops.iter().map(|_| OpStatus::Failed(e.message().to_owned())).collect();
            }
        }
        ops.iter()
            .map(|op| {
                let outcome = match op {
                    Op::Create(c) => self.create(c),
                    Op::Update(u) => self.update(u),
                    Op::Delete(d) => self.delete(d),
                };
                match outcome {
                    Ok(()) => OpStatus::Applied,
                    Err(message) => OpStatus::Failed(message),
                }
            })
            .collect()
    }
}
