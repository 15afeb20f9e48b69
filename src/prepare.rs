//! Prepare (cleansing) of an import (SPEC 2.3): every row is checked before anything is
//! diffed. A bad row is rejected with its key and first reason and leaves its stored
//! account untouched; a complete snapshot with a dropped or unknown column is refused
//! whole.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{AccountAttribute, SystemConfig};
use crate::error::{ColumnProblem, ImportError};
use crate::store::{Store, StoreError};
use crate::text::Text;
use crate::text_cache::TextCache;
use crate::validate::ValidatedConfig;
use crate::value::{Scalar, Value, ValueProblem, ValueType};

mod seen;
mod table;

use seen::SeenKeys;

pub use table::{Table, TableError};

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
    /// Every account of the system in column order: the compact form of
    /// [`Snapshot::Complete`] for large exports (one text buffer instead of a map per
    /// row). Row `i` behaves exactly as the `Complete` row mapping each column to its
    /// cell as a JSON string (an empty cell is the empty value); the column checks,
    /// row rejections and their order are the same.
    Table(Table),
}

impl Snapshot {
    /// The column list of a complete snapshot; `None` for an incremental one.
    pub fn complete_columns(&self) -> Option<&[String]> {
        match self {
            Snapshot::Complete { columns, .. } => Some(columns),
            Snapshot::Table(table) => Some(table.columns()),
            Snapshot::Incremental { .. } => None,
        }
    }

    /// How many rows (upserts and deletes for an incremental snapshot) it holds.
    pub fn len(&self) -> usize {
        match self {
            Snapshot::Complete { rows, .. } => rows.len(),
            Snapshot::Table(table) => table.len(),
            Snapshot::Incremental { upserts, deletes } => upserts.len() + deletes.len(),
        }
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// For `invalid_value`: the value as the row gave it (at most 80 characters), and
    /// the type the schema declares for the attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<InvalidValue>,
}

/// The value of an `invalid_value` rejection and the type it did not parse as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InvalidValue {
    /// The value as given (a CSV cell's text, or the JSON of a map row's value), cut to
    /// 80 characters.
    pub value: String,
    /// The type declared in the system's schema.
    pub expected: ValueType,
}

impl InvalidValue {
    const SHOWN: usize = 80;

    fn of(cell: Cell<'_>, expected: ValueType) -> InvalidValue {
        let text = match cell {
            Cell::Text(s) => s.to_owned(),
            Cell::Json(serde_json::Value::String(s)) => s.clone(),
            Cell::Json(v) => v.to_string(),
        };
        let value = match text.char_indices().nth(Self::SHOWN) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text,
        };
        InvalidValue { value, expected }
    }
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
            RejectionReason::InvalidValue => match &self.invalid {
                Some(InvalidValue { value, expected }) => write!(
                    f,
                    "the value `{value}` of `{attribute}` does not parse as {expected}, the type its schema declares"
                ),
                None => write!(f, "the value of `{attribute}` does not parse as its declared type"),
            },
            RejectionReason::DanglingReference => write!(f, "the reference in `{attribute}` matches no identity"),
        }?;
        write!(f, " ({}); the stored account is left as it was", self.reason.as_str())
    }
}

/// One raw cell: a JSON value of a map row, or the text of a [`Table`] cell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Json(&'a serde_json::Value),
    Text(&'a str),
}

