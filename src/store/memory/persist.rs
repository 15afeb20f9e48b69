//! The whole state of a [`MemoryStore`] as one versioned document: identities with
//! provenance and grants, accounts with links, echoes and pushed values, pending plans,
//! the pause inbox and outbox, and the id counters. Derived data (links by identity,
//! the correlation index, link-value totals, fingerprints) is rebuilt on load, so a
//! document cannot contradict it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Account, Identity, IdentityId, LinkState};
use crate::store::memory::MemoryStore;
use crate::store::{EngineState, PendingPlan, Store};

/// The `format` tag of a document.
pub const FORMAT: &str = "attrflow-memory-store";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Why a document could not be loaded. Loading never yields a partial state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON of the document's shape (truncated, damaged, unknown keys).
    #[error("the stored state is damaged at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Another kind of document.
    #[error("the stored state is a `{found}` document, not `{FORMAT}`")]
    WrongFormat {
        /// The format tag found.
        found: String,
    },
    /// A document of another version.
    #[error("the stored state has version {found}; this build reads version {supported} only")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
        /// The version supported.
        supported: u32,
    },
    /// The document contradicts itself (e.g. an account linked to a missing identity).
    #[error("the stored state is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    version: u32,
    next_identity: u64,
    next_plan: u64,
    index: Vec<(String, bool)>,
    identities: Vec<Identity>,
    systems: BTreeMap<String, SystemDocument>,
    pending: Vec<PendingPlan>,
    engine: EngineState,
    /// What the document holds, counted when it was written: fields an identity may
    /// leave out when empty (`access`, `out_of_scope`, `pending_creates`) cannot be told
    /// lost from empty otherwise. Absent from documents written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    totals: Option<Totals>,
}

/// The counts a document is checked against when loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Totals {
    identities: u64,
    accounts: u64,
    /// Values granted by roles, over every identity, system and attribute.
    grants: u64,
    /// (identity, system) pairs out of scope.
    out_of_scope: u64,
    /// (identity, system) pairs with an unconfirmed provisioning create.
    pending_creates: u64,
}

impl Totals {
    fn of<'a>(identities: &[Identity], accounts: impl Iterator<Item = &'a SystemDocument>) -> Totals {
        let count = |n: usize| n as u64;
        Totals {
            identities: count(identities.len()),
            accounts: accounts.map(|s| count(s.accounts.len())).sum(),
            grants: identities
                .iter()
                .flat_map(|i| i.access.values())
                .flat_map(BTreeMap::values)
                .map(|v| count(v.len()))
                .sum(),
            out_of_scope: identities.iter().map(|i| count(i.out_of_scope.len())).sum(),
            pending_creates: identities.iter().map(|i| count(i.pending_creates.len())).sum(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemDocument {
    version: u64,
    accounts: Vec<Account>,
}

impl MemoryStore {
    /// The whole state as a versioned JSON document (deterministic: equal stores give
    /// equal bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut index: Vec<(String, bool)> = self.indexed.iter().map(|(a, e)| (a.clone(), *e)).collect();
        index.sort();
        let systems: BTreeMap<String, SystemDocument> = self
            .systems
            .iter()
            .map(|(name, s)| {
                // Records this store wrote read back (`damaged` is a bug, not an input).
                let mut accounts: Vec<Account> = self.decoded_accounts("encode", s).filter_map(Result::ok).collect();
                accounts.sort_by(|a, b| a.key.cmp(&b.key));
                (
                    name.clone(),
                    SystemDocument {
                        version: s.version,
                        accounts,
                    },
                )
            })
            .collect();
        let identities: Vec<Identity> = self.decoded_identities("encode").filter_map(Result::ok).collect();
        let totals = Some(Totals::of(&identities, systems.values()));
        let document = Document {
            format: FORMAT.to_owned(),
            version: VERSION,
            next_identity: self.next_identity,
            next_plan: self.next_plan,
            index,
            identities,
            systems,
            pending: self.pending.values().cloned().collect(),
            engine: self.state.clone(),
            totals,
        };
        // Serializing plain data to a Vec cannot fail; an empty document would be
        // refused by `decode` rather than load as an empty store.
        serde_json::to_vec(&document).unwrap_or_default()
    }

    /// Loads a document written by [`MemoryStore::encode`]. A damaged document, one of
    /// another format or version, or one that contradicts itself is refused with a typed
    /// error; no partial state is ever returned.
    pub fn decode(bytes: &[u8]) -> Result<MemoryStore, DecodeError> {
        let malformed = |e: serde_json::Error| DecodeError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        };
        // The header first, so that another version is named as such rather than as a
        // shape mismatch.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
        let header = Header {
            format: value
                .get("format")
                .and_then(|f| f.as_str())
                .unwrap_or_default()
                .to_owned(),
            version: value.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32,
        };
        if header.format != FORMAT {
            return Err(DecodeError::WrongFormat { found: header.format });
        }
        if header.version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: header.version,
                supported: VERSION,
            });
        }
        // The engine state's fields have defaults for the host's own use of
        // `EngineState`, but `encode` always writes them: one missing from a document
        // is damage, not an empty inbox or outbox.
        for field in ["paused", "inbox", "outbox"] {
            if value.get("engine").and_then(|e| e.get(field)).is_none() {
                return Err(DecodeError::Inconsistent(format!(
                    "the engine state lacks `{field}` (a document written by encode always has it)"
                )));
            }
        }
        let document: Document = serde_json::from_value(value).map_err(malformed)?;
        rebuild(document)
    }
}

