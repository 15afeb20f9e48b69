//! Imports and approvals: prepare, diff, thresholds, the account mirror, correlation,
//! projection and resolution.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::attr_map::{AttrMap, SchemaOrder};
use crate::config::{FlowRule, IdentityAttribute, SystemConfig};
use crate::controls::{AccountWork, InboxEntry, LOOP_LIMIT};
use crate::correlation::{correlate, Correlation};
use crate::diagnosis::diagnose;
use crate::diff::{count, diff, fill_insert, AccountChange, AttributeChange, ChangeKind, Diff, ImportPlan};
use crate::engine::{Approval, Engine, ImportReport, LinkEvent};
use crate::error::{ApproveError, ImportError};
use crate::model::{Account, Identity, IdentityId, LinkState};
use crate::observe::{DecisionCounts, DecisionLog, Observer, Stage};
use crate::prepare::{check_columns, prepare, Prepared, Snapshot};
use crate::processing::ProcessReport;
use crate::resolution::{resolve, resolve_group, Candidate, Offer, Round, Scores};
use crate::store::{PendingPlan, PlanId, Store, StoreError};
use crate::text::Text;
use crate::text_cache::TextCache;
use crate::transform::AttributeSource;
use crate::validate::ValidatedConfig;
use crate::value::{Keys, Value};

/// How many resolved identities an import writes at once.
const IDENTITY_BATCH: usize = 64 * 1024;

#[cfg(test)]
thread_local! {
    /// A batch size for tests (which compare runs with tiny batches and with one).
    pub(crate) static FORCED_BATCH: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// Applies first loads as any import (tests compare both ways).
    static WHOLE_FIRST_LOAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many rows of a first load are applied at once (see `apply_first_load`): the
/// load's peak memory grows with it (1M rows: 1,660 MiB with 16k, 1,795 MiB with 64k,
/// 2,317 MiB with 256k, 2,764 MiB all at once) and its time barely does.
const FIRST_LOAD_PART: usize = 16 * 1024;

/// How many rows of a first load are applied at once.
pub(crate) fn first_load_part() -> usize {
    #[cfg(test)]
    if let Some(batch) = FORCED_BATCH.get() {
        return batch.max(1);
    }
    FIRST_LOAD_PART
}

/// How many resolved identities are written at once.
fn identity_batch() -> usize {
    #[cfg(test)]
    if let Some(batch) = FORCED_BATCH.get() {
        return batch;
    }
    IDENTITY_BATCH
}

/// The inserts of a plan whose attributes are built when they are applied, from the
/// prepared rows of their import.
pub(crate) struct Deferred<'p, 'a> {
    inner: Option<DeferredRows<'p, 'a>>,
}

struct DeferredRows<'p, 'a> {
    system: &'p SystemConfig,
    prepared: &'p Prepared<'a>,
    /// Per change, its row (`None`: built already).
    rows: Vec<Option<u32>>,
    texts: TextCache<'a>,
}

impl<'p, 'a> Deferred<'p, 'a> {
    /// Nothing deferred.
    fn none() -> Deferred<'p, 'a> {
        Deferred { inner: None }
    }

    fn new(system: &'p SystemConfig, prepared: &'p Prepared<'a>, rows: Vec<Option<u32>>) -> Deferred<'p, 'a> {
        if rows.iter().all(Option::is_none) {
            return Deferred::none();
        }
        Deferred {
            inner: Some(DeferredRows {
                system,
                prepared,
                rows,
                texts: TextCache::new(system.schema.attributes.len()),
            }),
        }
    }

    /// Builds the attributes of change `index` if they were deferred.
    pub(crate) fn fill(&mut self, index: usize, change: &mut AccountChange) {
        if let Some(d) = &mut self.inner {
            if let Some(row) = d.rows.get_mut(index).and_then(Option::take) {
                fill_insert(d.system, d.prepared, row, &mut d.texts, change);
            }
        }
    }

    /// Builds every deferred insert of `changes`.
    fn fill_all(&mut self, changes: &mut [AccountChange]) {
        for (index, change) in changes.iter_mut().enumerate() {
            self.fill(index, change);
        }
        self.inner = None;
    }
}

/// Whether the identity phase writes the accounts it is done with (an import) or
/// leaves them all to its caller (a resume, which writes only their links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mirror {
    /// Written with each batch of identities.
    Write,
    /// Left to the caller.
    Keep,
}

impl<S: Store> Engine<S> {
    // ---------------------------------------------------------------- import