impl<'a> Cell<'a> {
    /// The cell's text when it is one string.
    fn text(self) -> Option<&'a str> {
        match self {
            Cell::Text(s) => Some(s),
            Cell::Json(serde_json::Value::String(s)) => Some(s),
            Cell::Json(_) => None,
        }
    }

    /// The cell's text, `""` for null; `None` for any other JSON value.
    pub(crate) fn text_or_null(self) -> Option<&'a str> {
        match self {
            Cell::Json(serde_json::Value::Null) => Some(""),
            other => other.text(),
        }
    }

    /// Parses the cell for an attribute.
    pub(crate) fn parse(self, attr: &AccountAttribute) -> Result<Value, ValueProblem> {
        self.parse_as(attr.value_type, attr.multi, attr.case_exact)
    }

    /// Parses the cell as a value of type `ty`, single or `multi`.
    fn parse_as(self, ty: ValueType, multi: bool, case_exact: bool) -> Result<Value, ValueProblem> {
        match self {
            Cell::Json(json) => Value::from_json(json, ty, multi, case_exact),
            Cell::Text(text) => Value::from_text(text, ty, multi, case_exact),
        }
    }

    /// Whether parsing cannot fail (text or null for a string-like attribute), so the
    /// value need not be built to check the row.
    fn always_valid(self, attr: &AccountAttribute) -> bool {
        matches!(attr.value_type, ValueType::String | ValueType::Reference)
            && (self.text().is_some() || matches!(self, Cell::Json(serde_json::Value::Null)))
    }

    /// Whether the parsed cell would be the same as `held`, when that can be told
    /// without building the value (`None`: parse and compare).
    pub(crate) fn same_as_held(self, held: &Value, attr: &AccountAttribute) -> Option<bool> {
        if let Cell::Json(serde_json::Value::Null) = self {
            return Some(held.is_empty());
        }
        if !matches!(attr.value_type, ValueType::String | ValueType::Reference) {
            return None;
        }
        let text = self.text()?;
        if text.is_empty() {
            return Some(held.is_empty());
        }
        // A non-empty text parses to `Single(Text)` or to the one-element set.
        let held_text = match (held, attr.multi) {
            (Value::Single(Scalar::Text(t)), false) => t,
            (Value::Multi(items), true) => match &**items {
                [Scalar::Text(t)] => t,
                _ => return Some(false),
            },
            _ => return Some(false),
        };
        Some(text == held_text || (!attr.case_exact && text.to_lowercase() == held_text.to_lowercase()))
    }
}

/// The rows of a snapshot, read in place.
#[derive(Debug, Clone, Copy)]
enum RowsRef<'a> {
    Maps(&'a [Row]),
    Table(&'a Table),
}

/// Where prepare reads cells from: map rows or a [`Table`], with the table column of
/// each schema attribute, and an incremental snapshot's deletes (their keys follow the
/// rows' in [`Source::key`]).
#[derive(Debug)]
pub(crate) struct Source<'a> {
    rows: RowsRef<'a>,
    deletes: &'a [serde_json::Value],
    /// Per schema attribute (by position): its table column.
    columns: Vec<Option<usize>>,
    /// The key attribute, its table column, and whether it ignores case.
    key_attr: String,
    key_column: Option<usize>,
    key_exact: bool,
}

impl Default for Source<'_> {
    fn default() -> Self {
        Source {
            rows: RowsRef::Maps(&[]),
            deletes: &[],
            columns: Vec::new(),
            key_attr: String::new(),
            key_column: None,
            key_exact: true,
        }
    }
}

