//! Model-based property test (issue "Reliability", item 1): random configurations and
//! random sequences of operations (complete and incremental imports with bad rows,
//! approvals of blocked plans, outbound plans with confirmation, configuration
//! replacements) run against the engine and against a small, naive reference model
//! written straight from SPEC.md. After every step the observable state must agree:
//! identities (values and provenance), every stored account (values, link, the values
//! the engine pushed there), unmatched / ambiguous accounts, the step's counters,
//! exceeded thresholds, rejected rows, decisions and outbound ops.
//!
//! The model is deliberately plain: `BTreeMap`s of strings, one function per SPEC rule,
//! each commented with its section. Where SPEC is silent the model follows README.md
//! ("The decision rules, in plain words") or, failing that, the crate's documented
//! choice, and says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::collections::{BTreeMap, BTreeSet};

use attrflow::store::Store;
use attrflow::{
    Approval, ChangeKind, ConfigChangeError, Decision, Engine, IdentityId, ImportReport, LinkState, Observer, Op,
    OutboundPlan, Phase, Snapshot, ValidatedConfig, Value,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Map, Value as Json};

type Row = Map<String, Json>;

/// The time of hour `h` (steps use random, not necessarily increasing, hours: stale
/// candidates and ties happen).
fn at(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    (t - at(0)).num_hours()
}

// ====================================================================== configuration

/// Values of the single-valued string attribute `a` (case-exact).
const A: [&str; 3] = ["x", "y", "z"];
/// Values of the single-valued string attribute `b`, which ignores case (SPEC 1).
const B: [&str; 3] = ["x", "X", "y"];
/// Values of the correlation attribute `emp` of the correlating systems: keys of the
/// authoritative system (`k0`..`k5`), so accounts find identities.
const EMP: [&str; 3] = ["k0", "k1", "k2"];
/// Values of the multi-valued attribute `g` (the empty string is dropped from a set).
const GROUPS: [&str; 4] = ["G1", "G2", "G3", ""];
/// How many times a pushed value may come back different (SPEC 5.3: the third time).
const LOOP_LIMIT: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
    Both,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::In => "inbound",
            Dir::Out => "outbound",
            Dir::Both => "bidirectional",
        }
    }
    /// SPEC 4.1: inbound flow for `inbound` and `bidirectional` rules.
    fn inbound(self) -> bool {
        self != Dir::Out
    }
    /// SPEC 5.1: outbound flow for `outbound` and `bidirectional` rules.
    fn outbound(self) -> bool {
        self != Dir::In
    }
}

/// A generated flow rule: direction and scores (`authoritative` is used on `g` only).
#[derive(Debug, Clone)]
struct RuleGen {
    dir: Dir,
    create: u8,
    update: u8,
    delete: u8,
    authoritative: bool,
    /// For the rule of `b`: it flows to identity attribute `a` instead (two rules of one
    /// system into one identity attribute).
    to_a: bool,
}

/// A generated system: its four flow rules (key/correlation attribute, `a`, `b`, `g`)
/// and a choice of thresholds (see [`limits`]).
#[derive(Debug, Clone)]
struct SystemGen {
    rules: Vec<RuleGen>,
    thresholds: usize,
}

/// A flow rule as the model reads it.
#[derive(Debug, Clone)]
struct MRule {
    account: &'static str,
    identity: &'static str,
    dir: Dir,
    create: u8,
    update: u8,
    delete: u8,
    authoritative: bool,
}

/// The configuration: `s0` is authoritative (projects) and correlates `id == empno`;
/// `s1..` correlate `emp == empno` (and `emp` flows to `empno` too). Every system has
/// `a`, `b` (single-valued; `b` ignores case) and `g` (multi-valued), each with one
/// flow rule to the identity attribute of that name, except that `b` may flow to `a`;
/// `b` may have been removed from some systems by a configuration change.
#[derive(Debug, Clone)]
struct Cfg {
    n: usize,
    systems: Vec<SystemGen>,
    no_b: BTreeSet<usize>,
}

impl Cfg {
    fn name(s: usize) -> String {
        format!("s{s}")
    }
    fn key(s: usize) -> &'static str {
        if s == 0 {
            "id"
        } else {
            "key"
        }
    }
    fn corr(s: usize) -> &'static str {
        if s == 0 {
            "id"
        } else {
            "emp"
        }
    }
    /// Schema attributes, key first, with `multi`.
    fn schema(&self, s: usize) -> Vec<(&'static str, bool)> {
        let mut out = vec![(Cfg::key(s), false)];
        if s != 0 {
            out.push(("emp", false));
        }
        out.push(("a", false));
        if !self.no_b.contains(&s) {
            out.push(("b", false));
        }
        out.push(("g", true));
        out
    }
    fn in_schema(&self, s: usize, attr: &str) -> bool {
        self.schema(s).iter().any(|(a, _)| *a == attr)
    }
    fn multi(&self, s: usize, attr: &str) -> bool {
        self.schema(s).iter().any(|(a, m)| *a == attr && *m)
    }
    /// The flow rules in `flows` order (the rule number of decisions).
    fn rules(&self, s: usize) -> Vec<MRule> {
        let rules = &self.systems[s].rules;
        let b_target = if rules[2].to_a { "a" } else { "b" };
        let targets = [(Cfg::corr(s), "empno"), ("a", "a"), ("b", b_target), ("g", "g")];
        let mut out = Vec::new();
        for (i, ((account, identity), g)) in targets.into_iter().zip(rules).enumerate() {
            if account == "b" && self.no_b.contains(&s) {
                continue;
            }
            let mut rule = MRule {
                account,
                identity,
                dir: g.dir,
                create: g.create,
                update: g.update,
                delete: g.delete,
                authoritative: g.authoritative && account == "g",
            };
            // The authoritative system always feeds `empno` from its key (else nothing
            // ever correlates).
            if s == 0 && i == 0 {
                rule.dir = Dir::In;
                rule.create = rule.create.max(1);
            }
            out.push(rule);
        }
        out
    }
    fn json(&self) -> Json {
        let string = json!({ "type": "string" });
        let folded = json!({ "type": "string", "case_exact": false });
        let multi = json!({ "type": "string", "multi": true });
        let mut systems = Map::new();
        for s in 0..self.n {
            let attributes: Map<String, Json> = self
                .schema(s)
                .into_iter()
                .map(|(a, m)| {
                    let decl = match (a, m) {
                        (_, true) => &multi,
                        ("b", _) => &folded,
                        _ => &string,
                    };
                    (a.to_owned(), decl.clone())
                })
                .collect();
            let flows: Vec<Json> = self
                .rules(s)
                .iter()
                .map(|r| {
                    json!({ "account": r.account, "identity": r.identity, "direction": r.dir.name(),
                            "create": r.create, "update": r.update, "delete": r.delete,
                            "authoritative": r.authoritative })
                })
                .collect();
            let system = json!({
                "schema": { "account_id": Cfg::key(s), "account_name": Cfg::key(s), "attributes": attributes },
                "authoritative": s == 0,
                "correlation": [[ { "account": Cfg::corr(s), "identity": "empno" } ]],
                "flows": flows,
                "thresholds": thresholds_json(self.systems[s].thresholds),
            });
            systems.insert(Cfg::name(s), system);
        }
        json!({
            "identity": { "attributes": {
                "empno": string, "a": string, "b": folded, "g": multi } },
            "systems": systems,
        })
    }
    fn validated(&self) -> ValidatedConfig {
        ValidatedConfig::from_json(&self.json().to_string()).unwrap()
    }
}

/// Counter names, in the order of the model's `[u64; 6]` counters (SPEC 2.5).
const COUNTERS: [&str; 6] = [
    "inserted",
    "updated",
    "deleted",
    "link_inserted",
    "link_updated",
    "link_deleted",
];

/// Threshold choices: (count limits, percentage limits) per counter.
fn limits(choice: usize) -> ([Option<u64>; 6], [Option<f64>; 6]) {
    let mut count = [None; 6];
    let mut pct = [None; 6];
    match choice {
        1 => count[2] = Some(0),
        2 => count[0] = Some(2),
        3 => pct[1] = Some(50.0),
        4 => count[3] = Some(1),
        5 => pct[0] = Some(100.0),
        6 => {
            count[5] = Some(0);
            count[4] = Some(1);
        }
        _ => {}
    }
    (count, pct)
}

fn thresholds_json(choice: usize) -> Json {
    let (count, pct) = limits(choice);
    let mut out = Map::new();
    for (i, name) in COUNTERS.iter().enumerate() {
        if let Some(l) = count[i] {
            out.insert(format!("max_{name}"), json!(l));
        }
        if let Some(l) = pct[i] {
            out.insert(format!("max_pct_{name}"), json!(l));
        }
    }
    Json::Object(out)
}

/// SPEC 2.6: every exceeded limit. A count above its limit exceeds it; a percentage is
/// the count over what was stored before (accounts for the scalar counters and
/// `link_updated`, link values for `link_inserted` / `link_deleted`); with nothing
/// stored, any non-zero count exceeds a percentage limit.
fn exceeded(choice: usize, counts: [u64; 6], base: (u64, u64)) -> Vec<String> {
    let (count, pct) = limits(choice);
    let bases = [base.0, base.0, base.0, base.1, base.0, base.1];
    let mut out = Vec::new();
    for i in 0..6 {
        if count[i].is_some_and(|l| counts[i] > l) {
            out.push(format!("max_{}", COUNTERS[i]));
        }
        if let Some(l) = pct[i] {
            let over = if bases[i] == 0 {
                counts[i] > 0
            } else {
                counts[i] as f64 * 100.0 / bases[i] as f64 > l
            };
            if over {
                out.push(format!("max_pct_{}", COUNTERS[i]));
            }
        }
    }
    out
}