    /// Imports a snapshot of one system at `now`: prepare, diff, thresholds, then (unless
    /// blocked) the account mirror, correlation, projection and resolution.
    ///
    /// A first load (every change inserts an account, and the store holds no identity)
    /// is applied a part of 16k rows at a time, each part's accounts built, projected,
    /// resolved and written before the next part's, so that a load of a million rows
    /// never holds all its accounts at once; the result is the one of the import applied
    /// at once (correlation would find nothing to link to either way). When the system's
    /// inbound rules only copy values (authoritative, no multi-valued attribute, no `in`
    /// transform or type conversion, one rule per identity attribute, create scores
    /// above 0, nothing computed, no roles, lifecycle or scopes), each part is lent to
    /// the store as rows ([`crate::store::Store::put_loaded`]) without building an
    /// account and an identity per row, and with the `parallel` feature the next part is
    /// built in a second thread meanwhile: the **direct load**, with the same result.
    ///
    /// A whole-import refusal (unknown system, dropped or unknown column) is an `Err` and
    /// changes nothing. Rejected rows and rejected decisions are part of the report; applied
    /// decisions are counted (pass an [`Observer`] to [`Engine::import_observed`] to see
    /// each). A blocked plan applies nothing; it is kept for [`Engine::approve`].
    pub fn import(
        &mut self,
        system: &str,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<ImportReport, ImportError> {
        self.import_observed(system, snapshot, now, &mut Observer::new())
    }

    /// [`Engine::import`], showing every decision and the import's progress to
    /// `observer` as they happen.
    pub fn import_observed(
        &mut self,
        system: &str,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
        observer: &mut Observer<'_>,
    ) -> Result<ImportReport, ImportError> {
        let Some(system_config) = self.system(system) else {
            return Err(ImportError::UnknownSystem(system.to_owned()));
        };
        if let Some(columns) = snapshot.complete_columns() {
            check_columns(system, &system_config, columns)?;
        }
        // The version the plan is computed against, read before anything it is computed
        // from.
        let version = self.store.system_version(system)?;
        let rows = snapshot.len() as u64;
        observer.progress(Stage::Prepare, 0, rows);
        let mut prepared = prepare(&self.config, system, snapshot, &self.store)?;
        observer.progress(Stage::Prepare, rows, rows);
        observer.progress(Stage::Diff, 0, rows);
        // Inserts are built as they are applied, unless something before needs their
        // values: the counts of a system with multi-valued attributes (links), and the
        // diagnosis of an import that deletes (re-keyed accounts).
        let defer = !system_config.schema.attributes.values().any(|a| a.multi);
        let Diff {
            mut changes,
            retry,
            kept,
            deferred,
        } = diff(system, &system_config, &prepared, &self.store, defer)?;
        let rejections = std::mem::take(&mut prepared.rejections);
        // The keys seen served the diff (deletions), and so did the good rows (a
        // deferred insert names its snapshot row); a first load of a million rows would
        // hold them (66 and 32 MB) while its store grows.
        prepared.seen = Default::default();
        prepared.rows = Vec::new();
        let mut deferred = Deferred::new(&system_config, &prepared, deferred);
        if changes.iter().any(|c| c.kind == ChangeKind::Delete) {
            deferred.fill_all(&mut changes);
        }
        observer.progress(Stage::Diff, rows, rows);
        let counts = count(&system_config, &changes);
        let base = self.store.account_base(system)?;
        let mut exceeded = system_config.thresholds.check(&counts, base);
        exceeded.extend(system_config.thresholds.check_rejected(rejections.len() as u64, rows));
        observer.progress(Stage::Diagnose, 0, 1);
        let diagnosis = diagnose(
            system,
            &system_config,
            snapshot,
            &changes,
            &rejections,
            base,
            &self.store,
        )?;
        observer.progress(Stage::Diagnose, 1, 1);
        let mut plan = ImportPlan {
            id: self.store.allocate_plan_id()?,
            system: system.to_owned(),
            at: now,
            changes,
            retry,
            kept,
            rejections,
            counts,
            base,
            exceeded,
            version,
            diagnosis,
        };
        if plan.is_blocked() {
            // Kept for approval: complete.
            deferred.fill_all(&mut plan.changes);
            self.keep_blocked(PendingPlan::Import(plan.clone()))?;
            return Ok(ImportReport {
                plan,
                applied: false,
                links: Vec::new(),
                decisions: DecisionCounts::default(),
                rejected: Vec::new(),
                processing: ProcessReport::default(),
                changed: Vec::new(),
            });
        }
        self.apply_import_deferred(plan, &system_config, observer, &mut deferred)
    }

    /// Applies a complete plan (an approved one).
    pub(crate) fn apply_import(
        &mut self,
        plan: ImportPlan,
        system: &SystemConfig,
        observer: &mut Observer<'_>,
    ) -> Result<ImportReport, ImportError> {
        self.apply_import_deferred(plan, system, observer, &mut Deferred::none())
    }

    /// Applies a plan whose deferred inserts `deferred` builds.
    fn apply_import_deferred(
        &mut self,
        plan: ImportPlan,
        system: &SystemConfig,
        observer: &mut Observer<'_>,
        deferred: &mut Deferred<'_, '_>,
    ) -> Result<ImportReport, ImportError> {
        self.store.begin()?;
        // Checked inside the writing unit: on a store shared by several processes, the
        // plan applies only to the state it was computed against.
        match self.store.system_version(&plan.system) {
            Ok(version) if version == plan.version => {}
            Ok(_) => {
                self.store.rollback();
                return Err(ImportError::StalePlan { system: plan.system });
            }
            Err(e) => {
                self.store.rollback();
                return Err(e.into());
            }
        }
        let mut log = DecisionLog::new(observer);
        let mut plan = plan;
        match self.apply_import_inner(&mut plan, system, &mut log, deferred) {
            Ok(IdentityOutcome {
                mut links,
                processing,
                changed,
            }) => {
                // Those a part-wise first load did not hand already.
                log.hand_links(&mut links);
                self.store.commit()?;
                if log.streams_changes() {
                    // Each was handed to the observer (`Observer::on_change`).
                    plan.changes = Vec::new();
                }
                Ok(ImportReport {
                    plan,
                    applied: true,
                    links,
                    decisions: log.counts,
                    rejected: log.rejected,
                    processing,
                    changed,
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
        plan: &mut ImportPlan,
        system: &SystemConfig,
        log: &mut DecisionLog<'_, '_>,
        deferred: &mut Deferred<'_, '_>,
    ) -> Result<IdentityOutcome, StoreError> {
        let name = plan.system.clone();
        let name = name.as_str();
        // Read first: a paused engine keeps every change for its inbox.
        let mut state = self.store.engine_state()?;
        let paused = state.paused;
        if !paused && is_first_load(plan) && self.store.identity_count()? == 0 {
            return self.apply_first_load(plan, system, log, deferred);
        }
        // 1. The account mirror, with the echoes of pushed values (SPEC 5.3). The stored
        // accounts are read once, lent; only those that change are copied.
        // An inserted account has nothing stored: only updates and deletes are read
        // (a first load reads none).
        let read: Vec<usize> = (0..plan.changes.len())
            .filter(|&i| plan.changes[i].kind != ChangeKind::Insert)
            .collect();
        let keys: Vec<&str> = read.iter().map(|&i| plan.changes[i].key.as_str()).collect();
        let mut stored: HashMap<usize, Account> = HashMap::with_capacity(read.len());
        let mut previous_links: HashMap<usize, IdentityId> = HashMap::new();
        self.store
            .visit_accounts_by_key(name, &keys, &mut |position, account| {
                let (Some(account), Some(&index)) = (account, read.get(position)) else {
                    return;
                };
                if plan.changes[index].kind == ChangeKind::Delete {
                    if let Some(id) = account.identity() {
                        previous_links.insert(index, id);
                    }
                } else {
                    stored.insert(index, account.clone());
                }
            })?;
        let order = SchemaOrder::new(system.schema.attributes.keys());
        let mut slots = Vec::new();
        // `None` once the identity phase wrote it (see `identity_phase`).
        let mut put: Vec<Option<Account>> = Vec::with_capacity(plan.changes.len() + plan.kept.len() + plan.retry.len());
        // The accounts present after the import, in the order of their changes. An
        // observer that takes the changes sees each here; an insert's attributes are
        // then dropped once its account is built (nothing later reads them: a new
        // account offers every value it holds), so a first load does not hold its plan
        // and its accounts at once.
        let streams = log.streams_changes();
        for (index, change) in plan.changes.iter_mut().enumerate() {
            deferred.fill(index, change);
            if streams {
                log.change(change);
            }
            if change.kind == ChangeKind::Delete {
                continue;
            }
            let mut account = match stored.remove(&index) {
                Some(mut account) => {
                    for c in &change.attributes {
                        account.set(&c.attribute, c.new.clone());
                    }
                    account
                }
                None => new_account(change, &order, &mut slots),
            };
            observe_echoes(system, &mut account);
            put.push(Some(account));
            if streams && change.kind == ChangeKind::Insert && !paused {
                change.attributes = Vec::new();
            }
        }
        let mut removed = Vec::new();
        let mut items = Vec::with_capacity(plan.changes.len() + plan.retry.len());
        let mut present = 0;
        for (index, change) in plan.changes.iter().enumerate() {
            if change.kind == ChangeKind::Delete {
                removed.push(change.key.clone());
                if let Some(&identity) = previous_links.get(&index) {
                    items.push(Item::Deleted {
                        key: &change.key,
                        identity,
                        held: &change.attributes,
                    });
                }
            } else {
                items.push(Item::Present {
                    account: present,
                    changed: &change.attributes,
                });
                present += 1;
            }
        }
        for key in &plan.kept {
            if let Some(mut account) = self.store.account(name, key)? {
                observe_echoes(system, &mut account);
                put.push(Some(account));
            }
        }
        // 2. Identity-side work: now, or in the inbox while paused (SPEC 6). The mirror
        // is written after it, so that a store refusing the work midway (out of
        // identity ids) is left as it was even without a rollback.
        if paused {
            self.write_mirror(name, plan, &removed)?;
            self.store.put_accounts(name, put.into_iter().flatten().collect())?;
            state.inbox.extend(
                plan.changes
                    .iter()
                    .enumerate()
                    .map(|(index, change)| (change, previous_links.get(&index).copied()))
                    .map(|(change, previous_link)| InboxEntry {
                        plan: plan.id,
                        system: name.to_owned(),
                        at: plan.at,
                        work: AccountWork {
                            account: change.key.clone(),
                            kind: change.kind,
                            attributes: change.attributes.clone(),
                            previous_link,
                        },
                    }),
            );
            self.store.put_engine_state(state)?;
            return Ok(IdentityOutcome::default());
        }
        for key in &plan.retry {
            if let Some(account) = self.store.account(name, key)? {
                items.push(Item::Present {
                    account: put.len(),
                    changed: &[],
                });
                put.push(Some(account));
            }
        }
        let outcome = self.identity_phase(
            name,
            system,
            plan.at,
            &mut put,
            &items,
            log,
            Mirror::Write,
            Find::InStore,
        )?;
        self.write_mirror(name, plan, &removed)?;
        self.store.put_accounts(name, put.into_iter().flatten().collect())?;
        Ok(outcome)
    }

    /// Applies a first load (see [`is_first_load`]) a part of [`FIRST_LOAD_PART`] rows
    /// at a time: each part's accounts are built, projected, resolved and written before
    /// the next part's are built, so a load never holds all its accounts or identities.
    ///
    /// The result is the one the whole import would give: with no identity stored,
    /// correlation finds nothing (and an identity projected by an earlier part is not
    /// one to find: correlation runs before anything is written), every account
    /// projects its own identity (or stays unmatched), and identities are resolved in
    /// id order, which is row order.
    fn apply_first_load(
        &mut self,
        plan: &mut ImportPlan,
        system: &SystemConfig,
        log: &mut DecisionLog<'_, '_>,
        deferred: &mut Deferred<'_, '_>,
    ) -> Result<IdentityOutcome, StoreError> {
        let name = plan.system.clone();
        let name = name.as_str();
        if let Some(outcome) = self.apply_direct_load(plan, system, log, deferred)? {
            self.write_mirror(name, plan, &[])?;
            return Ok(outcome);
        }
        let order = SchemaOrder::new(system.schema.attributes.keys());
        let mut slots = Vec::new();
        let streams = log.streams_changes();
        let total = plan.changes.len() as u64;
        let part = first_load_part();
        let mut outcome = IdentityOutcome {
            processing: ProcessReport {
                applied: true,
                ..ProcessReport::default()
            },
            ..IdentityOutcome::default()
        };
        let at = plan.at;
        for (number, changes) in plan.changes.chunks_mut(part).enumerate() {
            let first = number * part;
            let mut accounts = Vec::with_capacity(changes.len());
            for (offset, change) in changes.iter_mut().enumerate() {
                deferred.fill(first + offset, change);
                if streams {
                    log.change(change);
                }
                let mut account = new_account(change, &order, &mut slots);
                observe_echoes(system, &mut account);
                accounts.push(Some(account));
                if streams {
                    // Handed to the observer, and a new account offers every value it
                    // holds (`Mode::Values`), not its changes.
                    change.attributes = Vec::new();
                }
            }
            let items: Vec<Item<'_>> = changes
                .iter()
                .enumerate()
                .map(|(account, change)| Item::Present {
                    account,
                    changed: &change.attributes,
                })
                .collect();
            let find = Find::FirstLoad {
                before: first as u64,
                total,
            };
            let mut done = self.identity_phase(name, system, at, &mut accounts, &items, log, Mirror::Write, find)?;
            log.hand_links(&mut done.links);
            outcome.absorb(done);
            // Those no identity took (unmatched).
            self.store
                .put_accounts(name, accounts.into_iter().flatten().collect())?;
        }
        self.write_mirror(name, plan, &[])?;
        Ok(outcome)
    }

    /// The system's new version and the removal of its deleted accounts.
    fn write_mirror(&mut self, name: &str, plan: &ImportPlan, removed: &[String]) -> Result<(), StoreError> {
        if !plan.changes.is_empty() {
            self.store.bump_system_version(name)?;
        }
        self.store.remove_accounts(name, removed)
    }

    /// Correlation, projection and resolution for the changed accounts of one import
    /// (`accounts` as they are after it; correlation sets their links, the caller
    /// stores them). Identities are resolved one at a time, in id order, each with every
    /// candidate the import offers it.
    ///
    /// With [`Mirror::Write`], the accounts offered to each batch of identities written
    /// are written with it and taken out of `accounts` (a first load then never holds
    /// all its accounts and identities at once); the caller writes those left.
    #[allow(clippy::too_many_arguments, reason = "the phase's inputs, each used")]
    pub(crate) fn identity_phase(
        &mut self,
        name: &str,
        system: &SystemConfig,
        at: DateTime<Utc>,
        accounts: &mut [Option<Account>],
        items: &[Item<'_>],
        log: &mut DecisionLog<'_, '_>,
        mirror: Mirror,
        find: Find,
    ) -> Result<IdentityOutcome, StoreError> {
        // 1. Which identity each item offers to: linked accounts to theirs; unlinked
        // ones are correlated, linked, projected or recorded as unmatched or ambiguous.
        // Progress over the whole import (a first load runs this a part at a time).
        let (before, total) = find.progress(items.len());
        let mut routes: Vec<(IdentityId, usize, Mode)> = Vec::with_capacity(items.len());
        let mut links = Vec::new();
        let mut created: Vec<Identity> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            log.progress(Stage::Apply, before + index as u64, total);
            match *item {
                Item::Deleted { identity, .. } => routes.push((identity, index, Mode::Blanks)),
                Item::Present { account, .. } => {
                    let Some(account) = accounts.get_mut(account).and_then(Option::as_mut) else {
                        continue;
                    };
                    if let Some(id) = account.identity() {
                        routes.push((id, index, Mode::Changed));
                        continue;
                    }
                    let outcome = match find {
                        Find::InStore => correlate(&self.config, system, account, &self.store, at)?,
                        // Nothing was stored to find (see `Find::FirstLoad`).
                        Find::FirstLoad { .. } => Correlation::NoMatch,
                    };
                    let mut projected = false;
                    account.link = match outcome {
                        Correlation::Linked(id) => LinkState::Linked(id),
                        Correlation::Ambiguous(ids) => LinkState::Ambiguous(ids),
                        Correlation::NoMatch if system.authoritative => {
                            let id = self.store.allocate_identity_id()?;
                            created.push(Identity::new(id, at));
                            projected = true;
                            LinkState::Linked(id)
                        }
                        Correlation::NoMatch => LinkState::Unmatched,
                    };
                    if let LinkState::Linked(id) = account.link {
                        routes.push((id, index, Mode::Values));
                    }
                    links.push(LinkEvent {
                        account: account.key.clone(),
                        state: account.link.clone(),
                        projected,
                    });
                }
            }
        }
        log.progress(Stage::Apply, before + items.len() as u64, total);

        // 2. Resolution, one identity at a time (by id), grouped by identity attribute
        // (by name), then event-based processing of the identities that changed.
        routes.sort_by_key(|&(id, _, _)| id);
        let mut processing = ProcessReport {
            applied: true,
            ..ProcessReport::default()
        };
        // The configuration's own name of the system, shared by the provenance written.
        let system_name = self
            .config
            .systems
            .get_key_value(name)
            .map_or_else(|| Text::from(name), |(k, _)| k.clone());
        let round = Round {
            system: &system_name,
            at,
        };
        let targets = InboundTargets::of(system, &self.config);
        let mut created = created.into_iter().map(Some).collect::<Vec<_>>();
        let first_created = created.first().and_then(|i| i.as_ref()).map(|i| i.id);
        // The most candidates an identity was offered so far: room for the next one's.
        let mut most_candidates = 0;
        let mut changed: Vec<IdentityId> = Vec::new();
        let runs = routes.chunk_by(|a, b| a.0 == b.0);
        let here = runs.clone().count();
        // A first load resolves at most one identity per row: its rows are the total.
        let (before, identities) = find.progress(here);
        // Written a batch at a time: a first load resolves a million identities, and
        // holding them all until the end doubled its peak memory. Nothing later in
        // this phase reads an identity written here (each is resolved once, and
        // correlation is done), and the whole import is one unit of work.
        let mut put: Vec<Identity> = Vec::with_capacity(here.min(identity_batch()));
        // The accounts offered to identities resolved since the last batch written.
        let mut resolved_accounts: Vec<usize> = Vec::new();
        for (done, run) in runs.enumerate() {
            log.progress(Stage::Resolve, before + done as u64, identities);
            let id = run[0].0;
            let fresh = first_created
                .and_then(|first| usize::try_from(id.0.checked_sub(first.0)?).ok())
                .and_then(|slot| created.get_mut(slot))
                .and_then(Option::take);
            let is_new = fresh.is_some();
            let mut identity = match fresh {
                Some(identity) => identity,
                None => match self.store.identity(id)? {
                    Some(identity) => identity,
                    None => continue,
                },
            };
            // A buffer per identity: one reused across identities would keep every
            // account borrowed, and the accounts of a written batch are taken out.
            let mut candidates: Vec<Candidate<'_>> = Vec::with_capacity(most_candidates);
            for &(_, index, mode) in run {
                match items[index] {
                    Item::Deleted { key, held, .. } => offer_blanks(&targets, key, held, &mut candidates),
                    Item::Present { account, changed } => {
                        if let Some(account) = accounts.get(account).and_then(Option::as_ref) {
                            offer(system, &targets, account, changed, mode, at, &mut candidates);
                        }
                    }
                }
            }
            // By attribute name (the rank orders as the names do); stable, so an
            // attribute's candidates keep their arrival order.
            most_candidates = most_candidates.max(candidates.len());
            candidates.sort_by_key(|c| c.rank);
            if is_new {
                // At most one value per candidate: room for all, once.
                identity.reserve(candidates.len());
            }
            let mut written = false;
            let mut offered = candidates.drain(..).peekable();
            while let Some(first) = offered.next() {
                let rank = first.rank;
                let exact = targets.case_exact(rank);
                // The common case, one candidate for the attribute, needs no group.
                if offered.peek().is_none_or(|c| c.rank != rank) {
                    written |= resolve(&mut identity, round, first, exact, log).unwrap_or(false);
                    continue;
                }
                let mut group = vec![first];
                while let Some(next) = offered.next_if(|c| c.rank == rank) {
                    group.push(next);
                }
                written |= resolve_group(&mut identity, round, group, exact, log);
            }
            drop(offered);
            if written {
                processing.examined += 1;
            }
            // A new identity is processed too: its scope membership starts now.
            if written || is_new {
                self.after_change(&mut identity, at, &mut processing);
            }
            // Linked to or unlinked from an account: changed even with no value written
            // (SPEC 10.1).
            let relinked = run.iter().any(|&(_, _, mode)| mode != Mode::Changed);
            if written || is_new || relinked {
                changed.push(id);
            }
            // Linked here by correlation: a create handed out for this system is moot.
            let linked = run.iter().any(|&(_, _, mode)| mode == Mode::Values);
            let settled = linked && identity.pending_creates.remove(name).is_some();
            if mirror == Mirror::Write {
                resolved_accounts.extend(run.iter().filter_map(|&(_, index, _)| match items[index] {
                    Item::Present { account, .. } => Some(account),
                    Item::Deleted { .. } => None,
                }));
            }
            if written || is_new || settled {
                put.push(identity);
                if put.len() >= identity_batch() {
                    self.store.put_identities(std::mem::take(&mut put))?;
                    // Each account is offered to one identity at most: these are done.
                    let done: Vec<Account> = resolved_accounts
                        .drain(..)
                        .filter_map(|at| accounts.get_mut(at).and_then(Option::take))
                        .collect();
                    self.store.put_accounts(name, done)?;
                }
            }
        }
        log.progress(Stage::Resolve, before + here as u64, identities);
        // Projected identities that nothing was offered to are stored empty.
        put.extend(created.into_iter().flatten());
        self.store.put_identities(put)?;
        Ok(IdentityOutcome {
            links,
            processing,
            changed,
        })
    }

    // ---------------------------------------------------------------- approval

    /// Keeps a blocked plan for approval in place of its system's older blocked plan of
    /// the same kind (SPEC 2.6: only the newest import, and the newest outbound plan, of
    /// a system can be approved).
    pub(crate) fn keep_blocked(&mut self, plan: PendingPlan) -> Result<(), StoreError> {
        self.store.begin()?;
        let kept = (|| {
            let same_kind = |p: &PendingPlan| {
                std::mem::discriminant(p) == std::mem::discriminant(&plan) && p.system() == plan.system()
            };
            let superseded: Vec<PlanId> = self
                .store
                .pending_plans()?
                .into_iter()
                .filter(same_kind)
                .map(|p| p.id())
                .collect();
            for id in superseded {
                let _ = self.store.take_pending_plan(id)?;
            }
            self.store.put_pending_plan(plan)
        })();
        match kept {
            Ok(()) => self.store.commit(),
            Err(e) => {
                self.store.rollback();
                Err(e)
            }
        }
    }

    /// Every blocked plan awaiting approval, oldest first.
    pub fn pending_plans(&self) -> Result<Vec<PendingPlan>, StoreError> {
        self.store.pending_plans()
    }

    /// Approves the most recently blocked plan (see [`Engine::approve`]).
    pub fn approve_last(&mut self) -> Result<Approval, ApproveError> {
        self.approve_last_observed(&mut Observer::new())
    }

    /// [`Engine::approve_last`], showing an import plan's decisions and progress to
    /// `observer`.
    pub fn approve_last_observed(&mut self, observer: &mut Observer<'_>) -> Result<Approval, ApproveError> {
        let last = self
            .store
            .pending_plans()?
            .iter()
            .map(PendingPlan::id)
            .max()
            .ok_or(ApproveError::NoBlockedPlan)?;
        self.approve_observed(last, observer)
    }

    /// Approves a blocked plan. An import plan is applied as computed, its candidates
    /// keeping the import's time; an outbound plan is released for the host to carry
    /// out. If the system's stored accounts changed since the plan was computed (or, for
    /// outbound, the plan would no longer be the same), approval fails with
    /// `stale_plan` and the plan is discarded.
    pub fn approve(&mut self, plan: PlanId) -> Result<Approval, ApproveError> {
        self.approve_observed(plan, &mut Observer::new())
    }

    /// [`Engine::approve`], showing an import plan's decisions and progress to
    /// `observer`.
    pub fn approve_observed(&mut self, plan: PlanId, observer: &mut Observer<'_>) -> Result<Approval, ApproveError> {
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
                match self.apply_import(p, &system, observer) {
                    Ok(report) => Ok(Approval::Import(Box::new(report))),
                    Err(ImportError::Store(e)) => Err(ApproveError::Store(e)),
                    Err(_) => Err(stale),
                }
            }
            PendingPlan::Outbound(mut p) => {
                if self.store.system_version(&p.system)? != p.version {
                    return Err(stale);
                }
                let fresh = self.recompute_outbound(&p)?;
                if fresh.as_ref() != Some(&p.ops) {
                    return Err(stale);
                }
                p.exceeded.clear();
                self.mark_pending_creates(&p)?;
                Ok(Approval::Outbound(p))
            }
        }
    }
}

/// What the identity phase of an import did.
#[derive(Debug, Default)]
pub(crate) struct IdentityOutcome {
    /// Correlation outcomes.
    pub(crate) links: Vec<LinkEvent>,
    /// Event-based processing of the identities that changed.
    pub(crate) processing: ProcessReport,
    /// The identities changed, by id.
    pub(crate) changed: Vec<IdentityId>,
}

impl IdentityOutcome {
    /// Adds what a later part of the same import did.
    fn absorb(&mut self, later: IdentityOutcome) {
        self.links.extend(later.links);
        self.processing.absorb(later.processing);
        self.changed.extend(later.changed);
    }
}

/// Whether the identity phase correlates accounts with the stored identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Find {
    /// Correlation searches the store.
    InStore,
    /// A part of a first load (see [`is_first_load`]): there is nothing to find. The
    /// part starts after `before` of the import's `total` rows (progress is reported
    /// over the whole import).
    FirstLoad { before: u64, total: u64 },
}

impl Find {
    /// Where a phase over `here` items stands in the import's progress: the items
    /// before it and the import's total (a part of a first load counts the load's rows).
    fn progress(self, here: usize) -> (u64, u64) {
        match self {
            Find::FirstLoad { before, total } => (before, total),
            Find::InStore => (0, here as u64),
        }
    }
}

/// Whether `plan` can be applied as a first load, a part at a time, once the store is
/// known to hold no identity: every change inserts an account, and no stored account is
/// re-read (kept for its echoes or retried for correlation). An empty plan is applied
/// as any other.
fn is_first_load(plan: &ImportPlan) -> bool {
    #[cfg(test)]
    if WHOLE_FIRST_LOAD.get() {
        return false;
    }
    !plan.changes.is_empty()
        && plan.kept.is_empty()
        && plan.retry.is_empty()
        && plan.changes.iter().all(|c| c.kind == ChangeKind::Insert)
}

/// The account an insert creates, its attributes in schema order.
fn new_account(change: &AccountChange, order: &SchemaOrder, slots: &mut Vec<Option<(Text, Value)>>) -> Account {
    let mut account = Account::new(&change.key);
    let values = change
        .attributes
        .iter()
        .filter(|c| !c.new.is_empty())
        .map(|c| (&c.attribute, &c.new));
    match order.map(values, slots) {
        Some(attributes) => account.attributes = attributes,
        None => {
            account.attributes.reserve(change.attributes.len());
            for c in &change.attributes {
                account.set(&c.attribute, c.new.clone());
            }
        }
    }
    account
}

/// One account's part in the identity phase of an import.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'a> {
    /// A deleted account that was linked: it offers blanks for what it held.
    Deleted {
        key: &'a str,
        identity: IdentityId,
        held: &'a [AttributeChange],
    },
    /// An account present after the import (its position in the accounts being
    /// applied), with the attributes the import changed (none for a retried account).
    Present {
        account: usize,
        changed: &'a [AttributeChange],
    },
}

/// Which values an account offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Through the rules reading a changed attribute (an account linked before).
    Changed,
    /// Every non-empty value (an account linked by this import).
    Values,
    /// Blanks for what a deleted account held.
    Blanks,
}

