//! Imports and approvals: prepare, diff, thresholds, the account mirror, correlation,
//! projection and resolution.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::SystemConfig;
use crate::controls::{AccountWork, InboxEntry, LOOP_LIMIT};
use crate::correlation::{correlate, Correlation};
use crate::diff::{count, diff, ChangeKind, Diff, ImportPlan};
use crate::engine::{Approval, Engine, ImportReport, LinkEvent};
use crate::error::{ApproveError, ImportError};
use crate::model::{Account, Identity, IdentityId, LinkState};
use crate::outbound::{attribute_sync, create_op, Op};
use crate::prepare::{check_columns, prepare, Snapshot};
use crate::processing::ProcessReport;
use crate::resolution::{resolve_group, Candidate, Decision, Outcome, Scores};
use crate::store::{PendingPlan, PlanId, Store, StoreError};
use crate::transform::AttributeSource;
use crate::validate::ValidatedConfig;
use crate::value::Value;

impl<S: Store> Engine<S> {
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
        if let Some(columns) = snapshot.complete_columns() {
            check_columns(system, &system_config, columns)?;
        }
        let prepared = prepare(&self.config, system, snapshot, &self.store)?;
        let Diff { changes, retry, kept } = diff(system, &system_config, &prepared, &self.store)?;
        let counts = count(&system_config, &changes);
        let base = self.store.account_base(system)?;
        let exceeded = system_config.thresholds.check(&counts, base);
        let plan = ImportPlan {
            id: self.store.allocate_plan_id()?,
            system: system.to_owned(),
            at: now,
            changes,
            retry,
            kept,
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
                processing: ProcessReport::default(),
            });
        }
        self.apply_import(plan, &system_config)
    }

    fn apply_import(&mut self, plan: ImportPlan, system: &SystemConfig) -> Result<ImportReport, ImportError> {
        self.store.begin()?;
        match self.apply_import_inner(&plan, system) {
            Ok((links, decisions, processing)) => {
                self.store.commit()?;
                Ok(ImportReport {
                    plan,
                    applied: true,
                    links,
                    decisions,
                    processing,
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
    ) -> Result<(Vec<LinkEvent>, Vec<Decision>, ProcessReport), StoreError> {
        let name = plan.system.as_str();
        // 1. The account mirror, with the echoes of pushed values (SPEC 5.3).
        let mut put = Vec::new();
        let mut removed = Vec::new();
        let mut works = Vec::new();
        for change in &plan.changes {
            let stored = self.store.account(name, &change.key)?;
            match change.kind {
                ChangeKind::Delete => {
                    removed.push(change.key.clone());
                    works.push(AccountWork {
                        account: change.key.clone(),
                        kind: change.kind,
                        attributes: change.attributes.clone(),
                        previous_link: stored.and_then(|a| a.identity()),
                    });
                }
                ChangeKind::Insert | ChangeKind::Update => {
                    let mut account = stored.unwrap_or_else(|| Account::new(&change.key));
                    for c in &change.attributes {
                        account.set(&c.attribute, c.new.clone());
                    }
                    observe_echoes(system, &mut account);
                    put.push(account);
                    works.push(AccountWork {
                        account: change.key.clone(),
                        kind: change.kind,
                        attributes: change.attributes.clone(),
                        previous_link: None,
                    });
                }
            }
        }
        for key in &plan.kept {
            if let Some(mut account) = self.store.account(name, key)? {
                observe_echoes(system, &mut account);
                put.push(account);
            }
        }
        if !plan.changes.is_empty() {
            self.store.bump_system_version(name)?;
        }
        self.store.remove_accounts(name, &removed)?;
        self.store.put_accounts(name, put)?;

        // 2. Identity-side work: now, or in the inbox while paused (SPEC 6).
        let mut state = self.store.engine_state()?;
        if state.paused {
            state.inbox.extend(works.into_iter().map(|work| InboxEntry {
                plan: plan.id,
                system: name.to_owned(),
                at: plan.at,
                work,
            }));
            self.store.put_engine_state(state)?;
            return Ok((Vec::new(), Vec::new(), ProcessReport::default()));
        }
        works.extend(plan.retry.iter().map(|key| AccountWork {
            account: key.clone(),
            kind: ChangeKind::Update,
            attributes: Vec::new(),
            previous_link: None,
        }));
        self.identity_phase(name, system, plan.at, &works)
    }

    /// Correlation, projection and resolution for changed accounts of one import.
    pub(crate) fn identity_phase(
        &mut self,
        name: &str,
        system: &SystemConfig,
        at: DateTime<Utc>,
        works: &[AccountWork],
    ) -> Result<(Vec<LinkEvent>, Vec<Decision>, ProcessReport), StoreError> {
        let mut work = Work::new(name, at);
        for item in works {
            if item.kind == ChangeKind::Delete {
                if let Some(id) = item.previous_link {
                    let held: BTreeMap<String, Value> = item
                        .attributes
                        .iter()
                        .map(|c| (c.attribute.clone(), c.old.clone()))
                        .collect();
                    work.offer(system, &self.config, &item.account, id, &held, Offer::Blanks);
                }
                continue;
            }
            // The account may have gone since (a later import while paused).
            let Some(account) = self.store.account(name, &item.account)? else {
                continue;
            };
            match account.identity() {
                Some(id) => {
                    let changed: Vec<&str> = item.attributes.iter().map(|c| c.attribute.as_str()).collect();
                    work.offer(
                        system,
                        &self.config,
                        &item.account,
                        id,
                        &account.attributes,
                        Offer::Changed(&changed),
                    );
                }
                None => self.correlate_account(system, account, &mut work)?,
            }
        }
        // Resolution, grouped by identity attribute, then event-based processing.
        let (decisions, processing) = self.resolve(work.candidates, at)?;
        Ok((work.links, decisions, processing))
    }

    /// Correlates an unlinked account; links, projects or records it as unmatched or
    /// ambiguous; a newly linked account offers all its values.
    fn correlate_account(
        &mut self,
        system: &SystemConfig,
        mut account: Account,
        work: &mut Work,
    ) -> Result<(), StoreError> {
        let outcome = correlate(&self.config, system, &account, &self.store, work.at)?;
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
            work.offer(
                system,
                &self.config,
                &account.key,
                id,
                &account.attributes,
                Offer::Values,
            );
        }
        work.links.push(LinkEvent {
            account: account.key.clone(),
            state: account.link.clone(),
            projected,
        });
        self.store.put_accounts(work.system, vec![account])
    }

    fn resolve(
        &mut self,
        candidates: Vec<Candidate>,
        at: DateTime<Utc>,
    ) -> Result<(Vec<Decision>, ProcessReport), StoreError> {
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
            let exact = self.config.identity_case_exact(&attribute);
            let made = resolve_group(identity, group, exact);
            if made.iter().any(|d| d.outcome == Outcome::Applied) {
                changed.insert(id, ());
            }
            decisions.extend(made);
        }
        let mut processing = ProcessReport {
            applied: true,
            ..ProcessReport::default()
        };
        let mut changed: Vec<Identity> = identities
            .into_iter()
            .filter(|(id, _)| changed.contains_key(id))
            .map(|(_, i)| i)
            .collect();
        for identity in &mut changed {
            processing.examined += 1;
            self.after_change(identity, at, &mut processing);
        }
        self.store.put_identities(changed)?;
        Ok((decisions, processing))
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
                    Ok(report) => Ok(Approval::Import(Box::new(report))),
                    Err(ImportError::Store(e)) => Err(ApproveError::Store(e)),
                    Err(_) => Err(stale),
                }
            }
            PendingPlan::Outbound(mut p) => {
                if self.store.system_version(&p.system)? != p.version {
                    return Err(stale);
                }
                let fresh = match p.ops.first() {
                    Some(Op::Create(c)) => {
                        let identity = self.store.identity(c.identity)?;
                        identity
                            .and_then(|i| create_op(&self.config, &p.system, &system, &i, p.at).ok())
                            .map(|(op, _)| vec![Op::Create(op)])
                    }
                    _ => Some(attribute_sync(&self.config, &p.system, &system, &self.store, p.at)?.0),
                };
                if fresh.as_ref() != Some(&p.ops) {
                    return Err(stale);
                }
                p.exceeded.clear();
                Ok(Approval::Outbound(p))
            }
        }
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

    /// Offers values of one account through the system's enabled inbound rules: for
    /// `Changed`, the rules reading a changed attribute; for `Values`, every rule giving
    /// a non-empty value (a newly linked account); for `Blanks`, a blank through every
    /// rule that read a held value (a deleted account).
    fn offer(
        &mut self,
        system: &SystemConfig,
        config: &ValidatedConfig,
        account: &str,
        identity: IdentityId,
        attributes: &BTreeMap<String, Value>,
        mode: Offer<'_>,
    ) {
        for (index, rule) in system.inbound_rules() {
            let Some(target) = config.identity.attributes.get(&rule.identity) else {
                continue;
            };
            let raw = match mode {
                Offer::Changed(names) if !names.iter().any(|n| rule.reads_account_attribute(n)) => continue,
                Offer::Blanks => {
                    let held = attributes
                        .iter()
                        .any(|(n, v)| !v.is_empty() && rule.reads_account_attribute(n));
                    if !held {
                        continue;
                    }
                    Ok(Value::Empty)
                }
                _ => match &rule.transform_in {
                    None => Ok(attributes.get(&rule.account).cloned().unwrap_or_default()),
                    Some(t) => t
                        .eval(&AccountSource { system, attributes }, self.at)
                        .map_err(|e| e.to_string()),
                },
            };
            if matches!((&mode, &raw), (Offer::Values, Ok(v)) if v.is_empty()) {
                continue;
            }
            let (value, raw, error) = match raw {
                Ok(raw) => (
                    raw.convert(target.value_type, target.multi, target.case_exact).ok(),
                    raw,
                    None,
                ),
                Err(e) => (None, Value::Empty, Some(e)),
            };
            self.candidates.push(Candidate {
                system: self.system.to_owned(),
                rule: index,
                account: account.to_owned(),
                identity,
                attribute: rule.identity.clone(),
                value,
                raw,
                error,
                at: self.at,
                scores: Scores::new(rule.create, rule.update, rule.delete),
            });
        }
    }
}

