//! [`InLine`] checks on the memory store's records: the values of a linked account and
//! of its identity (or of the account a shaped identity reads them from) compared in
//! place, nothing decoded or allocated.

use smallvec::SmallVec;

use super::MemoryStore;
use crate::model::IdentityId;
use crate::record::lent::{lent_account, LentTexts, LentValue};
use crate::record::DecodeError;
use crate::store::{in_line_on_records, InLine, InLinePair};

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
    /// with it under `check` (see [`in_line_on_records`]); a shaped identity's values
    /// are read from the account its shape names.
    pub(super) fn in_line<'a>(
        &'a self,
        key: &'a str,
        data: &'a [u8],
        check: &NumberedInLine<'_>,
    ) -> Result<Option<IdentityId>, DecodeError> {
        let text = |n: u32| self.dictionary.text_str(n);
        let text: &LentTexts<'a> = &text;
        let identity_record = |id| self.identities.get(id).map(|record| self.identity_records.get(*record));
        let shaped = |id, shape: u32, numbers: &[Option<u32>], want: &mut [LentValue<'a>]| {
            let shape = self
                .shapes
                .get(shape)
                .ok_or_else(|| format!("shape {shape} does not exist"))?;
            let (source_key, source) = self.linked_record(id, shape.system)?;
            // Each identity attribute read from the account attribute its shape names.
            let through: SmallVec<[Option<u32>; 24]> = numbers
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
            lent_account(source_key, source, &through, want, text).map(drop)
        };
        in_line_on_records(
            check.pairs,
            (key, data, &check.account),
            &check.identity,
            &identity_record,
            &shaped,
            text,
        )
    }
}
