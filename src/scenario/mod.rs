//! Scenario files (`attrflow-scenario/1`, see `SCENARIOS.md` of the project): a
//! configuration, then steps with expectations. This module parses and runs them on an
//! in-memory engine; it reads no files itself (the `scenario` example does).

mod check;
mod format;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub use format::{Expect, ImportStep, Scenario, Step};

use crate::config::Config;
use crate::engine::{Approval, Engine, ImportReport};
use crate::error::{ConfigChangeError, ImportError};
use crate::model::IdentityId;
use crate::outbound::{Op, OutboundPlan};
use crate::store::{PlanId, Store};
use crate::thresholds::Counts;
use crate::validate::ValidatedConfig;

/// The format tag every scenario file carries.
pub const FORMAT: &str = "attrflow-scenario/1";

/// One unmet expectation or step problem.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The step's index (0-based); `None` for problems with the file itself.
    pub step: Option<usize>,
    /// What was checked, e.g. `identities.employeeNumber=E1.phone`.
    pub path: String,
    /// What the file expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(i) => write!(f, "steps[{i}]: ")?,
            None => write!(f, "file: ")?,
        }
        write!(f, "{}: expected {}, actual {}", self.path, self.expected, self.actual)
    }
}

/// The result of running one scenario: every failure (none means it passed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Report {
    /// The scenario's name, when the file got that far.
    pub name: Option<String>,
    /// Every failure.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether every expectation was met.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn file_problem(name: Option<String>, path: &str, message: String) -> Report {
        Report {
            name,
            failures: vec![Failure {
                step: None,
                path: path.to_owned(),
                expected: "a valid scenario".into(),
                actual: message,
            }],
        }
    }
}

/// Parses and runs a scenario file's text. Never panics: a malformed file or an invalid
/// configuration is reported as a failure.
pub fn run_text(text: &str) -> Report {
    match serde_json::from_str::<Scenario>(text) {
        Ok(scenario) => run(&scenario),
        Err(e) => Report::file_problem(None, "json", format!("line {}, column {}: {e}", e.line(), e.column())),
    }
}

/// Runs a parsed scenario on a new in-memory store.
pub fn run(scenario: &Scenario) -> Report {
    run_with_store(scenario, crate::store::MemoryStore::new())
}

/// Parses and runs a scenario file's text on the given (empty) store.
pub fn run_text_with_store<S: Store>(text: &str, store: S) -> Report {
    match serde_json::from_str::<Scenario>(text) {
        Ok(scenario) => run_with_store(&scenario, store),
        Err(e) => Report::file_problem(None, "json", format!("line {}, column {}: {e}", e.line(), e.column())),
    }
}

/// Runs a parsed scenario on the given (empty) store.
pub fn run_with_store<S: Store>(scenario: &Scenario, store: S) -> Report {
    let name = Some(scenario.name.clone());
    if scenario.format != FORMAT {
        return Report::file_problem(name, "format", format!("`{}` is not `{FORMAT}`", scenario.format));
    }
    let config = match parse_config(&scenario.config) {
        Ok(c) => c,
        Err(errors) => return Report::file_problem(name, "config", errors.join("; ")),
    };
    let engine = match Engine::with_store(config, store) {
        Ok(e) => e,
        Err(e) => return Report::file_problem(name, "store", e.to_string()),
    };
    let mut runner = Runner {
        engine,
        confirm_on_approve: HashMap::new(),
        failures: Vec::new(),
    };
    let mut last_at: Option<DateTime<Utc>> = None;
    for (index, step) in scenario.steps.iter().enumerate() {
        if last_at.is_some_and(|t| step.at < t) {
            runner.fail(index, "at", "times that never decrease".into(), step.at.to_rfc3339());
        }
        last_at = Some(step.at);
        runner.step(index, step);
    }
    Report {
        name,
        failures: runner.failures,
    }
}

/// Parses and validates a configuration given as JSON; `Err` holds every message.
fn parse_config(json: &serde_json::Value) -> Result<ValidatedConfig, Vec<String>> {
    let config: Config =
        serde_json::from_value(json.clone()).map_err(|e| vec![format!("the configuration does not parse: {e}")])?;
    config
        .validate()
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
}

