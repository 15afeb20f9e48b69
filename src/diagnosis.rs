//! The diagnosis of an import (SPEC 12.1): the likely causes of a suspicious import, each
//! with its evidence, found in the import's own plan and prepare result. These are the
//! causes administrators look for by hand before releasing a blocked synchronization (a
//! blank file, a swap of two headers, a change in date format); the diagnosis names them
//! so that the review starts there.
//!
//! "Most" means at least [`MOST_ACCOUNTS`] accounts *and* at least 80% of them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::diff::{AccountChange, ChangeKind};
use crate::model::Fingerprint;
use crate::prepare::{RejectionReason, RowRejection, Snapshot};
use crate::store::{Store, StoreError};
use crate::thresholds::Base;
use crate::value::{Scalar, Value};

/// The fewest accounts a check counts before it calls anything "most".
pub const MOST_ACCOUNTS: u64 = 10;

/// How many example keys a finding names.
const EXAMPLES: usize = 5;

/// Which likely cause a finding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SuspicionKind {
    /// A complete snapshot with no rows while the system has stored accounts.
    EmptyExport,
    /// A single-valued column blanked in most accounts that held a value in it.
    MassBlanking,
    /// Two columns whose values swapped places in most updated accounts.
    SwappedColumns,
    /// Most updates of a column change only letter case or surrounding whitespace.
    CaseOrSpaceChange,
    /// Most deleted accounts come back under a new key with every other value equal.
    Rekeyed,
    /// Most rows carrying a value in a column are rejected as `invalid_value` for it.
    FormatChange,
}

impl SuspicionKind {
    /// The stable `snake_case` name (scenario files use it).
    pub fn as_str(self) -> &'static str {
        match self {
            SuspicionKind::EmptyExport => "empty_export",
            SuspicionKind::MassBlanking => "mass_blanking",
            SuspicionKind::SwappedColumns => "swapped_columns",
            SuspicionKind::CaseOrSpaceChange => "case_or_space_change",
            SuspicionKind::Rekeyed => "rekeyed",
            SuspicionKind::FormatChange => "format_change",
        }
    }
}

/// One likely cause of a suspicious import, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Suspicion {
    /// The cause.
    pub kind: SuspicionKind,
    /// The columns involved, sorted (none for `empty_export` and `rekeyed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// How many accounts (or rows) show it.
    pub count: u64,
    /// Out of how many the check looked at.
    pub of: u64,
    /// A few account keys that show it, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// What it means, in words.
    pub message: String,
}

/// Whether `count` of `of` is "most": at least [`MOST_ACCOUNTS`] and at least 80%.
fn most(count: u64, of: u64) -> bool {
    count >= MOST_ACCOUNTS && count.saturating_mul(5) >= of.saturating_mul(4)
}

fn examples(mut keys: Vec<&str>) -> Vec<String> {
    keys.sort_unstable();
    keys.into_iter().take(EXAMPLES).map(str::to_owned).collect()
}

fn percent(count: u64, of: u64) -> u64 {
    count.saturating_mul(100).checked_div(of).unwrap_or(0)
}

/// The single text of a value, if it is one.
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::Single(Scalar::Text(t)) => Some(t.as_str()),
        _ => None,
    }
}

/// Every check of SPEC 12.1 over one import's plan. `store` is read (one pass over the
/// system's accounts) only when a column was blanked in at least [`MOST_ACCOUNTS`]
/// accounts, and `snapshot` scanned only when a column has that many rejections.
pub(crate) fn diagnose(
    system_name: &str,
    system: &SystemConfig,
    snapshot: &Snapshot,
    changes: &[AccountChange],
    rejections: &[RowRejection],
    base: Base,
    store: &dyn Store,
) -> Result<Vec<Suspicion>, StoreError> {
    let mut found = Vec::new();
    if matches!(snapshot, Snapshot::Complete { .. } | Snapshot::Table(_)) && snapshot.is_empty() && base.accounts > 0 {
        found.push(Suspicion {
            kind: SuspicionKind::EmptyExport,
            columns: Vec::new(),
            count: base.accounts,
            of: base.accounts,
            examples: Vec::new(),
            message: format!(
                "the export has no rows while `{system_name}` holds {} accounts: a blank or truncated file would \
                 delete them all",
                base.accounts
            ),
        });
    }
    mass_blanking(system_name, system, snapshot, changes, store, &mut found)?;
    swapped_columns(system, changes, &mut found);
    case_or_space(system, changes, &mut found);
    rekeyed(system, changes, &mut found);
    format_change(system, snapshot, rejections, &mut found);
    found.sort_by(|a, b| (a.kind, &a.columns).cmp(&(b.kind, &b.columns)));
    Ok(found)
}

