//! Persistence, supplied by the host: the [`Store`] trait and [`MemoryStore`], the
//! in-memory default.
//!
//! # Contract
//! The trait is synchronous, object-safe and batch-oriented (`put_*` take many records).
//! The engine calls it only from its own methods, never concurrently. Reads must see
//! every write made before them (read-your-writes). A store that fails returns a
//! [`StoreError`]; the engine then stops the operation and returns the error. The
//! engine runs every check that can refuse an operation *before* its first write, so
//! with an infallible store (like [`MemoryStore`]) a refused operation changes nothing;
//! a fallible store should wrap [`Store::begin`] .. [`Store::commit`] in a transaction
//! and undo on [`Store::rollback`].
//!
//! `find_identities` needs an index over the attributes named by
//! [`Store::set_index`]; the engine calls it whenever the configuration changes.

mod in_line;
mod loaded;
mod memory;

pub(crate) use in_line::{in_line_on_records, lent_only};
pub use in_line::{InLine, InLinePair, LinkedAccount};
pub use loaded::{put_owned, LoadedFlow, LoadedPart, LoadedRow};
pub use memory::persist::DecodeError;
pub use memory::MemoryStore;

use serde::{Deserialize, Serialize};

use crate::controls::{InboxEntry, OutboxEntry};
use crate::diff::ImportPlan;
use crate::model::{Account, Identity, IdentityId, PendingCreate};
use crate::outbound::OutboundPlan;
use crate::text::Text;
use crate::thresholds::Base;

/// An identity's pending creates by system, in system name order (see
/// [`Store::visit_pending_creates_by_id`]).
pub type PendingCreates = [(Text, PendingCreate)];

/// A failure of the host's persistence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store failed: {message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store failure with a description.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
        }
    }
    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The id of a blocked plan awaiting approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub(crate) u64);

impl PlanId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
    /// An id from its number (for stores that persist ids).
    pub fn from_raw(raw: u64) -> PlanId {
        PlanId(raw)
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plan #{}", self.0)
    }
}

/// A blocked plan kept for review, with the system version it was computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PendingPlan {
    /// A blocked import.
    Import(ImportPlan),
    /// A blocked outbound (or provisioning) plan.
    Outbound(OutboundPlan),
}

impl PendingPlan {
    /// The plan's id.
    pub fn id(&self) -> PlanId {
        match self {
            PendingPlan::Import(p) => p.id,
            PendingPlan::Outbound(p) => p.id,
        }
    }
    /// The system the plan is for.
    pub fn system(&self) -> &str {
        match self {
            PendingPlan::Import(p) => &p.system,
            PendingPlan::Outbound(p) => &p.system,
        }
    }
}

/// Engine-wide state the store keeps as one opaque, versioned value: the pause flag
/// and the inbox / outbox of a paused engine (SPEC 6). Stores persist it as a whole
/// (for example as one JSON document); its fields may grow between versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EngineState {
    /// Whether the engine is paused.
    #[serde(default)]
    pub paused: bool,
    /// Identity-side work waiting for resume, in arrival order.
    #[serde(default)]
    pub inbox: Vec<InboxEntry>,
    /// Outbound ops held while paused.
    #[serde(default)]
    pub outbox: Vec<OutboxEntry>,
}

/// One change of [`Store::update_pending_creates`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingCreateChange {
    /// The identity changed.
    pub identity: IdentityId,
    /// The system of the create.
    pub system: Text,
    /// The create handed out (`None`: the system's pending create is forgotten).
    pub create: Option<PendingCreate>,
}

/// What a complete import reads of a stored account whose row hashes as its values
/// did when stored: its link and echo state, not its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountSummary {
    /// [`Account::fingerprint`] as stored (0: unknown, the values are compared).
    pub fingerprint: u64,
    /// Whether the account is linked to an identity (an unlinked one is correlated
    /// again).
    pub linked: bool,
    /// Whether a pushed value of the account is bouncing or awaits its next import
    /// (SPEC 5.3): the import looks at it again.
    pub echo_pending: bool,
}

impl AccountSummary {
    /// The summary of a stored account.
    pub fn of(account: &Account) -> AccountSummary {
        AccountSummary {
            fingerprint: account.fingerprint,
            linked: account.identity().is_some(),
            echo_pending: account.echoes.values().any(crate::model::Echo::is_pending),
        }
    }
}

impl PendingCreateChange {
    /// A change of one identity's pending create in one system.
    pub fn new(identity: IdentityId, system: Text, create: Option<PendingCreate>) -> PendingCreateChange {
        PendingCreateChange {
            identity,
            system,
            create,
        }
    }

