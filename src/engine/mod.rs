//! The engine: applies imports, approvals, outbound requests, confirmations, host edits
//! and configuration changes to a [`Store`], and returns plans and decisions. It never
//! performs I/O and never reads a clock: every call that needs time takes `now`.

mod controls;
mod direct_load;
mod edit;
pub(crate) mod import;
mod next_due;
mod outbound;
mod preview;
mod processing;

pub use controls::{ResumeReport, ResumedImport};
pub(crate) use import::AccountSource;
pub use next_due::NextDue;
pub use preview::ConfigPreview;

use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::correlation::index_spec;
use crate::diff::ImportPlan;

use crate::model::{Account, Identity, IdentityId, LinkState};
use crate::outbound::OutboundPlan;
use crate::processing::ProcessReport;

use crate::observe::DecisionCounts;
use crate::resolution::Decision;
use crate::store::{MemoryStore, Store, StoreError};
use crate::validate::ValidatedConfig;
use crate::value::Value;

// Defined with the link states it carries (an observer hands it too).
pub use crate::model::LinkEvent;

/// An account no identity is linked to ([`Engine::unlinked`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnlinkedAccount {
    /// Its system.
    pub system: String,
    /// Its key.
    pub key: String,
    /// Unmatched, or ambiguous with the identities a rule matched.
    pub state: LinkState,
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
    /// Correlation outcomes of accounts tried in this import (empty when an
    /// [`Observer::on_link`](crate::Observer::on_link) took each as it was made).
    pub links: Vec<LinkEvent>,
    /// How many resolution decisions were made, applied and rejected. Applied
    /// decisions are not kept (pass an [`Observer`] to [`Engine::import_observed`] to
    /// see each as it is made).
    ///
    /// [`Observer`]: crate::Observer
    pub decisions: DecisionCounts,
    /// The rejected decisions, each explaining itself.
    pub rejected: Vec<Decision>,
    /// Event-based processing of the identities that changed: computed attributes,
    /// role grants, scope membership, evaluation errors.
    pub processing: ProcessReport,
    /// The identities this import changed, by id (SPEC 10.1): an attribute value, a
    /// role grant or scope membership, or an account linked to or unlinked from it.
    /// Pass them to [`Engine::outbound_for`] to push the changes at once.
    #[serde(default)]
    pub changed: Vec<IdentityId>,
}

impl std::fmt::Display for ImportReport {
    /// One line: the plan, whether it was applied, its counters, rejected rows,
    /// decisions, links and changed identities; a blocked plan names every exceeded
    /// threshold.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = &self.plan;
        write!(f, "import {} of `{}`: ", plan.id, plan.system)?;
        if !self.applied {
            let why = match plan.exceeded.as_slice() {
                [] => "awaiting approval".to_owned(),
                exceeded => crate::error::join(exceeded),
            };
            return write!(f, "blocked, nothing applied ({}; {why})", plan.counts);
        }
        write!(
            f,
            "applied; {}; {} rows rejected; {}; {} accounts correlated; {} identities changed",
            plan.counts,
            plan.rejections.len(),
            self.decisions,
            self.links.len(),
            self.changed.len()
        )
    }
}

/// The result of approving a blocked plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per approval; boxing the plan would change the public API"
)]
pub enum Approval {
    /// An import plan, now applied.
    Import(Box<ImportReport>),
    /// An outbound plan, released: the host carries out its ops and confirms them.
    Outbound(OutboundPlan),
}

/// The result of confirming applied ops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConfirmReport {
    /// Accounts created in the mirror.
    pub created: usize,
    /// Accounts updated in the mirror.
    pub updated: usize,
    /// Accounts deleted from the mirror (and unlinked).
    #[serde(default)]
    pub deleted: usize,
    /// The identities an account was linked to (created) or unlinked from (deleted),
    /// by id (SPEC 10.1).
    #[serde(default)]
    pub changed: Vec<IdentityId>,
}

impl std::fmt::Display for ConfirmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "confirmed: {} accounts created, {} updated, {} deleted; {} identities linked or unlinked",
            self.created,
            self.updated,
            self.deleted,
            self.changed.len()
        )
    }
}