fn mass_blanking(
    system_name: &str,
    system: &SystemConfig,
    snapshot: &Snapshot,
    changes: &[AccountChange],
    store: &dyn Store,
    found: &mut Vec<Suspicion>,
) -> Result<(), StoreError> {
    let mut blanked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Update) {
        for a in &change.attributes {
            let single = system.attribute(&a.attribute).is_some_and(|d| !d.multi);
            if single && !a.old.is_empty() && a.new.is_empty() {
                blanked
                    .entry(a.attribute.as_str())
                    .or_default()
                    .push(change.key.as_str());
            }
        }
    }
    blanked.retain(|_, keys| keys.len() as u64 >= MOST_ACCOUNTS);
    if blanked.is_empty() {
        return Ok(());
    }
    // The accounts stored before and present in the snapshot that held a value, read
    // by the snapshot's keys in growing chunks. Reading stops once every column has
    // more holders than "most" allows (blanked in 80% of them): on a large system that
    // is after a few accounts per blank, not a scan of the whole mirror.
    let mut held: HashMap<&str, u64> = blanked.keys().map(|c| (*c, 0)).collect();
    let limits: HashMap<&str, u64> = blanked
        .iter()
        .map(|(c, keys)| (*c, (keys.len() as u64).saturating_mul(5) / 4))
        .collect();
    let settled = |held: &HashMap<&str, u64>| held.iter().all(|(c, n)| *n > limits.get(c).copied().unwrap_or(0));
    let mut keys = SnapshotKeys::new(system, snapshot);
    let mut seen: HashSet<String> = HashSet::new();
    let mut chunk = 256usize;
    while !settled(&held) {
        let batch: Vec<String> = keys.by_ref().filter(|k| seen.insert(k.clone())).take(chunk).collect();
        if batch.is_empty() {
            break;
        }
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        store.visit_accounts_by_key(system_name, &refs, &mut |_, account| {
            let Some(account) = account else { return };
            for (column, n) in held.iter_mut() {
                *n += u64::from(!account.value(column).is_empty());
            }
        })?;
        chunk = chunk.saturating_mul(2);
    }
    for (column, keys) in blanked {
        let of = held.get(column).copied().unwrap_or(0);
        let n = keys.len() as u64;
        if most(n, of) {
            found.push(Suspicion {
                kind: SuspicionKind::MassBlanking,
                columns: vec![column.to_owned()],
                count: n,
                of,
                message: format!(
                    "`{column}` is blanked in {n} of the {of} accounts that held a value ({}%): an empty or \
                     renamed column in the export?",
                    percent(n, of)
                ),
                examples: examples(keys),
            });
        }
    }
    Ok(())
}

