//! Typed refusals. Every error names what was wrong and where, in words an
//! administrator understands, and has a stable `snake_case` [`kind`](ImportError::kind)
//! that scenario files and hosts can match on. A refused operation changes nothing.

use std::fmt;

use crate::model::IdentityId;
use crate::store::{PlanId, StoreError};
use crate::validate::ValidationErrors;

/// A configuration that could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The JSON text does not parse or does not have the configuration's shape.
    #[error("the configuration is not valid JSON of the expected shape at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The configuration parsed but has problems; all are listed.
    #[error("{0}")]
    Invalid(ValidationErrors),
}

impl ConfigError {
    pub(crate) fn from_json(e: serde_json::Error) -> ConfigError {
        ConfigError::Parse {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// A problem with the column list of a complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnProblem {
    /// A schema attribute the snapshot lacks: importing it would erase its values.
    Missing(String),
    /// A column the schema does not declare.
    Unknown(String),
    /// A column listed twice.
    Duplicate(String),
}

impl ColumnProblem {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ColumnProblem::Missing(_) => "missing_column",
            ColumnProblem::Unknown(_) => "unknown_column",
            ColumnProblem::Duplicate(_) => "duplicate_column",
        }
    }
}

impl fmt::Display for ColumnProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnProblem::Missing(c) => write!(
                f,
                "column `{c}` of the schema is missing (importing would erase its values)"
            ),
            ColumnProblem::Unknown(c) => write!(f, "column `{c}` is not in the schema"),
            ColumnProblem::Duplicate(c) => write!(f, "column `{c}` is listed twice"),
        }
    }
}

/// A whole import refused: nothing of it was applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The system is not configured.
    #[error("system `{0}` is not configured")]
    UnknownSystem(String),
    /// The snapshot's columns do not match the schema.
    #[error("the complete snapshot for system `{system}` was refused: {}", join(problems))]
    Columns {
        /// The system.
        system: String,
        /// Every column problem.
        problems: Vec<ColumnProblem>,
    },
    /// The system's accounts changed (another writer on a shared store committed)
    /// between computing this import's plan and applying it: nothing was applied.
    #[error("the import of system `{system}` was not applied: its accounts changed while it was being computed (another writer committed first); import again")]
    StalePlan {
        /// The system.
        system: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// The stable `snake_case` name (for column problems, that of the first).
    pub fn kind(&self) -> &'static str {
        match self {
            ImportError::UnknownSystem(_) => "unknown_system",
            ImportError::Columns { problems, .. } => problems.first().map_or("missing_column", ColumnProblem::kind),
            ImportError::StalePlan { .. } => "stale_plan",
            ImportError::Store(_) => "store",
        }
    }
}

/// Problems (or exceeded thresholds) as one text, `; `-separated.
pub(crate) fn join<T: fmt::Display>(problems: &[T]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// An approval refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// No plan is blocked.
    #[error("there is no blocked plan to approve")]
    NoBlockedPlan,
    /// The plan id is not a pending plan.
    #[error("{0} is not a blocked plan (it was applied, discarded or never existed)")]
    UnknownPlan(PlanId),
    /// The system's accounts changed since the plan was computed; it was discarded.
    #[error("{plan} for system `{system}` is stale: its accounts changed since it was computed, so it was discarded; import again")]
    StalePlan {
        /// The plan.
        plan: PlanId,
        /// Its system.
        system: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApproveError {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ApproveError::NoBlockedPlan => "no_blocked_plan",
            ApproveError::UnknownPlan(_) => "unknown_plan",
            ApproveError::StalePlan { .. } => "stale_plan",
            ApproveError::Store(_) => "store",
        }
    }
}

