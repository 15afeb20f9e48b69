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

    /// The text numbered `id`, lent.
    pub(super) fn text_str(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(Text::as_str)
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

/// The numbers of the names a load's rows repeat, at hand: every row names the same
/// attributes in the same order, so the next name is almost always the one after the
/// last, and needs no look-up in the dictionary's tables.
#[derive(Debug, Default)]
pub(super) struct NamesAtHand {
    names: Vec<(Text, u32)>,
    next: usize,
}

/// The most names kept at hand.
const AT_HAND: usize = 256;

impl NamesAtHand {
    /// `dictionary`, answering names from those at hand first.
    pub(super) fn over<'a>(&'a mut self, dictionary: &'a mut Dictionary) -> NamesOver<'a> {
        NamesOver {
            at_hand: self,
            dictionary,
        }
    }
}

/// A dictionary with names at hand (see [`NamesAtHand`]).
pub(super) struct NamesOver<'a> {
    at_hand: &'a mut NamesAtHand,
    dictionary: &'a mut Dictionary,
}

impl Intern for NamesOver<'_> {
    fn name_id(&mut self, name: &str) -> Result<u32, StoreError> {
        let hand = &mut *self.at_hand;
        let at = match hand.names.get(hand.next) {
            Some((next, _)) if next.as_str() == name => Some(hand.next),
            _ => hand.names.iter().position(|(known, _)| known.as_str() == name),
        };
        if let Some((at, &(_, id))) = at.and_then(|at| Some((at, hand.names.get(at)?))) {
            hand.next = at + 1;
            return Ok(id);
        }
        let id = self.dictionary.name_id(name)?;
        if hand.names.len() < AT_HAND {
            hand.names.push((Text::from(name), id));
            hand.next = hand.names.len();
        }
        Ok(id)
    }

    fn text_id(&mut self, attribute: u32, text: &str) -> Result<Option<u32>, StoreError> {
        self.dictionary.text_id(attribute, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_hand_are_the_dictionarys_numbers() {
        let mut plain = Dictionary::default();
        let mut with_hand = Dictionary::default();
        let mut hand = NamesAtHand::default();
        // Rows naming the same names in order, one skipping a name, one a new name.
        let rows: [&[&str]; 4] = [
            &["id", "mail", "title"],
            &["id", "title"],
            &["id", "mail", "title"],
            &["zone", "id"],
        ];
        for row in rows {
            for name in row {
                let expected = plain.name_id(name);
                assert_eq!(hand.over(&mut with_hand).name_id(name), expected, "{name}");
            }
        }
        assert_eq!(hand.over(&mut with_hand).text_id(0, "x"), plain.text_id(0, "x"));
    }

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
