//! The diff plan of an import (SPEC 2.5): inserted, updated (old -> new per attribute)
//! and deleted accounts against the stored mirror, and the plan's counters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{AccountAttribute, SystemConfig};
use crate::model::{Account, Fingerprint};
use crate::prepare::{Prepared, PreparedRow, RowRejection};
use crate::store::{AccountSummary, PlanId, Store, StoreError};
use crate::text::Text;
use crate::text_cache::TextCache;
use crate::thresholds::{Base, Counts, Exceeded};
use crate::value::{Value, ValueType};

/// What happens to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new account.
    Insert,
    /// A stored account whose values change.
    Update,
    /// A stored account that is gone.
    Delete,
}

/// One attribute's old and new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttributeChange {
    /// The account attribute.
    pub attribute: Text,
    /// The stored value.
    pub old: Value,
    /// The imported value.
    pub new: Value,
}

/// One account's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountChange {
    /// The account key.
    pub key: String,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// Changed attributes (an insert lists its non-empty values, a delete its stored ones).
    pub attributes: Vec<AttributeChange>,
}

/// An import turned into a plan against the stored accounts of one system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use = "a plan describes what an import does; inspect it"]
#[non_exhaustive]
pub struct ImportPlan {
    /// The plan's id.
    pub id: PlanId,
    /// The system imported.
    pub system: String,
    /// The time of the import: the time of every candidate it produces.
    pub at: DateTime<Utc>,
    /// Account changes, sorted by key.
    pub changes: Vec<AccountChange>,
    /// Unlinked (unmatched or ambiguous) accounts the import carried unchanged: their
    /// correlation is tried again.
    pub retry: Vec<String>,
    /// Accounts the import carried unchanged that hold a pushed value not yet seen since
    /// its push, or one that had bounced: seeing them kept resets the sync-loop count and
    /// disarms the push (SPEC 5.3).
    #[serde(default)]
    pub kept: Vec<String>,
    /// Rejected rows.
    pub rejections: Vec<RowRejection>,
    /// The plan's counters.
    pub counts: Counts,
    /// What was stored before (base of percentage thresholds).
    pub base: Base,
    /// Every exceeded threshold; non-empty means the plan is blocked.
    pub exceeded: Vec<Exceeded>,
    /// The system's version the plan was computed against (stale-plan check).
    pub version: u64,
    /// The likely causes of a suspicious import, each with its evidence (SPEC 12.1):
    /// where a review of a blocked plan starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnosis: Vec<crate::diagnosis::Suspicion>,
}

impl ImportPlan {
    /// Whether a threshold blocked the plan.
    pub fn is_blocked(&self) -> bool {
        !self.exceeded.is_empty()
    }
}