/// The system's enabled inbound rules whose identity attribute is declared, resolved
/// once per import: the work per account then looks nothing up by name.
struct InboundTargets<'a> {
    rules: Vec<InboundTarget<'a>>,
    /// Per rank: whether the identity attribute compares exactly.
    case_exact: Vec<bool>,
}

struct InboundTarget<'a> {
    /// The rule's position in `flows`.
    index: usize,
    rule: &'a FlowRule,
    declared: &'a IdentityAttribute,
    /// The identity attribute's position among the identity attributes in name order.
    rank: u32,
}

impl<'a> InboundTargets<'a> {
    fn of(system: &'a SystemConfig, config: &'a ValidatedConfig) -> InboundTargets<'a> {
        let mut names: Vec<(&Text, &IdentityAttribute)> = config.identity.attributes.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let rules = system
            .inbound_rules()
            .filter_map(|(index, rule)| {
                let rank = names
                    .binary_search_by(|(name, _)| name.as_str().cmp(rule.identity.as_str()))
                    .ok()?;
                Some(InboundTarget {
                    index,
                    rule,
                    declared: names.get(rank)?.1,
                    rank: u32::try_from(rank).ok()?,
                })
            })
            .collect();
        InboundTargets {
            rules,
            case_exact: names.iter().map(|(_, a)| a.case_exact).collect(),
        }
    }

    /// Whether the identity attribute of `rank` compares exactly.
    fn case_exact(&self, rank: u32) -> bool {
        self.case_exact.get(rank as usize).copied().unwrap_or(true)
    }
}

