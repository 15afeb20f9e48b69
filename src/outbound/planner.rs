//! Computing outbound plans: attribute sync of linked accounts (SPEC 5.1), create ops
//! (5.2, 11.2) and deprovisioning of accounts whose identity left scope (11.3), for a
//! whole system or for chosen identities (10.1).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::attr_map::AttrMap;
use crate::config::{AccountAttribute, Config, Direction, FlowRule, SystemConfig};
use crate::controls::LOOP_LIMIT;
use crate::model::{Account, Identity, IdentityId};
use crate::outbound::{CreateOp, DeleteOp, Op, OutboundSkip, SkipReason, UpdateOp};
use crate::prepare::{key_of_text, key_text};
use crate::processing::IdentitySource;
use crate::store::{InLine, InLinePair, LinkedAccount, Store, StoreError};
use crate::text::Text;
use crate::value::{Keys, Scalar, Value};

/// The ops of a plan being computed, and what it left out.
#[derive(Debug, Default)]
pub(crate) struct Planned {
    pub(crate) ops: Vec<Op>,
    pub(crate) skipped: Vec<OutboundSkip>,
}

impl Planned {
    /// Creates by key first, then updates and deletes by key; skips by identity.
    fn finish(mut self) -> Planned {
        self.ops.sort_by(|a, b| {
            let rank = |op: &Op| u8::from(!matches!(op, Op::Create(_)));
            (rank(a), a.account()).cmp(&(rank(b), b.account()))
        });
        self.skipped
            .sort_by(|a, b| (a.identity, &a.account, &a.attribute).cmp(&(b.identity, &b.account, &b.attribute)));
        self
    }
}

