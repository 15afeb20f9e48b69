//! [`Text`]: an immutable, shared string for names and values.
//!
//! One value read from an export is stored once, however many places hold it: the
//! import plan's change, the account mirror, the identity it flows into and a decision
//! about it all share the same text (a copy is a reference-count increment, not an
//! allocation). Attribute and system names are shared the same way: the validated
//! configuration holds one `Text` per name and records borrow it.
//!
//! The texts of one imported row are cut from one buffer holding all of the row's
//! cells (`RowTexts`): a row costs one allocation rather than one per cell, and its
//! values sit side by side in memory while the row is applied. A value kept from such
//! a row keeps the row's buffer (a few hundred bytes) alive with it.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `len` of a text that is its whole buffer (of any length).
const WHOLE: u32 = u32::MAX;

/// An immutable, cheaply cloned string. Compares, orders, hashes, displays and
/// serializes exactly as the `str` it holds.
#[derive(Clone)]
pub struct Text {
    /// The shared buffer the text is (or is cut from).
    buffer: Arc<str>,
    /// Where the text starts in `buffer`.
    start: u32,
    /// Its length in bytes, or [`WHOLE`].
    len: u32,
}

impl Text {
    /// The text as a `str`.
    pub fn as_str(&self) -> &str {
        if self.len == WHOLE {
            return &self.buffer;
        }
        let start = self.start as usize;
        // Cut at char boundaries when it was made (`RowTexts::text`).
        self.buffer.get(start..start + self.len as usize).unwrap_or_default()
    }

    /// Whether both are the same shared text (not only equal): a name cloned from the
    /// configuration is, so a walk along the schema needs no string comparison.
    pub(crate) fn is_same(&self, other: &Text) -> bool {
        Arc::ptr_eq(&self.buffer, &other.buffer) && self.start == other.start && self.len == other.len
    }

    fn whole(buffer: Arc<str>) -> Text {
        Text {
            buffer,
            start: 0,
            len: WHOLE,
        }
    }
}

/// Builds the texts of one row's cells in one shared buffer: [`RowTexts::push`] each
/// cell, [`RowTexts::seal`], then [`RowTexts::text`] each pushed cell.
#[derive(Debug, Default)]
pub(crate) struct RowTexts {
    /// The cells pushed since the last seal, end to end.
    pending: String,
    /// The sealed buffer.
    buffer: Option<Arc<str>>,
}

/// Where a pushed cell sits in its row's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    start: u32,
    len: u32,
}

impl RowTexts {
    /// Starts a new row (the previous row's texts stay valid).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.buffer = None;
    }

    /// Adds a cell to the row; `None` when the row has grown past 4 GiB (the caller
    /// then builds the text on its own).
    pub(crate) fn push(&mut self, cell: &str) -> Option<Cut> {
        let start = u32::try_from(self.pending.len()).ok()?;
        let len = u32::try_from(cell.len()).ok().filter(|&len| len != WHOLE)?;
        start.checked_add(len)?;
        self.pending.push_str(cell);
        Some(Cut { start, len })
    }

    /// Makes the shared buffer of the cells pushed since [`RowTexts::clear`].
    pub(crate) fn seal(&mut self) {
        self.buffer = Some(Arc::from(self.pending.as_str()));
    }

    /// The text of a pushed cell (empty before [`RowTexts::seal`]).
    pub(crate) fn text(&self, cut: Cut) -> Text {
        match &self.buffer {
            Some(buffer) => Text {
                buffer: buffer.clone(),
                start: cut.start,
                len: cut.len,
            },
            None => Text::default(),
        }
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::whole(Arc::from(""))
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::whole(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::whole(Arc::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::whole(Arc::from(s.as_str()))
    }
}

impl From<&Text> for Text {
    fn from(t: &Text) -> Text {
        t.clone()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_owned()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.is_same(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups find it.
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn behaves_as_the_str_it_holds() {
        let a = Text::from("Ann");
        let b = Text::from(String::from("Ann"));
        assert_eq!(a, b);
        assert_eq!(a, "Ann");
        assert_eq!("Ann", a);
        let (a_text, b_text) = (Text::from("a"), Text::from("b"));
        assert!(a_text < b_text);
        assert_eq!(a.to_string(), "Ann");
        assert_eq!(format!("{a:?}"), "\"Ann\"");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"Ann\"");
        assert_eq!(serde_json::from_str::<Text>("\"Ann\"").unwrap(), a);
        let mut tree = BTreeMap::new();
        tree.insert(a.clone(), 1);
        assert_eq!(tree.get("Ann"), Some(&1));
        let mut hash = HashMap::new();
        hash.insert(a.clone(), 2);
        assert_eq!(hash.get("Ann"), Some(&2));
    }

    #[test]
    fn a_rows_texts_are_its_cells_cut_from_one_buffer() {
        let mut row = RowTexts::default();
        row.clear();
        let cuts: Vec<Cut> = ["Ann", "", "Engineering", "é-ü"]
            .iter()
            .filter_map(|cell| row.push(cell))
            .collect();
        row.seal();
        let texts: Vec<Text> = cuts.iter().map(|&cut| row.text(cut)).collect();
        assert_eq!(texts, ["Ann", "", "Engineering", "é-ü"]);
        assert_eq!(texts[2], Text::from("Engineering"));
        assert_eq!(texts[3].len(), "é-ü".len());
        // One buffer: each text starts where the one before it ends.
        let end_of_first = texts[0].as_str().as_ptr() as usize + 3;
        assert_eq!(texts[2].as_str().as_ptr() as usize, end_of_first);
        assert!(texts[2].is_same(&texts[2].clone()));
        assert!(!texts[0].is_same(&texts[2]));
        // The next row's texts do not disturb the ones handed out.
        row.clear();
        let cut = row.push("Bob");
        row.seal();
        assert_eq!(cut.map(|cut| row.text(cut)), Some(Text::from("Bob")));
        assert_eq!(texts[0], "Ann");
        // Hashes and orders as its text.
        let mut hash = std::collections::HashSet::new();
        hash.insert(texts[2].clone());
        assert!(hash.contains("Engineering"));
        assert!(texts[0] < texts[2]);
    }

    #[test]
    fn clones_share_the_text() {
        let a = Text::from("shared");
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
