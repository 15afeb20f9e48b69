//! Engine pause and resume (SPEC 6) and sync-loop reports (SPEC 5.3).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::controls::{ControlError, InboxEntry, OutboxEntry, SyncLoop, LOOP_LIMIT};
use crate::diff::ChangeKind;
use crate::engine::import::{Find, Item, Mirror};
use crate::engine::{Engine, LinkEvent};
use crate::model::IdentityId;
use crate::model::{Account, LinkState};
use crate::observe::{DecisionCounts, DecisionLog, Observer};
use crate::outbound::Op;
use crate::resolution::Decision;
use crate::store::{PlanId, Store, StoreError};

/// What resume did: the inbox applied import by import, in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
pub struct ResumeReport {
    /// Per queued import: its plan, system, correlation outcomes and decisions.
    pub imports: Vec<ResumedImport>,
    /// How many held outbound ops were discarded (the next request computes afresh).
    pub outbox_discarded: usize,
    /// Inbox entries not applied because their system is no longer configured (the
    /// configuration was replaced while paused).
    #[serde(default)]
    pub dropped: Vec<InboxEntry>,
    /// Every identity the queued imports changed, by id (SPEC 10.1).
    #[serde(default)]
    pub changed: Vec<IdentityId>,
}

impl std::fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resumed: {} queued imports applied, {} held ops discarded, {} inbox entries dropped (system no longer configured), {} identities changed",
            self.imports.len(),
            self.outbox_discarded,
            self.dropped.len(),
            self.changed.len()
        )
    }
}

/// The identity-side outcome of one queued import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResumedImport {
    /// The import plan.
    pub plan: PlanId,
    /// The system.
    pub system: String,
    /// Correlation outcomes.
    pub links: Vec<LinkEvent>,
    /// How many resolution decisions were made.
    pub decisions: DecisionCounts,
    /// The rejected decisions, each explaining itself.
    pub rejected: Vec<Decision>,
    /// Event-based processing of the identities that changed.
    pub processing: crate::processing::ProcessReport,
    /// The identities this import changed, by id (SPEC 10.1).
    #[serde(default)]
    pub changed: Vec<IdentityId>,
}

impl<S: Store> Engine<S> {
    /// Whether the engine is paused.
    pub fn is_paused(&self) -> Result<bool, StoreError> {
        Ok(self.store.engine_state()?.paused)
    }

    /// Pauses the engine: imports still prepare, diff and update account mirrors, but
    /// what they would do to identities waits in the inbox (one entry per changed
    /// account); outbound requests return no ops and hold them in the outbox. Pausing a
    /// paused engine does nothing.
    pub fn pause(&mut self) -> Result<(), StoreError> {
        let mut state = self.store.engine_state()?;
        if !state.paused {
            state.paused = true;
            self.store.put_engine_state(state)?;
        }
        Ok(())
    }