/// An outbound, provisioning or confirmation request refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The system is not configured.
    #[error("system `{0}` is not configured")]
    UnknownSystem(String),
    /// The identity does not exist.
    #[error("{0} does not exist")]
    UnknownIdentity(IdentityId),
    /// The identity already has an account in the system.
    #[error("{identity} already has account `{account}` in system `{system}`")]
    AlreadyProvisioned {
        /// The identity.
        identity: IdentityId,
        /// The system.
        system: String,
        /// Its existing account.
        account: String,
    },
    /// A `create` op handed out earlier for the identity in the system is not
    /// confirmed yet.
    #[error(
        "{identity} was given a create op for account `{account}` in system `{system}` at {since}, not confirmed yet; confirm it, or cancel it with cancel_provision if it failed"
    )]
    ProvisionPending {
        /// The identity.
        identity: IdentityId,
        /// The system.
        system: String,
        /// The account the earlier op creates.
        account: String,
        /// When the earlier op was handed out.
        since: chrono::DateTime<chrono::Utc>,
    },
    /// No value would be written to the system's `account_id` attribute.
    #[error(
        "cannot provision {identity} in system `{system}`: no rule gives a value for its key attribute `{attribute}`"
    )]
    NoAccountId {
        /// The identity.
        identity: IdentityId,
        /// The system.
        system: String,
        /// The key attribute.
        attribute: String,
    },
    /// A confirmed update names an account that is not stored.
    #[error("cannot confirm an update of account `{account}` in system `{system}`: it is not stored")]
    UnknownAccount {
        /// The system.
        system: String,
        /// The account key.
        account: String,
    },
    /// A confirmed create names an account that already exists.
    #[error("cannot confirm the creation of account `{account}` in system `{system}`: it already exists")]
    AccountExists {
        /// The system.
        system: String,
        /// The account key.
        account: String,
    },
    /// A confirmed op names an attribute the schema lacks.
    #[error("cannot confirm an op on account `{account}` in system `{system}`: attribute `{attribute}` is not in the schema")]
    UnknownAttribute {
        /// The system.
        system: String,
        /// The account key.
        account: String,
        /// The attribute.
        attribute: String,
    },
    /// A confirmed op names an account key that is empty or not in its canonical form
    /// (lower case for a system whose key ignores case).
    #[error("cannot confirm an op on account `{account}` in system `{system}`: the key is empty or not canonical (expected `{expected}`)")]
    InvalidKey {
        /// The system.
        system: String,
        /// The key as the op gave it.
        account: String,
        /// The key the engine would store.
        expected: String,
    },
    /// A confirmed op carries a value that does not fit the schema.
    #[error("cannot confirm an op on account `{account}` in system `{system}`: the value for `{attribute}` {reason}")]
    InvalidValue {
        /// The system.
        system: String,
        /// The account key.
        account: String,
        /// The attribute.
        attribute: String,
        /// Why.
        reason: String,
    },
    /// Requests of a provisioning batch were refused (nothing was provisioned).
    #[error("{} of {requested} provisioning requests in system `{system}` refused; the first: {}", refusals.len(), refusals.first().map(ToString::to_string).unwrap_or_default())]
    ProvisioningRefused {
        /// The system.
        system: String,
        /// How many identities the batch asked for.
        requested: usize,
        /// Every refused request, in request order.
        refusals: Vec<OutboundError>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OutboundError {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            OutboundError::UnknownSystem(_) => "unknown_system",
            OutboundError::UnknownIdentity(_) => "unknown_identity",
            OutboundError::AlreadyProvisioned { .. } => "already_provisioned",
            OutboundError::ProvisionPending { .. } => "provision_pending",
            OutboundError::NoAccountId { .. } => "no_account_id",
            OutboundError::UnknownAccount { .. } => "unknown_account",
            OutboundError::AccountExists { .. } => "account_exists",
            OutboundError::UnknownAttribute { .. } => "unknown_attribute",
            OutboundError::ProvisioningRefused { .. } => "provisioning_refused",
            OutboundError::InvalidKey { .. } => "invalid_key",
            OutboundError::InvalidValue { .. } => "invalid_value",
            OutboundError::Store(_) => "store",
        }
    }
}

/// A direct edit of identity attributes refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The identity does not exist.
    #[error("{0} does not exist")]
    UnknownIdentity(IdentityId),
    /// The attribute is not declared; `hint` names the declared one closest to it.
    #[error("identity attribute `{attribute}` is not declared{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    UnknownAttribute {
        /// The attribute named.
        attribute: String,
        /// "did you mean `title`?", when a declared name is within two edits.
        hint: Option<String>,
    },
    /// The value does not fit the attribute.
    #[error("the value for identity attribute `{attribute}` is invalid: {reason}")]
    InvalidValue {
        /// The attribute.
        attribute: String,
        /// Why.
        reason: String,
    },
    /// The attribute is computed (SPEC 7.1): its transform owns its value, and an edit
    /// would be overwritten by the next recomputation.
    #[error("identity attribute `{0}` is computed: edit the attributes its transform reads instead")]
    ComputedAttribute(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EditError {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            EditError::UnknownIdentity(_) => "unknown_identity",
            EditError::UnknownAttribute { .. } => "unknown_attribute",
            EditError::InvalidValue { .. } => "invalid_value",
            EditError::ComputedAttribute(_) => "computed_attribute",
            EditError::Store(_) => "store",
        }
    }
}

