//! Prepare (cleansing) of an import (SPEC 2.3): every row is checked before anything is
//! diffed. A bad row is rejected with its key and first reason and leaves its stored
//! account untouched; a complete snapshot with a dropped or unknown column is refused
//! whole.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::error::{ColumnProblem, ImportError};
use crate::store::{Store, StoreError};
use crate::validate::ValidatedConfig;
use crate::value::{Value, ValueProblem};

/// One raw row: attribute name to a JSON value (`null`, `""` and `[]` are empty).
pub type Row = serde_json::Map<String, serde_json::Value>;

/// What a connector exported: a complete snapshot or a delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Snapshot {
    /// Every account of the system. Keys not in it (and not rejected) are deletions.
    Complete {
        /// The column list of the export; it must equal the schema's attributes.
        columns: Vec<String>,
        /// The rows.
        rows: Vec<Row>,
    },
    /// Upserts (carrying only the attributes they change) and explicit deletes.
    Incremental {
        /// Rows to insert or update; omitted attributes keep their stored value.
        #[serde(default)]
        upserts: Vec<Row>,
        /// Keys of accounts to delete.
        #[serde(default)]
        deletes: Vec<serde_json::Value>,
    },
}

/// Why a row was rejected, in the order the checks run: a row is reported with the
/// first reason that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// The key attribute is absent or empty.
    MissingKey,
    /// Several rows share the key; all of them are rejected, reported once.
    DuplicateKey,
    /// An incremental row carries an attribute the schema lacks.
    UnknownColumn,
    /// Several values for a single-valued attribute.
    MultipleValues,
    /// A value that does not parse as its declared type.
    InvalidValue,
    /// A reference that resolves to no identity.
    DanglingReference,
}

impl RejectionReason {
    /// The stable `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionReason::MissingKey => "missing_key",
            RejectionReason::DuplicateKey => "duplicate_key",
            RejectionReason::UnknownColumn => "unknown_column",
            RejectionReason::MultipleValues => "multiple_values",
            RejectionReason::InvalidValue => "invalid_value",
            RejectionReason::DanglingReference => "dangling_reference",
        }
    }
}

/// A rejected row: its key (none for `missing_key`), the reason, the attribute at
/// fault, and the row's position in the import (0-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RowRejection {
    /// The account key, when the row had one.
    pub key: Option<String>,
    /// Why it was rejected.
    pub reason: RejectionReason,
    /// The attribute at fault, if one.
    pub attribute: Option<String>,
    /// Position of the (first) row in the import.
    pub row: usize,
}

impl fmt::Display for RowRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}", self.row + 1)?;
        if let Some(key) = &self.key {
            write!(f, " (key `{key}`)")?;
        }
        write!(f, " rejected: ")?;
        let attribute = self.attribute.as_deref().unwrap_or("?");
        match self.reason {
            RejectionReason::MissingKey => write!(f, "it has no value for the key attribute `{attribute}`"),
            RejectionReason::DuplicateKey => write!(f, "several rows share this key"),
            RejectionReason::UnknownColumn => write!(f, "attribute `{attribute}` is not in the schema"),
            RejectionReason::MultipleValues => write!(f, "several values for single-valued attribute `{attribute}`"),
            RejectionReason::InvalidValue => {
                write!(f, "the value of `{attribute}` does not parse as its declared type")
            }
            RejectionReason::DanglingReference => write!(f, "the reference in `{attribute}` matches no identity"),
        }?;
        write!(f, " ({}); the stored account is left as it was", self.reason.as_str())
    }
}

/// A row that passed every check: its key and the values it carries, typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedRow {
    pub(crate) key: String,
    /// Present attributes (complete mode: every schema attribute) in schema order.
    pub(crate) values: Vec<(String, Value)>,
}

/// The outcome of prepare: good rows sorted by key, deletes, rejections, and every key
/// that must be protected from deletion.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub(crate) rows: Vec<PreparedRow>,
    pub(crate) deletes: Vec<String>,
    pub(crate) rejections: Vec<RowRejection>,
    /// Keys present in the import (accepted or rejected).
    pub(crate) seen: HashSet<String>,
    pub(crate) complete: bool,
}

