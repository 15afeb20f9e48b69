//! The records the engine keeps: identities with per-attribute provenance, and the
//! account mirror of each system with its correlation state.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::value::{Scalar, Value};

/// The system name recorded as provenance for direct edits by the host.
pub const HOST_SYSTEM: &str = "@host";

/// The system name recorded as provenance for computed attributes.
pub const COMPUTED_SYSTEM: &str = "@computed";

/// The stable id of an identity, allocated by the store in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityId(pub(crate) u64);

impl IdentityId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
    /// An id from its number (for stores that persist ids).
    pub fn from_raw(raw: u64) -> IdentityId {
        IdentityId(raw)
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "identity #{}", self.0)
    }
}

/// Whether a value was first written (create) or replaced (update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Written into an empty attribute.
    Create,
    /// Written over another value.
    Update,
}

/// Who wrote an identity attribute's current value, how strongly, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Provenance {
    /// The contributing system (`@host` for direct edits).
    pub system: String,
    /// The score the value won with.
    pub strength: u8,
    /// Whether the write was a create or an update.
    pub phase: Phase,
    /// The time of the change that wrote it.
    pub at: DateTime<Utc>,
}

impl Provenance {
    /// A provenance record.
    pub fn new(system: impl Into<String>, strength: u8, phase: Phase, at: DateTime<Utc>) -> Provenance {
        Provenance {
            system: system.into(),
            strength,
            phase,
            at,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Create => "create",
            Phase::Update => "update",
        };
        write!(
            f,
            "{} with strength {} ({phase}, {})",
            self.system,
            self.strength,
            self.at.to_rfc3339()
        )
    }
}

/// A central identity: its non-empty attribute values and their provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// Its id.
    pub id: IdentityId,
    /// Non-empty attribute values.
    pub attributes: BTreeMap<String, Value>,
    /// Provenance of each non-empty attribute.
    pub provenance: BTreeMap<String, Provenance>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When any of its attributes last changed.
    pub modified: DateTime<Utc>,
    /// Entitlement values granted by roles: system -> account attribute -> values
    /// (SPEC 7.3). Recomputed whenever the identity's attributes change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub access: BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
}

impl Identity {
    /// A new, empty identity.
    pub fn new(id: IdentityId, now: DateTime<Utc>) -> Identity {
        Identity {
            id,
            attributes: BTreeMap::new(),
            provenance: BTreeMap::new(),
            created: now,
            modified: now,
            access: BTreeMap::new(),
        }
    }

    /// The value of an attribute (empty if unset).
    pub fn value(&self, attribute: &str) -> &Value {
        static EMPTY: Value = Value::Empty;
        self.attributes.get(attribute).unwrap_or(&EMPTY)
    }

    /// Sets a value with its provenance; an empty value clears both.
    pub(crate) fn write(&mut self, attribute: &str, value: Value, provenance: Provenance) {
        if value.is_empty() {
            self.attributes.remove(attribute);
            self.provenance.remove(attribute);
        } else {
            self.attributes.insert(attribute.to_owned(), value);
            self.provenance.insert(attribute.to_owned(), provenance);
        }
    }
}

/// How an account stands towards the identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "identities")]
pub enum LinkState {
    /// Linked to one identity (sticky until the account is deleted).
    Linked(IdentityId),
    /// No correlation rule matched and the system does not project.
    Unmatched,
    /// A correlation rule matched several identities.
    Ambiguous(Vec<IdentityId>),
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Linked(id) => write!(f, "linked to {id}"),
            LinkState::Unmatched => f.write_str("unmatched: no correlation rule found an identity"),
            LinkState::Ambiguous(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                write!(f, "ambiguous: a correlation rule matched {}", ids.join(", "))
            }
        }
    }
}

/// The stored mirror of one account: what its system last gave (or what confirmed
/// outbound ops wrote), and how it is linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// The account key (the `account_id` value; lower-cased when that attribute
    /// ignores case).
    pub key: String,
    /// Non-empty attribute values.
    pub attributes: BTreeMap<String, Value>,
    /// Correlation state.
    pub link: LinkState,
    /// Values of multi-valued attributes that the engine itself wrote here (confirmed
    /// `create` / `add` ops): only these are removed by a non-authoritative rule.
    pub pushed: BTreeMap<String, Vec<Scalar>>,
    /// Per attribute: the last value a confirmed outbound op wrote here, and how many
    /// times in a row an import showed it back at a different value (SPEC 5.3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub echoes: BTreeMap<String, Echo>,
}

/// Sync-loop bookkeeping for one account attribute (SPEC 5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Echo {
    /// The value last pushed and confirmed.
    pub pushed: Value,
    /// How many times the pushed value came back different, in a row.
    pub bounces: u32,
    /// Whether a push was confirmed since an import last showed this attribute: only
    /// then can an import count a bounce (one bounce per push).
    #[serde(default)]
    pub armed: bool,
}

impl Echo {
    /// The echo of a value just pushed.
    pub fn new(pushed: Value) -> Echo {
        Echo {
            pushed,
            bounces: 0,
            armed: true,
        }
    }
}

impl Account {
    /// A new, unmatched account.
    pub fn new(key: impl Into<String>) -> Account {
        Account {
            key: key.into(),
            attributes: BTreeMap::new(),
            link: LinkState::Unmatched,
            pushed: BTreeMap::new(),
            echoes: BTreeMap::new(),
        }
    }

    /// The value of an attribute (empty if unset).
    pub fn value(&self, attribute: &str) -> &Value {
        static EMPTY: Value = Value::Empty;
        self.attributes.get(attribute).unwrap_or(&EMPTY)
    }

    /// Sets or (with an empty value) removes an attribute value.
    pub(crate) fn set(&mut self, attribute: &str, value: Value) {
        if value.is_empty() {
            self.attributes.remove(attribute);
        } else {
            self.attributes.insert(attribute.to_owned(), value);
        }
    }

    /// The identity this account is linked to.
    pub fn identity(&self) -> Option<IdentityId> {
        match self.link {
            LinkState::Linked(id) => Some(id),
            _ => None,
        }
    }

    /// Number of values held in multi-valued attributes.
    pub fn link_values(&self) -> u64 {
        self.attributes
            .values()
            .filter(|v| matches!(v, Value::Multi(_)))
            .map(|v| v.len() as u64)
            .sum()
    }
}