/// One reason a configuration replacement is refused (SPEC 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaChangeProblem {
    /// `account_id` or `account_name` would change while accounts are stored.
    ImmutableKeyChange {
        /// The system.
        system: String,
        /// `account_id` or `account_name`.
        field: String,
        /// The current attribute.
        from: String,
        /// The new attribute.
        to: String,
    },
    /// An attribute would be removed while stored accounts hold values for it.
    AttributeHasValues {
        /// The system.
        system: String,
        /// The attribute.
        attribute: String,
        /// How many accounts hold a value.
        accounts: usize,
    },
    /// An attribute would become single-valued while an account holds several values.
    MultiValuesPresent {
        /// The system.
        system: String,
        /// The attribute.
        attribute: String,
        /// How many accounts hold several values.
        accounts: usize,
    },
    /// A system would be removed while accounts of it are stored.
    SystemHasAccounts {
        /// The system.
        system: String,
        /// How many accounts are stored.
        accounts: usize,
    },
    /// An attribute's type would change while stored values do not convert to it.
    IncompatibleValues {
        /// The system.
        system: String,
        /// The attribute.
        attribute: String,
        /// How many accounts hold a value that does not convert.
        accounts: usize,
    },
    /// The key attribute's `case_exact` would change while accounts are stored: keys
    /// are re-keyed under the new rule (forced).
    KeyCaseChange {
        /// The system.
        system: String,
        /// The key attribute.
        attribute: String,
    },
    /// The key attribute would ignore case, but stored accounts hold keys that differ
    /// only in case: they would become one (refused even when forced).
    KeyCaseCollision {
        /// The system.
        system: String,
        /// The colliding stored keys (sorted; the first few).
        keys: Vec<String>,
    },
}

impl SchemaChangeProblem {
    /// The stable `snake_case` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SchemaChangeProblem::ImmutableKeyChange { .. } => "immutable_key_change",
            SchemaChangeProblem::AttributeHasValues { .. } => "attribute_has_values",
            SchemaChangeProblem::MultiValuesPresent { .. } => "multi_values_present",
            SchemaChangeProblem::SystemHasAccounts { .. } => "system_has_accounts",
            SchemaChangeProblem::IncompatibleValues { .. } => "incompatible_values",
            SchemaChangeProblem::KeyCaseChange { .. } => "key_case_change",
            SchemaChangeProblem::KeyCaseCollision { .. } => "key_case_collision",
        }
    }

    /// Whether `force` overrides this problem.
    pub fn forcible(&self) -> bool {
        !matches!(
            self,
            SchemaChangeProblem::MultiValuesPresent { .. } | SchemaChangeProblem::KeyCaseCollision { .. }
        )
    }
}

impl fmt::Display for SchemaChangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaChangeProblem::ImmutableKeyChange { system, field, from, to } => write!(
                f,
                "system `{system}`: `{field}` would change from `{from}` to `{to}` while accounts are stored (force to re-key)"
            ),
            SchemaChangeProblem::AttributeHasValues { system, attribute, accounts } => write!(
                f,
                "system `{system}`: attribute `{attribute}` would be removed but {accounts} stored account(s) hold values for it (force to drop them)"
            ),
            SchemaChangeProblem::MultiValuesPresent { system, attribute, accounts } => write!(
                f,
                "system `{system}`: attribute `{attribute}` would become single-valued but {accounts} stored account(s) hold several values (cannot be forced)"
            ),
            SchemaChangeProblem::SystemHasAccounts { system, accounts } => write!(
                f,
                "system `{system}` would be removed but {accounts} account(s) of it are stored (force to drop them)"
            ),
            SchemaChangeProblem::IncompatibleValues { system, attribute, accounts } => write!(
                f,
                "system `{system}`: attribute `{attribute}` would change type but {accounts} stored value(s) do not convert (force to drop them)"
            ),
            SchemaChangeProblem::KeyCaseChange { system, attribute } => write!(
                f,
                "system `{system}`: key attribute `{attribute}` would change `case_exact` while accounts are stored (force to re-key them)"
            ),
            SchemaChangeProblem::KeyCaseCollision { system, keys } => write!(
                f,
                "system `{system}`: the key would ignore case but stored keys differ only in case ({}): they would become one account (cannot be forced)",
                keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// A configuration replacement refused: nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigChangeError {
    /// The new configuration is invalid.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The new configuration conflicts with stored accounts; all conflicts are listed.
    #[error("the configuration change was refused: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        /// Every conflict.
        problems: Vec<SchemaChangeProblem>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
