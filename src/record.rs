//! The binary form of accounts and identities: the records of the memory store and of
//! the SQLite store (its schema version 2).
//!
//! The SQLite store's version 1 kept each record as JSON: every attribute name, every tag of the tagged
//! value form and every provenance spelt out, about 28 times the size of the export it
//! came from. Here a record is its values in name order, each behind the small number
//! of its name (a store's dictionary: see [`Intern`]), with lengths and numbers as variable-length
//! integers:
//!
//! ```text
//! account  := flags link fingerprint:u64le count (name value)* rest?
//! identity := flags created modified count (provenance)* values rest?
//! values   := count (name value source?)*
//!           | shape      (when `flags` has bit 2: the values are those of an account)
//! link     := 0 (unmatched) | 1 id (linked) | 2 count id* (ambiguous)
//! value    := 0 (empty) | scalar | 7 count scalar*   (multi-valued)
//! scalar   := 32 + len bytes (a text shorter than 224 bytes) | 1 len bytes (a longer text)
//!           | 8 id (a text of the dictionary) | 2 zigzag (integer) | 3 (false) | 4 (true)
//!           | 5 zigzag (date: days from 0001-01-01) | 6 zigzag varint (datetime: seconds, nanoseconds)
//!           | 9 (in an account: a text equal to the account's key, as a key column's value is)
//! provenance := system phase:u8 strength:u8 datetime
//! source   := 0 (none) | index + 1 (into the provenances); absent when `flags` has
//!             bit 1: every value has the first provenance (what a load writes)
//! rest     := the rarely set fields, present when `flags` has bit 0: in an account
//!             with bit 1 too, `account-rest` (below); else (identities, and accounts
//!             written before it) JSON
//! account-rest := misc:u8 (bit 0 provisioned, bit 1 disabled)
//!             count (name count scalar*)*          the pushed values
//!             count (name echo)*                   the echoes
//! echo     := bits:u8 (bit 0 armed, bit 1: the pushed value is the account's value of
//!             `name`, not written) value? bounces:varint count scalar* (removed)
//! shape    := the number of a [`ValueRef`] list the store keeps: each value is the
//!             value of an attribute of the identity's one linked account of a system
//! ```
//!
//! A shaped identity (only the memory store writes them, for a direct load: see
//! [`encode_loaded_identity`]) does not repeat the values of the account it was
//! projected from; the store reads them from that account ([`References`]) and writes
//! the identity's values out before that account changes.
//!
//! Texts that repeat across records (titles, departments, countries) are kept once, in
//! the store's dictionary, and records hold their number (see [`Intern::text_id`]).
//!
//! An account's rarely set fields (pushed values, echoes, flags) are binary too: a
//! confirmed create holds an echo per attribute it was created with, each the very
//! value the account holds, and as JSON they made such a record five times its size
//! (and a tenth of an outbound plan's time went to parsing them back). An identity's
//! (granted access, scope exits, pending creates) stay JSON: they are few, and JSON
//! keeps their form in one place, the serde derives of the model. Records written
//! with an account's JSON tail (before the binary one) read as they did.
//!
//! Decoding checks every length against the bytes left: a damaged blob is an error
//! naming what was being read, never a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Account, Echo, Identity, IdentityId, LinkState, PendingCreate, Phase, Provenance};
#[cfg(feature = "sqlite")]
use crate::store::AccountSummary;
use crate::store::{LoadedRow, StoreError};
use crate::text::Text;
use crate::value::{Scalar, Value};

const EMPTY: u8 = 0;
const TEXT: u8 = 1;
const INTEGER: u8 = 2;
const FALSE: u8 = 3;
const TRUE: u8 = 4;
const DATE: u8 = 5;
const DATETIME: u8 = 6;
const MULTI: u8 = 7;
const INTERNED: u8 = 8;
const KEY: u8 = 9;
/// `SHORT + len`: a text of `len` < 224 bytes, its length in the tag.
const SHORT: u8 = 32;

const UNMATCHED: u8 = 0;
const LINKED: u8 = 1;
const AMBIGUOUS: u8 = 2;

/// `flags` bit 0: a tail of the rarely set fields follows.
const HAS_REST: u8 = 1;
/// `flags` bit 1 (accounts): that tail is binary (`account-rest`), not JSON.
const REST_BINARY: u8 = 2;
/// `account-rest` misc bits.
const PROVISIONED: u8 = 1;
const DISABLED: u8 = 2;
/// `echo` bits.
const ARMED: u8 = 1;
const PUSHED_IS_VALUE: u8 = 2;
/// `flags` bit 1 (identities): every value has the first provenance; no source bytes.
const ONE_SOURCE: u8 = 2;
/// `flags` bit 2 (identities): the values are a shape's, read from an account.
const SHAPED: u8 = 4;

/// The longest text value a store's dictionary keeps.
pub(crate) const DICTIONARY_MAX_TEXT: usize = 64;
/// The most values of one attribute a store's dictionary keeps: attributes whose
/// values repeat end up wholly in the dictionary, attributes of unique values (ids,
/// mails) stop after their first few thousand and are written in full from then on.
pub(crate) const DICTIONARY_MAX_PER_ATTRIBUTE: usize = 4096;

/// The store's dictionary, as the encoder sees it.
pub(crate) trait Intern {
    /// The number of an attribute or system name.
    fn name_id(&mut self, name: &str) -> Result<u32, StoreError>;
    /// The number of a text value of `attribute` (a name number) when the dictionary
    /// keeps it, or `None` to write the text itself.
    fn text_id(&mut self, attribute: u32, text: &str) -> Result<Option<u32>, StoreError>;
}

/// Why a blob could not be read back.
pub(crate) type DecodeError = String;

/// One value of a shaped identity: the identity's attribute (a name number), the
/// number of its provenance (as a literal record's `source`: index + 1), and the
/// attribute of the account that holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ValueRef {
    pub(crate) attribute: u32,
    pub(crate) source: u32,
    pub(crate) account_attribute: u32,
}

/// The values of a shaped identity, as the store that wrote it reads them: for shape
/// number `shape`, (name number, value, source) of each attribute numbered in `wanted`
/// (all with `None`), in name order.
pub(crate) trait References {
    fn shaped_values(&self, shape: u32, wanted: Option<&[u32]>) -> Result<Vec<(u32, Value, u64)>, DecodeError>;
}

/// The references of a store that writes no shaped record (the SQLite store).
#[cfg(any(test, feature = "sqlite"))]
pub(crate) struct NoReferences;

