//! Outbound requests, provisioning and confirmation of applied ops.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;

use crate::config::SystemConfig;

use crate::engine::{ConfirmReport, Engine};
use crate::error::OutboundError;
use crate::model::{Account, Echo, Identity, IdentityId, LinkState, PendingCreate};
use crate::outbound::planner::{Planned, Planner};
use crate::outbound::{count_ops, CreateOp, Op, OutboundPlan, OutboundSkip, PlanRequest};

use crate::store::{PendingCreateChange, PendingPlan, Store, StoreError};

use crate::prepare::key_of_text;
use crate::text::Text;
use crate::value::{Keys, Scalar, Value};

impl<S: Store> Engine<S> {
    // ---------------------------------------------------------------- outbound

    /// Computes the outbound plan for one system (SPEC 5, 11): one `update` op per
    /// linked account whose stored values differ from what its identity says; with
    /// automatic provisioning, a `create` op per identity in scope with no account
    /// there; for accounts of identities out of scope, the `disable` values, then a
    /// `delete` op once `delete_after_days` have passed. Blocked plans (thresholds) are
    /// kept for approval; their ops must not be carried out.
    pub fn outbound(&mut self, system: &str, now: DateTime<Utc>) -> Result<OutboundPlan, OutboundError> {
        let Some(config) = self.system(system) else {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        };
        let planned = Planner::new(&self.config, system, &config, now).whole_system(&self.store)?;
        self.finish_outbound(system, &config, planned, PlanRequest::System, now)
    }

    /// The plan of [`Engine::outbound`] restricted to chosen identities (SPEC 10.1):
    /// exactly the ops `outbound(system, now)` would hold for their accounts (and their
    /// create ops), read identity by identity, so its cost grows with the identities
    /// given, not with the store. Pass the identities an import, approval, resume, edit
    /// or processing step changed to push its changes at once. Thresholds apply with
    /// the whole system stored as the base of percentages. Unknown ids are ignored.
    /// While paused, its ops replace what the outbox held for the system, as any
    /// outbound request's do (SPEC 6).
    pub fn outbound_for(
        &mut self,
        system: &str,
        identities: &[IdentityId],
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        let Some(config) = self.system(system) else {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        };
        let planned = Planner::new(&self.config, system, &config, now).for_identities(&self.store, identities)?;
        let mut chosen = identities.to_vec();
        chosen.sort_unstable();
        chosen.dedup();
        self.finish_outbound(system, &config, planned, PlanRequest::Identities(chosen), now)
    }

    /// The manual sync of one identity (SPEC 10.2): for every system with `allow_flow`,
    /// in configuration order, the plan of [`Engine::outbound_for`] for that identity
    /// alone; systems with nothing to do are left out. Each plan is checked by its own
    /// system's thresholds; a blocked one is kept for approval like any other.
    pub fn sync(&mut self, identity: IdentityId, now: DateTime<Utc>) -> Result<Vec<OutboundPlan>, OutboundError> {
        if self.store.identity(identity)?.is_none() {
            return Err(OutboundError::UnknownIdentity(identity));
        }
        let systems: Vec<String> = self
            .config
            .systems
            .iter()
            .filter(|(_, s)| s.allow_flow)
            .map(|(name, _)| name.to_string())
            .collect();
        let mut plans = Vec::new();
        for name in systems {
            let Some(config) = self.system(&name) else { continue };
            let planned = Planner::new(&self.config, &name, &config, now).for_identities(&self.store, &[identity])?;
            if planned.ops.is_empty() && planned.skipped.is_empty() {
                continue;
            }
            plans.push(self.finish_outbound(&name, &config, planned, PlanRequest::Identities(vec![identity]), now)?);
        }
        Ok(plans)
    }

    /// Provisions an account for an identity in a system: one `create` op seeded by
    /// every enabled rule whose direction is `outbound`, `bidirectional` or `disabled`
    /// (SPEC 5.2). Refused for an unknown identity, an identity already linked in the
    /// system (`already_provisioned`), no value for the key attribute (`no_account_id`)
    /// and a key a stored account of the system already holds (`account_exists`).
    pub fn provision(
        &mut self,
        system: &str,
        identity: IdentityId,
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        match self.provision_many(system, &[identity], now) {
            Err(OutboundError::ProvisioningRefused { mut refusals, .. }) if refusals.len() == 1 => {
                Err(refusals.remove(0))
            }
            other => other,
        }
    }

