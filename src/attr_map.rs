//! [`AttrMap`]: the attribute map of accounts and identities, a vector of entries
//! sorted by name.
//!
//! A record holds a few dozen attributes at most, and a store holds millions of
//! records: one allocation of packed entries per record, searched by bisection, costs
//! far less memory and time to build, read and drop than a tree of nodes per record
//! (at 100k identities with 20 attributes a `BTreeMap` per record took about 3 KB,
//! mostly node slack).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Index;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::Text;

/// A map from attribute names to `V`, iterated in name order (as a `BTreeMap`
/// would be), stored as a sorted list of names beside a vector of values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AttrMap<V> {
    names: Vec<Text>,
    values: Vec<V>,
}

impl<V> Default for AttrMap<V> {
    fn default() -> Self {
        AttrMap {
            names: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> AttrMap<V> {
    /// An empty map.
    pub fn new() -> AttrMap<V> {
        AttrMap::default()
    }

    /// An empty map with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> AttrMap<V> {
        AttrMap {
            names: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
        }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.names.as_slice().binary_search_by(|k| k.as_str().cmp(key))
    }

    /// Where `key` is (`Ok`) or would be inserted (`Err`): the position other tables
    /// aligned with the entries use. Appending in name order needs one comparison.
    pub(crate) fn position(&self, key: &str) -> Result<usize, usize> {
        let names = self.names.as_slice();
        match names.last() {
            None => Err(0),
            Some(last) if last.as_str() < key => Err(names.len()),
            Some(_) => self.find(key),
        }
    }

    /// Inserts an entry at `at` (a position [`AttrMap::position`] returned as `Err`).
    pub(crate) fn insert_at(&mut self, at: usize, key: Text, value: V) {
        debug_assert!(self.find(&key) == Err(at));
        let at = at.min(self.values.len());
        self.names.insert(at, key);
        self.values.insert(at, value);
    }

    /// Replaces the value at `at`.
    pub(crate) fn replace_at(&mut self, at: usize, value: V) {
        if let Some(v) = self.values.get_mut(at) {
            *v = value;
        }
    }

    /// Removes the entry at `at`.
    pub(crate) fn remove_at(&mut self, at: usize) {
        if at < self.values.len() {
            self.names.remove(at);
            self.values.remove(at);
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().and_then(|i| self.values.get(i))
    }

    /// The value of `key`, to change in place.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => self.values.get_mut(i),
            Err(_) => None,
        }
    }

    /// The stored name and value of `key`.
    pub fn get_key_value(&self, key: &str) -> Option<(&Text, &V)> {
        let i = self.find(key).ok()?;
        Some((self.names.as_slice().get(i)?, self.values.get(i)?))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets the value of `key`, returning the one it replaces.
    pub fn insert(&mut self, key: Text, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(i) => self.values.get_mut(i).map(|v| std::mem::replace(v, value)),
            Err(i) => {
                self.insert_at(i, key, value);
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        match self.find(key) {
            Ok(i) if i < self.values.len() => {
                self.names.remove(i);
                Some(self.values.remove(i))
            }
            _ => None,
        }
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Text, &mut V) -> bool) {
        let names = self.names.as_slice();
        let kept: Vec<bool> = names
            .iter()
            .zip(self.values.iter_mut())
            .map(|(k, v)| keep(k, v))
            .collect();
        if kept.iter().all(|&k| k) {
            return;
        }
        let mut at = 0;
        self.names.retain(|_| {
            at += 1;
            kept.get(at - 1).copied().unwrap_or(true)
        });
        let mut at = 0;
        self.values.retain(|_| {
            at += 1;
            kept.get(at - 1).copied().unwrap_or(true)
        });
    }

    /// The entries in name order.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            names: self.names.as_slice().iter(),
            values: self.values.iter(),
        }
    }

    /// The names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Text> + ExactSizeIterator {
        self.names.as_slice().iter()
    }

    /// The values in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.values.iter()
    }

    /// The values in name order, to change in place.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.values.iter_mut()
    }

    /// Makes room for `additional` more entries (before a record is built).
    pub fn reserve(&mut self, additional: usize) {
        self.names.reserve_exact(additional);
        self.values.reserve_exact(additional);
    }

    /// Releases room held beyond the entries (after a record is built).
    pub fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    /// The map of entries already in strictly increasing name order (checked in
    /// debug builds).
    pub(crate) fn from_sorted(entries: Vec<(Text, V)>) -> AttrMap<V> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        let (names, values) = entries.into_iter().unzip();
        AttrMap { names, values }
    }

    /// The map of `entries`; for equal names the last one wins (as collecting into a
    /// `BTreeMap` does).
    fn from_entries(mut entries: Vec<(Text, V)>) -> AttrMap<V> {
        // A stable sort keeps equal names in arrival order; keep the last of each run.
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut deduped: Vec<(Text, V)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        AttrMap::from_sorted(entries)
    }
}