#[cfg(any(test, feature = "sqlite"))]
impl References for NoReferences {
    fn shaped_values(&self, shape: u32, _: Option<&[u32]>) -> Result<Vec<(u32, Value, u64)>, DecodeError> {
        Err(format!(
            "shape {shape} is not known here: only the memory store writes shaped identities"
        ))
    }
}

pub(crate) mod lent;

// ---------------------------------------------------------------- writing

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_zigzag(out: &mut Vec<u8>, n: i64) {
    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn put_datetime(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    put_zigzag(out, at.timestamp());
    put_varint(out, u64::from(at.timestamp_subsec_nanos()));
}

/// The writing of a value: the attribute's number, and the key of the account holding
/// it (`None` in an identity).
struct Writing<'k> {
    attribute: u32,
    key: Option<&'k str>,
}

fn put_scalar(out: &mut Vec<u8>, scalar: &Scalar, at: &Writing<'_>, intern: &mut dyn Intern) -> Result<(), StoreError> {
    let attribute = at.attribute;
    match scalar {
        Scalar::Text(text) => {
            if at.key == Some(text.as_str()) {
                out.push(KEY);
            } else if let Some(id) = intern.text_id(attribute, text)? {
                out.push(INTERNED);
                put_varint(out, u64::from(id));
            } else if let Some(tag) = u8::try_from(text.len()).ok().and_then(|len| len.checked_add(SHORT)) {
                out.push(tag);
                out.extend_from_slice(text.as_bytes());
            } else {
                out.push(TEXT);
                put_str(out, text);
            }
        }
        Scalar::Integer(n) => {
            out.push(INTEGER);
            put_zigzag(out, *n);
        }
        Scalar::Boolean(b) => out.push(if *b { TRUE } else { FALSE }),
        Scalar::Date(date) => {
            out.push(DATE);
            put_zigzag(out, i64::from(chrono::Datelike::num_days_from_ce(date)));
        }
        Scalar::Datetime(at) => {
            out.push(DATETIME);
            put_datetime(out, at);
        }
    }
    Ok(())
}

fn put_value(out: &mut Vec<u8>, value: &Value, at: &Writing<'_>, intern: &mut dyn Intern) -> Result<(), StoreError> {
    match value {
        Value::Empty => out.push(EMPTY),
        Value::Single(scalar) => put_scalar(out, scalar, at, intern)?,
        Value::Multi(scalars) => {
            out.push(MULTI);
            put_varint(out, scalars.len() as u64);
            for scalar in scalars.iter() {
                put_scalar(out, scalar, at, intern)?;
            }
        }
    }
    Ok(())
}

fn put_rest<T: Serialize>(out: &mut Vec<u8>, rest: Option<&T>) -> Result<(), StoreError> {
    if let Some(rest) = rest {
        serde_json::to_writer(&mut *out, rest)
            .map_err(|e| StoreError::new(format!("sqlite store: a record's other fields: {e}")))?;
    }
    Ok(())
}

/// The rarely set fields of an account, as JSON (records written before the binary
/// `account-rest`).
#[derive(Deserialize)]
struct AccountRestIn {
    #[serde(default)]
    pushed: BTreeMap<Text, Vec<Scalar>>,
    #[serde(default)]
    echoes: BTreeMap<Text, Echo>,
    #[serde(default)]
    provisioned: bool,
    #[serde(default)]
    disabled: bool,
}

/// The rarely set fields of an identity.
#[derive(Serialize)]
struct IdentityRestOut<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    access: &'a BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    out_of_scope: &'a BTreeMap<Text, DateTime<Utc>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pending_creates: &'a BTreeMap<Text, PendingCreate>,
}

#[derive(Deserialize, Default)]
struct IdentityRestIn {
    #[serde(default)]
    access: BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
    #[serde(default)]
    out_of_scope: BTreeMap<Text, DateTime<Utc>>,
    #[serde(default)]
    pending_creates: BTreeMap<Text, PendingCreate>,
}

/// Appends the blob of `account` (its key is kept beside it, not in it) with the
/// stored `fingerprint`; `name_id` gives the number of an attribute name.
pub(crate) fn encode_account(
    account: &Account,
    fingerprint: u64,
    intern: &mut dyn Intern,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let rare = !account.pushed.is_empty() || !account.echoes.is_empty() || account.provisioned || account.disabled;
    out.push(if rare { HAS_REST | REST_BINARY } else { 0 });
    match &account.link {
        LinkState::Unmatched => out.push(UNMATCHED),
        LinkState::Linked(id) => {
            out.push(LINKED);
            put_varint(out, id.get());
        }
        LinkState::Ambiguous(ids) => {
            out.push(AMBIGUOUS);
            put_varint(out, ids.len() as u64);
            for id in ids {
                put_varint(out, id.get());
            }
        }
    }
    out.extend_from_slice(&fingerprint.to_le_bytes());
    put_attributes(
        out,
        account.attributes.len(),
        account.attributes.iter(),
        &account.key,
        intern,
    )?;
    if rare {
        put_account_rest(out, account, intern)?;
    }
    Ok(())
}

/// The `account-rest` of `account`.
fn put_account_rest(out: &mut Vec<u8>, account: &Account, intern: &mut dyn Intern) -> Result<(), StoreError> {
    let key = Some(account.key.as_str());
    let mut misc = 0;
    if account.provisioned {
        misc |= PROVISIONED;
    }
    if account.disabled {
        misc |= DISABLED;
    }
    out.push(misc);
    put_varint(out, account.pushed.len() as u64);
    for (name, items) in &account.pushed {
        let attribute = intern.name_id(name)?;
        put_varint(out, u64::from(attribute));
        put_varint(out, items.len() as u64);
        for item in items {
            put_scalar(out, item, &Writing { attribute, key }, intern)?;
        }
    }
    put_varint(out, account.echoes.len() as u64);
    for (name, echo) in &account.echoes {
        let attribute = intern.name_id(name)?;
        put_varint(out, u64::from(attribute));
        let same = account.value(name) == &echo.pushed;
        let mut bits = if echo.armed { ARMED } else { 0 };
        if same {
            bits |= PUSHED_IS_VALUE;
        }
        out.push(bits);
        if !same {
            put_value(out, &echo.pushed, &Writing { attribute, key }, intern)?;
        }
        put_varint(out, u64::from(echo.bounces));
        put_varint(out, echo.removed.len() as u64);
        for item in &echo.removed {
            put_scalar(out, item, &Writing { attribute, key }, intern)?;
        }
    }
    Ok(())
}

