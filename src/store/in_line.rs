//! [`InLine`]: when a linked account needs nothing from an outbound plan, told without
//! decoding it.
//!
//! A whole-system outbound plan reads every linked account with its identity, and after
//! the first sync almost all of them are already in line: each value the account should
//! hold, it holds. Decoding a million pairs into owned records only to find that took
//! most of a plan's time. When the system's rules are plain (no `out` transform, no
//! multi-valued account attribute, no role grants), the plan hands the store an
//! [`InLine`] check instead; a store that can apply it to its records cheaply (the
//! [`crate::MemoryStore`] reads the values in place) reports such accounts by identity
//! only and lends the others as before. The plan is the same either way.

use smallvec::SmallVec;

use crate::model::{Account, Identity, IdentityId, LinkState};
use crate::record::lent::{lent_account, lent_identity, LentIdentity, LentTexts, LentValue};
use crate::record::DecodeError;
use crate::text::Text;
use crate::value::{Value, ValueType};

/// One pair of an [`InLine`] check: the identity attribute whose value the account
/// attribute must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InLinePair {
    /// The identity attribute (`None`: one the configuration does not declare, whose
    /// value reads as empty).
    pub identity: Option<Text>,
    /// The account attribute (single-valued).
    pub account: Text,
    /// The account attribute's declared type: a value of another type is converted by
    /// the plan, so it is never in line here.
    pub account_type: ValueType,
}

/// A check an outbound plan may hand a store (see
/// [`crate::Store::visit_linked_accounts_out_of_line`]): a linked account is in line
/// with its identity when the account is not disabled by the engine, the identity is
/// in scope (no scope exit recorded), and for every pair the account's value is exactly
/// the identity's (both empty, or the same single value of the account attribute's
/// type: the same text byte for byte). A store may answer more conservatively (lend an
/// account it cannot check cheaply), never less.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InLine {
    pairs: Vec<InLinePair>,
}

impl InLine {
    /// A check of these pairs.
    pub fn new(pairs: Vec<InLinePair>) -> InLine {
        InLine { pairs }
    }

    /// The pairs.
    pub fn pairs(&self) -> &[InLinePair] {
        &self.pairs
    }

    /// The check on owned records: what a store's answer must agree with.
    pub fn holds(&self, account: &Account, identity: &Identity) -> bool {
        !account.disabled
            && identity.out_of_scope.is_empty()
            && self.pairs.iter().all(|pair| {
                let want = pair
                    .identity
                    .as_ref()
                    .map_or(&Value::Empty, |name| identity.value(name));
                same_exactly(want, account.value(&pair.account), pair.account_type)
            })
    }
}

/// Whether `want` and `held` are both empty, or the same single value of type `ty`.
fn same_exactly(want: &Value, held: &Value, ty: ValueType) -> bool {
    match (want, held) {
        (Value::Empty, Value::Empty) => true,
        (Value::Single(a), Value::Single(b)) => a.is_of(ty) && a == b,
        _ => false,
    }
}

/// What [`crate::Store::visit_linked_accounts_out_of_line`] hands its visitor for a
/// linked account.
#[derive(Debug)]
pub enum LinkedAccount<'a> {
    /// The account, with its identity: the plan reads both.
    Lent(&'a Account, &'a Identity),
    /// An account in line with identity `0`, not decoded: the plan has nothing to do
    /// for it.
    InLine(IdentityId),
}

/// Values of one record, lent, by pair (rarely more than a couple of dozen).
type LentValues<'a> = SmallVec<[LentValue<'a>; 24]>;

