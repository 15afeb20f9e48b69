//! CSV exports as complete snapshots (feature `csv`).
//!
//! A system that can only hand over a file (an HR extract, a spreadsheet, a nightly
//! dump) is read with [`read_snapshot`] or wrapped in a [`CsvConnector`]:
//!
//! * the header line is the snapshot's column list; the engine checks it against the
//!   schema and refuses the whole import when a column is missing or unknown;
//! * every cell becomes a JSON string (an empty cell becomes `null`): typing is left to
//!   the engine's prepare, which rejects a row whose value does not parse;
//! * a cell of an attribute the schema declares `multi` is split on the configured
//!   separator (default `;`) into a JSON array; other cells are never split;
//! * records are read one at a time from any [`std::io::Read`], straight into rows.
//!
//! # Bad records never become deletions
//!
//! In a complete snapshot an account whose row is missing is deleted. A record the
//! reader cannot use (a wrong number of fields, a cell that is not UTF-8) does not abort
//! the read; it is reported as a [`CsvRowProblem`] with its 1-based line number. When
//! its key cell is readable, the record is *also* emitted as a protective row: the key
//! plus a value the engine's prepare always rejects (a JSON object, which parses as no
//! declared type, SPEC 2.3 `invalid_value`; for a schema with no attribute but the key,
//! the row is emitted twice, a `duplicate_key`). A rejected row leaves its stored account
//! exactly as it was, so the account is neither changed nor deleted.
//!
//! A bad record whose key cannot be read cannot be protected: its account would be
//! deleted by a complete import. [`CsvSnapshot::is_safe_to_import`] is `false` then, and
//! the host should not import the snapshot but report the problems; [`CsvConnector`]
//! refuses such an export with an error.
//!
//! An I/O error while reading aborts with a [`CsvError`]: a truncated file must never
//! be taken for a complete snapshot. (A file that was cut short *without* an error, for
//! example while it was still being written, looks complete; deletion thresholds are the
//! guard against that.)
//!
//! Rejections from the engine carry the row's position in the snapshot
//! ([`RowRejection::row`]); [`CsvSnapshot::line_of`] maps it back to the file line.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::SystemConfig;
use crate::connector::{Connector, ConnectorError, ExportMode, OpStatus};
use crate::outbound::Op;
use crate::prepare::{Row, RowRejection, Snapshot};

/// How a CSV file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    delimiter: u8,
    multi_separator: String,
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            multi_separator: ";".to_owned(),
        }
    }
}

impl CsvOptions {
    /// The defaults: fields separated by `,`, values of multi-valued cells by `;`.
    pub fn new() -> CsvOptions {
        CsvOptions::default()
    }

    /// Sets the field delimiter (one byte, e.g. `b';'` or `b'\t'`).
    #[must_use]
    pub fn with_delimiter(mut self, delimiter: u8) -> CsvOptions {
        self.delimiter = delimiter;
        self
    }

    /// Sets the separator of the values in a multi-valued cell. Each value is trimmed
    /// of surrounding whitespace and empty values are dropped. An empty separator
    /// never splits: the whole cell is one value.
    #[must_use]
    pub fn with_multi_separator(mut self, separator: impl Into<String>) -> CsvOptions {
        self.multi_separator = separator.into();
        self
    }

    /// The field delimiter.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The separator of the values in a multi-valued cell.
    pub fn multi_separator(&self) -> &str {
        &self.multi_separator
    }
}

/// A record that could not be read as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsvRowProblem {
    /// The 1-based line on which the record starts.
    pub line: usize,
    /// The record's key, when its key cell could be read. Such a record is emitted as a
    /// protective row that the engine rejects, so its account is left as it was.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CsvRowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(key) = &self.key {
            write!(f, " (key `{key}`)")?;
        }
        write!(f, ": {}", self.message)?;
        if self.key.is_none() {
            write!(
                f,
                "; its key cannot be read, so its account is not protected from deletion"
            )?;
        }
        Ok(())
    }
}

/// A CSV file read as a complete snapshot, with what could not be read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CsvSnapshot {
    /// The complete snapshot: the header as columns, one row per record (plus the
    /// protective rows of bad records, see the [module docs](self)).
    pub snapshot: Snapshot,
    /// Records that could not be read, in file order.
    pub problems: Vec<CsvRowProblem>,
    /// The 1-based file line of each row of `snapshot`, in the same order.
    pub lines: Vec<usize>,
}

