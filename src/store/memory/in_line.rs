//! [`InLine`] checks on the memory store's records: the values of a linked account and
//! of its identity (or of the account a shaped identity reads them from) compared in
//! place, nothing decoded or allocated.

use smallvec::SmallVec;

use super::MemoryStore;
use crate::model::{IdentityId, LinkState};
use crate::record::lent::{lent_account, lent_identity, LentIdentity, LentValue};
use crate::record::DecodeError;
use crate::store::{lent_in_line, InLine, InLinePair};

/// Values of one record, lent, by pair (rarely more than a couple of dozen).
type Lent<'a> = SmallVec<[LentValue<'a>; 24]>;

/// An [`InLine`] check with its names numbered by the store's dictionary.
pub(super) struct NumberedInLine<'c> {
    pairs: &'c [InLinePair],
    /// Per pair, the number of its identity attribute (`None`: no record holds it).
    identity: Vec<Option<u32>>,
    /// Per pair, the number of its account attribute.
    account: Vec<Option<u32>>,
}

impl MemoryStore {
    /// `check` with its names numbered.
    pub(super) fn number_in_line<'c>(&self, check: &'c InLine) -> NumberedInLine<'c> {
        let number = |name: &str| self.dictionary.name_number(name);
        NumberedInLine {
            pairs: check.pairs(),
            identity: check
                .pairs()
                .iter()
                .map(|pair| pair.identity.as_deref().and_then(number))
                .collect(),
            account: check.pairs().iter().map(|pair| number(&pair.account)).collect(),
        }
    }

    /// The identity of account `key` (its record `data`) when the account is in line
    /// with it under `check`; `None` when it is not, or cannot be told here (a record
    /// with rarely set fields in JSON, an identity with any: those are decoded).
    pub(super) fn in_line(
        &self,
        key: &str,
        data: &[u8],
        check: &NumberedInLine<'_>,
    ) -> Result<Option<IdentityId>, DecodeError> {
        let text = |n: u32| self.dictionary.text_str(n);
        let empty = || -> Lent<'_> { SmallVec::from_elem(LentValue::Empty, check.pairs.len()) };
        let mut held = empty();
        let account = lent_account(key, data, &check.account, &mut held, &text)?;
        let (LinkState::Linked(id), Some(false)) = (&account.link, account.disabled) else {
            return Ok(None);
        };
        let id = *id;
        let Some(record) = self.identities.get(id) else {
            return Ok(None);
        };
        let mut want = empty();
        match lent_identity(self.identity_records.get(*record), &check.identity, &mut want, &text)? {
            LentIdentity::Read { rest: true } | LentIdentity::Shaped { rest: true, .. } => return Ok(None),
            LentIdentity::Read { rest: false } => {}
            LentIdentity::Shaped { shape, rest: false } => {
                let shape = self
                    .shapes
                    .get(shape)
                    .ok_or_else(|| format!("shape {shape} does not exist"))?;
                let (source_key, source) = self.linked_record(id, shape.system)?;
                // Each identity attribute read from the account attribute its shape names.
                let through: SmallVec<[Option<u32>; 24]> = check
                    .identity
                    .iter()
                    .map(|number| {
                        number.and_then(|n| {
                            shape
                                .refs
                                .iter()
                                .find(|r| r.attribute == n)
                                .map(|r| r.account_attribute)
                        })
                    })
                    .collect();
                lent_account(source_key, source, &through, &mut want, &text)?;
            }
        }
        Ok(lent_in_line(check.pairs, &want, &held).then_some(id))
    }
}