    /// Applies the change to an identity record.
    pub fn apply(&self, identity: &mut Identity) {
        self.apply_to(&mut identity.pending_creates);
    }

    /// Applies the change to an identity's pending creates (for a store that keeps
    /// them apart from the rest of the record).
    pub fn apply_to(&self, pending_creates: &mut std::collections::BTreeMap<Text, PendingCreate>) {
        match &self.create {
            Some(create) => {
                pending_creates.insert(self.system.clone(), create.clone());
            }
            None => {
                pending_creates.remove(self.system.as_str());
            }
        }
    }
}

/// Persistence for identities, accounts, links, provenance and pending plans.
pub trait Store: std::fmt::Debug {
    /// Starts a unit of work; everything until [`Store::commit`] belongs to it.
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Makes the unit of work permanent.
    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Abandons the unit of work after a failure.
    fn rollback(&mut self) {}

    /// Declares which identity attributes `find_identities` must answer for, with
    /// whether each compares exactly (`true`) or ignoring case.
    fn set_index(&mut self, attributes: &[(String, bool)]) -> Result<(), StoreError>;

    /// One account of a system.
    fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError>;
    /// Calls `visit` once per key with the key's position in `keys` and its stored
    /// account (`None` when absent), in any order, lending the account instead of
    /// copying it. The default reads each with [`Store::account`]; a store that can lend
    /// its records (like [`MemoryStore`]) should override it: a complete import reads
    /// every stored account of the system through it.
    fn visit_accounts_by_key(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<(), StoreError> {
        for (index, key) in keys.iter().enumerate() {
            let account = self.account(system, key)?;
            visit(index, account.as_ref());
        }
        Ok(())
    }
    /// [`Store::visit_accounts_by_key`], then calls `others` once for every stored
    /// account of the system whose key is not in `keys`, in any order: a complete
    /// import finds its deletes this way. The default visits every account and skips
    /// the keys by a set of them; a store that can tell which records it lent (like
    /// [`MemoryStore`], by position) should override it.
    fn visit_accounts_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
        others: &mut dyn FnMut(&Account),
    ) -> Result<(), StoreError> {
        self.visit_accounts_by_key(system, keys, visit)?;
        let wanted: std::collections::HashSet<&str> = keys.iter().copied().collect();
        self.visit_accounts(system, &mut |account| {
            if !wanted.contains(account.key.as_str()) {
                others(account);
            }
        })
    }
    /// [`Store::visit_accounts_by_key_and_others`] lending summaries instead of
    /// accounts, and only the keys of the others: a complete import reads every
    /// stored account of the system through it and decodes only those whose
    /// fingerprint differs from their row's. The default summarises the lent accounts;
    /// a store that keeps encoded records (like [`MemoryStore`]) should override it.
    fn visit_account_summaries_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<AccountSummary>),
        others: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError> {
        self.visit_accounts_by_key_and_others(
            system,
            keys,
            &mut |index, account| visit(index, account.map(AccountSummary::of)),
            &mut |account| others(&account.key),
        )
    }
    /// Calls `visit` for every account of a system, in any order.
    fn visit_accounts(&self, system: &str, visit: &mut dyn FnMut(&Account)) -> Result<(), StoreError>;
    /// How many accounts and multi-valued values a system holds.
    fn account_base(&self, system: &str) -> Result<Base, StoreError>;
    /// Inserts or replaces accounts of a system.
    fn put_accounts(&mut self, system: &str, accounts: Vec<Account>) -> Result<(), StoreError>;
    /// Removes accounts of a system (absent keys are ignored).
    fn remove_accounts(&mut self, system: &str, keys: &[String]) -> Result<(), StoreError>;
    /// Removes every account of a system.
    fn remove_system(&mut self, system: &str) -> Result<(), StoreError>;
    /// `(system, key)` of every account linked to an identity, sorted.
    fn accounts_of(&self, identity: IdentityId) -> Result<Vec<(String, String)>, StoreError>;
    /// `(identity, key)` of every account of a system linked to an identity, in any
    /// order: a batch of provisioning requests or confirmations checks which identities
    /// already hold an account of the system with one call instead of one
    /// [`Store::accounts_of`] each. The default visits every account of the system; a
    /// store with an index by identity should answer from it.
    fn linked_accounts(&self, system: &str) -> Result<Vec<(IdentityId, String)>, StoreError> {
        let mut linked = Vec::new();
        self.visit_accounts(system, &mut |account| {
            if let Some(id) = account.identity() {
                linked.push((id, account.key.clone()));
            }
        })?;
        Ok(linked)
    }

    /// One identity.
    fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError>;
    /// Calls `visit` with one identity (`None` when absent), lending it instead of
    /// copying it. The default reads it with [`Store::identity`]; a store that can lend
    /// its records (like [`MemoryStore`]) should override it: an outbound plan reads the
    /// identity of every linked account of the system through it.
    fn with_identity(&self, id: IdentityId, visit: &mut dyn FnMut(Option<&Identity>)) -> Result<(), StoreError> {
        let identity = self.identity(id)?;
        visit(identity.as_ref());
        Ok(())
    }
    /// [`Store::visit_linked_accounts`] for a reader of only the values of the identity
    /// attributes `reading`: a store may lend identities holding only those values
    /// (everything else an identity holds is kept). The whole-system outbound plan reads
    /// through it the attributes its rules and their transforms read. The default lends
    /// whole identities.
    fn visit_linked_accounts_reading(
        &self,
        system: &str,
        reading: &[&str],
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        let _ = reading;
        self.visit_linked_accounts(system, visit)
    }
    /// [`Store::visit_linked_accounts_reading`] for a whole-system outbound plan that can
    /// skip accounts already in line with their identities: each account `in_line`
    /// holds for (see [`InLine`]) may be reported as [`LinkedAccount::InLine`] with its
    /// identity's id instead of being lent; the others are lent. The default lends
    /// every account; a store that can run the check on its records without decoding
    /// them (as [`MemoryStore`] does) saves the plan most of its time. Either way the
    /// plan is the same.
    fn visit_linked_accounts_out_of_line(
        &self,
        system: &str,
        reading: &[&str],
        in_line: &InLine,
        visit: &mut dyn FnMut(LinkedAccount<'_>),
    ) -> Result<(), StoreError> {
        let _ = in_line;
        self.visit_linked_accounts_reading(system, reading, &mut |account, identity| {
            visit(LinkedAccount::Lent(account, identity));
        })
    }
    /// [`Store::visit_identities_by_id`] for a reader of only the values of the identity
    /// attributes `reading` (see [`Store::visit_linked_accounts_reading`]): provisioning
    /// reads through it. The default lends whole identities.
    fn visit_identities_by_id_reading(
        &self,
        ids: &[IdentityId],
        reading: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        let _ = reading;
        self.visit_identities_by_id(ids, visit)
    }
    /// [`Store::visit_identities_by_id_reading`] for a `visit` that may be called from
    /// several threads at once (still once per id): the work a batch does per identity
    /// then runs where the store decodes. Provisioning many identities builds its
    /// create ops through it. On an error, some ids may have been visited. The default
    /// visits in the calling thread, one id at a time.
    fn visit_identities_by_id_reading_shared(
        &self,
        ids: &[IdentityId],
        reading: &[&str],
        visit: &(dyn Fn(usize, Option<&Identity>) + Sync),
    ) -> Result<(), StoreError> {
        self.visit_identities_by_id_reading(ids, reading, &mut |at, identity| visit(at, identity))
    }
    /// Calls `visit` for every account of a system linked to an identity, with that
    /// identity, in any order, lending both: an outbound plan over the whole system
    /// reads every pair. The default visits the accounts and reads each identity with
    /// [`Store::with_identity`]; a database store should read the pairs with one join.
    fn visit_linked_accounts(
        &self,
        system: &str,
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        let mut failure = None;
        self.visit_accounts(system, &mut |account| {
            let Some(id) = account.identity() else { return };
            if failure.is_some() {
                return;
            }
            let read = self.with_identity(id, &mut |identity| {
                if let Some(identity) = identity {
                    visit(account, identity);
                }
            });
            if let Err(err) = read {
                failure = Some(err);
            }
        })?;
        failure.map_or(Ok(()), Err)
    }
    /// Calls `visit` once per id with the id's position in `ids` and its identity
    /// (`None` when absent), in any order, lending it. The default calls
    /// [`Store::with_identity`] per id; a store that pays per query (like a database)
    /// should read many ids in few queries: provisioning and confirmation read every
    /// identity of their batch through it.
    fn visit_identities_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        for (index, &id) in ids.iter().enumerate() {
            self.with_identity(id, &mut |identity| visit(index, identity))?;
        }
        Ok(())
    }
    /// Calls `visit` once per id with the id's position in `ids` and the pending creates
    /// of its identity by system, in system name order (`None` when the identity is
    /// absent), in any order: what confirming a batch of creates checks, without the
    /// identities' values. The default reads the identities with
    /// [`Store::visit_identities_by_id`]; a store that keeps pending creates apart from
    /// the values should answer from them.
    fn visit_pending_creates_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&PendingCreates>),
    ) -> Result<(), StoreError> {
        let mut listed: Vec<(Text, PendingCreate)> = Vec::new();
        self.visit_identities_by_id(ids, &mut |index, identity| {
            listed.clear();
            if let Some(identity) = identity {
                listed.extend(identity.pending_creates.iter().map(|(s, c)| (s.clone(), c.clone())));
            }
            visit(index, identity.map(|_| listed.as_slice()));
        })
    }
    /// Calls `visit` for the identities with ids above `after` (every identity for
    /// `None`), in id order, until it returns `false`. The default visits every
    /// identity with [`Store::visit_identities`], skipping those up to `after`; a store
    /// ordered by id (like [`MemoryStore`]) should start at `after` instead.
    fn visit_identities_after(
        &self,
        after: Option<IdentityId>,
        visit: &mut dyn FnMut(&Identity) -> bool,
    ) -> Result<(), StoreError> {
        let mut going = true;
        self.visit_identities(&mut |identity| {
            if going && after.is_none_or(|a| identity.id > a) {
                going = visit(identity);
            }
        })
    }
    /// Calls `visit` for every identity, in id order.
    fn visit_identities(&self, visit: &mut dyn FnMut(&Identity)) -> Result<(), StoreError>;
    /// Number of identities.
    fn identity_count(&self) -> Result<usize, StoreError>;
    /// Identities whose indexed `attribute` holds a value whose match key (see
    /// [`crate::Scalar::match_key`]) is `match_key`, sorted by id.
    fn find_identities(&self, attribute: &str, match_key: &str) -> Result<Vec<IdentityId>, StoreError>;
    /// Inserts or replaces identities.
    fn put_identities(&mut self, identities: Vec<Identity>) -> Result<(), StoreError>;
    /// Writes a part of a first load: new accounts of one system, each linked to the new
    /// identity projected from it (neither the keys nor the ids are stored yet). The
    /// default builds the accounts and identities ([`put_owned`]); a store may write
    /// its records from the rows without them, as the memory store does (keeping each
    /// identity as a reference to its account's values until that account changes).
    fn put_loaded(&mut self, part: &LoadedPart<'_>) -> Result<(), StoreError> {
        put_owned(self, part)
    }
    /// Remembers (`Some`) or forgets (`None`) the pending create of a system on
    /// identities ([`Identity::pending_creates`]); absent identities are skipped. The
    /// default reads the identities in one batch and puts them back changed; a store
    /// holding its records in memory should change them in place: provisioning and
    /// confirming a million creates change a million identities this way.
    fn update_pending_creates(&mut self, changes: &[PendingCreateChange]) -> Result<(), StoreError> {
        let ids: Vec<IdentityId> = changes.iter().map(|c| c.identity).collect();
        let mut records: std::collections::BTreeMap<IdentityId, Identity> = std::collections::BTreeMap::new();
        self.visit_identities_by_id(&ids, &mut |_, identity| {
            if let Some(identity) = identity {
                records.entry(identity.id).or_insert_with(|| identity.clone());
            }
        })?;
        for change in changes {
            if let Some(record) = records.get_mut(&change.identity) {
                change.apply(record);
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.put_identities(records.into_values().collect())
    }
    /// Allocates the next identity id.
    fn allocate_identity_id(&mut self) -> Result<IdentityId, StoreError>;
    /// Allocates the next `count` identity ids, in order: what `count` calls of
    /// [`Store::allocate_identity_id`] give (the default makes them). A direct load takes
    /// a part's ids at once; a database store can then update its counter once.
    fn allocate_identity_ids(&mut self, count: usize) -> Result<Vec<IdentityId>, StoreError> {
        (0..count).map(|_| self.allocate_identity_id()).collect()
    }

    /// The version of a system's stored accounts (bumped by every applied change).
    fn system_version(&self, system: &str) -> Result<u64, StoreError>;
    /// Bumps a system's version.
    fn bump_system_version(&mut self, system: &str) -> Result<(), StoreError>;

    /// Allocates the next plan id.
    fn allocate_plan_id(&mut self) -> Result<PlanId, StoreError>;
    /// Keeps a blocked plan.
    fn put_pending_plan(&mut self, plan: PendingPlan) -> Result<(), StoreError>;
    /// Removes and returns a pending plan.
    fn take_pending_plan(&mut self, id: PlanId) -> Result<Option<PendingPlan>, StoreError>;
    /// Every pending plan, oldest first.
    fn pending_plans(&self) -> Result<Vec<PendingPlan>, StoreError>;

    /// The engine-wide state (default when never written).
    fn engine_state(&self) -> Result<EngineState, StoreError>;
    /// Replaces the engine-wide state.
    fn put_engine_state(&mut self, state: EngineState) -> Result<(), StoreError>;
}
