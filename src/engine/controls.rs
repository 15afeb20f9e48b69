//! Engine pause and resume (SPEC 6) and sync-loop reports (SPEC 5.3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::controls::{ControlError, InboxEntry, OutboxEntry, SyncLoop, LOOP_LIMIT};
use crate::diff::ChangeKind;
use crate::engine::import::Item;
use crate::engine::{Engine, LinkEvent};
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
    pub fn pause(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = now;
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
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<ResumeReport, ControlError> {
        self.resume_observed(now, &mut Observer::new())
    }

    /// [`Engine::resume`], showing every decision and the progress to `observer`.
    pub fn resume_observed(
        &mut self,
        now: DateTime<Utc>,
        observer: &mut Observer<'_>,
    ) -> Result<ResumeReport, ControlError> {
        let _ = now;
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
            let mut imports = Vec::new();
            // Consecutive entries of one import are resolved together, as they would
            // have been had the engine not been paused.
            let mut batches: Vec<(PlanId, String, DateTime<Utc>, Vec<crate::controls::AccountWork>)> = Vec::new();
            for entry in inbox {
                match batches.last_mut() {
                    Some((plan, _, _, works)) if *plan == entry.plan => works.push(entry.work),
                    _ => batches.push((entry.plan, entry.system, entry.at, vec![entry.work])),
                }
            }
            for (plan, system, at, works) in batches {
                let Some(config) = self.config.system(&system).cloned() else {
                    continue;
                };
                // The accounts as they are now (one may have gone since, by a later
                // import while paused); correlation links the unlinked ones.
                let mut accounts = Vec::new();
                let mut items = Vec::new();
                for work in &works {
                    if work.kind == ChangeKind::Delete {
                        if let Some(identity) = work.previous_link {
                            items.push(Item::Deleted {
                                key: &work.account,
                                identity,
                                held: &work.attributes,
                            });
                        }
                    } else if let Some(account) = self.store.account(&system, &work.account)? {
                        items.push(Item::Present {
                            account: accounts.len(),
                            changed: &work.attributes,
                        });
                        accounts.push(account);
                    }
                }
                let unlinked: Vec<bool> = accounts.iter().map(|a| a.identity().is_none()).collect();
                let mut log = DecisionLog::new(observer);
                let (links, processing) = self.identity_phase(&system, &config, at, &mut accounts, &items, &mut log)?;
                let correlated = accounts.into_iter().zip(unlinked).filter(|(_, u)| *u).map(|(a, _)| a);
                self.store.put_accounts(&system, correlated.collect())?;
                imports.push(ResumedImport {
                    plan,
                    system,
                    links,
                    decisions: log.counts,
                    rejected: log.rejected,
                    processing,
                });
            }
            Ok::<_, StoreError>(imports)
        })();
        match result {
            Ok(imports) => {
                self.store.commit()?;
                Ok(ResumeReport {
                    imports,
                    outbox_discarded,
                })
            }
            Err(e) => {
                self.store.rollback();
                Err(e.into())
            }
        }
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
                            attribute: attribute.clone(),
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