/// Which values of an account to offer.
#[derive(Clone, Copy)]
enum Offer<'a> {
    /// Through rules reading one of these changed attributes.
    Changed(&'a [&'a str]),
    /// Every non-empty value (a newly linked account).
    Values,
    /// Blanks for what a deleted account held.
    Blanks,
}

/// An account's attributes as a transform source: schema attributes read as their
/// value (empty if unset); other names are unknown.
pub(crate) struct AccountSource<'a> {
    pub(crate) system: &'a SystemConfig,
    pub(crate) attributes: &'a BTreeMap<String, Value>,
}

impl AttributeSource for AccountSource<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        self.system
            .attribute(name)
            .map(|_| self.attributes.get(name).cloned().unwrap_or_default())
    }
}

/// Updates the echo of each pushed attribute after an import showed the account: a
/// pushed value seen kept resets the count; one seen different counts a bounce.
fn observe_echoes(system: &SystemConfig, account: &mut Account) {
    let Account { attributes, echoes, .. } = account;
    for (attribute, echo) in echoes.iter_mut() {
        let exact = system.case_exact(attribute);
        let multi = system.attribute(attribute).is_some_and(|a| a.multi);
        let held = attributes.get(attribute).cloned().unwrap_or_default();
        // For a multi-valued attribute, "kept" means every pushed value is still there.
        let kept = if multi {
            echo.pushed.scalars().iter().all(|s| held.contains(s, exact))
        } else {
            echo.pushed.same_as(&held, exact)
        };
        if kept {
            echo.bounces = 0;
        } else if echo.armed && echo.bounces < LOOP_LIMIT {
            echo.bounces += 1;
        }
        echo.armed = false;
    }
}
