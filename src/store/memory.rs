//! The in-memory store: the embedded default.

mod identities;
pub mod persist;

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use smallvec::SmallVec;

use crate::attr_map::SharedNames;
use crate::model::{Account, Identity, IdentityId};
use crate::store::{EngineState, PendingCreateChange, PendingPlan, PlanId, Store, StoreError};
use crate::text::Text;
use crate::thresholds::Base;
use identities::IdentityTable;

/// Accounts of one system, with running totals for threshold bases.
#[derive(Debug, Default, Clone, PartialEq)]
struct SystemAccounts {
    /// By key; positioned, so that a complete import finds the accounts it did not
    /// see by position instead of by a look-up per stored account.
    accounts: IndexMap<String, Account, Fast>,
    link_values: u64,
    version: u64,
}

/// attribute -> match key -> identities holding it (sorted).
type CorrelationIndex = HashMap<String, HashMap<String, SmallVec<[IdentityId; 1]>, Fast>>;

/// The hasher of the tables keyed by account keys, identity ids and attribute values:
/// fast, and seeded per table.
type Fast = foldhash::fast::RandomState;

/// An in-memory [`Store`]: it fails only when its identity or plan ids run out, and the
/// engine writes to it only once the work cannot fail, so a refused operation leaves no
/// trace in its records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryStore {
    systems: BTreeMap<String, SystemAccounts>,
    identities: IdentityTable,
    /// identity -> linked (system, key), sorted. Almost every identity has one or a
    /// few accounts: they are kept inline, not in a tree of their own.
    links: HashMap<IdentityId, SmallVec<[(Text, String); 1]>, Fast>,
    /// attribute -> match key -> identities (sorted), for the attributes of
    /// `set_index`: looked up by borrowed names, and each entry holds one string.
    index: CorrelationIndex,
    indexed: HashMap<String, bool>,
    next_identity: u64,
    next_plan: u64,
    pending: BTreeMap<PlanId, PendingPlan>,
    state: EngineState,
    /// The lists of attribute names the stored records share (a cache: equal stores
    /// may hold different ones).
    names: SharedNames,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Sets a system's version (a copy of another store's state keeps its versions).
    pub(crate) fn set_system_version(&mut self, system: &str, version: u64) {
        self.systems.entry(system.to_owned()).or_default().version = version;
    }

    /// Adds an identity's values of the indexed attributes to the correlation index,
    /// or removes them.
    fn reindex(index: &mut CorrelationIndex, indexed: &HashMap<String, bool>, identity: &Identity, add: bool) {
        for (attribute, case_exact) in indexed.iter() {
            let values = identity.value(attribute).scalars();
            if values.is_empty() {
                continue;
            }
            if add {
                if !index.contains_key(attribute.as_str()) {
                    index.insert(attribute.clone(), HashMap::default());
                }
                let Some(by_key) = index.get_mut(attribute.as_str()) else {
                    continue;
                };
                for scalar in values {
                    insert_sorted(by_key.entry(scalar.match_key(*case_exact)).or_default(), identity.id);
                }
            } else if let Some(by_key) = index.get_mut(attribute.as_str()) {
                for scalar in values {
                    let key = scalar.match_key(*case_exact);
                    if let Some(set) = by_key.get_mut(&key) {
                        set.retain(|id| *id != identity.id);
                        if set.is_empty() {
                            by_key.remove(&key);
                        }
                    }
                }
                if by_key.is_empty() {
                    index.remove(attribute.as_str());
                }
            }
        }
    }
}

/// Removes an account's link from the links of its identity.
fn unlink(links: &mut HashMap<IdentityId, SmallVec<[(Text, String); 1]>, Fast>, system: &str, account: &Account) {
    if let Some(id) = account.identity() {
        if let Some(set) = links.get_mut(&id) {
            set.retain(|(s, k)| !(s.as_str() == system && *k == account.key));
            if set.is_empty() {
                links.remove(&id);
            }
        }
    }
}

/// Adds `item` to a sorted set kept in a small vector (no duplicates).
fn insert_sorted<T: Ord, const N: usize>(set: &mut SmallVec<[T; N]>, item: T)
where
    [T; N]: smallvec::Array<Item = T>,
{
    if let Err(at) = set.binary_search(&item) {
        set.insert(at, item);
    }
}

impl Store for MemoryStore {
    fn set_index(&mut self, attributes: &[(String, bool)]) -> Result<(), StoreError> {
        let wanted: HashMap<String, bool> = attributes.iter().cloned().collect();
        if wanted == self.indexed {
            return Ok(());
        }
        self.indexed = wanted;
        self.index.clear();
        for identity in self.identities.values() {
            MemoryStore::reindex(&mut self.index, &self.indexed, identity, true);
        }
        Ok(())
    }

    fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.systems.get(system).and_then(|s| s.accounts.get(key)).cloned())
    }

    fn visit_accounts_by_key(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<(), StoreError> {
        let accounts = self.systems.get(system).map(|s| &s.accounts);
        for (index, key) in keys.iter().enumerate() {
            visit(index, accounts.and_then(|a| a.get(*key)));
        }
        Ok(())
    }

    fn visit_accounts_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
        others: &mut dyn FnMut(&Account),
    ) -> Result<(), StoreError> {
        let Some(accounts) = self.systems.get(system).map(|s| &s.accounts) else {
            (0..keys.len()).for_each(|index| visit(index, None));
            return Ok(());
        };
        // The look-ups (hashing, probing, comparing keys: cache misses in a large
        // store) run apart, on several cores for a large import; the visits follow in
        // key order.
        let positions = crate::parallel::map(keys, |key| accounts.get_index_of(*key));
        // One bit per stored account: those found by key are not visited again.
        let mut found = vec![0u64; accounts.len().div_ceil(64)];
        for (index, position) in positions.into_iter().enumerate() {
            let account = position.and_then(|position| {
                if let Some(word) = found.get_mut(position / 64) {
                    *word |= 1 << (position % 64);
                }
                accounts.get_index(position).map(|(_, account)| account)
            });
            visit(index, account);
        }
        for (position, account) in accounts.values().enumerate() {
            if found
                .get(position / 64)
                .is_none_or(|word| word & (1 << (position % 64)) == 0)
            {
                others(account);
            }
        }
        Ok(())
    }

    fn visit_accounts(&self, system: &str, visit: &mut dyn FnMut(&Account)) -> Result<(), StoreError> {
        if let Some(s) = self.systems.get(system) {
            s.accounts.values().for_each(visit);
        }
        Ok(())
    }

    fn account_base(&self, system: &str) -> Result<Base, StoreError> {
        Ok(self
            .systems
            .get(system)
            .map_or(Base::default(), |s| Base::new(s.accounts.len() as u64, s.link_values)))
    }

    fn put_accounts(&mut self, system: &str, accounts: Vec<Account>) -> Result<(), StoreError> {
        // One shared name of the system for every link written.
        let name = Text::from(system);
        let MemoryStore {
            systems, links, names, ..
        } = self;
        let entry = match systems.get_mut(system) {
            Some(entry) => entry,
            None => systems.entry(system.to_owned()).or_default(),
        };
        // Room for every account at once: rehashing moves whole records.
        entry.accounts.reserve(accounts.len());
        for mut account in accounts {
            account.fingerprint = account.values_fingerprint();
            account.attributes.share_names(names);
            let previous = entry.accounts.swap_remove(&account.key);
            if let Some(previous) = &previous {
                unlink(links, system, previous);
            }
            if let Some(id) = account.identity() {
                insert_sorted(links.entry(id).or_default(), (name.clone(), account.key.clone()));
            }
            entry.link_values =
                entry.link_values + account.link_values() - previous.as_ref().map_or(0, Account::link_values);
            entry.accounts.insert(account.key.clone(), account);
        }
        Ok(())
    }

    fn remove_accounts(&mut self, system: &str, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            let removed = self.systems.get_mut(system).and_then(|s| s.accounts.swap_remove(key));
            if let Some(account) = removed {
                unlink(&mut self.links, system, &account);
                if let Some(s) = self.systems.get_mut(system) {
                    s.link_values -= account.link_values();
                }
            }
        }
        Ok(())
    }

    fn remove_system(&mut self, system: &str) -> Result<(), StoreError> {
        let keys: Vec<String> = self
            .systems
            .get(system)
            .map(|s| s.accounts.keys().cloned().collect())
            .unwrap_or_default();
        self.remove_accounts(system, &keys)
    }

    fn accounts_of(&self, identity: IdentityId) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .links
            .get(&identity)
            .map(|s| {
                s.iter()
                    .map(|(system, key)| (system.to_string(), key.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        Ok(self.identities.get(id).cloned())
    }

    fn with_identity(&self, id: IdentityId, visit: &mut dyn FnMut(Option<&Identity>)) -> Result<(), StoreError> {
        visit(self.identities.get(id));
        Ok(())
    }

    fn visit_identities_after(
        &self,
        after: Option<IdentityId>,
        visit: &mut dyn FnMut(&Identity) -> bool,
    ) -> Result<(), StoreError> {
        for identity in self.identities.iter_after(after) {
            if !visit(identity) {
                break;
            }
        }
        Ok(())
    }

    fn visit_identities(&self, visit: &mut dyn FnMut(&Identity)) -> Result<(), StoreError> {
        self.identities.values().for_each(visit);
        Ok(())
    }

    fn identity_count(&self) -> Result<usize, StoreError> {
        Ok(self.identities.len())
    }

    fn find_identities(&self, attribute: &str, match_key: &str) -> Result<Vec<IdentityId>, StoreError> {
        Ok(self
            .index
            .get(attribute)
            .and_then(|by_key| by_key.get(match_key))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }

    fn put_identities(&mut self, identities: Vec<Identity>) -> Result<(), StoreError> {
        // Room in the index for one value per new identity and attribute at once (a
        // batch rewriting stored identities, as confirming a million creates does, needs
        // none: reserving for it would double the tables).
        let new = identities
            .iter()
            .filter(|identity| self.identities.get(identity.id).is_none())
            .count();
        for attribute in self.indexed.keys() {
            if let Some(by_key) = self.index.get_mut(attribute.as_str()) {
                by_key.reserve(new);
            } else if new > 1 {
                self.index.insert(
                    attribute.clone(),
                    HashMap::with_capacity_and_hasher(new, Fast::default()),
                );
            }
        }
        self.identities.reserve(new);
        for identity in identities {
            match self.identities.get(identity.id) {
                // Indexed values unchanged: the entries stand.
                Some(old)
                    if self
                        .indexed
                        .keys()
                        .all(|attribute| old.value(attribute) == identity.value(attribute)) => {}
                Some(old) => {
                    MemoryStore::reindex(&mut self.index, &self.indexed, old, false);
                    MemoryStore::reindex(&mut self.index, &self.indexed, &identity, true);
                }
                None => MemoryStore::reindex(&mut self.index, &self.indexed, &identity, true),
            }
            self.next_identity = self.next_identity.max(identity.id.0);
            let mut identity = identity;
            identity.share_names(&mut self.names);
            self.identities.insert(identity);
        }
        // An attribute no identity holds has no table (as the index built one by one).
        self.index.retain(|_, by_key| !by_key.is_empty());
        Ok(())
    }

    fn update_pending_creates(&mut self, changes: &[PendingCreateChange]) -> Result<(), StoreError> {
        // In place: pending creates are neither indexed nor linked.
        for change in changes {
            if let Some(identity) = self.identities.get_mut(change.identity) {
                change.apply(identity);
            }
        }
        Ok(())
    }

    fn allocate_identity_id(&mut self) -> Result<IdentityId, StoreError> {
        // Wrapping would hand out the ids of existing identities and overwrite them.
        let Some(next) = self.next_identity.checked_add(1) else {
            return Err(StoreError::new("memory store: every identity id is taken"));
        };
        self.next_identity = next;
        Ok(IdentityId(next))
    }

    fn system_version(&self, system: &str) -> Result<u64, StoreError> {
        Ok(self.systems.get(system).map_or(0, |s| s.version))
    }

    fn bump_system_version(&mut self, system: &str) -> Result<(), StoreError> {
        self.systems.entry(system.to_owned()).or_default().version += 1;
        Ok(())
    }

    fn allocate_plan_id(&mut self) -> Result<PlanId, StoreError> {
        let Some(next) = self.next_plan.checked_add(1) else {
            return Err(StoreError::new("memory store: every plan id is taken"));
        };
        self.next_plan = next;
        Ok(PlanId(next))
    }

    fn put_pending_plan(&mut self, plan: PendingPlan) -> Result<(), StoreError> {
        self.pending.insert(plan.id(), plan);
        Ok(())
    }

    fn take_pending_plan(&mut self, id: PlanId) -> Result<Option<PendingPlan>, StoreError> {
        Ok(self.pending.remove(&id))
    }

    fn pending_plans(&self) -> Result<Vec<PendingPlan>, StoreError> {
        Ok(self.pending.values().cloned().collect())
    }

    fn engine_state(&self) -> Result<EngineState, StoreError> {
        Ok(self.state.clone())
    }

    fn put_engine_state(&mut self, state: EngineState) -> Result<(), StoreError> {
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// After any puts and removes (which move accounts between positions), a
        /// visit by key lends exactly the stored accounts of the keys, and `others`
        /// exactly the stored accounts of no key.
        #[test]
        fn visit_by_key_and_others_splits_the_stored_accounts(
            put in proptest::collection::vec(0u8..40, 0..60),
            removed in proptest::collection::vec(0u8..40, 0..20),
            asked in proptest::collection::btree_set(0u8..50, 0..30),
        ) {
            let mut store = MemoryStore::new();
            let key = |k: u8| format!("k{k}");
            for k in &put {
                store.put_accounts("hr", vec![Account::new(key(*k))]).unwrap_or_default();
            }
            let removed: Vec<String> = removed.iter().map(|k| key(*k)).collect();
            store.remove_accounts("hr", &removed).unwrap_or_default();
            let stored: BTreeSet<String> = put.iter().map(|k| key(*k)).filter(|k| !removed.contains(k)).collect();
            let asked: Vec<String> = asked.iter().map(|k| key(*k)).collect();
            let keys: Vec<&str> = asked.iter().map(String::as_str).collect();
            let mut lent: Vec<(usize, Option<String>)> = Vec::new();
            let mut others: BTreeSet<String> = BTreeSet::new();
            store
                .visit_accounts_by_key_and_others(
                    "hr",
                    &keys,
                    &mut |i, a| lent.push((i, a.map(|a| a.key.clone()))),
                    &mut |a| {
                        others.insert(a.key.clone());
                    },
                )
                .unwrap_or_default();
            lent.sort();
            let want: Vec<(usize, Option<String>)> = asked
                .iter()
                .enumerate()
                .map(|(i, k)| (i, stored.contains(k).then(|| k.clone())))
                .collect();
            prop_assert_eq!(lent, want);
            let want_others: BTreeSet<String> = stored.iter().filter(|k| !asked.contains(k)).cloned().collect();
            prop_assert_eq!(others, want_others);
        }
    }
}