/// What one step did, for the step-scoped expectations.
#[derive(Debug, Default)]
pub(crate) struct StepOutcome {
    pub(crate) counts: Counts,
    pub(crate) exceeded: Vec<String>,
    pub(crate) errors: Vec<(String, Option<String>)>,
    pub(crate) rejected: Vec<(IdentityId, String, String, String)>,
    pub(crate) plan: Vec<Op>,
    /// The identities the step changed (SPEC 10.1).
    pub(crate) changed: Vec<IdentityId>,
    /// `(system, identity, reason)` of what outbound plans skipped.
    pub(crate) skipped: Vec<(String, IdentityId, String)>,
    /// `(kind, columns)` of an import's diagnosis.
    pub(crate) diagnosis: Vec<(String, Vec<String>)>,
    /// `(identity, attribute, new value)` a configuration preview reports.
    pub(crate) preview: Vec<(IdentityId, String, crate::value::Value)>,
    /// The step's time (`next_due` is asked at it).
    pub(crate) at: DateTime<Utc>,
}

impl StepOutcome {
    fn from_import(report: &ImportReport) -> StepOutcome {
        StepOutcome {
            counts: report.plan.counts,
            exceeded: report.plan.exceeded.iter().map(|e| e.threshold.clone()).collect(),
            errors: report
                .plan
                .rejections
                .iter()
                .map(|r| (r.reason.as_str().to_owned(), r.key.clone()))
                .collect(),
            rejected: report
                .rejected
                .iter()
                .map(|d| {
                    let reason = d.reason().map_or("", |r| r.as_str()).to_owned();
                    (d.identity, d.attribute.clone(), d.system.clone(), reason)
                })
                .collect(),
            plan: Vec::new(),
            changed: report.changed.clone(),
            skipped: Vec::new(),
            diagnosis: report
                .plan
                .diagnosis
                .iter()
                .map(|d| (d.kind.as_str().to_owned(), d.columns.clone()))
                .collect(),
            preview: Vec::new(),
            at: report.plan.at,
        }
    }

    /// Adds what another plan of the same step did (a sync step has one per system).
    fn merge(&mut self, other: StepOutcome) {
        let (a, b) = (&mut self.counts, other.counts);
        a.inserted += b.inserted;
        a.updated += b.updated;
        a.deleted += b.deleted;
        a.link_inserted += b.link_inserted;
        a.link_updated += b.link_updated;
        a.link_deleted += b.link_deleted;
        self.exceeded.extend(other.exceeded);
        self.errors.extend(other.errors);
        self.rejected.extend(other.rejected);
        self.plan.extend(other.plan);
        self.changed.extend(other.changed);
        self.skipped.extend(other.skipped);
        self.diagnosis.extend(other.diagnosis);
        self.preview.extend(other.preview);
    }

    fn error(kind: &str) -> StepOutcome {
        StepOutcome {
            errors: vec![(kind.to_owned(), None)],
            ..StepOutcome::default()
        }
    }
}

struct Runner<S: Store> {
    engine: Engine<S>,
    /// Blocked outbound plans whose step asked for confirmation once approved.
    confirm_on_approve: HashMap<PlanId, bool>,
    failures: Vec<Failure>,
}

impl<S: Store> Runner<S> {
    fn fail(&mut self, step: usize, path: &str, expected: String, actual: String) {
        self.failures.push(Failure {
            step: Some(step),
            path: path.to_owned(),
            expected,
            actual,
        });
    }

    fn step(&mut self, index: usize, step: &Step) {
        let actions = step.actions();
        if actions.len() != 1 {
            self.fail(index, "action", "exactly one action".into(), format!("{actions:?}"));
            return;
        }
        let now = step.at;
        let mut outcome = match self.act(index, step, now) {
            Some(outcome) => outcome,
            None => return,
        };
        outcome.at = now;
        if let Some(expect) = &step.expect {
            let failures = check::check(&self.engine, expect, &outcome);
            for (path, expected, actual) in failures {
                self.fail(index, &path, expected, actual);
            }
        }
    }

