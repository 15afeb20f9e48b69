//! The direct first load: a first load whose inbound rules copy account values into
//! identity attributes as they are is lent to the store as rows
//! ([`Store::put_loaded`]), without an `Account`, an `Identity`, a candidate per value
//! or a resolution round per identity.
//!
//! It applies when resolution and processing could not do anything but copy: the
//! system is authoritative (every account projects its own identity; nothing is stored
//! to correlate with, see `is_first_load`), no attribute is multi-valued, each enabled
//! inbound rule reads a schema attribute without a transform into an identity
//! attribute of a type its values already have, one rule per identity attribute, with
//! a create score above 0 (each value is then applied: the identity is empty), and no
//! identity attribute is computed, no role, lifecycle or scope is configured (the
//! processing of a new identity changes nothing). Everything else about the import
//! (reports, decisions, observer calls, the store's contents) is what the general path
//! gives; a property test compares both.

use std::ops::Range;

use chrono::{DateTime, Utc};

use crate::config::SystemConfig;
use crate::diff::{AccountChange, ImportPlan};
use crate::engine::import::{first_load_part, Deferred, IdentityOutcome};
use crate::engine::{Engine, LinkEvent};
use crate::model::LinkState;
use crate::observe::{DecisionLog, Stage};
use crate::processing::ProcessReport;
use crate::resolution::{Decision, Outcome, WriteKind};
use crate::store::{LoadedFlow, LoadedPart, LoadedRow, Store, StoreError};
use crate::text::Text;
use crate::validate::ValidatedConfig;
use crate::value::{Value, ValueType};

#[cfg(test)]
thread_local! {
    /// Takes the general path for every first load (tests compare both ways).
    pub(crate) static NO_DIRECT_LOAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many rows of a direct load are built and written at once: two parts are in
/// memory at a time (one built while the other is written); 8k rows rather than 16k
/// took 64 MiB off the peak and the RSS after a 1M load.
const DIRECT_LOAD_PART: usize = 8 * 1024;

/// What a direct load of one system needs, worked out once per import.
pub(crate) struct DirectLoad {
    /// The schema's attribute names, in schema order.
    names: Vec<Text>,
    /// Schema positions in attribute name order.
    by_name: Vec<usize>,
    /// The enabled inbound rules, in identity attribute name order.
    targets: Vec<Target>,
}

struct Target {
    /// The schema position of the account attribute read.
    schema: usize,
    /// The identity attribute written.
    attribute: Text,
    /// The rule's position in `flows`.
    rule: usize,
    /// Its create score.
    strength: u8,
}

impl DirectLoad {
    /// The direct load of `system`, when its configuration allows one (see the module).
    pub(crate) fn of(config: &ValidatedConfig, system: &SystemConfig) -> Option<DirectLoad> {
        #[cfg(test)]
        if NO_DIRECT_LOAD.get() {
            return None;
        }
        let plain = system.authoritative
            && config.roles.is_empty()
            && config.lifecycle.is_none()
            && config.systems.values().all(|s| s.scope.is_none())
            && config.identity.attributes.values().all(|a| a.computed.is_none())
            && system.schema.attributes.values().all(|a| !a.multi);
        if !plain {
            return None;
        }
        let mut targets = Vec::new();
        for (index, rule) in system.inbound_rules() {
            // A rule into an undeclared attribute offers nothing (as in the general path).
            let Some((attribute, declared)) = config.identity.attributes.get_key_value(rule.identity.as_str()) else {
                continue;
            };
            let (schema, _, read) = system.schema.attributes.get_full(rule.account.as_str())?;
            let text = |t: ValueType| matches!(t, ValueType::String | ValueType::Reference);
            let same_type =
                read.value_type == declared.value_type || (text(read.value_type) && text(declared.value_type));
            let strength = u8::try_from(rule.create.clamp(0, 100)).ok()?;
            if rule.transform_in.is_some() || declared.multi || !same_type || strength == 0 {
                return None;
            }
            targets.push(Target {
                schema,
                attribute: attribute.clone(),
                rule: index,
                strength,
            });
        }
        targets.sort_by(|a, b| a.attribute.cmp(&b.attribute));
        if targets.windows(2).any(|w| w[0].attribute == w[1].attribute) {
            return None;
        }
        let names: Vec<Text> = system.schema.attributes.keys().cloned().collect();
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&a, &b| names[a].cmp(&names[b]));
        Some(DirectLoad {
            names,
            by_name,
            targets,
        })
    }

    /// The schema position of `name`, looked for from `from` on (an insert's
    /// attributes name the schema's own shared names, in schema order), else by name.
    fn position(&self, name: &Text, from: usize, system: &SystemConfig) -> Option<usize> {
        match self.names.get(from..)?.iter().position(|n| n.is_same(name)) {
            Some(offset) => Some(from + offset),
            None => system.schema.attributes.get_index_of(name.as_str()),
        }
    }
}