fn swapped_columns(system: &SystemConfig, changes: &[AccountChange], found: &mut Vec<Suspicion>) {
    // Per column: updated accounts in which it changed; per pair: accounts where both
    // changed, and where they swapped.
    let mut changed: HashMap<&str, u64> = HashMap::new();
    let mut swapped: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    let updates = || changes.iter().filter(|c| c.kind == ChangeKind::Update);
    for change in updates() {
        for a in &change.attributes {
            *changed.entry(a.attribute.as_str()).or_default() += 1;
        }
        for (i, a) in change.attributes.iter().enumerate() {
            for b in change.attributes.iter().skip(i + 1) {
                let exact = system.case_exact(&a.attribute) && system.case_exact(&b.attribute);
                let swap =
                    a.new.same_as(&b.old, exact) && b.new.same_as(&a.old, exact) && !a.old.same_as(&b.old, exact);
                if swap {
                    let pair = if a.attribute <= b.attribute {
                        (a.attribute.as_str(), b.attribute.as_str())
                    } else {
                        (b.attribute.as_str(), a.attribute.as_str())
                    };
                    swapped.entry(pair).or_default().push(change.key.as_str());
                }
            }
        }
    }
    swapped.retain(|_, keys| keys.len() as u64 >= MOST_ACCOUNTS);
    for ((a, b), keys) in swapped {
        let both = updates()
            .filter(|c| c.attributes.iter().any(|x| x.attribute == a) && c.attributes.iter().any(|x| x.attribute == b))
            .count() as u64;
        let of = changed.get(a).copied().unwrap_or(0) + changed.get(b).copied().unwrap_or(0) - both;
        let n = keys.len() as u64;
        if most(n, of) {
            found.push(Suspicion {
                kind: SuspicionKind::SwappedColumns,
                columns: vec![a.to_owned(), b.to_owned()],
                count: n,
                of,
                message: format!(
                    "`{a}` and `{b}` swapped values in {n} of the {of} updated accounts where either changed \
                     ({}%): two headers exchanged in the export?",
                    percent(n, of)
                ),
                examples: examples(keys),
            });
        }
    }
}

fn case_or_space(system: &SystemConfig, changes: &[AccountChange], found: &mut Vec<Suspicion>) {
    let mut updates: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Update) {
        for a in &change.attributes {
            if system.attribute(&a.attribute).is_some_and(|d| d.multi) {
                continue;
            }
            let entry = updates.entry(a.attribute.as_str()).or_default();
            entry.0 += 1;
            let cosmetic = match (text(&a.old), text(&a.new)) {
                (Some(old), Some(new)) => old.trim().to_lowercase() == new.trim().to_lowercase(),
                _ => false,
            };
            if cosmetic {
                entry.1.push(change.key.as_str());
            }
        }
    }
    for (column, (of, keys)) in updates {
        let n = keys.len() as u64;
        if most(n, of) {
            found.push(Suspicion {
                kind: SuspicionKind::CaseOrSpaceChange,
                columns: vec![column.to_owned()],
                count: n,
                of,
                message: format!(
                    "{n} of the {of} updates of `{column}` ({}%) change only letter case or surrounding spaces: \
                     the exporting system changed how it writes the column?",
                    percent(n, of)
                ),
                examples: examples(keys),
            });
        }
    }
}

fn rekeyed(system: &SystemConfig, changes: &[AccountChange], found: &mut Vec<Suspicion>) {
    // Fewer deletes than "most" needs: nothing to pair (a first load has none, and its
    // inserts are not hashed).
    let deletes = changes.iter().filter(|c| c.kind == ChangeKind::Delete).count() as u64;
    if deletes < MOST_ACCOUNTS {
        return;
    }
    let key = system.schema.account_id.as_str();
    // Non-key values hashed in name order: an insert lists its non-empty values in
    // column order, a delete its stored ones in name order.
    let hash = |change: &AccountChange, deleted: bool| {
        let mut values: Vec<(&str, String)> = change
            .attributes
            .iter()
            .filter(|a| a.attribute != key)
            .map(|a| (a.attribute.as_str(), if deleted { &a.old } else { &a.new }))
            .filter(|(_, v)| !v.is_empty())
            .map(|(name, v)| (name, v.to_json().to_string()))
            .collect();
        values.sort_unstable();
        let mut hash = Fingerprint::new();
        for (name, value) in values {
            hash.add(name.as_bytes());
            hash.add(value.as_bytes());
        }
        hash.finish()
    };
    let mut inserted: HashMap<u64, u64> = HashMap::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Insert) {
        *inserted.entry(hash(change, false)).or_default() += 1;
    }
    let mut paired = Vec::new();
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Delete) {
        if let Some(left) = inserted.get_mut(&hash(change, true)).filter(|n| **n > 0) {
            *left -= 1;
            paired.push(change.key.as_str());
        }
    }
    let n = paired.len() as u64;
    if most(n, deletes) {
        found.push(Suspicion {
            kind: SuspicionKind::Rekeyed,
            columns: Vec::new(),
            count: n,
            of: deletes,
            message: format!(
                "{n} of the {deletes} deleted accounts ({}%) come back under a new key with every other value \
                 equal: the key format changed? Applying the import would unlink and relink every one of them",
                percent(n, deletes)
            ),
            examples: examples(paired),
        });
    }
}

