//! [`Dictionary`]: the memory store's numbers for names and repeating texts.
//!
//! The memory store keeps its records in the binary form of [`crate::record`]: an
//! attribute or system name inside a record is a small number, and so is a text value
//! that repeats across records (a title, a department, a country). The policy of which
//! texts are kept is the SQLite store's (see [`crate::record::DICTIONARY_MAX_TEXT`]),
//! so both stores hold a million records in about the same room.
//!
//! Entries are never taken back: a number handed out stays valid for every record that
//! holds it, and a text no record holds any more costs a few bytes (an attribute keeps
//! at most a few thousand).

use std::collections::HashMap;

use crate::record::{DecodeError, Intern, DICTIONARY_MAX_PER_ATTRIBUTE, DICTIONARY_MAX_TEXT};
use crate::store::StoreError;
use crate::text::Text;

/// The scope of attribute and system names; an attribute's values have the scope of
/// its name's number + 1.
const NAMES: u32 = 0;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Numbers for names and for texts that repeat, by scope.
#[derive(Debug, Clone, Default)]
pub(super) struct Dictionary {
    /// Per scope, the number of each entry.
    ids: Map<u32, Map<Text, u32>>,
    /// Per number, its text.
    texts: Vec<Text>,
}

impl Dictionary {
    /// The text numbered `id`.
    pub(super) fn text(&self, id: u32) -> Result<Text, DecodeError> {
        self.texts
            .get(id as usize)
            .cloned()
            .ok_or_else(|| format!("dictionary entry {id} does not exist"))
    }

    /// The number of an attribute or system name, if it has one (no record holds a
    /// name without one).
    pub(super) fn name_number(&self, name: &str) -> Option<u32> {
        self.ids.get(&NAMES).and_then(|names| names.get(name)).copied()
    }

    fn add(&mut self, scope: u32, text: &str) -> Result<u32, StoreError> {
        let id =
            u32::try_from(self.texts.len()).map_err(|_| StoreError::new("memory store: the dictionary is full"))?;
        let text = Text::from(text);
        self.texts.push(text.clone());
        self.ids.entry(scope).or_default().insert(text, id);
        Ok(id)
    }
}

impl Intern for Dictionary {
    fn name_id(&mut self, name: &str) -> Result<u32, StoreError> {
        match self.ids.get(&NAMES).and_then(|names| names.get(name)) {
            Some(&id) => Ok(id),
            None => self.add(NAMES, name),
        }
    }

    fn text_id(&mut self, attribute: u32, text: &str) -> Result<Option<u32>, StoreError> {
        if text.len() > DICTIONARY_MAX_TEXT {
            return Ok(None);
        }
        let scope = attribute.saturating_add(1);
        let held = match self.ids.get(&scope) {
            // An attribute of unique values: written in full without a look-up.
            Some(texts) if texts.len() >= DICTIONARY_MAX_PER_ATTRIBUTE => return Ok(None),
            Some(texts) => match texts.get(text) {
                Some(&id) => return Ok(Some(id)),
                None => texts.len(),
            },
            None => 0,
        };
        if held >= DICTIONARY_MAX_PER_ATTRIBUTE {
            return Ok(None);
        }
        self.add(scope, text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_read_back_and_an_attribute_stops_when_full() {
        let mut dictionary = Dictionary::default();
        let title = dictionary.name_id("title").unwrap_or(u32::MAX);
        assert_eq!(dictionary.name_id("title").ok(), Some(title));
        assert_eq!(dictionary.text(title).ok().as_deref(), Some("title"));
        let clerk = dictionary.text_id(title, "Clerk").ok().flatten();
        assert!(clerk.is_some());
        assert_eq!(dictionary.text_id(title, "Clerk").ok().flatten(), clerk);
        assert_eq!(
            dictionary.text(clerk.unwrap_or(u32::MAX)).ok().as_deref(),
            Some("Clerk")
        );
        let long = "x".repeat(DICTIONARY_MAX_TEXT + 1);
        assert_eq!(dictionary.text_id(title, &long).ok(), Some(None));
        for n in 0..DICTIONARY_MAX_PER_ATTRIBUTE {
            assert!(dictionary.text_id(title, &format!("t{n}")).is_ok());
        }
        assert_eq!(dictionary.text_id(title, "one more").ok(), Some(None));
        // A kept text is still answered from a full attribute's records by number.
        assert_eq!(
            dictionary.text(clerk.unwrap_or(u32::MAX)).ok().as_deref(),
            Some("Clerk")
        );
        assert!(dictionary.text(u32::MAX).is_err());
    }
}