    /// Provisions accounts for many identities in a system as one plan: one `create`
    /// op per identity, in account-key order, counted together by the system's outbound
    /// thresholds. Every request is checked as [`Engine::provision`] checks one, and two
    /// requests of the batch for the same identity or the same key collide
    /// (`already_provisioned`, `account_exists`); if any is refused the whole batch is,
    /// with [`OutboundError::ProvisioningRefused`] listing every refusal, and nothing
    /// changes.
    pub fn provision_many(
        &mut self,
        system: &str,
        identities: &[IdentityId],
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        let Some(config) = self.system(system) else {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        };
        let mut skipped = Vec::new();
        // By the position of the request, so that they are listed in request order.
        let mut refusals: Vec<(usize, OutboundError)> = Vec::new();
        let mut seen: FastSet<IdentityId> = FastSet::with_capacity_and_hasher(identities.len(), Default::default());
        // Who already holds an account of the system (its first key), then each
        // request's own checks and create op, computed as the store lends the
        // identities (in any order, one batch): nothing in them depends on the others.
        let held = first_key_by_identity(self.store.linked_accounts(system)?);
        let planner = Planner::new(&self.config, system, &config, now);
        let own: Vec<OnceLock<OwnResult>> = identities.iter().map(|_| OnceLock::new()).collect();
        // Only the values the create ops are made of are read; the ops are built where
        // the store decodes (in several threads for a large batch).
        let reads = planner.identity_reads();
        self.store
            .visit_identities_by_id_reading_shared(identities, &reads, &|at, record| {
                if let (Some(slot), Some(&identity)) = (own.get(at), identities.get(at)) {
                    // Each position is visited once: the slot is empty.
                    let _ = slot.set(create_for(system, &planner, identity, record, held.get(&identity)));
                }
            })?;
        // The ops stay where they were built; the checks below move their positions (a
        // million create ops moved from list to list touched a gigabyte).
        let mut own: Vec<Option<OwnResult>> = own.into_iter().map(OnceLock::into_inner).collect();
        // Then the checks against the batch itself: a second request for an identity is
        // refused (in request order), then, of the requests left, all but the first for
        // a key; sorting by key finds those without a copy of every key.
        let mut candidates: Vec<usize> = Vec::with_capacity(identities.len());
        let mut again: Vec<(usize, IdentityId)> = Vec::new();
        for (at, (&identity, slot)) in identities.iter().zip(&mut own).enumerate() {
            match slot {
                None => {
                    refusals.push((at, OutboundError::UnknownIdentity(identity)));
                }
                Some(Err(_)) => {
                    if let Some(Err(refusal)) = slot.take() {
                        refusals.push((at, refusal));
                    }
                }
                Some(Ok(_)) if !seen.insert(identity) => again.push((at, identity)),
                Some(Ok(_)) => candidates.push(at),
            }
        }
        /// The key of the create op at `at`, while it is there.
        fn account_at(own: &[Option<OwnResult>], at: usize) -> Option<&str> {
            match own.get(at) {
                Some(Some(Ok((op, _)))) => Some(op.account.as_str()),
                _ => None,
            }
        }
        // Stable: requests for one key stay in request order.
        candidates.sort_by(|&a, &b| account_at(&own, a).cmp(&account_at(&own, b)));
        let mut accepted: Vec<usize> = Vec::with_capacity(candidates.len());
        for at in candidates {
            let repeated = accepted
                .last()
                .is_some_and(|&first| account_at(&own, first) == account_at(&own, at));
            if repeated {
                if let Some(Some(Ok((op, _)))) = own.get_mut(at).map(Option::take) {
                    refusals.push((
                        at,
                        OutboundError::AccountExists {
                            system: system.to_owned(),
                            account: op.account,
                        },
                    ));
                }
            } else {
                accepted.push(at);
            }
        }
        // A second request names the account the first was given (its own key when the
        // first was refused).
        if !again.is_empty() {
            let given: FastMap<IdentityId, &str> = accepted
                .iter()
                .filter_map(|&at| Some((*identities.get(at)?, account_at(&own, at)?)))
                .collect();
            for (at, identity) in again {
                let account = match given.get(&identity) {
                    Some(key) => (*key).to_owned(),
                    None => account_at(&own, at).unwrap_or_default().to_owned(),
                };
                refusals.push((
                    at,
                    OutboundError::AlreadyProvisioned {
                        identity,
                        system: system.to_owned(),
                        account,
                    },
                ));
            }
        }
        // Skips in request order.
        let mut skip_lists: Vec<(usize, Vec<OutboundSkip>)> = Vec::new();
        for &at in &accepted {
            if let Some(Some(Ok((_, skips)))) = own.get_mut(at) {
                if !skips.is_empty() {
                    skip_lists.push((at, std::mem::take(skips)));
                }
            }
        }
        skip_lists.sort_by_key(|(at, _)| *at);
        skipped.extend(skip_lists.into_iter().flat_map(|(_, skips)| skips));
        // A key already held by a stored account would only be refused at confirmation
        // (SPEC 5.2: at the request). Checked for the whole batch at once.
        let wanted: Vec<&str> = accepted.iter().filter_map(|&at| account_at(&own, at)).collect();
        let mut stored = vec![false; wanted.len()];
        self.store.visit_accounts_by_key(system, &wanted, &mut |at, account| {
            if let Some(slot) = stored.get_mut(at) {
                *slot = account.is_some();
            }
        })?;
        // In key order (that of `accepted`), each key once.
        let mut ops: Vec<Op> = Vec::with_capacity(accepted.len());
        for (at, stored) in accepted.into_iter().zip(stored) {
            let Some(Some(Ok((op, _)))) = own.get_mut(at).map(Option::take) else {
                continue;
            };
            if stored {
                refusals.push((
                    at,
                    OutboundError::AccountExists {
                        system: system.to_owned(),
                        account: op.account,
                    },
                ));
            } else {
                ops.push(Op::Create(op));
            }
        }
        drop(own);
        refusals.sort_by_key(|(at, _)| *at);
        let refusals: Vec<OutboundError> = refusals.into_iter().map(|(_, refusal)| refusal).collect();
        if !refusals.is_empty() {
            return Err(OutboundError::ProvisioningRefused {
                system: system.to_owned(),
                requested: identities.len(),
                refusals,
            });
        }
        let planned = Planned { ops, skipped };
        let plan = self.finish_outbound(
            system,
            &config,
            planned,
            PlanRequest::Provision(identities.to_vec()),
            now,
        )?;
        if !plan.is_blocked() {
            self.put_pending_creates(&plan)?;
        }
        Ok(plan)
    }