/// Offers values of one present account through the system's enabled inbound rules:
/// for `Changed`, the rules reading a changed attribute; for `Values`, every rule
/// giving a non-empty value.
fn offer<'a>(
    system: &'a SystemConfig,
    targets: &InboundTargets<'a>,
    account: &'a Account,
    changed: &[AttributeChange],
    mode: Mode,
    at: DateTime<Utc>,
    out: &mut Vec<Candidate<'a>>,
) {
    for target in &targets.rules {
        let rule = target.rule;
        if mode == Mode::Changed && !changed.iter().any(|c| rule.reads_account_attribute(&c.attribute)) {
            continue;
        }
        let raw = match &rule.transform_in {
            None => Ok(account.value(&rule.account).clone()),
            Some(t) => t
                .eval(
                    &AccountSource {
                        system,
                        attributes: &account.attributes,
                    },
                    at,
                )
                .map_err(|e| e.to_string()),
        };
        if mode == Mode::Values && matches!(&raw, Ok(v) if v.is_empty()) {
            continue;
        }
        let declared = target.declared;
        let offer = match raw {
            Ok(raw) => match raw.into_type(declared.value_type, declared.multi, declared.case_exact) {
                Ok(value) => Offer::Value(value),
                Err(raw) => Offer::Invalid(raw),
            },
            Err(e) => Offer::Failed(e),
        };
        out.push(Candidate {
            account: &account.key,
            attribute: &rule.identity,
            rank: target.rank,
            rule: target.index,
            scores: Scores::new(rule.create, rule.update, rule.delete),
            offer,
        });
    }
}

