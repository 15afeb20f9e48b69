//! What a host may watch while a long operation runs: every resolution decision as it
//! is made (for an audit log) and progress (for a progress bar).
//!
//! Reports keep counts and the rejected decisions only: a first load of a million
//! accounts makes twenty million decisions, and holding them all would take more
//! memory than the identities themselves. A host that wants every decision passes an
//! [`Observer`] with [`Observer::on_decision`]; the explanation of any current value
//! can also be had later from its provenance.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diff::AccountChange;
use crate::model::LinkEvent;
use crate::resolution::Decision;

/// The stage a long operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Snapshot rows checked and converted (`done` rows of `total`).
    Prepare,
    /// Prepared rows compared with the stored accounts (`done` rows of `total`).
    Diff,
    /// The plan checked for the likely causes of a suspicious import (SPEC 12.1; `done`
    /// of 1).
    Diagnose,
    /// Changed accounts written to the mirror and correlated (`done` of `total`).
    Apply,
    /// Identities resolved and processed (`done` of `total`).
    ///
    /// A first load into a store with no identity is applied a part of its rows at a
    /// time, so its `Apply` and `Resolve` reports alternate, each counting over the
    /// whole load (`done` only grows within a stage, `total` stays the load's rows).
    /// In a direct load (see [`crate::Engine::import`]) `Resolve` is the store's writing
    /// of a part.
    Resolve,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Prepare => "prepare",
            Stage::Diff => "diff",
            Stage::Diagnose => "diagnose",
            Stage::Apply => "apply",
            Stage::Resolve => "resolve",
        })
    }
}

/// How far a long operation has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Items of the stage done so far.
    pub done: u64,
    /// Items of the stage in all.
    pub total: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} of {}", self.stage, self.done, self.total)
    }
}

/// How many decisions an operation made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DecisionCounts {
    /// Values written.
    pub applied: u64,
    /// Values refused (each is also in the report's `rejected` list).
    pub rejected: u64,
}

impl DecisionCounts {
    /// Every decision.
    pub fn total(&self) -> u64 {
        self.applied + self.rejected
    }
}

impl fmt::Display for DecisionCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} decisions ({} applied, {} rejected)",
            self.total(),
            self.applied,
            self.rejected
        )
    }
}

/// Optional callbacks for a long operation ([`crate::Engine::import_observed`] and the
/// other `_observed` calls). Both are called synchronously from the engine's own
/// thread; neither can change what the engine does.
///
/// ```
/// use attrflow::{Decision, Observer, Progress};
/// let mut log: Vec<String> = Vec::new();
/// let mut last = None;
/// let mut on_decision = |d: &Decision| log.push(d.explain());
/// let mut on_progress = |p: Progress| last = Some(p);
/// let observer = Observer::new().on_decision(&mut on_decision).on_progress(&mut on_progress);
/// # drop(observer);
/// ```
#[derive(Default)]
pub struct Observer<'a> {
    decision: Option<&'a mut dyn FnMut(&Decision)>,
    progress: Option<&'a mut dyn FnMut(Progress)>,
    change: Option<&'a mut dyn FnMut(&AccountChange)>,
    link: Option<&'a mut dyn FnMut(&LinkEvent)>,
}

impl fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("decision", &self.decision.is_some())
            .field("progress", &self.progress.is_some())
            .field("change", &self.change.is_some())
            .field("link", &self.link.is_some())
            .finish()
    }
}

/// Progress is reported at most once per this many items of a stage (and at its end).
const PROGRESS_EVERY: u64 = 16_384;

