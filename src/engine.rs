//! The engine: applies imports, approvals, outbound requests, confirmations, host edits
//! and configuration changes to a [`Store`], and returns plans and decisions. It never
//! performs I/O and never reads a clock: every call that needs time takes `now`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::correlation::{correlate, index_spec, Correlation};
use crate::diff::{count, diff, ChangeKind, ImportPlan};
use crate::error::{ApproveError, EditError, ImportError, OutboundError};
use crate::model::{Account, Identity, IdentityId, LinkState, Phase, Provenance, HOST_SYSTEM};
use crate::outbound::{attribute_sync, count_ops, create_op, Op, OutboundPlan};
use crate::prepare::{check_columns, prepare, Snapshot};
use crate::resolution::{resolve_group, Candidate, Decision, Outcome, Scores, WriteKind};
use crate::store::{MemoryStore, PendingPlan, PlanId, Store, StoreError};
use crate::validate::ValidatedConfig;
use crate::value::{Scalar, Value};

/// How an account's correlation state changed during an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LinkEvent {
    /// The account key.
    pub account: String,
    /// The new state.
    pub state: LinkState,
    /// Whether a new identity was created for the account (projection).
    pub projected: bool,
}

/// The result of an import or of an approved import plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use = "the report says whether the import was applied or blocked"]
#[non_exhaustive]
pub struct ImportReport {
    /// The plan: changes, counters, rejected rows, exceeded thresholds.
    pub plan: ImportPlan,
    /// Whether the plan was applied (`false`: blocked, awaiting approval).
    pub applied: bool,
    /// Correlation outcomes of accounts tried in this import.
    pub links: Vec<LinkEvent>,
    /// Every resolution decision, applied or rejected.
    pub decisions: Vec<Decision>,
}

impl ImportReport {
    /// The rejected decisions.
    pub fn rejected(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.outcome != Outcome::Applied)
    }
}

/// The result of approving a blocked plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
pub enum Approval {
    /// An import plan, now applied.
    Import(ImportReport),
    /// An outbound plan, released: the host carries out its ops and confirms them.
    Outbound(OutboundPlan),
}

/// The result of confirming applied ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConfirmReport {
    /// Accounts created in the mirror.
    pub created: usize,
    /// Accounts updated in the mirror.
    pub updated: usize,
}

/// The identity attribute sync engine over a store (by default [`MemoryStore`]).
#[derive(Debug)]
pub struct Engine<S: Store = MemoryStore> {
    config: ValidatedConfig,
    store: S,
}

impl Engine<MemoryStore> {
    /// An engine over a new, empty in-memory store.
    pub fn new(config: ValidatedConfig) -> Engine<MemoryStore> {
        let mut store = MemoryStore::new();
        // The memory store cannot fail.
        let _ = store.set_index(&index_spec(&config));
        Engine { config, store }
    }
}