/// One provenance: its system's number, phase, strength and time.
fn put_provenance(out: &mut Vec<u8>, system: u32, phase: Phase, strength: u8, at: &DateTime<Utc>) {
    put_varint(out, u64::from(system));
    out.push(match phase {
        Phase::Create => 0,
        Phase::Update => 1,
    });
    out.push(strength);
    put_datetime(out, at);
}

/// `count` attributes of the account `key`, each its name's number and its value.
fn put_attributes<'v>(
    out: &mut Vec<u8>,
    count: usize,
    attributes: impl Iterator<Item = (&'v Text, &'v Value)>,
    key: &str,
    intern: &mut dyn Intern,
) -> Result<(), StoreError> {
    put_varint(out, count as u64);
    for (name, value) in attributes {
        let attribute = intern.name_id(name)?;
        put_varint(out, u64::from(attribute));
        put_value(
            out,
            value,
            &Writing {
                attribute,
                key: Some(key),
            },
            intern,
        )?;
    }
    Ok(())
}

/// Appends the blob of a loaded row's account (see [`LoadedRow`]): what
/// [`encode_account`] writes for [`LoadedRow::account`], without building it.
pub(crate) fn encode_loaded_account(
    row: &LoadedRow<'_>,
    fingerprint: u64,
    intern: &mut dyn Intern,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    out.push(0);
    out.push(LINKED);
    put_varint(out, row.identity.get());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    put_attributes(
        out,
        row.values.len(),
        row.values.iter().map(|(n, v)| (n, v)),
        row.key,
        intern,
    )
}

/// Appends the blob of a loaded row's identity, shaped: what [`encode_identity`]
/// writes for [`LoadedRow::identity`] but with the values left in the row's account,
/// `shape` numbering the list of where they are. The row's flows are in name order,
/// distinct, each naming one of its values (the caller checked).
pub(crate) fn encode_loaded_identity(
    row: &LoadedRow<'_>,
    system: &Text,
    at: &DateTime<Utc>,
    intern: &mut dyn Intern,
    shape: &mut dyn FnMut(&[ValueRef]) -> Result<u32, StoreError>,
    refs: &mut Vec<ValueRef>,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    // The distinct strengths (the only part of the provenances that differs), in the
    // order of the first value having each; as an identity holds them, an empty value
    // is no value.
    let mut distinct: Vec<u8> = Vec::new();
    refs.clear();
    for flow in row.flows {
        let Some((account_attribute, value)) = row.values.get(flow.value) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let source = match distinct.iter().position(|s| *s == flow.strength) {
            Some(at) => at + 1,
            None => {
                distinct.push(flow.strength);
                distinct.len()
            }
        };
        refs.push(ValueRef {
            attribute: intern.name_id(&flow.attribute)?,
            source: source as u32,
            account_attribute: intern.name_id(account_attribute)?,
        });
    }
    let number = shape(refs)?;
    out.push(SHAPED);
    put_datetime(out, at);
    put_datetime(out, at);
    put_varint(out, distinct.len() as u64);
    let system_id = intern.name_id(system)?;
    for strength in &distinct {
        put_provenance(out, system_id, Phase::Create, *strength, at);
    }
    put_varint(out, u64::from(number));
    Ok(())
}

/// Appends the blob of `identity` (its id is the row's key, not in it).
pub(crate) fn encode_identity(
    identity: &Identity,
    intern: &mut dyn Intern,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let rare = !identity.access.is_empty() || !identity.out_of_scope.is_empty() || !identity.pending_creates.is_empty();
    let flags_at = out.len();
    out.push(if rare { HAS_REST } else { 0 });
    put_datetime(out, &identity.created);
    put_datetime(out, &identity.modified);
    // The distinct provenances, in the order of the first entry using each.
    let mut distinct: Vec<&Provenance> = Vec::new();
    let mut sources: Vec<u64> = Vec::with_capacity(identity.attributes().len());
    for position in 0..identity.attributes().len() {
        sources.push(match identity.provenance_at(position) {
            None => 0,
            Some(p) => match distinct.iter().position(|d| *d == p) {
                Some(at) => at as u64 + 1,
                None => {
                    distinct.push(p);
                    distinct.len() as u64
                }
            },
        });
    }
    let one_source = sources.iter().all(|&s| s == 1);
    if one_source {
        if let Some(flags) = out.get_mut(flags_at) {
            *flags |= ONE_SOURCE;
        }
    }
    put_varint(out, distinct.len() as u64);
    for p in &distinct {
        put_provenance(out, intern.name_id(&p.system)?, p.phase, p.strength, &p.at);
    }
    put_varint(out, identity.attributes().len() as u64);
    for ((name, value), source) in identity.attributes().iter().zip(&sources) {
        let attribute = intern.name_id(name)?;
        put_varint(out, u64::from(attribute));
        put_value(out, value, &Writing { attribute, key: None }, intern)?;
        if !one_source {
            put_varint(out, *source);
        }
    }
    let rest = rare.then_some(IdentityRestOut {
        access: &identity.access,
        out_of_scope: &identity.out_of_scope,
        pending_creates: &identity.pending_creates,
    });
    put_rest(out, rest.as_ref())
}

// ---------------------------------------------------------------- reading

