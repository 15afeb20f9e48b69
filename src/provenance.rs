//! [`Sources`]: the provenance of an identity's values, aligned with its attribute
//! entries.
//!
//! A store holds millions of identities of a few dozen values each, and almost all
//! values of one identity were written by one import (a first load writes them all at
//! once): one provenance per value, each beside its own copy of the attribute name,
//! took 48 bytes per value, about as much as the values themselves. Here each distinct
//! provenance is held once per identity and each attribute entry holds a two-byte index
//! into them, in the same position as the entry in the identity's attribute map (the
//! names are not repeated).

use smallvec::SmallVec;

use crate::model::Provenance;

/// The index of "no provenance" (an entry decoded without one).
const NONE: u16 = u16::MAX;

/// Per attribute entry of an identity (by position), the index of its provenance among
/// the distinct ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// The distinct provenances in use (a few at most, usually one).
    distinct: SmallVec<[Provenance; 1]>,
    /// Per attribute entry, in the attribute map's order: an index into `distinct`, or
    /// [`NONE`].
    of: SmallVec<[u16; 20]>,
}

/// Equal when every position has the same provenance, whatever order the distinct
/// ones were met in (a decoded identity meets them in name order).
impl PartialEq for Sources {
    fn eq(&self, other: &Sources) -> bool {
        self.of.len() == other.of.len() && (0..self.of.len()).all(|at| self.get(at) == other.get(at))
    }
}

impl Eq for Sources {}

impl Sources {
    /// The provenance of the entry at `position`.
    pub(crate) fn get(&self, position: usize) -> Option<&Provenance> {
        let index = *self.of.get(position)?;
        self.distinct.get(usize::from(index))
    }

    /// Sets the provenance of the existing entry at `position`.
    pub(crate) fn set(&mut self, position: usize, provenance: Provenance) {
        let index = self.index_of(provenance);
        if let Some(slot) = self.of.get_mut(position) {
            *slot = index;
        }
        self.collect();
    }

    /// Inserts an entry at `position` (shifting the later ones), with its provenance or
    /// none.
    pub(crate) fn insert(&mut self, position: usize, provenance: Option<Provenance>) {
        let index = provenance.map_or(NONE, |p| self.index_of(p));
        let position = position.min(self.of.len());
        self.of.insert(position, index);
    }

    /// Removes the entry at `position`.
    pub(crate) fn remove(&mut self, position: usize) {
        if position < self.of.len() {
            self.of.remove(position);
            self.collect();
        }
    }

    /// Keeps the entries whose position `keep` accepts.
    pub(crate) fn retain_positions(&mut self, keep: &[bool]) {
        let mut position = 0;
        self.of.retain(|_| {
            let kept = keep.get(position).copied().unwrap_or(true);
            position += 1;
            kept
        });
        self.collect();
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.of.reserve_exact(additional);
    }

    /// Sources made of their parts: `of[n]` indexes `distinct` (or is out of its
    /// range: no provenance); distinct ones no value uses are dropped.
    pub(crate) fn from_parts(distinct: Vec<Provenance>, of: &[usize]) -> Sources {
        let count = distinct.len();
        let mut sources = Sources {
            distinct: SmallVec::from_vec(distinct),
            of: of
                .iter()
                .map(|&index| match u16::try_from(index) {
                    Ok(index) if usize::from(index) < count => index,
                    _ => NONE,
                })
                .collect(),
        };
        sources.collect();
        sources
    }

    /// The index of `provenance` among the distinct ones, added if new. The list is
    /// short (a provenance per import that wrote a value of this identity), so a scan
    /// beats any map.
    fn index_of(&mut self, provenance: Provenance) -> u16 {
        if let Some(found) = self.distinct.iter().position(|p| *p == provenance) {
            return u16::try_from(found).unwrap_or(NONE);
        }
        match u16::try_from(self.distinct.len()) {
            Ok(index) if index != NONE => {
                self.distinct.push(provenance);
                index
            }
            // More distinct provenances than a two-byte index holds would take more
            // attributes than any schema has; recorded as none rather than wrong.
            _ => NONE,
        }
    }

    /// Drops the provenances no entry refers to any longer (an overwritten value's), so
    /// that the list stays as short as the entries are many.
    fn collect(&mut self) {
        if self.distinct.len() <= 1 {
            if self.of.iter().all(|&i| i == NONE) {
                self.distinct.clear();
            }
            return;
        }
        let mut used = SmallVec::<[bool; 8]>::from_elem(false, self.distinct.len());
        for &index in &self.of {
            if let Some(flag) = used.get_mut(usize::from(index)) {
                *flag = true;
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        // Old index -> new index, keeping the order of the ones kept.
        let mut renumber = SmallVec::<[u16; 8]>::with_capacity(used.len());
        let mut next = 0u16;
        for &u in &used {
            renumber.push(if u { next } else { NONE });
            next += u16::from(u);
        }
        let mut position = 0;
        self.distinct.retain(|_| {
            let keep = used.get(position).copied().unwrap_or(false);
            position += 1;
            keep
        });
        for index in &mut self.of {
            *index = renumber.get(usize::from(*index)).copied().unwrap_or(NONE);
        }
    }

    /// How many distinct provenances are held (for tests).
    #[cfg(test)]
    fn distinct_len(&self) -> usize {
        self.distinct.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Phase;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn provenance(n: u8) -> Provenance {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, u32::from(n % 60)).single();
        Provenance::new(format!("s{}", n % 3), n, Phase::Create, at.unwrap_or_default())
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(usize, Option<u8>),
        Set(usize, u8),
        Remove(usize),
        Retain(Vec<bool>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..8usize, proptest::option::of(0..6u8)).prop_map(|(p, v)| Step::Insert(p, v)),
            (0..8usize, 0..6u8).prop_map(|(p, v)| Step::Set(p, v)),
            (0..8usize).prop_map(Step::Remove),
            proptest::collection::vec(any::<bool>(), 0..8).prop_map(Step::Retain),
        ]
    }

    proptest! {
        /// The table answers as a plain vector of provenances by position would, and
        /// holds no provenance that no entry uses.
        #[test]
        fn agrees_with_a_vector_of_provenances(steps in proptest::collection::vec(step(), 0..40)) {
            let mut sources = Sources::default();
            let mut model: Vec<Option<Provenance>> = Vec::new();
            for step in steps {
                match step {
                    Step::Insert(p, v) => {
                        let p = p.min(model.len());
                        sources.insert(p, v.map(provenance));
                        model.insert(p, v.map(provenance));
                    }
                    Step::Set(p, v) => {
                        if p < model.len() {
                            sources.set(p, provenance(v));
                            model[p] = Some(provenance(v));
                        }
                    }
                    Step::Remove(p) => {
                        sources.remove(p);
                        if p < model.len() {
                            model.remove(p);
                        }
                    }
                    Step::Retain(keep) => {
                        sources.retain_positions(&keep);
                        let mut i = 0;
                        model.retain(|_| {
                            let k = keep.get(i).copied().unwrap_or(true);
                            i += 1;
                            k
                        });
                    }
                }
                for (i, expected) in model.iter().enumerate() {
                    prop_assert_eq!(sources.get(i), expected.as_ref(), "position {}", i);
                }
                prop_assert_eq!(sources.get(model.len()), None);
                let mut distinct: Vec<&Provenance> = model.iter().flatten().collect();
                distinct.sort_by_key(|p| (p.strength, p.system.to_string()));
                distinct.dedup();
                prop_assert_eq!(sources.distinct_len(), distinct.len());
            }
        }
    }
}