/// A part of a direct load, built: its changes (filled) and each row's account values
/// (name order) and identity flows, in flat lists.
struct Built<'c> {
    /// The part's position in the load's changes.
    first: usize,
    changes: &'c mut [AccountChange],
    values: Vec<(Text, Value)>,
    flows: Vec<LoadedFlow>,
    /// Per flow: the position of its rule in `flows` of the system.
    rules: Vec<usize>,
    /// Per change: its values and its flows in the lists above.
    rows: Vec<(Range<usize>, Range<usize>)>,
}

impl DirectLoad {
    /// Fills the part's changes and builds its rows: the pure half of a part's work
    /// (it may run in a second thread while the part before is written).
    fn build<'c>(
        &self,
        system: &SystemConfig,
        first: usize,
        changes: &'c mut [AccountChange],
        deferred: &mut Deferred<'_, '_>,
    ) -> Built<'c> {
        let schema = self.names.len();
        // Per schema position: where the value is among the change's attributes, then
        // among the row's values.
        let mut in_change: Vec<Option<usize>> = vec![None; schema];
        let mut in_row: Vec<Option<usize>> = vec![None; schema];
        let mut values: Vec<(Text, Value)> = Vec::with_capacity(changes.len() * schema);
        let mut flows: Vec<LoadedFlow> = Vec::with_capacity(changes.len() * self.targets.len());
        let mut rules: Vec<usize> = Vec::with_capacity(flows.capacity());
        let mut rows = Vec::with_capacity(changes.len());
        for (offset, change) in changes.iter_mut().enumerate() {
            deferred.fill(first + offset, change);
            in_change.fill(None);
            in_row.fill(None);
            let mut from = 0;
            for (index, c) in change.attributes.iter().enumerate() {
                if c.new.is_empty() {
                    continue;
                }
                if let Some(position) = self.position(&c.attribute, from, system) {
                    if let Some(slot) = in_change.get_mut(position) {
                        *slot = Some(index);
                    }
                    from = position + 1;
                }
            }
            let row_values = values.len();
            for &position in &self.by_name {
                let Some(Some(index)) = in_change.get(position) else {
                    continue;
                };
                let (Some(name), Some(c)) = (self.names.get(position), change.attributes.get(*index)) else {
                    continue;
                };
                if let Some(slot) = in_row.get_mut(position) {
                    *slot = Some(values.len() - row_values);
                }
                values.push((name.clone(), c.new.clone()));
            }
            let row_flows = flows.len();
            for target in &self.targets {
                let Some(Some(value)) = in_row.get(target.schema) else {
                    continue;
                };
                flows.push(LoadedFlow {
                    attribute: target.attribute.clone(),
                    value: *value,
                    strength: target.strength,
                });
                rules.push(target.rule);
            }
            rows.push((row_values..values.len(), row_flows..flows.len()));
        }
        Built {
            first,
            changes,
            values,
            flows,
            rules,
            rows,
        }
    }
}

