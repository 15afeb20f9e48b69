//! Outbound attribute sync and initial provisioning (SPEC 5.1, 5.2): the ops that make
//! linked accounts hold what their identities say, never more than needed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Direction, FlowRule, SystemConfig};
use crate::controls::LOOP_LIMIT;
use crate::model::{Identity, IdentityId};
use crate::prepare::key_text;
use crate::processing::IdentitySource;
use crate::store::{PlanId, Store, StoreError};
use crate::text::Text;
use crate::thresholds::{Base, Counts, Exceeded};
use crate::value::Keys;
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
    /// Every non-empty value to write.
    pub attributes: BTreeMap<String, Value>,
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
    /// Single-valued attributes to set (an empty value clears).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Value>,
    /// Values to add to multi-valued attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, Vec<Scalar>>,
    /// Values to remove from multi-valued attributes (never a full replace).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remove: BTreeMap<String, Vec<Scalar>>,
}

/// One outbound operation for the host to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Provision an account.
    Create(CreateOp),
    /// Update an account.
    Update(UpdateOp),
}

impl Op {
    /// The target system.
    pub fn system(&self) -> &str {
        match self {
            Op::Create(c) => &c.system,
            Op::Update(u) => &u.system,
        }
    }
    /// The account key.
    pub fn account(&self) -> &str {
        match self {
            Op::Create(c) => &c.account,
            Op::Update(u) => &u.account,
        }
    }
}

/// An outbound value that could not be computed (it does not fit the account attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboundSkip {
    /// The account key.
    pub account: String,
    /// The account attribute.
    pub attribute: String,
    /// Why.
    pub reason: String,
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
    /// The ops, creates first, then updates by account key.
    pub ops: Vec<Op>,
    /// Values that could not be computed.
    pub skipped: Vec<OutboundSkip>,
    /// Counters: `inserted` (creates), `updated` (accounts with `set`), `link_*`.
    pub counts: Counts,
    /// What was stored before.
    pub base: Base,
    /// Exceeded thresholds; non-empty means blocked (the ops must not be carried out
    /// until approved).
    pub exceeded: Vec<Exceeded>,
    /// The system's version the plan was computed against (stale-plan check).
    #[serde(default)]
    pub version: u64,
}

impl OutboundPlan {
    /// Whether a threshold blocked the plan.
    pub fn is_blocked(&self) -> bool {
        !self.exceeded.is_empty()
    }
}

