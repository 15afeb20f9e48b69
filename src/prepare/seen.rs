//! [`SeenKeys`]: the keys an import names (its rows', then its deletes'), with how
//! often, held as positions rather than copies.
//!
//! A complete import of a million rows names a million keys, and the diff asks for
//! each stored account whether the import named it (a rejected row protects its account
//! from deletion). A map of the keys themselves took 66 MiB beside the export; this
//! table holds a four-byte position per distinct key (about 10 MiB) and finds the key
//! text again in the snapshot when it compares. Keys named more than once (rejected as
//! duplicates) are few, and kept as text with their count.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

/// The keys of an import, by the position (a row, then a delete after the rows) of
/// the first entry naming each.
#[derive(Debug, Default)]
pub(crate) struct SeenKeys {
    first: HashTable<u32>,
    /// Keys named more than once, with how often.
    repeated: HashMap<String, u32, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
}

impl SeenKeys {
    /// Counts the keys at positions `0..len`; `key_at` gives a position's key (`None`:
    /// the entry has none).
    pub(crate) fn count<'k>(len: usize, key_at: impl Fn(u32) -> Option<Cow<'k, str>>) -> SeenKeys {
        let mut seen = SeenKeys {
            first: HashTable::with_capacity(len),
            ..SeenKeys::default()
        };
        let hasher = seen.hasher.clone();
        for position in (0..len).filter_map(|p| u32::try_from(p).ok()) {
            let Some(key) = key_at(position) else { continue };
            let hash = hasher.hash_one(key.as_ref());
            let entry = seen.first.entry(
                hash,
                |&held| key_at(held).as_deref() == Some(key.as_ref()),
                |&held| key_at(held).map_or(0, |k| hasher.hash_one(k.as_ref())),
            );
            match entry {
                hashbrown::hash_table::Entry::Occupied(_) => {
                    *seen.repeated.entry(key.into_owned()).or_insert(1) += 1;
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert(position);
                }
            }
        }
        seen
    }

    /// How often `key` was named; `key_at` as given to [`SeenKeys::count`].
    pub(crate) fn times<'k>(&self, key: &str, key_at: impl Fn(u32) -> Option<Cow<'k, str>>) -> u32 {
        if let Some(&times) = self.repeated.get(key) {
            return times;
        }
        let hash = self.hasher.hash_one(key);
        match self.first.find(hash, |&held| key_at(held).as_deref() == Some(key)) {
            Some(_) => 1,
            None => 0,
        }
    }

    /// Whether a key was named more than once.
    pub(crate) fn repeated(&self, key: &str) -> bool {
        self.repeated.contains_key(key)
    }

    /// The position of the first entry naming each key, in no order.
    #[cfg(test)]
    pub(crate) fn positions(&self) -> impl Iterator<Item = u32> + '_ {
        self.first.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Counts and look-ups are those of a map of the keys themselves, whatever the
        /// repeats and gaps.
        #[test]
        fn counts_are_those_of_a_map_of_the_keys(
            keys in proptest::collection::vec(proptest::option::of("[a-d]{0,2}"), 0..200),
            asked in proptest::collection::vec("[a-e]{0,2}", 0..20),
        ) {
            let key_at = |p: u32| keys.get(p as usize).cloned().flatten().map(Cow::Owned);
            let seen = SeenKeys::count(keys.len(), key_at);
            let mut expected: HashMap<&str, u32> = HashMap::new();
            for key in keys.iter().flatten() {
                *expected.entry(key.as_str()).or_default() += 1;
            }
            for key in expected.keys().copied().chain(asked.iter().map(String::as_str)) {
                let times = expected.get(key).copied().unwrap_or(0);
                prop_assert_eq!(seen.times(key, key_at), times, "{}", key);
                prop_assert_eq!(seen.repeated(key), times > 1);
            }
            let mut firsts: Vec<&str> = seen
                .positions()
                .filter_map(|p| keys.get(p as usize).and_then(|k| k.as_deref()))
                .collect();
            firsts.sort_unstable();
            let mut distinct: Vec<&str> = expected.keys().copied().collect();
            distinct.sort_unstable();
            prop_assert_eq!(firsts, distinct);
        }
    }
}