// ====================================================================== model: values

/// A value (SPEC 1): empty, one string, or a non-empty set of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    #[default]
    Empty,
    One(String),
    Set(BTreeSet<String>),
}

impl V {
    fn is_empty(&self) -> bool {
        *self == V::Empty
    }
    fn items(&self) -> BTreeSet<String> {
        match self {
            V::Empty => BTreeSet::new(),
            V::One(s) => BTreeSet::from([s.clone()]),
            V::Set(items) => items.clone(),
        }
    }
    /// SPEC 1: equality, ignoring case for an attribute with `case_exact: false`
    /// (only `b` here, account and identity side).
    fn same(&self, other: &V, attribute: &str) -> bool {
        if attribute != "b" {
            return self == other;
        }
        let fold = |v: &V| -> BTreeSet<String> { v.items().iter().map(|s| s.to_lowercase()).collect() };
        fold(self) == fold(other)
    }
    fn set(items: BTreeSet<String>) -> V {
        if items.is_empty() {
            V::Empty
        } else {
            V::Set(items)
        }
    }
}

/// SPEC 1 and 2.3: a JSON cell of a string attribute. `null`, `""` and `[]` are empty;
/// a one-element list is that value; several values for a single-valued attribute are
/// `multiple_values`; anything not a string is `invalid_value`.
fn parse_cell(json: &Json, multi: bool) -> Result<V, &'static str> {
    let one = |j: &Json| -> Result<Option<String>, &'static str> {
        match j {
            Json::Null => Ok(None),
            Json::String(s) if s.is_empty() => Ok(None),
            Json::String(s) => Ok(Some(s.clone())),
            _ => Err("invalid_value"),
        }
    };
    match json {
        Json::Array(items) => {
            let mut values = Vec::new();
            for item in items {
                values.extend(one(item)?);
            }
            if multi {
                return Ok(V::set(values.into_iter().collect()));
            }
            match values.len() {
                0 => Ok(V::Empty),
                1 => Ok(V::One(values.remove(0))),
                _ => Err("multiple_values"),
            }
        }
        other => Ok(match (one(other)?, multi) {
            (None, _) => V::Empty,
            (Some(s), true) => V::Set(BTreeSet::from([s])),
            (Some(s), false) => V::One(s),
        }),
    }
}

/// SPEC 2.3: the key of a row (`None`: `missing_key`).
fn key_text(raw: Option<&Json>) -> Option<String> {
    match raw? {
        Json::Null => None,
        Json::String(s) => (!s.is_empty()).then(|| s.clone()),
        Json::Array(items) if items.len() == 1 => key_text(items.first()),
        Json::Array(items) if items.is_empty() => None,
        other => Some(other.to_string()),
    }
}

// ====================================================================== model: state

/// How an account stands (SPEC 3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum MLink {
    Linked(usize),
    Unmatched,
    Ambiguous(BTreeSet<usize>),
}

/// Sync-loop bookkeeping of one pushed account attribute (SPEC 5.3).
#[derive(Debug, Clone, Default)]
struct MEcho {
    pushed: V,
    bounces: u32,
    armed: bool,
    /// Values of a multi-valued attribute the engine removed and watches until an import
    /// shows them gone (SPEC 5.3: one seen present again is a bounce, pushed again).
    removed: BTreeSet<String>,
}

/// The account mirror (SPEC 2.5, 5.3).
#[derive(Debug, Clone)]
struct MAccount {
    /// Non-empty values.
    attrs: BTreeMap<String, V>,
    link: MLink,
    /// Values of multi-valued attributes the engine wrote here (SPEC 5.1 "manual values").
    pushed: BTreeMap<String, BTreeSet<String>>,
    echoes: BTreeMap<String, MEcho>,
}

impl MAccount {
    fn value(&self, attr: &str) -> V {
        self.attrs.get(attr).cloned().unwrap_or_default()
    }
    fn set(&mut self, attr: &str, v: V) {
        if v.is_empty() {
            self.attrs.remove(attr);
        } else {
            self.attrs.insert(attr.to_owned(), v);
        }
    }
}

/// Provenance of an identity value (SPEC 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prov {
    system: String,
    strength: u8,
    create: bool,
    at: i64,
}

/// An identity: non-empty values with their provenance.
#[derive(Debug, Clone, Default)]
struct MIdentity {
    values: BTreeMap<String, (V, Prov)>,
}

impl MIdentity {
    fn value(&self, attr: &str) -> V {
        self.values.get(attr).map(|(v, _)| v.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Insert,
    Update,
    Delete,
}

/// One account change of a diff plan (SPEC 2.5): (attribute, old, new).
#[derive(Debug, Clone)]
struct MChange {
    key: String,
    kind: Kind,
    attrs: Vec<(String, V, V)>,
}

impl MChange {
    fn view(&self) -> MChangeView {
        (self.key.clone(), self.kind, self.attrs.clone())
    }
}

/// An import plan (SPEC 2.5), kept whole while blocked (SPEC 2.6).
#[derive(Debug, Clone)]
struct MPlan {
    system: usize,
    at: i64,
    changes: Vec<MChange>,
    /// Unlinked accounts carried unchanged: correlation is tried again (SPEC 3).
    retry: Vec<String>,
    /// Accounts carried unchanged (their echoes are observed).
    shown: Vec<String>,
    counts: [u64; 6],
    rejections: Vec<(Option<String>, String)>,
    version: u64,
}

/// One outbound update op (SPEC 5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct MOp {
    account: String,
    set: BTreeMap<String, V>,
    add: BTreeMap<String, BTreeSet<String>>,
    remove: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Clone)]
enum Pending {
    Import(MPlan),
    Outbound { system: usize, ops: Vec<MOp>, version: u64 },
}

/// A decision as compared: (identity, attribute, system, account, rule, outcome).
type MDecision = (usize, String, String, String, usize, String);
/// An account change as compared: (key, kind, [(attribute, old, new)] by attribute).
type MChangeView = (String, Kind, Vec<(String, V, V)>);
/// A correlation outcome as compared: (account, link, projected).
type MLinkEvent = (String, MLink, bool);

/// What one step shows, in model terms (engine ids mapped to model identities).
#[derive(Debug, Clone, Default, PartialEq)]
struct Observed {
    result: String,
    applied: Option<bool>,
    counts: Option<[u64; 6]>,
    exceeded: Vec<String>,
    rejections: Vec<(Option<String>, String)>,
    changes: Vec<MChangeView>,
    links: Vec<MLinkEvent>,
    decisions: Vec<MDecision>,
    ops: Vec<MOp>,
}

impl Observed {
    fn result(result: &str) -> Observed {
        Observed {
            result: result.to_owned(),
            ..Observed::default()
        }
    }
    fn sorted(mut self) -> Observed {
        self.exceeded.sort();
        self.rejections.sort();
        self.decisions.sort();
        self.links.sort();
        for (_, _, attrs) in &mut self.changes {
            attrs.sort();
        }
        self
    }
}

/// An inbound candidate (SPEC 4.3): system, rule, account, identity, attribute, value,
/// time, scores.
#[derive(Debug, Clone)]
struct Cand {
    system: String,
    rule: usize,
    account: String,
    identity: usize,
    attribute: String,
    value: V,
    at: i64,
    create: u8,
    update: u8,
    delete: u8,
}

/// Which values of an account an import offers (SPEC 2.5).
enum Offer<'a> {
    /// An updated, linked account: the changed attributes.
    Changed(&'a [String]),
    /// A newly linked account: every non-empty value.
    Values,
    /// A deleted account: a blank for every value it held.
    Blanks,
}

#[derive(Debug)]
struct Model {
    cfg: Cfg,
    accounts: Vec<BTreeMap<String, MAccount>>,
    identities: Vec<MIdentity>,
    /// Per system: bumped by every applied change to its stored accounts (SPEC 2.6).
    versions: Vec<u64>,
    pending: Vec<(u64, Pending)>,
    next_plan: u64,
    /// SPEC 5.3 / `Echo::armed` ("whether a push was confirmed since an import last
    /// showed this attribute"): an import observes the echoes of every account it
    /// carries. `false` follows the engine, which observes only accounts that changed
    /// or had bounced (see `sync_loop_counts_a_change_after_the_push_was_seen_kept`).
    observe_unchanged: bool,
    /// Correlation outcomes of the import being applied.
    links: Vec<MLinkEvent>,
}

impl Model {
    fn new(cfg: Cfg) -> Model {
        let n = cfg.n;
        Model {
            cfg,
            accounts: vec![BTreeMap::new(); n],
            identities: Vec::new(),
            versions: vec![0; n],
            pending: Vec::new(),
            next_plan: 0,
            observe_unchanged: false,
            links: Vec::new(),
        }
    }

    // ------------------------------------------------------------------ import

    /// SPEC 2.3 - 2.6: prepare, diff, thresholds; applied unless blocked.
    fn import(&mut self, s: usize, rows: &[Row], deletes: Option<&[Json]>, at: i64) -> Observed {
        self.next_plan += 1;
        let id = self.next_plan;
        let plan = self.plan(s, rows, deletes, at);
        let base = self.base(s);
        let exceeded = exceeded(self.cfg.systems[s].thresholds, plan.counts, base);
        let mut out = Observed {
            result: "import".into(),
            applied: Some(exceeded.is_empty()),
            counts: Some(plan.counts),
            exceeded: exceeded.clone(),
            rejections: plan.rejections.clone(),
            changes: plan.changes.iter().map(MChange::view).collect(),
            ..Observed::default()
        };
        if exceeded.is_empty() {
            out.decisions = self.apply(&plan);
            out.links = std::mem::take(&mut self.links);
        } else {
            // SPEC 2.6: a blocked plan applies nothing. README: a new blocked import of a
            // system replaces an older blocked import of it.
            self.pending
                .retain(|(_, p)| !matches!(p, Pending::Import(q) if q.system == s));
            self.pending.push((id, Pending::Import(plan)));
        }
        out
    }

