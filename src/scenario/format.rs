//! The serde shape of scenario files. Unknown keys are refused everywhere so a typo
//! cannot pass silently.

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::prepare::{Row, Snapshot};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Must be `attrflow-scenario/1`.
    pub format: String,
    /// What the scenario shows.
    pub name: String,
    /// The engine configuration (validated when the scenario runs).
    pub config: serde_json::Value,
    /// The steps, in time order.
    pub steps: Vec<Step>,
}

/// One step: a time, exactly one action, optional expectations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "each action is documented in SCENARIOS.md")]
pub struct Step {
    /// `now` for this step.
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<ProvisionStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<SetStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_loop: Option<LoopRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl Step {
    /// The names of the actions this step sets.
    pub fn actions(&self) -> Vec<&'static str> {
        [
            ("import", self.import.is_some()),
            ("approve", self.approve.is_some()),
            ("outbound", self.outbound.is_some()),
            ("provision", self.provision.is_some()),
            ("sync", self.sync.is_some()),
            ("set", self.set.is_some()),
            ("process", self.process.is_some()),
            ("pause", self.pause.is_some()),
            ("resume", self.resume.is_some()),
            ("clear_loop", self.clear_loop.is_some()),
            ("config", self.config.is_some()),
            ("preview_config", self.preview_config.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
    }
}

/// `complete` or `incremental`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs, reason = "the import modes of SPEC 2.4")]
pub enum Mode {
    Complete,
    Incremental,
}

/// An import action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct ImportStep {
    pub system: String,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Row>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upserts: Option<Vec<Row>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<Vec<serde_json::Value>>,
}

impl ImportStep {
    /// The snapshot this step imports; `Err` when keys of the other mode are present.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        match self.mode {
            Mode::Complete => {
                if self.upserts.is_some() || self.deletes.is_some() {
                    return Err("a complete import takes `columns` and `rows`, not `upserts` or `deletes`".into());
                }
                let Some(columns) = self.columns.clone() else {
                    return Err("a complete import needs `columns`".into());
                };
                Ok(Snapshot::Complete {
                    columns,
                    rows: self.rows.clone().unwrap_or_default(),
                })
            }
            Mode::Incremental => {
                if self.columns.is_some() || self.rows.is_some() {
                    return Err("an incremental import takes `upserts` and `deletes`, not `columns` or `rows`".into());
                }
                Ok(Snapshot::Incremental {
                    upserts: self.upserts.clone().unwrap_or_default(),
                    deletes: self.deletes.clone().unwrap_or_default(),
                })
            }
        }
    }
}

/// An outbound action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct OutboundStep {
    pub system: String,
    /// Only these identities' ops (SPEC 10.1); absent: the whole system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
    #[serde(default)]
    pub confirm: bool,
}

/// A manual sync of one identity on every system (SPEC 10.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct SyncStep {
    pub identity: String,
    #[serde(default)]
    pub confirm: bool,
}

/// A provisioning action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct ProvisionStep {
    pub system: String,
    pub identity: String,
    #[serde(default)]
    pub confirm: bool,
}

/// A direct edit of identity attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct SetStep {
    pub identity: String,
    pub attributes: IndexMap<String, serde_json::Value>,
}

/// Expected attribute values of one stored account.
pub type AccountExpect = IndexMap<String, serde_json::Value>;

/// `false`, `true`, or `{"exceeded": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(missing_docs, reason = "forms as in SCENARIOS.md")]
pub enum BlockedExpect {
    Flag(bool),
    Exceeded(ExceededExpect),
}

/// The exact set of exceeded thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "forms as in SCENARIOS.md")]
pub struct ExceededExpect {
    pub exceeded: Vec<String>,
}

/// An expected error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct ErrorExpect {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An expected rejected decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct RejectedExpect {
    pub identity: String,
    pub attribute: String,
    pub system: String,
    pub reason: String,
}

/// An account reference `{system, key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct AccountRef {
    pub system: String,
    pub key: String,
}

/// Expectations of a step; only what is listed is checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "each key is documented in SCENARIOS.md")]
pub struct Expect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<IndexMap<String, IndexMap<String, serde_json::Value>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<IndexMap<String, IndexMap<String, Option<String>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<IndexMap<String, IndexMap<String, Option<AccountExpect>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<IndexMap<String, IndexMap<String, Option<String>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<IndexMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<BlockedExpect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ErrorExpect>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RejectedExpect>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<Vec<AccountRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<Vec<AccountRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<Vec<LoopRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingExpect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Vec<SkippedExpect>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Vec<DiagnosisExpect>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<PreviewExpect>>,
    /// `null` or `{"at": T, "identities": [SEL, ...]}` (SPEC 13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<serde_json::Value>,
    /// The exact set of lint finding kinds of the configuration in force (a crate
    /// extension of the format: `[{"kind": "unstable_round_trip"}, ...]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lint: Option<Vec<LintExpect>>,
}

/// A new identity attribute value a `preview_config` step reports (SPEC 12.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct PreviewExpect {
    pub identity: String,
    pub attribute: String,
    pub value: serde_json::Value,
}

/// A finding of an import's diagnosis: `{kind}` or `{kind, columns}` (SPEC 12.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct DiagnosisExpect {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// Something an outbound or sync step skipped `{system, identity, reason}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct SkippedExpect {
    pub system: String,
    pub identity: String,
    pub reason: String,
}

/// A sync loop `{system, account, attribute}` (the `clear_loop` action and the `loops`
/// expectation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct LoopRef {
    pub system: String,
    pub account: String,
    pub attribute: String,
}

/// The sizes of a paused engine's inbox and outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct PendingExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<usize>,
}

/// A processing action: `{}` for scheduled processing of every identity, or
/// `{"identities": [SEL, ...]}` for manual processing of chosen ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "fields as in SCENARIOS.md")]
pub struct ProcessStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<String>>,
}

/// An expected lint finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "the kind names of the lint module")]
pub struct LintExpect {
    pub kind: String,
}
