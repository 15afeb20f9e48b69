//! Identity processing (SPEC 7): computed attributes, role grants under lifecycle
//! states, and manager (reference) resolution. Pure functions over one identity; the
//! engine decides when they run (on every change, on `process(now)`, on demand).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::{Identity, IdentityId, Phase, Provenance, COMPUTED_SYSTEM};
use crate::text::Text;
use crate::transform::{AttributeSource, Transform};
use crate::value::{Scalar, Value};

/// One identity attribute changed by processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ComputedChange {
    /// The identity.
    pub identity: IdentityId,
    /// The computed attribute.
    pub attribute: String,
    /// The value before.
    pub old: Value,
    /// The value after.
    pub new: Value,
}

/// Entitlement values granted to or revoked from an identity on one system attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessChange {
    /// The identity.
    pub identity: IdentityId,
    /// The system.
    pub system: String,
    /// The multi-valued account attribute.
    pub attribute: String,
    /// Values newly granted.
    pub granted: Vec<Scalar>,
    /// Values no longer granted.
    pub revoked: Vec<Scalar>,
}

/// A computed attribute or role criterion that could not be evaluated for an identity;
/// the previous value stays in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessingError {
    /// The identity.
    pub identity: IdentityId,
    /// The computed attribute, or `role:NAME` for a role's criteria.
    pub attribute: String,
    /// The evaluation error's kind (`unknown_attribute`, `wrong_type`, `too_large`,
    /// `invalid_argument`).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// An identity that entered or left the scope of a system (SPEC 11.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScopeChange {
    /// The identity.
    pub identity: IdentityId,
    /// The system whose `scope` it entered or left.
    pub system: String,
    /// `true`: now in scope; `false`: now out of scope.
    pub in_scope: bool,
}

/// A reference attribute whose value matches no identity (SPEC 7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DanglingReference {
    /// The identity holding the reference.
    pub identity: IdentityId,
    /// The reference attribute.
    pub attribute: String,
    /// The raw value that resolves to nothing.
    pub value: String,
}

/// What processing did (or, for a preview, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
pub struct ProcessReport {
    /// Whether the changes were applied (`false` for a preview).
    pub applied: bool,
    /// Identities examined.
    pub examined: usize,
    /// Computed attribute changes.
    pub changes: Vec<ComputedChange>,
    /// Role grant changes (examined only for identities whose attributes changed).
    pub access: Vec<AccessChange>,
    /// Scope membership changes (SPEC 11.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<ScopeChange>,
    /// The identities this processing run changed (an attribute, a role grant or scope
    /// membership), by id (SPEC 10.1). Filled by [`Engine::process`] and
    /// [`Engine::process_identities`]; an import reports its changed identities in
    /// [`ImportReport::changed`].
    ///
    /// [`Engine::process`]: crate::Engine::process
    /// [`Engine::process_identities`]: crate::Engine::process_identities
    /// [`ImportReport::changed`]: crate::ImportReport::changed
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<IdentityId>,
    /// Evaluation errors, per identity and attribute.
    pub errors: Vec<ProcessingError>,
    /// Unresolved references.
    pub dangling: Vec<DanglingReference>,
}

impl ProcessReport {
    /// Adds what a later part of the same run did (its identities come after ours).
    pub(crate) fn absorb(&mut self, later: ProcessReport) {
        self.examined += later.examined;
        self.changes.extend(later.changes);
        self.access.extend(later.access);
        self.scope.extend(later.scope);
        self.changed.extend(later.changed);
        self.errors.extend(later.errors);
        self.dangling.extend(later.dangling);
    }
}

impl std::fmt::Display for ProcessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "processing{}: {} identities examined, {} computed values changed, {} grants changed, {} scope changes, {} errors, {} dangling references",
            if self.applied { "" } else { " (preview, nothing applied)" },
            self.examined,
            self.changes.len(),
            self.access.len(),
            self.scope.len(),
            self.errors.len(),
            self.dangling.len()
        )
    }
}

/// An identity's attributes as a transform source: declared attributes read as their
/// value (empty if unset); undeclared names are unknown.
pub(crate) struct IdentitySource<'a> {
    pub(crate) config: &'a Config,
    pub(crate) identity: &'a Identity,
}

