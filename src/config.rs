//! The engine configuration as written by an administrator (serde, JSON): the identity
//! schema, systems with their account schemas, correlation rules, flow rules and
//! thresholds. A [`Config`] is only data; [`Config::validate`] turns it into a
//! [`ValidatedConfig`](crate::ValidatedConfig), the only form the engine accepts.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::text::Text;
use crate::thresholds::Thresholds;
use crate::transform::Transform;
use crate::value::ValueType;

/// A whole engine configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The central identity schema.
    pub identity: IdentitySchema,
    /// The connected systems, in a stable order (the order written).
    #[serde(default)]
    pub systems: IndexMap<Text, SystemConfig>,
    /// Roles (SPEC 7.3): criteria over identity attributes granting entitlement values.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub roles: IndexMap<String, Role>,
    /// Lifecycle settings (SPEC 7.3): which states revoke every role grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

/// A role: identities meeting its criteria are granted its entitlement values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// A condition (a transform yielding a boolean) over identity attributes.
    pub criteria: Transform,
    /// System -> multi-valued account attribute -> values granted.
    pub grants: IndexMap<String, IndexMap<String, Vec<String>>>,
}

/// Lifecycle settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// The identity attribute holding the lifecycle state (often `computed`).
    pub attribute: String,
    /// States in which an identity holds no role grant.
    #[serde(default)]
    pub revoke_roles_in: Vec<String>,
}

/// The attributes of the central identity ("person object").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySchema {
    /// Attribute name to its declaration.
    pub attributes: IndexMap<Text, IdentityAttribute>,
}

/// One identity attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityAttribute {
    /// Declared type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Whether the attribute holds a set of values.
    #[serde(default)]
    pub multi: bool,
    /// `false` makes every comparison of this attribute ignore case.
    #[serde(default = "yes")]
    pub case_exact: bool,
    /// For a `reference`: the identity attribute its raw value is matched against.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_attribute: Option<String>,
    /// A computed attribute (SPEC 7.1): a transform over other identity attributes and
    /// `now`, recomputed on every change of the identity and by processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<Transform>,
}

/// One connected system ("account store").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// The account schema.
    pub schema: AccountSchema,
    /// `false` stops every attribute flow of this system, in and out.
    #[serde(default = "yes")]
    pub allow_flow: bool,
    /// Whether an unmatched account creates a new identity (projection).
    #[serde(default)]
    pub authoritative: bool,
    /// Ordered correlation rules; each is a conjunction of attribute pairs.
    #[serde(default)]
    pub correlation: Vec<Vec<CorrelationPair>>,
    /// Attribute flow rules.
    #[serde(default)]
    pub flows: Vec<FlowRule>,
    /// Change limits for imports and outbound plans.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Which identities belong in this system (SPEC 11.1): a condition over identity
    /// attributes, in the language of role criteria. Without one, every identity is in
    /// scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Transform>,
    /// Automatic provisioning of identities in scope (SPEC 11.2).
    #[serde(default, skip_serializing_if = "Provisioning::is_default")]
    pub provisioning: Provisioning,
    /// What happens to the accounts of identities out of scope (SPEC 11.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovisioning: Option<Deprovisioning>,
}

/// Automatic provisioning settings of a system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provisioning {
    /// `true`: every outbound plan of the system holds a `create` op for each identity
    /// in scope with no account linked there.
    #[serde(default)]
    pub auto: bool,
}

impl Provisioning {
    fn is_default(&self) -> bool {
        *self == Provisioning::default()
    }
}

/// Deprovisioning settings of a system (every key optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deprovisioning {
    /// Account attribute values that disable an account (e.g. `{"locked": true}`),
    /// set on the accounts of identities out of scope. Checked against the account
    /// schema by validation.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub disable: IndexMap<String, serde_json::Value>,
    /// Values that enable an account again (e.g. `{"locked": false}`): set when an
    /// identity the engine disabled comes back into scope, and written by every
    /// `create` op of the system.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub enable: IndexMap<String, serde_json::Value>,
    /// Days after an identity left scope at which its account is deleted; without it
    /// nothing is ever deleted. A whole number of days, 0 or more (checked by
    /// validation; see [`Deprovisioning::delete_after`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_days: Option<serde_json::Number>,
    /// `true` also deletes accounts the engine did not create (imported ones).
    #[serde(default)]
    pub delete_unowned: bool,
}

/// The largest `delete_after_days` accepted (a hundred years).
pub const MAX_DELETE_AFTER_DAYS: u64 = 36_500;

impl Deprovisioning {
    /// How long after leaving scope an account is deleted; `None` when never (or when
    /// `delete_after_days` is not a whole number of days up to
    /// [`MAX_DELETE_AFTER_DAYS`], which validation refuses).
    pub fn delete_after(&self) -> Option<chrono::TimeDelta> {
        let days = self.delete_after_days.as_ref()?.as_u64()?;
        if days > MAX_DELETE_AFTER_DAYS {
            return None;
        }
        chrono::TimeDelta::try_days(i64::try_from(days).ok()?)
    }
}