/// A cursor over a blob; every read checks the bytes left.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    /// The key of the account being read (`None` for an identity).
    key: Option<&'a str>,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, at: 0, key: None }
    }

    /// A reader of the record of account `key`.
    fn of_account(data: &'a [u8], key: &'a str) -> Reader<'a> {
        Reader {
            data,
            at: 0,
            key: Some(key),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        let byte = *self
            .data
            .get(self.at)
            .ok_or_else(|| format!("the blob ends inside {what}"))?;
        self.at += 1;
        Ok(byte)
    }

    fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| format!("the blob ends inside {what}"))?;
        let bytes = self.data.get(self.at..end).unwrap_or_default();
        self.at = end;
        Ok(bytes)
    }

    fn varint(&mut self, what: &str) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("{what} is not a valid number"))
    }

    fn zigzag(&mut self, what: &str) -> Result<i64, DecodeError> {
        let n = self.varint(what)?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// A count of items that each take at least one byte: never more than the bytes
    /// left, so a damaged count cannot ask for a huge allocation.
    fn count(&mut self, what: &str) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        let left = self.data.len().saturating_sub(self.at);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| format!("{what} ({n}) is more than the blob holds"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let n = self.varint(what)?;
        u32::try_from(n).map_err(|_| format!("{what} ({n}) is out of range"))
    }

    fn str(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let len = self.count(what)?;
        std::str::from_utf8(self.bytes(len, what)?).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn datetime(&mut self, what: &str) -> Result<DateTime<Utc>, DecodeError> {
        let secs = self.zigzag(what)?;
        let nanos = self.u32(what)?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| format!("{what} is not a valid time"))
    }

    fn scalar(
        &mut self,
        tag: u8,
        text: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
    ) -> Result<Scalar, DecodeError> {
        Ok(match tag {
            SHORT.. => {
                let bytes = self.bytes(usize::from(tag - SHORT), "a text value")?;
                Scalar::Text(Text::from(
                    std::str::from_utf8(bytes).map_err(|_| "a text value is not UTF-8".to_owned())?,
                ))
            }
            TEXT => Scalar::Text(Text::from(self.str("a text value")?)),
            INTERNED => Scalar::Text(text(self.u32("a dictionary text")?)?),
            KEY => Scalar::Text(Text::from(
                self.key
                    .ok_or_else(|| "a value names the key outside an account".to_owned())?,
            )),
            INTEGER => Scalar::Integer(self.zigzag("an integer value")?),
            FALSE => Scalar::Boolean(false),
            TRUE => Scalar::Boolean(true),
            DATE => {
                let days = self.zigzag("a date value")?;
                let date = i32::try_from(days)
                    .ok()
                    .and_then(NaiveDate::from_num_days_from_ce_opt)
                    .ok_or_else(|| format!("a date value ({days} days) is out of range"))?;
                Scalar::Date(date)
            }
            DATETIME => Scalar::Datetime(self.datetime("a datetime value")?),
            other => return Err(format!("unknown value tag {other}")),
        })
    }

    fn value(&mut self, text: &mut dyn FnMut(u32) -> Result<Text, DecodeError>) -> Result<Value, DecodeError> {
        let tag = self.u8("a value")?;
        match tag {
            EMPTY => Ok(Value::Empty),
            MULTI => {
                let count = self.count("a value count")?;
                let mut scalars = Vec::with_capacity(count);
                for _ in 0..count {
                    let tag = self.u8("a value")?;
                    scalars.push(self.scalar(tag, text)?);
                }
                Ok(Value::Multi(scalars.into_boxed_slice()))
            }
            tag => Ok(Value::Single(self.scalar(tag, text)?)),
        }
    }

    /// Steps over a value without building it; the number of values a multi-valued
    /// one holds, 0 for the others.
    fn skip_value(&mut self) -> Result<u64, DecodeError> {
        match self.u8("a value")? {
            EMPTY => Ok(0),
            MULTI => {
                let count = self.count("a value count")?;
                for _ in 0..count {
                    let tag = self.u8("a value")?;
                    self.skip_scalar(tag)?;
                }
                Ok(count as u64)
            }
            tag => self.skip_scalar(tag).map(|()| 0),
        }
    }

    /// Steps over an identity's flags, times and provenances; its flags.
    fn skip_identity_head(&mut self) -> Result<u8, DecodeError> {
        let flags = self.u8("the identity's flags")?;
        self.datetime("the creation time")?;
        self.datetime("the modification time")?;
        let count = self.count("the provenance count")?;
        for _ in 0..count {
            self.u32("a provenance's system")?;
            self.u8("a provenance's phase")?;
            self.u8("a provenance's strength")?;
            self.datetime("a provenance's time")?;
        }
        Ok(flags)
    }

    /// The provenance number of an identity's value: 1 in a record of one source (not
    /// written per value), else read (0: none).
    fn value_source(&mut self, flags: u8) -> Result<u64, DecodeError> {
        if flags & ONE_SOURCE != 0 {
            Ok(1)
        } else {
            self.varint("a value's provenance")
        }
    }

    /// Steps over an identity's head and values (not built), to the tail of its other
    /// fields; the identity's flags.
    #[cfg(feature = "sqlite")]
    fn skip_identity_to_rest(&mut self) -> Result<u8, DecodeError> {
        let flags = self.skip_identity_head()?;
        if flags & SHAPED != 0 {
            self.u32("the identity's shape")?;
            return Ok(flags);
        }
        let count = self.count("the attribute count")?;
        for _ in 0..count {
            self.u32("an attribute name")?;
            self.skip_value()?;
            self.value_source(flags)?;
        }
        Ok(flags)
    }

    fn fingerprint(&mut self) -> Result<u64, DecodeError> {
        let bytes: [u8; 8] = self
            .bytes(8, "the fingerprint")?
            .try_into()
            .map_err(|_| "the fingerprint is cut short".to_owned())?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn link(&mut self) -> Result<LinkState, DecodeError> {
        Ok(match self.u8("the account's link")? {
            UNMATCHED => LinkState::Unmatched,
            LINKED => LinkState::Linked(IdentityId::from_raw(self.varint("the linked identity")?)),
            AMBIGUOUS => {
                let count = self.count("the ambiguous identities")?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(IdentityId::from_raw(self.varint("an ambiguous identity")?));
                }
                LinkState::Ambiguous(ids)
            }
            other => return Err(format!("unknown link tag {other}")),
        })
    }

    fn skip_scalar(&mut self, tag: u8) -> Result<(), DecodeError> {
        match tag {
            SHORT.. => self.bytes(usize::from(tag - SHORT), "a text value").map(drop),
            TEXT => {
                let len = self.count("a text value")?;
                self.bytes(len, "a text value").map(drop)
            }
            INTERNED => self.u32("a dictionary text").map(drop),
            INTEGER | DATE => self.zigzag("a number").map(drop),
            FALSE | TRUE | KEY => Ok(()),
            DATETIME => self.datetime("a datetime value").map(drop),
            other => Err(format!("unknown value tag {other}")),
        }
    }

    /// An `account-rest` into `account` (whose values are read already).
    fn account_rest(
        &mut self,
        account: &mut Account,
        name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
    ) -> Result<(), DecodeError> {
        let misc = self.u8("the account's flags")?;
        account.provisioned = misc & PROVISIONED != 0;
        account.disabled = misc & DISABLED != 0;
        let count = self.count("the pushed value count")?;
        for _ in 0..count {
            let attribute = name(self.u32("a pushed attribute")?)?;
            let items = self.count("a pushed value count")?;
            let mut scalars = Vec::with_capacity(items);
            for _ in 0..items {
                let tag = self.u8("a pushed value")?;
                scalars.push(self.scalar(tag, name)?);
            }
            account.pushed.insert(attribute, scalars);
        }
        let count = self.count("the echo count")?;
        for _ in 0..count {
            let attribute = name(self.u32("an echo's attribute")?)?;
            let bits = self.u8("an echo")?;
            let pushed = if bits & PUSHED_IS_VALUE != 0 {
                account.value(&attribute).clone()
            } else {
                self.value(name)?
            };
            let bounces = self.u32("an echo's bounces")?;
            let removed_count = self.count("an echo's removed values")?;
            let mut removed = Vec::with_capacity(removed_count);
            for _ in 0..removed_count {
                let tag = self.u8("an echo's removed value")?;
                removed.push(self.scalar(tag, name)?);
            }
            account.echoes.insert(
                attribute,
                Echo {
                    pushed,
                    bounces,
                    armed: bits & ARMED != 0,
                    removed,
                },
            );
        }
        self.end("account")
    }

    /// Whether an `account-rest` holds an echo an import must look at again
    /// ([`Echo::is_pending`]), its values stepped over.
    #[cfg(feature = "sqlite")]
    fn account_rest_pending(&mut self) -> Result<bool, DecodeError> {
        self.u8("the account's flags")?;
        let count = self.count("the pushed value count")?;
        for _ in 0..count {
            self.u32("a pushed attribute")?;
            let items = self.count("a pushed value count")?;
            for _ in 0..items {
                let tag = self.u8("a pushed value")?;
                self.skip_scalar(tag)?;
            }
        }
        let count = self.count("the echo count")?;
        let mut pending = false;
        for _ in 0..count {
            self.u32("an echo's attribute")?;
            let bits = self.u8("an echo")?;
            if bits & PUSHED_IS_VALUE == 0 {
                self.skip_value()?;
            }
            let bounces = self.u32("an echo's bounces")?;
            pending |= bounces > 0 || bits & ARMED != 0;
            let removed = self.count("an echo's removed values")?;
            for _ in 0..removed {
                let tag = self.u8("an echo's removed value")?;
                self.skip_scalar(tag)?;
            }
        }
        self.end("account")?;
        Ok(pending)
    }

    /// Nothing may follow the end of a record.
    fn end(&self, what: &str) -> Result<(), DecodeError> {
        match self.data.len().saturating_sub(self.at) {
            0 => Ok(()),
            left => Err(format!("{left} bytes after the {what}")),
        }
    }

    fn rest<T: serde::de::DeserializeOwned>(&mut self, flags: u8, what: &str) -> Result<Option<T>, DecodeError> {
        let tail = self.data.get(self.at..).unwrap_or_default();
        self.at = self.data.len();
        if flags & HAS_REST == 0 {
            return if tail.is_empty() {
                Ok(None)
            } else {
                Err(format!("{} bytes after the {what}", tail.len()))
            };
        }
        serde_json::from_slice(tail)
            .map(Some)
            .map_err(|e| format!("the {what}'s other fields: {e}"))
    }
}