/// A built row's account values and the flows of its identity.
type RowPart<'b> = (&'b [(Text, Value)], &'b [LoadedFlow]);

impl<S: Store> Engine<S> {
    /// Applies a first load as a direct load when [`DirectLoad::of`] allows one (`None`
    /// otherwise: nothing was done), a part at a time (as `apply_first_load`): each row's
    /// account values and the flows of its new identity are lent to
    /// [`Store::put_loaded`]. With the `parallel` feature, a part is built while the one
    /// before it is written (`parallel::pipeline`).
    pub(crate) fn apply_direct_load(
        &mut self,
        plan: &mut ImportPlan,
        system: &SystemConfig,
        log: &mut DecisionLog<'_, '_>,
        deferred: &mut Deferred<'_, '_>,
    ) -> Result<Option<IdentityOutcome>, StoreError> {
        let Some(direct) = DirectLoad::of(&self.config, system) else {
            return Ok(None);
        };
        let system_name = self
            .config
            .systems
            .get_key_value(plan.system.as_str())
            .map_or_else(|| Text::from(plan.system.as_str()), |(k, _)| k.clone());
        let at = plan.at;
        let total = plan.changes.len() as u64;
        let part = first_load_part().min(DIRECT_LOAD_PART);
        let mut outcome = IdentityOutcome {
            // A part's links when an observer takes them (each part hands its own).
            links: Vec::with_capacity(if log.streams_links() { part } else { plan.changes.len() }),
            processing: ProcessReport {
                applied: true,
                ..ProcessReport::default()
            },
            changed: Vec::with_capacity(plan.changes.len()),
        };
        let parts = plan
            .changes
            .chunks_mut(part)
            .enumerate()
            .map(|(number, changes)| (number * part, changes));
        crate::parallel::pipeline(
            total as usize,
            parts,
            deferred,
            |(first, changes), deferred| direct.build(system, first, changes, deferred),
            |built| self.write_direct_part(&system_name, at, total, built, log, &mut outcome),
        )?;
        Ok(Some(outcome))
    }