    /// SPEC 2.3 (prepare) and 2.4 / 2.5 (diff, counters).
    fn plan(&self, s: usize, rows: &[Row], deletes: Option<&[Json]>, at: i64) -> MPlan {
        let complete = deletes.is_none();
        let schema = self.cfg.schema(s);
        let key_attr = Cfg::key(s);
        let row_keys: Vec<Option<String>> = rows.iter().map(|r| key_text(r.get(key_attr))).collect();
        let delete_keys: Vec<Option<String>> = deletes.unwrap_or(&[]).iter().map(|k| key_text(Some(k))).collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for k in row_keys.iter().chain(&delete_keys).flatten() {
            *seen.entry(k.clone()).or_default() += 1;
        }
        // 2.3: each rejected row once, with its first reason: missing_key, duplicate_key
        // (every row sharing the key, reported once per key), unknown_column,
        // multiple_values, invalid_value.
        let mut rejections = Vec::new();
        let mut reported = BTreeSet::new();
        let mut good: Vec<(String, BTreeMap<String, V>)> = Vec::new();
        for (row, key) in rows.iter().zip(&row_keys) {
            let Some(key) = key else {
                rejections.push((None, "missing_key".to_owned()));
                continue;
            };
            if seen[key] > 1 {
                if reported.insert(key.clone()) {
                    rejections.push((Some(key.clone()), "duplicate_key".to_owned()));
                }
                continue;
            }
            if row.keys().any(|a| !self.cfg.in_schema(s, a)) {
                rejections.push((Some(key.clone()), "unknown_column".to_owned()));
                continue;
            }
            let parsed: Vec<(&str, Result<V, &str>)> = schema
                .iter()
                .filter_map(|(a, m)| match row.get(*a) {
                    Some(cell) => Some((*a, parse_cell(cell, *m))),
                    // 2.4: complete rows hold every attribute (absent = empty);
                    // incremental upserts only those they carry.
                    None if complete => Some((*a, Ok(V::Empty))),
                    None => None,
                })
                .collect();
            let first_problem = ["multiple_values", "invalid_value"]
                .into_iter()
                .find(|reason| parsed.iter().any(|(_, r)| r.as_ref().err() == Some(reason)));
            if let Some(reason) = first_problem {
                rejections.push((Some(key.clone()), reason.to_owned()));
                continue;
            }
            let values = parsed.into_iter().map(|(a, v)| (a.to_owned(), v.unwrap())).collect();
            good.push((key.clone(), values));
        }
        let mut good_deletes = Vec::new();
        for key in &delete_keys {
            match key {
                None => rejections.push((None, "missing_key".to_owned())),
                Some(k) if seen[k] > 1 => {
                    if reported.insert(k.clone()) {
                        rejections.push((Some(k.clone()), "duplicate_key".to_owned()));
                    }
                }
                Some(k) => good_deletes.push(k.clone()),
            }
        }

        // 2.5: the diff against the stored accounts.
        let stored = &self.accounts[s];
        let mut changes = Vec::new();
        let mut retry = Vec::new();
        let mut shown = Vec::new();
        for (key, values) in good {
            match stored.get(&key) {
                None => changes.push(MChange {
                    key,
                    kind: Kind::Insert,
                    attrs: values
                        .into_iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(a, v)| (a, V::Empty, v))
                        .collect(),
                }),
                Some(account) => {
                    let changed: Vec<(String, V, V)> = values
                        .into_iter()
                        .filter(|(a, v)| !account.value(a).same(v, a))
                        .map(|(a, v)| (a.clone(), account.value(&a), v))
                        .collect();
                    if changed.is_empty() {
                        // SPEC 3: unmatched and ambiguous accounts are tried again
                        // whenever an import carries them.
                        if !matches!(account.link, MLink::Linked(_)) {
                            retry.push(key.clone());
                        }
                        shown.push(key);
                    } else {
                        changes.push(MChange {
                            key,
                            kind: Kind::Update,
                            attrs: changed,
                        });
                    }
                }
            }
        }
        // 2.4: complete: keys not in the snapshot (and not rejected) are deleted;
        // incremental: explicit deletes of stored keys.
        let deleted: Vec<String> = if complete {
            stored.keys().filter(|k| !seen.contains_key(*k)).cloned().collect()
        } else {
            good_deletes.into_iter().filter(|k| stored.contains_key(k)).collect()
        };
        for key in deleted {
            let attrs = stored[&key]
                .attrs
                .iter()
                .map(|(a, v)| (a.clone(), v.clone(), V::Empty))
                .collect();
            changes.push(MChange {
                key,
                kind: Kind::Delete,
                attrs,
            });
        }
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        retry.sort();
        shown.sort();
        let counts = self.counts(s, &changes);
        MPlan {
            system: s,
            at,
            changes,
            retry,
            shown,
            counts,
            rejections,
            version: self.versions[s],
        }
    }

    /// SPEC 2.5: `inserted`, `updated`, `deleted` count accounts whose single-valued
    /// attributes change (an insert or delete counts once); `link_inserted` /
    /// `link_deleted` count values added to / removed from multi-valued attributes;
    /// `link_updated` counts accounts, stored before and after, whose multi-valued
    /// attributes change.
    fn counts(&self, s: usize, changes: &[MChange]) -> [u64; 6] {
        let mut c = [0u64; 6];
        for ch in changes {
            let (mut scalar, mut multi) = (false, false);
            for (a, old, new) in &ch.attrs {
                if !self.cfg.in_schema(s, a) {
                    continue;
                }
                if self.cfg.multi(s, a) {
                    let added = new.items().difference(&old.items()).count() as u64;
                    let removed = old.items().difference(&new.items()).count() as u64;
                    c[3] += added;
                    c[5] += removed;
                    multi |= added + removed > 0;
                } else {
                    scalar = true;
                }
            }
            match ch.kind {
                Kind::Insert => c[0] += 1,
                Kind::Delete => c[2] += 1,
                Kind::Update => {
                    c[1] += u64::from(scalar);
                    c[4] += u64::from(multi);
                }
            }
        }
        c
    }

    /// SPEC 2.6: what was stored before (accounts, values of multi-valued attributes).
    fn base(&self, s: usize) -> (u64, u64) {
        let accounts = &self.accounts[s];
        let links = accounts
            .values()
            .flat_map(|a| a.attrs.values())
            .map(|v| match v {
                V::Set(items) => items.len() as u64,
                _ => 0,
            })
            .sum();
        (accounts.len() as u64, links)
    }

    /// Applies an import plan: the account mirror, then correlation, projection and
    /// resolution. Returns the decisions.
    fn apply(&mut self, plan: &MPlan) -> Vec<MDecision> {
        let s = plan.system;
        // The mirror (SPEC 2.5), with the echoes of pushed values (SPEC 5.3).
        let mut previous_links = BTreeMap::new();
        for ch in &plan.changes {
            if ch.kind == Kind::Delete {
                let gone = self.accounts[s].remove(&ch.key).unwrap();
                previous_links.insert(ch.key.clone(), gone.link);
                continue;
            }
            let account = self.accounts[s].entry(ch.key.clone()).or_insert_with(|| MAccount {
                attrs: BTreeMap::new(),
                link: MLink::Unmatched,
                pushed: BTreeMap::new(),
                echoes: BTreeMap::new(),
            });
            for (a, _, new) in &ch.attrs {
                account.set(a, new.clone());
            }
            observe_echoes(&self.cfg, s, account);
        }
        for key in &plan.shown {
            let account = self.accounts[s].get_mut(key).unwrap();
            if self.observe_unchanged || account.echoes.values().any(|e| e.bounces > 0) {
                observe_echoes(&self.cfg, s, account);
            }
        }
        if !plan.changes.is_empty() {
            self.versions[s] += 1;
        }
        // The identity side. All correlation first (in key order: changes, then
        // retried accounts), then resolution of every candidate of the import, so
        // correlation sees the identities as they were before the import (SPEC is
        // silent on the order within one import; this is the crate's).
        let mut cands = Vec::new();
        for ch in &plan.changes {
            match ch.kind {
                // SPEC 3: a deleted account is unlinked, and each inbound attribute in
                // which it held a value becomes a blank candidate.
                Kind::Delete => {
                    if let Some(MLink::Linked(m)) = previous_links.get(&ch.key) {
                        let held: BTreeMap<String, V> =
                            ch.attrs.iter().map(|(a, old, _)| (a.clone(), old.clone())).collect();
                        self.offer(s, &ch.key, *m, &held, &Offer::Blanks, plan.at, &mut cands);
                    }
                }
                Kind::Insert | Kind::Update => {
                    let account = &self.accounts[s][&ch.key];
                    if let MLink::Linked(m) = account.link {
                        let names: Vec<String> = ch.attrs.iter().map(|(a, _, _)| a.clone()).collect();
                        let attrs = account.attrs.clone();
                        self.offer(s, &ch.key, m, &attrs, &Offer::Changed(&names), plan.at, &mut cands);
                    } else {
                        self.correlate(s, &ch.key, plan.at, &mut cands);
                    }
                }
            }
        }
        for key in &plan.retry {
            if !matches!(self.accounts[s][key].link, MLink::Linked(_)) {
                self.correlate(s, key, plan.at, &mut cands);
            }
        }
        self.resolve(cands)
    }

    /// SPEC 3: the rule `corr == empno` (exact; an empty value never matches): one
    /// identity links; several make the account ambiguous; none projects a new identity
    /// in the authoritative system, else the account is unmatched. A newly linked
    /// account offers all its values.
    fn correlate(&mut self, s: usize, key: &str, at: i64, cands: &mut Vec<Cand>) {
        let value = self.accounts[s][key].value(Cfg::corr(s));
        let found: BTreeSet<usize> = if value.is_empty() {
            BTreeSet::new()
        } else {
            (0..self.identities.len())
                .filter(|&m| self.identities[m].value("empno") == value)
                .collect()
        };
        let projected = found.is_empty() && s == 0;
        let link = match found.len() {
            1 => MLink::Linked(*found.first().unwrap()),
            0 if s == 0 => {
                self.identities.push(MIdentity::default());
                MLink::Linked(self.identities.len() - 1)
            }
            0 => MLink::Unmatched,
            _ => MLink::Ambiguous(found),
        };
        self.links.push((key.to_owned(), link.clone(), projected));
        let account = self.accounts[s].get_mut(key).unwrap();
        account.link = link.clone();
        if let MLink::Linked(m) = link {
            let attrs = account.attrs.clone();
            self.offer(s, key, m, &attrs, &Offer::Values, at, cands);
        }
    }

    /// SPEC 2.5 / 4.1: the candidates an account offers through the system's inbound
    /// (and bidirectional) rules.
    #[allow(clippy::too_many_arguments, reason = "a plain model")]
    fn offer(
        &self,
        s: usize,
        key: &str,
        m: usize,
        attrs: &BTreeMap<String, V>,
        mode: &Offer<'_>,
        at: i64,
        cands: &mut Vec<Cand>,
    ) {
        for (index, rule) in self.cfg.rules(s).iter().enumerate() {
            if !rule.dir.inbound() {
                continue;
            }
            let held = attrs.get(rule.account).cloned().unwrap_or_default();
            let value = match mode {
                Offer::Changed(names) if !names.iter().any(|n| n == rule.account) => continue,
                Offer::Changed(_) => held,
                Offer::Values if held.is_empty() => continue,
                Offer::Values => held,
                Offer::Blanks if held.is_empty() => continue,
                Offer::Blanks => V::Empty,
            };
            cands.push(Cand {
                system: Cfg::name(s),
                rule: index,
                account: key.to_owned(),
                identity: m,
                attribute: rule.identity.to_owned(),
                value,
                at,
                create: rule.create,
                update: rule.update,
                delete: rule.delete,
            });
        }
    }

    /// SPEC 4.3, several candidates of one import for one identity attribute: the one
    /// with the highest applicable score is resolved first, equal scores by account
    /// key, then rule order; once one wins (or confirms the current value: the crate
    /// ranks such a candidate first, README "the others lose to it"), the others of
    /// that import lose (`lower_score`), except those offering the value it left.
    fn resolve(&mut self, cands: Vec<Cand>) -> Vec<MDecision> {
        let mut groups: BTreeMap<(usize, String), Vec<Cand>> = BTreeMap::new();
        for c in cands {
            groups.entry((c.identity, c.attribute.clone())).or_default().push(c);
        }
        let mut decisions = Vec::new();
        for ((m, attribute), group) in groups {
            let identity = &mut self.identities[m];
            let mut ranked: Vec<(u8, Cand)> = group
                .into_iter()
                .map(|c| (applicable(identity, &c).map_or(u8::MAX, |(_, score)| score), c))
                .collect();
            ranked.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then(a.account.cmp(&b.account)).then(a.rule.cmp(&b.rule)));
            let mut won = false;
            for (_, c) in ranked {
                let decision = |outcome: &str| {
                    (
                        m,
                        attribute.clone(),
                        c.system.clone(),
                        c.account.clone(),
                        c.rule,
                        outcome.to_owned(),
                    )
                };
                if won {
                    if !c.value.same(&identity.value(&attribute), &attribute) {
                        decisions.push(decision("lower_score"));
                    }
                    continue;
                }
                match resolve_one(identity, &c) {
                    None => won = true,
                    Some(outcome) => {
                        won = outcome == "applied";
                        decisions.push(decision(outcome));
                    }
                }
            }
        }
        decisions
    }

    // ------------------------------------------------------------------ outbound

    /// SPEC 5.1: for every linked account, each outbound / bidirectional rule compares
    /// the identity value with the stored one: `set` for single-valued attributes;
    /// `add` / `remove` (the set difference) for multi-valued ones, removing only values
    /// the engine wrote there unless the rule is authoritative. SPEC 5.3: an attribute
    /// whose pushed value came back different three times is not pushed again.
    fn outbound_ops(&self, s: usize) -> Vec<MOp> {
        let mut ops = Vec::new();
        for (key, account) in &self.accounts[s] {
            let MLink::Linked(m) = account.link else { continue };
            let mut op = MOp {
                account: key.clone(),
                ..MOp::default()
            };
            for rule in self.cfg.rules(s).iter().filter(|r| r.dir.outbound()) {
                if account
                    .echoes
                    .get(rule.account)
                    .is_some_and(|e| e.bounces >= LOOP_LIMIT)
                {
                    continue;
                }
                let want = self.identities[m].value(rule.identity);
                let held = account.value(rule.account);
                if !self.cfg.multi(s, rule.account) {
                    if !want.same(&held, rule.account) {
                        op.set.insert(rule.account.to_owned(), want);
                    }
                    continue;
                }
                // The engine's own: values it wrote, and values it removed that came
                // back (SPEC 5.3: pushed again).
                let mut pushed = account.pushed.get(rule.account).cloned().unwrap_or_default();
                if let Some(echo) = account.echoes.get(rule.account) {
                    pushed.extend(echo.removed.iter().cloned());
                }
                let add: BTreeSet<String> = want.items().difference(&held.items()).cloned().collect();
                let remove: BTreeSet<String> = held
                    .items()
                    .difference(&want.items())
                    .filter(|v| rule.authoritative || pushed.contains(*v))
                    .cloned()
                    .collect();
                if !add.is_empty() {
                    op.add.insert(rule.account.to_owned(), add);
                }
                if !remove.is_empty() {
                    op.remove.insert(rule.account.to_owned(), remove);
                }
            }
            if !(op.set.is_empty() && op.add.is_empty() && op.remove.is_empty()) {
                ops.push(op);
            }
        }
        ops
    }

    /// SPEC 2.6: outbound plans count `updated` (accounts with `set`) and `link_*`.
    fn op_counts(ops: &[MOp]) -> [u64; 6] {
        let mut c = [0u64; 6];
        for op in ops {
            let added: usize = op.add.values().map(BTreeSet::len).sum();
            let removed: usize = op.remove.values().map(BTreeSet::len).sum();
            c[1] += u64::from(!op.set.is_empty());
            c[3] += added as u64;
            c[5] += removed as u64;
            c[4] += u64::from(added + removed > 0);
        }
        c
    }

    /// An outbound request, confirmed whole when not blocked (SPEC 5.1, 2.6).
    fn outbound(&mut self, s: usize) -> Observed {
        self.next_plan += 1;
        let ops = self.outbound_ops(s);
        let counts = Model::op_counts(&ops);
        let exceeded = exceeded(self.cfg.systems[s].thresholds, counts, self.base(s));
        let out = Observed {
            result: "outbound".into(),
            applied: Some(exceeded.is_empty()),
            counts: Some(counts),
            exceeded: exceeded.clone(),
            ops: ops.clone(),
            ..Observed::default()
        };
        if exceeded.is_empty() {
            self.confirm(s, &ops);
        } else {
            let version = self.versions[s];
            // SPEC 2.6: a new blocked outbound plan of a system replaces its older one.
            self.pending
                .retain(|(_, p)| !matches!(p, Pending::Outbound { system, .. } if *system == s));
            self.pending.push((
                self.next_plan,
                Pending::Outbound {
                    system: s,
                    ops,
                    version,
                },
            ));
        }
        out
    }

    /// SPEC 5.3: confirmed ops update the mirror; values added to multi-valued
    /// attributes become the engine's own; each pushed attribute is armed for echo
    /// observation.
    fn confirm(&mut self, s: usize, ops: &[MOp]) {
        for op in ops {
            let multi: BTreeMap<String, bool> = self.cfg.schema(s).iter().map(|(a, m)| ((*a).to_owned(), *m)).collect();
            let account = self.accounts[s].get_mut(&op.account).unwrap();
            for (a, v) in &op.set {
                account.set(a, v.clone());
            }
            for (a, items) in &op.add {
                let mut held = account.value(a).items();
                held.extend(items.iter().cloned());
                account.set(a, V::set(held));
                account
                    .pushed
                    .entry(a.clone())
                    .or_default()
                    .extend(items.iter().cloned());
            }
            for (a, items) in &op.remove {
                let held = account.value(a).items().difference(items).cloned().collect();
                account.set(a, V::set(held));
                let pushed = account.pushed.entry(a.clone()).or_default();
                pushed.retain(|v| !items.contains(v));
                if pushed.is_empty() {
                    account.pushed.remove(a);
                }
            }
            let touched: BTreeSet<&String> = op.set.keys().chain(op.add.keys()).chain(op.remove.keys()).collect();
            for a in touched {
                let pushed = if multi.get(a).copied().unwrap_or(false) {
                    V::set(account.pushed.get(a).cloned().unwrap_or_default())
                } else {
                    account.value(a)
                };
                let echo = account.echoes.entry(a.clone()).or_default();
                echo.pushed = pushed;
                echo.armed = true;
            }
            for (a, items) in &op.remove {
                if let Some(echo) = account.echoes.get_mut(a) {
                    echo.removed.extend(items.iter().cloned());
                }
            }
            for (a, items) in &op.add {
                if let Some(echo) = account.echoes.get_mut(a) {
                    echo.removed.retain(|v| !items.contains(v));
                }
            }
        }
        // SPEC 2.6: a confirmation touches the system's stored accounts.
        if !ops.is_empty() {
            self.versions[s] += 1;
        }
    }

    // ------------------------------------------------------------------ approval

    /// SPEC 2.6: approving applies the most recently blocked plan as computed (its
    /// candidates keep the import's time) unless an applied change touched that
    /// system's stored accounts since (`stale_plan`, discarded); with nothing blocked,
    /// `no_blocked_plan`. A blocked outbound plan is released if it is still the same.
    fn approve(&mut self) -> (Observed, Option<(usize, Vec<MOp>)>) {
        let Some(position) = (0..self.pending.len()).max_by_key(|&i| self.pending[i].0) else {
            return (Observed::result("no_blocked_plan"), None);
        };
        let (_, pending) = self.pending.remove(position);
        match pending {
            Pending::Import(plan) => {
                if self.versions[plan.system] != plan.version {
                    return (Observed::result("stale_plan"), None);
                }
                let decisions = self.apply(&plan);
                let out = Observed {
                    result: "approved_import".into(),
                    applied: Some(true),
                    counts: Some(plan.counts),
                    rejections: plan.rejections.clone(),
                    changes: plan.changes.iter().map(MChange::view).collect(),
                    links: std::mem::take(&mut self.links),
                    decisions,
                    ..Observed::default()
                };
                (out, None)
            }
            Pending::Outbound { system, ops, version } => {
                if self.versions[system] != version || self.outbound_ops(system) != ops {
                    return (Observed::result("stale_plan"), None);
                }
                let out = Observed {
                    result: "approved_outbound".into(),
                    applied: Some(true),
                    counts: Some(Model::op_counts(&ops)),
                    ops: ops.clone(),
                    ..Observed::default()
                };
                (out, Some((system, ops)))
            }
        }
    }

    // ------------------------------------------------------------------ configuration

    /// SPEC 2.2: removing an attribute for which stored accounts hold values is refused
    /// unless forced (then those values are dropped; identity values stay). A refused
    /// change changes nothing. The crate's choice (`ConfigChange::touched_systems`):
    /// every system whose schema changed has its version bumped, so its pending plans
    /// (computed under the old schema) become stale, whether or not accounts are stored.
    fn replace(&mut self, new: Cfg, force: bool) -> Observed {
        let mut touched = Vec::new();
        let mut refused = false;
        for s in 0..self.cfg.n {
            if self.cfg.schema(s) == new.schema(s) {
                continue;
            }
            let removed: Vec<&str> = self
                .cfg
                .schema(s)
                .iter()
                .map(|(a, _)| *a)
                .filter(|a| !new.in_schema(s, a))
                .collect();
            if self.accounts[s]
                .values()
                .any(|acc| removed.iter().any(|a| acc.attrs.contains_key(*a)))
            {
                refused |= !force;
            }
            touched.push((s, removed));
        }
        if refused {
            return Observed::result("refused");
        }
        for (s, removed) in touched {
            for account in self.accounts[s].values_mut() {
                for a in &removed {
                    account.attrs.remove(*a);
                    account.pushed.remove(*a);
                }
            }
            self.versions[s] += 1;
        }
        self.cfg = new;
        Observed::result("ok")
    }
}

