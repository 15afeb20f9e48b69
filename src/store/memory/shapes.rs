//! [`Shapes`]: where the values of the memory store's shaped identities are.
//!
//! A first load projects every account to an identity holding the same values: kept
//! twice, a million people took 300 MB more than their accounts. A loaded identity's
//! record names a shape instead of its values (see `record::encode_loaded_identity`):
//! the system whose one linked account holds them, and which attribute of that
//! account holds each identity attribute's value. A load has a handful of shapes (one
//! per set of empty cells), so each is kept once and a record holds its number.

use indexmap::IndexSet;

use crate::record::ValueRef;
use crate::store::StoreError;

/// Where a shaped identity's values are: in its one linked account of system number
/// `system` (the store's numbering of systems), under the attributes of `refs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub(super) system: u32,
    /// In the identity attributes' name order.
    pub(super) refs: Box<[ValueRef]>,
}

/// The shapes of a store, each kept once and numbered by its position.
#[derive(Debug, Clone, Default)]
pub(super) struct Shapes {
    shapes: IndexSet<Shape>,
    /// The number of the shape asked for last: consecutive rows of a load mostly share
    /// one, found without hashing it.
    last: Option<u32>,
}

impl Shapes {
    /// The shape numbered `number`.
    pub(super) fn get(&self, number: u32) -> Option<&Shape> {
        self.shapes.get_index(number as usize)
    }

    /// The number of the shape of `refs` into accounts of system `system`, numbered now
    /// when new.
    pub(super) fn number(&mut self, system: u32, refs: &[ValueRef]) -> Result<u32, StoreError> {
        if let Some(last) = self.last {
            if self
                .get(last)
                .is_some_and(|shape| shape.system == system && *shape.refs == *refs)
            {
                return Ok(last);
            }
        }
        let shape = Shape {
            system,
            refs: refs.into(),
        };
        let at = match self.shapes.get_index_of(&shape) {
            Some(at) => at,
            None => self.shapes.len(),
        };
        // Numbered before it is kept: a shape that cannot be numbered is not kept.
        let number = u32::try_from(at).map_err(|_| StoreError::new("memory store: the identity shapes are full"))?;
        self.shapes.insert(shape);
        self.last = Some(number);
        Ok(number)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Account, IdentityId, LinkState};
    use crate::store::{
        put_owned, InLine, InLinePair, LinkedAccount, LoadedFlow, LoadedPart, LoadedRow, MemoryStore, Store,
    };
    use crate::text::Text;
    use crate::value::{Value, ValueType};

    fn refs(attributes: &[u32]) -> Vec<ValueRef> {
        attributes
            .iter()
            .map(|&attribute| ValueRef {
                attribute,
                source: 1,
                account_attribute: attribute + 100,
            })
            .collect()
    }

