//! [`IdentityTable`]: the memory store's identities (their records) by id.
//!
//! The store allocates ids densely from 1, so a vector indexed by id holds its
//! identities packed, found without a search: an ordered tree of a million identities
//! took about twice their size in half-full nodes and eight node visits per look-up.
//! Ids a host numbered itself far beyond the others (`IdentityId::from_raw`) go to an
//! ordered map beside the vector, so that no id makes the vector huge.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::IdentityId;

/// How far past its end the vector grows for one id (beyond that, or beyond twice
/// its length, an id goes to the map).
const DENSE_STEP: u64 = 4096;

/// Records of identities by id, iterated in id order.
#[derive(Clone)]
pub(super) struct IdentityTable<T> {
    /// Slot `n` holds identity `n`. Every id in `sparse` is at least its length.
    dense: Vec<Option<T>>,
    sparse: BTreeMap<IdentityId, T>,
    len: usize,
}

impl<T> Default for IdentityTable<T> {
    fn default() -> Self {
        IdentityTable {
            dense: Vec::new(),
            sparse: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> IdentityTable<T> {
    /// The identity `id`.
    pub(super) fn get(&self, id: IdentityId) -> Option<&T> {
        match usize::try_from(id.0).ok().and_then(|at| self.dense.get(at)) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&id),
        }
    }

    /// Stores the record of identity `id` in place of the one it had.
    pub(super) fn insert(&mut self, identity_id: IdentityId, identity: T) {
        let id = identity_id.0;
        let dense_len = self.dense.len() as u64;
        if id >= dense_len && id < dense_len.saturating_mul(2).max(DENSE_STEP) {
            self.grow_to(id);
        }
        let slot = usize::try_from(id).ok().and_then(|at| self.dense.get_mut(at));
        let replaced = match slot {
            Some(slot) => slot.replace(identity).is_some(),
            None => self.sparse.insert(identity_id, identity).is_some(),
        };
        if !replaced {
            self.len += 1;
        }
    }

    /// Grows the vector to hold `id`, moving the map's identities it now covers.
    fn grow_to(&mut self, id: u64) {
        let Ok(at) = usize::try_from(id) else {
            return;
        };
        // The vector's own growth amortises this; slots past the length are not
        // written, so they cost no memory until used.
        let target = at + 1;
        self.dense.resize_with(target, || None);
        if self.sparse.is_empty() {
            return;
        }
        let covered = IdentityId(target as u64);
        let rest = self.sparse.split_off(&covered);
        for (moved_id, identity) in std::mem::replace(&mut self.sparse, rest) {
            if let Some(slot) = usize::try_from(moved_id.0).ok().and_then(|at| self.dense.get_mut(at)) {
                *slot = Some(identity);
            }
        }
    }

    /// The identity `id`, to change in place.
    pub(super) fn get_mut(&mut self, id: IdentityId) -> Option<&mut T> {
        match usize::try_from(id.0).ok().and_then(|at| self.dense.get_mut(at)) {
            Some(slot) => slot.as_mut(),
            None => self.sparse.get_mut(&id),
        }
    }

    /// The identity `id`, inserted by `make` when absent.
    pub(super) fn get_or_insert_with(&mut self, id: IdentityId, make: impl FnOnce() -> T) -> Option<&mut T> {
        if self.get(id).is_none() {
            self.insert(id, make());
        }
        self.get_mut(id)
    }

    /// Removes the identity `id`; what it held.
    pub(super) fn remove(&mut self, id: IdentityId) -> Option<T> {
        let removed = match usize::try_from(id.0).ok().and_then(|at| self.dense.get_mut(at)) {
            Some(slot) => slot.take(),
            None => self.sparse.remove(&id),
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Makes room for `additional` more identities numbered after the last one.
    pub(super) fn reserve(&mut self, additional: usize) {
        if self.sparse.is_empty() {
            self.dense.reserve(additional);
        }
    }

    /// How many identities are held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The identities with an id after `after` (all without one), in id order.
    pub(super) fn iter_after(&self, after: Option<IdentityId>) -> impl Iterator<Item = (IdentityId, &T)> {
        let start = after.map_or(0, |id| {
            usize::try_from(id.0).map_or(usize::MAX, |at| at.saturating_add(1))
        });
        let sparse_start = match after {
            Some(id) => std::ops::Bound::Excluded(id),
            None => std::ops::Bound::Unbounded,
        };
        let dense = self.dense.get(start..).unwrap_or_default();
        dense
            .iter()
            .enumerate()
            .filter_map(move |(at, slot)| Some((IdentityId((start + at) as u64), slot.as_ref()?)))
            .chain(
                self.sparse
                    .range((sparse_start, std::ops::Bound::Unbounded))
                    .map(|(id, i)| (*id, i)),
            )
    }

    /// Every identity's record, to change in place (in no particular order).
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.dense.iter_mut().flatten().chain(self.sparse.values_mut())
    }

    /// Every identity, in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = (IdentityId, &T)> {
        self.iter_after(None)
    }
}

/// Equal when they hold the same identities, however they were laid out.
impl<T: PartialEq> PartialEq for IdentityTable<T> {
    fn eq(&self, other: &IdentityTable<T>) -> bool {
        self.len == other.len && self.values().eq(other.values())
    }
}

impl<T: fmt::Debug> fmt::Debug for IdentityTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.values()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identity;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn identity(id: u64, version: u32) -> Identity {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, version % 60).single();
        Identity::new(IdentityId(id), at.unwrap_or_default())
    }

    fn id() -> impl Strategy<Value = u64> {
        prop_oneof![0..64u64, 0..10_000u64, any::<u64>()]
    }

    proptest! {
        /// The table answers as an ordered map does, for dense, far and huge ids in
        /// any order, inserted, made when absent and removed.
        #[test]
        fn agrees_with_an_ordered_map(
            steps in proptest::collection::vec((id(), 0..60u32), 0..200),
            after in proptest::option::of(id()),
        ) {
            let mut table: IdentityTable<Identity> = IdentityTable::default();
            let mut model = BTreeMap::new();
            for (id, version) in steps {
                if version % 7 == 6 {
                    // Some steps remove instead.
                    prop_assert_eq!(table.remove(IdentityId(id)), model.remove(&IdentityId(id)));
                } else if version % 7 == 5 {
                    let made = table.get_or_insert_with(IdentityId(id), || identity(id, version)).cloned();
                    let expected = model.entry(IdentityId(id)).or_insert_with(|| identity(id, version)).clone();
                    prop_assert_eq!(made, Some(expected));
                } else {
                    table.insert(IdentityId(id), identity(id, version));
                    model.insert(IdentityId(id), identity(id, version));
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for (id, expected) in &model {
                prop_assert_eq!(table.get(*id), Some(expected));
            }
            prop_assert_eq!(table.get(IdentityId(u64::MAX - 7)), model.get(&IdentityId(u64::MAX - 7)));
            let all: Vec<(IdentityId, &Identity)> = model.iter().map(|(id, i)| (*id, i)).collect();
            prop_assert_eq!(table.values().collect::<Vec<_>>(), all);
            let start = match after {
                Some(id) => std::ops::Bound::Excluded(IdentityId(id)),
                None => std::ops::Bound::Unbounded,
            };
            let expected: Vec<(IdentityId, &Identity)> = model.range((start, std::ops::Bound::Unbounded)).map(|(id, i)| (*id, i)).collect();
            prop_assert_eq!(table.iter_after(after.map(IdentityId)).collect::<Vec<_>>(), expected);
        }
    }
}