/// SPEC 5.3: an import showing the account: a pushed value seen kept resets the count;
/// one seen different counts a bounce (once per push).
fn observe_echoes(cfg: &Cfg, s: usize, account: &mut MAccount) {
    for (a, echo) in account.echoes.iter_mut() {
        let held = account.attrs.get(a).cloned().unwrap_or_default();
        let kept = if cfg.multi(s, a) {
            let held = held.items();
            echo.pushed.items().is_subset(&held) && echo.removed.is_disjoint(&held)
        } else {
            echo.pushed.same(&held, a)
        };
        if kept {
            echo.bounces = 0;
            echo.removed.clear();
        } else if echo.armed && echo.bounces < LOOP_LIMIT {
            echo.bounces += 1;
        }
        echo.armed = false;
    }
    // SPEC 5.1: the engine owns a value it wrote until an import shows the account
    // without it (added back later, it is manual).
    let MAccount { attrs, pushed, .. } = account;
    pushed.retain(|a, owned| {
        let held = attrs.get(a).map(V::items).unwrap_or_default();
        owned.retain(|v| held.contains(v));
        !owned.is_empty()
    });
}

/// SPEC 4.3: what a candidate would do and the score it brings; `None` when it offers
/// the current value (rule 1: nothing happens).
fn applicable(identity: &MIdentity, c: &Cand) -> Option<(&'static str, u8)> {
    let current = identity.value(&c.attribute);
    if c.value.same(&current, &c.attribute) {
        return None;
    }
    if current.is_empty() {
        // Rule 2: create.
        return Some(("create", c.create));
    }
    if c.value.is_empty() {
        // Rule 4: delete.
        return Some(("delete", c.delete));
    }
    // Rule 3: update; against a value still in its create phase from another system,
    // max(update, create).
    let p = &identity.values[&c.attribute].1;
    let score = if p.system != c.system && p.create {
        c.update.max(c.create)
    } else {
        c.update
    };
    Some(("update", score))
}

