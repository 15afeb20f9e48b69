//! Engine-level controls (SPEC 6) and sync-loop reports (SPEC 5.3): the inbox and outbox
//! of a paused engine, and the account attributes whose pushed values keep coming back
//! different.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::diff::{AttributeChange, ChangeKind};
use crate::model::IdentityId;
use crate::outbound::Op;
use crate::store::PlanId;

/// Identity-side work for one changed account: what correlation, projection and
/// resolution must look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountWork {
    /// The account key.
    pub account: String,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// The changed attributes (old -> new).
    pub attributes: Vec<AttributeChange>,
    /// For a deleted account: the identity it was linked to.
    pub previous_link: Option<IdentityId>,
}

/// One entry of a paused engine's inbox: a changed account waiting for resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InboxEntry {
    /// The import plan it came from.
    pub plan: PlanId,
    /// The system.
    pub system: String,
    /// The time of the import (the time of its candidates on resume).
    pub at: DateTime<Utc>,
    /// What changed.
    pub work: AccountWork,
}

/// One entry of a paused engine's outbox: an op held for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// The system.
    pub system: String,
    /// When the outbound request was made.
    pub at: DateTime<Utc>,
    /// The op that would have been returned.
    pub op: Op,
}

/// A sync loop: the pushed value of this account attribute came back different three
/// times in a row, so it is no longer pushed until the host clears the loop.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SyncLoop {
    /// The system.
    pub system: String,
    /// The account key.
    pub account: String,
    /// The account attribute.
    pub attribute: String,
}

/// How many times a pushed value may come back different before it is not pushed again.
pub const LOOP_LIMIT: u32 = 3;

/// A control request refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// There is no such sync loop to clear.
    #[error("there is no sync loop on attribute `{attribute}` of account `{account}` in system `{system}`")]
    NoSuchLoop {
        /// The system.
        system: String,
        /// The account key.
        account: String,
        /// The attribute.
        attribute: String,
    },
    /// Resume was asked while the engine is not paused.
    #[error("the engine is not paused")]
    NotPaused,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ControlError {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlError::NoSuchLoop { .. } => "no_such_loop",
            ControlError::NotPaused => "not_paused",
            ControlError::Store(_) => "store",
        }
    }
}
