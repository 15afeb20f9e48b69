//! [`TextCache`]: one shared [`Text`] per repeated cell text of an import.
//!
//! A first load turns every cell into a value, and the same titles, departments and
//! locations recur across a million rows: building each from its own allocation costs
//! one heap string per cell, kept for as long as the store holds the value. The cache
//! hands out the text already built for an equal cell instead, per attribute, for the
//! length of one import (no global pool: nothing outlives the import but the shared
//! texts themselves). Attributes whose cells rarely repeat (ids, mails, phone numbers)
//! are found out by sampling and then bypass the cache, so it never costs them more
//! than the sample's look-ups.

use std::collections::HashMap;

use crate::text::Text;

/// Look-ups per attribute before deciding whether caching it pays.
const SAMPLE: u32 = 4096;

/// Shared texts of repeated cells, per attribute position, for one import.
#[derive(Debug, Default)]
pub(crate) struct TextCache<'a> {
    attributes: Vec<AttributeCache<'a>>,
}

#[derive(Debug, Default)]
struct AttributeCache<'a> {
    texts: HashMap<&'a str, Text>,
    looked: u32,
    hits: u32,
    /// Set once the sample showed the attribute's cells rarely repeat.
    bypass: bool,
}

impl<'a> TextCache<'a> {
    /// A cache for attributes at positions `0..attributes`.
    pub(crate) fn new(attributes: usize) -> TextCache<'a> {
        TextCache {
            attributes: (0..attributes).map(|_| AttributeCache::default()).collect(),
        }
    }

    /// The shared text equal to `text` of the attribute at `position`, built on first
    /// sight (and always for a position out of range or bypassed).
    pub(crate) fn text(&mut self, position: usize, text: &'a str) -> Text {
        let Some(cache) = self.attributes.get_mut(position) else {
            return Text::from(text);
        };
        if cache.bypass {
            return Text::from(text);
        }
        cache.looked = cache.looked.saturating_add(1);
        let shared = match cache.texts.get(text) {
            Some(shared) => {
                cache.hits = cache.hits.saturating_add(1);
                shared.clone()
            }
            None => {
                let shared = Text::from(text);
                cache.texts.insert(text, shared.clone());
                shared
            }
        };
        // Fewer than half the sample's cells repeated: the attribute's values are
        // mostly distinct, and a table of them would only grow.
        if cache.looked == SAMPLE && cache.hits < SAMPLE / 2 {
            cache.bypass = true;
            cache.texts = HashMap::new();
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_cells_share_one_text_and_distinct_ones_stop_being_cached() {
        let mut cache = TextCache::new(2);
        let first = cache.text(0, "Engineering");
        let again = cache.text(0, "Engineering");
        assert!(first.is_same(&again), "an equal cell gets the same shared text");
        assert_eq!(again.as_str(), "Engineering");
        // Another attribute has a table of its own.
        assert!(!cache.text(1, "Engineering").is_same(&first));
        // An attribute whose sample is mostly distinct bypasses the cache afterwards.
        let ids: Vec<String> = (0..SAMPLE + 10).map(|i| format!("id-{i}")).collect();
        for id in &ids {
            assert_eq!(cache.text(1, id).as_str(), id);
        }
        let a = cache.text(1, "id-0");
        let b = cache.text(1, "id-0");
        assert_eq!(a, b);
        assert!(!a.is_same(&b), "a bypassed attribute builds each text");
        // The repeated attribute keeps sharing after its sample.
        for _ in 0..SAMPLE {
            cache.text(0, "Engineering");
        }
        assert!(cache.text(0, "Engineering").is_same(&first));
        // Out of range: built, never panics.
        assert_eq!(cache.text(9, "x").as_str(), "x");
    }
}
