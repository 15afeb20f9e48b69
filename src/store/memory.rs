//! The in-memory store: the embedded default.
//!
//! Records are kept in the binary form of [`crate::record`] (the SQLite store's): an
//! account or identity is one allocation of its values in name order, names and
//! repeating texts as small numbers of the store's [`Dictionary`]. A million people
//! took about 2.9 KB each as owned `Account` and `Identity` values (a 24-byte slot and
//! a shared string per value, a map per record); as records they take a few hundred
//! bytes. Reads decode: a lent record is built for the visit and dropped after it.
//!
//! An identity a first load projected does not repeat its account's values: its record
//! names a [`shapes::Shape`], and reads take the values from the account. Before such
//! an account is replaced, removed, or another account of its system is linked to the
//! identity, the identity's values are written out into its record
//! ([`MemoryStore::write_out`]), so a shaped record always reads as what was written.

mod dictionary;
mod identities;
mod in_line;
pub mod persist;
mod postings;
mod shapes;
mod slab;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use indexmap::IndexMap;
use smallvec::SmallVec;

use crate::model::{values_fingerprint, Account, Identity, IdentityId, LinkState, PendingCreate};
use crate::record;
use crate::store::{
    lent_only, AccountSummary, EngineState, InLine, LinkedAccount, LoadedPart, LoadedRow, PendingCreateChange,
    PendingCreates, PendingPlan, PlanId, Store, StoreError,
};
use crate::text::Text;
use crate::thresholds::Base;
use crate::value::Value;
use dictionary::{Dictionary, NamesAtHand};
use identities::IdentityTable;
use in_line::NumberedInLine;
use postings::Postings;
use shapes::Shapes;
use slab::{Slab, Span};

/// A record in the binary form of [`crate::record`].
/// Where a record is in its slab (`MemoryStore::account_records`, `identity_records`).
type Record = Span;

/// A stored account: its record, and beside it what a complete import reads of every
/// account (read without touching the record).
#[derive(Debug, Clone)]
struct StoredAccount {
    summary: AccountSummary,
    record: Record,
}

/// An account by its system's number and its position in that system's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    system: u32,
    position: u32,
}

/// identity -> its linked accounts. Almost every identity has one or a few: they are
/// kept inline, as slots, not as names (a million links took 160 MB as names), in a
/// table by id (a hash map of a million took 66 MB, twice the table).
type Links = IdentityTable<SmallVec<[Slot; 1]>>;

/// How many keys an import's summary look-ups take at a time
/// (`visit_account_summaries_by_key_and_others`; a few in tests, so that their small
/// imports take several parts).
const SUMMARY_PART: usize = if cfg!(test) { 3 } else { 64 * 1024 };

/// Accounts of one system, with running totals for threshold bases.
#[derive(Debug, Default, Clone)]
struct SystemAccounts {
    /// The system's number in [`MemoryStore::system_names`].
    number: u32,
    /// Records by key; positioned, so that a complete import finds the accounts it
    /// did not see by position instead of by a look-up per stored account.
    accounts: IndexMap<Box<str>, StoredAccount, Fast>,
    link_values: u64,
    version: u64,
}

/// attribute -> hash of a match key -> identities holding a value under a key of that
/// hash (sorted). Keys are not kept: a million of them took 130 MB per attribute as
/// strings; a look-up reads the candidates' values to drop those of another key.
type CorrelationIndex = HashMap<String, Postings>;

/// The hash of a match key in the correlation index (fixed, so that equal stores hold
/// equal indexes).
fn key_hash(match_key: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6174_7472_666c_6f77).hash_one(match_key)
}

/// The hasher of the tables keyed by account keys, identity ids and attribute values:
/// fast, and seeded per table.
type Fast = foldhash::fast::RandomState;

/// How many records a large visit decodes at once (on several cores with the
/// `parallel` feature) before lending them one by one.
const DECODE_CHUNK: usize = 64 * 1024;

/// An in-memory [`Store`]: it fails only when its identity or plan ids run out, and the
/// engine writes to it only once the work cannot fail, so a refused operation leaves no
/// trace in its records.
///
/// The identities of a first load written through [`Store::put_loaded`] are kept
/// without repeating their accounts' values (see the module documentation): the
/// identity records of a million loaded people take 32 MiB instead of 303 MiB. Reads
/// are unaffected.
///
/// Two stores are equal when they hold equal records, links, index, plans and state,
/// however their records are encoded.
#[derive(Default, Clone)]
pub struct MemoryStore {
    systems: BTreeMap<String, SystemAccounts>,
    identities: IdentityTable<Record>,
    /// The systems by number (the `system` of a [`Slot`]).
    system_names: Vec<String>,
    links: Links,
    /// The correlation index of the attributes of `set_index`.
    index: CorrelationIndex,
    indexed: HashMap<String, bool>,
    next_identity: u64,
    next_plan: u64,
    pending: BTreeMap<PlanId, PendingPlan>,
    state: EngineState,
    /// The numbers of names and repeating texts inside the records.
    dictionary: Dictionary,
    /// Unconfirmed provisioning creates, kept apart from the identities' records:
    /// provisioning and confirming a million accounts change them for a million
    /// identities, and rewriting a record each time cost more than the rest.
    /// A list per identity, not a map: one create pending is the rule, and a map's node
    /// took about 600 bytes for it.
    pending_creates: HashMap<IdentityId, PendingList, Fast>,
    /// The bytes of the accounts' records (every system's).
    account_records: Slab,
    /// The bytes of the identities' records.
    identity_records: Slab,
    /// Where the values of shaped identity records are.
    shapes: Shapes,
    /// How many identity records are shaped (none: no account write checks for them).
    shaped: usize,
}

/// The values of the shaped record of `identity`, read from its linked account.
struct Referenced<'s> {
    store: &'s MemoryStore,
    identity: IdentityId,
}

impl record::References for Referenced<'_> {
    fn shaped_values(&self, shape: u32, wanted: Option<&[u32]>) -> Result<Vec<(u32, Value, u64)>, record::DecodeError> {
        let store = self.store;
        let shape = store
            .shapes
            .get(shape)
            .ok_or_else(|| format!("shape {shape} does not exist"))?;
        let (key, account) = store.linked_record(self.identity, shape.system)?;
        let refs: SmallVec<[&record::ValueRef; 24]> = shape
            .refs
            .iter()
            .filter(|r| wanted.is_none_or(|wanted| wanted.contains(&r.attribute)))
            .collect();
        let held = |number: u32| refs.iter().any(|r| r.account_attribute == number);
        let mut values = record::account_values(key, account, &held, &mut |n| store.dictionary.text(n))?;
        // In the shape's order, each value moved to its reference (cloned for all but
        // the last when an account attribute flows into two identity attributes).
        let mut found = Vec::with_capacity(refs.len());
        for (at, r) in refs.iter().enumerate() {
            let Some((_, value)) = values.iter_mut().find(|(number, _)| *number == r.account_attribute) else {
                return Err(format!(
                    "the linked account holds no value numbered {}",
                    r.account_attribute
                ));
            };
            let again = refs
                .get(at + 1..)
                .is_some_and(|later| later.iter().any(|l| l.account_attribute == r.account_attribute));
            let value = if again { value.clone() } else { std::mem::take(value) };
            found.push((r.attribute, value, u64::from(r.source)));
        }
        Ok(found)
    }
}