impl AttributeSource for IdentitySource<'_> {
    fn get(&self, name: &str) -> Option<Value> {
        self.config
            .identity
            .attributes
            .get(name)
            .map(|_| self.identity.value(name).clone())
    }
}

/// Computed attributes in an order where each comes after the computed attributes it
/// reads (validation refuses cycles).
pub(crate) fn computed_order(config: &Config) -> Vec<(&str, &Transform)> {
    let computed: BTreeMap<&str, &Transform> = config
        .identity
        .attributes
        .iter()
        .filter_map(|(name, a)| a.computed.as_ref().map(|t| (name.as_str(), t)))
        .collect();
    let mut order: Vec<(&str, &Transform)> = Vec::new();
    let mut remaining: Vec<(&str, &Transform)> = computed.iter().map(|(n, t)| (*n, *t)).collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|(name, t)| {
            let ready = t
                .attributes()
                .iter()
                .all(|input| !computed.contains_key(input.as_str()) || order.iter().any(|(n, _)| n == input));
            if ready {
                order.push((name, t));
            }
            !ready
        });
        if remaining.len() == before {
            // A cycle (refused by validation); evaluate the rest in name order.
            order.append(&mut remaining);
        }
    }
    order
}

/// Recomputes an identity's computed attributes at `now`. Returns whether anything
/// changed; errors leave the previous value and are reported.
pub(crate) fn recompute_attributes(
    config: &Config,
    identity: &mut Identity,
    now: DateTime<Utc>,
    report: &mut ProcessReport,
) -> bool {
    let mut changed = false;
    for (name, transform) in computed_order(config) {
        let Some((key, decl)) = config.identity.attributes.get_key_value(name) else {
            continue;
        };
        let result = transform
            .eval(&IdentitySource { config, identity }, now)
            .map_err(|e| (e.kind().to_owned(), e.to_string()))
            .and_then(|v| {
                v.convert(decl.value_type, decl.multi, decl.case_exact).map_err(|_| {
                    (
                        "wrong_type".to_owned(),
                        format!("the result {v} does not fit a {} attribute", decl.value_type),
                    )
                })
            });
        match result {
            Ok(value) => {
                let old = identity.value(name).clone();
                if !old.same_as(&value, decl.case_exact) {
                    let phase = if old.is_empty() { Phase::Create } else { Phase::Update };
                    identity.write(key, value.clone(), Provenance::new(COMPUTED_SYSTEM, 100, phase, now));
                    identity.modified = identity.modified.max(now);
                    report.changes.push(ComputedChange {
                        identity: identity.id,
                        attribute: name.to_owned(),
                        old,
                        new: value,
                    });
                    changed = true;
                }
            }
            Err((kind, message)) => report.errors.push(ProcessingError {
                identity: identity.id,
                attribute: name.to_owned(),
                kind,
                message,
            }),
        }
    }
    changed
}

/// Why a condition gave no truth value.
enum Undecided {
    /// It gave a value that is not a boolean.
    WrongType,
    /// It could not be evaluated.
    Failed,
}

/// A condition over an identity (a role's criteria, a system's scope): its truth (empty
/// is false), or why it has none, reported as an error of `attribute`; `what` names the
/// condition in the message.
fn condition(
    config: &Config,
    identity: &Identity,
    transform: &Transform,
    now: DateTime<Utc>,
    attribute: String,
    what: impl FnOnce() -> String,
    report: &mut ProcessReport,
) -> Result<bool, Undecided> {
    let (kind, message, undecided) = match transform.eval(&IdentitySource { config, identity }, now) {
        Ok(Value::Single(Scalar::Boolean(b))) => return Ok(b),
        Ok(Value::Empty) => return Ok(false),
        Ok(other) => (
            "wrong_type".to_owned(),
            format!("{} gave {other}, not a boolean", what()),
            Undecided::WrongType,
        ),
        Err(e) => (e.kind().to_owned(), e.to_string(), Undecided::Failed),
    };
    report.errors.push(ProcessingError {
        identity: identity.id,
        attribute,
        kind,
        message,
    });
    Err(undecided)
}

