//! Connectors, supplied by the host: the [`Connector`] trait that exports a system's
//! accounts and carries out outbound ops, and [`MemoryConnector`], an in-memory system
//! for tests, simulations and examples.
//!
//! The engine never calls a connector on its own. [`pull`] and [`push`] are small
//! host-side helpers that wire one to an engine: export then import, and plan then
//! apply then confirm what succeeded.
//!
//! # Contract
//! `export` returns a complete snapshot (every account, with the schema's column list)
//! or a delta of what changed since the previous export. `apply` carries out ops in
//! order and reports, for each op, whether it succeeded; a failed op must have changed
//! nothing in the target. Only succeeded ops are confirmed to the engine, so a failed
//! op is simply planned again next time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, ImportReport};
use crate::error::{ImportError, OutboundError};
use crate::outbound::{Op, OutboundPlan};
use crate::prepare::{Row, Snapshot};
use crate::store::Store;
use crate::value::Value;

/// What an export should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    /// Every account.
    Complete,
    /// What changed since the previous export.
    Delta,
}

/// The outcome of one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "status", content = "message")]
pub enum OpStatus {
    /// The target now holds what the op asked for.
    Applied,
    /// The target refused; nothing changed.
    Failed(String),
}

/// A connector's failure to export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the connector for system `{system}` failed: {message}")]
pub struct ConnectorError {
    system: String,
    message: String,
}

impl ConnectorError {
    /// A failure of the connector for `system`.
    pub fn new(system: impl Into<String>, message: impl Into<String>) -> ConnectorError {
        ConnectorError {
            system: system.into(),
            message: message.into(),
        }
    }
    /// The system.
    pub fn system(&self) -> &str {
        &self.system
    }
    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A connected system as the host reaches it.
///
/// # Example
/// A target that keeps accounts in a map, as a real one keeps them in a directory or
/// a database: it exports them as a complete snapshot and carries out the plan's ops.
/// ```
/// use std::collections::BTreeMap;
/// use attrflow::connector::{Connector, ConnectorError, ExportMode, OpStatus};
/// use attrflow::{AttrMap, Op, Snapshot, Value};
///
/// #[derive(Debug, Default)]
/// struct Directory {
///     /// sam -> title
///     users: BTreeMap<String, String>,
/// }
///
/// impl Connector for Directory {
///     fn system(&self) -> &str {
///         "ad"
///     }
///     fn export(&mut self, _mode: ExportMode) -> Result<Snapshot, ConnectorError> {
///         let rows = self
///             .users
///             .iter()
///             .map(|(sam, title)| serde_json::json!({ "sam": sam, "title": title }))
///             .collect::<Vec<_>>();
///         serde_json::from_value(serde_json::json!({ "mode": "complete", "columns": ["sam", "title"], "rows": rows }))
///             .map_err(|e| ConnectorError::new("ad", e.to_string()))
///     }
///     fn apply(&mut self, ops: &[Op]) -> Vec<OpStatus> {
///         let title = |values: &AttrMap<Value>| values.get("title").and_then(Value::as_str).map(str::to_owned);
///         ops.iter()
///             .map(|op| match op {
///                 Op::Create(c) => {
///                     self.users.insert(c.account.clone(), title(&c.attributes).unwrap_or_default());
///                     OpStatus::Applied
///                 }
///                 Op::Update(u) => match self.users.get_mut(&u.account) {
///                     Some(held) => {
///                         if let Some(new) = title(&u.set) {
///                             *held = new;
///                         }
///                         OpStatus::Applied
///                     }
///                     // A failed op changes nothing; it is planned again next time.
///                     None => OpStatus::Failed(format!("no user `{}`", u.account)),
///                 },
///                 Op::Delete(d) => {
///                     self.users.remove(&d.account);
///                     OpStatus::Applied
///                 }
///             })
///             .collect()
///     }
/// }
///
/// let mut directory = Directory::default();
/// directory.users.insert("jdoe".into(), "Intern".into());
/// let snapshot = directory.export(ExportMode::Complete).unwrap();
/// assert_eq!(snapshot.len(), 1);
/// ```
/// With an engine, [`pull`] imports a connector's export and [`push`] applies the
/// outbound plan and confirms the ops that succeeded.
pub trait Connector: std::fmt::Debug {
    /// The system's name in the configuration.
    fn system(&self) -> &str;
    /// Exports accounts.
    fn export(&mut self, mode: ExportMode) -> Result<Snapshot, ConnectorError>;
    /// Carries out ops in order; returns one status per op, in the same order.
    fn apply(&mut self, ops: &[Op]) -> Vec<OpStatus>;
}

/// Errors of [`pull`] and [`push`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The connector failed to export.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The import was refused.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The outbound request or confirmation was refused.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
}

/// Exports from a connector and imports the snapshot at `now`.
pub fn pull<S: Store>(
    engine: &mut Engine<S>,
    connector: &mut dyn Connector,
    mode: ExportMode,
    now: DateTime<Utc>,
) -> Result<ImportReport, SyncError> {
    let snapshot = connector.export(mode)?;
    let system = connector.system().to_owned();
    Ok(engine.import(&system, &snapshot, now)?)
}