/// What a store keeps beside an account without decoding its values: its link and
/// the number of values its multi-valued attributes hold (a threshold base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountHead {
    /// The account's link.
    pub(crate) link: LinkState,
    /// [`Account::link_values`].
    pub(crate) link_values: u64,
}

/// The [`AccountHead`] of an account's blob, its values stepped over, not built.
pub(crate) fn account_head(data: &[u8]) -> Result<AccountHead, DecodeError> {
    let mut r = Reader::new(data);
    r.u8("the account's flags")?;
    let link = r.link()?;
    r.bytes(8, "the fingerprint")?;
    let count = r.count("the attribute count")?;
    let mut link_values = 0;
    for _ in 0..count {
        r.u32("an attribute name")?;
        link_values += r.skip_value()?;
    }
    Ok(AccountHead { link, link_values })
}

/// The [`AccountSummary`] of an account's blob: its values are stepped over, and
/// only an account with rarely set fields has its JSON tail read.
#[cfg(feature = "sqlite")]
pub(crate) fn account_summary(data: &[u8]) -> Result<AccountSummary, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.u8("the account's flags")?;
    let linked = matches!(r.link()?, LinkState::Linked(_));
    let fingerprint = r.fingerprint()?;
    let mut echo_pending = false;
    if flags & HAS_REST != 0 {
        let count = r.count("the attribute count")?;
        for _ in 0..count {
            r.u32("an attribute name")?;
            r.skip_value()?;
        }
        if flags & REST_BINARY != 0 {
            echo_pending = r.account_rest_pending()?;
        } else if let Some(rest) = r.rest::<AccountRestIn>(flags, "account")? {
            echo_pending = rest.echoes.values().any(Echo::is_pending);
        }
    }
    Ok(AccountSummary {
        fingerprint,
        linked,
        echo_pending,
    })
}

/// The account `key` from its blob; `name` gives the name (or dictionary text) of a
/// number.
pub(crate) fn decode_account(
    key: String,
    data: &[u8],
    name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
) -> Result<Account, DecodeError> {
    let mut account = Account::new(String::new());
    let mut r = Reader::of_account(data, &key);
    let flags = r.u8("the account's flags")?;
    account.link = r.link()?;
    account.fingerprint = r.fingerprint()?;
    let count = r.count("the attribute count")?;
    account.attributes.reserve(count);
    for _ in 0..count {
        let attribute = name(r.u32("an attribute name")?)?;
        let value = r.value(name)?;
        account.attributes.insert(attribute, value);
    }
    if flags & HAS_REST != 0 && flags & REST_BINARY != 0 {
        r.account_rest(&mut account, name)?;
    } else if let Some(rest) = r.rest::<AccountRestIn>(flags, "account")? {
        account.pushed = rest.pushed;
        account.echoes = rest.echoes;
        account.provisioned = rest.provisioned;
        account.disabled = rest.disabled;
    }
    account.key = key;
    Ok(account)
}

/// The blob of an identity with its pending creates changed by `change`, its values
/// and provenance copied as they are (not decoded): they come before the JSON tail
/// that holds the pending creates.
#[cfg(feature = "sqlite")]
pub(crate) fn change_pending_creates(
    data: &[u8],
    change: &mut dyn FnMut(&mut BTreeMap<Text, PendingCreate>),
) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.skip_identity_to_rest()?;
    let head = data.get(..r.at).unwrap_or_default();
    let mut rest: IdentityRestIn = r.rest(flags, "identity")?.unwrap_or_default();
    change(&mut rest.pending_creates);
    let rare = !rest.access.is_empty() || !rest.out_of_scope.is_empty() || !rest.pending_creates.is_empty();
    let mut out = head.to_vec();
    if let Some(first) = out.first_mut() {
        *first = if rare { flags | HAS_REST } else { flags & !HAS_REST };
    }
    let tail = rare.then_some(IdentityRestOut {
        access: &rest.access,
        out_of_scope: &rest.out_of_scope,
        pending_creates: &rest.pending_creates,
    });
    put_rest(&mut out, tail.as_ref()).map_err(|e| e.message().to_owned())?;
    Ok(out)
}

