//! The records the engine keeps: identities with per-attribute provenance, and the
//! account mirror of each system with its correlation state.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attr_map::AttrMap;
use crate::provenance::Sources;
use crate::text::Text;
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
    pub system: Text,
    /// The score the value won with.
    pub strength: u8,
    /// Whether the write was a create or an update.
    pub phase: Phase,
    /// The time of the change that wrote it.
    pub at: DateTime<Utc>,
}

impl Provenance {
    /// A provenance record.
    pub fn new(system: impl Into<Text>, strength: u8, phase: Phase, at: DateTime<Utc>) -> Provenance {
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
///
/// Values and provenance are read with [`Identity::attributes`], [`Identity::value`],
/// [`Identity::provenance`] and [`Identity::provenances`] and written together with
/// [`Identity::set`]: each value's provenance is kept beside it (compactly: the distinct
/// provenances once, an index per value), so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// Its id.
    pub id: IdentityId,
    /// Non-empty attribute values.
    attributes: AttrMap<Value>,
    /// The provenance of each entry of `attributes`, by position.
    sources: Sources,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When any of its attributes last changed.
    pub modified: DateTime<Utc>,
    /// Entitlement values granted by roles: system -> account attribute -> values
    /// (SPEC 7.3). Recomputed whenever the identity's attributes change.
    pub access: BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
    /// Per system with a `scope` (SPEC 11.1): since when the identity has been out of
    /// that scope (the time of the change or processing step that took it out). A
    /// system absent here has the identity in scope.
    pub out_of_scope: BTreeMap<Text, DateTime<Utc>>,
    /// Per system: the account a provisioning request handed out a `create` op for
    /// that is not confirmed yet (SPEC 5.2). A second request is refused
    /// (`provision_pending`) until the create is confirmed, the identity is linked in
    /// that system by an import, or the host cancels it with
    /// [`Engine::cancel_provision`](crate::Engine::cancel_provision).
    pub pending_creates: BTreeMap<Text, PendingCreate>,
}

/// A `create` op handed out by provisioning and not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingCreate {
    /// The account key the op creates.
    pub account: String,
    /// When the op was handed out.
    pub since: DateTime<Utc>,
}

impl Identity {
    /// A new, empty identity.
    pub fn new(id: IdentityId, now: DateTime<Utc>) -> Identity {
        Identity {
            id,
            attributes: AttrMap::new(),
            sources: Sources::default(),
            created: now,
            modified: now,
            access: BTreeMap::new(),
            out_of_scope: BTreeMap::new(),
            pending_creates: BTreeMap::new(),
        }
    }

    /// The non-empty attribute values, in name order.
    pub fn attributes(&self) -> &AttrMap<Value> {
        &self.attributes
    }

    /// The value of an attribute (empty if unset).
    pub fn value(&self, attribute: &str) -> &Value {
        static EMPTY: Value = Value::Empty;
        self.attributes.get(attribute).unwrap_or(&EMPTY)
    }

    /// Who wrote an attribute's current value, how strongly and when (`None` for an
    /// attribute without a value).
    pub fn provenance(&self, attribute: &str) -> Option<&Provenance> {
        self.attributes
            .position(attribute)
            .ok()
            .and_then(|at| self.sources.get(at))
    }

    /// Every value's provenance, in name order.
    pub fn provenances(&self) -> impl Iterator<Item = (&Text, &Provenance)> {
        self.attributes
            .keys()
            .enumerate()
            .filter_map(|(at, name)| Some((name, self.sources.get(at)?)))
    }

    /// Whether the identity is in the scope of a system (SPEC 11.1), as last evaluated.
    pub fn in_scope(&self, system: &str) -> bool {
        !self.out_of_scope.contains_key(system)
    }

    /// Sets a value with its provenance; an empty value clears both. For hosts and
    /// stores that build identities themselves (a bulk load, a store decoding its
    /// records); the engine's own writes go through resolution.
    pub fn set(&mut self, attribute: impl Into<Text>, value: Value, provenance: Provenance) {
        self.write(&attribute.into(), value, provenance);
    }

    /// Sets a value with its provenance; an empty value clears both.
    pub(crate) fn write(&mut self, attribute: &Text, value: Value, provenance: Provenance) {
        match self.attributes.position(attribute.as_str()) {
            Ok(at) if value.is_empty() => {
                self.attributes.remove_at(at);
                self.sources.remove(at);
            }
            Err(_) if value.is_empty() => {}
            Ok(at) => {
                self.attributes.replace_at(at, value);
                self.sources.set(at, provenance);
            }
            Err(at) => {
                self.attributes.insert_at(at, attribute.clone(), value);
                self.sources.insert(at, Some(provenance));
            }
        }
    }