    fn finish_outbound(
        &mut self,
        system: &str,
        config: &SystemConfig,
        planned: Planned,
        request: PlanRequest,
        now: DateTime<Utc>,
    ) -> Result<OutboundPlan, OutboundError> {
        let Planned { ops, skipped } = planned;
        // While paused, ops are held in the outbox and none is returned (SPEC 6).
        let ops = if self.store.engine_state()?.paused {
            self.hold(system, ops, now)?;
            Vec::new()
        } else {
            ops
        };
        // A delete removes every value the account holds in multi-valued attributes.
        let mut removed: HashMap<&str, u64> = HashMap::new();
        for op in &ops {
            if let Op::Delete(d) = op {
                let values = self.store.account(system, &d.account)?.map_or(0, |a| a.link_values());
                removed.insert(d.account.as_str(), values);
            }
        }
        let counts = count_ops(&ops, &|d| removed.get(d.account.as_str()).copied().unwrap_or(0));
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
            version: self.store.system_version(system)?,
            request,
        };
        if plan.is_blocked() {
            self.keep_blocked(PendingPlan::Outbound(plan.clone()))?;
        }
        Ok(plan)
    }

    /// Remembers the create ops a provisioning plan hands out, until they are
    /// confirmed (SPEC 5.2: one account per identity and system). Creates of the
    /// whole-system plan (automatic provisioning) are not remembered: that plan states
    /// what should exist and holds them until they exist.
    pub(crate) fn mark_pending_creates(&mut self, plan: &OutboundPlan) -> Result<(), StoreError> {
        if !matches!(plan.request, PlanRequest::Provision(_)) {
            return Ok(());
        }
        self.put_pending_creates(plan)
    }

    /// Each identity given a create op by `plan` remembers it (a paused plan hands out
    /// none), changed in place by the store.
    fn put_pending_creates(&mut self, plan: &OutboundPlan) -> Result<(), StoreError> {
        let system = Text::from(plan.system.as_str());
        let changes: Vec<PendingCreateChange> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Create(c) => Some(PendingCreateChange::new(
                    c.identity,
                    system.clone(),
                    Some(PendingCreate {
                        account: c.account.clone(),
                        since: plan.at,
                    }),
                )),
                _ => None,
            })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.store.begin()?;
        match self.store.update_pending_creates(&changes) {
            Ok(()) => self.store.commit(),
            Err(e) => {
                self.store.rollback();
                Err(e)
            }
        }
    }

    /// Forgets the unconfirmed create op handed out to `identity` in `system` (one the
    /// target refused, say), so that it can be provisioned again. Returns what was
    /// pending, or `None` if nothing was.
    pub fn cancel_provision(
        &mut self,
        system: &str,
        identity: IdentityId,
    ) -> Result<Option<PendingCreate>, OutboundError> {
        if self.config.system(system).is_none() {
            return Err(OutboundError::UnknownSystem(system.to_owned()));
        }
        let Some(mut record) = self.store.identity(identity)? else {
            return Err(OutboundError::UnknownIdentity(identity));
        };
        let cancelled = record.pending_creates.remove(system);
        if cancelled.is_some() {
            self.store.put_identities(vec![record])?;
        }
        Ok(cancelled)
    }

    /// The ops a blocked outbound plan would hold if computed again now at its time:
    /// approval releases it only if they are the same.
    pub(crate) fn recompute_outbound(&self, plan: &OutboundPlan) -> Result<Option<Vec<Op>>, StoreError> {
        let Some(system) = self.config.system(&plan.system) else {
            return Ok(None);
        };
        let planner = Planner::new(&self.config, &plan.system, system, plan.at);
        let request = match &plan.request {
            // A plan persisted before requests were recorded: a system plan without
            // automatic provisioning holds no create op, so one that does was made by
            // provisioning.
            PlanRequest::System if !system.provisioning.auto && matches!(plan.ops.first(), Some(Op::Create(_))) => {
                PlanRequest::Provision(plan.ops.iter().map(Op::identity).collect())
            }
            other => other.clone(),
        };
        Ok(Some(match request {
            PlanRequest::System => planner.whole_system(&self.store)?.ops,
            PlanRequest::Identities(ids) => planner.for_identities(&self.store, &ids)?.ops,
            PlanRequest::Provision(ids) => {
                let mut ops = Vec::with_capacity(ids.len());
                for id in ids {
                    let Some(identity) = self.store.identity(id)? else {
                        return Ok(None);
                    };
                    match planner.create(&identity) {
                        Ok((op, _)) => ops.push(op),
                        Err(_) => return Ok(None),
                    }
                }
                ops.sort_by(|a, b| a.account.cmp(&b.account));
                ops.into_iter().map(Op::Create).collect()
            }
        }))
    }

    /// Records ops the host carried out successfully: the account mirror then holds the
    /// new values, created accounts are linked to their identity (and remembered as the
    /// engine's own, SPEC 11.3), values added to multi-valued attributes are remembered
    /// as the engine's own, and deleted accounts leave the mirror and are unlinked. All
    /// ops are checked first; if one is refused, none is recorded.
    pub fn confirm(&mut self, ops: &[Op], now: DateTime<Utc>) -> Result<ConfirmReport, OutboundError> {
        // One staged account per (system, key): later ops on the same account build on
        // earlier ones in this batch (`None`: deleted by it). The index keeps the batch
        // linear in its size.
        let mut staged: Vec<(&str, &str, Staged<'_>)> = Vec::with_capacity(ops.len());
        // What the ops are checked against, read in batches (a query per op costs a
        // database store a round trip each): the stored accounts of the ops' keys, the
        // identities of creates, and who holds an account of a created account's system.
        let mut keys: IndexMap<&str, Vec<&str>, foldhash::fast::FixedState> = IndexMap::default();
        // Per create op (in order), its identity and system.
        let mut create_ids: Vec<IdentityId> = Vec::new();
        let mut create_systems: Vec<&str> = Vec::new();
        // Ops of one system mostly come together: its list is found again without a look-up.
        let mut last: Option<(&str, usize)> = None;
        for op in ops {
            let list = match last {
                Some((system, at)) if system == op.system() => at,
                _ => {
                    let entry = keys.entry(op.system());
                    let at = entry.index();
                    entry.or_default();
                    last = Some((op.system(), at));
                    at
                }
            };
            if let Some((_, list)) = keys.get_index_mut(list) {
                list.push(op.account());
            }
            if let Op::Create(c) = op {
                create_ids.push(c.identity);
                create_systems.push(c.system.as_str());
            }
        }
        let mut stored: FastMap<(&str, &str), Account> = FastMap::default();
        for (&system, keys) in &keys {
            self.store.visit_accounts_by_key(system, keys, &mut |at, account| {
                if let (Some(account), Some(&key)) = (account, keys.get(at)) {
                    stored.insert((system, key), account.clone());
                }
            })?;
        }
        // Per create op (in order), whether its identity exists and whether that identity
        // has a create of the op's system pending: confirmed creates are settled below.
        let mut existing = vec![false; create_ids.len()];
        let mut pending = vec![false; create_ids.len()];
        self.store
            .visit_pending_creates_by_id(&create_ids, &mut |at, pending_creates| {
                if let (Some(pending_creates), Some(exists), Some(pending)) =
                    (pending_creates, existing.get_mut(at), pending.get_mut(at))
                {
                    *exists = true;
                    *pending = create_systems
                        .get(at)
                        .is_some_and(|system| pending_creates.iter().any(|(name, _)| name.as_str() == *system));
                }
            })?;
        let mut linked: FastMap<(&str, IdentityId), Vec<String>> = FastMap::default();
        // The systems of creates (a few: a list, not a hash per op).
        let mut asked: Vec<&str> = Vec::new();
        for op in ops {
            if let Op::Create(c) = op {
                if asked.contains(&c.system.as_str()) {
                    continue;
                }
                asked.push(c.system.as_str());
                for (identity, key) in self.store.linked_accounts(&c.system)? {
                    linked.entry((c.system.as_str(), identity)).or_default().push(key);
                }
            }
        }
        for keys in linked.values_mut() {
            keys.sort_unstable();
        }
        // Room for every op and create at once: a million confirmed creates rehashed
        // these tables twenty times each.
        let mut at: FastMap<(&str, &str), usize> = FastMap::with_capacity_and_hasher(ops.len(), Default::default());
        let mut created: FastMap<(&str, IdentityId), &str> =
            FastMap::with_capacity_and_hasher(create_ids.len(), Default::default());
        let mut report = ConfirmReport::default();
        // The position of the next create among the creates (`existing`, `pending`).
        let mut create_at = 0;
        // Confirmed creates that were pending, by position among the creates.
        let mut settled_at: Vec<usize> = Vec::new();
        // The system of the op before, kept: ops of one system mostly come together.
        let mut last_system: Option<(&str, &SystemConfig)> = None;
        // The checks of each op that read only the op and its system's schema, made for
        // all ops at once (in several threads for a large batch) and reported below in
        // op order, each where it would be made: the key and the values' types, and for
        // a create whether every attribute it writes is in the schema.
        let own_checks = crate::parallel::map(ops, |op| {
            let Some(system) = self.config.system(op.system()) else {
                // Refused below.
                return (Ok(()), Ok(()));
            };
            let names = match op {
                Op::Create(c) => match c
                    .attributes
                    .keys()
                    .find(|a| !system.schema.attributes.contains_key(a.as_str()))
                {
                    Some(unknown) => Err(Box::new(unknown_attribute(op, unknown))),
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            // Boxed: a million results are a million small entries.
            (check_op(system, op).map_err(Box::new), names)
        });
        for (op, (checked, names_known)) in ops.iter().zip(own_checks) {
            let system = match last_system {
                Some((name, system)) if name == op.system() => system,
                _ => {
                    let Some(system) = self.config.system(op.system()) else {
                        return Err(OutboundError::UnknownSystem(op.system().to_owned()));
                    };
                    last_system = Some((op.system(), system));
                    system
                }
            };
            // The schema's name of an attribute the op writes.
            let known = |attribute: &str| -> Result<Text, OutboundError> {
                match system.schema.attributes.get_key_value(attribute) {
                    Some((name, _)) => Ok(name.clone()),
                    None => Err(unknown_attribute(op, attribute)),
                }
            };
            checked.map_err(|e| *e)?;
            let earlier = at.get(&(op.system(), op.account())).copied();
            let current = match earlier {
                Some(i) => staged.get(i).and_then(|(_, _, a)| a.account(system)),
                None => stored.remove(&(op.system(), op.account())),
            };
            let account = match op {
                Op::Create(c) => {
                    if current.is_some() {
                        return Err(OutboundError::AccountExists {
                            system: c.system.clone(),
                            account: c.account.clone(),
                        });
                    }
                    // The identity must exist and hold no account of the system yet, nor
                    // get one from an earlier create of this batch.
                    let this_create = create_at;
                    create_at += 1;
                    if !existing.get(this_create).copied().unwrap_or(false) {
                        return Err(OutboundError::UnknownIdentity(c.identity));
                    }
                    if pending.get(this_create).copied().unwrap_or(false) {
                        settled_at.push(this_create);
                    }
                    let held = linked
                        .get(&(c.system.as_str(), c.identity))
                        .and_then(|keys| {
                            // An account this batch deleted is no longer held.
                            keys.iter().find(|key| {
                                !at.get(&(c.system.as_str(), key.as_str()))
                                    .is_some_and(|&i| staged.get(i).is_some_and(|(_, _, a)| a.is_deleted()))
                            })
                        })
                        .cloned()
                        .or_else(|| created.get(&(c.system.as_str(), c.identity)).map(|k| (*k).to_owned()));
                    if let Some(account) = held {
                        return Err(OutboundError::AlreadyProvisioned {
                            identity: c.identity,
                            system: c.system.clone(),
                            account,
                        });
                    }
                    created.insert((c.system.as_str(), c.identity), c.account.as_str());
                    // Built when written (see `Staged`); its names are checked now.
                    names_known.map_err(|e| *e)?;
                    report.created += 1;
                    report.changed.push(c.identity);
                    Staged::Created(c)
                }
                Op::Delete(d) => {
                    let Some(account) = current else {
                        return Err(OutboundError::UnknownAccount {
                            system: d.system.clone(),
                            account: d.account.clone(),
                        });
                    };
                    if let Some(identity) = account.identity() {
                        report.changed.push(identity);
                    }
                    report.deleted += 1;
                    Staged::Changed(None)
                }
                Op::Update(u) => {
                    let Some(mut account) = current else {
                        return Err(OutboundError::UnknownAccount {
                            system: u.system.clone(),
                            account: u.account.clone(),
                        });
                    };
                    for (attribute, value) in &u.set {
                        account.set(&known(attribute)?, value.clone());
                    }
                    for (attribute, items) in u.add.iter().chain(&u.remove) {
                        let name = known(attribute)?;
                        let exact = system.case_exact(attribute);
                        let adding = u.add.get(attribute).is_some_and(|a| std::ptr::eq(a, items));
                        let mut held: Vec<Scalar> = account.value(attribute).scalars().to_vec();
                        let pushed = account.pushed.entry(name.clone()).or_default();
                        if adding {
                            held.extend(items.iter().cloned());
                            pushed.extend(items.iter().cloned());
                        } else {
                            let removed = Keys::of(items, exact);
                            held.retain(|s| !removed.holds(s));
                            pushed.retain(|s| !removed.holds(s));
                        }
                        let pushed_set = Value::multi(std::mem::take(pushed), exact);
                        match pushed_set {
                            Value::Multi(items) => *pushed = items.into_vec(),
                            _ => {
                                account.pushed.remove(attribute.as_str());
                            }
                        }
                        account.set(&name, Value::multi(held, exact));
                    }
                    for attribute in u.set.keys().chain(u.add.keys()).chain(u.remove.keys()) {
                        record_echo(system, &mut account, attribute);
                    }
                    // Removed values are watched until an import shows them gone; one
                    // added again is no longer a removal to watch.
                    for (attribute, items) in &u.remove {
                        if let Some(echo) = account.echoes.get_mut(attribute.as_str()) {
                            let watched = Keys::of(&echo.removed, system.case_exact(attribute));
                            let new: Vec<Scalar> = items.iter().filter(|s| !watched.holds(s)).cloned().collect();
                            echo.removed.extend(new);
                        }
                    }
                    for (attribute, items) in &u.add {
                        if let Some(echo) = account.echoes.get_mut(attribute.as_str()) {
                            let added = Keys::of(items, system.case_exact(attribute));
                            echo.removed.retain(|s| !added.holds(s));
                        }
                    }
                    // Deprovisioning: the account is the engine's to enable again once
                    // it holds the disable values of an identity out of scope.
                    if system.deprovisioning.is_some() {
                        let planner = Planner::new(&self.config, &u.system, system, now);
                        let mut disabled = account.disabled;
                        self.store.with_identity(u.identity, &mut |identity| {
                            if let Some(identity) = identity {
                                disabled = planner.disabled_after(&account, identity);
                            }
                        })?;
                        account.disabled = disabled;
                    }
                    report.updated += 1;
                    Staged::Changed(Some(Box::new(account)))
                }
            };
            match earlier.and_then(|i| staged.get_mut(i)) {
                Some((_, _, slot)) => *slot = account,
                None => {
                    at.insert((op.system(), op.account()), staged.len());
                    staged.push((op.system(), op.account(), account));
                }
            }
        }
        report.changed.sort_unstable();
        report.changed.dedup();
        // One write per system, in the order the systems first appear.
        let mut by_system: IndexMap<&str, (Vec<Staged<'_>>, Vec<String>)> = IndexMap::new();
        for (system, key, account) in staged {
            let (put, removed) = by_system.entry(system).or_default();
            match account {
                Staged::Changed(None) => removed.push(key.to_owned()),
                account => put.push(account),
            }
        }
        // Confirmed creates are no longer pending.
        let mut names: Vec<Text> = Vec::new();
        let mut settled = Vec::with_capacity(settled_at.len());
        for at in settled_at {
            let (Some(&id), Some(&system)) = (create_ids.get(at), create_systems.get(at)) else {
                continue;
            };
            // One shared name per system.
            let name = match names.iter().find(|n| n.as_str() == system) {
                Some(name) => name.clone(),
                None => {
                    let name = Text::from(system);
                    names.push(name.clone());
                    name
                }
            };
            settled.push(PendingCreateChange::new(id, name, None));
        }
        self.store.begin()?;
        let result = (|| {
            for (system, (accounts, removed)) in by_system {
                self.store.remove_accounts(system, &removed)?;
                // Accounts built from their creates a part at a time, so that a
                // million confirmed creates are never all held as records at once;
                // the next part is built in a second thread while one is written.
                let config = self.config.system(system);
                let count = accounts.len();
                let mut accounts = accounts.into_iter();
                let parts = std::iter::from_fn(|| {
                    let part: Vec<Staged<'_>> = accounts.by_ref().take(CONFIRM_PART).collect();
                    (!part.is_empty()).then_some(part)
                });
                let store = &mut self.store;
                crate::parallel::pipeline(
                    count,
                    parts,
                    (),
                    |part, ()| -> Vec<Account> {
                        part.into_iter()
                            .filter_map(|staged| config.and_then(|config| staged.into_account(config)))
                            .collect()
                    },
                    |part| store.put_accounts(system, part),
                )?;
                self.store.bump_system_version(system)?;
            }
            if !settled.is_empty() {
                self.store.update_pending_creates(&settled)?;
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

    /// Runs several engine calls as one unit of work of the store: on a transactional
    /// store (`SqliteStore`, the `sqlite` feature) they commit together when `work`
    /// returns `Ok`, and none of them is kept when it returns `Err` (the engine's own
    /// units nest inside it). This is how a host makes, say, an import, the provisioning
    /// of its new identities and their confirmation one commit instead of several.
    ///
    /// [`MemoryStore`] has no rollback: each engine call on it is all-or-nothing by
    /// itself, but calls that succeeded before a failing one inside `work` stay.
    ///
    /// [`MemoryStore`]: crate::MemoryStore
    pub fn unit_of_work<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Engine<S>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.store.begin()?;
        match work(self) {
            Ok(value) => {
                self.store.commit()?;
                Ok(value)
            }
            Err(e) => {
                self.store.rollback();
                Err(e)
            }
        }
    }
}

/// How many accounts a confirmation writes at a time (a few in tests, so that their
/// small batches take several parts).
const CONFIRM_PART: usize = if cfg!(test) { 2 } else { 64 * 1024 };

/// An account as a confirmation batch leaves it. A created one is built from its op
/// when it is written (or when a later op of the batch changes it): a million
/// confirmed creates held as accounts at once took 2.3 GB beside their ops.
enum Staged<'o> {
    /// Created by this op; its attribute names are known to the schema.
    Created(&'o CreateOp),
    /// As read and changed (`None`: deleted); boxed, so that a batch of a million
    /// creates is a million small entries, not a million account-sized ones.
    Changed(Option<Box<Account>>),
}

impl Staged<'_> {
    fn is_deleted(&self) -> bool {
        matches!(self, Staged::Changed(None))
    }

    /// The account (`None`: deleted), built if need be; `system` is its system's.
    fn account(&self, system: &SystemConfig) -> Option<Account> {
        match self {
            Staged::Created(c) => Some(created_account(system, c)),
            Staged::Changed(account) => account.as_deref().cloned(),
        }
    }

    fn into_account(self, system: &SystemConfig) -> Option<Account> {
        match self {
            Staged::Created(c) => Some(created_account(system, c)),
            Staged::Changed(account) => account.map(|account| *account),
        }
    }
}

/// The account a confirmed create op leaves: its values, linked, provisioned, with the
/// multi-valued ones pushed and an echo of each (SPEC 5.2, 5.3). Attributes the schema
/// does not know are refused before (confirm checks every name).
fn created_account(system: &SystemConfig, c: &CreateOp) -> Account {
    let mut account = Account::new(&c.account);
    account.attributes.reserve(c.attributes.len());
    for (attribute, value) in &c.attributes {
        let Some((name, _)) = system.schema.attributes.get_key_value(attribute.as_str()) else {
            continue;
        };
        account.set(name, value.clone());
        if let Value::Multi(items) = value {
            account.pushed.insert(attribute.clone(), items.to_vec());
        }
    }
    account.link = LinkState::Linked(c.identity);
    account.provisioned = true;
    for attribute in c.attributes.keys() {
        record_echo(system, &mut account, attribute);
    }
    account
}

/// The refusal of an op writing an attribute its system's schema does not declare.
fn unknown_attribute(op: &Op, attribute: &str) -> OutboundError {
    OutboundError::UnknownAttribute {
        system: op.system().to_owned(),
        account: op.account().to_owned(),
        attribute: attribute.to_owned(),
    }
}

/// Refuses an op whose key or values do not fit the system's schema: only what the
/// engine itself would have stored is recorded, so the state always loads again.
fn check_op(system: &SystemConfig, op: &Op) -> Result<(), OutboundError> {
    let key = op.account();
    let canonical = key_of_text(key, system.key_case_exact());
    if canonical.as_deref() != Some(key) {
        return Err(OutboundError::InvalidKey {
            system: op.system().to_owned(),
            account: key.to_owned(),
            expected: canonical.map(Cow::into_owned).unwrap_or_default(),
        });
    }
    let invalid = |attribute: &str, reason: String| OutboundError::InvalidValue {
        system: op.system().to_owned(),
        account: key.to_owned(),
        attribute: attribute.to_owned(),
        reason,
    };
    let check = |attribute: &str, items: &[Scalar], whole: bool| -> Result<(), OutboundError> {
        // Unknown attributes are refused by the caller, with their own kind.
        let Some(decl) = system.attribute(attribute) else {
            return Ok(());
        };
        if let Some(bad) = items.iter().find(|s| !s.is_of(decl.value_type)) {
            return Err(invalid(
                attribute,
                format!("`{bad}` is not a {} value", decl.value_type),
            ));
        }
        if !decl.multi && (!whole || items.len() > 1) {
            return Err(invalid(
                attribute,
                "gives several values to a single-valued attribute".into(),
            ));
        }
        Ok(())
    };
    match op {
        Op::Create(c) => c.attributes.iter().try_for_each(|(a, v)| check(a, v.scalars(), true)),
        Op::Delete(_) => Ok(()),
        Op::Update(u) => {
            u.set.iter().try_for_each(|(a, v)| check(a, v.scalars(), true))?;
            u.add.iter().chain(&u.remove).try_for_each(|(a, items)| {
                if system.attribute(a).is_some_and(|d| !d.multi) {
                    return Err(invalid(
                        a,
                        "is single-valued: it takes `set`, not `add` or `remove`".into(),
                    ));
                }
                check(a, items, false)
            })
        }
    }
}

/// Remembers what a confirmed op left in an account attribute, so that a later import
/// showing it back different counts as a bounce (SPEC 5.3). For a multi-valued
/// attribute the echo is the set of values the engine wrote there.
fn record_echo(system: &SystemConfig, account: &mut Account, attribute: &str) {
    // The schema's name, shared (not copied per account).
    let Some((name, decl)) = system.schema.attributes.get_key_value(attribute) else {
        return;
    };
    let pushed = if decl.multi {
        Value::multi(
            account.pushed.get(attribute).cloned().unwrap_or_default(),
            decl.case_exact,
        )
    } else {
        account.value(attribute).clone()
    };
    let echo = account
        .echoes
        .entry(name.clone())
        .or_insert_with(|| Echo::new(Value::Empty));
    echo.pushed = pushed;
    echo.armed = true;
}

/// Maps keyed by the accounts and identities of a batch (a million confirmed creates
/// look up several each): a fast hasher; nothing depends on their order.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
type FastSet<K> = HashSet<K, foldhash::fast::FixedState>;

/// A provisioning request's own checks and create op (see [`create_for`]).
type OwnResult = Result<(CreateOp, Vec<OutboundSkip>), OutboundError>;

/// The checks of one provisioning request that need only its identity (`None`: no
/// such identity) and the key of the account of the system it already holds, and its
/// create op.
fn create_for(
    system: &str,
    planner: &Planner<'_>,
    identity: IdentityId,
    record: Option<&Identity>,
    held: Option<&String>,
) -> OwnResult {
    let Some(record) = record else {
        return Err(OutboundError::UnknownIdentity(identity));
    };
    if let Some(account) = held {
        return Err(OutboundError::AlreadyProvisioned {
            identity,
            system: system.to_owned(),
            account: account.clone(),
        });
    }
    // A create handed out earlier and not confirmed: a second one would create the
    // account twice (or fail at the target) if the host carried out both.
    if let Some(pending) = record.pending_creates.get(system) {
        return Err(OutboundError::ProvisionPending {
            identity,
            system: system.to_owned(),
            account: pending.account.clone(),
            since: pending.since,
        });
    }
    planner.create(record).map_err(|attribute| OutboundError::NoAccountId {
        identity,
        system: system.to_owned(),
        attribute,
    })
}

/// Per identity, the first key (in key order) of the accounts linked to it: the one
/// [`Store::accounts_of`], sorted, names first.
fn first_key_by_identity(linked: Vec<(IdentityId, String)>) -> FastMap<IdentityId, String> {
    let mut first: FastMap<IdentityId, String> = FastMap::with_capacity_and_hasher(linked.len(), Default::default());
    for (identity, key) in linked {
        match first.get_mut(&identity) {
            Some(held) if key < *held => *held = key,
            Some(_) => {}
            None => {
                first.insert(identity, key);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::store::MemoryStore;
    use crate::{Snapshot, ValidatedConfig};

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).single().unwrap_or_default()
    }

    /// A config of `hr` and `dir` (title and groups flowing out), and `people` new
    /// identities imported from `hr`.
    fn imported(people: usize) -> Result<(Engine<MemoryStore>, Vec<IdentityId>), String> {
        let config = ValidatedConfig::from_json(
            &json!({
                "identity": { "attributes": {
                    "employeeNumber": { "type": "string" }, "title": { "type": "string" },
                    "groups": { "type": "string", "multi": true }
                } },
                "systems": {
                    "hr": {
                        "schema": { "account_id": "id", "account_name": "id", "attributes": {
                            "id": { "type": "string" }, "title": { "type": "string" },
                            "groups": { "type": "string", "multi": true }
                        } },
                        "authoritative": true,
                        "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                        "flows": [
                            { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 100, "update": 100 },
                            { "account": "groups", "identity": "groups", "direction": "inbound", "create": 100, "update": 100 }
                        ]
                    },
                    "dir": {
                        "schema": { "account_id": "uid", "account_name": "uid", "attributes": {
                            "uid": { "type": "string" }, "title": { "type": "string" },
                            "memberOf": { "type": "string", "multi": true }
                        } },
                        "flows": [
                            { "account": "uid", "identity": "employeeNumber", "direction": "outbound" },
                            { "account": "title", "identity": "title", "direction": "outbound" },
                            { "account": "memberOf", "identity": "groups", "direction": "outbound" }
                        ]
                    }
                }
            })
            .to_string(),
        )
        .map_err(|e| e.to_string())?;
        let rows: Vec<serde_json::Value> = (0..people)
            .map(|i| json!({ "id": format!("E{i}"), "title": format!("T{}", i % 3), "groups": ["g1", format!("g{}", i % 4)] }))
            .collect();
        let snapshot: Snapshot =
            serde_json::from_value(json!({ "mode": "complete", "columns": ["id", "title", "groups"], "rows": rows }))
                .map_err(|e| e.to_string())?;
        let mut engine = Engine::new(config);
        let _report = engine.import("hr", &snapshot, at(1)).map_err(|e| e.to_string())?;
        let ids: Vec<IdentityId> = engine
            .identities(None, people)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids.len(), people, "every row is a new identity");
        Ok((engine, ids))
    }

    /// An engine holding `people` identities from `hr`, each with a `dir` create op
    /// handed out (provisioned, not confirmed), and those ops.
    fn provisioned(people: usize) -> Result<(Engine<MemoryStore>, Vec<Op>), String> {
        let (mut engine, ids) = imported(people)?;
        let plan = engine.provision_many("dir", &ids, at(2)).map_err(|e| e.to_string())?;
        Ok((engine, plan.ops))
    }

    /// Every `dir` account, and every identity's pending creates, as text.
    fn dir_state(engine: &Engine<MemoryStore>) -> Result<String, String> {
        let mut accounts = Vec::new();
        engine
            .store()
            .visit_accounts("dir", &mut |a| accounts.push(format!("{a:?}")))
            .map_err(|e| e.to_string())?;
        accounts.sort();
        let mut pending = Vec::new();
        engine
            .store()
            .visit_identities(&mut |i| pending.push(format!("{:?} {:?}", i.id, i.pending_creates)))
            .map_err(|e| e.to_string())?;
        Ok(format!("{accounts:?} {pending:?}"))
    }

    /// Provisioning builds its create ops in the store's decoding threads: the plan
    /// (ops, skips, refusals in request order) and the pending creates left are those of
    /// a run in one thread, for a batch of new identities, then for one with pending,
    /// repeated and unknown ones.
    #[test]
    fn a_batch_provisioned_in_threads_is_the_batch_provisioned_in_one() -> Result<(), String> {
        let (engine, mut ids) = imported(9)?;
        let mut one = Engine::with_store(engine.config().clone(), engine.store().clone()).map_err(|e| e.to_string())?;
        let mut two = Engine::with_store(engine.config().clone(), engine.store().clone()).map_err(|e| e.to_string())?;
        let in_one = crate::parallel::with_threads(1, || one.provision_many("dir", &ids, at(4)));
        let in_two = crate::parallel::with_threads(2, || two.provision_many("dir", &ids, at(4)));
        let text = format!("{in_one:?}");
        assert!(text.contains("Create") && text.contains("memberOf"), "{text}");
        assert_eq!(text, format!("{in_two:?}"));
        assert_eq!(dir_state(&one)?, dir_state(&two)?);
        // Now pending, asked again, with an unknown identity and one asked twice.
        ids.extend([IdentityId(999), ids[4], ids[0]]);
        ids.rotate_left(3);
        let in_one = crate::parallel::with_threads(1, || one.provision_many("dir", &ids, at(5)));
        let in_two = crate::parallel::with_threads(2, || two.provision_many("dir", &ids, at(5)));
        let text = format!("{in_one:?}");
        assert!(
            text.contains("ProvisionPending") && text.contains("UnknownIdentity"),
            "{text}"
        );
        assert_eq!(text, format!("{in_two:?}"));
        assert_eq!(dir_state(&one)?, dir_state(&two)?);
        Ok(())
    }

    /// The checks confirmation makes for all ops at once (in threads for a large batch)
    /// are reported in op order, each where it is made: the first refused op's error,
    /// and for a create, a conflict with the store before an unknown attribute.
    #[test]
    fn a_batch_refused_names_its_first_problem_in_op_order() -> Result<(), String> {
        let (mut engine, ops) = provisioned(5)?;
        let create = |op: &Op| match op {
            Op::Create(c) => Some(c.clone()),
            _ => None,
        };
        let mut unknown = create(&ops[1]).ok_or("a create")?;
        unknown.attributes.insert("nope".into(), Value::from("x"));
        let mut mistyped = create(&ops[3]).ok_or("a create")?;
        mistyped
            .attributes
            .insert("title".into(), Value::Single(Scalar::Integer(7)));
        let mut batch = ops.clone();
        batch[1] = Op::Create(unknown.clone());
        batch[3] = Op::Create(mistyped);
        for threads in [1, 2] {
            let refused = crate::parallel::with_threads(threads, || engine.confirm(&batch, at(3)));
            assert!(
                matches!(&refused, Err(OutboundError::UnknownAttribute { attribute, .. }) if attribute == "nope"),
                "{threads}: {refused:?}"
            );
        }
        // Refused whole: nothing was written. Once the account exists, a create of it
        // is refused for that, before its unknown attribute.
        engine.confirm(&ops[1..2], at(3)).map_err(|e| e.to_string())?;
        for threads in [1, 2] {
            let again = [ops[0].clone(), Op::Create(unknown.clone())];
            let refused = crate::parallel::with_threads(threads, || engine.confirm(&again, at(4)));
            assert!(
                matches!(&refused, Err(OutboundError::AccountExists { .. })),
                "{threads}: {refused:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_batch_written_in_parts_leaves_what_confirming_op_by_op_does() -> Result<(), String> {
        let (mut batch, ops) = provisioned(7)?;
        let mut one_by_one =
            Engine::with_store(batch.config().clone(), batch.store().clone()).map_err(|e| e.to_string())?;
        let mut threaded =
            Engine::with_store(batch.config().clone(), batch.store().clone()).map_err(|e| e.to_string())?;
        assert!(ops.len() > 2 * CONFIRM_PART, "several parts");
        let report = batch.confirm(&ops, at(3)).map_err(|e| e.to_string())?;
        assert_eq!(report.created, ops.len());
        // Parts built in a second thread while the one before is written.
        let report = crate::parallel::with_threads(2, || threaded.confirm(&ops, at(3))).map_err(|e| e.to_string())?;
        assert_eq!(report.created, ops.len());
        for op in &ops {
            one_by_one
                .confirm(std::slice::from_ref(op), at(3))
                .map_err(|e| e.to_string())?;
        }
        let state = dir_state(&batch)?;
        assert!(
            state.contains("memberOf") && state.contains("provisioned: true"),
            "{state}"
        );
        assert_eq!(state, dir_state(&one_by_one)?);
        assert_eq!(state, dir_state(&threaded)?);
        Ok(())
    }
}