impl<'a> Observer<'a> {
    /// An observer that watches nothing.
    pub fn new() -> Observer<'a> {
        Observer::default()
    }

    /// Receives every decision, applied or rejected, as it is made.
    pub fn on_decision(mut self, callback: &'a mut dyn FnMut(&Decision)) -> Observer<'a> {
        self.decision = Some(callback);
        self
    }

    /// Receives progress: at the start and end of each stage and every 16,384 items.
    pub fn on_progress(mut self, callback: &'a mut dyn FnMut(Progress)) -> Observer<'a> {
        self.progress = Some(callback);
        self
    }

    /// Receives every account change of an applied import plan (an import that was not
    /// blocked, or an approval), in the plan's order, as the plan is applied. The
    /// report's plan then keeps its counters, rejected rows, thresholds and diagnosis
    /// but not its `changes`: each was handed here, and a first load of a million
    /// accounts (twenty million attribute changes) need not hold them all at once. A
    /// blocked plan keeps its changes for review, as without this callback. The
    /// changes are shown before the store commits: if applying fails, the error says
    /// so and the store keeps what it held.
    pub fn on_change(mut self, callback: &'a mut dyn FnMut(&AccountChange)) -> Observer<'a> {
        self.change = Some(callback);
        self
    }

    /// Receives every link event of an applied import (how each account's correlation
    /// changed: [`crate::ImportReport::links`]) as the import makes it. The report's
    /// `links` then stays empty: a first load of a million accounts need not hold a
    /// million events (about 90 MB with their keys). As with
    /// [`Observer::on_change`], the events are shown before the store commits: if
    /// applying fails, the error says so and the store keeps what it held.
    pub fn on_link(mut self, callback: &'a mut dyn FnMut(&LinkEvent)) -> Observer<'a> {
        self.link = Some(callback);
        self
    }

    /// Whether link events are streamed (and so not kept in the report).
    pub(crate) fn streams_links(&self) -> bool {
        self.link.is_some()
    }

    pub(crate) fn link(&mut self, link: &LinkEvent) {
        if let Some(callback) = self.link.as_mut() {
            callback(link);
        }
    }

    /// Whether account changes are streamed (and so not kept in the report).
    pub(crate) fn streams_changes(&self) -> bool {
        self.change.is_some()
    }

    pub(crate) fn change(&mut self, change: &AccountChange) {
        if let Some(callback) = self.change.as_mut() {
            callback(change);
        }
    }

    /// Whether applied decisions must be built at all.
    pub(crate) fn wants_decisions(&self) -> bool {
        self.decision.is_some()
    }

    pub(crate) fn decision(&mut self, decision: &Decision) {
        if let Some(callback) = self.decision.as_mut() {
            callback(decision);
        }
    }

    /// Reports `done` of `total` when a stage starts or ends, or every
    /// [`PROGRESS_EVERY`] items in between.
    pub(crate) fn progress(&mut self, stage: Stage, done: u64, total: u64) {
        if let Some(callback) = self.progress.as_mut() {
            if done == 0 || done == total || done % PROGRESS_EVERY == 0 {
                callback(Progress { stage, done, total });
            }
        }
    }
}

/// Where the decisions of one operation go: counted, the rejected ones kept, each one
/// shown to the observer.
#[derive(Debug)]
pub(crate) struct DecisionLog<'o, 'a> {
    observer: &'o mut Observer<'a>,
    pub(crate) counts: DecisionCounts,
    pub(crate) rejected: Vec<Decision>,
}

impl<'o, 'a> DecisionLog<'o, 'a> {
    pub(crate) fn new(observer: &'o mut Observer<'a>) -> DecisionLog<'o, 'a> {
        DecisionLog {
            observer,
            counts: DecisionCounts::default(),
            rejected: Vec::new(),
        }
    }

    /// Whether applied decisions must be built (someone watches them).
    pub(crate) fn wants_applied(&self) -> bool {
        self.observer.wants_decisions()
    }

    /// Counts an applied decision that nobody watches (so it was not built).
    pub(crate) fn applied_unbuilt(&mut self) {
        self.counts.applied += 1;
    }

    /// Records a decision.
    pub(crate) fn record(&mut self, decision: Decision) {
        self.observer.decision(&decision);
        if decision.reason().is_some() {
            self.counts.rejected += 1;
            self.rejected.push(decision);
        } else {
            self.counts.applied += 1;
        }
    }

    pub(crate) fn progress(&mut self, stage: Stage, done: u64, total: u64) {
        self.observer.progress(stage, done, total);
    }

    /// Whether account changes are handed to the observer instead of kept.
    pub(crate) fn streams_changes(&self) -> bool {
        self.observer.streams_changes()
    }

    /// Hands an applied account change to the observer.
    pub(crate) fn change(&mut self, change: &AccountChange) {
        self.observer.change(change);
    }

    /// Whether link events are handed to the observer instead of kept.
    pub(crate) fn streams_links(&self) -> bool {
        self.observer.streams_links()
    }

    /// Hands the link events to the observer when it takes them (emptying `links`).
    pub(crate) fn hand_links(&mut self, links: &mut Vec<LinkEvent>) {
        if self.observer.streams_links() {
            for link in links.drain(..) {
                self.observer.link(&link);
            }
        }
    }
}