/// Canonical key text of a raw key value: its display form, lower-cased when the key
/// attribute ignores case. `None` when empty.
pub(crate) fn key_text(raw: &serde_json::Value, case_exact: bool) -> Option<String> {
    let text = match raw {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.len() == 1 => {
            return items.first().and_then(|i| key_text(i, case_exact))
        }
        serde_json::Value::Array(items) if items.is_empty() => return None,
        other => other.to_string(),
    };
    if text.is_empty() {
        None
    } else if case_exact {
        Some(text)
    } else {
        Some(text.to_lowercase())
    }
}

/// Checks the columns of a complete snapshot against the schema.
pub(crate) fn check_columns(system_name: &str, system: &SystemConfig, columns: &[String]) -> Result<(), ImportError> {
    let mut problems = Vec::new();
    for name in system.schema.attributes.keys() {
        if !columns.iter().any(|c| c == name) {
            problems.push(ColumnProblem::Missing(name.clone()));
        }
    }
    let mut seen = HashSet::new();
    for column in columns {
        if system.attribute(column).is_none() {
            problems.push(ColumnProblem::Unknown(column.clone()));
        } else if !seen.insert(column.as_str()) {
            problems.push(ColumnProblem::Duplicate(column.clone()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ImportError::Columns {
            system: system_name.to_owned(),
            problems,
        })
    }
}

/// Runs every row check of SPEC 2.3.
pub(crate) fn prepare(
    config: &ValidatedConfig,
    system_name: &str,
    snapshot: &Snapshot,
    store: &dyn Store,
) -> Result<Prepared, StoreError> {
    let Some(system) = config.system(system_name) else {
        return Ok(Prepared::default());
    };
    let key_attr = &system.schema.account_id;
    let key_exact = system.attribute(key_attr).is_none_or(|a| a.case_exact);
    let (rows, deletes, complete): (&[Row], &[serde_json::Value], bool) = match snapshot {
        Snapshot::Complete { rows, .. } => (rows, &[], true),
        Snapshot::Incremental { upserts, deletes } => (upserts, deletes, false),
    };

    let mut out = Prepared {
        complete,
        ..Prepared::default()
    };
    // Count keys across upserts and deletes: a key named twice is ambiguous.
    let keys: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.get(key_attr).and_then(|k| key_text(k, key_exact)))
        .collect();
    let delete_keys: Vec<Option<String>> = deletes.iter().map(|k| key_text(k, key_exact)).collect();
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for key in keys.iter().chain(&delete_keys).flatten() {
        *occurrences.entry(key.as_str()).or_default() += 1;
    }
    let mut reported_duplicates = HashSet::new();
    let references = ReferenceCheck::new(config, system, rows, store)?;

    for (index, (row, key)) in rows.iter().zip(&keys).enumerate() {
        let reject = |reason, attribute: Option<&str>| RowRejection {
            key: key.clone(),
            reason,
            attribute: attribute.map(str::to_owned),
            row: index,
        };
        let Some(key) = key else {
            out.rejections.push(reject(RejectionReason::MissingKey, Some(key_attr)));
            continue;
        };
        out.seen.insert(key.clone());
        if occurrences.get(key.as_str()).copied().unwrap_or(0) > 1 {
            if reported_duplicates.insert(key.clone()) {
                out.rejections
                    .push(reject(RejectionReason::DuplicateKey, Some(key_attr)));
            }
            continue;
        }
        match check_row(system, row, complete, &references) {
            Ok(values) => out.rows.push(PreparedRow {
                key: key.clone(),
                values,
            }),
            Err((reason, attribute)) => out.rejections.push(reject(reason, Some(&attribute))),
        }
    }
    let row_count = rows.len();
    for (index, key) in delete_keys.iter().cloned().enumerate() {
        match key {
            None => out.rejections.push(RowRejection {
                key: None,
                reason: RejectionReason::MissingKey,
                attribute: Some(key_attr.clone()),
                row: row_count + index,
            }),
            Some(key) => {
                out.seen.insert(key.clone());
                if occurrences.get(key.as_str()).copied().unwrap_or(0) > 1 {
                    if reported_duplicates.insert(key.clone()) {
                        out.rejections.push(RowRejection {
                            key: Some(key),
                            reason: RejectionReason::DuplicateKey,
                            attribute: Some(key_attr.clone()),
                            row: row_count + index,
                        });
                    }
                } else {
                    out.deletes.push(key);
                }
            }
        }
    }
    out.rows.sort_by(|a, b| a.key.cmp(&b.key));
    out.deletes.sort();
    Ok(out)
}

/// Checks one row's values in reason order; returns them typed, in schema order.
fn check_row(
    system: &SystemConfig,
    row: &Row,
    complete: bool,
    references: &ReferenceCheck,
) -> Result<Vec<(String, Value)>, (RejectionReason, String)> {
    if let Some(unknown) = row.keys().find(|name| system.attribute(name).is_none()) {
        return Err((RejectionReason::UnknownColumn, unknown.clone()));
    }
    let mut parsed = Vec::with_capacity(system.schema.attributes.len());
    let mut invalid: Option<String> = None;
    for (name, attr) in &system.schema.attributes {
        let raw = match row.get(name) {
            Some(raw) => raw,
            None if complete => &serde_json::Value::Null,
            None => continue,
        };
        match Value::from_json(raw, attr.value_type, attr.multi, attr.case_exact) {
            Ok(value) => parsed.push((name.clone(), value)),
            Err(ValueProblem::MultipleValues) => return Err((RejectionReason::MultipleValues, name.clone())),
            Err(ValueProblem::InvalidValue) => {
                invalid.get_or_insert_with(|| name.clone());
            }
        }
    }
    // multiple_values ranks before invalid_value, so invalid is reported only now.
    if let Some(name) = invalid {
        return Err((RejectionReason::InvalidValue, name));
    }
    for (name, value) in &parsed {
        if !references.resolves(name, value) {
            return Err((RejectionReason::DanglingReference, name.clone()));
        }
    }
    Ok(parsed)
}

/// Resolution of reference attributes: a value resolves if an identity holds it in the
/// match attribute, or if a row of this same import brings it there (a new hire and a
/// new manager arriving together).
struct ReferenceCheck {
    /// account attribute -> (identity match attribute, its case_exact, keys this import brings)
    attributes: HashMap<String, (String, bool, HashSet<String>)>,
    found: HashMap<(String, String), bool>,
}

impl ReferenceCheck {
    fn new(
        config: &ValidatedConfig,
        system: &SystemConfig,
        rows: &[Row],
        store: &dyn Store,
    ) -> Result<Self, StoreError> {
        let mut attributes = HashMap::new();
        for (name, attr) in &system.schema.attributes {
            if attr.value_type != crate::value::ValueType::Reference {
                continue;
            }
            // The account attribute's own `match`, else the `match` of the identity
            // reference it flows into.
            let target = attr.match_attribute.clone().or_else(|| {
                system.flows.iter().filter(|r| r.account == *name).find_map(|r| {
                    config
                        .identity
                        .attributes
                        .get(&r.identity)
                        .and_then(|a| a.match_attribute.clone())
                })
            });
            let Some(target) = target else { continue };
            let exact = config.identity.attributes.get(&target).is_none_or(|a| a.case_exact);
            // Values this import brings into the match attribute through inbound rules.
            let mut brought = HashSet::new();
            for (_, rule) in system.inbound_rules().filter(|(_, r)| r.identity == target) {
                let Some(source) = system.attribute(&rule.account) else {
                    continue;
                };
                for row in rows {
                    if let Some(raw) = row.get(&rule.account) {
                        if let Ok(v) = Value::from_json(raw, source.value_type, source.multi, source.case_exact) {
                            brought.extend(v.scalars().iter().map(|s| s.match_key(exact)));
                        }
                    }
                }
            }
            attributes.insert(name.clone(), (target, exact, brought));
        }
        let mut found = HashMap::new();
        for row in rows {
            for (name, (target, exact, _)) in &attributes {
                let Some(raw) = row.get(name) else { continue };
                let Ok(value) = Value::from_json(raw, crate::value::ValueType::Reference, false, *exact) else {
                    continue;
                };
                for s in value.scalars() {
                    let key = s.match_key(*exact);
                    if !found.contains_key(&(target.clone(), key.clone())) {
                        let hit = !store.find_identities(target, &key)?.is_empty();
                        found.insert((target.clone(), key), hit);
                    }
                }
            }
        }
        Ok(ReferenceCheck { attributes, found })
    }

    fn resolves(&self, attribute: &str, value: &Value) -> bool {
        let Some((target, exact, brought)) = self.attributes.get(attribute) else {
            return true;
        };
        value.scalars().iter().all(|s| {
            let key = s.match_key(*exact);
            brought.contains(&key) || self.found.get(&(target.clone(), key)).copied().unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    fn config() -> ValidatedConfig {
        ValidatedConfig::from_json(
            &json!({
                "identity": {"attributes": {"employeeNumber": {"type": "string"}, "manager": {"type": "reference", "match": "employeeNumber"}}},
                "systems": {"hr": {
                    "schema": {"account_id": "id", "account_name": "id", "attributes": {
                        "id": {"type": "string"}, "hired": {"type": "date"}, "title": {"type": "string"},
                        "mgr": {"type": "reference"}, "groups": {"type": "string", "multi": true}}},
                    "flows": [
                        {"account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100},
                        {"account": "mgr", "identity": "manager", "direction": "inbound", "create": 100}]
                }}
            })
            .to_string(),
        )
        .unwrap()
    }

    fn rows(v: serde_json::Value) -> Vec<Row> {
        serde_json::from_value(v).unwrap()
    }

    fn run(snapshot: Snapshot) -> Prepared {
        prepare(&config(), "hr", &snapshot, &MemoryStore::new()).unwrap()
    }

    fn reasons(p: &Prepared) -> Vec<(Option<&str>, &str)> {
        p.rejections
            .iter()
            .map(|r| (r.key.as_deref(), r.reason.as_str()))
            .collect()
    }

    #[test]
    fn each_reason_is_reported_once_with_its_key() {
        let p = run(Snapshot::Complete {
            columns: vec![],
            rows: rows(json!([
                {"id": "A", "hired": "2020-01-01"},
                {"id": null},
                {"id": "B"}, {"id": "B"}, {"id": "B"},
                {"id": "C", "hired": "01/01/2020"},
                {"id": "D", "title": ["x", "y"], "hired": "bad"},
                {"id": "E", "mgr": "nobody"},
                {"id": "F", "mgr": "A"},
            ])),
        });
        assert_eq!(
            reasons(&p),
            vec![
                (None, "missing_key"),
                (Some("B"), "duplicate_key"),
                (Some("C"), "invalid_value"),
                (Some("D"), "multiple_values"),
                (Some("E"), "dangling_reference"),
            ]
        );
        let good: Vec<_> = p.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(good, vec!["A", "F"], "F's manager A arrives in the same import");
        assert!(
            p.seen.contains("B") && p.seen.contains("C"),
            "rejected keys are protected from deletion"
        );
    }

    #[test]
    fn incremental_rows_with_unknown_attributes_are_rejected() {
        let p = run(Snapshot::Incremental {
            upserts: rows(json!([{"id": "A", "nope": 1, "hired": "bad"}])),
            deletes: vec![],
        });
        assert_eq!(reasons(&p), vec![(Some("A"), "unknown_column")]);
    }

    #[test]
    fn a_key_both_upserted_and_deleted_is_a_duplicate() {
        let p = run(Snapshot::Incremental {
            upserts: rows(json!([{"id": "A"}])),
            deletes: vec![json!("A"), json!(null)],
        });
        assert_eq!(reasons(&p), vec![(Some("A"), "duplicate_key"), (None, "missing_key")]);
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn complete_rows_fill_absent_attributes_with_empty() {
        let p = run(Snapshot::Complete {
            columns: vec![],
            rows: rows(json!([{"id": "A"}])),
        });
        assert_eq!(p.rows[0].values.len(), 5);
        assert!(p.rows[0].values.iter().skip(1).all(|(_, v)| v.is_empty()));
    }

    #[test]
    fn columns_must_match_the_schema() {
        let c = config();
        let hr = c.system("hr").unwrap();
        let err = check_columns("hr", hr, &["id".into(), "extra".into()]).unwrap_err();
        assert_eq!(err.kind(), "missing_column");
        let ImportError::Columns { problems, .. } = err else {
            panic!()
        };
        assert_eq!(problems.len(), 5);
    }
}