/// The pending creates of an identity's blob, its values stepped over, not built.
#[cfg(feature = "sqlite")]
pub(crate) fn pending_creates(data: &[u8]) -> Result<BTreeMap<Text, PendingCreate>, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.skip_identity_to_rest()?;
    let rest: Option<IdentityRestIn> = r.rest(flags, "identity")?;
    Ok(rest.map(|rest| rest.pending_creates).unwrap_or_default())
}

/// The values of the attributes numbered `wanted` in an identity's blob (absent ones
/// left out), every other value stepped over, not built: a store updating its index
/// reads the indexed values of the version it replaces this way.
pub(crate) fn identity_values(
    data: &[u8],
    wanted: &[u32],
    name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
    refs: &dyn References,
) -> Result<Vec<(u32, Value)>, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.skip_identity_head()?;
    if flags & SHAPED != 0 {
        let shape = r.u32("the identity's shape")?;
        let values = refs.shaped_values(shape, Some(wanted))?;
        return Ok(values.into_iter().map(|(number, value, _)| (number, value)).collect());
    }
    let count = r.count("the attribute count")?;
    let mut found = Vec::with_capacity(wanted.len());
    for _ in 0..count {
        let attribute = r.u32("an attribute name")?;
        if wanted.contains(&attribute) {
            found.push((attribute, r.value(name)?));
        } else {
            r.skip_value()?;
        }
        r.value_source(flags)?;
    }
    Ok(found)
}

/// The shape of a shaped identity's blob (see [`encode_loaded_identity`]), `None` for
/// one that holds its values.
pub(crate) fn identity_shape(data: &[u8]) -> Result<Option<u32>, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.skip_identity_head()?;
    if flags & SHAPED == 0 {
        return Ok(None);
    }
    r.u32("the identity's shape").map(Some)
}

/// The values of the attributes whose numbers `wanted` keeps in the blob of account
/// `key`, in its order, every other value stepped over.
pub(crate) fn account_values(
    key: &str,
    data: &[u8],
    wanted: &dyn Fn(u32) -> bool,
    name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
) -> Result<Vec<(u32, Value)>, DecodeError> {
    let mut r = Reader::of_account(data, key);
    r.u8("the account's flags")?;
    r.link()?;
    r.fingerprint()?;
    let count = r.count("the attribute count")?;
    let mut found = Vec::with_capacity(count);
    for _ in 0..count {
        let attribute = r.u32("an attribute name")?;
        if wanted(attribute) {
            found.push((attribute, r.value(name)?));
        } else {
            r.skip_value()?;
        }
    }
    Ok(found)
}

/// The identity `id` from its blob; `name` gives the name (or dictionary text) of a
/// number.
#[cfg(test)]
pub(crate) fn decode_identity(
    id: IdentityId,
    data: &[u8],
    name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
) -> Result<Identity, DecodeError> {
    decode_identity_reading(id, data, None, name, &NoReferences)
}