impl<'a> Source<'a> {
    fn new(rows: RowsRef<'a>, deletes: &'a [serde_json::Value], system: &SystemConfig) -> Source<'a> {
        let (columns, key_column) = match rows {
            RowsRef::Maps(_) => (Vec::new(), None),
            RowsRef::Table(table) => {
                let position = |name: &str| table.columns().iter().position(|c| c == name);
                (
                    system.schema.attributes.keys().map(|n| position(n)).collect(),
                    position(&system.schema.account_id),
                )
            }
        };
        Source {
            rows,
            deletes,
            columns,
            key_attr: system.schema.account_id.clone(),
            key_column,
            key_exact: system.key_case_exact(),
        }
    }

    fn len(&self) -> usize {
        match self.rows {
            RowsRef::Maps(rows) => rows.len(),
            RowsRef::Table(table) => table.len(),
        }
    }

    /// The cell of schema attribute `attr` (position `index`) in a row; `None` if the
    /// row does not carry it.
    pub(crate) fn cell(&self, row: usize, index: usize, attr: &str) -> Option<Cell<'a>> {
        match self.rows {
            RowsRef::Maps(rows) => rows.get(row)?.get(attr).map(Cell::Json),
            RowsRef::Table(table) => table.cell(row, (*self.columns.get(index)?)?).map(Cell::Text),
        }
    }

    /// The canonical key at a position: a row's, then (after the rows) a delete's;
    /// found again in its cell each time rather than held (a million keys beside the
    /// rows prepare keeps were 23 MiB of an import's peak).
    fn key(&self, position: usize) -> Option<Cow<'a, str>> {
        let cell = match position.checked_sub(self.len()) {
            None => match self.rows {
                RowsRef::Maps(rows) => rows.get(position)?.get(&self.key_attr).map(Cell::Json),
                RowsRef::Table(table) => table.cell(position, self.key_column?).map(Cell::Text),
            },
            Some(delete) => self.deletes.get(delete).map(Cell::Json),
        };
        key_cow(cell?, self.key_exact)
    }

    /// The first attribute of a map row the schema lacks (a table's columns are checked
    /// as a whole before).
    fn unknown_attribute(&self, row: usize, system: &SystemConfig) -> Option<&'a String> {
        match self.rows {
            RowsRef::Maps(rows) => rows.get(row)?.keys().find(|name| system.attribute(name).is_none()),
            RowsRef::Table(_) => None,
        }
    }
}

/// A row that passed every check: its key and its position in the import. Its values
/// are read from the source when needed (most rows of a complete import are unchanged
/// and are never turned into values).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedRow<'a> {
    pub(crate) key: Cow<'a, str>,
    pub(crate) row: usize,
}

/// The outcome of prepare: good rows in import order, deletes, rejections, and every
/// key that must be protected from deletion.
#[derive(Debug, Default)]
pub(crate) struct Prepared<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) rows: Vec<PreparedRow<'a>>,
    pub(crate) deletes: Vec<String>,
    pub(crate) rejections: Vec<RowRejection>,
    /// Keys present in the import (accepted or rejected), with how often.
    pub(crate) seen: SeenKeys,
    pub(crate) complete: bool,
}

impl<'a> Prepared<'a> {
    /// The key at a position of the import (see [`Source::key`]).
    fn key_at(&self, position: u32) -> Option<Cow<'a, str>> {
        self.source.key(position as usize)
    }

    /// Whether the import named `key` (in a good row, a rejected one or a delete).
    pub(crate) fn saw(&self, key: &str) -> bool {
        self.seen.times(key, |p| self.key_at(p)) > 0
    }

    /// Every key the import named, with how often, sorted.
    #[cfg(test)]
    pub(crate) fn seen_keys(&self) -> Vec<(String, u32)> {
        let mut keys: Vec<(String, u32)> = self
            .seen
            .positions()
            .filter_map(|p| self.key_at(p))
            .map(|k| {
                let times = self.seen.times(&k, |p| self.key_at(p));
                (k.into_owned(), times)
            })
            .collect();
        keys.sort();
        keys
    }

    /// Calls `visit` with each schema attribute's value in a good row, in schema
    /// order (an absent attribute of a complete snapshot as empty), taking the texts of
    /// single-valued string cells from `cache` so that equal cells of the import share
    /// one text.
    pub(crate) fn for_each_value(
        &self,
        system: &SystemConfig,
        row: usize,
        cache: &mut TextCache<'a>,
        mut visit: impl FnMut(&Text, Value),
    ) {
        for (index, (name, attr)) in system.schema.attributes.iter().enumerate() {
            match self.source.cell(row, index, name) {
                Some(cell) => {
                    let text = cell
                        .text()
                        .filter(|_| !attr.multi && matches!(attr.value_type, ValueType::String | ValueType::Reference));
                    let value = match text {
                        Some("") => Value::Empty,
                        Some(text) => Value::Single(Scalar::Text(cache.text(index, text))),
                        // A good row's cells parse (prepare checked them).
                        None => cell.parse(attr).unwrap_or_default(),
                    };
                    visit(name, value);
                }
                None if self.complete => visit(name, Value::Empty),
                None => {}
            }
        }
    }
}

