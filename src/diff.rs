//! The diff plan of an import (SPEC 2.5): inserted, updated (old -> new per attribute)
//! and deleted accounts against the stored mirror, and the plan's counters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::prepare::{Prepared, RowRejection};
use crate::store::{PlanId, Store, StoreError};
use crate::thresholds::{Base, Counts, Exceeded};
use crate::value::Value;

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
    pub attribute: String,
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
    /// Accounts the import carried unchanged whose pushed values had bounced: seeing
    /// them kept resets the sync-loop count (SPEC 5.3).
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
}

impl ImportPlan {
    /// Whether a threshold blocked the plan.
    pub fn is_blocked(&self) -> bool {
        !self.exceeded.is_empty()
    }
}

/// Diffs prepared rows against the stored accounts: changes sorted by key, unlinked
/// accounts to retry, and bounced accounts seen kept.
pub(crate) fn diff(
    system_name: &str,
    system: &SystemConfig,
    prepared: &Prepared,
    store: &dyn Store,
) -> Result<Diff, StoreError> {
    let mut changes = Vec::new();
    let mut retry = Vec::new();
    let mut kept = Vec::new();
    for row in &prepared.rows {
        match store.account(system_name, &row.key)? {
            None => {
                let attributes = row
                    .values
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(a, v)| AttributeChange {
                        attribute: a.clone(),
                        old: Value::Empty,
                        new: v.clone(),
                    })
                    .collect();
                changes.push(AccountChange {
                    key: row.key.clone(),
                    kind: ChangeKind::Insert,
                    attributes,
                });
            }
            Some(stored) => {
                let attributes: Vec<AttributeChange> = row
                    .values
                    .iter()
                    .filter(|(a, new)| {
                        let exact = system.attribute(a).is_none_or(|d| d.case_exact);
                        !stored.value(a).same_as(new, exact)
                    })
                    .map(|(a, new)| AttributeChange {
                        attribute: a.clone(),
                        old: stored.value(a).clone(),
                        new: new.clone(),
                    })
                    .collect();
                if !attributes.is_empty() {
                    changes.push(AccountChange {
                        key: row.key.clone(),
                        kind: ChangeKind::Update,
                        attributes,
                    });
                } else {
                    if stored.identity().is_none() {
                        retry.push(row.key.clone());
                    }
                    if stored.echoes.values().any(|e| e.bounces > 0) {
                        kept.push(row.key.clone());
                    }
                }
            }
        }
    }
    let mut deleted: Vec<String> = Vec::new();
    if prepared.complete {
        store.visit_accounts(system_name, &mut |a| {
            if !prepared.seen.contains(&a.key) {
                deleted.push(a.key.clone());
            }
        })?;
    }
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
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Diff { changes, retry, kept })
}

/// The account-level outcome of a diff.
pub(crate) struct Diff {
    pub(crate) changes: Vec<AccountChange>,
    pub(crate) retry: Vec<String>,
    pub(crate) kept: Vec<String>,
}

/// The counters of a list of account changes (SPEC 2.5).
pub(crate) fn count(system: &SystemConfig, changes: &[AccountChange]) -> Counts {
    let mut counts = Counts::default();
    for change in changes {
        let mut scalar_changed = false;
        let mut multi_changed = false;
        for c in &change.attributes {
            let Some(decl) = system.attribute(&c.attribute) else {
                continue;
            };
            if decl.multi {
                let added = c
                    .new
                    .scalars()
                    .iter()
                    .filter(|s| !c.old.contains(s, decl.case_exact))
                    .count() as u64;
                let removed = c
                    .old
                    .scalars()
                    .iter()
                    .filter(|s| !c.new.contains(s, decl.case_exact))
                    .count() as u64;
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