/// SPEC 4.3, one candidate: `None` if it offers the current value, else "applied" or
/// the reason it is rejected (rule 5 `stale` first, then `zero_score`, then
/// `lower_score`: another source's value needs at least its strength; ties go to the
/// later change, which a non-stale candidate is).
fn resolve_one(identity: &mut MIdentity, c: &Cand) -> Option<&'static str> {
    let (kind, score) = applicable(identity, c)?;
    let incumbent = identity.values.get(&c.attribute).map(|(_, p)| p.clone());
    let outcome = match &incumbent {
        Some(p) if c.at < p.at => "stale",
        _ if score == 0 => "zero_score",
        None => "applied",
        Some(p) if p.system == c.system || score >= p.strength => "applied",
        Some(_) => "lower_score",
    };
    if outcome == "applied" {
        if c.value.is_empty() {
            // Rule 4: the attribute becomes empty; its provenance is cleared.
            identity.values.remove(&c.attribute);
        } else {
            let prov = Prov {
                system: c.system.clone(),
                strength: score,
                create: kind == "create",
                at: c.at,
            };
            identity.values.insert(c.attribute.clone(), (c.value.clone(), prov));
        }
    }
    Some(outcome)
}

// ====================================================================== operations

#[derive(Debug, Clone, Copy)]
enum KeyGen {
    Pool(usize),
    Missing,
    Null,
    Blank,
    List(usize),
}

/// A single-valued cell: omitted, null, "", a value, a one-element list, or (bad) two
/// values or a number.
#[derive(Debug, Clone, Copy)]
enum CellGen {
    Omit,
    Null,
    Blank,
    Val(usize),
    List(usize),
    Two,
    Number,
}

/// A multi-valued cell: a list (with duplicates and blanks), a bare string, null,
/// omitted, or (bad) a nested list.
#[derive(Debug, Clone)]
enum GroupsGen {
    Omit,
    Null,
    Set(Vec<usize>),
    Bare(usize),
    Nested,
}

#[derive(Debug, Clone)]
struct RowGen {
    key: KeyGen,
    emp: CellGen,
    a: CellGen,
    b: CellGen,
    g: GroupsGen,
    /// Incremental upserts: bit i omits the i-th of `emp`, `a`, `b`, `g`.
    omit: u8,
    /// Incremental upserts: an attribute the schema lacks.
    extra: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Complete {
        system: usize,
        rows: Vec<RowGen>,
        hour: i64,
    },
    Incremental {
        system: usize,
        upserts: Vec<RowGen>,
        deletes: Vec<KeyGen>,
        hour: i64,
    },
    Approve {
        hour: i64,
    },
    Outbound {
        system: usize,
        hour: i64,
    },
    /// Replace the rules (directions, scores, thresholds), keeping the schemas.
    Rules {
        systems: Vec<SystemGen>,
        hour: i64,
    },
    /// Remove attribute `b` (and its rule) from a system.
    RemoveB {
        system: usize,
        force: bool,
        hour: i64,
    },
}

#[derive(Debug, Clone)]
struct Case {
    systems: usize,
    rules: Vec<SystemGen>,
    steps: Vec<Step>,
}

fn render_key(k: KeyGen, prefix: &str) -> Option<Json> {
    match k {
        KeyGen::Pool(i) => Some(json!(format!("{prefix}{i}"))),
        KeyGen::Missing => None,
        KeyGen::Null => Some(Json::Null),
        KeyGen::Blank => Some(json!("")),
        KeyGen::List(i) => Some(json!([format!("{prefix}{i}")])),
    }
}

fn render_cell(c: CellGen, pool: &[&str]) -> Option<Json> {
    match c {
        CellGen::Omit => None,
        CellGen::Null => Some(Json::Null),
        CellGen::Blank => Some(json!("")),
        CellGen::Val(i) => Some(json!(pool[i % pool.len()])),
        CellGen::List(i) => Some(json!([pool[i % pool.len()]])),
        CellGen::Two => Some(json!([pool[0], pool[1]])),
        CellGen::Number => Some(json!(7)),
    }
}

