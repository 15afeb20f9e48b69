//! The preview of a configuration change (SPEC 12.2): what replacing the configuration,
//! then processing every identity, then an outbound plan per system would do, computed
//! on a copy of the state so that nothing stored changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::ConfigChangeError;
use crate::model::IdentityId;
use crate::outbound::OutboundPlan;
use crate::processing::ProcessReport;
use crate::schema_change::ConfigChange;
use crate::store::{MemoryStore, Store, StoreError};
use crate::validate::ValidatedConfig;

/// What a configuration change would do (see [`Engine::preview_config`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
pub struct ConfigPreview {
    /// What the replacement would do to stored data (forced conflicts, rewritten
    /// systems, dropped values, identities whose scope membership moves).
    pub change: ConfigChange,
    /// Manual processing of every identity under the new configuration: computed
    /// attribute changes (`changes`), role grant changes (`access`), scope changes and
    /// evaluation errors (`applied` is `false`: nothing was).
    pub processing: ProcessReport,
    /// Each system's outbound plan afterwards, in configuration order, with its
    /// counters and exceeded thresholds. A blocked one is not kept for approval.
    pub plans: Vec<OutboundPlan>,
}

impl<S: Store> Engine<S> {
    /// Previews a configuration change (SPEC 12.2): what
    /// [`replace_config(config, force, now)`](Engine::replace_config), then
    /// [`process_identities`](Engine::process_identities) of every identity, then
    /// [`outbound(system, now)`](Engine::outbound) of every system would do. A refused
    /// change returns the same error `replace_config` would. Nothing changes: the work
    /// runs on an in-memory copy of the state (read through the [`Store`] trait, so it
    /// costs memory in proportion to the store).
    pub fn preview_config(
        &self,
        config: ValidatedConfig,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<ConfigPreview, ConfigChangeError> {
        let mut scratch = Engine::with_store(self.config.clone(), self.state_copy()?)?;
        let change = scratch.replace_config(config, force, now)?;
        let mut ids: Vec<IdentityId> = Vec::new();
        scratch.store.visit_identities(&mut |i| ids.push(i.id))?;
        let mut processing = scratch.process_identities(&ids, now)?;
        processing.applied = false;
        let systems: Vec<String> = scratch.config.systems.keys().map(ToString::to_string).collect();
        let mut plans = Vec::with_capacity(systems.len());
        for system in systems {
            match scratch.outbound(&system, now) {
                Ok(plan) => plans.push(plan),
                Err(crate::error::OutboundError::Store(e)) => return Err(e.into()),
                // Every system of the new configuration is known to it.
                Err(_) => {}
            }
        }
        Ok(ConfigPreview {
            change,
            processing,
            plans,
        })
    }

    /// The stored state, copied into a [`MemoryStore`]: identities, every configured
    /// system's accounts and version, pending plans and the engine state.
    fn state_copy(&self) -> Result<MemoryStore, StoreError> {
        let mut copy = MemoryStore::new();
        let mut identities = Vec::new();
        self.store.visit_identities(&mut |i| identities.push(i.clone()))?;
        copy.put_identities(identities)?;
        for system in self.config.systems.keys() {
            let mut accounts = Vec::new();
            self.store.visit_accounts(system, &mut |a| accounts.push(a.clone()))?;
            copy.put_accounts(system, accounts)?;
            copy.set_system_version(system, self.store.system_version(system)?);
        }
        for plan in self.store.pending_plans()? {
            copy.put_pending_plan(plan)?;
        }
        copy.put_engine_state(self.store.engine_state()?)?;
        Ok(copy)
    }
}