/// Diffs prepared rows against the stored accounts: changes sorted by key, unlinked
/// accounts to retry, and bounced accounts seen kept (both sorted).
///
/// Stored accounts are lent by [`Store::visit_accounts_by_key`]; a row's cells are
/// compared with the stored values in place, so an unchanged row builds no value.
///
/// With `defer_inserts`, an inserted row's change is left without attributes and its
/// row is named in [`Diff::deferred`]: [`fill_insert`] builds them when the change is
/// applied (a first load then never holds every value of its plan at once).
pub(crate) fn diff(
    system_name: &str,
    system: &SystemConfig,
    prepared: &Prepared<'_>,
    store: &dyn Store,
    defer_inserts: bool,
) -> Result<Diff, StoreError> {
    let attributes: Vec<(&Text, &AccountAttribute)> = system.schema.attributes.iter().collect();
    // Schema positions in name order, to walk a stored account's (sorted) values along.
    let mut by_name: Vec<usize> = (0..attributes.len()).collect();
    by_name.sort_by(|&a, &b| attributes[a].0.cmp(attributes[b].0));
    let keys: Vec<&str> = prepared.rows.iter().map(|r| r.key.as_ref()).collect();
    // Fingerprints apply when every attribute holds a single text.
    let hashable = prepared.complete
        && attributes
            .iter()
            .all(|(_, a)| !a.multi && matches!(a.value_type, ValueType::String | ValueType::Reference));

    // Every row's fingerprint, computed apart (on several cores for a large import):
    // pure work on the snapshot, compared below with the stored ones; a system with
    // nothing stored (a first load) has none to compare with.
    // 0 for a row without one (a stored fingerprint of 0 is never compared).
    let fingerprints: Vec<u64> = if hashable && store.account_base(system_name)?.accounts > 0 {
        crate::parallel::map(&prepared.rows, |row| {
            row_fingerprint(prepared, row, &attributes, &by_name).unwrap_or(0)
        })
    } else {
        Vec::new()
    };
    let mut changes = Vec::new();
    // Per change, the snapshot row of a deferred insert.
    let mut rows: Vec<Option<u32>> = Vec::new();
    // Inserted rows' values: equal cells share one text (a first load builds them all).
    let mut texts = TextCache::new(attributes.len());
    let mut retry = Vec::new();
    let mut kept = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut visit = |index: usize, stored: Option<&Account>| {
        let Some(row) = prepared.rows.get(index) else {
            return;
        };
        let Some(stored) = stored else {
            let attributes = if defer_inserts {
                rows.resize(changes.len(), None);
                rows.push(u32::try_from(row.row).ok());
                Vec::new()
            } else {
                inserted_attributes(system, prepared, row.row, &mut texts)
            };
            changes.push(AccountChange {
                key: row.key.to_string(),
                kind: ChangeKind::Insert,
                attributes,
            });
            return;
        };
        let same_hash = stored.fingerprint != 0 && fingerprints.get(index) == Some(&stored.fingerprint);
        let changed = if same_hash || unchanged(prepared, row, stored, &attributes, &by_name) {
            Vec::new()
        } else {
            changed_attributes(prepared, row, stored, &attributes)
        };
        if !changed.is_empty() {
            changes.push(AccountChange {
                key: row.key.to_string(),
                kind: ChangeKind::Update,
                attributes: changed,
            });
        } else {
            settle(AccountSummary::of(stored), &row.key, &mut retry, &mut kept);
        }
    };
    // Rows whose fingerprint is their stored account's are settled from its summary
    // (link and echo state): only the others have their stored values read.
    let mut settled_retry = Vec::new();
    let mut settled_kept = Vec::new();
    if prepared.complete && !fingerprints.is_empty() {
        let mut compare: Vec<usize> = Vec::new();
        store.visit_account_summaries_by_key_and_others(
            system_name,
            &keys,
            &mut |index, summary| match summary {
                None => visit(index, None),
                Some(s) if s.fingerprint != 0 && fingerprints.get(index) == Some(&s.fingerprint) => {
                    let key = keys.get(index).copied().unwrap_or_default();
                    settle(s, key, &mut settled_retry, &mut settled_kept);
                }
                Some(_) => compare.push(index),
            },
            // A stored account no good row named is deleted, unless a rejected row
            // named it.
            &mut |key| {
                if !prepared.saw(key) {
                    deleted.push(key.to_owned());
                }
            },
        )?;
        let compare_keys: Vec<&str> = compare.iter().filter_map(|&i| keys.get(i).copied()).collect();
        store.visit_accounts_by_key(system_name, &compare_keys, &mut |position, stored| {
            if let Some(&index) = compare.get(position) {
                visit(index, stored);
            }
        })?;
    } else if prepared.complete {
        store.visit_accounts_by_key_and_others(system_name, &keys, &mut visit, &mut |a| {
            if !prepared.saw(a.key.as_str()) {
                deleted.push(a.key.clone());
            }
        })?;
    } else {
        store.visit_accounts_by_key(system_name, &keys, &mut visit)?;
    }
    retry.extend(settled_retry);
    kept.extend(settled_kept);
    retry.sort();
    kept.sort();
    deleted.extend(prepared.deletes.iter().cloned());
    for key in deleted {
        if let Some(stored) = store.account(system_name, &key)? {
            let attributes = stored
                .attributes
                .iter()
                .map(|(a, v)| AttributeChange {
                    attribute: a.clone(),
                    old: v.clone(),
                    new: Value::Empty,
                })
                .collect();
            changes.push(AccountChange {
                key,
                kind: ChangeKind::Delete,
                attributes,
            });
        }
    }
    let (changes, deferred) = sorted_by_key(changes, rows);
    Ok(Diff {
        changes,
        retry,
        kept,
        deferred,
    })
}