impl CsvSnapshot {
    /// Whether every bad record is protected from deletion (each has a readable key).
    /// When `false`, a complete import could delete the accounts of the unreadable
    /// records: report [`CsvSnapshot::problems`] instead of importing.
    pub fn is_safe_to_import(&self) -> bool {
        self.problems.iter().all(|p| p.key.is_some())
    }

    /// The file line of a row the engine rejected.
    pub fn line_of(&self, rejection: &RowRejection) -> Option<usize> {
        self.lines.get(rejection.row).copied()
    }

    /// The problem reported for a file line, if the record there could not be read.
    pub fn problem_at(&self, line: usize) -> Option<&CsvRowProblem> {
        self.problems.iter().find(|p| p.line == line)
    }
}

/// Why a CSV file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The input has no header line.
    #[error("the csv has no header line")]
    NoHeader,
    /// The header line cannot be read.
    #[error("the csv header on line {line} cannot be read: {message}")]
    Header {
        /// The header's line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading failed part-way; nothing is returned, since a partial file is not a
    /// complete snapshot.
    #[error("reading the csv failed after line {line}: {message}")]
    Io {
        /// The last line read.
        line: usize,
        /// The I/O error.
        message: String,
    },
    /// The file cannot be opened.
    #[error("the csv file `{path}` cannot be opened: {message}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
}

fn line_number(line: u64) -> usize {
    usize::try_from(line).unwrap_or(usize::MAX)
}

/// Reads a CSV export of `system` as a complete snapshot, record by record.
///
/// Bad records are reported in [`CsvSnapshot::problems`] and do not stop the read; see
/// the [module docs](self) for how they are kept from becoming deletions. Fails only
/// when the header cannot be read or the input fails.
///
/// # Example
/// ```
/// use attrflow::csv_connector::{read_snapshot, CsvOptions};
/// use attrflow::{Engine, ValidatedConfig};
/// use chrono::{TimeZone, Utc};
/// use serde_json::json;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ValidatedConfig::from_json(&json!({
///     "identity": { "attributes": { "employeeNumber": { "type": "string" }, "groups": { "type": "string", "multi": true } } },
///     "systems": { "hr": {
///         "schema": { "account_id": "id", "account_name": "id", "attributes": {
///             "id": { "type": "string" }, "groups": { "type": "string", "multi": true } } },
///         "authoritative": true,
///         "correlation": [[{ "account": "id", "identity": "employeeNumber" }]],
///         "flows": [
///             { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100 },
///             { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50 } ] } }
/// }).to_string())?;
/// let file = "id,groups\nE1,staff;eng\nE2,\n";
/// let hr = config.system("hr").expect("configured");
/// let read = read_snapshot(file.as_bytes(), hr, &CsvOptions::new())?;
/// assert!(read.is_safe_to_import());
/// let mut engine = Engine::new(config);
/// let now = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
/// let report = engine.import("hr", &read.snapshot, now)?;
/// assert_eq!(report.plan.counts.inserted, 2);
/// assert_eq!(report.plan.counts.link_inserted, 2, "`staff;eng` is split into two values");
/// # Ok(())
/// # }
/// ```
pub fn read_snapshot<R: Read>(reader: R, system: &SystemConfig, options: &CsvOptions) -> Result<CsvSnapshot, CsvError> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = csv.byte_headers().map_err(|e| CsvError::Header {
        line: 1,
        message: e.to_string(),
    })?;
    if header.is_empty() {
        return Err(CsvError::NoHeader);
    }
    let header_line = header.position().map_or(1, |p| line_number(p.line()));
    let mut columns = Vec::with_capacity(header.len());
    for (index, field) in header.iter().enumerate() {
        match std::str::from_utf8(field) {
            Ok(name) => columns.push(name.to_owned()),
            Err(_) => {
                return Err(CsvError::Header {
                    line: header_line,
                    message: format!("column {} is not valid UTF-8", index + 1),
                })
            }
        }
    }
    let key_attr = &system.schema.account_id;
    let key_index = columns.iter().position(|c| c == key_attr);
    let multi: Vec<bool> = columns
        .iter()
        .map(|c| system.attribute(c).is_some_and(|a| a.multi))
        .collect();
    // The attribute that carries the protective value of a bad record.
    let marker = system.schema.attributes.keys().find(|name| *name != key_attr).cloned();

    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut last_line = header_line;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(CsvError::Io {
                    line: last_line,
                    message: e.to_string(),
                })
            }
        }
        let line = record
            .position()
            .map_or(last_line.saturating_add(1), |p| line_number(p.line()));
        last_line = line;
        match row_of(&record, &columns, &multi, &options.multi_separator) {
            Ok(row) => {
                rows.push(row);
                lines.push(line);
            }
            Err(message) => {
                let key = key_index
                    .and_then(|i| record.get(i))
                    .and_then(|cell| std::str::from_utf8(cell).ok())
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned);
                if let Some(key) = &key {
                    let mut row = Row::new();
                    row.insert(key_attr.clone(), serde_json::Value::String(key.clone()));
                    match &marker {
                        Some(attribute) => {
                            let mut why = serde_json::Map::new();
                            why.insert("unreadable_csv_line".to_owned(), serde_json::Value::from(line));
                            row.insert(attribute.clone().into(), serde_json::Value::Object(why));
                        }
                        None => {
                            rows.push(row.clone());
                            lines.push(line);
                        }
                    }
                    rows.push(row);
                    lines.push(line);
                }
                problems.push(CsvRowProblem { line, key, message });
            }
        }
    }
    Ok(CsvSnapshot {
        snapshot: Snapshot::Complete { columns, rows },
        problems,
        lines,
    })
}