/// The counters of a list of ops.
pub(crate) fn count_ops(ops: &[Op]) -> Counts {
    let mut counts = Counts::default();
    for op in ops {
        match op {
            Op::Create(_) => counts.inserted += 1,
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

/// What one account attribute should hold for an identity.
struct Target {
    want: Value,
    /// Whether values the engine did not write may be removed too.
    authoritative: bool,
}

/// What an identity wants in a system's account attributes: each rule's value (through
/// its `out` transform, converted to the account attribute's type), and for
/// multi-valued attributes the entitlements its roles grant there.
fn targets<'a>(
    config: &Config,
    system_name: &str,
    system: &SystemConfig,
    rules: impl Iterator<Item = &'a FlowRule>,
    identity: &Identity,
    now: DateTime<Utc>,
    skipped: &mut Vec<(String, String)>,
) -> BTreeMap<Text, Target> {
    let mut out: BTreeMap<Text, Target> = BTreeMap::new();
    for rule in rules {
        let Some(decl) = system.attribute(&rule.account) else {
            continue;
        };
        let value = match &rule.transform_out {
            None => Ok(identity.value(&rule.identity).clone()),
            Some(t) => t
                .eval(&IdentitySource { config, identity }, now)
                .map_err(|e| e.to_string()),
        };
        let converted = value.and_then(|v| {
            v.convert(decl.value_type, decl.multi, decl.case_exact).map_err(|_| {
                format!(
                    "{v} does not fit account attribute `{}` ({})",
                    rule.account, decl.value_type
                )
            })
        });
        match converted {
            Ok(want) => {
                out.insert(
                    rule.account.clone(),
                    Target {
                        want,
                        authoritative: rule.authoritative,
                    },
                );
            }
            Err(reason) => skipped.push((rule.account.clone().into(), reason)),
        }
    }
    // Every attribute a role can grant on this system is a target, so that revoked
    // grants are removed even when nothing is granted any more.
    let no_grants = Vec::new();
    let granted_attributes: std::collections::BTreeSet<&String> = config
        .roles
        .values()
        .filter_map(|r| r.grants.get(system_name))
        .flat_map(|g| g.keys())
        .collect();
    for attribute in granted_attributes {
        let granted = identity
            .access
            .get(system_name)
            .and_then(|a| a.get(attribute))
            .unwrap_or(&no_grants);
        let Some(decl) = system.attribute(attribute).filter(|d| d.multi) else {
            continue;
        };
        let target = out.entry(Text::from(attribute)).or_insert(Target {
            want: Value::Empty,
            authoritative: false,
        });
        let mut all = target.want.scalars().to_vec();
        all.extend(granted.iter().cloned());
        target.want = Value::multi(all, decl.case_exact);
    }
    out
}

/// The update ops that bring every linked account of a system in line with its identity.
pub(crate) fn attribute_sync(
    config: &Config,
    system_name: &str,
    system: &SystemConfig,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<(Vec<Op>, Vec<OutboundSkip>), StoreError> {
    let grants = config.roles.values().any(|r| r.grants.contains_key(system_name));
    if !system.allow_flow || (system.outbound_rules().next().is_none() && !grants) {
        // Nothing can flow out of this system: no need to look at its accounts.
        return Ok((Vec::new(), Vec::new()));
    }
    let mut ops = Vec::new();
    let mut skipped = Vec::new();
    let mut failure: Option<StoreError> = None;
    // Accounts and their identities are lent by the store, not cloned.
    store.visit_accounts(system_name, &mut |account| {
        let Some(id) = account.identity() else { return };
        if failure.is_some() {
            return;
        }
        let read = store.with_identity(id, &mut |identity| {
            let Some(identity) = identity else { return };
            if let Some(op) = sync_account(config, system_name, system, account, identity, now, &mut skipped) {
                ops.push(Op::Update(op));
            }
        });
        if let Err(err) = read {
            failure = Some(err);
        }
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    ops.sort_by(|a, b| a.account().cmp(b.account()));
    skipped.sort_by(|a, b| (&a.account, &a.attribute).cmp(&(&b.account, &b.attribute)));
    Ok((ops, skipped))
}

/// The update op that brings one linked account in line with its identity, if any.
fn sync_account(
    config: &Config,
    system_name: &str,
    system: &SystemConfig,
    account: &crate::model::Account,
    identity: &Identity,
    now: DateTime<Utc>,
    skipped: &mut Vec<OutboundSkip>,
) -> Option<UpdateOp> {
    let mut problems = Vec::new();
    let rules = system.outbound_rules().map(|(_, r)| r);
    let wanted = targets(config, system_name, system, rules, identity, now, &mut problems);
    skipped.extend(problems.into_iter().map(|(attribute, reason)| OutboundSkip {
        account: account.key.clone(),
        attribute,
        reason,
    }));
    let mut set = BTreeMap::new();
    let mut add_ops = BTreeMap::new();
    let mut remove_ops = BTreeMap::new();
    for (attribute, target) in wanted {
        let Some(decl) = system.attribute(&attribute) else {
            continue;
        };
        // A value that came back different too often is not pushed again until the
        // host clears the loop (SPEC 5.3).
        if account
            .echoes
            .get(attribute.as_str())
            .is_some_and(|e| e.bounces >= LOOP_LIMIT)
        {
            continue;
        }
        let held = account.value(&attribute);
        let want = target.want;
        if !decl.multi {
            if !want.same_as(held, decl.case_exact) {
                set.insert(attribute.to_string(), want);
            }
            continue;
        }
        let add: Vec<Scalar> = want.missing_from(held, decl.case_exact);
        // Without `authoritative`, only values the engine itself wrote are removed:
        // manual assignments stay.
        // Values the engine removed and the target brought back are still its own to
        // remove (SPEC 5.3).
        let owned: Vec<Scalar> = account
            .pushed
            .get(attribute.as_str())
            .into_iter()
            .flatten()
            .chain(
                account
                    .echoes
                    .get(attribute.as_str())
                    .into_iter()
                    .flat_map(|e| &e.removed),
            )
            .cloned()
            .collect();
        let owned = Keys::of(&owned, decl.case_exact);
        let remove: Vec<Scalar> = held
            .missing_from(&want, decl.case_exact)
            .into_iter()
            .filter(|s| target.authoritative || owned.holds(s))
            .collect();
        if !add.is_empty() {
            add_ops.insert(attribute.to_string(), add);
        }
        if !remove.is_empty() {
            remove_ops.insert(attribute.to_string(), remove);
        }
    }
    // The op's owned names are made only for an account that has something to do.
    let empty = set.is_empty() && add_ops.is_empty() && remove_ops.is_empty();
    (!empty).then(|| UpdateOp {
        system: system_name.to_owned(),
        account: account.key.clone(),
        identity: identity.id,
        set,
        add: add_ops,
        remove: remove_ops,
    })
}

/// The create op for provisioning an identity: every non-empty value of the enabled
/// `outbound`, `bidirectional` or `disabled` rules, and the role grants for the system.
/// `Err` names the key attribute when no value would be written to it.
pub(crate) fn create_op(
    config: &Config,
    system_name: &str,
    system: &SystemConfig,
    identity: &Identity,
    now: DateTime<Utc>,
) -> Result<(CreateOp, Vec<OutboundSkip>), String> {
    let mut problems = Vec::new();
    let rules = system
        .flows
        .iter()
        .filter(|r| r.enabled && r.direction != Direction::Inbound);
    let attributes: BTreeMap<String, Value> = targets(config, system_name, system, rules, identity, now, &mut problems)
        .into_iter()
        .filter(|(_, t)| !t.want.is_empty())
        .map(|(a, t)| (a.to_string(), t.want))
        .collect();
    let key_attr = &system.schema.account_id;
    let exact = system.key_case_exact();
    let key = attributes
        .get(key_attr)
        .and_then(|v| key_text(&v.to_json(), exact))
        .ok_or_else(|| key_attr.clone())?;
    let skipped = problems
        .into_iter()
        .map(|(attribute, reason)| OutboundSkip {
            account: key.clone(),
            attribute,
            reason,
        })
        .collect();
    Ok((
        CreateOp {
            system: system_name.to_owned(),
            identity: identity.id,
            account: key,
            attributes,
        },
        skipped,
    ))
}