impl<V> Index<&str> for AttrMap<V> {
    type Output = V;

    /// The value of `key`.
    ///
    /// # Panics
    /// When `key` has no value (as indexing a `BTreeMap` does).
    #[allow(clippy::panic, reason = "the documented contract of Index, as for BTreeMap")]
    fn index(&self, key: &str) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no attribute `{key}` in the map"),
        }
    }
}

/// The entries of an [`AttrMap`] in name order.
#[derive(Debug, Clone)]
pub struct Iter<'a, V> {
    names: std::slice::Iter<'a, Text>,
    values: std::slice::Iter<'a, V>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Text, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.names.next()?, self.values.next()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

impl<V> DoubleEndedIterator for Iter<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        Some((self.names.next_back()?, self.values.next_back()?))
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<'a, V> IntoIterator for &'a AttrMap<V> {
    type Item = (&'a Text, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

impl<V> IntoIterator for AttrMap<V> {
    type Item = (Text, V);
    type IntoIter = std::vec::IntoIter<(Text, V)>;

    fn into_iter(self) -> Self::IntoIter {
        let names = self.names.as_slice().iter().cloned();
        names.zip(self.values).collect::<Vec<_>>().into_iter()
    }
}

impl<K: Into<Text>, V> FromIterator<(K, V)> for AttrMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> AttrMap<V> {
        AttrMap::from_entries(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<Text>, V> Extend<(K, V)> for AttrMap<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v);
        }
    }
}

impl<K: Into<Text>, V, const N: usize> From<[(K, V); N]> for AttrMap<V> {
    fn from(entries: [(K, V); N]) -> AttrMap<V> {
        entries.into_iter().collect()
    }
}