/// One record as a row, or what is wrong with it.
fn row_of(record: &csv::ByteRecord, columns: &[String], multi: &[bool], separator: &str) -> Result<Row, String> {
    if record.len() != columns.len() {
        return Err(format!(
            "the record has {} fields where the header has {}",
            record.len(),
            columns.len()
        ));
    }
    let mut row = Row::new();
    for (index, ((cell, column), multi)) in record.iter().zip(columns).zip(multi).enumerate() {
        let Ok(text) = std::str::from_utf8(cell) else {
            return Err(format!("field {} (`{column}`) is not valid UTF-8", index + 1));
        };
        row.insert(column.clone(), cell_value(text, *multi, separator));
    }
    Ok(row)
}

/// An empty cell is `null`; a multi-valued cell is split into an array.
fn cell_value(text: &str, multi: bool, separator: &str) -> serde_json::Value {
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    if !multi {
        return serde_json::Value::String(text.to_owned());
    }
    let items: Vec<serde_json::Value> = if separator.is_empty() {
        vec![serde_json::Value::String(text.trim().to_owned())]
    } else {
        text.split(separator)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::Value::String(s.to_owned()))
            .collect()
    };
    serde_json::Value::Array(items)
}

/// A read-only connector over a CSV file: each complete export reads the file again.
///
/// The problems of the last export are kept for the host ([`CsvConnector::problems`]),
/// as is the line of each row ([`CsvConnector::lines`]). An export whose bad records are
/// not all protected (see the [module docs](self)) fails instead of returning a
/// snapshot that could delete accounts.
#[derive(Debug, Clone)]
pub struct CsvConnector {
    name: String,
    system: SystemConfig,
    path: PathBuf,
    options: CsvOptions,
    problems: Vec<CsvRowProblem>,
    lines: Vec<usize>,
}