/// Reads the values of a shaped identity record: (identity, shape, the pairs' identity
/// attribute numbers, the values to fill in by pair).
pub(crate) type ShapedValues<'a, 'f> =
    dyn Fn(IdentityId, u32, &[Option<u32>], &mut [LentValue<'a>]) -> Result<(), DecodeError> + 'f;

/// [`InLine::holds`] on a store's records: the account's (key, blob, and the pairs'
/// account attribute numbers) and, through `identity_record`, its linked identity's
/// (with the pairs' identity attribute numbers); `shaped` fills in the values of a
/// shaped identity record (identity, shape, numbers, values) for a store that writes
/// them; `text` lends the store's dictionary. The identity's id when the account is in
/// line; `None` when it is not or the records cannot tell cheaply (rarely set fields,
/// in JSON or on the identity): the account is then decoded.
pub(crate) fn in_line_on_records<'a>(
    pairs: &[InLinePair],
    account: (&'a str, &'a [u8], &[Option<u32>]),
    identity_numbers: &[Option<u32>],
    identity_record: &dyn Fn(IdentityId) -> Option<&'a [u8]>,
    shaped: &ShapedValues<'a, '_>,
    text: &LentTexts<'a>,
) -> Result<Option<IdentityId>, DecodeError> {
    let empty = || -> LentValues<'a> { SmallVec::from_elem(LentValue::Empty, pairs.len()) };
    let (key, account_data, account_numbers) = account;
    let mut held = empty();
    let head = lent_account(key, account_data, account_numbers, &mut held, text)?;
    let (LinkState::Linked(id), Some(false)) = (head.link, head.disabled) else {
        return Ok(None);
    };
    let Some(identity_data) = identity_record(id) else {
        return Ok(None);
    };
    let mut want = empty();
    match lent_identity(identity_data, identity_numbers, &mut want, text)? {
        LentIdentity::Read { rest: true } | LentIdentity::Shaped { rest: true, .. } => return Ok(None),
        LentIdentity::Read { rest: false } => {}
        LentIdentity::Shaped { shape, rest: false } => shaped(id, shape, identity_numbers, &mut want)?,
    }
    Ok(lent_in_line(pairs, &want, &held).then_some(id))
}

/// Adapts a visit of lent pairs to [`crate::Store::visit_linked_accounts_out_of_line`]'s
/// visit (which then sees no account in line).
pub(crate) fn lent_only<'v>(visit: &'v mut dyn FnMut(&Account, &Identity)) -> impl FnMut(LinkedAccount<'_>) + 'v {
    move |linked| {
        if let LinkedAccount::Lent(account, identity) = linked {
            visit(account, identity);
        }
    }
}

/// [`InLine::holds`] on lent values: `want` and `held` side by side, per pair.
pub(crate) fn lent_in_line(pairs: &[InLinePair], want: &[LentValue<'_>], held: &[LentValue<'_>]) -> bool {
    pairs
        .iter()
        .zip(want.iter().zip(held))
        .all(|(pair, (want, held))| match (want, held) {
            (LentValue::Empty, LentValue::Empty) => true,
            (LentValue::Text(a), LentValue::Text(b)) => {
                matches!(pair.account_type, ValueType::String | ValueType::Reference) && a == b
            }
            (LentValue::Other(a), LentValue::Other(b)) => a.is_of(pair.account_type) && a == b,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Scalar;

    fn pair(identity: &str, account: &str, ty: ValueType) -> InLinePair {
        InLinePair {
            identity: Some(Text::from(identity)),
            account: Text::from(account),
            account_type: ty,
        }
    }

    #[test]
    fn equal_values_of_the_account_type_are_in_line_and_nothing_else() {
        let check = InLine::new(vec![pair("mail", "email", ValueType::String)]);
        let mut identity = Identity::new(IdentityId::from_raw(1), chrono::DateTime::UNIX_EPOCH);
        let mut account = Account::new("a");
        // Both empty.
        assert!(check.holds(&account, &identity));
        identity.push_decoded(Text::from("mail"), Value::from("a@x"), None);
        assert!(!check.holds(&account, &identity));
        account.attributes.insert(Text::from("email"), Value::from("a@x"));
        assert!(check.holds(&account, &identity));
        // Case counts: a case-insensitive attribute is left to the plan.
        account.attributes.insert(Text::from("email"), Value::from("A@x"));
        assert!(!check.holds(&account, &identity));
        account.attributes.insert(Text::from("email"), Value::from("a@x"));
        account.disabled = true;
        assert!(!check.holds(&account, &identity));
        account.disabled = false;
        identity
            .out_of_scope
            .insert(Text::from("dir"), chrono::DateTime::UNIX_EPOCH);
        assert!(!check.holds(&account, &identity));
        identity.out_of_scope.clear();
        // A text held by an integer attribute is converted by the plan: not in line.
        let typed = InLine::new(vec![pair("mail", "email", ValueType::Integer)]);
        assert!(!typed.holds(&account, &identity));
        let lent = [LentValue::Text("a@x")];
        assert!(lent_in_line(check.pairs(), &lent, &lent));
        assert!(!lent_in_line(typed.pairs(), &lent, &lent));
        assert!(!lent_in_line(check.pairs(), &lent, &[LentValue::Text("A@x")]));
        assert!(!lent_in_line(check.pairs(), &[LentValue::Multi], &[LentValue::Multi]));
        let number = [LentValue::Other(Scalar::Integer(3))];
        assert!(lent_in_line(typed.pairs(), &number, &number));
        assert!(!lent_in_line(check.pairs(), &number, &number));
    }
}