    /// Keeps the attributes (values and provenance) whose names `keep` accepts.
    pub(crate) fn retain_attributes(&mut self, mut keep: impl FnMut(&Text) -> bool) {
        let kept: Vec<bool> = self.attributes.keys().map(&mut keep).collect();
        let mut at = 0;
        self.attributes.retain(|_, _| {
            let k = kept.get(at).copied().unwrap_or(true);
            at += 1;
            k
        });
        self.sources.retain_positions(&kept);
    }

    /// The provenance of the entry at `position` of [`Identity::attributes`] (a store
    /// encoding the identity walks its entries by position).
    pub(crate) fn provenance_at(&self, position: usize) -> Option<&Provenance> {
        self.sources.get(position)
    }

    /// An identity decoded from its parts: values in strictly increasing name order
    /// (the caller checks), each with the index of its provenance in `distinct` (out
    /// of range: none), as [`Identity::push_decoded`] one by one would build it.
    pub(crate) fn from_decoded(
        id: IdentityId,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
        entries: Vec<(Text, Value)>,
        distinct: Vec<Provenance>,
        sources: &[usize],
    ) -> Identity {
        let mut identity = Identity::new(id, created);
        identity.modified = modified;
        identity.attributes = AttrMap::from_sorted(entries);
        identity.sources = Sources::from_parts(distinct, sources);
        identity
    }

    /// Appends a decoded entry after every name it holds (a store decoding a record
    /// written in name order), with its provenance or none; out of order, it is
    /// inserted where it belongs.
    pub(crate) fn push_decoded(&mut self, attribute: Text, value: Value, provenance: Option<Provenance>) {
        match self.attributes.position(attribute.as_str()) {
            Ok(at) => {
                self.attributes.replace_at(at, value);
                self.sources.remove(at);
                self.sources.insert(at, provenance);
            }
            Err(at) => {
                self.attributes.insert_at(at, attribute, value);
                self.sources.insert(at, provenance);
            }
        }
    }

    /// Makes room for `additional` more values (before a new identity is filled).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.attributes.reserve(additional);
        self.sources.reserve(additional);
    }
}

/// The serialized form of an [`Identity`]: values and provenance as two maps by name
/// (the form of release 0.1, kept so that stored state reads back unchanged).
#[derive(Serialize)]
struct IdentityOut<'a> {
    id: IdentityId,
    attributes: &'a AttrMap<Value>,
    provenance: ProvenanceOut<'a>,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    access: &'a BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    out_of_scope: &'a BTreeMap<Text, DateTime<Utc>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pending_creates: &'a BTreeMap<Text, PendingCreate>,
}

/// An identity's provenance as a map by attribute name.
struct ProvenanceOut<'a>(&'a Identity);

impl Serialize for ProvenanceOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.provenances())
    }
}

#[derive(Deserialize)]
struct IdentityIn {
    id: IdentityId,
    attributes: AttrMap<Value>,
    provenance: AttrMap<Provenance>,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    #[serde(default)]
    access: BTreeMap<String, BTreeMap<String, Vec<Scalar>>>,
    #[serde(default)]
    out_of_scope: BTreeMap<Text, DateTime<Utc>>,
    #[serde(default)]
    pending_creates: BTreeMap<Text, PendingCreate>,
}

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        IdentityOut {
            id: self.id,
            attributes: &self.attributes,
            provenance: ProvenanceOut(self),
            created: self.created,
            modified: self.modified,
            access: &self.access,
            out_of_scope: &self.out_of_scope,
            pending_creates: &self.pending_creates,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Identity {
    /// Values and provenance are matched by name: a value without a provenance reads
    /// back without one, a provenance without a value (which no release writes) is
    /// dropped.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Identity, D::Error> {
        let wire = IdentityIn::deserialize(deserializer)?;
        let mut sources = Sources::default();
        sources.reserve(wire.attributes.len());
        for (at, name) in wire.attributes.keys().enumerate() {
            sources.insert(at, wire.provenance.get(name).cloned());
        }
        Ok(Identity {
            id: wire.id,
            attributes: wire.attributes,
            sources,
            created: wire.created,
            modified: wire.modified,
            access: wire.access,
            out_of_scope: wire.out_of_scope,
            pending_creates: wire.pending_creates,
        })
    }
}