fn rebuild(document: Document) -> Result<MemoryStore, DecodeError> {
    let inconsistent = |m: String| Err(DecodeError::Inconsistent(m));
    if let Some(written) = document.totals {
        let found = Totals::of(&document.identities, document.systems.values());
        if found != written {
            return inconsistent(format!(
                "the document was written holding {written:?} but holds {found:?} (part of it was lost)"
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for identity in &document.identities {
        if !ids.insert(identity.id) {
            return inconsistent(format!("{} appears twice", identity.id));
        }
        if identity.id.get() > document.next_identity {
            return inconsistent(format!(
                "{} is beyond the identity counter {}",
                identity.id, document.next_identity
            ));
        }
    }
    let mut plans = BTreeSet::new();
    for plan in &document.pending {
        if !plans.insert(plan.id()) || plan.id().get() > document.next_plan {
            return inconsistent(format!(
                "pending {} is duplicated or beyond the plan counter",
                plan.id()
            ));
        }
    }
    let mut store = MemoryStore::new();
    // The memory store's methods cannot fail; they rebuild every derived structure.
    let _ = store.set_index(&document.index);
    let _ = store.put_identities(document.identities);
    for (name, system) in document.systems {
        let mut keys = BTreeSet::new();
        for account in &system.accounts {
            if account.key.is_empty() || !keys.insert(account.key.clone()) {
                return inconsistent(format!(
                    "system `{name}` has an empty or repeated account key `{}`",
                    account.key
                ));
            }
            let linked: Vec<IdentityId> = match &account.link {
                LinkState::Linked(id) => vec![*id],
                LinkState::Ambiguous(ids) => ids.clone(),
                LinkState::Unmatched => Vec::new(),
            };
            if let Some(missing) = linked.iter().find(|id| !ids.contains(id)) {
                return inconsistent(format!(
                    "account `{}` of system `{name}` refers to {missing}, which does not exist",
                    account.key
                ));
            }
        }
        let _ = store.put_accounts(&name, system.accounts);
        store.set_system_version(&name, system.version);
    }
    for plan in document.pending {
        let _ = store.put_pending_plan(plan);
    }
    let _ = store.put_engine_state(document.engine);
    store.next_identity = document.next_identity;
    store.next_plan = document.next_plan;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Account, LinkState};

    fn sample() -> MemoryStore {
        let mut store = MemoryStore::new();
        let t = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let id = store.allocate_identity_id().unwrap();
        store.put_identities(vec![Identity::new(id, t)]).unwrap();
        let mut account = Account::new("E1");
        account.link = LinkState::Linked(id);
        store.put_accounts("hr", vec![account]).unwrap();
        store.bump_system_version("hr").unwrap();
        store
    }

    #[test]
    fn a_store_round_trips() {
        let store = sample();
        let bytes = store.encode();
        assert_eq!(MemoryStore::decode(&bytes).unwrap(), store);
        assert_eq!(
            MemoryStore::decode(&bytes).unwrap().encode(),
            bytes,
            "encoding is deterministic"
        );
    }

    #[test]
    fn damaged_or_foreign_documents_are_refused() {
        let bytes = sample().encode();
        let cut = bytes.get(..bytes.len() / 2).unwrap();
        assert!(matches!(MemoryStore::decode(cut), Err(DecodeError::Malformed { .. })));
        let text = String::from_utf8(bytes.clone()).unwrap();
        let v2 = text.replacen("\"version\":1", "\"version\":2", 1);
        assert_eq!(
            MemoryStore::decode(v2.as_bytes()),
            Err(DecodeError::UnsupportedVersion { found: 2, supported: 1 })
        );
        let other = text.replacen(FORMAT, "something-else", 1);
        assert!(matches!(
            MemoryStore::decode(other.as_bytes()),
            Err(DecodeError::WrongFormat { .. })
        ));
        let dangling = text.replacen(
            "{\"state\":\"linked\",\"identities\":1}",
            "{\"state\":\"linked\",\"identities\":7}",
            1,
        );
        assert_ne!(dangling, text);
        assert!(matches!(
            MemoryStore::decode(dangling.as_bytes()),
            Err(DecodeError::Inconsistent(_))
        ));
        assert!(matches!(MemoryStore::decode(b""), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn a_document_that_lost_fields_an_identity_may_leave_out_is_refused() {
        let mut store = sample();
        let t = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let id = IdentityId::from_raw(1);
        let mut identity = store.identity(id).unwrap().unwrap();
        identity.access.insert(
            "ad".into(),
            BTreeMap::from([("memberOf".to_owned(), vec![crate::Scalar::Text("staff".into())])]),
        );
        identity.out_of_scope.insert("phone".into(), t);
        store.put_identities(vec![identity]).unwrap();
        let bytes = store.encode();
        assert_eq!(MemoryStore::decode(&bytes).unwrap(), store);
        let mut document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for field in ["access", "out_of_scope"] {
            let mut damaged = document.clone();
            let removed = damaged["identities"][0].as_object_mut().and_then(|i| i.remove(field));
            assert!(removed.is_some(), "{field} is written");
            let err = MemoryStore::decode(&serde_json::to_vec(&damaged).unwrap()).unwrap_err();
            assert!(
                matches!(&err, DecodeError::Inconsistent(m) if m.contains("lost")),
                "{field}: {err:?}"
            );
        }
        // A document written before totals existed still loads.
        document.as_object_mut().and_then(|d| d.remove("totals"));
        assert_eq!(
            MemoryStore::decode(&serde_json::to_vec(&document).unwrap()).unwrap(),
            store
        );
    }
}
