//! Outbound attribute sync, provisioning and deprovisioning (SPEC 5, 10, 11): the ops
//! that make linked accounts hold what their identities say, never more than needed,
//! create accounts for joiners and disable, then delete, those of leavers.
//!
//! The op and plan types live here; the `planner` submodule computes them.

pub(crate) mod planner;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attr_map::AttrMap;
use crate::model::IdentityId;
use crate::store::PlanId;
use crate::thresholds::{Base, Counts, Exceeded};
use crate::value::{Scalar, Value};

/// Create an account for an identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CreateOp {
    /// The target system.
    pub system: String,
    /// The identity the account is for.
    pub identity: IdentityId,
    /// The new account's key (its `account_id` value).
    pub account: String,
    /// Every non-empty value to write, in name order (a sorted list: a million create
    /// ops as maps took a tree of nodes each).
    pub attributes: AttrMap<Value>,
}

/// Change attributes of an existing account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpdateOp {
    /// The target system.
    pub system: String,
    /// The account key.
    pub account: String,
    /// The identity it is linked to.
    pub identity: IdentityId,
    /// Single-valued attributes to set (an empty value clears), in name order.
    #[serde(default, skip_serializing_if = "AttrMap::is_empty")]
    pub set: AttrMap<Value>,
    /// Values to add to multi-valued attributes, in name order.
    #[serde(default, skip_serializing_if = "AttrMap::is_empty")]
    pub add: AttrMap<Vec<Scalar>>,
    /// Values to remove from multi-valued attributes (never a full replace), in name
    /// order.
    #[serde(default, skip_serializing_if = "AttrMap::is_empty")]
    pub remove: AttrMap<Vec<Scalar>>,
}

/// Delete an account of an identity out of scope (SPEC 11.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeleteOp {
    /// The target system.
    pub system: String,
    /// The account key.
    pub account: String,
    /// The identity it is linked to.
    pub identity: IdentityId,
}

/// One outbound operation for the host to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Provision an account.
    Create(CreateOp),
    /// Update an account.
    Update(UpdateOp),
    /// Delete an account (deprovisioning).
    Delete(DeleteOp),
}

impl Op {
    /// The target system.
    pub fn system(&self) -> &str {
        match self {
            Op::Create(c) => &c.system,
            Op::Update(u) => &u.system,
            Op::Delete(d) => &d.system,
        }
    }
    /// The account key.
    pub fn account(&self) -> &str {
        match self {
            Op::Create(c) => &c.account,
            Op::Update(u) => &u.account,
            Op::Delete(d) => &d.account,
        }
    }
    /// The identity the op is for.
    pub fn identity(&self) -> IdentityId {
        match self {
            Op::Create(c) => c.identity,
            Op::Update(u) => u.identity,
            Op::Delete(d) => d.identity,
        }
    }
}

/// Why an outbound plan left something out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The value does not fit the account attribute's type or arity.
    DoesNotFit,
    /// The `out` transform could not be evaluated.
    TransformFailed,
    /// An identity in scope of an auto-provisioning system has no value for the
    /// `account_id` attribute: no account can be created (SPEC 11.2).
    NoAccountId,
    /// An identity in scope would get the key of an account an earlier identity of the
    /// same plan is created with.
    AccountExists,
}

impl SkipReason {
    /// The stable `snake_case` name (scenario files use it).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::DoesNotFit => "does_not_fit",
            SkipReason::TransformFailed => "transform_failed",
            SkipReason::NoAccountId => "no_account_id",
            SkipReason::AccountExists => "account_exists",
        }
    }
}

/// Something an outbound plan left out: a value that could not be computed, or an
/// account that could not be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboundSkip {
    /// The identity concerned.
    pub identity: IdentityId,
    /// The account key (empty when no account could be made).
    pub account: String,
    /// The account attribute.
    pub attribute: String,
    /// Why, as a stable kind.
    pub reason: SkipReason,
    /// Why, in words.
    pub message: String,
}

/// What an outbound plan was computed for: approval computes the same again to check
/// that the plan is still current.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", content = "identities", rename_all = "snake_case")]
pub enum PlanRequest {
    /// Every linked account of the system ([`Engine::outbound`]).
    ///
    /// [`Engine::outbound`]: crate::Engine::outbound
    #[default]
    System,
    /// The accounts of chosen identities ([`Engine::outbound_for`], [`Engine::sync`]).
    ///
    /// [`Engine::outbound_for`]: crate::Engine::outbound_for
    /// [`Engine::sync`]: crate::Engine::sync
    Identities(Vec<IdentityId>),
    /// New accounts for chosen identities ([`Engine::provision_many`]).
    ///
    /// [`Engine::provision_many`]: crate::Engine::provision_many
    Provision(Vec<IdentityId>),
}

/// The ops for one system, their counters and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use = "an outbound plan lists ops the host must carry out and confirm"]
#[non_exhaustive]
pub struct OutboundPlan {
    /// The plan's id.
    pub id: PlanId,
    /// The target system.
    pub system: String,
    /// When it was computed.
    pub at: DateTime<Utc>,
    /// The ops: creates by account key first, then updates and deletes by account key.
    pub ops: Vec<Op>,
    /// Values that could not be computed.
    pub skipped: Vec<OutboundSkip>,
    /// Counters: `inserted` (creates), `updated` (accounts with `set`), `deleted`
    /// (deletes), `link_*` (values added or removed; a delete removes every value the
    /// account holds in multi-valued attributes).
    pub counts: Counts,
    /// What was stored before.
    pub base: Base,
    /// Exceeded thresholds; non-empty means blocked (the ops must not be carried out
    /// until approved).
    pub exceeded: Vec<Exceeded>,
    /// The system's version the plan was computed against (stale-plan check).
    #[serde(default)]
    pub version: u64,
    /// What the plan was computed for.
    #[serde(default)]
    pub request: PlanRequest,
}

impl OutboundPlan {
    /// Whether a threshold blocked the plan.
    pub fn is_blocked(&self) -> bool {
        !self.exceeded.is_empty()
    }
}

impl std::fmt::Display for OutboundPlan {
    /// One line: the plan, its ops and counters, skipped values, and every exceeded
    /// threshold of a blocked plan.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outbound {} for `{}`: {} ops ({}); {} values skipped",
            self.id,
            self.system,
            self.ops.len(),
            self.counts,
            self.skipped.len()
        )?;
        if self.is_blocked() {
            write!(
                f,
                "; blocked, not to be carried out until approved: {}",
                crate::error::join(&self.exceeded)
            )?;
        }
        Ok(())
    }
}

/// The counters of a list of ops; `link_values` gives what a deleted account holds in
/// multi-valued attributes.
pub(crate) fn count_ops(ops: &[Op], link_values: &dyn Fn(&DeleteOp) -> u64) -> Counts {
    let mut counts = Counts::default();
    for op in ops {
        match op {
            Op::Create(_) => counts.inserted += 1,
            Op::Delete(d) => {
                counts.deleted += 1;
                counts.link_deleted += link_values(d);
            }
            Op::Update(u) => {
                counts.updated += u64::from(!u.set.is_empty());
                let added: usize = u.add.values().map(Vec::len).sum();
                let removed: usize = u.remove.values().map(Vec::len).sum();
                counts.link_inserted += added as u64;
                counts.link_deleted += removed as u64;
                counts.link_updated += u64::from(added + removed > 0);
            }
        }
    }
    counts
}