    /// The calling thread's half of a part's work: the identities' ids, decisions,
    /// links and observer calls, and the part lent to the store.
    fn write_direct_part(
        &mut self,
        system_name: &Text,
        at: DateTime<Utc>,
        total: u64,
        built: Built<'_>,
        log: &mut DecisionLog<'_, '_>,
        outcome: &mut IdentityOutcome,
    ) -> Result<(), StoreError> {
        let Built {
            first,
            changes,
            values,
            flows,
            rules,
            rows,
        } = built;
        let before = first as u64;
        let streams = log.streams_changes();
        let decisions = log.wants_applied();
        let ids = self.store.allocate_identity_ids(changes.len())?;
        if ids.len() != changes.len() {
            return Err(StoreError::new(format!(
                "allocate_identity_ids: {} ids for {} rows",
                ids.len(),
                changes.len()
            )));
        }
        // Each row's values and flows (`None`: a row the build left out of range, which
        // takes no part), found once for the three passes below.
        let parts: Vec<Option<RowPart<'_>>> = rows
            .iter()
            .map(|(row_values, row_flows)| Some((values.get(row_values.clone())?, flows.get(row_flows.clone())?)))
            .collect();
        for (offset, (((change, (_, row_flows)), &identity), part)) in
            changes.iter_mut().zip(&rows).zip(&ids).zip(&parts).enumerate()
        {
            log.progress(Stage::Apply, before + offset as u64, total);
            let Some((values, flows)) = *part else {
                continue;
            };
            for (flow, rule) in flows.iter().zip(rules.get(row_flows.clone()).unwrap_or_default()) {
                if decisions {
                    let offered = values.get(flow.value).map(|(_, v)| v.clone()).unwrap_or_default();
                    let rule = *rule;
                    log.record(Decision {
                        identity,
                        attribute: flow.attribute.to_string(),
                        system: system_name.to_string(),
                        account: change.key.clone(),
                        rule,
                        kind: WriteKind::Create,
                        offered,
                        previous: Value::Empty,
                        score: flow.strength,
                        incumbent: None,
                        outcome: Outcome::Applied,
                        at,
                        outranked_by: None,
                        error: None,
                    });
                } else {
                    log.applied_unbuilt();
                }
            }
            if !flows.is_empty() {
                outcome.processing.examined += 1;
            }
            outcome.changed.push(identity);
        }
        log.progress(Stage::Apply, before + changes.len() as u64, total);
        let lent: Vec<LoadedRow<'_>> = changes
            .iter()
            .zip(&ids)
            .zip(&parts)
            .filter_map(|((change, &identity), part)| {
                let (values, flows) = (*part)?;
                Some(LoadedRow {
                    key: change.key.as_str(),
                    identity,
                    values,
                    flows,
                })
            })
            .collect();
        log.progress(Stage::Resolve, before, total);
        self.store.put_loaded(&LoadedPart {
            system: system_name,
            at,
            rows: &lent,
        })?;
        log.progress(Stage::Resolve, before + changes.len() as u64, total);
        for ((change, &identity), part) in changes.iter_mut().zip(&ids).zip(&parts) {
            if streams {
                log.change(change);
                // Handed to the observer; the store has the values.
                change.attributes = Vec::new();
            }
            if part.is_none() {
                continue;
            }
            // With changes streamed, the report's plan keeps none (see
            // `Observer::on_change`): the key moves into the link, not copied.
            let account = if streams {
                std::mem::take(&mut change.key)
            } else {
                change.key.clone()
            };
            outcome.links.push(LinkEvent {
                account,
                state: LinkState::Linked(identity),
                projected: true,
            });
        }
        log.hand_links(&mut outcome.links);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    use super::NO_DIRECT_LOAD;
    use crate::diff::AccountChange;
    use crate::engine::Engine;
    use crate::observe::Observer;
    use crate::store::{MemoryStore, Store};
    use crate::{Snapshot, ValidatedConfig};

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).single().unwrap_or_default()
    }

    /// A configuration a direct load applies to: rules of different create scores, one
    /// into a reference, correlation on `mail` (indexed), an attribute no rule reads.
    /// `typed`: `hired` is a date flowing into a date.
    fn config(create: i64) -> Result<ValidatedConfig, String> {
        ValidatedConfig::from_json(
            &json!({
                "identity": { "attributes": {
                    "employeeNumber": { "type": "string" }, "mail": { "type": "string", "case_exact": false },
                    "title": { "type": "string" }, "manager": { "type": "reference", "match": "employeeNumber" },
                    "hired": { "type": "date" }, "unused": { "type": "string" }
                } },
                "systems": {
                    "hr": {
                        "schema": { "account_id": "id", "account_name": "id", "attributes": {
                            "id": { "type": "string" }, "mail": { "type": "string", "case_exact": false },
                            "title": { "type": "string" }, "boss": { "type": "string" },
                            "hired": { "type": "date" }, "note": { "type": "string" }
                        } },
                        "authoritative": true,
                        "correlation": [ [ { "account": "mail", "identity": "mail" } ] ],
                        "flows": [
                            { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                            { "account": "mail", "identity": "mail", "direction": "inbound", "create": create, "update": 90 },
                            { "account": "title", "identity": "title", "direction": "inbound", "create": 50, "update": 50 },
                            { "account": "boss", "identity": "manager", "direction": "inbound", "create": 50, "update": 50 },
                            { "account": "hired", "identity": "hired", "direction": "inbound", "create": 100, "update": 100 }
                        ]
                    }
                }
            })
            .to_string(),
        )
        .map_err(|e| e.to_string())
    }

    /// A complete export of `rows` (mail, title, day) as account `E{index}`s.
    fn snapshot(rows: &[(u8, u8, u8)]) -> Result<Snapshot, String> {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, &(mail, title, day))| {
                let mut row = json!({ "id": format!("E{i}"), "title": format!("T{}", title % 4) });
                if mail % 5 != 0 {
                    row["mail"] = json!(format!("M{}@x", mail % 7));
                }
                if day % 3 != 0 {
                    row["hired"] = json!(format!("2020-01-{:02}", day % 28 + 1));
                    row["boss"] = json!(format!("E{}", day % 4));
                }
                if title % 3 == 0 {
                    row["note"] = json!("");
                }
                row
            })
            .collect();
        serde_json::from_value(
            json!({ "mode": "complete", "columns": ["id", "mail", "title", "boss", "hired", "note"], "rows": rows }),
        )
        .map_err(|e| e.to_string())
    }

    /// The store after a first load, the report and what the observer saw (changes,
    /// decisions and, when `links`, link events streamed), and the link events: those
    /// streamed, or else the report's.
    fn load(
        rows: &[(u8, u8, u8)],
        create: i64,
        changes: bool,
        decisions: bool,
        links: bool,
    ) -> (MemoryStore, String, Vec<String>) {
        let config = match config(create) {
            Ok(config) => config,
            Err(e) => return (MemoryStore::new(), e, Vec::new()),
        };
        let mut engine = Engine::new(config);
        let snapshot = match snapshot(rows) {
            Ok(snapshot) => snapshot,
            Err(e) => return (MemoryStore::new(), e, Vec::new()),
        };
        let mut seen = Vec::new();
        let mut decided = Vec::new();
        let mut linked = Vec::new();
        let report = {
            let mut on_change = |c: &AccountChange| seen.push(format!("{c:?}"));
            let mut on_decision = |d: &crate::Decision| decided.push(format!("{d:?}"));
            let mut on_link = |l: &crate::LinkEvent| linked.push(format!("{l:?}"));
            let mut observer = Observer::new();
            if changes {
                observer = observer.on_change(&mut on_change);
            }
            if decisions {
                observer = observer.on_decision(&mut on_decision);
            }
            if links {
                observer = observer.on_link(&mut on_link);
            }
            engine.import_observed("hr", &snapshot, at(1), &mut observer)
        };
        let shown = format!("{report:?}\nchanges {seen:?}\ndecisions {decided:?}\nlinks {linked:?}");
        if !links {
            if let Ok(report) = &report {
                linked = report.links.iter().map(|l| format!("{l:?}")).collect();
            }
        }
        (engine.store().clone(), shown, linked)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A direct load leaves the store, the report and the observer's view that the
        /// general path gives.
        #[test]
        fn a_direct_load_is_the_general_load(
            rows in proptest::collection::vec((0u8..20, 0u8..8, 0u8..40), 1..40),
            part in 1usize..7,
            create in proptest::sample::select(vec![90i64, 100]),
            changes in proptest::bool::ANY,
            decisions in proptest::bool::ANY,
            links in proptest::bool::ANY,
        ) {
            super::super::import::FORCED_BATCH.set(Some(part));
            NO_DIRECT_LOAD.set(true);
            let (general, general_report, general_links) = load(&rows, create, changes, decisions, links);
            // The links an observer takes are those a report keeps without one.
            let (_, _, kept_links) = load(&rows, create, changes, decisions, !links);
            NO_DIRECT_LOAD.set(false);
            let (direct, direct_report, direct_links) =
                crate::parallel::with_threads(1, || load(&rows, create, changes, decisions, links));
            // Each part built in a second thread while the one before is written.
            let (overlapped, overlapped_report, _) =
                crate::parallel::with_threads(2, || load(&rows, create, changes, decisions, links));
            super::super::import::FORCED_BATCH.set(None);
            proptest::prop_assert_eq!(general_links.len(), rows.len());
            proptest::prop_assert_eq!(&general_links, &kept_links);
            proptest::prop_assert_eq!(&direct_links, &general_links);
            proptest::prop_assert!(!links || general_report.contains("links: []"), "{}", general_report);
            proptest::prop_assert!(general_report.starts_with("Ok(ImportReport"), "{}", general_report);
            proptest::prop_assert!(general.identity_count().unwrap_or(0) == rows.len());
            proptest::prop_assert_eq!(&direct_report, &general_report);
            proptest::prop_assert_eq!(&direct, &general);
            proptest::prop_assert_eq!(overlapped_report, general_report);
            proptest::prop_assert_eq!(overlapped, general);
        }
    }

    /// The store after a first load of `rows` (direct or not) and complete imports of
    /// each of `later` (updated, deleted and inserted accounts), with every report
    /// (with `links`, its link events are those an observer took: the report's own
    /// must be empty).
    fn load_then_import(
        rows: &[(u8, u8, u8)],
        later: &[Vec<(u8, u8, u8)>],
        direct: bool,
        links: bool,
    ) -> (MemoryStore, String) {
        let config = match config(90) {
            Ok(config) => config,
            Err(e) => return (MemoryStore::new(), e),
        };
        let mut engine = Engine::new(config);
        NO_DIRECT_LOAD.set(!direct);
        let mut shown = Vec::new();
        for (day, rows) in std::iter::once(rows).chain(later.iter().map(Vec::as_slice)).enumerate() {
            let mut linked = Vec::new();
            let mut on_link = |l: &crate::LinkEvent| linked.push(l.clone());
            let mut observer = Observer::new();
            if links {
                observer = observer.on_link(&mut on_link);
            }
            let report = snapshot(rows)
                .map(|snapshot| engine.import_observed("hr", &snapshot, at(day as u32 + 1), &mut observer));
            let report = report.map(|r| {
                r.map(|mut r| {
                    if links {
                        assert!(r.links.is_empty(), "links taken by the observer are not kept");
                        r.links = std::mem::take(&mut linked);
                    }
                    r
                })
            });
            shown.push(format!("{report:?}"));
        }
        NO_DIRECT_LOAD.set(false);
        (engine.store().clone(), shown.join("\n"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Imports after a direct load (whose identities the memory store keeps shaped,
        /// reading their values from their accounts) leave what they leave after the
        /// general load: the same store and reports.
        #[test]
        fn imports_after_a_direct_load_are_those_after_the_general_load(
            rows in proptest::collection::vec((0u8..20, 0u8..8, 0u8..40), 1..24),
            later in proptest::collection::vec(proptest::collection::vec((0u8..20, 0u8..8, 0u8..40), 0..28), 1..3),
        ) {
            let (general, general_reports) = load_then_import(&rows, &later, false, false);
            let (direct, direct_reports) = load_then_import(&rows, &later, true, false);
            // Streamed link events are those the reports keep otherwise.
            let (_, streamed_reports) = load_then_import(&rows, &later, true, true);
            proptest::prop_assert_eq!(&streamed_reports, &general_reports);
            proptest::prop_assert_eq!(direct_reports, general_reports);
            proptest::prop_assert_eq!(direct, general);
        }
    }

    #[test]
    fn only_configurations_that_copy_values_load_directly() {
        let Ok(copying) = config(90) else {
            panic!("the test's configuration validates");
        };
        let Some(hr) = copying.systems.get("hr") else {
            panic!("hr is configured");
        };
        assert!(super::DirectLoad::of(&copying, hr).is_some());
        // A zero create score rejects values: resolution has work to do.
        let Ok(zero) = config(0) else {
            panic!("the test's configuration validates");
        };
        let Some(hr) = zero.systems.get("hr") else {
            panic!("hr is configured");
        };
        assert!(super::DirectLoad::of(&zero, hr).is_none());
    }
}