/// One system's outbound settings, resolved once per plan.
pub(crate) struct Planner<'a> {
    config: &'a Config,
    name: &'a str,
    system: &'a SystemConfig,
    /// `deprovisioning.disable`, typed by the account schema.
    disable: Vec<(Text, Value)>,
    /// `deprovisioning.enable`, typed by the account schema.
    enable: Vec<(Text, Value)>,
    delete_after: Option<TimeDelta>,
    delete_unowned: bool,
    /// Whether a role grants values on this system.
    grants: bool,
    /// The rules attribute sync follows ([`SystemConfig::outbound_rules`]) and those a
    /// create op is made of (enabled, not inbound), each with its account attribute's
    /// declaration: resolved once per plan, not per account (a look-up by name each).
    sync_rules: Vec<(&'a FlowRule, &'a AccountAttribute)>,
    create_rules: Vec<(&'a FlowRule, &'a AccountAttribute)>,
    now: DateTime<Utc>,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(config: &'a Config, name: &'a str, system: &'a SystemConfig, now: DateTime<Utc>) -> Planner<'a> {
        let typed = |values: Option<&indexmap::IndexMap<String, serde_json::Value>>| -> Vec<(Text, Value)> {
            values
                .into_iter()
                .flatten()
                .filter_map(|(attribute, raw)| {
                    let (name, decl) = system.schema.attributes.get_key_value(attribute.as_str())?;
                    // Validation refuses values that do not fit.
                    let value = Value::from_json(raw, decl.value_type, false, decl.case_exact).ok()?;
                    Some((name.clone(), value))
                })
                .collect()
        };
        let deprovisioning = system.deprovisioning.as_ref();
        Planner {
            config,
            name,
            system,
            disable: typed(deprovisioning.map(|d| &d.disable)),
            enable: typed(deprovisioning.map(|d| &d.enable)),
            delete_after: deprovisioning.and_then(|d| d.delete_after()),
            delete_unowned: deprovisioning.is_some_and(|d| d.delete_unowned),
            grants: config.roles.values().any(|r| r.grants.contains_key(name)),
            // A rule to an undeclared account attribute writes nothing.
            sync_rules: system
                .outbound_rules()
                .filter_map(|(_, rule)| Some((rule, system.attribute(&rule.account)?)))
                .collect(),
            create_rules: system
                .flows
                .iter()
                .filter(|r| r.enabled && r.direction != Direction::Inbound)
                .filter_map(|rule| Some((rule, system.attribute(&rule.account)?)))
                .collect(),
            now,
        }
    }

    /// The identity attributes whose values this system's plans read (a store may lend
    /// identities holding only those: see [`Store::visit_linked_accounts_reading`]): the
    /// identity side of every rule that is not inbound, and whatever their `out`
    /// transforms read, sorted, once each. Worked out per plan, when it is read, not
    /// per planner (confirmation makes a planner per update op).
    pub(crate) fn identity_reads(&self) -> Vec<&'a str> {
        let declared = &self.config.identity.attributes;
        let mut reads: Vec<&'a str> = self
            .system
            .flows
            .iter()
            .filter(|rule| rule.direction != Direction::Inbound)
            .flat_map(|rule| {
                let read_by_transform = rule.transform_out.iter().flat_map(|t| t.attributes());
                std::iter::once(rule.identity.to_string()).chain(read_by_transform)
            })
            // An undeclared name has no value to read.
            .filter_map(|name| declared.get_key_value(name.as_str()).map(|(name, _)| name.as_str()))
            .collect();
        reads.sort_unstable();
        reads.dedup();
        reads
    }

    /// The check that tells an account with nothing to do from its records (see
    /// [`InLine`]), when every rule that flows out is plain: no `out` transform, a
    /// single-valued account attribute, and no role granting values here. `None`
    /// otherwise: every account is then read whole.
    pub(crate) fn in_line(&self) -> Option<InLine> {
        if self.grants {
            return None;
        }
        let declared = &self.config.identity.attributes;
        let mut pairs = Vec::with_capacity(self.sync_rules.len());
        for &(rule, decl) in &self.sync_rules {
            if rule.transform_out.is_some() || decl.multi {
                return None;
            }
            pairs.push(InLinePair {
                identity: declared
                    .contains_key(rule.identity.as_str())
                    .then(|| rule.identity.clone()),
                account: rule.account.clone(),
                account_type: decl.value_type,
            });
        }
        Some(InLine::new(pairs))
    }

    /// Whether a plan of this system can hold anything at all.
    fn can_flow(&self) -> bool {
        self.system.allow_flow
            && (self.system.outbound_rules().next().is_some()
                || self.grants
                || self.system.provisioning.auto
                || self.system.scope.is_some())
    }

    /// The plan over every linked account of the system, and (with automatic
    /// provisioning) a create op for every identity in scope with no account there.
    pub(crate) fn whole_system(&self, store: &dyn Store) -> Result<Planned, StoreError> {
        let mut planned = Planned::default();
        if !self.can_flow() {
            return Ok(planned);
        }
        let mut linked: HashSet<IdentityId> = HashSet::new();
        let mut failure: Option<StoreError> = None;
        // Accounts and their identities are lent by the store, not cloned; with plain
        // rules, those already in line are not even decoded.
        let reads = self.identity_reads();
        let mut lent = |linked_account: LinkedAccount<'_>| match linked_account {
            LinkedAccount::Lent(account, identity) => {
                linked.insert(identity.id);
                self.account_op(account, identity, &mut planned);
            }
            LinkedAccount::InLine(id) => {
                linked.insert(id);
            }
        };
        match self.in_line() {
            Some(check) => store.visit_linked_accounts_out_of_line(self.name, &reads, &check, &mut lent)?,
            None => store.visit_linked_accounts_reading(self.name, &reads, &mut |account, identity| {
                lent(LinkedAccount::Lent(account, identity));
            })?,
        }
        if self.system.provisioning.auto {
            let mut taken = HashSet::new();
            store.visit_identities(&mut |identity| {
                if failure.is_some() || linked.contains(&identity.id) {
                    return;
                }
                if let Err(err) = self.auto_create(identity, store, &mut taken, &mut planned) {
                    failure = Some(err);
                }
            })?;
            if let Some(err) = failure {
                return Err(err);
            }
        }
        Ok(planned.finish())
    }

    /// The plan of [`Planner::whole_system`] restricted to chosen identities: the same
    /// ops for their accounts, read one identity at a time (SPEC 10.1).
    pub(crate) fn for_identities(&self, store: &dyn Store, identities: &[IdentityId]) -> Result<Planned, StoreError> {
        let mut planned = Planned::default();
        if !self.can_flow() {
            return Ok(planned);
        }
        let chosen: BTreeSet<IdentityId> = identities.iter().copied().collect();
        let mut taken = HashSet::new();
        for id in chosen {
            let keys: Vec<String> = store
                .accounts_of(id)?
                .into_iter()
                .filter(|(system, _)| system == self.name)
                .map(|(_, key)| key)
                .collect();
            let mut failure: Option<StoreError> = None;
            store.with_identity(id, &mut |identity| {
                let Some(identity) = identity else { return };
                if keys.is_empty() {
                    if self.system.provisioning.auto {
                        if let Err(err) = self.auto_create(identity, store, &mut taken, &mut planned) {
                            failure = Some(err);
                        }
                    }
                    return;
                }
                let read = store.visit_accounts_by_key(
                    self.name,
                    &keys.iter().map(String::as_str).collect::<Vec<_>>(),
                    &mut |_, account| {
                        if let Some(account) = account.filter(|a| a.identity() == Some(identity.id)) {
                            self.account_op(account, identity, &mut planned);
                        }
                    },
                );
                if let Err(err) = read {
                    failure = Some(err);
                }
            })?;
            if let Some(err) = failure {
                return Err(err);
            }
        }
        Ok(planned.finish())
    }

    /// The op for one linked account: a delete when deprovisioning is due, the
    /// `disable` values while its identity is out of scope, else attribute sync (and the
    /// `enable` values for an account the engine disabled).
    fn account_op(&self, account: &Account, identity: &Identity, planned: &mut Planned) {
        if let Some(&left) = identity.out_of_scope.get(self.name) {
            let due = self.delete_after.is_some_and(|after| self.now >= left + after);
            if due && (account.provisioned || self.delete_unowned) {
                planned.ops.push(Op::Delete(DeleteOp {
                    system: self.name.to_owned(),
                    account: account.key.clone(),
                    identity: identity.id,
                }));
                return;
            }
            // Attribute sync stops; only the disable values are pushed.
            let set = self.missing(&self.disable, account);
            if !set.is_empty() {
                planned.ops.push(Op::Update(self.update(account, identity, set)));
            }
            return;
        }
        let mut op = self.sync_account(account, identity, &mut planned.skipped);
        if account.disabled {
            let enable = self.missing(&self.enable, account);
            if !enable.is_empty() {
                let op = op.get_or_insert_with(|| self.update(account, identity, AttrMap::new()));
                op.set.extend(enable);
            }
        }
        if let Some(op) = op {
            planned.ops.push(Op::Update(op));
        }
    }

    /// The values of `wanted` the account does not hold.
    fn missing(&self, wanted: &[(Text, Value)], account: &Account) -> AttrMap<Value> {
        wanted
            .iter()
            .filter(|(attribute, value)| !value.same_as(account.value(attribute), self.system.case_exact(attribute)))
            .map(|(attribute, value)| (attribute.clone(), value.clone()))
            .collect()
    }

    fn update(&self, account: &Account, identity: &Identity, set: AttrMap<Value>) -> UpdateOp {
        UpdateOp {
            system: self.name.to_owned(),
            account: account.key.clone(),
            identity: identity.id,
            set,
            add: AttrMap::new(),
            remove: AttrMap::new(),
        }
    }

    /// A create op for an identity in scope with no account in the system, unless a
    /// stored account already holds its key (left to correlation, SPEC 11.2).
    fn auto_create(
        &self,
        identity: &Identity,
        store: &dyn Store,
        taken: &mut HashSet<String>,
        planned: &mut Planned,
    ) -> Result<(), StoreError> {
        if !identity.in_scope(self.name) {
            return Ok(());
        }
        match self.create(identity) {
            Ok((op, mut skipped)) => {
                if store.account(self.name, &op.account)?.is_some() {
                    return Ok(());
                }
                if !taken.insert(op.account.clone()) {
                    planned.skipped.push(OutboundSkip {
                        identity: identity.id,
                        account: op.account.clone(),
                        attribute: self.system.schema.account_id.clone(),
                        reason: SkipReason::AccountExists,
                        message: format!(
                            "another identity of this plan is given account `{}` of `{}`",
                            op.account, self.name
                        ),
                    });
                    return Ok(());
                }
                planned.skipped.append(&mut skipped);
                planned.ops.push(Op::Create(op));
            }
            Err(attribute) => planned.skipped.push(OutboundSkip {
                identity: identity.id,
                account: String::new(),
                message: format!("no value would be written to `{attribute}`, the key of `{}`", self.name),
                attribute,
                reason: SkipReason::NoAccountId,
            }),
        }
        Ok(())
    }

    /// What an identity wants in the system's account attributes: each rule's value
    /// (through its `out` transform, converted to the account attribute's type), and for
    /// multi-valued attributes the entitlements its roles grant there.
    fn targets(
        &self,
        rules: &[(&FlowRule, &AccountAttribute)],
        identity: &Identity,
        skipped: &mut Vec<(String, SkipReason, String)>,
    ) -> BTreeMap<Text, Target> {
        let system = self.system;
        let mut out: BTreeMap<Text, Target> = BTreeMap::new();
        for &(rule, decl) in rules {
            let value = match &rule.transform_out {
                None => Ok(identity.value(&rule.identity).clone()),
                Some(t) => t
                    .eval(
                        &IdentitySource {
                            config: self.config,
                            identity,
                        },
                        self.now,
                    )
                    .map_err(|e| (SkipReason::TransformFailed, e.to_string())),
            };
            let converted = value.and_then(|v| {
                v.convert(decl.value_type, decl.multi, decl.case_exact).map_err(|_| {
                    (
                        SkipReason::DoesNotFit,
                        format!(
                            "{v} does not fit account attribute `{}` ({})",
                            rule.account, decl.value_type
                        ),
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
                            multi: decl.multi,
                            case_exact: decl.case_exact,
                        },
                    );
                }
                Err((reason, message)) => skipped.push((rule.account.to_string(), reason, message)),
            }
        }
        // Every attribute a role can grant on this system is a target, so that revoked
        // grants are removed even when nothing is granted any more.
        if !self.grants {
            return out;
        }
        let no_grants = Vec::new();
        let granted_attributes: BTreeSet<&String> = self
            .config
            .roles
            .values()
            .filter_map(|r| r.grants.get(self.name))
            .flat_map(|g| g.keys())
            .collect();
        for attribute in granted_attributes {
            let granted = identity
                .access
                .get(self.name)
                .and_then(|a| a.get(attribute))
                .unwrap_or(&no_grants);
            let Some(decl) = system.attribute(attribute).filter(|d| d.multi) else {
                continue;
            };
            let target = out.entry(Text::from(attribute)).or_insert(Target {
                want: Value::Empty,
                authoritative: false,
                multi: decl.multi,
                case_exact: decl.case_exact,
            });
            let mut all = target.want.scalars().to_vec();
            all.extend(granted.iter().cloned());
            target.want = Value::multi(all, decl.case_exact);
        }
        out
    }

    /// The update op that brings one linked account in line with its identity, if any.
    fn sync_account(
        &self,
        account: &Account,
        identity: &Identity,
        skipped: &mut Vec<OutboundSkip>,
    ) -> Option<UpdateOp> {
        let mut problems = Vec::new();
        let wanted = self.targets(&self.sync_rules, identity, &mut problems);
        skipped.extend(problems.into_iter().map(|(attribute, reason, message)| OutboundSkip {
            identity: identity.id,
            account: account.key.clone(),
            attribute,
            reason,
            message,
        }));
        let mut set = AttrMap::new();
        let mut add_ops = AttrMap::new();
        let mut remove_ops = AttrMap::new();
        for (attribute, target) in wanted {
            let (multi, case_exact) = (target.multi, target.case_exact);
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
            if !multi {
                if !want.same_as(held, case_exact) {
                    set.insert(attribute.clone(), want);
                }
                continue;
            }
            let add: Vec<Scalar> = want.missing_from(held, case_exact);
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
            let owned = Keys::of(&owned, case_exact);
            let remove: Vec<Scalar> = held
                .missing_from(&want, case_exact)
                .into_iter()
                .filter(|s| target.authoritative || owned.holds(s))
                .collect();
            if !add.is_empty() {
                add_ops.insert(attribute.clone(), add);
            }
            if !remove.is_empty() {
                remove_ops.insert(attribute.clone(), remove);
            }
        }
        // The op's owned names are made only for an account that has something to do.
        let empty = set.is_empty() && add_ops.is_empty() && remove_ops.is_empty();
        (!empty).then(|| UpdateOp {
            system: self.name.to_owned(),
            account: account.key.clone(),
            identity: identity.id,
            set,
            add: add_ops,
            remove: remove_ops,
        })
    }

    /// The create op for provisioning an identity: every non-empty value of the enabled
    /// `outbound`, `bidirectional` or `disabled` rules, the role grants for the system and
    /// the system's `enable` values. `Err` names the key attribute when no value would be
    /// written to it.
    pub(crate) fn create(&self, identity: &Identity) -> Result<(CreateOp, Vec<OutboundSkip>), String> {
        let system = self.system;
        let mut problems = Vec::new();
        // Names shared with the schema (no copy per op).
        let mut attributes: AttrMap<Value> = self
            .targets(&self.create_rules, identity, &mut problems)
            .into_iter()
            .filter(|(_, t)| !t.want.is_empty())
            .map(|(a, t)| (a, t.want))
            .collect();
        for (attribute, value) in &self.enable {
            if value.is_empty() {
                attributes.remove(attribute.as_str());
            } else {
                attributes.insert(attribute.clone(), value.clone());
            }
        }
        let key_attr = &system.schema.account_id;
        let exact = system.key_case_exact();
        let key = attributes
            .get(key_attr.as_str())
            .and_then(|v| match v {
                // A text is its own key (no JSON form built for it).
                Value::Single(Scalar::Text(text)) => key_of_text(text.as_str(), exact).map(Cow::into_owned),
                other => key_text(&other.to_json(), exact),
            })
            .ok_or_else(|| key_attr.clone())?;
        let skipped = problems
            .into_iter()
            .map(|(attribute, reason, message)| OutboundSkip {
                identity: identity.id,
                account: key.clone(),
                attribute,
                reason,
                message,
            })
            .collect();
        Ok((
            CreateOp {
                system: self.name.to_owned(),
                identity: identity.id,
                account: key,
                attributes,
            },
            skipped,
        ))
    }

    /// Whether a confirmed op left `account` disabled by the engine: it holds every
    /// `disable` value while its identity is out of scope (then `true`), or it is back in
    /// scope holding every `enable` value (then `false`).
    pub(crate) fn disabled_after(&self, account: &Account, identity: &Identity) -> bool {
        let holds = |values: &[(Text, Value)]| {
            values
                .iter()
                .all(|(attribute, value)| value.same_as(account.value(attribute), self.system.case_exact(attribute)))
        };
        if !identity.in_scope(self.name) {
            account.disabled || (!self.disable.is_empty() && holds(&self.disable))
        } else {
            account.disabled && !holds(&self.enable)
        }
    }
}

/// What one account attribute should hold for an identity.
struct Target {
    want: Value,
    /// Whether values the engine did not write may be removed too.
    authoritative: bool,
    /// The account attribute's declaration, as far as sync reads it.
    multi: bool,
    case_exact: bool,
}
