//! [`Postings`]: the identities holding a value under each match-key hash of one
//! indexed attribute (the memory store's correlation index).
//!
//! Almost every key is held by one identity (an employee number, a mail): those are
//! a plain id beside the hash, and only keys several identities share get a set. A
//! million keys took 66 MB as a set per key, 34 MB this way.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::Fast;
use crate::model::IdentityId;

/// Match-key hash -> the identities holding a value of that hash, sorted.
///
/// A hash is in `one` or in `several`, never both, and a set in `several` holds at
/// least two ids: equal postings have one layout, so derived equality compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Postings {
    one: HashMap<u64, IdentityId, Fast>,
    several: HashMap<u64, SmallVec<[IdentityId; 2]>, Fast>,
}

impl Postings {
    /// Postings with room for `capacity` keys of one identity each.
    pub(super) fn with_capacity(capacity: usize) -> Postings {
        Postings {
            one: HashMap::with_capacity_and_hasher(capacity, Fast::default()),
            several: HashMap::default(),
        }
    }

    /// The identities holding a value of `hash`, sorted (none: empty).
    pub(super) fn get(&self, hash: u64) -> &[IdentityId] {
        match self.one.get(&hash) {
            Some(id) => std::slice::from_ref(id),
            None => self.several.get(&hash).map_or(&[], |ids| ids.as_slice()),
        }
    }

    /// Adds `id` to the holders of `hash` (once).
    pub(super) fn insert(&mut self, hash: u64, id: IdentityId) {
        if let Some(ids) = self.several.get_mut(&hash) {
            if let Err(at) = ids.binary_search(&id) {
                ids.insert(at, id);
            }
            return;
        }
        match self.one.get(&hash).copied() {
            None => {
                self.one.insert(hash, id);
            }
            Some(held) if held == id => {}
            Some(held) => {
                self.one.remove(&hash);
                let pair = if held < id { [held, id] } else { [id, held] };
                self.several.insert(hash, SmallVec::from_buf(pair));
            }
        }
    }

    /// Removes `id` from the holders of `hash`.
    pub(super) fn remove(&mut self, hash: u64, id: IdentityId) {
        if self.one.get(&hash) == Some(&id) {
            self.one.remove(&hash);
            return;
        }
        let Some(ids) = self.several.get_mut(&hash) else {
            return;
        };
        ids.retain(|held| *held != id);
        if let [last] = ids.as_slice() {
            let last = *last;
            self.several.remove(&hash);
            self.one.insert(hash, last);
        }
    }

    /// Makes room for `additional` more keys of one identity each.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.one.reserve(additional);
    }

    /// Whether no key is held.
    pub(super) fn is_empty(&self) -> bool {
        self.one.is_empty() && self.several.is_empty()
    }

    /// Sets the holders of `hash` as they are (for tests: as if another key hashed so).
    #[cfg(test)]
    pub(super) fn set(&mut self, hash: u64, ids: &[IdentityId]) {
        self.one.remove(&hash);
        self.several.remove(&hash);
        for &id in ids {
            self.insert(hash, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The postings answer as a map of sorted sets does, and equal contents are
        /// equal postings however they were reached.
        #[test]
        fn agree_with_a_map_of_sets(steps in proptest::collection::vec((0u64..6, 0u64..5, any::<bool>()), 0..80)) {
            let mut postings = Postings::default();
            let mut model: BTreeMap<u64, BTreeSet<IdentityId>> = BTreeMap::new();
            for (hash, id, add) in steps {
                let id = IdentityId(id);
                if add {
                    postings.insert(hash, id);
                    model.entry(hash).or_default().insert(id);
                } else {
                    postings.remove(hash, id);
                    if let Some(ids) = model.get_mut(&hash) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            model.remove(&hash);
                        }
                    }
                }
                for hash in 0..6 {
                    let expected: Vec<IdentityId> = model.get(&hash).into_iter().flatten().copied().collect();
                    prop_assert_eq!(postings.get(hash), expected.as_slice());
                }
                prop_assert_eq!(postings.is_empty(), model.is_empty());
                // The same contents built afresh, in order.
                let mut fresh = Postings::with_capacity(4);
                for (hash, ids) in &model {
                    for id in ids {
                        fresh.insert(*hash, *id);
                    }
                }
                prop_assert_eq!(&fresh, &postings);
            }
        }
    }
}
