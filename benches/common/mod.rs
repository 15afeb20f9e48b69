//! The workload shared by the benches (the shape of `perf/README.md`): an `id` and 19
//! string attributes, all flowing into identity attributes of the same name; the data
//! is generated in process, deterministically.

#![allow(dead_code, reason = "each bench uses part of the workload")]
#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

use attrflow::prepare::Table;
use attrflow::{Engine, MemoryStore, Snapshot, ValidatedConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value as Json};

/// The 19 string attributes besides the key.
pub const ATTRIBUTES: [&str; 19] = [
    "givenName",
    "sn",
    "mail",
    "title",
    "department",
    "manager",
    "employeeType",
    "phone",
    "mobile",
    "location",
    "company",
    "costCenter",
    "hireDate",
    "terminationDate",
    "status",
    "upn",
    "displayName",
    "employeeNumber",
    "country",
];

/// A small deterministic generator (64-bit LCG).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A fixed day of May 2026.
pub fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0)
        .single()
        .expect("a valid fixed date")
}

/// The configuration as JSON: `hr` authoritative, keyed by `id`, every attribute
/// inbound; `extra` is merged into `hr` (thresholds, ...).
pub fn config_json(extra: Json) -> Json {
    let mut account = Map::new();
    let mut identity = Map::new();
    let mut flows = vec![json!({ "account": "id", "identity": "hrId", "direction": "inbound",
                                 "create": 100, "update": 100 })];
    account.insert("id".into(), json!({ "type": "string" }));
    identity.insert("hrId".into(), json!({ "type": "string" }));
    for name in ATTRIBUTES {
        account.insert(name.into(), json!({ "type": "string" }));
        identity.insert(name.into(), json!({ "type": "string" }));
        flows.push(json!({ "account": name, "identity": name, "direction": "inbound",
                           "create": 50, "update": 50, "delete": 50 }));
    }
    let mut hr = json!({
        "schema": { "account_id": "id", "account_name": "id", "attributes": account },
        "authoritative": true,
        "correlation": [ [ { "account": "id", "identity": "hrId" } ] ],
        "flows": flows
    });
    if let (Some(hr), Json::Object(extra)) = (hr.as_object_mut(), extra) {
        hr.extend(extra);
    }
    json!({ "identity": { "attributes": identity }, "systems": { "hr": hr } })
}

/// `config` with a second system, `dir` (a directory keyed by `uid`), that receives
/// five identity attributes outbound and correlates on `uid`: the target of the
/// provisioning and outbound steps of a whole cycle.
pub fn with_directory(mut config: Json) -> Json {
    let mut attributes = Map::new();
    let mut flows = vec![json!({ "account": "uid", "identity": "hrId", "direction": "outbound" })];
    attributes.insert("uid".into(), json!({ "type": "string" }));
    for name in ["mail", "title", "department", "displayName", "manager"] {
        attributes.insert(name.into(), json!({ "type": "string" }));
        flows.push(json!({ "account": name, "identity": name, "direction": "outbound" }));
    }
    let dir = json!({
        "schema": { "account_id": "uid", "account_name": "uid", "attributes": attributes },
        "correlation": [ [ { "account": "uid", "identity": "hrId" } ] ],
        "flows": flows
    });
    if let Some(systems) = config.get_mut("systems").and_then(Json::as_object_mut) {
        systems.insert("dir".into(), dir);
    }
    config
}

/// `config` with a phone system, `phone`, keyed by the extension (`ext`), whose
/// `owner` holds the employee number it correlates on, and which receives the
/// identity's `mail` outbound.
pub fn with_phone(mut config: Json) -> Json {
    let phone = json!({
        "schema": { "account_id": "ext", "account_name": "ext", "attributes": {
            "ext": { "type": "string" },
            "owner": { "type": "string" },
            "mail": { "type": "string" }
        } },
        "correlation": [ [ { "account": "owner", "identity": "employeeNumber" } ] ],
        "flows": [ { "account": "mail", "identity": "mail", "direction": "outbound" } ]
    });
    if let Some(systems) = config.get_mut("systems").and_then(Json::as_object_mut) {
        systems.insert("phone".into(), phone);
    }
    config
}

/// The configuration, validated.
pub fn config(extra: Json) -> ValidatedConfig {
    ValidatedConfig::from_json(&config_json(extra).to_string()).expect("the benchmark configuration is valid")
}

/// The columns: `id` then the attributes.
pub fn columns() -> Vec<String> {
    std::iter::once("id").chain(ATTRIBUTES).map(String::from).collect()
}

/// Row `i`: `id` = `user{i}`, each attribute `{attribute}-{i}`.
pub fn row(i: usize) -> Vec<String> {
    std::iter::once(format!("user{i}"))
        .chain(ATTRIBUTES.iter().map(|name| format!("{name}-{i}")))
        .collect()
}

/// The old table of `n` rows and the new one: ~1% updated (1-3 attributes), 0.5%
/// deleted, 0.5% inserted, shuffled.
pub fn tables(n: usize) -> (Table, Table) {
    let old: Vec<Vec<String>> = (0..n).map(row).collect();
    let mut rng = Lcg(42);
    let mut new = Vec::with_capacity(n);
    for (i, r) in old.iter().enumerate() {
        match i % 200 {
            0 => {}
            1 | 2 => {
                let mut r = r.clone();
                for _ in 0..=rng.below(3) {
                    let c = 1 + rng.below(ATTRIBUTES.len());
                    r[c] = format!("{}-changed-{}", ATTRIBUTES[c - 1], rng.next());
                }
                new.push(r);
            }
            _ => new.push(r.clone()),
        }
    }
    new.extend((n..n + n / 200).map(row));
    for i in (1..new.len()).rev() {
        new.swap(i, rng.below(i + 1));
    }
    let table = |rows: &[Vec<String>]| {
        let mut t = Table::with_capacity(columns(), rows.len(), 0);
        for r in rows {
            t.push_row(r).expect("one cell per column");
        }
        t
    };
    (table(&old), table(&new))
}

/// A delta of `changes` upserts over `n` stored rows, each setting 1-3 attributes to
/// a value tagged `tag` (two tags give two deltas that undo each other's values).
pub fn delta(n: usize, changes: usize, tag: &str) -> Snapshot {
    let mut rng = Lcg(7);
    let upserts = (0..changes)
        .map(|c| {
            let i = (c * 7919 + 3) % n;
            let mut row = Map::new();
            row.insert("id".into(), json!(format!("user{i}")));
            for _ in 0..=rng.below(3) {
                let name = ATTRIBUTES[rng.below(ATTRIBUTES.len())];
                row.insert(name.into(), json!(format!("{name}-{tag}-{i}")));
            }
            row
        })
        .collect();
    Snapshot::Incremental {
        upserts,
        deletes: Vec::new(),
    }
}

/// An engine whose store holds `old` (one identity per account).
pub fn loaded(config: &ValidatedConfig, old: Table) -> Engine<MemoryStore> {
    let mut engine = Engine::new(config.clone());
    let report = engine
        .import("hr", &Snapshot::Table(old), at(1))
        .expect("the load is accepted");
    assert!(report.applied && report.plan.rejections.is_empty());
    engine
}

/// A copy of an engine over a copy of its store.
pub fn copy(engine: &Engine<MemoryStore>) -> Engine<MemoryStore> {
    Engine::with_store(engine.config().clone(), engine.store().clone()).expect("the memory store does not fail")
}