    /// The inbox of a paused engine, in arrival order.
    pub fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        Ok(self.store.engine_state()?.inbox)
    }

    /// The outbox of a paused engine.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.store.engine_state()?.outbox)
    }

    /// Resumes: applies the inbox in arrival order (each queued import's correlation,
    /// projection and resolution, its candidates keeping the import's time), then empties
    /// the outbox; the next outbound request computes afresh.
    pub fn resume(&mut self) -> Result<ResumeReport, ControlError> {
        self.resume_observed(&mut Observer::new())
    }

    /// [`Engine::resume`], showing every decision and the progress to `observer`.
    pub fn resume_observed(&mut self, observer: &mut Observer<'_>) -> Result<ResumeReport, ControlError> {
        let mut state = self.store.engine_state()?;
        if !state.paused {
            return Err(ControlError::NotPaused);
        }
        let inbox = std::mem::take(&mut state.inbox);
        let outbox_discarded = state.outbox.len();
        state.outbox.clear();
        state.paused = false;
        self.store.begin()?;
        let result = (|| {
            self.store.put_engine_state(state)?;
            // Each entry is applied exactly as its import would have applied it
            // unpaused (SPEC 6): with the account as that import left it, not as later
            // paused imports changed it since.
            let left = self.accounts_as_left(&inbox)?;
            let mut imports = Vec::new();
            let mut dropped = Vec::new();
            // Links made by correlation during this resume, for later entries.
            let mut linked: HashMap<(String, String), LinkState> = HashMap::new();
            // Consecutive entries of one import are resolved together, as they would
            // have been had the engine not been paused.
            let mut batches: Vec<(PlanId, String, DateTime<Utc>, Vec<usize>)> = Vec::new();
            for (index, entry) in inbox.iter().enumerate() {
                match batches.last_mut() {
                    Some((plan, _, _, entries)) if *plan == entry.plan => entries.push(index),
                    _ => batches.push((entry.plan, entry.system.clone(), entry.at, vec![index])),
                }
            }
            for (plan, system, at, entries) in batches {
                let Some(config) = self.config.system(&system).cloned() else {
                    // The system left the configuration while paused: said, not silent.
                    dropped.extend(entries.iter().filter_map(|&i| inbox.get(i)).cloned());
                    continue;
                };
                let mut accounts = Vec::new();
                let mut items = Vec::new();
                for &index in &entries {
                    let (Some(entry), Some(state)) = (inbox.get(index), left.get(index)) else {
                        continue;
                    };
                    let work = &entry.work;
                    if work.kind == ChangeKind::Delete {
                        if let Some(identity) = work.previous_link {
                            items.push(Item::Deleted {
                                key: &work.account,
                                identity,
                                held: &work.attributes,
                            });
                        }
                    } else if let Some(account) = state {
                        let mut account = account.clone();
                        if let Some(link) = linked.get(&(system.clone(), work.account.clone())) {
                            account.link = link.clone();
                        }
                        items.push(Item::Present {
                            account: accounts.len(),
                            changed: &work.attributes,
                        });
                        accounts.push(account);
                    }
                }
                let unlinked: Vec<bool> = accounts.iter().map(|a| a.identity().is_none()).collect();
                let mut log = DecisionLog::new(observer);
                let mut lent: Vec<Option<Account>> = accounts.into_iter().map(Some).collect();
                let outcome = self.identity_phase(
                    &system,
                    &config,
                    at,
                    &mut lent,
                    &items,
                    &mut log,
                    Mirror::Keep,
                    Find::InStore,
                )?;
                let accounts = lent.into_iter().flatten();
                // Only the links are written: the stored accounts keep their values.
                let mut correlated = Vec::new();
                for (account, _) in accounts.into_iter().zip(unlinked).filter(|(_, u)| *u) {
                    linked.insert((system.clone(), account.key.clone()), account.link.clone());
                    if let Some(mut stored) = self.store.account(&system, &account.key)? {
                        if stored.link != account.link {
                            stored.link = account.link;
                            correlated.push(stored);
                        }
                    }
                }
                self.store.put_accounts(&system, correlated)?;
                imports.push(ResumedImport {
                    plan,
                    system,
                    links: outcome.links,
                    decisions: log.counts,
                    rejected: log.rejected,
                    processing: outcome.processing,
                    changed: outcome.changed,
                });
            }
            Ok::<_, StoreError>((imports, dropped))
        })();
        match result {
            Ok((imports, dropped)) => {
                self.store.commit()?;
                let mut changed: Vec<IdentityId> = imports.iter().flat_map(|i| i.changed.iter().copied()).collect();
                changed.sort_unstable();
                changed.dedup();
                Ok(ResumeReport {
                    changed,
                    imports,
                    outbox_discarded,
                    dropped,
                })
            }
            Err(e) => {
                self.store.rollback();
                Err(e.into())
            }
        }
    }

    /// The account each inbox entry's import left, by entry: the stored account with
    /// the changes of later entries undone, newest first (`None`: deleted then).
    fn accounts_as_left(&self, inbox: &[InboxEntry]) -> Result<Vec<Option<Account>>, StoreError> {
        let mut left: Vec<Option<Account>> = vec![None; inbox.len()];
        // Per account, its state before the entries walked so far (walking backwards).
        let mut before: HashMap<(&str, &str), Option<Account>> = HashMap::new();
        for (index, entry) in inbox.iter().enumerate().rev() {
            let key = (entry.system.as_str(), entry.work.account.as_str());
            let after = match before.remove(&key) {
                Some(state) => state,
                None => self.store.account(&entry.system, &entry.work.account)?,
            };
            let earlier = match entry.work.kind {
                ChangeKind::Insert => None,
                ChangeKind::Update | ChangeKind::Delete => {
                    let mut account = after.clone().unwrap_or_else(|| Account::new(&entry.work.account));
                    for change in &entry.work.attributes {
                        account.set(&change.attribute, change.old.clone());
                    }
                    Some(account)
                }
            };
            if let Some(slot) = left.get_mut(index) {
                *slot = after;
            }
            before.insert(key, earlier);
        }
        Ok(left)
    }

    /// Holds ops in the outbox of a paused engine, replacing what an earlier request
    /// for the same system held.
    pub(crate) fn hold(&mut self, system: &str, ops: Vec<Op>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.store.engine_state()?;
        state.outbox.retain(|e| e.system != system);
        state.outbox.extend(ops.into_iter().map(|op| OutboxEntry {
            system: system.to_owned(),
            at: now,
            op,
        }));
        self.store.put_engine_state(state)
    }

    /// Every account attribute whose pushed value came back different three times in a
    /// row, sorted: these are not pushed again until cleared.
    pub fn loops(&self) -> Result<Vec<SyncLoop>, StoreError> {
        let mut found = Vec::new();
        for system in self.config.systems.keys() {
            self.store.visit_accounts(system, &mut |a| {
                for (attribute, echo) in &a.echoes {
                    if echo.bounces >= LOOP_LIMIT {
                        found.push(SyncLoop {
                            system: system.clone().into(),
                            account: a.key.clone(),
                            attribute: attribute.to_string(),
                        });
                    }
                }
            })?;
        }
        found.sort();
        Ok(found)
    }

    /// Clears a sync loop: the attribute is pushed again by the next outbound request.
    pub fn clear_loop(&mut self, system: &str, account: &str, attribute: &str) -> Result<(), ControlError> {
        let not_found = || ControlError::NoSuchLoop {
            system: system.to_owned(),
            account: account.to_owned(),
            attribute: attribute.to_owned(),
        };
        let Some(mut stored) = self.account(system, account)? else {
            return Err(not_found());
        };
        match stored.echoes.get_mut(attribute) {
            Some(echo) if echo.bounces >= LOOP_LIMIT => {
                echo.bounces = 0;
                echo.armed = false;
            }
            _ => return Err(not_found()),
        }
        self.store.put_accounts(system, vec![stored])?;
        Ok(())
    }
}