/// Computes the outbound plan for the connector's system, applies it unless blocked,
/// and confirms the ops that succeeded. Returns the plan and each op's status (empty
/// when blocked).
pub fn push<S: Store>(
    engine: &mut Engine<S>,
    connector: &mut dyn Connector,
    now: DateTime<Utc>,
) -> Result<(OutboundPlan, Vec<OpStatus>), SyncError> {
    let system = connector.system().to_owned();
    let plan = engine.outbound(&system, now)?;
    if plan.is_blocked() {
        return Ok((plan, Vec::new()));
    }
    let statuses = connector.apply(&plan.ops);
    let succeeded: Vec<Op> = plan
        .ops
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| **s == OpStatus::Applied)
        .map(|(op, _)| op.clone())
        .collect();
    engine.confirm(&succeeded, now)?;
    Ok((plan, statuses))
}

/// An in-memory system: accounts as rows keyed by the key attribute. It records what
/// changed since the last export for delta exports, and can be told to rewrite values
/// it receives (as real targets normalise what they are sent) or to refuse ops.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConnector {
    system: String,
    key_attribute: String,
    columns: Vec<String>,
    rows: BTreeMap<String, Row>,
    changed: BTreeSet<String>,
    deleted: BTreeSet<String>,
    refuse: BTreeSet<String>,
}

impl MemoryConnector {
    /// An empty system with the given schema column list and key attribute.
    pub fn new(system: impl Into<String>, key_attribute: impl Into<String>, columns: Vec<String>) -> MemoryConnector {
        MemoryConnector {
            system: system.into(),
            key_attribute: key_attribute.into(),
            columns,
            rows: BTreeMap::new(),
            changed: BTreeSet::new(),
            deleted: BTreeSet::new(),
            refuse: BTreeSet::new(),
        }
    }

    /// Inserts or replaces a row (as an administrator of the system would).
    pub fn upsert(&mut self, row: Row) {
        let Some(key) = row.get(&self.key_attribute).map(key_of) else {
            return;
        };
        self.deleted.remove(&key);
        self.changed.insert(key.clone());
        self.rows.insert(key, row);
    }

    /// Deletes a row.
    pub fn delete(&mut self, key: &str) {
        if self.rows.remove(key).is_some() {
            self.changed.remove(key);
            self.deleted.insert(key.to_owned());
        }
    }

    /// One row.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.get(key)
    }

    /// Makes every later op on this account fail.
    pub fn refuse_ops_on(&mut self, key: &str) {
        self.refuse.insert(key.to_owned());
    }

    fn apply_one(&mut self, op: &Op) -> OpStatus {
        if self.refuse.contains(op.account()) {
            return OpStatus::Failed(format!("account `{}` is locked", op.account()));
        }
        match op {
            Op::Create(c) => {
                if self.rows.contains_key(&c.account) {
                    return OpStatus::Failed(format!("account `{}` already exists", c.account));
                }
                let row: Row = c.attributes.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect();
                self.upsert(row);
            }
            Op::Update(u) => {
                let Some(mut row) = self.rows.get(&u.account).cloned() else {
                    return OpStatus::Failed(format!("account `{}` does not exist", u.account));
                };
                for (attribute, value) in &u.set {
                    row.insert(attribute.to_string(), value.to_json());
                }
                for (attribute, items) in &u.add {
                    let mut held = as_list(row.get(attribute.as_str()));
                    for item in items {
                        let item = item.to_json();
                        if !held.contains(&item) {
                            held.push(item);
                        }
                    }
                    row.insert(attribute.to_string(), serde_json::Value::Array(held));
                }
                for (attribute, items) in &u.remove {
                    let removed: Vec<serde_json::Value> = items.iter().map(|s| s.to_json()).collect();
                    let held: Vec<serde_json::Value> = as_list(row.get(attribute.as_str()))
                        .into_iter()
                        .filter(|v| !removed.contains(v))
                        .collect();
                    row.insert(attribute.to_string(), serde_json::Value::Array(held));
                }
                self.upsert(row);
            }
            Op::Delete(d) => {
                if !self.rows.contains_key(&d.account) {
                    return OpStatus::Failed(format!("account `{}` does not exist", d.account));
                }
                self.delete(&d.account);
            }
        }
        OpStatus::Applied
    }
}

fn key_of(raw: &serde_json::Value) -> String {
    match raw {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_list(value: Option<&serde_json::Value>) -> Vec<serde_json::Value> {
    match value {
        Some(serde_json::Value::Array(items)) => items.clone(),
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    }
}

impl Connector for MemoryConnector {
    fn system(&self) -> &str {
        &self.system
    }

    fn export(&mut self, mode: ExportMode) -> Result<Snapshot, ConnectorError> {
        let snapshot = match mode {
            ExportMode::Complete => Snapshot::Complete {
                columns: self.columns.clone(),
                rows: self.rows.values().cloned().collect(),
            },
            ExportMode::Delta => Snapshot::Incremental {
                upserts: self.changed.iter().filter_map(|k| self.rows.get(k).cloned()).collect(),
                deletes: self
                    .deleted
                    .iter()
                    .map(|k| serde_json::Value::String(k.clone()))
                    .collect(),
            },
        };
        self.changed.clear();
        self.deleted.clear();
        Ok(snapshot)
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<OpStatus> {
        ops.iter().map(|op| self.apply_one(op)).collect()
    }
}

/// Turns a [`Value`] map into a row, for hosts building snapshots by hand.
pub fn row_from_values<'a>(values: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Row {
    values.into_iter().map(|(k, v)| (k.to_owned(), v.to_json())).collect()
}