fn render_groups(g: &GroupsGen) -> Option<Json> {
    match g {
        GroupsGen::Omit => None,
        GroupsGen::Null => Some(Json::Null),
        GroupsGen::Set(items) => Some(json!(items.iter().map(|&i| GROUPS[i]).collect::<Vec<_>>())),
        GroupsGen::Bare(i) => Some(json!(GROUPS[*i])),
        GroupsGen::Nested => Some(json!([["G1"]])),
    }
}

/// A row for system `s`: complete rows carry the schema's attributes only; incremental
/// upserts may omit some and may carry one the schema lacks (also `b` once removed).
fn render_row(cfg: &Cfg, s: usize, r: &RowGen, complete: bool) -> Row {
    let mut row = Row::new();
    if let Some(k) = render_key(r.key, if s == 0 { "k" } else { "u" }) {
        row.insert(Cfg::key(s).to_owned(), k);
    }
    let fields = [
        ("emp", render_cell(r.emp, &EMP)),
        ("a", render_cell(r.a, &A)),
        ("b", render_cell(r.b, &B)),
        ("g", render_groups(&r.g)),
    ];
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if (name == "emp" && s == 0) || (complete && !cfg.in_schema(s, name)) || (!complete && r.omit & (1 << i) != 0) {
            continue;
        }
        if let Some(v) = value {
            row.insert(name.to_owned(), v);
        }
    }
    if r.extra && !complete {
        row.insert("zz".to_owned(), json!(1));
    }
    row
}

fn key_gen() -> impl Strategy<Value = KeyGen> {
    prop_oneof![
        16 => (0..6usize).prop_map(KeyGen::Pool),
        1 => Just(KeyGen::Missing),
        1 => Just(KeyGen::Null),
        1 => Just(KeyGen::Blank),
        2 => (0..6usize).prop_map(KeyGen::List),
    ]
}

/// A single-valued cell; `bad` adds two-value lists and numbers.
fn cell_gen(bad: u32) -> impl Strategy<Value = CellGen> {
    prop_oneof![
        1 => Just(CellGen::Omit),
        1 => Just(CellGen::Null),
        1 => Just(CellGen::Blank),
        16 => (0..5usize).prop_map(CellGen::Val),
        2 => (0..5usize).prop_map(CellGen::List),
        bad => Just(CellGen::Two),
        bad => Just(CellGen::Number),
    ]
}

fn groups_gen() -> impl Strategy<Value = GroupsGen> {
    prop_oneof![
        1 => Just(GroupsGen::Omit),
        1 => Just(GroupsGen::Null),
        10 => vec(0..4usize, 0..=3).prop_map(GroupsGen::Set),
        1 => (0..3usize).prop_map(GroupsGen::Bare),
        1 => Just(GroupsGen::Nested),
    ]
}

fn row_gen() -> impl Strategy<Value = RowGen> {
    (
        key_gen(),
        cell_gen(0),
        cell_gen(1),
        cell_gen(1),
        groups_gen(),
        0..16u8,
        prop::bool::weighted(0.05),
    )
        .prop_map(|(key, emp, a, b, g, omit, extra)| RowGen {
            key,
            emp,
            a,
            b,
            g,
            omit,
            extra,
        })
}

/// Rows with mostly distinct keys (one row per chosen key, in any order), sometimes one
/// more row that may repeat a key (`duplicate_key`).
fn rows_gen(max: usize) -> impl Strategy<Value = Vec<RowGen>> {
    (
        prop::collection::btree_map(0..6usize, row_gen(), 0..=max),
        prop::option::weighted(0.15, row_gen()),
    )
        .prop_map(|(rows, extra)| {
            let mut out: Vec<RowGen> = rows
                .into_iter()
                .map(|(k, mut r)| {
                    r.key = match r.key {
                        KeyGen::Pool(_) => KeyGen::Pool(k),
                        KeyGen::List(_) => KeyGen::List(k),
                        other => other,
                    };
                    r
                })
                .collect();
            out.extend(extra);
            out
        })
        .prop_shuffle()
}

fn score() -> impl Strategy<Value = u8> {
    prop_oneof![2 => Just(0u8), 2 => Just(50u8), 1 => Just(100u8), 3 => 0..=100u8]
}

fn rule_gen() -> impl Strategy<Value = RuleGen> {
    (
        prop_oneof![Just(Dir::In), Just(Dir::Out), Just(Dir::Both)],
        score(),
        score(),
        score(),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(dir, create, update, delete, authoritative, to_a)| RuleGen {
            dir,
            create,
            update,
            delete,
            authoritative,
            to_a,
        })
}

fn system_gen() -> impl Strategy<Value = SystemGen> {
    // The rule of `emp` often writes `empno` strongly: identities then share an
    // `empno`, and correlation finds several (ambiguous accounts).
    let emp = (
        prop_oneof![2 => Just(Dir::In), 2 => Just(Dir::Both), 1 => Just(Dir::Out)],
        prop_oneof![score(), 50..=100u8],
        rule_gen(),
    )
        .prop_map(|(dir, update, rule)| RuleGen { dir, update, ..rule });
    (emp, vec(rule_gen(), 3), prop_oneof![4 => Just(0usize), 3 => 1..7usize]).prop_map(|(emp, rules, thresholds)| {
        SystemGen {
            rules: std::iter::once(emp).chain(rules).collect(),
            thresholds,
        }
    })
}

fn step_gen() -> impl Strategy<Value = Step> {
    let hour = || 0..8i64;
    // Half the steps on the authoritative system: identities to correlate with.
    let system = || prop_oneof![Just(0usize), 1..4usize];
    prop_oneof![
        5 => (system(), rows_gen(6), hour())
            .prop_map(|(system, rows, hour)| Step::Complete { system, rows, hour }),
        4 => (system(), rows_gen(4), vec(key_gen(), 0..=2), hour())
            .prop_map(|(system, upserts, deletes, hour)| Step::Incremental { system, upserts, deletes, hour }),
        2 => hour().prop_map(|hour| Step::Approve { hour }),
        3 => (system(), hour()).prop_map(|(system, hour)| Step::Outbound { system, hour }),
        1 => (vec(system_gen(), 4), hour()).prop_map(|(systems, hour)| Step::Rules { systems, hour }),
        1 => (0..4usize, any::<bool>(), hour()).prop_map(|(system, force, hour)| Step::RemoveB { system, force, hour }),
    ]
}

fn case_gen() -> impl Strategy<Value = Case> {
    // An import is often followed by an approval (of whatever is blocked last).
    // Every sequence starts with a load of the authoritative system.
    let first = (rows_gen(6), 0..8i64).prop_map(|(rows, hour)| (Step::Complete { system: 0, rows, hour }, true, hour));
    let steps = vec((step_gen(), prop::bool::weighted(0.3), 0..8i64), 0..=9);
    (2..=4usize, vec(system_gen(), 4), first, steps).prop_map(|(systems, rules, first, steps)| Case {
        systems,
        rules,
        steps: std::iter::once(first)
            .chain(steps)
            .flat_map(|(step, approve, hour)| {
                let import = matches!(step, Step::Complete { .. } | Step::Incremental { .. });
                let approval = (import && approve).then_some(Step::Approve { hour });
                std::iter::once(step).chain(approval)
            })
            .collect(),
    })
}

// ====================================================================== engine side

fn v_of(value: &Value) -> V {
    match value.to_json() {
        Json::Null => V::Empty,
        Json::String(s) => V::One(s),
        Json::Array(items) => V::set(items.iter().map(text_of).collect()),
        other => V::One(other.to_string()),
    }
}

