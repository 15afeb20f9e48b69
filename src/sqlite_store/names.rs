//! The dictionary: attribute and system names inside record blobs, and text values
//! that repeat across records (titles, departments, countries), are small numbers
//! (`attrflow_names`), so a record of twenty values repeats neither twenty names nor
//! the same department name a million times.
//!
//! Each entry has a scope: 0 for names, an attribute's name number + 1 for the values of
//! that attribute. A value is kept when it is at most [`MAX_TEXT`] bytes and its
//! attribute has fewer than [`MAX_PER_ATTRIBUTE`] entries: attributes whose values
//! repeat end up wholly in the dictionary, attributes of unique values (ids, mails)
//! stop after their first few thousand and are written in full from then on (without
//! a look-up: a full attribute's values are written in full even when the dictionary
//! holds them).
//!
//! The store caches the table. Numbers are handed out inside the caller's transaction,
//! so a rolled-back transaction can take back numbers the cache already holds; the
//! store marks the cache stale on every rollback ([`NameTable::invalidate`]) and it is
//! read again before its next use. A reader meeting a number it does not know (written
//! by another connection) reads it from the table before calling the record damaged.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::StoreError;
use crate::text::Text;

use super::sql_error;

use crate::record::{DICTIONARY_MAX_PER_ATTRIBUTE as MAX_PER_ATTRIBUTE, DICTIONARY_MAX_TEXT as MAX_TEXT};

/// The scope of attribute and system names.
const NAMES: u32 = 0;

/// Hash maps with a fast hasher: every value of every record written is looked up.
type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The cached `attrflow_names` table.
#[derive(Debug, Default)]
pub(super) struct NameTable {
    /// Per scope, the number of each entry.
    ids: Map<u32, Map<Text, u32>>,
    /// Per number, its text.
    texts: Vec<Option<Text>>,
    /// Whether the cache may hold numbers a rollback took back.
    stale: bool,
}

impl NameTable {
    /// Forgets the cache: it is read again before its next use.
    pub(super) fn invalidate(&mut self) {
        self.stale = true;
    }