impl CsvConnector {
    /// A connector reading `path` as the export of the system `name`, configured as
    /// `system`, with the default [`CsvOptions`].
    pub fn new(name: impl Into<String>, system: &SystemConfig, path: impl Into<PathBuf>) -> CsvConnector {
        CsvConnector {
            name: name.into(),
            system: system.clone(),
            path: path.into(),
            options: CsvOptions::default(),
            problems: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Sets the options.
    #[must_use]
    pub fn with_options(mut self, options: CsvOptions) -> CsvConnector {
        self.options = options;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The problems of the last export.
    pub fn problems(&self) -> &[CsvRowProblem] {
        &self.problems
    }

    /// The file line of each row of the last export's snapshot.
    pub fn lines(&self) -> &[usize] {
        &self.lines
    }

    /// Reads the file.
    pub fn read(&self) -> Result<CsvSnapshot, CsvError> {
        let file = std::fs::File::open(&self.path).map_err(|e| CsvError::Open {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        read_snapshot(file, &self.system, &self.options)
    }
}

impl Connector for CsvConnector {
    fn system(&self) -> &str {
        &self.name
    }

    fn export(&mut self, mode: ExportMode) -> Result<Snapshot, ConnectorError> {
        if mode == ExportMode::Delta {
            return Err(ConnectorError::new(&self.name, "csv exports are complete snapshots"));
        }
        self.problems.clear();
        self.lines.clear();
        let read = self
            .read()
            .map_err(|e| ConnectorError::new(&self.name, format!("`{}`: {e}", self.path.display())))?;
        let safe = read.is_safe_to_import();
        let unprotected: Vec<String> = read
            .problems
            .iter()
            .filter(|p| p.key.is_none())
            .map(|p| format!("line {}: {}", p.line, p.message))
            .collect();
        self.problems = read.problems;
        self.lines = read.lines;
        if !safe {
            return Err(ConnectorError::new(
                &self.name,
                format!(
                    "`{}` has records whose key cannot be read; importing it could delete their accounts ({})",
                    self.path.display(),
                    unprotected.join("; ")
                ),
            ));
        }
        Ok(read.snapshot)
    }

    fn apply(&mut self, ops: &[Op]) -> Vec<OpStatus> {
        ops.iter()
            .map(|_| OpStatus::Failed(format!("the csv connector for `{}` is read-only", self.name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::validate::ValidatedConfig;
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    fn config() -> ValidatedConfig {
        ValidatedConfig::from_json(
            &json!({
                "identity": {"attributes": {
                    "employeeNumber": {"type": "string"}, "name": {"type": "string"},
                    "hired": {"type": "date"}, "groups": {"type": "string", "multi": true}}},
                "systems": {"hr": {
                    "schema": {"account_id": "id", "account_name": "id", "attributes": {
                        "id": {"type": "string"}, "name": {"type": "string"}, "hired": {"type": "date"},
                        "groups": {"type": "string", "multi": true}}},
                    "authoritative": true,
                    "correlation": [[{"account": "id", "identity": "employeeNumber"}]],
                    "flows": [
                        {"account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100},
                        {"account": "name", "identity": "name", "direction": "inbound", "create": 80, "update": 80, "delete": 80},
                        {"account": "hired", "identity": "hired", "direction": "inbound", "create": 80, "update": 80},
                        {"account": "groups", "identity": "groups", "direction": "inbound", "create": 80, "update": 80, "delete": 80}]
                }}
            })
            .to_string(),
        )
        .unwrap()
    }

    fn read(text: &str) -> CsvSnapshot {
        let c = config();
        read_snapshot(text.as_bytes(), c.system("hr").unwrap(), &CsvOptions::default()).unwrap()
    }

    fn rows(s: &CsvSnapshot) -> &[Row] {
        match &s.snapshot {
            Snapshot::Complete { rows, .. } => rows,
            _ => panic!("not complete"),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn header_is_the_column_list_and_multi_cells_are_split() {
        let s = read("id,name,hired,groups\nE1,Ann,2020-01-02,G1; G2;;G3\n");
        let Snapshot::Complete { columns, .. } = &s.snapshot else {
            panic!()
        };
        assert_eq!(columns, &["id", "name", "hired", "groups"]);
        assert_eq!(
            serde_json::Value::Object(rows(&s)[0].clone()),
            json!({"id": "E1", "name": "Ann", "hired": "2020-01-02", "groups": ["G1", "G2", "G3"]})
        );
        assert_eq!(s.lines, vec![2]);
        assert!(s.problems.is_empty());
    }

    #[test]
    fn empty_cells_are_null() {
        let s = read("id,name,hired,groups\nE1,,,\n");
        assert_eq!(
            serde_json::Value::Object(rows(&s)[0].clone()),
            json!({"id": "E1", "name": null, "hired": null, "groups": null})
        );
    }

    #[test]
    fn quoted_cells_keep_their_separators() {
        let s = read("id,name,hired,groups\n\"E1\",\"Smith; John, Jr.\",,\"G,1;G2\"\n");
        assert_eq!(
            serde_json::Value::Object(rows(&s)[0].clone()),
            json!({"id": "E1", "name": "Smith; John, Jr.", "hired": null, "groups": ["G,1", "G2"]})
        );
    }

    #[test]
    fn a_custom_separator_and_delimiter() {
        let c = config();
        let options = CsvOptions::new().with_delimiter(b'\t').with_multi_separator("|");
        let s = read_snapshot(
            "id\tname\thired\tgroups\nE1\tA;B\t\tG1|G2\n".as_bytes(),
            c.system("hr").unwrap(),
            &options,
        )
        .unwrap();
        assert_eq!(rows(&s)[0]["name"], json!("A;B"));
        assert_eq!(rows(&s)[0]["groups"], json!(["G1", "G2"]));
    }

    #[test]
    fn wrong_field_count_is_a_problem_with_its_line() {
        let s = read("id,name,hired,groups\nE1,Ann,,\n\"E2\",\"two\nlines\",,\nE3,Bob,,,extra\n,x\nE4,Cy,,\n");
        assert_eq!(
            s.problems,
            vec![
                CsvRowProblem {
                    line: 5,
                    key: Some("E3".into()),
                    message: "the record has 5 fields where the header has 4".into()
                },
                CsvRowProblem {
                    line: 6,
                    key: None,
                    message: "the record has 2 fields where the header has 4".into()
                },
            ]
        );
        assert!(!s.is_safe_to_import());
        // E1, E2 (spanning lines 3-4), the protective row of E3, E4.
        assert_eq!(s.lines, vec![2, 3, 5, 7]);
        assert_eq!(rows(&s)[2]["id"], json!("E3"));
        assert!(rows(&s)[2]["name"].is_object());
        assert!(s.problems[1].to_string().contains("not protected"));
    }

    #[test]
    fn invalid_utf8_is_a_problem() {
        let c = config();
        let mut bytes = b"id,name,hired,groups\nE1,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b",,\nE2,ok,,\n");
        let s = read_snapshot(bytes.as_slice(), c.system("hr").unwrap(), &CsvOptions::default()).unwrap();
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].line, 2);
        assert_eq!(s.problems[0].key.as_deref(), Some("E1"));
        assert!(s.problems[0].message.contains("`name`"), "{}", s.problems[0].message);
        assert!(s.is_safe_to_import());
    }

    #[test]
    fn an_unreadable_header_is_an_error() {
        let c = config();
        let hr = c.system("hr").unwrap();
        assert_eq!(
            read_snapshot(&b""[..], hr, &CsvOptions::default()),
            Err(CsvError::NoHeader)
        );
        let err = read_snapshot(&b"id,\xff\n"[..], hr, &CsvOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the csv header on line 1 cannot be read: column 2 is not valid UTF-8"
        );
    }

    #[test]
    fn an_io_error_aborts() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let data = b"id,name,hired,groups\nE1,a,,\n";
                if self.0 >= data.len() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = (data.len() - self.0).min(buf.len());
                buf[..n].copy_from_slice(&data[self.0..self.0 + n]);
                self.0 += n;
                Ok(n)
            }
        }
        let c = config();
        let err = read_snapshot(Failing(0), c.system("hr").unwrap(), &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, CsvError::Io { .. }), "{err}");
        assert!(err.to_string().contains("disk gone"), "{err}");
    }

    #[test]
    fn bad_records_never_become_deletions() {
        let mut engine = Engine::new(config());
        let first = read("id,name,hired,groups\nE1,Ann,,G1\nE2,Bob,,G1;G2\nE3,Cy,,\n");
        let r = engine.import("hr", &first.snapshot, at(1)).unwrap();
        assert!(r.applied);
        assert_eq!(r.plan.counts.inserted, 3);

        // E2's record gained a field; E3 is really gone; E1's date is bad.
        let second = read("id,name,hired,groups\nE1,Ann,bad,G1\nE2,Bob,,G1;G2,oops\n");
        assert!(second.is_safe_to_import());
        let r = engine.import("hr", &second.snapshot, at(2)).unwrap();
        assert!(r.applied);
        let deleted: Vec<_> = r
            .plan
            .changes
            .iter()
            .filter(|c| c.kind == crate::diff::ChangeKind::Delete)
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(deleted, vec!["E3"]);
        assert!(engine.account("hr", "E2").unwrap().is_some());
        let lines: Vec<_> = r.plan.rejections.iter().map(|j| second.line_of(j)).collect();
        assert_eq!(lines, vec![Some(2), Some(3)]);
        assert!(second.problem_at(3).is_some());
        assert!(second.problem_at(2).is_none());
    }

    #[test]
    fn a_key_only_schema_still_protects_bad_records() {
        let c = ValidatedConfig::from_json(
            &json!({
                "identity": {"attributes": {"n": {"type": "string"}}},
                "systems": {"s": {"schema": {"account_id": "id", "account_name": "id",
                    "attributes": {"id": {"type": "string"}}}}}
            })
            .to_string(),
        )
        .unwrap();
        let mut engine = Engine::new(c.clone());
        let s = c.system("s").unwrap();
        let first = read_snapshot(&b"id\nA\nB\n"[..], s, &CsvOptions::default()).unwrap();
        assert!(engine.import("s", &first.snapshot, at(1)).unwrap().applied);
        let second = read_snapshot(&b"id\nA\nB,x\n"[..], s, &CsvOptions::default()).unwrap();
        let r = engine.import("s", &second.snapshot, at(2)).unwrap();
        assert!(r.plan.changes.is_empty(), "{:?}", r.plan.changes);
        assert_eq!(r.plan.rejections.len(), 1);
        assert_eq!(second.line_of(&r.plan.rejections[0]), Some(3));
    }

    #[test]
    fn ten_thousand_rows_through_the_engine() {
        let mut text = String::from("id,name,hired,groups\n");
        for i in 0..10_000 {
            text.push_str(&format!(
                "E{i:05},\"Name, {i}\",2020-01-{:02},G{};G{}\n",
                i % 28 + 1,
                i % 7,
                i % 3
            ));
        }
        let s = read(&text);
        assert!(s.problems.is_empty());
        assert_eq!(s.lines.len(), 10_000);
        assert_eq!(s.lines[9_999], 10_001);
        let mut engine = Engine::new(config());
        let r = engine.import("hr", &s.snapshot, at(1)).unwrap();
        assert!(r.applied);
        assert!(r.plan.rejections.is_empty());
        assert_eq!(r.plan.counts.inserted, 10_000);
        assert_eq!(engine.identity_count().unwrap(), 10_000);
        // The same file again changes nothing.
        let r = engine.import("hr", &read(&text).snapshot, at(2)).unwrap();
        assert!(r.plan.changes.is_empty());
    }

    #[test]
    fn the_connector_reads_complete_exports_only_and_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("attrflow-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hr.csv");
        std::fs::write(&path, "id,name,hired,groups\nE1,Ann,,\nE2,x\n,y\n").unwrap();
        let c = config();
        let mut connector = CsvConnector::new("hr", c.system("hr").unwrap(), &path);
        assert_eq!(connector.system(), "hr");
        let err = connector.export(ExportMode::Delta).unwrap_err();
        assert_eq!(err.message(), "csv exports are complete snapshots");
        let err = connector.export(ExportMode::Complete).unwrap_err();
        assert!(err.message().contains("line 4"), "{err}");
        assert_eq!(connector.problems().len(), 2);

        std::fs::write(&path, "id,name,hired,groups\nE1,Ann,,\nE2,x\n").unwrap();
        let snapshot = connector.export(ExportMode::Complete).unwrap();
        assert!(matches!(snapshot, Snapshot::Complete { ref rows, .. } if rows.len() == 2));
        assert_eq!(connector.lines(), &[2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = CsvConnector::new("hr", c.system("hr").unwrap(), dir.join("nope.csv"))
            .export(ExportMode::Complete)
            .unwrap_err();
        assert!(missing.message().contains("cannot be opened"), "{missing}");
        let op = Op::Create(crate::outbound::CreateOp {
            system: "hr".into(),
            identity: crate::model::IdentityId::from_raw(1),
            account: "E9".into(),
            attributes: Default::default(),
        });
        assert!(matches!(
            connector.apply(&[op.clone(), op]).as_slice(),
            [OpStatus::Failed(_), OpStatus::Failed(_)]
        ));
    }
}