/// How an account's correlation state changed during an import (reported in
/// [`crate::ImportReport::links`], or handed to [`crate::Observer::on_link`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LinkEvent {
    /// The account key.
    pub account: String,
    /// The new state.
    pub state: LinkState,
    /// Whether a new identity was created for the account (projection).
    pub projected: bool,
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
///
/// Equality ignores [`Account::fingerprint`], a cache of the values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// The account key (the `account_id` value; lower-cased when that attribute
    /// ignores case).
    pub key: String,
    /// Non-empty attribute values.
    pub attributes: AttrMap<Value>,
    /// Correlation state.
    pub link: LinkState,
    /// Values of multi-valued attributes that the engine itself wrote here (confirmed
    /// `create` / `add` ops): only these are removed by a non-authoritative rule.
    pub pushed: BTreeMap<Text, Vec<Scalar>>,
    /// Per attribute: the last value a confirmed outbound op wrote here, and how many
    /// times in a row an import showed it back at a different value (SPEC 5.3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub echoes: BTreeMap<Text, Echo>,
    /// [`Account::values_fingerprint`] of `attributes` when last stored, or 0 when
    /// unknown. A store may set it when it stores the account (the [`MemoryStore`]
    /// does); a complete import then skips comparing the values of a row whose cells
    /// hash the same. Anything that changes `attributes` without storing the account
    /// again must set it to 0.
    ///
    /// [`MemoryStore`]: crate::store::MemoryStore
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fingerprint: u64,
    /// Whether the engine created this account (a confirmed `create` op): only such
    /// accounts are deleted by deprovisioning unless `delete_unowned` is set (SPEC 11.3).
    #[serde(default, skip_serializing_if = "is_false")]
    pub provisioned: bool,
    /// Whether the engine disabled this account (a confirmed op wrote the system's
    /// `disable` values while its identity was out of scope): an identity back in scope
    /// gets the `enable` values (SPEC 11.3).
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl PartialEq for Account {
    fn eq(&self, other: &Account) -> bool {
        self.key == other.key
            && self.attributes == other.attributes
            && self.link == other.link
            && self.pushed == other.pushed
            && self.echoes == other.echoes
            && self.provisioned == other.provisioned
            && self.disabled == other.disabled
    }
}

impl Eq for Account {}

/// A fast, non-cryptographic 64-bit hash of a sequence of byte strings (each one
/// length-prefixed), eight bytes per step with a 128-bit multiply fold. Not keyed:
/// meant for change detection of values, not for tables fed by adversaries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprint(u64);

/// [`Account::values_fingerprint`] of an account holding `values` (in name order).
pub(crate) fn values_fingerprint<'v>(values: impl Iterator<Item = (&'v Text, &'v Value)>) -> u64 {
    let mut hash = Fingerprint::new();
    for (name, value) in values {
        let Value::Single(Scalar::Text(text)) = value else {
            return 0;
        };
        hash.add(name.as_bytes());
        hash.add(text.as_bytes());
    }
    hash.finish()
}

impl Fingerprint {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;

    pub(crate) fn new() -> Fingerprint {
        Fingerprint(Self::K0)
    }

    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a).wrapping_mul(u128::from(b));
        (r as u64) ^ ((r >> 64) as u64)
    }

    /// Adds one byte string.
    pub(crate) fn add(&mut self, bytes: &[u8]) {
        let mut h = Self::fold(self.0 ^ bytes.len() as u64, Self::K1);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = Self::fold(h ^ u64::from_le_bytes(word), Self::K1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            h = Self::fold(h ^ u64::from_le_bytes(word), Self::K0);
        }
        self.0 = h;
    }

    /// The hash; never 0 (0 means "unknown").
    pub(crate) fn finish(self) -> u64 {
        let h = Self::fold(self.0, Self::K0 ^ Self::K1);
        if h == 0 {
            1
        } else {
            h
        }
    }
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
    /// For a multi-valued attribute: values confirmed removed that no import has shown
    /// gone yet. One seen present again is a bounce too (SPEC 5.3), and the engine
    /// removes it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Scalar>,
}

impl Echo {
    /// The echo of a value just pushed.
    pub fn new(pushed: Value) -> Echo {
        Echo {
            pushed,
            bounces: 0,
            armed: true,
            removed: Vec::new(),
        }
    }

    /// Whether an import must look at this echo again: its value is bouncing, or a
    /// push awaits the import that shows whether it was kept (SPEC 5.3).
    pub(crate) fn is_pending(&self) -> bool {
        self.bounces > 0 || self.armed
    }
}

impl Account {
    /// A new, unmatched account.
    pub fn new(key: impl Into<String>) -> Account {
        Account {
            key: key.into(),
            attributes: AttrMap::new(),
            link: LinkState::Unmatched,
            pushed: BTreeMap::new(),
            echoes: BTreeMap::new(),
            fingerprint: 0,
            provisioned: false,
            disabled: false,
        }
    }

    /// A hash of the non-empty values, in attribute name order: each name and value
    /// text, when every value is a single text (string or reference); 0 otherwise.
    /// A complete import hashes a row's cells the same way.
    pub fn values_fingerprint(&self) -> u64 {
        values_fingerprint(self.attributes.iter())
    }

    /// The value of an attribute (empty if unset).
    pub fn value(&self, attribute: &str) -> &Value {
        static EMPTY: Value = Value::Empty;
        self.attributes.get(attribute).unwrap_or(&EMPTY)
    }

    /// Sets or (with an empty value) removes an attribute value; the fingerprint is
    /// then unknown until the account is stored again.
    pub(crate) fn set(&mut self, attribute: &Text, value: Value) {
        self.fingerprint = 0;
        if value.is_empty() {
            self.attributes.remove(attribute.as_str());
        } else {
            self.attributes.insert(attribute.clone(), value);
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