fn format_change(system: &SystemConfig, snapshot: &Snapshot, rejections: &[RowRejection], found: &mut Vec<Suspicion>) {
    let mut rejected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in rejections.iter().filter(|r| r.reason == RejectionReason::InvalidValue) {
        if let Some(attribute) = &r.attribute {
            rejected
                .entry(attribute.as_str())
                .or_default()
                .push(r.key.as_deref().unwrap_or(""));
        }
    }
    rejected.retain(|_, keys| keys.len() as u64 >= MOST_ACCOUNTS);
    for (column, keys) in rejected {
        if system.attribute(column).is_none() {
            continue;
        }
        let of = rows_with_value(snapshot, column);
        let n = keys.len() as u64;
        if most(n, of) {
            found.push(Suspicion {
                kind: SuspicionKind::FormatChange,
                columns: vec![column.to_owned()],
                count: n,
                of,
                message: format!(
                    "{n} of the {of} rows with a value in `{column}` ({}%) are rejected as invalid: the export \
                     writes the column in another format (dates, numbers) or its type is declared wrong?",
                    percent(n, of)
                ),
                examples: examples(keys.into_iter().filter(|k| !k.is_empty()).collect()),
            });
        }
    }
}

/// The account keys of a snapshot's rows, in row order, as the store holds them
/// (lower-cased where the key ignores case); rows without a key are skipped.
struct SnapshotKeys<'a> {
    snapshot: &'a Snapshot,
    key: &'a str,
    /// The key's column in a table snapshot.
    column: Option<usize>,
    exact: bool,
    row: usize,
}

impl<'a> SnapshotKeys<'a> {
    fn new(system: &'a SystemConfig, snapshot: &'a Snapshot) -> SnapshotKeys<'a> {
        let key = system.schema.account_id.as_str();
        let column = match snapshot {
            Snapshot::Table(table) => table.columns().iter().position(|c| c == key),
            _ => None,
        };
        SnapshotKeys {
            snapshot,
            key,
            column,
            exact: system.key_case_exact(),
            row: 0,
        }
    }
}

impl Iterator for SnapshotKeys<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let row = self.row;
            self.row += 1;
            let raw = match self.snapshot {
                Snapshot::Complete { rows, .. } => rows.get(row)?.get(self.key).cloned(),
                Snapshot::Incremental { upserts, .. } => upserts.get(row)?.get(self.key).cloned(),
                Snapshot::Table(table) => {
                    if row >= table.len() {
                        return None;
                    }
                    let column = self.column?;
                    table.cell(row, column).map(|c| serde_json::Value::String(c.to_owned()))
                }
            };
            if let Some(key) = raw.and_then(|raw| crate::prepare::key_text(&raw, self.exact)) {
                return Some(key);
            }
        }
    }
}

/// How many rows of a snapshot carry a non-empty value in `column`.
fn rows_with_value(snapshot: &Snapshot, column: &str) -> u64 {
    let filled = |raw: Option<&serde_json::Value>| match raw {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    match snapshot {
        Snapshot::Complete { rows, .. } => rows.iter().filter(|r| filled(r.get(column))).count() as u64,
        Snapshot::Incremental { upserts, .. } => upserts.iter().filter(|r| filled(r.get(column))).count() as u64,
        Snapshot::Table(table) => {
            let Some(index) = table.columns().iter().position(|c| c == column) else {
                return 0;
            };
            (0..table.len())
                .filter(|&row| table.cell(row, index).is_some_and(|c| !c.is_empty()))
                .count() as u64
        }
    }
}