/// A linked account as a visit lends it: found in line by its record, or decoded.
// As large as the decoded pair it replaces in a chunk's buffer; boxing it would cost an
// allocation per account lent.
#[allow(clippy::large_enum_variant)]
enum Lending {
    InLine(IdentityId),
    Decoded(Account, Option<Identity>),
}

/// One bit per stored account of a system, by position: those a visit by key found,
/// so that the others are visited without a look-up each.
struct Seen(Vec<u64>);

impl Seen {
    fn new(accounts: usize) -> Seen {
        Seen(vec![0; accounts.div_ceil(64)])
    }

    fn mark(&mut self, position: usize) {
        if let Some(word) = self.0.get_mut(position / 64) {
            *word |= 1 << (position % 64);
        }
    }

    fn has(&self, position: usize) -> bool {
        self.0
            .get(position / 64)
            .is_some_and(|word| word & (1 << (position % 64)) != 0)
    }
}

/// A system as compared and shown: its version, link-value total and decoded accounts.
type SystemView = (u64, u64, Vec<Result<Account, StoreError>>);

/// A slab that cannot name one more record (4 GiB in one record, or 2^32 pages).
fn slab_full() -> StoreError {
    StoreError::new("memory store: the records are full")
}

/// A record the store wrote that does not read back: a bug, reported, never a panic.
fn damaged(op: &'static str) -> impl Fn(record::DecodeError) -> StoreError {
    move |e| StoreError::new(format!("memory store: {op}: a stored record does not read back: {e}"))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The numbers of attribute names (a name no record holds has none, and is left
    /// out: no value of it is there to read).
    fn name_numbers(&self, names: &[&str]) -> Vec<u32> {
        names
            .iter()
            .filter_map(|name| self.dictionary.name_number(name))
            .collect()
    }

    /// [`Store::visit_linked_accounts`], the identities with the values of the attributes
    /// numbered `wanted` only (all with `None`).
    fn lend_linked_accounts(
        &self,
        system: &str,
        wanted: Option<&[u32]>,
        in_line: Option<&NumberedInLine<'_>>,
        visit: &mut dyn FnMut(LinkedAccount<'_>),
    ) -> Result<(), StoreError> {
        let op = "visit_linked_accounts";
        let Some(s) = self.systems.get(system) else {
            return Ok(());
        };
        // Each pair checked, or decoded together, a chunk at a time (on several cores
        // for a whole system's outbound plan).
        let linked: Vec<(&Box<str>, &StoredAccount)> = s.accounts.iter().filter(|(_, a)| a.summary.linked).collect();
        MemoryStore::lend_decoded(
            &linked,
            |(key, stored)| {
                let data = self.account_records.get(stored.record);
                if let Some(check) = in_line {
                    if let Some(id) = self.in_line(key, data, check).map_err(damaged(op))? {
                        return Ok(Lending::InLine(id));
                    }
                }
                let account = self.decode_account(op, key, data)?;
                let identity = match account.identity() {
                    Some(id) => match self.identities.get(id) {
                        Some(data) => Some(self.decode_identity_reading(op, id, data, wanted)?),
                        None => None,
                    },
                    None => None,
                };
                Ok(Lending::Decoded(account, identity))
            },
            |_, lending| {
                match lending {
                    Lending::InLine(id) => visit(LinkedAccount::InLine(id)),
                    Lending::Decoded(account, Some(identity)) => visit(LinkedAccount::Lent(&account, &identity)),
                    Lending::Decoded(_, None) => {}
                }
                true
            },
        )
    }

    /// [`Store::visit_identities_by_id`], with the values of the attributes numbered
    /// `wanted` only (all with `None`).
    fn lend_identities_by_id(
        &self,
        ids: &[IdentityId],
        wanted: Option<&[u32]>,
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        let indexed: Vec<(usize, IdentityId)> = ids.iter().copied().enumerate().collect();
        MemoryStore::lend_decoded(
            &indexed,
            |(_, id)| match self.identities.get(*id) {
                Some(data) => self
                    .decode_identity_reading("visit_identities_by_id", *id, data, wanted)
                    .map(Some),
                None => Ok(None),
            },
            |(index, _), identity| {
                visit(*index, identity.as_ref());
                true
            },
        )
    }

    /// Sets a system's version (a copy of another store's state keeps its versions).
    pub(crate) fn set_system_version(&mut self, system: &str, version: u64) {
        system_entry(&mut self.systems, &mut self.system_names, system).version = version;
    }

    /// Every identity's linked (system, key) pairs, sorted (for comparison and display:
    /// equal stores may hold their accounts at other positions).
    fn named_links(&self) -> BTreeMap<IdentityId, Vec<(String, String)>> {
        self.links.values().map(|(id, _)| (id, self.linked_names(id))).collect()
    }

    /// The (system, key) pairs linked to `identity`, sorted.
    fn linked_names(&self, identity: IdentityId) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self
            .links
            .get(identity)
            .into_iter()
            .flatten()
            .filter_map(|slot| {
                let system = self.system_names.get(slot.system as usize)?;
                let (key, _) = self.systems.get(system)?.accounts.get_index(slot.position as usize)?;
                Some((system.clone(), key.to_string()))
            })
            .collect();
        names.sort();
        names
    }

    /// The account `key` from its record.
    fn decode_account(&self, op: &'static str, key: &str, data: &[u8]) -> Result<Account, StoreError> {
        record::decode_account(key.to_owned(), data, &mut |id| self.dictionary.text(id)).map_err(damaged(op))
    }

    /// The identity `id` from its record.
    fn decode_identity(&self, op: &'static str, id: IdentityId, record: &Record) -> Result<Identity, StoreError> {
        self.decode_identity_reading(op, id, record, None)
    }

    /// The identity `id` from its record, with the values of the attributes numbered
    /// `wanted` only (all with `None`).
    fn decode_identity_reading(
        &self,
        op: &'static str,
        id: IdentityId,
        record: &Record,
        wanted: Option<&[u32]>,
    ) -> Result<Identity, StoreError> {
        let data = self.identity_records.get(*record);
        let mut identity =
            record::decode_identity_reading(id, data, wanted, &mut |n| self.dictionary.text(n), &self.references(id))
                .map_err(damaged(op))?;
        if let Some(pending) = self.pending_creates.get(&id) {
            identity.pending_creates = pending.iter().cloned().collect();
        }
        Ok(identity)
    }

    /// What reads the values of identity `id` when its record is shaped.
    fn references(&self, id: IdentityId) -> Referenced<'_> {
        Referenced {
            store: self,
            identity: id,
        }
    }

    /// The key and record of the one account of system number `system` linked to
    /// `identity`.
    fn linked_record(&self, identity: IdentityId, system: u32) -> Result<(&str, &[u8]), record::DecodeError> {
        let mut slots = self
            .links
            .get(identity)
            .into_iter()
            .flatten()
            .filter(|slot| slot.system == system);
        let (Some(slot), None) = (slots.next(), slots.next()) else {
            return Err(format!(
                "identity {identity} has not one linked account of system {system}"
            ));
        };
        self.system_names
            .get(system as usize)
            .and_then(|name| self.systems.get(name))
            .and_then(|entry| entry.accounts.get_index(slot.position as usize))
            .map(|(key, stored)| (&**key, self.account_records.get(stored.record)))
            .ok_or_else(|| format!("identity {identity} is linked to an account that does not exist"))
    }

    /// Writes the values of identity `id` into its record if the record is shaped on
    /// accounts of system number `system`: before an account of that system linked to
    /// it (now or next) changes, while the values still read as they were written.
    fn write_out(&mut self, id: IdentityId, system: u32) -> Result<(), StoreError> {
        let op = "write out an identity";
        let Some(&span) = self.identities.get(id) else {
            return Ok(());
        };
        let data = self.identity_records.get(span);
        let Some(shape) = record::identity_shape(data).map_err(damaged(op))? else {
            return Ok(());
        };
        if self.shapes.get(shape).is_some_and(|shape| shape.system != system) {
            return Ok(());
        }
        let identity =
            record::decode_identity_reading(id, data, None, &mut |n| self.dictionary.text(n), &self.references(id))
                .map_err(damaged(op))?;
        let mut blob = Vec::new();
        record::encode_identity(&identity, &mut self.dictionary, &mut blob)?;
        let written = self.identity_records.push(&blob).ok_or_else(slab_full)?;
        self.identities.insert(id, written);
        self.identity_records.release(span);
        self.shaped = self.shaped.saturating_sub(1);
        Ok(())
    }

    /// [`MemoryStore::write_out`] of the identities linked to the accounts `keys` of
    /// `system` and of `linking` (identities about to be linked to one), before those
    /// accounts change.
    fn write_out_around<'k>(
        &mut self,
        system: &str,
        keys: impl Iterator<Item = &'k str>,
        linking: impl Iterator<Item = IdentityId>,
    ) -> Result<(), StoreError> {
        if self.shaped == 0 {
            return Ok(());
        }
        let Some(entry) = self.systems.get(system) else {
            return Ok(());
        };
        let mut touched: Vec<IdentityId> = linking.collect();
        for key in keys {
            let Some(stored) = entry.accounts.get(key).filter(|stored| stored.summary.linked) else {
                continue;
            };
            let head = record::account_head(self.account_records.get(stored.record)).map_err(damaged("write out"))?;
            if let LinkState::Linked(id) = head.link {
                touched.push(id);
            }
        }
        let number = entry.number;
        for id in touched {
            self.write_out(id, number)?;
        }
        Ok(())
    }

    /// Every account of a system, decoded, in store order.
    fn decoded_accounts<'a>(
        &'a self,
        op: &'static str,
        system: &'a SystemAccounts,
    ) -> impl Iterator<Item = Result<Account, StoreError>> + 'a {
        system
            .accounts
            .iter()
            .map(move |(key, stored)| self.decode_account(op, key, self.account_records.get(stored.record)))
    }

    /// Every identity, decoded, in id order.
    fn decoded_identities(&self, op: &'static str) -> impl Iterator<Item = Result<Identity, StoreError>> + '_ {
        self.identities
            .values()
            .map(move |(id, data)| self.decode_identity(op, id, data))
    }

    /// Lends the decoded records of `items` to `visit` in order, decoding a chunk at a
    /// time (on several cores for a large visit); `visit` returns false to stop.
    fn lend_decoded<T: Sync, R: Send>(
        items: &[T],
        decode: impl Fn(&T) -> Result<R, StoreError> + Sync,
        mut visit: impl FnMut(&T, R) -> bool,
    ) -> Result<(), StoreError> {
        let mut decoded = Vec::new();
        for chunk in items.chunks(DECODE_CHUNK) {
            crate::parallel::map_into(chunk, &mut decoded, &decode);
            for (item, record) in chunk.iter().zip(decoded.iter_mut()) {
                let Some(record) = record.take() else { continue };
                if !visit(item, record?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// [`Store::visit_accounts_by_key`]; returns the positions of the accounts lent.
    fn lend_by_key(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<Seen, StoreError> {
        let Some(accounts) = self.systems.get(system).map(|s| &s.accounts) else {
            (0..keys.len()).for_each(|index| visit(index, None));
            return Ok(Seen::new(0));
        };
        // The look-ups and the decoding (hashing, probing, comparing keys, building
        // values: cache misses and allocations in a large store) run apart, a chunk at
        // a time on several cores for a large import; the visits follow in key order.
        let indexed: Vec<(usize, &str)> = keys.iter().copied().enumerate().collect();
        let mut found = Seen::new(accounts.len());
        MemoryStore::lend_decoded(
            &indexed,
            |(_, key)| match accounts.get_full(*key) {
                Some((position, key, stored)) => self
                    .decode_account("visit_accounts_by_key", key, self.account_records.get(stored.record))
                    .map(|a| Some((position, a))),
                None => Ok(None),
            },
            |(index, _), account| {
                match account {
                    Some((position, account)) => {
                        found.mark(position);
                        visit(*index, Some(&account));
                    }
                    None => visit(*index, None),
                }
                true
            },
        )?;
        Ok(found)
    }

    /// Adds an identity's values of the indexed attributes to the correlation index,
    /// or removes them.
    fn reindex(index: &mut CorrelationIndex, indexed: &HashMap<String, bool>, identity: &Identity, add: bool) {
        MemoryStore::reindex_values(index, indexed, identity.id, |attribute| identity.value(attribute), add);
    }

    /// [`MemoryStore::reindex`] of the identity `id` whose values `value_of` gives.
    fn reindex_values<'v>(
        index: &mut CorrelationIndex,
        indexed: &HashMap<String, bool>,
        id: IdentityId,
        value_of: impl Fn(&str) -> &'v Value,
        add: bool,
    ) {
        for (attribute, case_exact) in indexed.iter() {
            let values = value_of(attribute).scalars();
            if values.is_empty() {
                continue;
            }
            if add {
                if !index.contains_key(attribute.as_str()) {
                    index.insert(attribute.clone(), Postings::default());
                }
                let Some(by_key) = index.get_mut(attribute.as_str()) else {
                    continue;
                };
                for scalar in values {
                    by_key.insert(key_hash(&scalar.match_key(*case_exact)), id);
                }
            } else if let Some(by_key) = index.get_mut(attribute.as_str()) {
                for scalar in values {
                    by_key.remove(key_hash(&scalar.match_key(*case_exact)), id);
                }
                if by_key.is_empty() {
                    index.remove(attribute.as_str());
                }
            }
        }
    }

    /// Stores encoded accounts of `system` (key, record, linked identity and count of
    /// multi-valued values each), replacing those of the same keys.
    fn store_accounts(
        &mut self,
        system: &str,
        encoded: Vec<(String, StoredAccount, Option<IdentityId>, u64)>,
    ) -> Result<(), StoreError> {
        self.write_out_around(
            system,
            encoded.iter().map(|(key, ..)| key.as_str()),
            encoded.iter().filter_map(|(_, _, identity, _)| *identity),
        )?;
        let MemoryStore {
            systems,
            system_names,
            links,
            account_records,
            ..
        } = self;
        let entry = match systems.get_mut(system) {
            Some(entry) => entry,
            None => system_entry(systems, system_names, system),
        };
        // Room for every account at once: rehashing moves every entry.
        entry.accounts.reserve(encoded.len());
        for (key, data, identity, values) in encoded {
            // One look-up per account, stored or new.
            let (position, previous) = match entry.accounts.entry(key.into_boxed_str()) {
                indexmap::map::Entry::Occupied(mut stored) => {
                    let slot = stored.get_mut();
                    let head =
                        record::account_head(account_records.get(slot.record)).map_err(damaged("put_accounts"))?;
                    account_records.release(slot.record);
                    *slot = data;
                    (stored.index(), Some(head))
                }
                indexmap::map::Entry::Vacant(new) => {
                    let position = new.index();
                    new.insert(data);
                    (position, None)
                }
            };
            let slot = Slot {
                system: entry.number,
                position: position as u32,
            };
            if let Some(previous) = &previous {
                unlink(links, slot, &previous.link);
            }
            entry.link_values = entry.link_values + values - previous.as_ref().map_or(0, |p| p.link_values);
            if let Some(id) = identity {
                if let Some(set) = links.get_or_insert_with(id, SmallVec::new) {
                    insert_sorted(set, slot);
                }
            }
        }
        if self.account_records.should_compact() {
            let stored = self.systems.values_mut().flat_map(|entry| entry.accounts.values_mut());
            self.account_records.compact(stored.map(|stored| &mut stored.record));
        }
        Ok(())
    }

    /// [`Store::put_loaded`] for rows as the engine lends them: both records of each
    /// row encoded from the row.
    fn put_loaded_records(&mut self, part: &LoadedPart<'_>) -> Result<(), StoreError> {
        // Every record is encoded before anything changes: a refusal leaves no trace.
        let mut accounts = Vec::with_capacity(part.rows.len());
        let mut identities = Vec::with_capacity(part.rows.len());
        let mut blob = Vec::new();
        let mut names = NamesAtHand::default();
        let mut refs = Vec::new();
        // The number the system has, or gets when its first account is stored.
        let system = self
            .systems
            .get(part.system.as_str())
            .map_or(self.system_names.len() as u32, |entry| entry.number);
        let mut encode = |store: &mut MemoryStore, row: &LoadedRow<'_>| -> Result<(Span, Span), StoreError> {
            let MemoryStore { dictionary, shapes, .. } = store;
            let mut dictionary = names.over(dictionary);
            blob.clear();
            let fingerprint = values_fingerprint(row.values.iter().map(|(n, v)| (n, v)));
            record::encode_loaded_account(row, fingerprint, &mut dictionary, &mut blob)?;
            let account = store.account_records.push(&blob).ok_or_else(slab_full)?;
            blob.clear();
            let mut shape = |refs: &[record::ValueRef]| shapes.number(system, refs);
            let identity = record::encode_loaded_identity(
                row,
                part.system,
                &part.at,
                &mut dictionary,
                &mut shape,
                &mut refs,
                &mut blob,
            )
            .and_then(|()| store.identity_records.push(&blob).ok_or_else(slab_full));
            match identity {
                Ok(identity) => {
                    let summary = AccountSummary {
                        fingerprint,
                        linked: true,
                        echo_pending: false,
                    };
                    accounts.push((
                        row.key.to_owned(),
                        StoredAccount {
                            summary,
                            record: account,
                        },
                        Some(row.identity),
                        0,
                    ));
                    Ok((account, identity))
                }
                Err(e) => {
                    store.account_records.release(account);
                    Err(e)
                }
            }
        };
        for row in part.rows {
            match encode(self, row) {
                Ok((_, identity)) => identities.push(identity),
                Err(e) => {
                    // Nothing holds the records written so far.
                    for (_, stored, _, _) in &accounts {
                        self.account_records.release(stored.record);
                    }
                    for span in identities {
                        self.identity_records.release(span);
                    }
                    return Err(e);
                }
            }
        }
        // The accounts first: the shaped identities read their values from them (and
        // are not yet there to be written out when their accounts are stored).
        self.store_accounts(part.system, accounts)?;
        self.shaped += identities.len();
        for (row, span) in part.rows.iter().zip(identities) {
            let value_of = |attribute: &str| {
                row.flows
                    .iter()
                    .find(|flow| flow.attribute == attribute)
                    .and_then(|flow| row.values.get(flow.value))
                    .map_or(&Value::Empty, |(_, value)| value)
            };
            MemoryStore::reindex_values(&mut self.index, &self.indexed, row.identity, value_of, true);
            self.next_identity = self.next_identity.max(row.identity.0);
            self.identities.insert(row.identity, span);
        }
        Ok(())
    }

    /// The accounts of every system, decoded and sorted by key (for comparison and
    /// display): records of equal accounts may differ in their dictionary numbers.
    fn sorted_accounts(&self) -> BTreeMap<&str, SystemView> {
        self.systems
            .iter()
            .map(|(name, system)| {
                let mut accounts: Vec<Result<Account, StoreError>> = self.decoded_accounts("compare", system).collect();
                accounts.sort_by(|a, b| match (a, b) {
                    (Ok(a), Ok(b)) => a.key.cmp(&b.key),
                    (a, b) => a.is_ok().cmp(&b.is_ok()),
                });
                (name.as_str(), (system.version, system.link_values, accounts))
            })
            .collect()
    }
}

/// An identity's unconfirmed creates, by system, in system name order.
type PendingList = SmallVec<[(Text, PendingCreate); 1]>;

/// [`PendingCreateChange::apply_to`] for a [`PendingList`].
fn change_pending(list: &mut PendingList, change: &PendingCreateChange) {
    let at = list.binary_search_by(|(system, _)| system.as_str().cmp(change.system.as_str()));
    match (&change.create, at) {
        (Some(create), Ok(at)) => {
            if let Some((_, held)) = list.get_mut(at) {
                *held = create.clone();
            }
        }
        (Some(create), Err(at)) => list.insert(at, (change.system.clone(), create.clone())),
        (None, Ok(at)) => {
            list.remove(at);
        }
        (None, Err(_)) => {}
    }
}

impl PartialEq for MemoryStore {
    fn eq(&self, other: &MemoryStore) -> bool {
        self.next_identity == other.next_identity
            && self.next_plan == other.next_plan
            && self.indexed == other.indexed
            && self.index == other.index
            && self.named_links() == other.named_links()
            && self.pending == other.pending
            && self.state == other.state
            && self.identities.len() == other.identities.len()
            && self
                .decoded_identities("compare")
                .eq(other.decoded_identities("compare"))
            && self.sorted_accounts() == other.sorted_accounts()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identities: Vec<Result<Identity, StoreError>> = self.decoded_identities("debug").collect();
        f.debug_struct("MemoryStore")
            .field("systems", &self.sorted_accounts())
            .field("identities", &identities)
            .field("links", &self.named_links())
            .field("index", &self.index)
            .field("indexed", &self.indexed)
            .field("next_identity", &self.next_identity)
            .field("next_plan", &self.next_plan)
            .field("pending", &self.pending)
            .field("state", &self.state)
            .finish()
    }
}

/// The accounts of `system`, numbered when new.
fn system_entry<'a>(
    systems: &'a mut BTreeMap<String, SystemAccounts>,
    names: &mut Vec<String>,
    system: &str,
) -> &'a mut SystemAccounts {
    systems.entry(system.to_owned()).or_insert_with(|| {
        let number = names.len() as u32;
        names.push(system.to_owned());
        SystemAccounts {
            number,
            ..SystemAccounts::default()
        }
    })
}

/// Removes an account's slot from the links of its identity.
fn unlink(links: &mut Links, slot: Slot, link: &LinkState) {
    if let LinkState::Linked(id) = link {
        if let Some(set) = links.get_mut(*id) {
            set.retain(|s| *s != slot);
            if set.is_empty() {
                links.remove(*id);
            }
        }
    }
}

/// Points the link of the account that moved from `from` to `to` (a removal moved the
/// system's last account into the removed one's place) at its new slot.
fn relink(links: &mut Links, from: Slot, to: Slot, link: &LinkState) {
    if let LinkState::Linked(id) = link {
        if let Some(set) = links.get_mut(*id) {
            for slot in set.iter_mut().filter(|s| **s == from) {
                *slot = to;
            }
            set.sort();
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
        let mut index = CorrelationIndex::new();
        for identity in self.decoded_identities("set_index") {
            MemoryStore::reindex(&mut index, &wanted, &identity?, true);
        }
        self.indexed = wanted;
        self.index = index;
        Ok(())
    }

    fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        match self.systems.get(system).and_then(|s| s.accounts.get_key_value(key)) {
            Some((key, stored)) => self
                .decode_account("account", key, self.account_records.get(stored.record))
                .map(Some),
            None => Ok(None),
        }
    }

    fn visit_accounts_by_key(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<(), StoreError> {
        self.lend_by_key(system, keys, visit).map(drop)
    }

    fn visit_accounts_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
        others: &mut dyn FnMut(&Account),
    ) -> Result<(), StoreError> {
        let found = self.lend_by_key(system, keys, visit)?;
        let Some(accounts) = self.systems.get(system).map(|s| &s.accounts) else {
            return Ok(());
        };
        for (position, (key, stored)) in accounts.iter().enumerate() {
            if !found.has(position) {
                others(&self.decode_account(
                    "visit_accounts_by_key_and_others",
                    key,
                    self.account_records.get(stored.record),
                )?);
            }
        }
        Ok(())
    }

    fn visit_account_summaries_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<AccountSummary>),
        others: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError> {
        let Some(accounts) = self.systems.get(system).map(|s| &s.accounts) else {
            (0..keys.len()).for_each(|index| visit(index, None));
            return Ok(());
        };
        // The look-ups (hashing, probing, comparing keys: cache misses in a large
        // store) run apart, on several cores for a large import, a part of the keys
        // at a time (what a part found is held until visited: all of a million keys'
        // would be 30 MiB); the visits follow in key order. Summaries are kept beside
        // the records: none is read.
        let mut seen = Seen::new(accounts.len());
        for (part, part_keys) in keys.chunks(SUMMARY_PART).enumerate() {
            let found = crate::parallel::map(part_keys, |key| {
                accounts
                    .get_full(*key)
                    .map(|(position, _, stored)| (position, stored.summary))
            });
            for (offset, found) in found.into_iter().enumerate() {
                let index = part * SUMMARY_PART + offset;
                match found {
                    Some((position, summary)) => {
                        seen.mark(position);
                        visit(index, Some(summary));
                    }
                    None => visit(index, None),
                }
            }
        }
        for (position, key) in accounts.keys().enumerate() {
            if !seen.has(position) {
                others(key);
            }
        }
        Ok(())
    }

    fn visit_accounts(&self, system: &str, visit: &mut dyn FnMut(&Account)) -> Result<(), StoreError> {
        if let Some(s) = self.systems.get(system) {
            let records: Vec<(&Box<str>, &StoredAccount)> = s.accounts.iter().collect();
            MemoryStore::lend_decoded(
                &records,
                |(key, stored)| self.decode_account("visit_accounts", key, self.account_records.get(stored.record)),
                |_, account| {
                    visit(&account);
                    true
                },
            )?;
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
        // Every record is encoded before anything changes: a refusal leaves no trace.
        // Key, record, linked identity and link-value count of each account.
        let mut encoded: Vec<(String, StoredAccount, Option<IdentityId>, u64)> = Vec::with_capacity(accounts.len());
        let mut blob = Vec::new();
        for account in accounts {
            blob.clear();
            let fingerprint = account.values_fingerprint();
            let span = record::encode_account(&account, fingerprint, &mut self.dictionary, &mut blob)
                .and_then(|()| self.account_records.push(&blob).ok_or_else(slab_full));
            let span = match span {
                Ok(span) => span,
                Err(e) => {
                    // Nothing holds the records written so far.
                    for (_, stored, _, _) in &encoded {
                        self.account_records.release(stored.record);
                    }
                    return Err(e);
                }
            };
            let (values, identity) = (account.link_values(), account.identity());
            let mut summary = AccountSummary::of(&account);
            summary.fingerprint = fingerprint;
            let stored = StoredAccount { summary, record: span };
            encoded.push((account.key, stored, identity, values));
        }
        self.store_accounts(system, encoded)
    }

    fn remove_accounts(&mut self, system: &str, keys: &[String]) -> Result<(), StoreError> {
        self.write_out_around(system, keys.iter().map(String::as_str), std::iter::empty())?;
        let Some(entry) = self.systems.get_mut(system) else {
            return Ok(());
        };
        let slot = |position: usize| Slot {
            system: entry.number,
            position: position as u32,
        };
        for key in keys {
            let Some((position, _, stored)) = entry.accounts.swap_remove_full(key.as_str()) else {
                continue;
            };
            let head =
                record::account_head(self.account_records.get(stored.record)).map_err(damaged("remove_accounts"))?;
            self.account_records.release(stored.record);
            unlink(&mut self.links, slot(position), &head.link);
            entry.link_values -= head.link_values;
            // The last account took the removed one's place.
            if let Some((_, moved)) = entry.accounts.get_index(position) {
                let moved =
                    record::account_head(self.account_records.get(moved.record)).map_err(damaged("remove_accounts"))?;
                relink(&mut self.links, slot(entry.accounts.len()), slot(position), &moved.link);
            }
        }
        if self.account_records.should_compact() {
            let stored = self.systems.values_mut().flat_map(|entry| entry.accounts.values_mut());
            self.account_records.compact(stored.map(|stored| &mut stored.record));
        }
        Ok(())
    }

    fn remove_system(&mut self, system: &str) -> Result<(), StoreError> {
        let keys: Vec<String> = self
            .systems
            .get(system)
            .map(|s| s.accounts.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        self.remove_accounts(system, &keys)
    }

    fn accounts_of(&self, identity: IdentityId) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.linked_names(identity))
    }

    fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        match self.identities.get(id) {
            Some(data) => self.decode_identity("identity", id, data).map(Some),
            None => Ok(None),
        }
    }

    fn with_identity(&self, id: IdentityId, visit: &mut dyn FnMut(Option<&Identity>)) -> Result<(), StoreError> {
        let identity = self.identity(id)?;
        visit(identity.as_ref());
        Ok(())
    }

    fn visit_linked_accounts(
        &self,
        system: &str,
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        self.lend_linked_accounts(system, None, None, &mut lent_only(visit))
    }

    fn visit_linked_accounts_reading(
        &self,
        system: &str,
        reading: &[&str],
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        let wanted = self.name_numbers(reading);
        self.lend_linked_accounts(system, Some(&wanted), None, &mut lent_only(visit))
    }

    fn visit_linked_accounts_out_of_line(
        &self,
        system: &str,
        reading: &[&str],
        in_line: &InLine,
        visit: &mut dyn FnMut(LinkedAccount<'_>),
    ) -> Result<(), StoreError> {
        let wanted = self.name_numbers(reading);
        let check = self.number_in_line(in_line);
        self.lend_linked_accounts(system, Some(&wanted), Some(&check), visit)
    }

    fn visit_identities_by_id_reading(
        &self,
        ids: &[IdentityId],
        reading: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        let wanted = self.name_numbers(reading);
        self.lend_identities_by_id(ids, Some(&wanted), visit)
    }

    fn visit_identities_by_id_reading_shared(
        &self,
        ids: &[IdentityId],
        reading: &[&str],
        visit: &(dyn Fn(usize, Option<&Identity>) + Sync),
    ) -> Result<(), StoreError> {
        // Decoded and visited in the decoding threads: nothing is handed back.
        let wanted = self.name_numbers(reading);
        let indexed: Vec<(usize, IdentityId)> = ids.iter().copied().enumerate().collect();
        let mut done = Vec::new();
        for chunk in indexed.chunks(DECODE_CHUNK) {
            crate::parallel::map_into(chunk, &mut done, |&(index, id)| {
                let identity = match self.identities.get(id) {
                    Some(data) => {
                        Some(self.decode_identity_reading("visit_identities_by_id", id, data, Some(&wanted))?)
                    }
                    None => None,
                };
                visit(index, identity.as_ref());
                Ok::<(), StoreError>(())
            });
            if let Some(error) = done.iter_mut().find_map(|result| result.take().and_then(Result::err)) {
                return Err(error);
            }
        }
        Ok(())
    }

    fn visit_identities_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        self.lend_identities_by_id(ids, None, visit)
    }

    fn visit_pending_creates_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&PendingCreates>),
    ) -> Result<(), StoreError> {
        // Kept apart from the records (see `pending_creates`): nothing is decoded.
        for (index, &id) in ids.iter().enumerate() {
            let pending = self
                .identities
                .get(id)
                .map(|_| self.pending_creates.get(&id).map_or(&[][..], |list| list.as_slice()));
            visit(index, pending);
        }
        Ok(())
    }

    fn visit_identities_after(
        &self,
        after: Option<IdentityId>,
        visit: &mut dyn FnMut(&Identity) -> bool,
    ) -> Result<(), StoreError> {
        // A chunk of records at a time: a visit that stops early decodes little more.
        let mut next = after;
        loop {
            let records: Vec<(IdentityId, &Record)> = self.identities.iter_after(next).take(DECODE_CHUNK).collect();
            let Some(&(last, _)) = records.last() else {
                return Ok(());
            };
            let mut stopped = false;
            MemoryStore::lend_decoded(
                &records,
                |(id, data)| self.decode_identity("visit_identities", *id, data),
                |_, identity| {
                    stopped = !visit(&identity);
                    !stopped
                },
            )?;
            if stopped {
                return Ok(());
            }
            next = Some(last);
        }
    }

    fn visit_identities(&self, visit: &mut dyn FnMut(&Identity)) -> Result<(), StoreError> {
        self.visit_identities_after(None, &mut |identity| {
            visit(identity);
            true
        })
    }

    fn identity_count(&self) -> Result<usize, StoreError> {
        Ok(self.identities.len())
    }

    fn find_identities(&self, attribute: &str, match_key: &str) -> Result<Vec<IdentityId>, StoreError> {
        let candidates = match self.index.get(attribute).map(|by_key| by_key.get(key_hash(match_key))) {
            Some(candidates) if !candidates.is_empty() => candidates,
            _ => return Ok(Vec::new()),
        };
        let (Some(number), Some(&case_exact)) = (self.dictionary.name_number(attribute), self.indexed.get(attribute))
        else {
            return Ok(Vec::new());
        };
        // Those whose value has this very key (another key may share its hash).
        let mut found = Vec::with_capacity(candidates.len());
        for &id in candidates {
            let Some(data) = self.identities.get(id) else {
                continue;
            };
            let values = record::identity_values(
                self.identity_records.get(*data),
                &[number],
                &mut |n| self.dictionary.text(n),
                &self.references(id),
            )
            .map_err(damaged("find_identities"))?;
            let holds = values
                .iter()
                .flat_map(|(_, value)| value.scalars())
                .any(|scalar| scalar.match_key(case_exact) == match_key);
            if holds {
                found.push(id);
            }
        }
        Ok(found)
    }

    fn put_loaded(&mut self, part: &LoadedPart<'_>) -> Result<(), StoreError> {
        // Rows as the engine lends them (new ids in increasing order, each row well
        // formed) are encoded straight from the row; others take the owned way. (A
        // stored key is replaced as `put_accounts` replaces it.)
        // Distinct keys, and ids no account links to yet: a shaped identity reads its
        // values from its one account, which a second row of the same key would
        // replace, and which another one linked to the id would make one of two.
        let mut keys: std::collections::HashSet<&str, Fast> =
            std::collections::HashSet::with_capacity_and_hasher(part.rows.len(), Fast::default());
        let new = part.rows.windows(2).all(|w| w[0].identity < w[1].identity)
            && part.rows.iter().all(|row| {
                row.is_well_formed()
                    && self.identities.get(row.identity).is_none()
                    && self.links.get(row.identity).is_none()
                    && keys.insert(row.key)
            });
        if new {
            self.put_loaded_records(part)
        } else {
            crate::store::put_owned(self, part)
        }
    }

    fn put_identities(&mut self, mut identities: Vec<Identity>) -> Result<(), StoreError> {
        // Every record is encoded before anything changes: a refusal leaves no trace.
        // Pending creates are kept apart (see `pending_creates`).
        let mut encoded = Vec::with_capacity(identities.len());
        let mut blob = Vec::new();
        for identity in &mut identities {
            // Taken out before encoding: the record holds none.
            let pending = std::mem::take(&mut identity.pending_creates);
            blob.clear();
            let span = record::encode_identity(identity, &mut self.dictionary, &mut blob)
                .and_then(|()| self.identity_records.push(&blob).ok_or_else(slab_full));
            match span {
                Ok(span) => encoded.push((span, pending)),
                Err(e) => {
                    // Nothing holds the records written so far.
                    for (span, _) in &encoded {
                        self.identity_records.release(*span);
                    }
                    return Err(e);
                }
            }
        }
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
                self.index.insert(attribute.clone(), Postings::with_capacity(new));
            }
        }
        self.identities.reserve(new);
        // The numbers of the indexed attributes (one no record holds has none).
        let indexed: Vec<(u32, Text)> = self
            .indexed
            .keys()
            .filter_map(|name| Some((self.dictionary.name_number(name)?, Text::from(name.as_str()))))
            .collect();
        let numbers: Vec<u32> = indexed.iter().map(|(number, _)| *number).collect();
        for (identity, (data, pending)) in identities.into_iter().zip(encoded) {
            if pending.is_empty() {
                self.pending_creates.remove(&identity.id);
            } else {
                self.pending_creates.insert(identity.id, pending.into_iter().collect());
            }
            // The replaced version (written earlier in this batch, perhaps): its
            // indexed values, read from its record, leave the index.
            let replaced = self.identities.get(identity.id).copied();
            let old = match replaced {
                Some(old) if !self.indexed.is_empty() => {
                    let old = self.identity_records.get(old);
                    let values = record::identity_values(
                        old,
                        &numbers,
                        &mut |n| self.dictionary.text(n),
                        &self.references(identity.id),
                    )
                    .map_err(damaged("put_identities"))?;
                    let mut old = Identity::new(identity.id, identity.created);
                    for (number, value) in values {
                        if let Some((_, name)) = indexed.iter().find(|(n, _)| *n == number) {
                            old.push_decoded(name.clone(), value, None);
                        }
                    }
                    Some(old)
                }
                _ => None,
            };
            match old {
                // Indexed values unchanged: the entries stand.
                Some(old)
                    if self
                        .indexed
                        .keys()
                        .all(|attribute| old.value(attribute) == identity.value(attribute)) => {}
                Some(old) => {
                    MemoryStore::reindex(&mut self.index, &self.indexed, &old, false);
                    MemoryStore::reindex(&mut self.index, &self.indexed, &identity, true);
                }
                None => MemoryStore::reindex(&mut self.index, &self.indexed, &identity, true),
            }
            self.next_identity = self.next_identity.max(identity.id.0);
            self.identities.insert(identity.id, data);
            if let Some(replaced) = replaced {
                if self.shaped > 0
                    && record::identity_shape(self.identity_records.get(replaced)).is_ok_and(|shape| shape.is_some())
                {
                    self.shaped = self.shaped.saturating_sub(1);
                }
                self.identity_records.release(replaced);
            }
        }
        if self.identity_records.should_compact() {
            self.identity_records.compact(self.identities.values_mut());
        }
        // An attribute no identity holds has no table (as the index built one by one).
        self.index.retain(|_, by_key| !by_key.is_empty());
        Ok(())
    }

    fn update_pending_creates(&mut self, changes: &[PendingCreateChange]) -> Result<(), StoreError> {
        // Apart from the records: neither indexed nor linked. Room for the new ones at
        // once (provisioning a million identities rehashed the table twenty times).
        self.pending_creates
            .reserve(changes.iter().filter(|change| change.create.is_some()).count());
        for change in changes {
            if self.identities.get(change.identity).is_none() {
                continue;
            }
            let pending = self.pending_creates.entry(change.identity).or_default();
            change_pending(pending, change);
            if pending.is_empty() {
                self.pending_creates.remove(&change.identity);
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
        system_entry(&mut self.systems, &mut self.system_names, system).version += 1;
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

    use crate::model::LinkState;

    use super::*;

    /// The summary look-ups of a complete import, taken a few keys at a time, visit
    /// each named key with its own account's summary, and every other stored account
    /// once.
    #[test]
    fn summaries_by_key_visit_each_key_with_its_own_account() {
        let mut store = MemoryStore::new();
        let accounts: Vec<Account> = (0..10u64)
            .map(|n| {
                let mut account = Account::new(format!("k{n}"));
                account.set(
                    &Text::from("title"),
                    crate::value::Value::from(format!("T{n}").as_str()),
                );
                account
            })
            .collect();
        assert!(store.put_accounts("hr", accounts).is_ok());
        let keys = ["k3", "x", "k1", "k9", "k0", "y", "k5", "k7"];
        assert!(keys.len() > 2 * SUMMARY_PART, "several parts");
        let mut visited = Vec::new();
        let mut others = Vec::new();
        let result = store.visit_account_summaries_by_key_and_others(
            "hr",
            &keys,
            &mut |index, summary| visited.push((index, summary.map(|s| s.fingerprint))),
            &mut |key| others.push(key.to_owned()),
        );
        assert!(result.is_ok());
        let expected: Vec<(usize, Option<u64>)> = keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let stored = store.account("hr", key).ok().flatten();
                (index, stored.map(|a| a.fingerprint))
            })
            .collect();
        let fingerprints: BTreeSet<u64> = expected.iter().filter_map(|(_, f)| *f).collect();
        assert_eq!(fingerprints.len(), 6, "each account its own fingerprint");
        assert_eq!(visited, expected);
        others.sort();
        assert_eq!(others, ["k2", "k4", "k6", "k8"]);
    }

    /// Identities and accounts written over and over (their records' old bytes dead, the
    /// slabs compacted many times: unit tests compact whenever more is dead than live)
    /// read back as last written.
    #[test]
    fn records_rewritten_until_compacted_read_back_as_last_written() {
        let mut store = MemoryStore::new();
        let person = |id: u64, round: u64| {
            let mut identity = Identity::new(IdentityId(id), chrono::DateTime::default());
            identity.set(
                "title",
                crate::value::Value::from(format!("T{id}-{round}").as_str()),
                crate::model::Provenance::new("hr", 100, crate::model::Phase::Create, chrono::DateTime::default()),
            );
            identity
        };
        let account = |id: u64, round: u64| {
            let mut account = Account::new(format!("E{id}"));
            account.set(
                &Text::from("title"),
                crate::value::Value::from(format!("A{id}-{round}").as_str()),
            );
            account.link = LinkState::Linked(IdentityId(id));
            account
        };
        for round in 0..6 {
            // Every round rewrites a different share of the records.
            let ids: Vec<u64> = (1..=40).filter(|id| round == 0 || id % (round + 1) == 0).collect();
            assert!(store
                .put_identities(ids.iter().map(|&id| person(id, round)).collect())
                .is_ok());
            assert!(store
                .put_accounts("hr", ids.iter().map(|&id| account(id, round)).collect())
                .is_ok());
        }
        let last = |id: u64| {
            (0..6)
                .rev()
                .find(|&round| round == 0 || id % (round + 1) == 0)
                .unwrap_or(0)
        };
        let mut identities = Vec::new();
        assert!(store
            .visit_identities(&mut |identity| identities.push(identity.clone()))
            .is_ok());
        assert_eq!(identities, (1..=40).map(|id| person(id, last(id))).collect::<Vec<_>>());
        for id in 1..=40 {
            let stored = store.account("hr", &format!("E{id}")).ok().flatten();
            assert_eq!(
                stored.map(|a| a.value("title").clone()),
                Some(account(id, last(id)).value("title").clone())
            );
        }
        // Compacted: no more dead bytes than live ones are kept.
        assert!(store.identity_records.dead() <= store.identity_records.live());
        assert!(store.account_records.dead() <= store.account_records.live());
    }

    /// An identity written with a pending create and then settled reads back without it
    /// (the pending creates live beside the record, not in it).
    #[test]
    fn a_settled_pending_create_is_gone_from_the_identity() {
        let mut store = MemoryStore::new();
        let mut identity = Identity::new(IdentityId(1), chrono::DateTime::default());
        identity.pending_creates.insert(
            Text::from("ad"),
            PendingCreate {
                account: "a1".to_owned(),
                since: chrono::DateTime::default(),
            },
        );
        assert!(store.put_identities(vec![identity]).is_ok());
        let read = |store: &MemoryStore| {
            store
                .identity(IdentityId(1))
                .ok()
                .flatten()
                .map(|i| i.pending_creates.len())
        };
        assert_eq!(read(&store), Some(1));
        let settle = [PendingCreateChange::new(IdentityId(1), Text::from("ad"), None)];
        assert!(store.update_pending_creates(&settle).is_ok());
        assert_eq!(read(&store), Some(0));
    }

    /// The pending creates read apart from the records are those of the identities read
    /// whole (the trait's default), for present and absent ids, before and after a
    /// change.
    #[test]
    fn pending_creates_by_id_are_those_of_the_identities() {
        let mut store = MemoryStore::new();
        let identities = (1..=4)
            .map(|id| Identity::new(IdentityId(id), chrono::DateTime::default()))
            .collect();
        assert!(store.put_identities(identities).is_ok());
        let create = |account: &str| {
            Some(PendingCreate {
                account: account.to_owned(),
                since: chrono::DateTime::default(),
            })
        };
        let ids = [
            IdentityId(3),
            IdentityId(9),
            IdentityId(1),
            IdentityId(2),
            IdentityId(3),
        ];
        let read = |store: &MemoryStore| {
            let mut apart = vec![None; ids.len()];
            let mut whole = vec![None; ids.len()];
            let ok = store
                .visit_pending_creates_by_id(&ids, &mut |at, pending| {
                    if let Some(slot) = apart.get_mut(at) {
                        // As lent: in system name order.
                        *slot = pending.map(<[(Text, PendingCreate)]>::to_vec);
                    }
                })
                .is_ok()
                && store
                    .visit_identities_by_id(&ids, &mut |at, identity| {
                        if let Some(slot) = whole.get_mut(at) {
                            *slot = identity.map(|i| i.pending_creates.clone().into_iter().collect::<Vec<_>>());
                        }
                    })
                    .is_ok();
            assert!(ok);
            (apart, whole)
        };
        let (apart, whole) = read(&store);
        assert_eq!(apart, whole);
        assert_eq!(apart.iter().filter(|p| p.is_none()).count(), 1, "{apart:?}");
        let changes = [
            PendingCreateChange::new(IdentityId(3), Text::from("ad"), create("a3")),
            PendingCreateChange::new(IdentityId(2), Text::from("ad"), create("a2")),
            PendingCreateChange::new(IdentityId(2), Text::from("phone"), create("p2")),
            PendingCreateChange::new(IdentityId(9), Text::from("ad"), create("nobody")),
        ];
        assert!(store.update_pending_creates(&changes).is_ok());
        let (apart, whole) = read(&store);
        assert_eq!(apart, whole);
        assert_eq!(apart.get(3).and_then(|p| p.as_ref()).map(Vec::len), Some(2));
        // Replaced, removed, added before and after another, removed when absent.
        let changes = [
            PendingCreateChange::new(IdentityId(2), Text::from("phone"), create("p2b")),
            PendingCreateChange::new(IdentityId(2), Text::from("ad"), None),
            PendingCreateChange::new(IdentityId(2), Text::from("zoom"), create("z2")),
            PendingCreateChange::new(IdentityId(2), Text::from("lab"), create("l2")),
            PendingCreateChange::new(IdentityId(1), Text::from("ad"), None),
            PendingCreateChange::new(IdentityId(3), Text::from("ad"), None),
        ];
        assert!(store.update_pending_creates(&changes).is_ok());
        let (apart, whole) = read(&store);
        assert_eq!(apart, whole);
        let accounts: Vec<&str> = apart
            .get(3)
            .and_then(|p| p.as_ref())
            .into_iter()
            .flatten()
            .map(|(_, create)| create.account.as_str())
            .collect();
        assert_eq!(accounts, ["l2", "p2b", "z2"]);
        assert_eq!(apart.first().and_then(|p| p.as_ref()).map(Vec::len), Some(0));
    }

    /// Two keys of one hash share an index entry: a look-up answers only the identities
    /// holding the very key asked for.
    #[test]
    fn a_look_up_drops_the_identities_of_another_key_of_the_same_hash() {
        let mut store = MemoryStore::new();
        assert!(store.set_index(&[("mail".to_owned(), false)]).is_ok());
        let mut identity = Identity::new(IdentityId(1), chrono::DateTime::default());
        identity.set(
            "mail",
            crate::value::Value::from("A@x"),
            crate::model::Provenance::new("hr", 100, crate::model::Phase::Create, chrono::DateTime::default()),
        );
        assert!(store.put_identities(vec![identity]).is_ok());
        assert_eq!(store.find_identities("mail", "a@x").ok(), Some(vec![IdentityId(1)]));
        // As if "b@x" hashed as "a@x" does.
        if let Some(by_key) = store.index.get_mut("mail") {
            by_key.set(key_hash("b@x"), &[IdentityId(1)]);
        }
        assert_eq!(store.find_identities("mail", "b@x").ok(), Some(Vec::new()));
        assert_eq!(store.find_identities("mail", "c@x").ok(), Some(Vec::new()));
    }

    proptest! {
        /// After any puts, re-puts and removes in two systems (a removal moves the
        /// system's last account into the removed one's place), every identity's linked
        /// accounts are those the stored accounts name, sorted.
        #[test]
        fn links_follow_accounts_that_move(
            steps in proptest::collection::vec((any::<bool>(), 0u8..2, 0u8..12, proptest::option::of(1u64..5)), 0..80),
        ) {
            let mut store = MemoryStore::new();
            let mut model: BTreeMap<(String, String), Option<u64>> = BTreeMap::new();
            for (put, system, key, link) in steps {
                let system = ["hr", "ad"][usize::from(system)].to_owned();
                let key = format!("k{key}");
                if put {
                    let mut account = Account::new(key.clone());
                    if let Some(id) = link {
                        account.link = LinkState::Linked(IdentityId(id));
                    }
                    prop_assert!(store.put_accounts(&system, vec![account]).is_ok());
                    model.insert((system, key), link);
                } else {
                    prop_assert!(store.remove_accounts(&system, std::slice::from_ref(&key)).is_ok());
                    model.remove(&(system, key));
                }
            }
            for id in 1..5u64 {
                let want: Vec<(String, String)> = model
                    .iter()
                    .filter(|(_, link)| **link == Some(id))
                    .map(|(pair, _)| pair.clone())
                    .collect();
                prop_assert_eq!(store.accounts_of(IdentityId(id)).ok(), Some(want));
            }
        }
    }

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