    #[test]
    fn equal_shapes_share_a_number_and_others_do_not() {
        let mut shapes = Shapes::default();
        let a = shapes.number(0, &refs(&[1, 2, 3])).unwrap();
        let b = shapes.number(0, &refs(&[1, 3])).unwrap();
        // Asked for again after another one: found by its hash, not as the last.
        assert_eq!(shapes.number(0, &refs(&[1, 2, 3])).unwrap(), a);
        assert_eq!(shapes.number(0, &refs(&[1, 2, 3])).unwrap(), a);
        assert_ne!(a, b);
        // The same references into another system's accounts are another shape.
        let c = shapes.number(1, &refs(&[1, 3])).unwrap();
        assert_ne!(c, b);
        assert_eq!(shapes.number(0, &refs(&[1, 3])).unwrap(), b);
        assert_eq!(
            shapes.get(b).map(|s| (s.system, s.refs.to_vec())),
            Some((0, refs(&[1, 3])))
        );
        assert_eq!(shapes.get(c).map(|s| s.system), Some(1));
        assert!(shapes.get(3).is_none());
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).single().unwrap_or_default()
    }

    /// What is done to two stores after a load: one holding the load's identities
    /// shaped, one holding them written out.
    #[derive(Debug, Clone)]
    enum Step {
        /// Another part loaded: rows of keys `k{n}` (stored ones replaced), new ids.
        Load(Vec<(u8, u8)>),
        /// An hr account's title changed, its link kept.
        Retitle(u8, u8),
        /// An hr account linked to identity `to` (perhaps its own, perhaps one that has
        /// an hr account already), or unlinked (0).
        Relink(u8, u8),
        Remove(u8),
        /// A `dir` account `d{n}` linked to identity `to`.
        LinkOther(u8, u8),
        /// An identity rewritten with its title changed.
        Rewrite(u8, u8),
        RemoveHr,
    }

    fn step() -> impl Strategy<Value = Step> {
        let n = 0u8..12;
        prop_oneof![
            proptest::collection::vec((0u8..16, 0u8..4), 1..4).prop_map(Step::Load),
            (n.clone(), 0u8..4).prop_map(|(n, t)| Step::Retitle(n, t)),
            (n.clone(), 0u8..14).prop_map(|(n, to)| Step::Relink(n, to)),
            n.clone().prop_map(Step::Remove),
            (n.clone(), 1u8..14).prop_map(|(n, to)| Step::LinkOther(n, to)),
            (1u8..14, 0u8..4).prop_map(|(id, t)| Step::Rewrite(id, t)),
            Just(Step::RemoveHr),
        ]
    }

    /// Loads rows `(key number, title)` as identities from `next` on, through
    /// `put_loaded` (`shaped`) or the owned way.
    fn load(store: &mut MemoryStore, rows: &[(u8, u8)], next: u64, shaped: bool) -> Result<(), String> {
        let values: Vec<Vec<(Text, Value)>> = rows
            .iter()
            .map(|&(key, title)| {
                let mut values = vec![(Text::from("id"), Value::from(format!("k{key}").as_str()))];
                // Some rows without a mail: a shape without it.
                let mail = if key % 3 == 0 {
                    String::new()
                } else {
                    format!("M{}@x", key % 5)
                };
                values.push((Text::from("mail"), Value::from(mail.as_str())));
                values.push((Text::from("title"), Value::from(format!("T{title}").as_str())));
                values
            })
            .collect();
        let flows = [
            LoadedFlow {
                attribute: Text::from("employeeNumber"),
                value: 0,
                strength: 100,
            },
            // The key column flows into two identity attributes.
            LoadedFlow {
                attribute: Text::from("login"),
                value: 0,
                strength: 100,
            },
            LoadedFlow {
                attribute: Text::from("mail"),
                value: 1,
                strength: 90,
            },
            LoadedFlow {
                attribute: Text::from("position"),
                value: 2,
                strength: 100,
            },
        ];
        let keys: Vec<String> = rows.iter().map(|(key, _)| format!("k{key}")).collect();
        let loaded: Vec<LoadedRow<'_>> = values
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (values, key))| LoadedRow {
                key,
                identity: IdentityId(next + i as u64),
                values,
                flows: &flows,
            })
            .collect();
        let system = Text::from("hr");
        let part = LoadedPart {
            system: &system,
            at: at(1),
            rows: &loaded,
        };
        let done = if shaped {
            store.put_loaded(&part)
        } else {
            put_owned(store, &part)
        };
        done.map_err(|e| e.to_string())
    }

    /// `step` done to `store`; what it returned.
    fn apply(store: &mut MemoryStore, step: &Step, next: u64, shaped: bool) -> Result<(), String> {
        let hr_account = |store: &MemoryStore, n: u8| store.account("hr", &format!("k{n}")).ok().flatten();
        let done = match step {
            Step::Load(rows) => return load(store, rows, next, shaped),
            Step::Retitle(n, title) => match hr_account(store, *n) {
                Some(mut account) => {
                    account.set(&Text::from("title"), Value::from(format!("R{title}").as_str()));
                    store.put_accounts("hr", vec![account])
                }
                None => Ok(()),
            },
            Step::Relink(n, to) => match hr_account(store, *n) {
                Some(mut account) => {
                    account.link = match to {
                        0 => LinkState::Unmatched,
                        to => LinkState::Linked(IdentityId(u64::from(*to))),
                    };
                    store.put_accounts("hr", vec![account])
                }
                None => Ok(()),
            },
            Step::Remove(n) => store.remove_accounts("hr", &[format!("k{n}")]),
            Step::LinkOther(n, to) => {
                let mut account = Account::new(format!("d{n}"));
                account.set(&Text::from("uid"), Value::from(format!("u{n}").as_str()));
                account.link = LinkState::Linked(IdentityId(u64::from(*to)));
                store.put_accounts("dir", vec![account])
            }
            Step::Rewrite(id, title) => match store.identity(IdentityId(u64::from(*id))) {
                Ok(Some(mut identity)) => {
                    let source = identity.provenance("position").cloned();
                    if let Some(source) = source {
                        identity.set("position", Value::from(format!("W{title}").as_str()), source);
                    }
                    store.put_identities(vec![identity])
                }
                _ => Ok(()),
            },
            Step::RemoveHr => store.remove_system("hr"),
        };
        done.map_err(|e| e.to_string())
    }

    /// Every way the engine reads identities, as text.
    fn reads(store: &MemoryStore) -> String {
        let mut linked = Vec::new();
        let visited = store.visit_linked_accounts_reading("hr", &["mail", "position"], &mut |account, identity| {
            linked.push(format!("{} {:?}", account.key, identity.attributes()));
        });
        let ids: Vec<IdentityId> = (0..16).map(IdentityId).collect();
        let mut by_id = Vec::new();
        let read = store.visit_identities_by_id_reading(&ids, &["employeeNumber", "login"], &mut |_, identity| {
            by_id.push(identity.map(|i| format!("{:?}", i.attributes())));
        });
        let found: Vec<_> = (0..5)
            .map(|m| store.find_identities("mail", &format!("m{m}@x")))
            .collect();
        let in_line = (in_line(store, "hr"), in_line(store, "dir"));
        format!("{visited:?} {linked:?} {read:?} {by_id:?} {found:?} {in_line:?}")
    }

    /// The accounts of `system` an [`InLine`] check finds in line on the store's
    /// records, as identity ids, sorted: `Err` when they are not those the check finds on
    /// the decoded records (no record here has fields the records cannot be checked by).
    fn in_line(store: &MemoryStore, system: &str) -> Result<Vec<IdentityId>, String> {
        let pair = |identity: Option<&str>, account: &str| InLinePair {
            identity: identity.map(Text::from),
            account: Text::from(account),
            account_type: ValueType::String,
        };
        let check = InLine::new(vec![
            pair(Some("mail"), "mail"),
            pair(Some("position"), "title"),
            pair(Some("login"), "id"),
            pair(None, "nothing"),
        ]);
        let reading = ["login", "mail", "position"];
        let mut decoded = Vec::new();
        let mut linked = 0;
        store
            .visit_linked_accounts_reading(system, &reading, &mut |account, identity| {
                linked += 1;
                if check.holds(account, identity) {
                    decoded.push(identity.id);
                }
            })
            .map_err(|e| e.to_string())?;
        let (mut found, mut lent) = (Vec::new(), 0);
        store
            .visit_linked_accounts_out_of_line(system, &reading, &check, &mut |visited| match visited {
                LinkedAccount::InLine(id) => found.push(id),
                LinkedAccount::Lent(..) => lent += 1,
            })
            .map_err(|e| e.to_string())?;
        decoded.sort_unstable();
        found.sort_unstable();
        if found != decoded || found.len() + lent != linked {
            return Err(format!(
                "in line on the records: {found:?} ({lent} lent), decoded: {decoded:?} of {linked}"
            ));
        }
        Ok(found)
    }

    proptest! {
        /// Identities a load wrote shaped (their values read from their accounts) read
        /// as the same identities written out, whatever happens to the accounts after.
        #[test]
        fn shaped_identities_read_as_written_whatever_their_accounts_do(
            first in proptest::collection::vec((0u8..12, 0u8..4), 1..10),
            steps in proptest::collection::vec(step(), 0..12),
        ) {
            let mut shaped = MemoryStore::new();
            let mut owned = MemoryStore::new();
            for store in [&mut shaped, &mut owned] {
                prop_assert_eq!(store.set_index(&[("mail".to_owned(), false)]), Ok(()));
            }
            // Keys repeat within a part: such a part is written out (a key's second row
            // replaces its first).
            prop_assert_eq!(load(&mut shaped, &first, 1, true), load(&mut owned, &first, 1, false));
            prop_assert_eq!(&shaped, &owned);
            // Right after a load, every account holds what its identity does.
            let keys: std::collections::BTreeSet<u8> = first.iter().map(|(key, _)| *key).collect();
            prop_assert_eq!(in_line(&shaped, "hr").map(|found| found.len()), Ok(keys.len()));
            let mut next = first.len() as u64 + 1;
            for step in &steps {
                let a = apply(&mut shaped, step, next, true);
                let b = apply(&mut owned, step, next, false);
                prop_assert_eq!(a, b, "{:?}", step);
                prop_assert_eq!(&shaped, &owned, "after {:?}", step);
                prop_assert_eq!(reads(&shaped), reads(&owned), "after {:?}", step);
                for store in [&shaped, &owned] {
                    for system in ["hr", "dir"] {
                        prop_assert!(in_line(store, system).is_ok(), "{:?} after {:?}", in_line(store, system), step);
                    }
                }
                if let Step::Load(rows) = step {
                    next += rows.len() as u64;
                }
            }
        }
    }
}