impl<S: Store> Engine<S> {
    /// An engine over a host-supplied store.
    pub fn with_store(config: ValidatedConfig, mut store: S) -> Result<Engine<S>, StoreError> {
        store.set_index(&index_spec(&config))?;
        Ok(Engine { config, store })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ValidatedConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub(crate) fn set_config(&mut self, config: ValidatedConfig) -> Result<(), StoreError> {
        self.store.set_index(&index_spec(&config))?;
        self.config = config;
        Ok(())
    }

    fn system(&self, name: &str) -> Option<SystemConfig> {
        self.config.system(name).cloned()
    }

    // ---------------------------------------------------------------- import

    /// Imports a snapshot of one system at `now`: prepare, diff, thresholds, then (unless
    /// blocked) the account mirror, correlation, projection and resolution.
    ///
    /// A whole-import refusal (unknown system, dropped or unknown column) is an `Err` and
    /// changes nothing. Rejected rows and rejected decisions are part of the report. A
    /// blocked plan applies nothing; it is kept for [`Engine::approve`].
    pub fn import(
        &mut self,
        system: &str,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<ImportReport, ImportError> {
        let Some(system_config) = self.system(system) else {
            return Err(ImportError::UnknownSystem(system.to_owned()));
        };
        if let Snapshot::Complete { columns, .. } = snapshot {
            check_columns(system, &system_config, columns)?;
        }
        let prepared = prepare(&self.config, system, snapshot, &self.store)?;
        let (changes, retry) = diff(system, &system_config, &prepared, &self.store)?;
        let counts = count(&system_config, &changes);
        let base = self.store.account_base(system)?;
        let exceeded = system_config.thresholds.check(&counts, base);
        let plan = ImportPlan {
            id: self.store.allocate_plan_id()?,
            system: system.to_owned(),
            at: now,
            changes,
            retry,
            rejections: prepared.rejections,
            counts,
            base,
            exceeded,
            version: self.store.system_version(system)?,
        };
        if plan.is_blocked() {
            self.store.begin()?;
            let superseded: Vec<PlanId> = self
                .store
                .pending_plans()?
                .into_iter()
                .filter(|p| matches!(p, PendingPlan::Import(_)) && p.system() == system)
                .map(|p| p.id())
                .collect();
            for id in superseded {
                let _ = self.store.take_pending_plan(id)?;
            }
            self.store.put_pending_plan(PendingPlan::Import(plan.clone()))?;
            self.store.commit()?;
            return Ok(ImportReport {
                plan,
                applied: false,
                links: Vec::new(),
                decisions: Vec::new(),
            });
        }
        self.apply_import(plan, &system_config)
    }

    fn apply_import(&mut self, plan: ImportPlan, system: &SystemConfig) -> Result<ImportReport, ImportError> {
        self.store.begin()?;
        match self.apply_import_inner(&plan, system) {
            Ok((links, decisions)) => {
                self.store.commit()?;
                Ok(ImportReport {
                    plan,
                    applied: true,
                    links,
                    decisions,
                })
            }
            Err(e) => {
                self.store.rollback();
                Err(e.into())
            }
        }
    }

    fn apply_import_inner(
        &mut self,
        plan: &ImportPlan,
        system: &SystemConfig,
    ) -> Result<(Vec<LinkEvent>, Vec<Decision>), StoreError> {
        let name = plan.system.as_str();
        // 1. The account mirror.
        let mut put = Vec::new();
        let mut removed = Vec::new();
        let mut removed_links = HashMap::new();
        for change in &plan.changes {
            match change.kind {
                ChangeKind::Delete => {
                    if let Some(old) = self.store.account(name, &change.key)? {
                        removed_links.insert(change.key.clone(), old.identity());
                    }
                    removed.push(change.key.clone());
                }
                ChangeKind::Insert | ChangeKind::Update => {
                    let mut account = self
                        .store
                        .account(name, &change.key)?
                        .unwrap_or_else(|| Account::new(&change.key));
                    for c in &change.attributes {
                        account.set(&c.attribute, c.new.clone());
                    }
                    put.push(account);
                }
            }
        }
        if !plan.changes.is_empty() {
            self.store.bump_system_version(name)?;
        }
        self.store.remove_accounts(name, &removed)?;
        self.store.put_accounts(name, put)?;

        // 2. Correlation, projection and candidates.
        let mut work = Work::new(name, plan.at);
        for change in &plan.changes {
            match change.kind {
                ChangeKind::Delete => {
                    if let Some(Some(id)) = removed_links.get(&change.key) {
                        for c in &change.attributes {
                            work.offer(system, &self.config, &change.key, *id, &c.attribute, &Value::Empty);
                        }
                    }
                }
                ChangeKind::Insert | ChangeKind::Update => {
                    let Some(account) = self.store.account(name, &change.key)? else {
                        continue;
                    };
                    match account.identity() {
                        Some(id) => {
                            for c in &change.attributes {
                                work.offer(system, &self.config, &change.key, id, &c.attribute, &c.new);
                            }
                        }
                        None => self.correlate_account(system, account, &mut work)?,
                    }
                }
            }
        }
        for key in &plan.retry {
            if let Some(account) = self.store.account(name, key)? {
                if account.identity().is_none() {
                    self.correlate_account(system, account, &mut work)?;
                }
            }
        }
        // 3. Resolution, grouped by identity attribute.
        let decisions = self.resolve(work.candidates)?;
        Ok((work.links, decisions))
    }

    /// Correlates an unlinked account; links, projects or records it as unmatched or
    /// ambiguous; a newly linked account offers all its values.
    fn correlate_account(
        &mut self,
        system: &SystemConfig,
        mut account: Account,
        work: &mut Work,
    ) -> Result<(), StoreError> {
        let outcome = correlate(&self.config, system, &account, &self.store)?;
        let mut projected = false;
        account.link = match outcome {
            Correlation::Linked(id) => LinkState::Linked(id),
            Correlation::Ambiguous(ids) => LinkState::Ambiguous(ids),
            Correlation::NoMatch if system.authoritative => {
                let id = self.store.allocate_identity_id()?;
                self.store.put_identities(vec![Identity::new(id, work.at)])?;
                projected = true;
                LinkState::Linked(id)
            }
            Correlation::NoMatch => LinkState::Unmatched,
        };
        if let LinkState::Linked(id) = account.link {
            for (attribute, value) in &account.attributes {
                work.offer(system, &self.config, &account.key, id, attribute, value);
            }
        }
        work.links.push(LinkEvent {
            account: account.key.clone(),
            state: account.link.clone(),
            projected,
        });
        self.store.put_accounts(work.system, vec![account])
    }

    fn resolve(&mut self, candidates: Vec<Candidate>) -> Result<Vec<Decision>, StoreError> {
        let mut groups: BTreeMap<(IdentityId, String), Vec<Candidate>> = BTreeMap::new();
        for c in candidates {
            groups.entry((c.identity, c.attribute.clone())).or_default().push(c);
        }
        let mut identities: BTreeMap<IdentityId, Identity> = BTreeMap::new();
        let mut changed = BTreeMap::new();
        let mut decisions = Vec::new();
        for ((id, attribute), group) in groups {
            let identity = match identities.entry(id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => match self.store.identity(id)? {
                    Some(identity) => e.insert(identity),
                    None => continue,
                },
            };
            let exact = self
                .config
                .identity
                .attributes
                .get(&attribute)
                .is_none_or(|a| a.case_exact);
            let made = resolve_group(identity, group, exact);
            if made.iter().any(|d| d.outcome == Outcome::Applied) {
                changed.insert(id, ());
            }
            decisions.extend(made);
        }
        let changed: Vec<Identity> = identities
            .into_iter()
            .filter(|(id, _)| changed.contains_key(id))
            .map(|(_, i)| i)
            .collect();
        self.store.put_identities(changed)?;
        Ok(decisions)
    }

    // ---------------------------------------------------------------- approval

    /// Every blocked plan awaiting approval, oldest first.
    pub fn pending_plans(&self) -> Result<Vec<PendingPlan>, StoreError> {
        self.store.pending_plans()
    }

    /// Approves the most recently blocked plan (see [`Engine::approve`]).
    pub fn approve_last(&mut self, now: DateTime<Utc>) -> Result<Approval, ApproveError> {
        let last = self
            .store
            .pending_plans()?
            .iter()
            .map(PendingPlan::id)
            .max()
            .ok_or(ApproveError::NoBlockedPlan)?;
        self.approve(last, now)
    }

    /// Approves a blocked plan. An import plan is applied as computed, its candidates
    /// keeping the import's time; an outbound plan is released for the host to carry
    /// out. If the system's stored accounts changed since the plan was computed (or, for
    /// outbound, the plan would no longer be the same), approval fails with
    /// `stale_plan` and the plan is discarded.
    pub fn approve(&mut self, plan: PlanId, now: DateTime<Utc>) -> Result<Approval, ApproveError> {
        let _ = now;
        let pending = self.store.pending_plans()?;
        if pending.is_empty() {
            return Err(ApproveError::NoBlockedPlan);
        }
        if !pending.iter().any(|p| p.id() == plan) {
            return Err(ApproveError::UnknownPlan(plan));
        }
        let Some(taken) = self.store.take_pending_plan(plan)? else {
            return Err(ApproveError::UnknownPlan(plan));
        };
        let stale = ApproveError::StalePlan {
            plan,
            system: taken.system().to_owned(),
        };
        let Some(system) = self.system(taken.system()) else {
            return Err(stale);
        };
        match taken {
            PendingPlan::Import(mut p) => {
                if self.store.system_version(&p.system)? != p.version {
                    return Err(stale);
                }
                p.exceeded.clear();
                match self.apply_import(p, &system) {
                    Ok(report) => Ok(Approval::Import(report)),
                    Err(ImportError::Store(e)) => Err(ApproveError::Store(e)),
                    Err(_) => Err(stale),
                }
            }
            PendingPlan::Outbound(mut p) => {
                let fresh = match p.ops.first() {
                    Some(Op::Create(c)) => {
                        let identity = self.store.identity(c.identity)?;
                        identity
                            .and_then(|i| create_op(&p.system, &system, &i).ok())
                            .map(|(op, _)| vec![Op::Create(op)])
                    }
                    _ => Some(attribute_sync(&p.system, &system, &self.store)?.0),
                };
                if fresh.as_ref() != Some(&p.ops) {
                    return Err(stale);
                }
                p.exceeded.clear();
                Ok(Approval::Outbound(p))
            }
        }
    }

    // ---------------------------------------------------------------- outbound

    /// Computes the attribute-sync plan for one system: one `update` op per linked
    /// account whose stored values differ from what its identity says. Blocked plans
    /// (thresholds) are kept for approval; their ops must not be carried out.
    pub fn outbound(&mut self, system: &str, now: DateTime<Utc>) -> Result<OutboundPlan, OutboundError> {
        let Some(config) = self.system(system) else {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        };
        let (ops, skipped) = attribute_sync(system, &config, &self.store)?;
        self.finish_outbound(system, &config, ops, skipped, now)
    }

    /// Provisions an account for an identity in a system: one `create` op seeded by
    /// every enabled rule whose direction is `outbound`, `bidirectional` or `disabled`.
    pub fn provision(
        &mut self,
        system: &str,
        identity: IdentityId,
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        let Some(config) = self.system(system) else {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        };
        let Some(record) = self.store.identity(identity)? else {
            return Err(OutboundError::UnknownIdentity(identity));
        };
        if let Some((_, account)) = self.store.accounts_of(identity)?.into_iter().find(|(s, _)| s == system) {
            return Err(OutboundError::AlreadyProvisioned {
                identity,
                system: system.to_owned(),
                account,
            });
        }
        let (op, skipped) = create_op(system, &config, &record).map_err(|attribute| OutboundError::NoAccountId {
            identity,
            system: system.to_owned(),
            attribute,
        })?;
        self.finish_outbound(system, &config, vec![Op::Create(op)], skipped, now)
    }

    fn finish_outbound(
        &mut self,
        system: &str,
        config: &SystemConfig,
        ops: Vec<Op>,
        skipped: Vec<crate::outbound::OutboundSkip>,
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        let counts = count_ops(&ops);
        let base = self.store.account_base(system)?;
        let exceeded = config.thresholds.check(&counts, base);
        let plan = OutboundPlan {
            id: self.store.allocate_plan_id()?,
            system: system.to_owned(),
            at: now,
            ops,
            skipped,
            counts,
            base,
            exceeded,
        };
        if plan.is_blocked() {
            self.store.put_pending_plan(PendingPlan::Outbound(plan.clone()))?;
        }
        Ok(plan)
    }

    /// Records ops the host carried out successfully: the account mirror then holds the
    /// new values, created accounts are linked to their identity, and values added to
    /// multi-valued attributes are remembered as the engine's own. All ops are checked
    /// first; if one is refused, none is recorded.
    pub fn confirm(&mut self, ops: &[Op], now: DateTime<Utc>) -> Result<ConfirmReport, OutboundError> {
        let _ = now;
        let mut staged: Vec<(String, Account)> = Vec::new();
        let mut report = ConfirmReport { created: 0, updated: 0 };
        for op in ops {
            let Some(system) = self.system(op.system()) else {
                return Err(OutboundError::UnknownSystem(op.system().to_owned()));
            };
            let known = |attribute: &str| -> Result<(), OutboundError> {
                if system.attribute(attribute).is_none() {
                    return Err(OutboundError::UnknownAttribute {
                        system: op.system().to_owned(),
                        account: op.account().to_owned(),
                        attribute: attribute.to_owned(),
                    });
                }
                Ok(())
            };
            // Later ops on the same account build on earlier ones in this batch.
            let earlier = staged
                .iter()
                .rposition(|(s, a)| s == op.system() && a.key == op.account());
            let current = match earlier {
                Some(i) => staged.get(i).map(|(_, a)| a.clone()),
                None => self.store.account(op.system(), op.account())?,
            };
            match op {
                Op::Create(c) => {
                    if current.is_some() {
                        return Err(OutboundError::AccountExists {
                            system: c.system.clone(),
                            account: c.account.clone(),
                        });
                    }
                    let mut account = Account::new(&c.account);
                    for (attribute, value) in &c.attributes {
                        known(attribute)?;
                        account.set(attribute, value.clone());
                        if let Value::Multi(items) = value {
                            account.pushed.insert(attribute.clone(), items.clone());
                        }
                    }
                    account.link = LinkState::Linked(c.identity);
                    staged.push((c.system.clone(), account));
                    report.created += 1;
                }
                Op::Update(u) => {
                    let Some(mut account) = current else {
                        return Err(OutboundError::UnknownAccount {
                            system: u.system.clone(),
                            account: u.account.clone(),
                        });
                    };
                    for (attribute, value) in &u.set {
                        known(attribute)?;
                        account.set(attribute, value.clone());
                    }
                    for (attribute, items) in u.add.iter().chain(&u.remove) {
                        known(attribute)?;
                        let exact = system.attribute(attribute).is_none_or(|a| a.case_exact);
                        let adding = u.add.get(attribute).is_some_and(|a| std::ptr::eq(a, items));
                        let mut held: Vec<Scalar> = account.value(attribute).scalars().to_vec();
                        let pushed = account.pushed.entry(attribute.clone()).or_default();
                        if adding {
                            held.extend(items.iter().cloned());
                            pushed.extend(items.iter().cloned());
                        } else {
                            held.retain(|s| !items.iter().any(|x| x.same_as(s, exact)));
                            pushed.retain(|s| !items.iter().any(|x| x.same_as(s, exact)));
                        }
                        let pushed_set = Value::multi(std::mem::take(pushed), exact);
                        match pushed_set {
                            Value::Multi(items) => *pushed = items,
                            _ => {
                                account.pushed.remove(attribute);
                            }
                        }
                        account.set(attribute, Value::multi(held, exact));
                    }
                    staged.push((u.system.clone(), account));
                    report.updated += 1;
                }
            }
        }
        self.store.begin()?;
        let result = (|| {
            let mut touched: Vec<&str> = Vec::new();
            for (system, account) in &staged {
                self.store.put_accounts(system, vec![account.clone()])?;
                if !touched.contains(&system.as_str()) {
                    touched.push(system);
                }
            }
            for system in touched {
                self.store.bump_system_version(system)?;
            }
            Ok::<(), StoreError>(())
        })();
        match result {
            Ok(()) => self.store.commit()?,
            Err(e) => {
                self.store.rollback();
                return Err(e.into());
            }
        }
        Ok(report)
    }

    // ---------------------------------------------------------------- host edits

    /// Directly edits identity attributes (an administrator's change): every value is
    /// written with provenance `@host` and strength 100. All values are checked first;
    /// if one is refused, nothing is written.
    pub fn set_attributes(
        &mut self,
        identity: IdentityId,
        values: &[(String, serde_json::Value)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Decision>, EditError> {
        let Some(mut record) = self.store.identity(identity)? else {
            return Err(EditError::UnknownIdentity(identity));
        };
        let mut parsed = Vec::new();
        for (attribute, raw) in values {
            let Some(decl) = self.config.identity.attributes.get(attribute) else {
                return Err(EditError::UnknownAttribute(attribute.clone()));
            };
            let value = Value::from_json(raw, decl.value_type, decl.multi, decl.case_exact).map_err(|p| {
                EditError::InvalidValue {
                    attribute: attribute.clone(),
                    reason: format!("{p:?} for a {} attribute", decl.value_type),
                }
            })?;
            parsed.push((attribute.clone(), value, decl.case_exact));
        }
        let mut decisions = Vec::new();
        for (attribute, value, exact) in parsed {
            let previous = record.value(&attribute).clone();
            if previous.same_as(&value, exact) {
                continue;
            }
            let kind = match (previous.is_empty(), value.is_empty()) {
                (true, _) => WriteKind::Create,
                (false, true) => WriteKind::Delete,
                (false, false) => WriteKind::Update,
            };
            let phase = if kind == WriteKind::Create {
                Phase::Create
            } else {
                Phase::Update
            };
            let incumbent = record.provenance.get(&attribute).cloned();
            record.write(&attribute, value.clone(), Provenance::new(HOST_SYSTEM, 100, phase, now));
            record.modified = record.modified.max(now);
            decisions.push(Decision {
                identity,
                attribute,
                system: HOST_SYSTEM.to_owned(),
                account: String::new(),
                rule: 0,
                kind,
                offered: value,
                previous,
                score: 100,
                incumbent,
                outcome: Outcome::Applied,
                at: now,
                outranked_by: None,
            });
        }
        if !decisions.is_empty() {
            self.store.put_identities(vec![record])?;
        }
        Ok(decisions)
    }

    // ---------------------------------------------------------------- queries

    /// One identity.
    pub fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        self.store.identity(id)
    }

    /// One stored account (`key` as the system gives it; matched ignoring case when the
    /// key attribute ignores case).
    pub fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        let exact = self
            .config
            .system(system)
            .and_then(|s| s.attribute(&s.schema.account_id))
            .is_none_or(|a| a.case_exact);
        let key = if exact { key.to_owned() } else { key.to_lowercase() };
        self.store.account(system, &key)
    }

    /// Identities whose `attribute` holds `value` (compared with the attribute's
    /// `case_exact`), by id. Scans every identity.
    pub fn find_identities(&self, attribute: &str, value: &serde_json::Value) -> Result<Vec<IdentityId>, StoreError> {
        let Some(decl) = self.config.identity.attributes.get(attribute) else {
            return Ok(Vec::new());
        };
        let Ok(wanted) = Value::from_json(value, decl.value_type, false, decl.case_exact) else {
            return Ok(Vec::new());
        };
        let Some(wanted) = wanted.scalars().first().cloned() else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        self.store.visit_identities(&mut |i| {
            if i.value(attribute).contains(&wanted, decl.case_exact) {
                found.push(i.id);
            }
        })?;
        Ok(found)
    }

    /// Number of identities.
    pub fn identity_count(&self) -> Result<usize, StoreError> {
        self.store.identity_count()
    }

    /// Accounts currently not linked: `(system, key, state)` for unmatched and
    /// ambiguous accounts, sorted.
    pub fn unlinked(&self) -> Result<Vec<(String, String, LinkState)>, StoreError> {
        let mut out = Vec::new();
        for system in self.config.systems.keys() {
            self.store.visit_accounts(system, &mut |a| {
                if a.identity().is_none() {
                    out.push((system.clone(), a.key.clone(), a.link.clone()));
                }
            })?;
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(out)
    }
}

/// Candidates and link events gathered while applying one import.
struct Work<'a> {
    system: &'a str,
    at: DateTime<Utc>,
    candidates: Vec<Candidate>,
    links: Vec<LinkEvent>,
}

impl<'a> Work<'a> {
    fn new(system: &'a str, at: DateTime<Utc>) -> Work<'a> {
        Work {
            system,
            at,
            candidates: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Offers an account attribute's value through every enabled inbound rule on it.
    fn offer(
        &mut self,
        system: &SystemConfig,
        config: &ValidatedConfig,
        account: &str,
        identity: IdentityId,
        attribute: &str,
        value: &Value,
    ) {
        for (index, rule) in system.inbound_rules().filter(|(_, r)| r.account == attribute) {
            let Some(target) = config.identity.attributes.get(&rule.identity) else {
                continue;
            };
            let converted = value.convert(target.value_type, target.multi, target.case_exact).ok();
            self.candidates.push(Candidate {
                system: self.system.to_owned(),
                rule: index,
                account: account.to_owned(),
                identity,
                attribute: rule.identity.clone(),
                value: converted,
                raw: value.clone(),
                at: self.at,
                scores: Scores::new(rule.create, rule.update, rule.delete),
            });
        }
    }
}