/// Canonical key text of a raw key value: its display form, lower-cased when the key
/// attribute ignores case. `None` when empty.
pub(crate) fn key_text(raw: &serde_json::Value, case_exact: bool) -> Option<String> {
    key_cow(Cell::Json(raw), case_exact).map(Cow::into_owned)
}

/// [`key_text`] of a text, borrowing it when it is already canonical.
pub(crate) fn key_of_text(text: &str, case_exact: bool) -> Option<Cow<'_, str>> {
    key_cow(Cell::Text(text), case_exact)
}

/// [`key_text`] of a cell, borrowing the cell's text when it is already canonical.
fn key_cow(cell: Cell<'_>, case_exact: bool) -> Option<Cow<'_, str>> {
    let text: Cow<'_, str> = match cell {
        Cell::Text(s) => Cow::Borrowed(s),
        Cell::Json(raw) => match raw {
            serde_json::Value::Null => return None,
            serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
            serde_json::Value::Array(items) if items.len() == 1 => {
                return items.first().and_then(|i| key_cow(Cell::Json(i), case_exact))
            }
            serde_json::Value::Array(items) if items.is_empty() => return None,
            other => Cow::Owned(other.to_string()),
        },
    };
    if text.is_empty() {
        None
    } else if case_exact || text.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Some(text)
    } else {
        Some(Cow::Owned(text.to_lowercase()))
    }
}