/// [`decode_identity`] with only the values of the attributes numbered `wanted` (all
/// with `None`); the others are stepped over, not built. Everything else an identity
/// holds (times, provenance of the values kept, access, scope, pending creates) is read.
pub(crate) fn decode_identity_reading(
    id: IdentityId,
    data: &[u8],
    wanted: Option<&[u32]>,
    name: &mut dyn FnMut(u32) -> Result<Text, DecodeError>,
    refs: &dyn References,
) -> Result<Identity, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.u8("the identity's flags")?;
    let created = r.datetime("the creation time")?;
    let modified = r.datetime("the modification time")?;
    let count = r.count("the provenance count")?;
    let mut distinct = Vec::with_capacity(count);
    for _ in 0..count {
        let system = name(r.u32("a provenance's system")?)?;
        let phase = match r.u8("a provenance's phase")? {
            0 => Phase::Create,
            1 => Phase::Update,
            other => return Err(format!("unknown phase {other}")),
        };
        let strength = r.u8("a provenance's strength")?;
        let at = r.datetime("a provenance's time")?;
        distinct.push(Provenance::new(system, strength, phase, at));
    }
    // Per entry, the index of its provenance in `distinct` (`usize::MAX`: none).
    let provenance_index = |source: u64| match source {
        0 => Ok(usize::MAX),
        n => usize::try_from(n - 1)
            .ok()
            .filter(|&at| at < distinct.len())
            .ok_or_else(|| format!("provenance {n} of {} is missing", distinct.len())),
    };
    let mut entries = Vec::new();
    let mut sources = Vec::new();
    if flags & SHAPED != 0 {
        let shape = r.u32("the identity's shape")?;
        for (number, value, source) in refs.shaped_values(shape, wanted)? {
            entries.push((name(number)?, value));
            sources.push(provenance_index(source)?);
        }
    } else {
        let count = r.count("the attribute count")?;
        entries.reserve(count);
        sources.reserve(count);
        for _ in 0..count {
            let number = r.u32("an attribute name")?;
            if wanted.is_some_and(|wanted| !wanted.contains(&number)) {
                r.skip_value()?;
                r.value_source(flags)?;
                continue;
            }
            let attribute = name(number)?;
            let value = r.value(name)?;
            sources.push(provenance_index(r.value_source(flags)?)?);
            entries.push((attribute, value));
        }
    }
    // Records are written in name order; one that is not (damaged, or written by hand)
    // is read entry by entry.
    let mut identity = if entries.windows(2).all(|w| w[0].0 < w[1].0) {
        Identity::from_decoded(id, created, modified, entries, distinct, &sources)
    } else {
        let mut identity = Identity::new(id, created);
        identity.modified = modified;
        for ((attribute, value), index) in entries.into_iter().zip(sources) {
            identity.push_decoded(attribute, value, distinct.get(index).cloned());
        }
        identity
    };
    if let Some(rest) = r.rest::<IdentityRestIn>(flags, "identity")? {
        identity.access = rest.access;
        identity.out_of_scope = rest.out_of_scope;
        identity.pending_creates = rest.pending_creates;
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// A name table in memory.
    #[derive(Default)]
    struct Names(Vec<String>);

    impl Intern for Names {
        fn name_id(&mut self, name: &str) -> Result<u32, StoreError> {
            if let Some(at) = self.0.iter().position(|n| n == name) {
                return Ok(at as u32);
            }
            self.0.push(name.to_owned());
            Ok(self.0.len() as u32 - 1)
        }
        /// Texts starting with `d` are kept in the dictionary (as the store keeps the
        /// repeating ones).
        fn text_id(&mut self, _: u32, text: &str) -> Result<Option<u32>, StoreError> {
            if text.starts_with('d') {
                return self.name_id(text).map(Some);
            }
            Ok(None)
        }
    }

    impl Names {
        fn name(&self, id: u32) -> Result<Text, String> {
            self.0
                .get(id as usize)
                .map(|n| Text::from(n.as_str()))
                .ok_or_else(|| format!("no name {id}"))
        }
    }

    fn scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            prop_oneof![".{0,12}", "d[a-c]{0,2}", ".{220,230}"].prop_map(|s| Scalar::Text(Text::from(s))),
            any::<i64>().prop_map(Scalar::Integer),
            any::<bool>().prop_map(Scalar::Boolean),
            (-800_000i32..3_000_000)
                .prop_map(|d| Scalar::Date(NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default())),
            (-60_000_000_000i64..60_000_000_000, 0u32..1_000_000_000)
                .prop_map(|(s, n)| Scalar::Datetime(DateTime::from_timestamp(s, n).unwrap_or_default())),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Empty),
            scalar().prop_map(Value::Single),
            proptest::collection::vec(scalar(), 1..4).prop_map(|v| Value::Multi(v.into_boxed_slice())),
        ]
    }

    fn at(n: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default() + chrono::Duration::seconds(i64::from(n))
    }

    prop_compose! {
        fn account()(
            key in "[a-z0-9]{0,6}",
            values in proptest::collection::btree_map("[a-e]{1,3}", value(), 0..6),
            link in prop_oneof![
                Just(LinkState::Unmatched),
                any::<u64>().prop_map(|i| LinkState::Linked(IdentityId::from_raw(i))),
                proptest::collection::vec(any::<u64>(), 0..3)
                    .prop_map(|v| LinkState::Ambiguous(v.into_iter().map(IdentityId::from_raw).collect())),
            ],
            pushed in proptest::collection::btree_map("[a-c]", proptest::collection::vec(scalar(), 0..2), 0..2),
            echo in proptest::option::of((value(), any::<u32>(), any::<bool>(), proptest::collection::vec(scalar(), 0..3))),
            provisioned in any::<bool>(),
            disabled in any::<bool>(),
            // An attribute holding the key (as a key column does), alone or among others.
            keyed in proptest::option::of(("[a-e]{1,3}", any::<bool>())),
        ) -> Account {
            let mut account = Account::new(key.clone());
            for (name, value) in values {
                account.attributes.insert(Text::from(name), value);
            }
            if let Some((name, alone)) = keyed {
                let key = Scalar::Text(Text::from(key));
                let value = if alone {
                    Value::Single(key)
                } else {
                    Value::Multi(vec![Scalar::Text(Text::from("other")), key].into_boxed_slice())
                };
                account.attributes.insert(Text::from(name), value);
            }
            account.link = link;
            account.pushed = pushed.into_iter().map(|(k, v)| (Text::from(k), v)).collect();
            if let Some((pushed, bounces, armed, removed)) = echo {
                account.echoes.insert("m".into(), Echo { pushed, bounces, armed, removed });
            }
            // An echo of the value the account holds (as every confirmed push leaves).
            if let Some((name, value)) = account.attributes.iter().next() {
                let (name, pushed) = (name.clone(), value.clone());
                account.echoes.insert(name, Echo { pushed, bounces: 0, armed: true, removed: Vec::new() });
            }
            account.provisioned = provisioned;
            account.disabled = disabled;
            account
        }
    }

    prop_compose! {
        fn identity()(
            id in any::<u64>(),
            created in 0u32..1000,
            modified in 0u32..1000,
            values in proptest::collection::btree_map(
                "[a-e]{1,3}",
                (value(), proptest::option::of((0u8..3, any::<u8>(), any::<bool>(), 0u32..5))),
                0..6,
            ),
            scope in proptest::collection::btree_map("[x-z]", 0u32..100, 0..2),
            pending in proptest::collection::btree_map("[a-c]", 0u32..100, 0..2),
        ) -> Identity {
            let mut identity = Identity::new(IdentityId::from_raw(id), at(created));
            identity.modified = at(modified);
            for (name, (value, source)) in values {
                let provenance = source.map(|(system, strength, update, t)| {
                    let phase = if update { Phase::Update } else { Phase::Create };
                    Provenance::new(format!("s{system}"), strength, phase, at(t))
                });
                identity.push_decoded(Text::from(name), value, provenance);
            }
            for (system, t) in scope {
                identity.out_of_scope.insert(Text::from(system), at(t));
            }
            for (system, t) in pending {
                let create = PendingCreate { account: format!("k{t}"), since: at(t) };
                identity.pending_creates.insert(Text::from(system), create);
            }
            identity
        }
    }

    proptest! {
        /// An account reads back equal to what was written, its fingerprint included.
        #[test]
        fn accounts_read_back_equal(account in account(), fingerprint in any::<u64>()) {
            let mut names = Names::default();
            let mut blob = Vec::new();
            encode_account(&account, fingerprint, &mut names, &mut blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_account(account.key.clone(), &blob, &mut |id| names.name(id)).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&back, &account);
            prop_assert_eq!(back.fingerprint, fingerprint);
        }

        /// An identity reads back equal to what was written: values, every provenance
        /// (or its absence), times and the rarely set fields.
        #[test]
        fn identities_read_back_equal(identity in identity()) {
            let mut names = Names::default();
            let mut blob = Vec::new();
            encode_identity(&identity, &mut names, &mut blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = decode_identity(identity.id, &blob, &mut |id| names.name(id)).map_err(TestCaseError::fail)?;
            for (name, _) in identity.attributes() {
                prop_assert_eq!(back.provenance(name), identity.provenance(name), "provenance of {}", name);
            }
            prop_assert_eq!(&back, &identity);
        }

        /// Changing the pending creates inside a blob gives the blob of the identity
        /// with them changed, values and provenance untouched.
        #[cfg(feature = "sqlite")]
        #[test]
        fn pending_creates_change_inside_the_blob(identity in identity(), system in "[a-c]", keep in any::<bool>()) {
            let mut names = Names::default();
            let mut blob = Vec::new();
            encode_identity(&identity, &mut names, &mut blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let create = PendingCreate { account: "k".into(), since: at(7) };
            let mut change = |pending: &mut BTreeMap<Text, PendingCreate>| {
                if keep {
                    pending.insert(Text::from(system.as_str()), create.clone());
                } else {
                    pending.remove(system.as_str());
                }
            };
            let changed = change_pending_creates(&blob, &mut change).map_err(TestCaseError::fail)?;
            let back = decode_identity(identity.id, &changed, &mut |id| names.name(id)).map_err(TestCaseError::fail)?;
            let mut expected = identity.clone();
            change(&mut expected.pending_creates);
            prop_assert_eq!(&back, &expected);
            for (name, _) in identity.attributes() {
                prop_assert_eq!(back.provenance(name), identity.provenance(name));
            }
        }

        /// Every value read lent (see [`lent`]) is the value decoded, in accounts and in
        /// identities, whatever else the record holds; damaged blobs are errors, not panics.
        #[test]
        fn lent_values_are_the_decoded_values(
            account in account(),
            identity in identity(),
            asked in proptest::collection::vec("[a-f]{1,3}", 0..6),
            cut in any::<usize>(),
        ) {
            fn lent_of(value: &Value) -> lent::LentValue<'_> {
                match value {
                    Value::Empty => lent::LentValue::Empty,
                    Value::Single(Scalar::Text(t)) => lent::LentValue::Text(t.as_str()),
                    Value::Single(other) => lent::LentValue::Other(other.clone()),
                    Value::Multi(_) => lent::LentValue::Multi,
                }
            }
            let mut names = Names::default();
            let mut account_blob = Vec::new();
            encode_account(&account, 7, &mut names, &mut account_blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut identity_blob = Vec::new();
            encode_identity(&identity, &mut names, &mut identity_blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let numbers: Vec<Option<u32>> = asked.iter().map(|a| names.0.iter().position(|n| n == a).map(|n| n as u32)).collect();
            let lookup = |n: u32| names.0.get(n as usize).map(String::as_str);

            let mut out = vec![lent::LentValue::Empty; asked.len()];
            let head = lent::lent_account(&account.key, &account_blob, &numbers, &mut out, &lookup).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&head.link, &account.link);
            prop_assert_eq!(head.disabled, Some(account.disabled));
            for (name, lent) in asked.iter().zip(&out) {
                prop_assert_eq!(lent, &lent_of(account.value(name)), "account attribute {}", name);
            }

            let mut out = vec![lent::LentValue::Empty; asked.len()];
            let how = lent::lent_identity(&identity_blob, &numbers, &mut out, &lookup).map_err(TestCaseError::fail)?;
            let rest = !identity.access.is_empty() || !identity.out_of_scope.is_empty() || !identity.pending_creates.is_empty();
            prop_assert_eq!(how, lent::LentIdentity::Read { rest });
            for (name, lent) in asked.iter().zip(&out) {
                prop_assert_eq!(lent, &lent_of(identity.value(name)), "identity attribute {}", name);
            }

            for blob in [&account_blob, &identity_blob] {
                let data = &blob[..cut % (blob.len() + 1)];
                let mut out = vec![lent::LentValue::Empty; asked.len()];
                let _ = lent::lent_account("k", data, &numbers, &mut out, &lookup);
                let _ = lent::lent_identity(data, &numbers, &mut out, &lookup);
            }
        }

        /// Any cut or damage of a blob is an error or a record, never a panic.
        #[test]
        fn damaged_blobs_do_not_panic(account in account(), identity in identity(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let mut names = Names::default();
            for blob in [
                { let mut b = Vec::new(); encode_account(&account, 7, &mut names, &mut b).map_err(|e| TestCaseError::fail(e.to_string()))?; b },
                { let mut b = Vec::new(); encode_identity(&identity, &mut names, &mut b).map_err(|e| TestCaseError::fail(e.to_string()))?; b },
            ] {
                let mut damaged = blob.clone();
                if !damaged.is_empty() {
                    let at = flip.0 % damaged.len();
                    damaged[at] ^= flip.1;
                }
                for data in [&blob[..cut % (blob.len() + 1)], &damaged[..]] {
                    let _ = decode_account(String::new(), data, &mut |id| names.name(id));
                    let _ = decode_identity(IdentityId::from_raw(1), data, &mut |id| names.name(id));
                }
            }
        }
    }

    #[test]
    fn an_account_record_with_a_json_tail_reads_as_it_did() {
        // As 0.2's first records held an account's rarely set fields.
        let mut names = Names::default();
        let mut account = Account::new("k");
        account.attributes.insert(Text::from("mail"), Value::from("a@x"));
        account.provisioned = true;
        account
            .pushed
            .insert("groups".into(), vec![Scalar::Text(Text::from("g1"))]);
        account.echoes.insert(
            "mail".into(),
            Echo {
                pushed: Value::from("a@x"),
                bounces: 2,
                armed: false,
                removed: Vec::new(),
            },
        );
        let mut blob = Vec::new();
        assert!(encode_account(&account, 7, &mut names, &mut blob).is_ok());
        let Some(binary) = blob.first().copied() else {
            panic!("an empty record");
        };
        assert_eq!(binary, HAS_REST | REST_BINARY);
        // The same account with the JSON tail: the values are written the same way.
        let mut values = Vec::new();
        let mut plain = account.clone();
        plain.pushed.clear();
        plain.echoes.clear();
        plain.provisioned = false;
        assert!(encode_account(&plain, 7, &mut names, &mut values).is_ok());
        let mut old = values;
        old[0] = HAS_REST;
        let tail = serde_json::json!({
            "pushed": &account.pushed, "echoes": &account.echoes, "provisioned": true
        });
        old.extend_from_slice(tail.to_string().as_bytes());
        for blob in [&blob, &old] {
            let back = decode_account("k".into(), blob, &mut |id| names.name(id));
            assert_eq!(back.as_ref(), Ok(&account));
            #[cfg(feature = "sqlite")]
            assert_eq!(
                account_summary(blob).map(|s| (s.fingerprint, s.echo_pending)),
                Ok((7, true))
            );
        }
        // Nothing may follow a binary tail.
        blob.push(0);
        assert!(decode_account("k".into(), &blob, &mut |id| names.name(id)).is_err());
    }

    #[test]
    fn a_cut_blob_names_what_was_being_read() {
        let mut names = Names::default();
        let mut account = Account::new("k");
        account
            .attributes
            .insert(Text::from("mail"), Value::from("a@example.com"));
        let mut blob = Vec::new();
        let _ = encode_account(&account, 1, &mut names, &mut blob);
        let cut = &blob[..blob.len() - 3];
        let err = decode_account("k".into(), cut, &mut |id| names.name(id)).err();
        assert_eq!(err.as_deref(), Some("the blob ends inside a text value"));
    }
}