/// Re-evaluates the scope membership of an identity for every system (SPEC 11.1): a
/// system without `scope` has every identity in it; an identity leaving a scope is
/// recorded as out of it since `now`. A condition that cannot be evaluated (or gives no
/// boolean) leaves the membership as it was and is reported as `scope:SYSTEM`. Returns
/// whether any membership changed.
pub(crate) fn recompute_scope(
    config: &Config,
    identity: &mut Identity,
    now: DateTime<Utc>,
    report: &mut ProcessReport,
) -> bool {
    let mut changed = false;
    // Records of systems that lost their scope (or were removed) end: in scope now.
    let stale: Vec<Text> = identity
        .out_of_scope
        .keys()
        .filter(|s| config.systems.get(s.as_str()).is_none_or(|c| c.scope.is_none()))
        .cloned()
        .collect();
    for system in stale {
        identity.out_of_scope.remove(system.as_str());
        if config.systems.contains_key(system.as_str()) {
            report.scope.push(ScopeChange {
                identity: identity.id,
                system: system.to_string(),
                in_scope: true,
            });
        }
        changed = true;
    }
    for (name, system) in &config.systems {
        let Some(condition_of) = &system.scope else { continue };
        let what = || format!("the scope of system `{name}`");
        let Ok(holds) = condition(
            config,
            identity,
            condition_of,
            now,
            format!("scope:{name}"),
            what,
            report,
        ) else {
            continue;
        };
        if holds == identity.in_scope(name) {
            continue;
        }
        if holds {
            identity.out_of_scope.remove(name.as_str());
        } else {
            identity.out_of_scope.insert(name.clone(), now);
        }
        report.scope.push(ScopeChange {
            identity: identity.id,
            system: name.to_string(),
            in_scope: holds,
        });
        changed = true;
    }
    changed
}

/// Recomputes the role grants of an identity (SPEC 7.3): the union of the grants of
/// every role whose criteria hold, none while the lifecycle state revokes roles.
pub(crate) fn recompute_access(
    config: &Config,
    identity: &mut Identity,
    now: DateTime<Utc>,
    report: &mut ProcessReport,
) {
    let revoked = config.lifecycle.as_ref().is_some_and(|l| {
        identity
            .value(&l.attribute)
            .scalars()
            .iter()
            .any(|s| l.revoke_roles_in.iter().any(|state| *state == s.to_string()))
    });
    let mut wanted: BTreeMap<String, BTreeMap<String, Vec<Scalar>>> = BTreeMap::new();
    if !revoked {
        for (role_name, role) in &config.roles {
            let what = || format!("the criteria of role `{role_name}`");
            let holds = match condition(
                config,
                identity,
                &role.criteria,
                now,
                format!("role:{role_name}"),
                what,
                report,
            ) {
                Ok(holds) => holds,
                Err(Undecided::WrongType) => continue,
                // The previous grants stay while the criteria cannot be evaluated.
                Err(Undecided::Failed) => return,
            };
            if !holds {
                continue;
            }
            for (system, attributes) in &role.grants {
                for (attribute, values) in attributes {
                    let exact = config
                        .systems
                        .get(system.as_str())
                        .is_none_or(|s| s.case_exact(attribute));
                    let entry = wanted
                        .entry(system.clone())
                        .or_default()
                        .entry(attribute.clone())
                        .or_default();
                    entry.extend(values.iter().map(|v| Scalar::Text(v.clone().into())));
                    if let Value::Multi(set) = Value::multi(std::mem::take(entry), exact) {
                        *entry = set.into_vec();
                    }
                }
            }
        }
    }
    // Report the differences, then keep the new grants.
    let empty = BTreeMap::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for map in [&identity.access, &wanted] {
        for (system, attributes) in map {
            for attribute in attributes.keys() {
                keys.push((system.clone(), attribute.clone()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    for (system, attribute) in keys {
        let before = identity
            .access
            .get(&system)
            .unwrap_or(&empty)
            .get(&attribute)
            .cloned()
            .unwrap_or_default();
        let after = wanted
            .get(&system)
            .unwrap_or(&empty)
            .get(&attribute)
            .cloned()
            .unwrap_or_default();
        let granted: Vec<Scalar> = after.iter().filter(|s| !before.contains(s)).cloned().collect();
        let revoked: Vec<Scalar> = before.iter().filter(|s| !after.contains(s)).cloned().collect();
        if !granted.is_empty() || !revoked.is_empty() {
            report.access.push(AccessChange {
                identity: identity.id,
                system,
                attribute,
                granted,
                revoked,
            });
        }
    }
    identity.access = wanted;
}