/// Offers a blank through every enabled inbound rule that read a value a deleted
/// account held.
fn offer_blanks<'a>(
    targets: &InboundTargets<'a>,
    key: &'a str,
    held: &[AttributeChange],
    out: &mut Vec<Candidate<'a>>,
) {
    for target in &targets.rules {
        let rule = target.rule;
        let read = held
            .iter()
            .any(|c| !c.old.is_empty() && rule.reads_account_attribute(&c.attribute));
        if !read {
            continue;
        }
        out.push(Candidate {
            account: key,
            attribute: &rule.identity,
            rank: target.rank,
            rule: target.index,
            scores: Scores::new(rule.create, rule.update, rule.delete),
            offer: Offer::Value(Value::Empty),
        });
    }
}

/// An account's attributes as a transform source: schema attributes read as their
/// value (empty if unset); other names are unknown.
pub(crate) struct AccountSource<'a> {
    pub(crate) system: &'a SystemConfig,
    pub(crate) attributes: &'a AttrMap<Value>,
}

impl AttributeSource for AccountSource<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        self.system
            .attribute(name)
            .map(|_| self.attributes.get(name).cloned().unwrap_or_default())
    }
}

/// Updates the echo of each pushed attribute after an import showed the account: a
/// pushed value seen kept resets the count; one seen different counts a bounce. For a
/// multi-valued attribute, a value the engine added seen missing or one it removed seen
/// present is a bounce (SPEC 5.3), and the engine's ownership of a value it wrote ends
/// when the import shows the value gone (SPEC 5.1): added back by hand, it is manual.
fn observe_echoes(system: &SystemConfig, account: &mut Account) {
    let Account {
        attributes,
        echoes,
        pushed,
        ..
    } = account;
    for (attribute, echo) in echoes.iter_mut() {
        let exact = system.case_exact(attribute);
        let multi = system.attribute(attribute).is_some_and(|a| a.multi);
        let held = attributes.get(attribute.as_str()).cloned().unwrap_or_default();
        let kept = if multi {
            let held = Keys::of(held.scalars(), exact);
            held.holds_all(echo.pushed.scalars()) && !echo.removed.iter().any(|s| held.holds(s))
        } else {
            echo.pushed.same_as(&held, exact)
        };
        if kept {
            echo.bounces = 0;
            echo.removed.clear();
        } else if echo.armed && echo.bounces < LOOP_LIMIT {
            echo.bounces += 1;
        }
        echo.armed = false;
    }
    pushed.retain(|attribute, owned| {
        let exact = system.case_exact(attribute);
        let held = Keys::of(attributes.get(attribute.as_str()).map_or(&[], |v| v.scalars()), exact);
        owned.retain(|s| held.holds(s));
        !owned.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::{Snapshot, ValidatedConfig};

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).single().unwrap_or_default()
    }

    fn snapshot(value: serde_json::Value) -> Snapshot {
        serde_json::from_value(value)
            .unwrap_or_else(|e| Snapshot::Table(crate::prepare::Table::new(vec![e.to_string()])))
    }

    /// Loads people from `hr`, correlates `ad` accounts (some unmatched, two of one
    /// person), then changes, deletes and adds people; the store and every report.
    fn run() -> (crate::store::MemoryStore, Vec<String>) {
        let config = ValidatedConfig::from_json(
            &json!({
                "identity": { "attributes": {
                    "employeeNumber": { "type": "string" }, "title": { "type": "string" }
                } },
                "systems": {
                    "hr": {
                        "schema": { "account_id": "id", "account_name": "id", "attributes": {
                            "id": { "type": "string" }, "title": { "type": "string" }
                        } },
                        "authoritative": true,
                        "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                        "flows": [
                            { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50, "delete": 50 }
                        ]
                    },
                    "ad": {
                        "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
                            "sam": { "type": "string" }, "employeeID": { "type": "string" }, "title": { "type": "string" }
                        } },
                        "correlation": [ [ { "account": "employeeID", "identity": "employeeNumber" } ] ],
                        "flows": [
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 60, "update": 60 }
                        ]
                    }
                }
            })
            .to_string(),
        );
        let Ok(config) = config else {
            return (
                crate::store::MemoryStore::new(),
                vec!["the configuration is refused".to_owned()],
            );
        };
        let mut engine = Engine::new(config);
        let hr = |rows: Vec<(String, String)>| {
            let rows: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|(id, title)| json!({ "id": id, "title": title }))
                .collect();
            snapshot(json!({ "mode": "complete", "columns": ["id", "title"], "rows": rows }))
        };
        let people = |n: usize, title: &str| (0..n).map(|i| (format!("E{i}"), format!("{title}{}", i % 3))).collect();
        let ad = snapshot(
            json!({ "mode": "complete", "columns": ["sam", "employeeID", "title"], "rows": [
            { "sam": "a1", "employeeID": "E1", "title": "Boss" },
            { "sam": "a2", "employeeID": "E1", "title": "Chief" },
            { "sam": "a3", "employeeID": "E4", "title": "Lead" },
            { "sam": "a4", "employeeID": "nobody", "title": "x" }
        ] }),
        );
        let mut reports = Vec::new();
        let mut changed: Vec<(String, String)> = people(9, "T");
        changed.retain(|(id, _)| id != "E2");
        changed.push(("E9".to_owned(), "New".to_owned()));
        if let Some(first) = changed.first_mut() {
            first.1 = "Changed".to_owned();
        }
        for (system, snapshot, day) in [("hr", hr(people(9, "T")), 1), ("ad", ad, 2), ("hr", hr(changed), 3)] {
            match engine.import(system, &snapshot, at(day)) {
                Ok(report) => reports.push(format!(
                    "{system}: applied {} links {:?} decisions {:?} rejected {} changed {:?}",
                    report.applied,
                    report.links,
                    report.decisions,
                    report.rejected.len(),
                    report.changed
                )),
                Err(e) => reports.push(e.to_string()),
            }
        }
        (engine.store().clone(), reports)
    }

    /// A first load of `rows` into `system` of a config with correlation on a value that
    /// repeats, a multi-valued attribute, a computed attribute and a scope; the store,
    /// the report and everything the observer saw.
    fn first_load(system: &str, rows: &[(u8, u8, u8)], streamed_changes: bool) -> (crate::store::MemoryStore, String) {
        let config = ValidatedConfig::from_json(
            &json!({
                "identity": { "attributes": {
                    "employeeNumber": { "type": "string" }, "mail": { "type": "string" },
                    "title": { "type": "string" }, "groups": { "type": "string", "multi": true },
                    "label": { "type": "string", "computed": "concat(title, \"/\", mail)" }
                } },
                "systems": {
                    "hr": {
                        "schema": { "account_id": "id", "account_name": "id", "attributes": {
                            "id": { "type": "string" }, "mail": { "type": "string" },
                            "title": { "type": "string" }, "groups": { "type": "string", "multi": true }
                        } },
                        "authoritative": true,
                        "correlation": [ [ { "account": "mail", "identity": "mail" } ] ],
                        "flows": [
                            { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                            { "account": "mail", "identity": "mail", "direction": "inbound", "create": 90, "update": 90 },
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50 },
                            { "account": "groups", "identity": "groups", "direction": "inbound", "create": 50, "update": 50 }
                        ]
                    },
                    "ad": {
                        "schema": { "account_id": "id", "account_name": "id", "attributes": {
                            "id": { "type": "string" }, "mail": { "type": "string" },
                            "title": { "type": "string" }, "groups": { "type": "string", "multi": true }
                        } },
                        "correlation": [ [ { "account": "mail", "identity": "mail" } ] ],
                        "flows": [
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 60, "update": 60 }
                        ]
                    }
                }
            })
            .to_string(),
        );
        let config = match config {
            Ok(config) => config,
            Err(e) => return (crate::store::MemoryStore::new(), e.to_string()),
        };
        let mut engine = Engine::new(config);
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, &(mail, title, group))| {
                // Empty and repeated values; a few titles of the wrong shape are fine
                // (strings), a few groups are empty.
                let groups: Vec<String> = (0..group % 3).map(|g| format!("g{}", (group + g) % 4)).collect();
                json!({ "id": format!("E{i}"), "mail": if mail % 5 == 0 { String::new() } else { format!("m{}", mail % 7) },
                        "title": format!("T{}", title % 4), "groups": groups })
            })
            .collect();
        let snapshot =
            snapshot(json!({ "mode": "complete", "columns": ["id", "mail", "title", "groups"], "rows": rows }));
        let mut seen = Vec::new();
        let mut decisions = Vec::new();
        let mut progress = Vec::new();
        let report = {
            let mut on_change = |c: &AccountChange| seen.push(format!("{c:?}"));
            let mut on_decision = |d: &crate::Decision| decisions.push(format!("{d:?}"));
            let mut on_progress = |p: crate::Progress| progress.push(p);
            let mut observer = Observer::new()
                .on_decision(&mut on_decision)
                .on_progress(&mut on_progress);
            if streamed_changes {
                observer = observer.on_change(&mut on_change);
            }
            engine.import_observed(system, &snapshot, at(1), &mut observer)
        };
        // Progress ends at its total, stage by stage, never going back.
        for pair in progress.windows(2) {
            if let [a, b] = pair {
                if a.stage == b.stage {
                    assert!(a.done <= b.done && a.total == b.total, "{a:?} then {b:?}");
                }
            }
        }
        let shown = format!("{report:?}\nchanges {seen:?}\ndecisions {decisions:?}");
        (engine.store().clone(), shown)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A first load applied a part at a time leaves the store, the report and the
        /// observer's view that the import applied at once gives.
        #[test]
        fn a_first_load_in_parts_is_the_load_at_once(
            rows in proptest::collection::vec((0u8..20, 0u8..8, 0u8..6), 0..40),
            part in 1usize..7,
            authoritative in proptest::bool::ANY,
            streamed in proptest::bool::ANY,
        ) {
            let system = if authoritative { "hr" } else { "ad" };
            WHOLE_FIRST_LOAD.set(true);
            let (whole, whole_report) = first_load(system, &rows, streamed);
            WHOLE_FIRST_LOAD.set(false);
            FORCED_BATCH.set(Some(part));
            let (parts, parts_report) = first_load(system, &rows, streamed);
            FORCED_BATCH.set(None);
            proptest::prop_assert!(whole_report.starts_with("Ok(ImportReport"), "{}", whole_report);
            proptest::prop_assert_eq!(parts_report, whole_report);
            proptest::prop_assert_eq!(parts, whole);
        }
    }

    /// Identities and the accounts offered to them are written a batch at a time;
    /// batches of one, two or all give the same store and reports.
    #[test]
    fn identities_written_in_batches_give_the_state_of_one_write() {
        let (whole, whole_reports) = run();
        assert!(whole.identity_count().unwrap_or(0) >= 9, "{whole_reports:?}");
        for batch in [1, 2, 5] {
            FORCED_BATCH.set(Some(batch));
            let (batched, reports) = run();
            FORCED_BATCH.set(None);
            assert_eq!(reports, whole_reports, "batches of {batch}");
            assert_eq!(batched, whole, "batches of {batch}");
        }
    }
}
