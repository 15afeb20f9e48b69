//! Identity processing entry points (SPEC 7): scheduled (`process`), manual
//! (`process_identities`), their previews, and the event-based recompute that follows
//! every change of an identity.

use chrono::{DateTime, Utc};

use crate::engine::Engine;
use crate::model::{Identity, IdentityId};
use crate::processing::{recompute_access, recompute_attributes, recompute_scope, DanglingReference, ProcessReport};
use crate::store::{Store, StoreError};
use crate::value::ValueType;

/// Which identities a processing run covers, and whether access is re-examined for all.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// Every identity; access only where attributes changed.
    Scheduled,
    /// Chosen identities; access re-examined for each (e.g. after a role change).
    Chosen(&'a [IdentityId]),
}

impl<S: Store> Engine<S> {
    /// Scheduled processing at `now`: recomputes the computed attributes of every
    /// identity (e.g. a lifecycle state from hire and termination dates), re-examines
    /// role grants of those whose attributes changed, and reports unresolved references.
    pub fn process(&mut self, now: DateTime<Utc>) -> Result<ProcessReport, StoreError> {
        self.run_processing(Scope::Scheduled, now, true)
    }

    /// What [`Engine::process`] would change, without changing anything.
    pub fn preview_process(&mut self, now: DateTime<Utc>) -> Result<ProcessReport, StoreError> {
        self.run_processing(Scope::Scheduled, now, false)
    }

    /// Manual processing of chosen identities (for instance after a configuration
    /// change): computed attributes and role grants are recomputed for each of them.
    /// Unknown ids are ignored.
    pub fn process_identities(&mut self, ids: &[IdentityId], now: DateTime<Utc>) -> Result<ProcessReport, StoreError> {
        self.run_processing(Scope::Chosen(ids), now, true)
    }

    /// What [`Engine::process_identities`] would change, without changing anything.
    pub fn preview_process_identities(
        &mut self,
        ids: &[IdentityId],
        now: DateTime<Utc>,
    ) -> Result<ProcessReport, StoreError> {
        self.run_processing(Scope::Chosen(ids), now, false)
    }

    /// The identity a reference attribute points to: the one identity whose `match`
    /// attribute holds the reference's raw value. `None` when empty or unresolved (or
    /// when several identities match).
    pub fn resolve_reference(&self, identity: IdentityId, attribute: &str) -> Result<Option<IdentityId>, StoreError> {
        let Some(record) = self.store.identity(identity)? else {
            return Ok(None);
        };
        let Some(target) = self
            .config
            .identity
            .attributes
            .get(attribute)
            .and_then(|a| a.match_attribute.clone())
        else {
            return Ok(None);
        };
        let exact = self.config.identity_case_exact(&target);
        let Some(raw) = record.value(attribute).scalars().first() else {
            return Ok(None);
        };
        let found = self.store.find_identities(&target, &raw.match_key(exact))?;
        Ok(match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
    }

    fn run_processing(
        &mut self,
        scope: Scope<'_>,
        now: DateTime<Utc>,
        apply: bool,
    ) -> Result<ProcessReport, StoreError> {
        let ids: Vec<IdentityId> = match scope {
            Scope::Scheduled => {
                let mut all = Vec::new();
                self.store.visit_identities(&mut |i| all.push(i.id))?;
                all
            }
            Scope::Chosen(ids) => ids.to_vec(),
        };
        let mut report = ProcessReport {
            applied: apply,
            ..ProcessReport::default()
        };
        let mut changed = Vec::new();
        for id in ids {
            let Some(mut identity) = self.store.identity(id)? else {
                continue;
            };
            report.examined += 1;
            let before_access = identity.access.clone();
            let attributes_changed = recompute_attributes(&self.config, &mut identity, now, &mut report);
            if attributes_changed || matches!(scope, Scope::Chosen(_)) {
                recompute_access(&self.config, &mut identity, now, &mut report);
            }
            let scope_changed = recompute_scope(&self.config, &mut identity, now, &mut report);
            self.dangling_references(&identity, &mut report)?;
            if attributes_changed || scope_changed || identity.access != before_access {
                report.changed.push(identity.id);
                changed.push(identity);
            }
        }
        if apply && !changed.is_empty() {
            self.store.begin()?;
            match self.store.put_identities(changed) {
                Ok(()) => self.store.commit()?,
                Err(e) => {
                    self.store.rollback();
                    return Err(e);
                }
            }
        }
        Ok(report)
    }

    /// Event-based processing of an identity that just changed: computed attributes,
    /// role grants, then scope membership.
    pub(crate) fn after_change(&self, identity: &mut Identity, now: DateTime<Utc>, report: &mut ProcessReport) {
        recompute_attributes(&self.config, identity, now, report);
        recompute_access(&self.config, identity, now, report);
        recompute_scope(&self.config, identity, now, report);
    }

    fn dangling_references(&self, identity: &Identity, report: &mut ProcessReport) -> Result<(), StoreError> {
        for (name, decl) in &self.config.identity.attributes {
            if decl.value_type != ValueType::Reference {
                continue;
            }
            let Some(target) = &decl.match_attribute else { continue };
            let exact = self.config.identity_case_exact(target);
            for raw in identity.value(name).scalars() {
                if self.store.find_identities(target, &raw.match_key(exact))?.is_empty() {
                    report.dangling.push(DanglingReference {
                        identity: identity.id,
                        attribute: name.clone().into(),
                        value: raw.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}