/// The identity attribute sync engine over a store (by default [`MemoryStore`]).
///
/// Every call takes the time it happens at (`now`); the engine has no clock, does no
/// I/O and returns plain values: the host carries out the plans it hands back and
/// confirms what succeeded.
///
/// # Example
/// HR is authoritative for `title`; the directory receives it.
/// ```
/// use attrflow::{Engine, Op, Snapshot, ValidatedConfig};
/// use chrono::{TimeZone, Utc};
/// use serde_json::json;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ValidatedConfig::from_json(&json!({
///     "identity": { "attributes": {
///         "employeeNumber": { "type": "string" }, "title": { "type": "string" } } },
///     "systems": {
///         "hr": {
///             "schema": { "account_id": "id", "account_name": "id", "attributes": {
///                 "id": { "type": "string" }, "title": { "type": "string" } } },
///             "authoritative": true,
///             "correlation": [[{ "account": "id", "identity": "employeeNumber" }]],
///             "flows": [
///                 { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100 },
///                 { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50 } ] },
///         "ad": {
///             "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
///                 "sam": { "type": "string" }, "employeeID": { "type": "string" }, "title": { "type": "string" } } },
///             "correlation": [[{ "account": "employeeID", "identity": "employeeNumber" }]],
///             "flows": [ { "account": "title", "identity": "title", "direction": "outbound" } ] } }
/// }).to_string())?;
/// let mut engine = Engine::new(config);
/// let now = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
///
/// let hr: Snapshot = serde_json::from_value(json!({ "mode": "complete", "columns": ["id", "title"],
///     "rows": [{ "id": "E1", "title": "Engineer" }] }))?;
/// let report = engine.import("hr", &hr, now)?;
/// assert!(report.applied);
///
/// let ad: Snapshot = serde_json::from_value(json!({ "mode": "complete",
///     "columns": ["sam", "employeeID", "title"], "rows": [{ "sam": "jdoe", "employeeID": "E1", "title": "Intern" }] }))?;
/// let _ = engine.import("ad", &ad, now)?;
///
/// // The directory's title differs from the identity's: one update op.
/// let plan = engine.outbound("ad", now)?;
/// let Op::Update(update) = &plan.ops[0] else { panic!("{plan}") };
/// assert_eq!(update.set["title"].as_str(), Some("Engineer"));
/// // ... carried out by the host, then confirmed:
/// let _ = engine.confirm(&plan.ops, now)?;
/// assert!(engine.outbound("ad", now)?.ops.is_empty());
/// # Ok(())
/// # }
/// ```
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

    // ---------------------------------------------------------------- queries

    /// One identity.
    pub fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        self.store.identity(id)
    }

    /// One stored account (`key` as the system gives it; matched ignoring case when the
    /// key attribute ignores case).
    pub fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        let exact = self.config.system(system).is_none_or(SystemConfig::key_case_exact);
        let key = if exact { key.to_owned() } else { key.to_lowercase() };
        self.store.account(system, &key)
    }

    /// Identities whose `attribute` holds `value` (compared with the attribute's
    /// `case_exact`), by id. An attribute that correlation or a reference matches on is
    /// looked up in the store's index; any other is found by a scan of every identity.
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
        if index_spec(&self.config).iter().any(|(name, _)| name == attribute) {
            return self
                .store
                .find_identities(attribute, &wanted.match_key(decl.case_exact));
        }
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

    /// Up to `limit` identities in id order, starting after `after` (`None`: from the
    /// first): page through every identity by passing the last id of one page as the
    /// `after` of the next. A host finds who needs an account this way without using
    /// the [`Store`] trait.
    pub fn identities(&self, after: Option<IdentityId>, limit: usize) -> Result<Vec<Identity>, StoreError> {
        let mut page = Vec::new();
        self.store.visit_identities_after(after, &mut |identity| {
            if page.len() < limit {
                page.push(identity.clone());
            }
            page.len() < limit
        })?;
        Ok(page)
    }

    /// Accounts currently not linked: unmatched and ambiguous accounts, sorted by
    /// system and key. Accounts waiting in a paused engine's inbox are left
    /// out until resume has correlated them.
    pub fn unlinked(&self) -> Result<Vec<UnlinkedAccount>, StoreError> {
        // An account waiting in a paused engine's inbox has not been tried by
        // correlation yet: it is neither unmatched nor ambiguous (SPEC 6).
        let state = self.store.engine_state()?;
        let waiting: std::collections::HashSet<(&str, &str)> = state
            .inbox
            .iter()
            .map(|e| (e.system.as_str(), e.work.account.as_str()))
            .collect();
        let mut out = Vec::new();
        for system in self.config.systems.keys() {
            self.store.visit_accounts(system, &mut |a| {
                if a.identity().is_none() && !waiting.contains(&(system.as_str(), a.key.as_str())) {
                    out.push(UnlinkedAccount {
                        system: system.to_string(),
                        key: a.key.clone(),
                        state: a.link.clone(),
                    });
                }
            })?;
        }
        out.sort_by(|a, b| (&a.system, &a.key).cmp(&(&b.system, &b.key)));
        Ok(out)
    }
}
