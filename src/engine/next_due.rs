//! The next due time (SPEC 13): when scheduled processing next changes something, or a
//! deprovisioning delete falls due, and for which identities.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::model::{Identity, IdentityId};
use crate::processing::{ProcessReport, ProcessingError};
use crate::schedule::first_change;
use crate::store::{Store, StoreError};

/// When time next changes something (see [`Engine::next_due`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
#[non_exhaustive]
pub struct NextDue {
    /// The earliest whole second after `now` at which something falls due; `None` when
    /// nothing stored depends on time.
    pub at: Option<DateTime<Utc>>,
    /// The identities due then, by id.
    pub identities: Vec<IdentityId>,
    /// Evaluation errors met on the way (as processing reports them); the identities
    /// concerned keep their stored values.
    pub errors: Vec<ProcessingError>,
}

/// The whole second at or after `t`.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if whole < t {
        whole + TimeDelta::seconds(1)
    } else {
        whole
    }
}

impl<S: Store> Engine<S> {
    /// The next due time (SPEC 13): the earliest whole second after `now` at which
    /// scheduled processing ([`Engine::process`]) would give a different result for
    /// some identity given the state stored now (a computed attribute, scope
    /// membership, the role grants of an identity whose attributes change), or at which
    /// a deprovisioning `delete` falls due, with the identities due then. A host that
    /// schedules `process` (and its outbound plans) at each next due time applies every
    /// time-based change when it happens.
    ///
    /// Exact, not sampled: time is searched by bisection with a proof (an interval
    /// evaluation of the transforms) that nothing changes on the intervals skipped. A
    /// transform the proof cannot follow (time read through text functions, say) is
    /// searched to the second within a budget per identity; past it the identity is
    /// reported due early, never late. If the stored state is already behind (processing
    /// at the next second would change it), that second is due.
    pub fn next_due(&self, now: DateTime<Utc>) -> Result<NextDue, StoreError> {
        let start = ceil_second(now + TimeDelta::microseconds(1));
        // Values are dates of the years 0000-9999: nothing falls due after them.
        let horizon = NaiveDate::from_ymd_opt(10_000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(start, |t| t.and_utc());
        let config = &self.config;
        let timed = config
            .identity
            .attributes
            .values()
            .filter_map(|a| a.computed.as_ref())
            .chain(config.systems.values().filter_map(|s| s.scope.as_ref()))
            .any(crate::transform::Transform::uses_now);
        let deletes = config
            .systems
            .values()
            .any(|s| s.deprovisioning.as_ref().is_some_and(|d| d.delete_after().is_some()));
        let mut due = NextDue {
            at: None,
            identities: Vec::new(),
            errors: Vec::new(),
        };
        if !timed && !deletes {
            return Ok(due);
        }
        let mut failure: Option<StoreError> = None;
        let offer = |due: &mut NextDue, id: IdentityId, at: DateTime<Utc>| match due.at {
            Some(best) if at > best => {}
            Some(best) if at == best => {
                if due.identities.last() != Some(&id) {
                    due.identities.push(id);
                }
            }
            _ => {
                due.at = Some(at);
                due.identities = vec![id];
            }
        };
        self.store.visit_identities(&mut |identity: &Identity| {
            if failure.is_some() {
                return;
            }
            // Only what falls due no later than the best found so far is searched.
            let until = due.at.map_or(horizon, |best| best + TimeDelta::seconds(1));
            if timed {
                let mut report = ProcessReport::default();
                let first = first_change(config, identity, start, until, &mut report);
                due.errors.append(&mut report.errors);
                if let Some(at) = first {
                    offer(&mut due, identity.id, at);
                }
            }
            for (system, left) in &identity.out_of_scope {
                let Some(settings) = config.system(system).and_then(|s| s.deprovisioning.as_ref()) else {
                    continue;
                };
                let Some(after) = settings.delete_after() else { continue };
                let at = ceil_second(*left + after).max(start);
                if at > due.at.unwrap_or(horizon) {
                    continue;
                }
                // Only an account the engine may delete falls due.
                let eligible = (|| {
                    for (s, key) in self.store.accounts_of(identity.id)? {
                        if s == system.as_str() {
                            if let Some(account) = self.store.account(&s, &key)? {
                                if account.provisioned || settings.delete_unowned {
                                    return Ok(true);
                                }
                            }
                        }
                    }
                    Ok::<bool, StoreError>(false)
                })();
                match eligible {
                    Ok(true) if ceil_second(*left + after) > now => offer(&mut due, identity.id, at),
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        due.identities.sort_unstable();
        due.identities.dedup();
        Ok(due)
    }
}