    fn reload(&mut self, conn: &Connection, op: &str) -> Result<(), StoreError> {
        let mut stmt = conn
            .prepare_cached("SELECT id, scope, name FROM attrflow_names")
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?))
            })
            .map_err(sql_error(op))?;
        self.ids.clear();
        self.texts.clear();
        for row in rows {
            let (id, scope, text) = row.map_err(sql_error(op))?;
            let out_of_range = || StoreError::new(format!("sqlite store: {op}: dictionary entry {id} out of range"));
            let id = u32::try_from(id).map_err(|_| out_of_range())?;
            let scope = u32::try_from(scope).map_err(|_| out_of_range())?;
            self.remember(scope, id, Text::from(text));
        }
        self.stale = false;
        Ok(())
    }

    fn remember(&mut self, scope: u32, id: u32, text: Text) {
        let at = id as usize;
        if self.texts.len() <= at {
            self.texts.resize(at + 1, None);
        }
        if let Some(slot) = self.texts.get_mut(at) {
            *slot = Some(text.clone());
        }
        self.ids.entry(scope).or_default().insert(text, id);
    }

    /// The text numbered `id` as cached, lent (`None`: not cached; [`NameTable::name`]
    /// reads the table). Call [`NameTable::fresh`] first.
    pub(super) fn cached(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).and_then(|t| t.as_deref())
    }

    pub(super) fn fresh(&mut self, conn: &Connection, op: &str) -> Result<(), StoreError> {
        if self.stale {
            self.reload(conn, op)?;
        }
        Ok(())
    }

    /// The number of `text` in `scope`, added to the table (in the caller's
    /// transaction) when new.
    fn add(&mut self, conn: &Connection, op: &str, scope: u32, text: &str) -> Result<u32, StoreError> {
        conn.prepare_cached("INSERT OR IGNORE INTO attrflow_names (scope, name) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![scope, text]))
            .map_err(sql_error(op))?;
        let id: i64 = conn
            .prepare_cached("SELECT id FROM attrflow_names WHERE scope = ?1 AND name = ?2")
            .and_then(|mut s| s.query_row(params![scope, text], |row| row.get(0)))
            .map_err(sql_error(op))?;
        let id = u32::try_from(id)
            .map_err(|_| StoreError::new(format!("sqlite store: {op}: dictionary entry {id} out of range")))?;
        self.remember(scope, id, Text::from(text));
        Ok(id)
    }

    /// The number of an attribute or system name, added when new.
    pub(super) fn id(&mut self, conn: &Connection, op: &str, name: &str) -> Result<u32, StoreError> {
        self.fresh(conn, op)?;
        if let Some(&id) = self.ids.get(&NAMES).and_then(|names| names.get(name)) {
            return Ok(id);
        }
        self.add(conn, op, NAMES, name)
    }

    /// The number of an attribute or system name, if it has one (nothing is added: a
    /// reader asks, and a name without a number is in no record).
    pub(super) fn number(&mut self, conn: &Connection, op: &str, name: &str) -> Result<Option<u32>, StoreError> {
        self.fresh(conn, op)?;
        if let Some(&id) = self.ids.get(&NAMES).and_then(|names| names.get(name)) {
            return Ok(Some(id));
        }
        // Added by another connection since the cache was read.
        let id: Option<i64> = conn
            .prepare_cached("SELECT id FROM attrflow_names WHERE scope = ?1 AND name = ?2")
            .and_then(|mut s| s.query_row(params![NAMES, name], |row| row.get(0)).optional())
            .map_err(sql_error(op))?;
        let Some(id) = id else {
            return Ok(None);
        };
        let id = u32::try_from(id)
            .map_err(|_| StoreError::new(format!("sqlite store: {op}: dictionary entry {id} out of range")))?;
        self.remember(NAMES, id, Text::from(name));
        Ok(Some(id))
    }

    /// The number of a text value of `attribute` (a name number) when the dictionary
    /// keeps it, added when new and there is room (see the module documentation).
    pub(super) fn text_id(
        &mut self,
        conn: &Connection,
        op: &str,
        attribute: u32,
        text: &str,
    ) -> Result<Option<u32>, StoreError> {
        if text.len() > MAX_TEXT {
            return Ok(None);
        }
        self.fresh(conn, op)?;
        let scope = attribute.saturating_add(1);
        let held = match self.ids.get(&scope) {
            // A full attribute is one of unique values (ids, mails): its texts are
            // written in full without a look-up, even the few the dictionary holds (a
            // record may hold a text either way; decoding reads both).
            Some(texts) if texts.len() >= MAX_PER_ATTRIBUTE => return Ok(None),
            Some(texts) => match texts.get(text) {
                Some(&id) => return Ok(Some(id)),
                None => texts.len(),
            },
            None => 0,
        };
        if held >= MAX_PER_ATTRIBUTE {
            return Ok(None);
        }
        self.add(conn, op, scope, text).map(Some)
    }

    /// The text numbered `id` (`None` when the table has no such number).
    pub(super) fn name(&mut self, conn: &Connection, op: &str, id: u32) -> Result<Option<Text>, StoreError> {
        self.fresh(conn, op)?;
        if let Some(Some(text)) = self.texts.get(id as usize) {
            return Ok(Some(text.clone()));
        }
        // Written by another connection since the cache was read.
        let row: Option<(i64, String)> = conn
            .prepare_cached("SELECT scope, name FROM attrflow_names WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([i64::from(id)], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(sql_error(op))?;
        Ok(row.and_then(|(scope, text)| {
            let scope = u32::try_from(scope).ok()?;
            let text = Text::from(text);
            self.remember(scope, id, text.clone());
            Some(text)
        }))
    }
}
