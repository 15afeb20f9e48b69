//! Values read from a record without building them: texts stay slices of the record
//! (or of the account's key, or of the store's dictionary), nothing is allocated. A
//! whole-system outbound plan first asks of every linked account whether it is in line
//! with its identity ([`crate::store::InLine`]); reading a million pairs this way costs a
//! fraction of decoding them into owned `Account`s and `Identity`s.

use super::{DecodeError, Reader, DISABLED, EMPTY, HAS_REST, INTERNED, KEY, MULTI, REST_BINARY, SHAPED, SHORT, TEXT};
use crate::model::LinkState;
use crate::value::Scalar;

/// A value as its record holds it, lent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LentValue<'a> {
    /// No value.
    Empty,
    /// One text.
    Text(&'a str),
    /// One value of another type (none of which owns heap memory).
    Other(Scalar),
    /// A multi-valued value, not read.
    Multi,
}

/// The dictionary texts of a store, lent.
pub(crate) type LentTexts<'t> = dyn Fn(u32) -> Option<&'t str> + 't;

impl<'a> Reader<'a> {
    /// A value, its texts lent.
    fn lent_value(&mut self, text: &LentTexts<'a>) -> Result<LentValue<'a>, DecodeError> {
        let tag = self.u8("a value")?;
        Ok(match tag {
            EMPTY => LentValue::Empty,
            MULTI => {
                // Stepped over so that the next value can be read.
                let count = self.count("a value count")?;
                for _ in 0..count {
                    let tag = self.u8("a value")?;
                    self.skip_scalar(tag)?;
                }
                LentValue::Multi
            }
            SHORT.. => {
                let bytes = self.bytes(usize::from(tag - SHORT), "a text value")?;
                LentValue::Text(std::str::from_utf8(bytes).map_err(|_| "a text value is not UTF-8".to_owned())?)
            }
            TEXT => LentValue::Text(self.str("a text value")?),
            INTERNED => {
                let id = self.u32("a dictionary text")?;
                LentValue::Text(text(id).ok_or_else(|| format!("dictionary entry {id} does not exist"))?)
            }
            KEY => LentValue::Text(
                self.key
                    .ok_or_else(|| "a value names the key outside an account".to_owned())?,
            ),
            // Integers, booleans, dates and datetimes hold no text to lend.
            tag => LentValue::Other(self.scalar(tag, &mut |_| Err("not a text".to_owned()))?),
        })
    }

    /// The values of `count` (name value source?) entries: each one numbered in
    /// `wanted` lands at its position in `out`; `flags` are an identity's (its
    /// sources are stepped over), `None` for an account.
    fn lent_values(
        &mut self,
        identity_flags: Option<u8>,
        wanted: &[Option<u32>],
        out: &mut [LentValue<'a>],
        text: &LentTexts<'a>,
    ) -> Result<(), DecodeError> {
        let count = self.count("the attribute count")?;
        for _ in 0..count {
            let number = self.u32("an attribute name")?;
            match wanted.iter().position(|w| *w == Some(number)) {
                Some(first) => {
                    let value = self.lent_value(text)?;
                    for (at, w) in wanted.iter().enumerate().skip(first) {
                        if *w == Some(number) {
                            if let Some(slot) = out.get_mut(at) {
                                *slot = value.clone();
                            }
                        }
                    }
                }
                None => {
                    self.skip_value()?;
                }
            }
            if let Some(flags) = identity_flags {
                self.value_source(flags)?;
            }
        }
        Ok(())
    }
}

/// What [`lent_account`] read of an account beside its values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LentAccount {
    /// The account's link.
    pub(crate) link: LinkState,
    /// Whether the engine disabled it; `None` when its rarely set fields are in the
    /// older JSON form (not read here).
    pub(crate) disabled: Option<bool>,
}

/// The values of the attributes numbered in `wanted` of the blob of account `key`
/// into `out` (same positions; an absent one is left as it was: set them to
/// [`LentValue::Empty`] first), and the account's link and disabled flag.
pub(crate) fn lent_account<'a>(
    key: &'a str,
    data: &'a [u8],
    wanted: &[Option<u32>],
    out: &mut [LentValue<'a>],
    text: &LentTexts<'a>,
) -> Result<LentAccount, DecodeError> {
    let mut r = Reader::of_account(data, key);
    let flags = r.u8("the account's flags")?;
    let link = r.link()?;
    r.fingerprint()?;
    r.lent_values(None, wanted, out, text)?;
    let disabled = if flags & HAS_REST == 0 {
        Some(false)
    } else if flags & REST_BINARY != 0 {
        Some(r.u8("the account's flags")? & DISABLED != 0)
    } else {
        None
    };
    Ok(LentAccount { link, disabled })
}

/// How an identity's blob holds its values, as [`lent_identity`] found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LentIdentity {
    /// The values are read into `out`.
    Read {
        /// Whether the record has rarely set fields (granted access, scope exits,
        /// pending creates): not read here.
        rest: bool,
    },
    /// The record is shaped (see [`super::encode_loaded_identity`]): its values are
    /// those of an account, under shape number `shape`.
    Shaped {
        /// The shape's number.
        shape: u32,
        /// As for [`LentIdentity::Read`].
        rest: bool,
    },
}

/// The values of the attributes numbered in `wanted` of an identity's blob into `out`
/// (as [`lent_account`]), unless the record is shaped.
pub(crate) fn lent_identity<'a>(
    data: &'a [u8],
    wanted: &[Option<u32>],
    out: &mut [LentValue<'a>],
    text: &LentTexts<'a>,
) -> Result<LentIdentity, DecodeError> {
    let mut r = Reader::new(data);
    let flags = r.skip_identity_head()?;
    let rest = flags & HAS_REST != 0;
    if flags & SHAPED != 0 {
        let shape = r.u32("the identity's shape")?;
        return Ok(LentIdentity::Shaped { shape, rest });
    }
    r.lent_values(Some(flags), wanted, out, text)?;
    Ok(LentIdentity::Read { rest })
}
