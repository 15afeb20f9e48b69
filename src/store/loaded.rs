//! [`LoadedPart`]: a part of a first load, lent to [`Store::put_loaded`] as rows
//! rather than as owned accounts and identities.
//!
//! A first load projects one new identity from each new account, and each of the
//! identity's values is one of the account's values. Lent as rows (the account's values
//! once, the identity's as positions among them), a store can write both records
//! without building an `Account` and an `Identity` per row; [`put_owned`] (the trait's
//! default) builds them for a store that takes only those.

use chrono::{DateTime, Utc};

use crate::attr_map::AttrMap;
use crate::model::{Account, Identity, IdentityId, LinkState, Phase, Provenance};
use crate::store::{Store, StoreError};
use crate::text::Text;
use crate::value::Value;

/// New accounts of one system, each linked to the new identity projected from it, with
/// the identity's values (see [`Store::put_loaded`]).
#[derive(Debug, Clone, Copy)]
pub struct LoadedPart<'a> {
    /// The system's name.
    pub system: &'a Text,
    /// When the load ran: the identities' creation time and their values' provenance
    /// time.
    pub at: DateTime<Utc>,
    /// The rows, in the order of their identities' ids.
    pub rows: &'a [LoadedRow<'a>],
}

/// One new account and the identity projected from it.
#[derive(Debug, Clone, Copy)]
pub struct LoadedRow<'a> {
    /// The account's key.
    pub key: &'a str,
    /// The identity (new: no identity of this id is stored) the account is linked to.
    pub identity: IdentityId,
    /// The account's non-empty values, in attribute name order.
    pub values: &'a [(Text, Value)],
    /// The identity's values, in identity attribute name order.
    pub flows: &'a [LoadedFlow],
}

/// One value of a loaded identity: one of its account's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFlow {
    /// The identity attribute.
    pub attribute: Text,
    /// The position of the value among the row's [`LoadedRow::values`].
    pub value: usize,
    /// The score the value was created with (its provenance's strength; the phase is
    /// always a create).
    pub strength: u8,
}

impl LoadedRow<'_> {
    /// Whether the row is as the engine lends it: values and flows in strictly
    /// increasing name order, each flow naming one of the values.
    pub(crate) fn is_well_formed(&self) -> bool {
        self.values.windows(2).all(|w| w[0].0 < w[1].0)
            && self.flows.windows(2).all(|w| w[0].attribute < w[1].attribute)
            && self.flows.iter().all(|flow| flow.value < self.values.len())
    }

    /// The account the row holds, linked to its identity.
    pub fn account(&self) -> Account {
        let mut account = Account::new(self.key);
        account.attributes = if self.values.windows(2).all(|w| w[0].0 < w[1].0) {
            AttrMap::from_sorted(self.values.to_vec())
        } else {
            // Not in name order (not as the engine lends them): placed one by one.
            let mut attributes = AttrMap::new();
            for (name, value) in self.values {
                attributes.insert(name.clone(), value.clone());
            }
            attributes
        };
        account.link = LinkState::Linked(self.identity);
        account
    }

    /// The identity the row projects, created at `at` by `system`.
    pub fn identity(&self, system: &Text, at: DateTime<Utc>) -> Identity {
        let mut identity = Identity::new(self.identity, at);
        identity.reserve(self.flows.len());
        for flow in self.flows {
            if let Some((_, value)) = self.values.get(flow.value) {
                identity.write(
                    &flow.attribute,
                    value.clone(),
                    Provenance::new(system.clone(), flow.strength, Phase::Create, at),
                );
            }
        }
        identity
    }
}

/// Writes a loaded part as owned identities and accounts ([`Store::put_identities`],
/// then [`Store::put_accounts`]): the default of [`Store::put_loaded`].
pub fn put_owned<S: Store + ?Sized>(store: &mut S, part: &LoadedPart<'_>) -> Result<(), StoreError> {
    store.put_identities(part.rows.iter().map(|row| row.identity(part.system, part.at)).collect())?;
    store.put_accounts(part.system, part.rows.iter().map(LoadedRow::account).collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::store::MemoryStore;
    use crate::value::Scalar;

    fn text(s: &str) -> Value {
        Value::Single(Scalar::Text(Text::from(s)))
    }

    /// The memory store's own writing of loaded rows gives the store that writing the
    /// owned accounts and identities gives, for rows as the engine lends them and for
    /// rows it does not (out of order: the store then takes the owned way).
    #[test]
    fn the_memory_stores_loaded_records_are_the_owned_ones() {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).single().unwrap_or_default();
        let system = Text::from("hr");
        let values = vec![
            (Text::from("id"), text("E1")),
            (Text::from("mail"), text("Ann@X")),
            (Text::from("title"), text("Engineer")),
        ];
        let flows = [
            LoadedFlow {
                attribute: Text::from("employeeNumber"),
                value: 0,
                strength: 100,
            },
            LoadedFlow {
                attribute: Text::from("mail"),
                value: 1,
                strength: 90,
            },
            LoadedFlow {
                attribute: Text::from("title"),
                value: 2,
                strength: 100,
            },
        ];
        let unsorted: Vec<(Text, Value)> = values.iter().rev().cloned().collect();
        for (values, flows) in [(&values, &flows[..]), (&values, &flows[..1]), (&unsorted, &flows[..0])] {
            let rows = [
                LoadedRow {
                    key: "e1",
                    identity: IdentityId(1),
                    values,
                    flows,
                },
                LoadedRow {
                    key: "e2",
                    identity: IdentityId(2),
                    values: &values[..1],
                    flows: &flows[..flows.len().min(1)],
                },
            ];
            let part = LoadedPart {
                system: &system,
                at,
                rows: &rows,
            };
            let mut owned = MemoryStore::new();
            let mut lent = MemoryStore::new();
            for store in [&mut owned, &mut lent] {
                assert_eq!(store.set_index(&[("mail".to_owned(), false)]), Ok(()));
            }
            assert_eq!(put_owned(&mut owned, &part), Ok(()));
            assert_eq!(lent.put_loaded(&part), Ok(()));
            assert_eq!(lent, owned);
            assert_eq!(lent.identity_count(), Ok(2));
            let found = lent.find_identities("mail", "ann@x");
            assert_eq!(found, Ok(if flows.len() > 1 { vec![IdentityId(1)] } else { vec![] }));
        }
    }
}
