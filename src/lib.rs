#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod attr_map;
pub mod config;
pub mod connector;
pub mod controls;
mod correlation;
pub mod diagnosis;
pub mod diff;
pub mod engine;
pub mod error;
pub mod lint;
pub mod model;
pub mod observe;
pub mod outbound;
mod parallel;
pub mod prepare;
pub mod processing;
mod provenance;
mod record;
pub mod resolution;
#[cfg(feature = "scenario")]
pub mod scenario;
pub(crate) mod schedule;
pub mod schema_change;
pub mod store;
pub mod text;
mod text_cache;
pub mod thresholds;
pub mod transform;
pub mod validate;
pub mod value;

#[cfg(feature = "csv")]
pub mod csv_connector;
#[cfg(feature = "ldap")]
pub mod ldap_connector;
#[cfg(feature = "scim")]
pub mod scim;
#[cfg(feature = "sqlite")]
pub mod sqlite_store;

pub use attr_map::AttrMap;
pub use config::{Config, Direction, FlowRule, SystemConfig};
pub use connector::{Connector, ExportMode, MemoryConnector, OpStatus};
pub use controls::{ControlError, InboxEntry, OutboxEntry, SyncLoop};
pub use diagnosis::{Suspicion, SuspicionKind};
pub use diff::{AccountChange, AttributeChange, ChangeKind, ImportPlan};
pub use engine::{Approval, ConfirmReport, Engine, ImportReport, LinkEvent, UnlinkedAccount};
pub use engine::{ConfigPreview, NextDue, ResumeReport, ResumedImport};
pub use error::{ApproveError, ConfigChangeError, ConfigError, EditError, ImportError, OutboundError};
pub use model::{Account, Echo, Identity, IdentityId, LinkState, PendingCreate, Phase, Provenance};
pub use observe::{DecisionCounts, Observer, Progress, Stage};
pub use outbound::{CreateOp, DeleteOp, Op, OutboundPlan, OutboundSkip, PlanRequest, SkipReason, UpdateOp};
pub use prepare::{InvalidValue, RejectionReason, Row, RowRejection, Snapshot};
pub use resolution::{Decision, Outcome, RejectReason, WriteKind};
pub use schema_change::ConfigChange;
pub use store::{
    AccountSummary, DecodeError, EngineState, InLine, InLinePair, LinkedAccount, MemoryStore, PendingCreateChange,
    PendingPlan, PlanId, Store, StoreError,
};
pub use text::Text;
pub use thresholds::{Counts, Exceeded, Thresholds};
pub use validate::{ValidatedConfig, ValidationError, ValidationErrorKind, ValidationErrors};
pub use value::{Scalar, Value, ValueType};