/// The shape of a system's accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSchema {
    /// The attribute holding the primary key.
    pub account_id: String,
    /// The attribute holding the account's display name (may equal `account_id`).
    pub account_name: String,
    /// Attribute name to its declaration.
    pub attributes: IndexMap<Text, AccountAttribute>,
}

/// One account attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountAttribute {
    /// Declared type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Whether the attribute holds a set of values.
    #[serde(default)]
    pub multi: bool,
    /// Whether the values grant access (group memberships, roles).
    #[serde(default)]
    pub entitlement: bool,
    /// `false` makes every comparison of this attribute ignore case.
    #[serde(default = "yes")]
    pub case_exact: bool,
    /// For a `reference`: the identity attribute its raw value must match (checked by
    /// prepare as `dangling_reference`).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_attribute: Option<String>,
}

/// `account attribute == identity attribute`, one term of a correlation rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationPair {
    /// Account attribute.
    pub account: String,
    /// Identity attribute.
    pub identity: String,
    /// A transform of the account's attributes compared instead of the raw account
    /// value (by default the `in` transform of a flow rule joining the same pair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
}

/// Which way a flow rule moves values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Account to identity.
    Inbound,
    /// Identity to account.
    Outbound,
    /// Both ways.
    Bidirectional,
    /// No flow, except that the rule still seeds a newly provisioned account.
    Disabled,
}

impl Direction {
    /// Whether the rule carries values from accounts into identities.
    pub fn is_inbound(self) -> bool {
        matches!(self, Direction::Inbound | Direction::Bidirectional)
    }
    /// Whether the rule carries values from identities out to accounts.
    pub fn is_outbound(self) -> bool {
        matches!(self, Direction::Outbound | Direction::Bidirectional)
    }
}

/// A rule joining one account attribute to one identity attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    /// Account attribute.
    pub account: Text,
    /// Identity attribute.
    pub identity: Text,
    /// Flow direction.
    pub direction: Direction,
    /// Strength when the identity attribute is empty (0..=100; 0 never creates).
    #[serde(default)]
    pub create: i64,
    /// Strength when replacing a value (0..=100; 0 never replaces).
    #[serde(default)]
    pub update: i64,
    /// Strength when blanking a value (0..=100; 0 never blanks).
    #[serde(default)]
    pub delete: i64,
    /// `false` switches the rule off entirely (it does not even seed new accounts).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Outbound, multi-valued: the account holds exactly the desired set, manual values
    /// included in what is removed.
    #[serde(default)]
    pub authoritative: bool,
    /// Inbound transform over the account's attributes (`attr` names account attributes).
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub transform_in: Option<Transform>,
    /// Outbound transform over the identity's attributes (`attr` names identity attributes).
    #[serde(default, rename = "out", skip_serializing_if = "Option::is_none")]
    pub transform_out: Option<Transform>,
}

fn yes() -> bool {
    true
}

impl FlowRule {
    /// Whether the inbound side reads account attribute `name`: the rule's own, or one
    /// its `in` transform reads (a change to it produces a candidate).
    pub fn reads_account_attribute(&self, name: &str) -> bool {
        self.account == name
            || self
                .transform_in
                .as_ref()
                .is_some_and(|t| t.attributes().contains(name))
    }
}

impl Config {
    /// Whether identity attribute `name` compares exactly (an undeclared one does).
    pub fn identity_case_exact(&self, name: &str) -> bool {
        self.identity.attributes.get(name).is_none_or(|a| a.case_exact)
    }
}

impl SystemConfig {
    /// Declaration of an account attribute.
    pub fn attribute(&self, name: &str) -> Option<&AccountAttribute> {
        self.schema.attributes.get(name)
    }

    /// Whether account attribute `name` compares exactly (an undeclared one does).
    pub fn case_exact(&self, name: &str) -> bool {
        self.attribute(name).is_none_or(|a| a.case_exact)
    }

    /// Whether account keys compare exactly (else they are stored lower-cased).
    pub fn key_case_exact(&self) -> bool {
        self.case_exact(&self.schema.account_id)
    }

    /// Enabled inbound rules, with their position in `flows` (the rule number), when the
    /// system lets values flow at all.
    pub fn inbound_rules(&self) -> impl Iterator<Item = (usize, &FlowRule)> {
        let allow = self.allow_flow;
        self.flows
            .iter()
            .enumerate()
            .filter(move |(_, r)| allow && r.enabled && r.direction.is_inbound())
    }

    /// Enabled outbound rules, when the system lets values flow at all.
    pub fn outbound_rules(&self) -> impl Iterator<Item = (usize, &FlowRule)> {
        let allow = self.allow_flow;
        self.flows
            .iter()
            .enumerate()
            .filter(move |(_, r)| allow && r.enabled && r.direction.is_outbound())
    }
}
