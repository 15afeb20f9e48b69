//! Direct edits of identity attributes by the host.

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::error::EditError;
use crate::model::{IdentityId, Phase, Provenance, HOST_SYSTEM};

use crate::resolution::{Decision, Outcome, WriteKind};
use crate::store::Store;

use crate::text::Text;
use crate::value::{Value, ValueProblem};

impl<S: Store> Engine<S> {
    // ---------------------------------------------------------------- host edits

    /// Directly edits identity attributes (an administrator's change): every value is
    /// written with provenance `@host` and strength 100. All values are checked first;
    /// if one is refused, nothing is written. The identity changed (SPEC 10.1: pass it
    /// to [`Engine::outbound_for`] or [`Engine::sync`]) exactly when the returned list
    /// of applied decisions is not empty.
    pub fn set_attributes(
        &mut self,
        identity: IdentityId,
        values: &[(String, serde_json::Value)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Decision>, EditError> {
        let Some(mut record) = self.store.identity(identity)? else {
            return Err(EditError::UnknownIdentity(identity));
        };
        let mut parsed = Vec::new();
        for (attribute, raw) in values {
            let Some((key, decl)) = self.config.identity.attributes.get_key_value(attribute.as_str()) else {
                let declared: Vec<&str> = self.config.identity.attributes.keys().map(Text::as_str).collect();
                return Err(EditError::UnknownAttribute {
                    attribute: attribute.clone(),
                    hint: crate::validate::suggest(attribute, &declared),
                });
            };
            if decl.computed.is_some() {
                return Err(EditError::ComputedAttribute(attribute.clone()));
            }
            let value = Value::from_json(raw, decl.value_type, decl.multi, decl.case_exact).map_err(|p| {
                EditError::InvalidValue {
                    attribute: attribute.clone(),
                    reason: match p {
                        ValueProblem::MultipleValues => {
                            format!("several values for a single-valued {} attribute", decl.value_type)
                        }
                        ValueProblem::InvalidValue => format!("it does not parse as a {} value", decl.value_type),
                    },
                }
            })?;
            parsed.push((key.clone(), value, decl.case_exact));
        }
        let mut decisions = Vec::new();
        for (attribute, value, exact) in parsed {
            let previous = record.value(&attribute).clone();
            if previous.same_as(&value, exact) {
                continue;
            }
            let kind = match (previous.is_empty(), value.is_empty()) {
                (true, _) => WriteKind::Create,
                (false, true) => WriteKind::Delete,
                (false, false) => WriteKind::Update,
            };
            let phase = if kind == WriteKind::Create {
                Phase::Create
            } else {
                Phase::Update
            };
            let incumbent = record.provenance(attribute.as_str()).cloned();
            record.write(&attribute, value.clone(), Provenance::new(HOST_SYSTEM, 100, phase, now));
            record.modified = record.modified.max(now);
            decisions.push(Decision {
                identity,
                attribute: attribute.to_string(),
                system: HOST_SYSTEM.to_owned(),
                account: String::new(),
                rule: 0,
                kind,
                offered: value,
                previous,
                score: 100,
                incumbent,
                outcome: Outcome::Applied,
                at: now,
                outranked_by: None,
                error: None,
            });
        }
        if !decisions.is_empty() {
            let mut processing = crate::processing::ProcessReport::default();
            self.after_change(&mut record, now, &mut processing);
            self.store.put_identities(vec![record])?;
        }
        Ok(decisions)
    }
}