    /// Performs the step's action; `None` when the step could not run at all (the
    /// failure is recorded).
    fn act(&mut self, index: usize, step: &Step, now: DateTime<Utc>) -> Option<StepOutcome> {
        if let Some(import) = &step.import {
            let snapshot = match import.snapshot() {
                Ok(s) => s,
                Err(message) => {
                    self.fail(index, "import", "a well-formed import".into(), message);
                    return None;
                }
            };
            return Some(match self.engine.import(&import.system, &snapshot, now) {
                Ok(report) => StepOutcome::from_import(&report),
                Err(ImportError::Columns { problems, .. }) => StepOutcome {
                    errors: problems.iter().map(|p| (p.kind().to_owned(), None)).collect(),
                    ..StepOutcome::default()
                },
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(which) = &step.approve {
            if which != "last" {
                self.fail(index, "approve", "\"last\"".into(), format!("{which:?}"));
                return None;
            }
            return Some(match self.engine.approve_last() {
                Ok(Approval::Import(report)) => StepOutcome::from_import(&report),
                Ok(Approval::Outbound(plan)) => {
                    let confirm = self.confirm_on_approve.remove(&plan.id).unwrap_or(false);
                    self.released(index, plan, confirm, now)
                }
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(out) = &step.outbound {
            let result = match &out.identities {
                None => self.engine.outbound(&out.system, now),
                Some(selectors) => {
                    let ids = self.select_all(index, "outbound.identities", selectors)?;
                    self.engine.outbound_for(&out.system, &ids, now)
                }
            };
            return Some(match result {
                Ok(plan) => self.released(index, plan, out.confirm, now),
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(sync) = &step.sync {
            let id = self.select(index, "sync.identity", &sync.identity)?;
            return Some(match self.engine.sync(id, now) {
                Ok(plans) => {
                    let mut outcome = StepOutcome::default();
                    for plan in plans {
                        let one = self.released(index, plan, sync.confirm, now);
                        outcome.merge(one);
                    }
                    outcome
                }
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(p) = &step.provision {
            let id = self.select(index, "provision.identity", &p.identity)?;
            return Some(match self.engine.provision(&p.system, id, now) {
                Ok(plan) => self.released(index, plan, p.confirm, now),
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(set) = &step.set {
            let id = self.select(index, "set.identity", &set.identity)?;
            let values: Vec<(String, serde_json::Value)> =
                set.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            return Some(match self.engine.set_attributes(id, &values, now) {
                Ok(decisions) => StepOutcome {
                    changed: if decisions.is_empty() { Vec::new() } else { vec![id] },
                    ..StepOutcome::default()
                },
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(config) = &step.config {
            return Some(self.replace_config(config, step.force.unwrap_or(false), now, false));
        }
        if let Some(config) = &step.preview_config {
            return Some(self.replace_config(config, step.force.unwrap_or(false), now, true));
        }
        if let Some(pause) = step.pause {
            if !pause {
                self.fail(index, "pause", "true".into(), "false (use `resume`)".into());
                return None;
            }
            return Some(match self.engine.pause() {
                Ok(()) => StepOutcome::default(),
                Err(_) => StepOutcome::error("store"),
            });
        }
        if let Some(resume) = step.resume {
            if !resume {
                self.fail(index, "resume", "true".into(), "false".into());
                return None;
            }
            return Some(match self.engine.resume() {
                Ok(report) => {
                    let mut outcome = StepOutcome {
                        changed: report.changed.clone(),
                        ..StepOutcome::default()
                    };
                    for import in &report.imports {
                        outcome.rejected.extend(import.rejected.iter().filter_map(|d| {
                            d.reason()
                                .map(|r| (d.identity, d.attribute.clone(), d.system.clone(), r.as_str().to_owned()))
                        }));
                    }
                    outcome
                }
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        if let Some(l) = &step.clear_loop {
            return Some(match self.engine.clear_loop(&l.system, &l.account, &l.attribute) {
                Ok(()) => StepOutcome::default(),
                Err(e) => StepOutcome::error(e.kind()),
            });
        }
        let process = step.process.as_ref()?;
        let result = match &process.identities {
            None => self.engine.process(now),
            Some(selectors) => {
                let ids = self.select_all(index, "process.identities", selectors)?;
                self.engine.process_identities(&ids, now)
            }
        };
        Some(match result {
            Ok(report) => StepOutcome {
                errors: report
                    .errors
                    .iter()
                    .map(|e| (e.kind.clone(), None))
                    .chain(report.dangling.iter().map(|_| ("dangling_reference".to_owned(), None)))
                    .collect(),
                changed: report.changed.clone(),
                ..StepOutcome::default()
            },
            Err(_) => StepOutcome::error("store"),
        })
    }

    /// A `config` step, or with `preview` a `preview_config` step (SPEC 12.2): the same
    /// refusals, and for a preview the new values and every system's plan instead of
    /// a change.
    fn replace_config(
        &mut self,
        json: &serde_json::Value,
        force: bool,
        now: DateTime<Utc>,
        preview: bool,
    ) -> StepOutcome {
        let config: Config = match serde_json::from_value(json.clone()) {
            Ok(c) => c,
            Err(_) => return StepOutcome::error("invalid_config"),
        };
        let validated = match config.validate() {
            Ok(v) => v,
            Err(errors) => {
                return StepOutcome {
                    errors: errors.0.iter().map(|e| (e.kind().as_str().to_owned(), None)).collect(),
                    ..StepOutcome::default()
                }
            }
        };
        let result = if preview {
            self.engine.preview_config(validated, force, now).map(|p| {
                let mut outcome = StepOutcome {
                    preview: p
                        .processing
                        .changes
                        .iter()
                        .map(|c| (c.identity, c.attribute.clone(), c.new.clone()))
                        .collect(),
                    ..StepOutcome::default()
                };
                for plan in &p.plans {
                    outcome.merge(StepOutcome {
                        counts: plan.counts,
                        exceeded: plan.exceeded.iter().map(|e| e.threshold.clone()).collect(),
                        plan: plan.ops.clone(),
                        ..StepOutcome::default()
                    });
                }
                outcome
            })
        } else {
            self.engine
                .replace_config(validated, force, now)
                .map(|change| StepOutcome {
                    changed: change.changed,
                    ..StepOutcome::default()
                })
        };
        match result {
            Ok(outcome) => outcome,
            Err(ConfigChangeError::Refused { problems }) => StepOutcome {
                errors: problems.iter().map(|p| (p.kind().to_owned(), None)).collect(),
                ..StepOutcome::default()
            },
            Err(ConfigChangeError::Invalid(errors)) => StepOutcome {
                errors: errors.0.iter().map(|e| (e.kind().as_str().to_owned(), None)).collect(),
                ..StepOutcome::default()
            },
            Err(ConfigChangeError::Store(_)) => StepOutcome::error("store"),
        }
    }

    /// An outbound plan came back: confirm it if asked and not blocked.
    fn released(&mut self, index: usize, plan: OutboundPlan, confirm: bool, now: DateTime<Utc>) -> StepOutcome {
        let mut outcome = StepOutcome {
            counts: plan.counts,
            exceeded: plan.exceeded.iter().map(|e| e.threshold.clone()).collect(),
            plan: plan.ops.clone(),
            skipped: plan
                .skipped
                .iter()
                .map(|s| (plan.system.clone(), s.identity, s.reason.as_str().to_owned()))
                .collect(),
            ..StepOutcome::default()
        };
        if plan.is_blocked() {
            self.confirm_on_approve.insert(plan.id, confirm);
        } else if confirm {
            match self.engine.confirm(&plan.ops, now) {
                Ok(report) => outcome.changed = report.changed,
                Err(e) => {
                    self.fail(index, "confirm", "the plan's ops to confirm".into(), e.to_string());
                    outcome.errors.push((e.kind().to_owned(), None));
                }
            }
        }
        outcome
    }

    fn select_all(&mut self, index: usize, path: &str, selectors: &[String]) -> Option<Vec<IdentityId>> {
        let mut ids = Vec::with_capacity(selectors.len());
        for (i, selector) in selectors.iter().enumerate() {
            ids.push(self.select(index, &format!("{path}[{i}]"), selector)?);
        }
        Some(ids)
    }

    fn select(&mut self, index: usize, path: &str, selector: &str) -> Option<IdentityId> {
        match check::select(&self.engine, selector) {
            Ok(id) => Some(id),
            Err(message) => {
                self.fail(index, path, format!("one identity `{selector}`"), message);
                None
            }
        }
    }
}