/// An unchanged stored account: tried for correlation again when unlinked, looked at
/// again when an echo of it is pending.
fn settle(summary: AccountSummary, key: &str, retry: &mut Vec<String>, kept: &mut Vec<String>) {
    if !summary.linked {
        retry.push(key.to_owned());
    }
    if summary.echo_pending {
        kept.push(key.to_owned());
    }
}

/// The changes sorted by key. Each key's first eight bytes are kept beside its index
/// and compared first: sorting a million changes then reads the keys' own (scattered)
/// strings only to break ties, not for each of its twenty million comparisons.
/// `rows` (one per change, or shorter: the rest `None`) follows its change.
fn sorted_by_key(changes: Vec<AccountChange>, mut rows: Vec<Option<u32>>) -> (Vec<AccountChange>, Vec<Option<u32>>) {
    let prefix = |key: &str| {
        let mut bytes = [0u8; 8];
        for (slot, byte) in bytes.iter_mut().zip(key.bytes()) {
            *slot = byte;
        }
        u64::from_be_bytes(bytes)
    };
    let mut order: Vec<(u64, usize)> = changes.iter().enumerate().map(|(i, c)| (prefix(&c.key), i)).collect();
    // Zero padding keeps the order of the prefixes that of the keys; equal prefixes
    // fall back to the whole keys, then to the position (keys are unique).
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| match (changes.get(a.1), changes.get(b.1)) {
            (Some(x), Some(y)) => x.key.cmp(&y.key).then(a.1.cmp(&b.1)),
            _ => a.1.cmp(&b.1),
        })
    });
    let mut slots: Vec<Option<AccountChange>> = changes.into_iter().map(Some).collect();
    let sorted = order
        .iter()
        .filter_map(|&(_, i)| slots.get_mut(i).and_then(Option::take))
        .collect();
    if !rows.is_empty() {
        rows.resize(slots.len(), None);
        rows = order.iter().map(|&(_, i)| rows.get(i).copied().flatten()).collect();
    }
    (sorted, rows)
}

/// Whether every attribute a row carries equals the stored value: the common case of
/// a complete import, checked without building values by walking the stored (sorted)
/// values along the schema attributes in name order.
fn unchanged(
    prepared: &Prepared<'_>,
    row: &PreparedRow<'_>,
    stored: &Account,
    attributes: &[(&Text, &AccountAttribute)],
    by_name: &[usize],
) -> bool {
    static EMPTY: Value = Value::Empty;
    let mut held_values = stored.attributes.iter().peekable();
    for &index in by_name {
        let Some(&(name, attr)) = attributes.get(index) else {
            return false;
        };
        let held = loop {
            match held_values.peek() {
                Some((k, _)) if k.as_str() < name.as_str() => {
                    held_values.next();
                }
                Some((k, v)) if k.as_str() == name.as_str() => break *v,
                _ => break &EMPTY,
            }
        };
        let Some(cell) = prepared.source.cell(row.row, index, name) else {
            if prepared.complete && !held.is_empty() {
                return false;
            }
            continue;
        };
        let same = match cell.same_as_held(held, attr) {
            Some(same) => same,
            None => cell.parse(attr).is_ok_and(|new| held.same_as(&new, attr.case_exact)),
        };
        if !same {
            return false;
        }
    }
    true
}

/// The fingerprint of a complete row's cells, computed as
/// [`Account::values_fingerprint`] would be for the values they parse to (non-empty
/// texts of single string attributes, in name order); `None` for a cell that is not
/// text.
fn row_fingerprint(
    prepared: &Prepared<'_>,
    row: &PreparedRow<'_>,
    attributes: &[(&Text, &AccountAttribute)],
    by_name: &[usize],
) -> Option<u64> {
    let mut hash = Fingerprint::new();
    for &index in by_name {
        let &(name, _) = attributes.get(index)?;
        let text = match prepared.source.cell(row.row, index, name) {
            Some(cell) => cell.text_or_null()?,
            None => "",
        };
        if !text.is_empty() {
            hash.add(name.as_bytes());
            hash.add(text.as_bytes());
        }
    }
    Some(hash.finish())
}