fn text_of(j: &Json) -> String {
    match j {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Model identity <-> engine identity, bound by the accounts that link them.
#[derive(Debug, Default)]
struct Bind {
    to_engine: BTreeMap<usize, IdentityId>,
    to_model: BTreeMap<IdentityId, usize>,
}

impl Bind {
    fn update(&mut self, engine: &Engine, model: &Model) -> Result<(), TestCaseError> {
        for s in 0..model.cfg.n {
            for (key, account) in &model.accounts[s] {
                let MLink::Linked(m) = account.link else { continue };
                let Some(stored) = engine.account(&Cfg::name(s), key).unwrap() else {
                    continue;
                };
                let LinkState::Linked(e) = stored.link else { continue };
                match (self.to_engine.get(&m), self.to_model.get(&e)) {
                    (Some(&x), _) if x != e => {
                        return Err(TestCaseError::fail(format!(
                            "account s{s}/{key}: the model links identity m{m} (engine {x}), the engine {e}"
                        )))
                    }
                    (_, Some(&y)) if y != m => {
                        return Err(TestCaseError::fail(format!(
                            "account s{s}/{key}: the engine links {e} (model m{y}), the model m{m}"
                        )))
                    }
                    _ => {
                        self.to_engine.insert(m, e);
                        self.to_model.insert(e, m);
                    }
                }
            }
        }
        Ok(())
    }

    fn model(&self, e: IdentityId) -> Result<usize, TestCaseError> {
        self.to_model
            .get(&e)
            .copied()
            .ok_or_else(|| TestCaseError::fail(format!("{e} is not linked as in the model")))
    }

    fn link(&self, link: &LinkState) -> Result<MLink, TestCaseError> {
        Ok(match link {
            LinkState::Linked(e) => MLink::Linked(self.model(*e)?),
            LinkState::Unmatched => MLink::Unmatched,
            LinkState::Ambiguous(ids) => {
                MLink::Ambiguous(ids.iter().map(|e| self.model(*e)).collect::<Result<_, _>>()?)
            }
        })
    }
}

/// What the engine returned for a step, before identities are mapped.
enum Raw {
    /// An import's report with every decision its observer saw.
    Import(&'static str, Box<ImportReport>, Vec<Decision>),
    Outbound(&'static str, OutboundPlan),
    Other(String),
}

fn counts_of(c: &attrflow::Counts) -> [u64; 6] {
    [
        c.inserted,
        c.updated,
        c.deleted,
        c.link_inserted,
        c.link_updated,
        c.link_deleted,
    ]
}

fn op_of(op: &Op) -> Result<MOp, TestCaseError> {
    let Op::Update(u) = op else {
        return Err(TestCaseError::fail(format!("unexpected op {op:?}")));
    };
    let sets = |m: &attrflow::AttrMap<Vec<attrflow::Scalar>>| -> BTreeMap<String, BTreeSet<String>> {
        m.iter()
            .map(|(a, items)| (a.to_string(), items.iter().map(|s| text_of(&s.to_json())).collect()))
            .collect()
    };
    Ok(MOp {
        account: u.account.clone(),
        set: u.set.iter().map(|(a, v)| (a.to_string(), v_of(v))).collect(),
        add: sets(&u.add),
        remove: sets(&u.remove),
    })
}

impl Raw {
    fn observe(&self, bind: &Bind) -> Result<Observed, TestCaseError> {
        Ok(match self {
            Raw::Import(result, r, seen) => Observed {
                result: (*result).to_owned(),
                applied: Some(r.applied),
                counts: Some(counts_of(&r.plan.counts)),
                exceeded: r.plan.exceeded.iter().map(|e| e.threshold.clone()).collect(),
                rejections: r
                    .plan
                    .rejections
                    .iter()
                    .map(|x| (x.key.clone(), x.reason.as_str().to_owned()))
                    .collect(),
                changes: r
                    .plan
                    .changes
                    .iter()
                    .map(|c| {
                        let kind = match c.kind {
                            ChangeKind::Insert => Kind::Insert,
                            ChangeKind::Update => Kind::Update,
                            ChangeKind::Delete => Kind::Delete,
                        };
                        let attrs = c
                            .attributes
                            .iter()
                            .map(|a| (a.attribute.to_string(), v_of(&a.old), v_of(&a.new)))
                            .collect();
                        (c.key.clone(), kind, attrs)
                    })
                    .collect(),
                links: r
                    .links
                    .iter()
                    .map(|l| Ok((l.account.clone(), bind.link(&l.state)?, l.projected)))
                    .collect::<Result<_, TestCaseError>>()?,
                decisions: seen
                    .iter()
                    .map(|d| {
                        Ok((
                            bind.model(d.identity)?,
                            d.attribute.clone(),
                            d.system.clone(),
                            d.account.clone(),
                            d.rule,
                            d.reason().map_or("applied", |r| r.as_str()).to_owned(),
                        ))
                    })
                    .collect::<Result<_, TestCaseError>>()?,
                ops: Vec::new(),
            },
            Raw::Outbound(result, p) => Observed {
                result: (*result).to_owned(),
                applied: Some(!p.is_blocked()),
                counts: Some(counts_of(&p.counts)),
                exceeded: p.exceeded.iter().map(|e| e.threshold.clone()).collect(),
                ops: p.ops.iter().map(op_of).collect::<Result<_, _>>()?,
                ..Observed::default()
            },
            Raw::Other(result) => Observed::result(result),
        }
        .sorted())
    }
}

type AccountView = (BTreeMap<String, V>, MLink, BTreeMap<String, BTreeSet<String>>);

/// Compares everything observable: identities (values and full provenance), every
/// stored account (values, link, pushed values) and the unlinked accounts.
fn compare_state(engine: &Engine, model: &Model, bind: &Bind) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        engine.identity_count().unwrap(),
        model.identities.len(),
        "identity count"
    );
    for (m, identity) in model.identities.iter().enumerate() {
        let Some(&e) = bind.to_engine.get(&m) else {
            return Err(TestCaseError::fail(format!(
                "model identity m{m} has no engine counterpart"
            )));
        };
        let stored = engine.identity(e).unwrap().unwrap();
        let actual: BTreeMap<String, (V, Prov)> = stored
            .attributes()
            .iter()
            .map(|(a, v)| {
                let p = stored.provenance(a).expect("every value has its provenance");
                let prov = Prov {
                    system: p.system.clone().into(),
                    strength: p.strength,
                    create: p.phase == Phase::Create,
                    at: hour_of(p.at),
                };
                (a.to_string(), (v_of(v), prov))
            })
            .collect();
        prop_assert_eq!(&actual, &identity.values, "identity m{} ({})", m, e);
    }
    let mut unlinked_model = Vec::new();
    for s in 0..model.cfg.n {
        let name = Cfg::name(s);
        let mut stored = Vec::new();
        engine
            .store()
            .visit_accounts(&name, &mut |a| stored.push(a.clone()))
            .unwrap();
        let mut actual: BTreeMap<String, AccountView> = BTreeMap::new();
        for a in stored {
            let attrs = a.attributes.iter().map(|(k, v)| (k.to_string(), v_of(v))).collect();
            let pushed = a
                .pushed
                .iter()
                .filter(|(_, items)| !items.is_empty())
                .map(|(k, items)| (k.to_string(), items.iter().map(|s| text_of(&s.to_json())).collect()))
                .collect();
            actual.insert(a.key.clone(), (attrs, bind.link(&a.link)?, pushed));
        }
        let expected: BTreeMap<String, AccountView> = model.accounts[s]
            .iter()
            .map(|(k, a)| (k.clone(), (a.attrs.clone(), a.link.clone(), a.pushed.clone())))
            .collect();
        prop_assert_eq!(&actual, &expected, "accounts of {}", name);
        for (k, a) in &model.accounts[s] {
            if !matches!(a.link, MLink::Linked(_)) {
                unlinked_model.push((name.clone(), k.clone(), a.link.clone()));
            }
        }
    }
    let unlinked: Vec<(String, String, MLink)> = engine
        .unlinked()
        .unwrap()
        .iter()
        .map(|u| Ok((u.system.clone(), u.key.clone(), bind.link(&u.state)?)))
        .collect::<Result<_, TestCaseError>>()?;
    prop_assert_eq!(unlinked, unlinked_model, "unlinked accounts");
    Ok(())
}

/// Runs one step on the engine and the model; returns (expected, engine's raw result).
/// Runs `call` with an observer collecting every decision.
fn watched<T>(call: impl FnOnce(&mut Observer<'_>) -> T) -> (T, Vec<Decision>) {
    let mut seen = Vec::new();
    let mut on_decision = |d: &Decision| seen.push(d.clone());
    let result = call(&mut Observer::new().on_decision(&mut on_decision));
    (result, seen)
}

fn step(engine: &mut Engine, model: &mut Model, step: &Step) -> (Observed, Raw) {
    let n = model.cfg.n;
    match step {
        Step::Complete { system, rows, hour } => {
            let s = system % n;
            let rows: Vec<Row> = rows.iter().map(|r| render_row(&model.cfg, s, r, true)).collect();
            let columns = model.cfg.schema(s).iter().map(|(a, _)| (*a).to_owned()).collect();
            let expected = model.import(s, &rows, None, *hour);
            let snapshot = Snapshot::Complete { columns, rows };
            let (report, seen) =
                watched(|observer| engine.import_observed(&Cfg::name(s), &snapshot, at(*hour), observer));
            (expected, Raw::Import("import", Box::new(report.unwrap()), seen))
        }
        Step::Incremental {
            system,
            upserts,
            deletes,
            hour,
        } => {
            let s = system % n;
            let prefix = if s == 0 { "k" } else { "u" };
            let upserts: Vec<Row> = upserts.iter().map(|r| render_row(&model.cfg, s, r, false)).collect();
            let deletes: Vec<Json> = deletes
                .iter()
                .map(|k| render_key(*k, prefix).unwrap_or(Json::Null))
                .collect();
            let expected = model.import(s, &upserts, Some(&deletes), *hour);
            let snapshot = Snapshot::Incremental { upserts, deletes };
            let (report, seen) =
                watched(|observer| engine.import_observed(&Cfg::name(s), &snapshot, at(*hour), observer));
            (expected, Raw::Import("import", Box::new(report.unwrap()), seen))
        }
        Step::Approve { hour } => {
            let (expected, released) = model.approve();
            let (approval, seen) = watched(|observer| engine.approve_last_observed(observer));
            let raw = match approval {
                Ok(Approval::Import(report)) => Raw::Import("approved_import", report, seen),
                Ok(Approval::Outbound(plan)) => {
                    let _ = engine.confirm(&plan.ops, at(*hour)).unwrap();
                    Raw::Outbound("approved_outbound", plan)
                }
                Ok(other) => Raw::Other(format!("{other:?}")),
                Err(e) => Raw::Other(e.kind().to_owned()),
            };
            if let Some((s, ops)) = released {
                model.confirm(s, &ops);
            }
            (expected.sorted(), raw)
        }
        Step::Outbound { system, hour } => {
            let s = system % n;
            let expected = model.outbound(s);
            let plan = engine.outbound(&Cfg::name(s), at(*hour)).unwrap();
            if !plan.is_blocked() {
                let _ = engine.confirm(&plan.ops, at(*hour)).unwrap();
            }
            (expected.sorted(), Raw::Outbound("outbound", plan))
        }
        Step::Rules { systems, hour } => {
            let new = Cfg {
                systems: systems.clone(),
                ..model.cfg.clone()
            };
            (
                model.replace(new.clone(), false),
                config_change(engine, &new, false, *hour),
            )
        }
        Step::RemoveB { system, force, hour } => {
            let mut new = model.cfg.clone();
            new.no_b.insert(system % n);
            (
                model.replace(new.clone(), *force),
                config_change(engine, &new, *force, *hour),
            )
        }
    }
}

fn config_change(engine: &mut Engine, cfg: &Cfg, force: bool, hour: i64) -> Raw {
    Raw::Other(match engine.replace_config(cfg.validated(), force, at(hour)) {
        Ok(_) => "ok".to_owned(),
        Err(ConfigChangeError::Refused { .. }) => "refused".to_owned(),
        Err(e) => format!("error: {e}"),
    })
}

/// Runs a sequence on a new engine and a new model, comparing them after every step;
/// returns the model's final state.
fn run(case: &Case, observe_unchanged: bool) -> Result<Model, TestCaseError> {
    let cfg = Cfg {
        n: case.systems,
        systems: case.rules.clone(),
        no_b: BTreeSet::new(),
    };
    let mut engine = Engine::new(cfg.validated());
    let mut model = Model::new(cfg);
    model.observe_unchanged = observe_unchanged;
    let mut bind = Bind::default();
    for (i, s) in case.steps.iter().enumerate() {
        let (expected, raw) = step(&mut engine, &mut model, s);
        let context = |e: TestCaseError| TestCaseError::fail(format!("step {i} ({s:?}): {e}"));
        bind.update(&engine, &model).map_err(context)?;
        prop_assert_eq!(
            engine.identity_count().unwrap(),
            model.identities.len(),
            "step {} ({:?}): identity count",
            i,
            s
        );
        let actual = raw.observe(&bind).map_err(context)?;
        prop_assert_eq!(actual, expected.sorted(), "step {} ({:?})", i, s);
        compare_state(&engine, &model, &bind).map_err(context)?;
    }
    Ok(model)
}

/// Cases: `PROPTEST_CASES` if set, else 48.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(cases()) })]

    /// The engine and the reference model agree after every step of a random sequence.
    /// The model observes every account an import shows, as SPEC 5.3 reads.
    #[test]
    fn engine_agrees_with_the_model(case in case_gen()) {
        let _ = run(&case, true)?;
    }
}

// ====================================================================== fixed sequences

fn rule(dir: Dir, create: u8, update: u8, delete: u8) -> RuleGen {
    RuleGen {
        dir,
        create,
        update,
        delete,
        authoritative: false,
        to_a: false,
    }
}

fn system(rules: [RuleGen; 4]) -> SystemGen {
    SystemGen {
        rules: rules.to_vec(),
        thresholds: 0,
    }
}

/// A row with key `key`, `emp` and `a` from their pools (`None`: omitted).
fn row(key: usize, emp: Option<usize>, a: Option<usize>) -> RowGen {
    RowGen {
        key: KeyGen::Pool(key),
        emp: emp.map_or(CellGen::Omit, CellGen::Val),
        a: a.map_or(CellGen::Omit, CellGen::Val),
        b: CellGen::Omit,
        g: GroupsGen::Omit,
        omit: 0,
        extra: false,
    }
}

fn load(system: usize, rows: Vec<RowGen>, hour: i64) -> Step {
    Step::Complete { system, rows, hour }
}

fn push(system: usize, hour: i64) -> Step {
    Step::Outbound { system, hour }
}

/// `s0` feeds `empno` and `a`; `s1` correlates on `emp` and receives `a` (outbound).
fn push_case(steps: Vec<Step>) -> Case {
    let quiet = rule(Dir::In, 0, 0, 0);
    Case {
        systems: 2,
        rules: vec![
            system([
                rule(Dir::In, 100, 100, 0),
                rule(Dir::In, 50, 50, 50),
                quiet.clone(),
                quiet.clone(),
            ]),
            system([quiet.clone(), rule(Dir::Out, 0, 0, 0), quiet.clone(), quiet]),
        ],
        steps,
    }
}

/// SPEC 5.3 through the model: a pushed value that comes back different three times is
/// not pushed again; an import showing it kept resets the count.
#[test]
fn sync_loop_stops_pushing_and_resets() {
    // a = x on the identity; the s1 account keeps turning it into y.
    let shows = |a: usize, hour: i64| load(1, vec![row(0, Some(0), Some(a))], hour);
    let case = push_case(vec![
        load(0, vec![row(0, None, Some(0))], 0),
        shows(1, 1),
        push(1, 2),  // set a = x
        shows(1, 3), // bounce 1
        push(1, 4),
        shows(1, 5), // bounce 2
        push(1, 6),
        shows(1, 7),  // bounce 3: a loop
        push(1, 8),   // nothing pushed
        shows(0, 9),  // x kept: the count is reset
        shows(1, 10), // changed after it was seen kept: not a bounce
        push(1, 11),  // pushed again
    ]);
    let _ = run(&case, true).unwrap();
}

/// SPEC 3: a correlation rule matching several identities makes the account ambiguous;
/// it is tried again whenever an import carries it.
#[test]
fn ambiguous_accounts_are_reported_and_retried() {
    let quiet = rule(Dir::In, 0, 0, 0);
    let mut case = Case {
        systems: 2,
        rules: vec![
            system([rule(Dir::In, 100, 0, 100), quiet.clone(), quiet.clone(), quiet.clone()]),
            system([rule(Dir::In, 0, 100, 0), quiet.clone(), quiet.clone(), quiet]),
        ],
        steps: vec![
            load(0, vec![row(1, None, None), row(2, None, None)], 0),
            load(1, vec![row(0, Some(2), None)], 1), // u0 links to k2's identity
            load(1, vec![row(0, Some(1), None)], 2), // ... and renames its empno to k1
            load(1, vec![row(0, Some(1), None), row(1, Some(1), None)], 3), // u1: ambiguous
        ],
    };
    let model = run(&case, true).unwrap();
    assert_eq!(model.accounts[1]["u1"].link, MLink::Ambiguous(BTreeSet::from([0, 1])));
    case.steps.extend([
        load(0, vec![row(2, None, None)], 4), // k1 goes: its empno is blanked
        load(1, vec![row(0, Some(1), None), row(1, Some(1), None)], 5), // u1 retried
    ]);
    let model = run(&case, true).unwrap();
    assert_eq!(model.accounts[1]["u1"].link, MLink::Linked(1));
}

/// `Echo::armed` says a bounce counts only for a push confirmed since an import last
/// showed the attribute; the engine does not observe an account an import carries
/// unchanged (unless it had bounced), so a change made after the pushed value was
/// seen kept still counts as a bounce, and the loop is flagged one cycle early.
#[test]
fn sync_loop_counts_a_change_after_the_push_was_seen_kept() {
    let shows = |a: usize, hour: i64| load(1, vec![row(0, Some(0), Some(a))], hour);
    let case = push_case(vec![
        load(0, vec![row(0, None, Some(0))], 0),
        shows(1, 1),
        push(1, 2),  // set a = x
        shows(0, 3), // x kept (the account is unchanged)
        shows(1, 4), // changed later: not the pushed value coming back
        push(1, 5),
        shows(1, 6), // bounce 1
        push(1, 7),
        shows(1, 8), // bounce 2
        push(1, 9),  // still pushed (the engine: not, it counted three bounces)
    ]);
    let _ = run(&case, true).unwrap();
}

/// SPEC 2.2 / 2.6: a first load of `s1` is blocked; then attribute `b` is removed from
/// `s1` (accepted without `force`: no stored account holds it); approving the plan
/// applies it as computed, so account `u0` stores a value of `b`, an attribute its
/// schema no longer declares, and no later import or configuration change removes it
/// (complete imports diff only schema attributes). SPEC lists only changes to stored
/// accounts as making a plan stale, so this is a gap in SPEC as much as an engine bug;
/// an administrator would expect the approval to be `stale_plan` (the plan was
/// computed under another schema) or the values of removed attributes to be dropped.
#[test]
fn approving_after_a_schema_change_stores_no_removed_attribute() {
    let quiet = rule(Dir::In, 0, 0, 0);
    let mut s1 = system([quiet.clone(), quiet.clone(), rule(Dir::In, 50, 50, 50), quiet.clone()]);
    s1.thresholds = 5; // max_pct_inserted: a first load is reviewed
    let cfg = Cfg {
        n: 2,
        systems: vec![
            system([rule(Dir::In, 100, 0, 0), quiet.clone(), quiet.clone(), quiet]),
            s1,
        ],
        no_b: BTreeSet::new(),
    };
    let mut engine = Engine::new(cfg.validated());
    let mut model = Model::new(cfg);
    let u0 = RowGen {
        b: CellGen::Val(0),
        ..row(0, Some(0), None)
    };
    let mut results = Vec::new();
    for s in [
        load(0, vec![row(0, None, None)], 0),
        load(1, vec![u0.clone()], 1), // blocked
        Step::RemoveB {
            system: 1,
            force: false,
            hour: 2,
        }, // accepted
        Step::Approve { hour: 3 },    // applied as computed
        load(1, vec![u0], 4),         // b is not a column any more
    ] {
        let (_, raw) = step(&mut engine, &mut model, &s);
        results.push(raw);
    }
    // The approval is refused as stale (the plan was computed under another schema).
    let approval = match results.get(3) {
        Some(Raw::Other(kind)) => kind.as_str(),
        _ => "not refused",
    };
    assert_eq!(approval, "stale_plan");
    // The last load, a first load of s1 again, is blocked for review too; approved, it
    // stores u0 as imported under the new schema: without `b`.
    let approved = engine.approve_last().unwrap();
    assert!(
        matches!(approved, attrflow::Approval::Import(ref r) if r.applied),
        "{approved:?}"
    );
    let account = engine
        .account("s1", "u0")
        .unwrap()
        .expect("u0 stored by the approved load");
    assert!(
        !account.attributes.contains_key("b"),
        "s1's schema has no `b`, yet account u0 holds {:?}",
        account.attributes
    );
    assert!(account.attributes.contains_key("emp"), "{:?}", account.attributes);
}