/// Checks the columns of a complete snapshot against the schema.
pub(crate) fn check_columns(system_name: &str, system: &SystemConfig, columns: &[String]) -> Result<(), ImportError> {
    let mut problems = Vec::new();
    for name in system.schema.attributes.keys() {
        if !columns.iter().any(|c| c == name) {
            problems.push(ColumnProblem::Missing(name.clone().into()));
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
pub(crate) fn prepare<'a>(
    config: &ValidatedConfig,
    system_name: &str,
    snapshot: &'a Snapshot,
    store: &dyn Store,
) -> Result<Prepared<'a>, StoreError> {
    let Some(system) = config.system(system_name) else {
        return Ok(Prepared::default());
    };
    let key_attr = &system.schema.account_id;
    let (rows, deletes, complete): (RowsRef<'a>, &'a [serde_json::Value], bool) = match snapshot {
        Snapshot::Complete { rows, .. } => (RowsRef::Maps(rows), &[], true),
        Snapshot::Table(table) => (RowsRef::Table(table), &[], true),
        Snapshot::Incremental { upserts, deletes } => (RowsRef::Maps(upserts), deletes, false),
    };
    let source = Source::new(rows, deletes, system);

    // Count keys across upserts and deletes: a key named twice is ambiguous.
    // Row checks are pure work per row (on several cores for a large import); what
    // they mean for the import is decided below, row after row.
    let row_count = source.len();
    let seen = SeenKeys::count(row_count + deletes.len(), |p| source.key(p as usize));
    let duplicated = |key: &str| seen.repeated(key);
    let mut out_rows = Vec::with_capacity(source.len());
    let mut rejections = Vec::new();
    let mut reported_duplicates = HashSet::new();
    let references = ReferenceCheck::new(config, system, &source, store)?;
    // Whether each row passes its checks; a failing row is checked again below for
    // the reason (failures are few, and a flag per row keeps this small).
    let passes = crate::parallel::map_range(source.len(), |r| check_row(system, &source, r, &references).is_ok());

    for (index, passes) in passes.into_iter().enumerate() {
        let key = source.key(index);
        let reject = |reason, attribute: Option<&str>| RowRejection {
            key: key.as_ref().map(|k| k.clone().into_owned()),
            reason,
            attribute: attribute.map(str::to_owned),
            row: index,
            invalid: None,
        };
        let Some(key) = key.as_ref() else {
            rejections.push(reject(RejectionReason::MissingKey, Some(key_attr)));
            continue;
        };
        if duplicated(key) {
            if reported_duplicates.insert(key.clone()) {
                rejections.push(reject(RejectionReason::DuplicateKey, Some(key_attr)));
            }
            continue;
        }
        let checked = if passes {
            Ok(())
        } else {
            check_row(system, &source, index, &references)
        };
        match checked {
            Ok(()) => out_rows.push(PreparedRow {
                key: key.clone(),
                row: index,
            }),
            Err((reason, attribute, invalid)) => rejections.push(RowRejection {
                invalid,
                ..reject(reason, Some(&attribute))
            }),
        }
    }
    let mut out_deletes = Vec::new();
    for index in 0..deletes.len() {
        match source.key(row_count + index) {
            None => rejections.push(RowRejection {
                key: None,
                reason: RejectionReason::MissingKey,
                attribute: Some(key_attr.clone()),
                row: row_count + index,
                invalid: None,
            }),
            Some(key) => {
                if duplicated(&key) {
                    if reported_duplicates.insert(key.clone()) {
                        rejections.push(RowRejection {
                            key: Some(key.into_owned()),
                            reason: RejectionReason::DuplicateKey,
                            attribute: Some(key_attr.clone()),
                            row: row_count + index,
                            invalid: None,
                        });
                    }
                } else {
                    out_deletes.push(key.into_owned());
                }
            }
        }
    }
    out_deletes.sort();
    Ok(Prepared {
        source,
        rows: out_rows,
        deletes: out_deletes,
        rejections,
        seen,
        complete,
    })
}

/// Checks one row's values in reason order, building values only where a check needs
/// them (types that can fail to parse, references).
fn check_row(
    system: &SystemConfig,
    source: &Source<'_>,
    row: usize,
    references: &ReferenceCheck,
) -> Result<(), (RejectionReason, String, Option<InvalidValue>)> {
    if let Some(unknown) = source.unknown_attribute(row, system) {
        return Err((RejectionReason::UnknownColumn, unknown.clone(), None));
    }
    let mut to_resolve: Vec<(&str, Value)> = Vec::new();
    let mut invalid: Option<(&str, InvalidValue)> = None;
    for (index, (name, attr)) in system.schema.attributes.iter().enumerate() {
        let Some(cell) = source.cell(row, index, name) else {
            // An absent attribute is empty (complete) or untouched (incremental): it
            // parses, and empty resolves.
            continue;
        };
        let checked = references.checks(name);
        if cell.always_valid(attr) && !checked {
            continue;
        }
        match cell.parse(attr) {
            Ok(value) if checked => to_resolve.push((name, value)),
            Ok(_) => {}
            Err(ValueProblem::MultipleValues) => {
                return Err((RejectionReason::MultipleValues, name.clone().into(), None))
            }
            Err(ValueProblem::InvalidValue) => {
                invalid.get_or_insert_with(|| (name, InvalidValue::of(cell, attr.value_type)));
            }
        }
    }
    // multiple_values ranks before invalid_value, so invalid is reported only now.
    if let Some((name, value)) = invalid {
        return Err((RejectionReason::InvalidValue, name.to_owned(), Some(value)));
    }
    for (name, value) in &to_resolve {
        if !references.resolves(name, value) {
            return Err((RejectionReason::DanglingReference, (*name).to_owned(), None));
        }
    }
    Ok(())
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
        source: &Source<'_>,
        store: &dyn Store,
    ) -> Result<Self, StoreError> {
        let mut attributes = HashMap::new();
        let attribute_cell = |row: usize, name: &str| {
            let index = system.schema.attributes.get_index_of(name)?;
            source.cell(row, index, name)
        };
        for (name, attr) in &system.schema.attributes {
            if attr.value_type != ValueType::Reference {
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
            let exact = config.identity_case_exact(&target);
            // Values this import brings into the match attribute through inbound rules.
            let mut brought = HashSet::new();
            for (_, rule) in system.inbound_rules().filter(|(_, r)| r.identity == target) {
                let Some(source_attr) = system.attribute(&rule.account) else {
                    continue;
                };
                for row in 0..source.len() {
                    if let Some(cell) = attribute_cell(row, &rule.account) {
                        if let Ok(v) = cell.parse(source_attr) {
                            brought.extend(v.scalars().iter().map(|s| s.match_key(exact)));
                        }
                    }
                }
            }
            attributes.insert(name.to_string(), (target, exact, brought));
        }
        let mut found = HashMap::new();
        for row in 0..source.len() {
            for (name, (target, exact, _)) in &attributes {
                let Some(cell) = attribute_cell(row, name) else {
                    continue;
                };
                let Ok(value) = cell.parse_as(ValueType::Reference, false, *exact) else {
                    continue;
                };
                for s in value.scalars() {
                    let key = s.match_key(*exact);
                    if !found.contains_key(&(target.to_string(), key.clone())) {
                        let hit = !store.find_identities(target, &key)?.is_empty();
                        found.insert((target.to_string(), key), hit);
                    }
                }
            }
        }
        Ok(ReferenceCheck { attributes, found })
    }

    /// Whether values of this attribute must resolve.
    fn checks(&self, attribute: &str) -> bool {
        self.attributes.contains_key(attribute)
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

    /// The outcome of prepare, detached from the snapshot: rejections, good keys, seen
    /// keys and the good rows' values.
    struct Outcome {
        rejections: Vec<RowRejection>,
        rows: Vec<(String, Vec<(Text, Value)>)>,
        seen: HashSet<String>,
        deletes: Vec<String>,
    }

    fn run(snapshot: Snapshot) -> Outcome {
        let c = config();
        let p = prepare(&c, "hr", &snapshot, &MemoryStore::new()).unwrap();
        let hr = c.system("hr").unwrap();
        Outcome {
            rejections: p.rejections.clone(),
            rows: p
                .rows
                .iter()
                .map(|r| {
                    let mut values = Vec::new();
                    p.for_each_value(
                        hr,
                        r.row,
                        &mut TextCache::new(hr.schema.attributes.len()),
                        |name, value| values.push((name.clone(), value)),
                    );
                    (r.key.to_string(), values)
                })
                .collect(),
            seen: p.seen_keys().into_iter().map(|(k, _)| k).collect(),
            deletes: p.deletes.clone(),
        }
    }

    /// Prepare and diff on several threads give what they give on one: the same
    /// rejections (reasons, rows, order), rows, seen keys, changes, retries and
    /// deletes, for a table mixing good rows, duplicates, missing keys, bad dates,
    /// stored rows unchanged, changed and gone.
    #[test]
    fn threads_prepare_and_diff_as_one_thread_does() {
        let c = config();
        let hr = c.system("hr").unwrap();
        let columns = ["id", "hired", "title", "mgr", "groups"].map(String::from).to_vec();
        let mut table = Table::new(columns);
        for i in 0..3_000u32 {
            let id = match i % 97 {
                0 => String::new(),
                1 => "dup".to_owned(),
                _ => format!("e{i}"),
            };
            let hired = if i % 89 == 0 {
                "not a date".to_owned()
            } else {
                format!("2020-01-{:02}", 1 + i % 28)
            };
            let cells = [
                id,
                hired,
                format!("t{}", i % 7),
                format!("e{}", i / 2),
                format!("g{}", i % 3),
            ];
            table.push_row(cells).unwrap();
        }
        let mut store = MemoryStore::new();
        // Stored: some rows as they are, some changed, some no longer exported.
        let stored: Vec<crate::model::Account> = (0..4_000u32)
            .step_by(3)
            .map(|i| {
                let mut a = crate::model::Account::new(format!("e{i}"));
                a.set(&Text::from("title"), Value::from(format!("t{}", (i + i % 2) % 7)));
                a
            })
            .collect();
        store.put_accounts("hr", stored).unwrap();
        let snapshot = Snapshot::Table(table);
        let once = |threads: usize| {
            crate::parallel::with_threads(threads, || {
                let p = prepare(&c, "hr", &snapshot, &store).unwrap();
                let d = crate::diff::diff("hr", hr, &p, &store, false).unwrap();
                let rows: Vec<(String, usize)> = p.rows.iter().map(|r| (r.key.to_string(), r.row)).collect();
                let seen = p.seen_keys();
                (p.rejections.clone(), rows, seen, d.changes, d.retry, d.kept)
            })
        };
        let one = once(1);
        assert!(
            !one.0.is_empty() && !one.3.is_empty(),
            "the table has rejections and changes"
        );
        assert_eq!(once(2), one);
        assert_eq!(once(5), one);
    }

    fn reasons(p: &Outcome) -> Vec<(Option<&str>, &str)> {
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
        let good: Vec<_> = p.rows.iter().map(|r| r.0.as_str()).collect();
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
    fn the_keys_seen_are_the_rows_and_the_deletes() {
        let c = config();
        let snapshot = Snapshot::Incremental {
            upserts: rows(json!([{"id": "A"}, {"id": "B"}, {"id": null}])),
            deletes: vec![json!("C"), json!("B"), json!(null), json!("D")],
        };
        let p = prepare(&c, "hr", &snapshot, &MemoryStore::new()).unwrap();
        let seen: Vec<(String, u32)> = [("A", 1), ("B", 2), ("C", 1), ("D", 1)]
            .iter()
            .map(|&(k, n)| (k.to_owned(), n))
            .collect();
        assert_eq!(p.seen_keys(), seen);
        assert!(p.saw("D") && p.saw("B") && !p.saw("E"));
    }

    #[test]
    fn complete_rows_fill_absent_attributes_with_empty() {
        let p = run(Snapshot::Complete {
            columns: vec![],
            rows: rows(json!([{"id": "A"}])),
        });
        assert_eq!(p.rows[0].1.len(), 5);
        assert!(p.rows[0].1.iter().skip(1).all(|(_, v)| v.is_empty()));
    }

    #[test]
    fn a_table_prepares_exactly_as_its_map_rows() {
        let columns: Vec<String> = ["id", "hired", "title", "mgr", "groups"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let mut table = Table::new(columns.clone());
        for row in [
            ["A", "2020-01-01", "x", "", "g1"],
            ["", "", "", "", ""],
            ["B", "", "", "", ""],
            ["B", "2020-01-02", "", "", ""],
            ["C", "01/01/2020", "", "", ""],
            ["E", "", "", "nobody", ""],
            ["F", "", "Title", "A", "G2"],
        ] {
            table.push_row(row).unwrap();
        }
        assert_eq!(
            table.push_row(["too", "few"]),
            Err(TableError::CellCount { expected: 5, found: 2 })
        );
        assert_eq!(table.len(), 7, "a refused row leaves the table as it was");
        let maps = run(Snapshot::Complete {
            columns: columns.clone(),
            rows: table.to_rows(),
        });
        let snapshot = Snapshot::Table(table);
        let tabled = run(snapshot.clone());
        assert_eq!(tabled.rejections, maps.rejections);
        assert_eq!(tabled.rows, maps.rows);
        assert_eq!(tabled.seen, maps.seen);
        assert_eq!(tabled.deletes, maps.deletes);
        assert_eq!(
            reasons(&tabled),
            vec![
                (None, "missing_key"),
                (Some("B"), "duplicate_key"),
                (Some("C"), "invalid_value"),
                (Some("E"), "dangling_reference"),
            ]
        );
        // The JSON form round-trips, and the column checks see the table's columns.
        let json = serde_json::to_string(&snapshot).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snapshot);
        assert_eq!(snapshot.complete_columns(), Some(columns.as_slice()));
        assert!(
            serde_json::from_str::<Snapshot>(r#"{"mode": "table", "columns": ["id"], "rows": [["a", "b"]]}"#).is_err()
        );
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