impl<V: fmt::Debug> fmt::Debug for AttrMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for AttrMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for AttrMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = AttrMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attribute names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<AttrMap<V>, A::Error> {
                // The size hint comes from the input: cap it so a hostile hint cannot
                // reserve memory the entries never fill.
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(256));
                while let Some((k, v)) = access.next_entry::<String, V>()? {
                    entries.push((Text::from(k), v));
                }
                Ok(AttrMap::from_entries(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts and removes leaves the map equal, entry for entry
        /// and in order, to a `BTreeMap` given the same sequence.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec((0u8..3, 0u8..12, any::<u16>()), 0..80)) {
            let mut map: AttrMap<u16> = AttrMap::new();
            let mut model: BTreeMap<String, u16> = BTreeMap::new();
            for (op, key, value) in ops {
                let key = format!("a{key}");
                match op {
                    0 | 1 => prop_assert_eq!(map.insert(key.as_str().into(), value), model.insert(key, value)),
                    _ => prop_assert_eq!(map.remove(&key), model.remove(&key)),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let got: Vec<(String, u16)> = map.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let want: Vec<(String, u16)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(&got, &want);
            for (k, v) in &model {
                prop_assert_eq!(map.get(k), Some(v));
                prop_assert!(map.contains_key(k));
            }
            prop_assert_eq!(map.get("zz"), None);
        }

        /// A schema order builds, from any subsequence of its names with values, the
        /// map inserting them one by one builds; names that are not the schema's own
        /// shared texts, or out of schema order, give `None`.
        #[test]
        fn schema_order_builds_what_inserts_build(
            schema in proptest::collection::btree_set("[a-z]{1,6}", 1..12),
            shuffle in any::<u64>(),
            keep in proptest::collection::vec(any::<bool>(), 12),
        ) {
            // Declaration order: the names permuted by the seed.
            let mut names: Vec<Text> = schema.iter().map(|n| Text::from(n.as_str())).collect();
            let mut seed = shuffle;
            for i in (1..names.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                names.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let order = SchemaOrder::new(names.iter());
            let numbers: Vec<u16> = (0..12).collect();
            let values: Vec<(&Text, &u16)> = names
                .iter()
                .zip(&numbers)
                .zip(&keep)
                .filter(|(_, keep)| **keep)
                .map(|(pair, _)| pair)
                .collect();
            let mut slots = Vec::new();
            let built = order.map(values.iter().copied(), &mut slots);
            let mut inserted = AttrMap::new();
            for (n, v) in &values {
                inserted.insert((*n).clone(), **v);
            }
            prop_assert_eq!(built, Some(inserted));
            // Equal but not shared names are not the schema's own.
            let copies: Vec<Text> = values.iter().map(|(n, _)| Text::from(n.as_str())).collect();
            if !copies.is_empty() {
                prop_assert_eq!(order.map(copies.iter().zip(values.iter().map(|(_, v)| *v)), &mut slots), None);
            }
            // Out of schema order.
            if values.len() > 1 {
                prop_assert_eq!(order.map(values.iter().rev().copied(), &mut slots), None);
            }
        }


        /// Collecting keeps the last value of a repeated name, as a `BTreeMap` does.
        #[test]
        fn collecting_keeps_the_last_of_equal_names(pairs in proptest::collection::vec((0u8..8, any::<u16>()), 0..40)) {
            let map: AttrMap<u16> = pairs.iter().map(|(k, v)| (format!("k{k}"), *v)).collect();
            let model: BTreeMap<String, u16> = pairs.iter().map(|(k, v)| (format!("k{k}"), *v)).collect();
            let got: Vec<(String, u16)> = map.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let want: Vec<(String, u16)> = model.into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn serializes_as_a_map_in_name_order_and_reads_any_order() {
        let map: AttrMap<u8> = [("b", 2), ("a", 1)].into();
        let json = serde_json::to_string(&map).unwrap_or_default();
        assert_eq!(json, r#"{"a":1,"b":2}"#);
        let back: AttrMap<u8> = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap_or_default();
        assert_eq!(back, map);
        assert!(serde_json::from_str::<AttrMap<u8>>("[1]").is_err());
    }

    #[test]
    fn retain_and_index() {
        let mut map: AttrMap<u8> = [("a", 1), ("b", 2), ("c", 3)].into();
        map.retain(|_, v| *v != 2);
        assert_eq!(map.keys().map(Text::as_str).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(map["c"], 3);
        assert_eq!(map.get_key_value("a").map(|(k, v)| (k.as_str(), *v)), Some(("a", 1)));
        if let Some(v) = map.get_mut("a") {
            *v = 9;
        }
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [9, 3]);
    }
}

/// The names of a schema in declaration order with their rank in name order, computed
/// once: records whose values arrive in schema order (an inserted row's) are then built
/// without comparing names.
#[derive(Debug)]
pub(crate) struct SchemaOrder<'a> {
    names: Vec<&'a Text>,
    /// Per schema position: the position of its name in name order.
    rank: Vec<usize>,
}

impl<'a> SchemaOrder<'a> {
    /// The order of `names` (unique, in declaration order).
    pub(crate) fn new(names: impl Iterator<Item = &'a Text>) -> SchemaOrder<'a> {
        let names: Vec<&Text> = names.collect();
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&a, &b| names[a].cmp(names[b]));
        let mut rank = vec![0; names.len()];
        for (r, &position) in by_name.iter().enumerate() {
            rank[position] = r;
        }
        SchemaOrder { names, rank }
    }

    /// The map of `values`, whose names are this schema's own shared names in schema
    /// order (some may be missing); `None` when they are not (the caller then builds
    /// the map by name). `slots` is a buffer reused between calls.
    pub(crate) fn map<'v, V: Clone + 'v>(
        &self,
        values: impl Iterator<Item = (&'v Text, &'v V)>,
        slots: &mut Vec<Option<(Text, V)>>,
    ) -> Option<AttrMap<V>> {
        slots.clear();
        slots.resize(self.names.len(), None);
        let mut position = 0;
        let mut count = 0;
        for (name, value) in values {
            while !self.names.get(position)?.is_same(name) {
                position += 1;
            }
            *slots.get_mut(*self.rank.get(position)?)? = Some((name.clone(), value.clone()));
            position += 1;
            count += 1;
        }
        let mut entries = Vec::with_capacity(count);
        entries.extend(slots.drain(..).flatten());
        Some(AttrMap::from_sorted(entries))
    }
}