/// The attributes of a row that differ from the stored account, in schema order.
fn changed_attributes(
    prepared: &Prepared<'_>,
    row: &PreparedRow<'_>,
    stored: &Account,
    attributes: &[(&Text, &AccountAttribute)],
) -> Vec<AttributeChange> {
    let mut changed = Vec::new();
    for (index, &(name, attr)) in attributes.iter().enumerate() {
        let held = stored.value(name);
        let new = match prepared.source.cell(row.row, index, name) {
            Some(cell) => {
                if cell.same_as_held(held, attr) == Some(true) {
                    continue;
                }
                // A good row's cells parse (prepare checked them).
                cell.parse(attr).unwrap_or_default()
            }
            None if prepared.complete => Value::Empty,
            None => continue,
        };
        if !held.same_as(&new, attr.case_exact) {
            changed.push(AttributeChange {
                attribute: name.clone(),
                old: held.clone(),
                new,
            });
        }
    }
    changed
}

/// The account-level outcome of a diff.
pub(crate) struct Diff {
    pub(crate) changes: Vec<AccountChange>,
    pub(crate) retry: Vec<String>,
    pub(crate) kept: Vec<String>,
    /// Per change (or none at all): the snapshot row of an insert whose attributes are
    /// not built yet.
    pub(crate) deferred: Vec<Option<u32>>,
}

/// Builds the attributes of a deferred insert from its row in the snapshot, as the
/// diff would have.
pub(crate) fn fill_insert<'a>(
    system: &SystemConfig,
    prepared: &Prepared<'a>,
    row: u32,
    texts: &mut TextCache<'a>,
    change: &mut AccountChange,
) {
    change.attributes = inserted_attributes(system, prepared, row as usize, texts);
}

/// The attribute changes of an inserted row (its row in the snapshot): its non-empty
/// values.
fn inserted_attributes<'a>(
    system: &SystemConfig,
    prepared: &Prepared<'a>,
    row: usize,
    texts: &mut TextCache<'a>,
) -> Vec<AttributeChange> {
    let mut attributes = Vec::with_capacity(system.schema.attributes.len());
    prepared.for_each_value(system, row, texts, |attribute, new| {
        if !new.is_empty() {
            attributes.push(AttributeChange {
                attribute: attribute.clone(),
                old: Value::Empty,
                new,
            });
        }
    });
    attributes
}

/// The counters of a list of account changes (SPEC 2.5).
pub(crate) fn count(system: &SystemConfig, changes: &[AccountChange]) -> Counts {
    let mut counts = Counts::default();
    // Only multi-valued attributes count links, and only updates count attributes: the
    // inserts and deletes of a system without multi-valued attributes need no look-up.
    let any_multi = system.schema.attributes.values().any(|a| a.multi);
    for change in changes {
        if change.kind != ChangeKind::Update && !any_multi {
            match change.kind {
                ChangeKind::Insert => counts.inserted += 1,
                _ => counts.deleted += 1,
            }
            continue;
        }
        let mut scalar_changed = false;
        let mut multi_changed = false;
        for c in &change.attributes {
            let Some(decl) = system.attribute(&c.attribute) else {
                continue;
            };
            if decl.multi {
                let added = c.new.missing_from(&c.old, decl.case_exact).len() as u64;
                let removed = c.old.missing_from(&c.new, decl.case_exact).len() as u64;
                counts.link_inserted += added;
                counts.link_deleted += removed;
                multi_changed |= added + removed > 0;
            } else {
                scalar_changed = true;
            }
        }
        match change.kind {
            ChangeKind::Insert => counts.inserted += 1,
            ChangeKind::Delete => counts.deleted += 1,
            ChangeKind::Update => {
                counts.updated += u64::from(scalar_changed);
                counts.link_updated += u64::from(multi_changed);
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The prefix sort orders as a plain sort by key does, whatever the keys'
        /// lengths and bytes (shared prefixes, NUL bytes, non-ASCII).
        #[test]
        fn sorted_by_key_is_a_sort_by_key(keys in proptest::collection::hash_set("[ab\\x00é]{0,12}", 0..60)) {
            let changes: Vec<AccountChange> = keys
                .iter()
                .map(|k| AccountChange { key: k.clone(), kind: ChangeKind::Insert, attributes: Vec::new() })
                .collect();
            let mut want: Vec<String> = keys.into_iter().collect();
            want.sort();
            let got: Vec<String> = sorted_by_key(changes, Vec::new()).0.into_iter().map(|c| c.key).collect();
            prop_assert_eq!(got, want);
        }
    }
}
