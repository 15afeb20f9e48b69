//! A SQLite-backed [`Store`] (feature `sqlite`): the engine's state in one database
//! file, surviving restarts, with every unit of work applied atomically.
//!
//! # Tables
//! Every table is prefixed `attrflow_`, so the store can share a database with the
//! host's own tables:
//!
//! | table | rows |
//! |---|---|
//! | `attrflow_meta` | `schema_version`, the counters `next_identity` / `next_plan`, the engine state (JSON) |
//! | `attrflow_systems` | one version per system |
//! | `attrflow_names` | the dictionary: attribute and system names, and text values that repeat, which records refer to by number |
//! | `attrflow_accounts` | `(system, key)`, linked identity (or `NULL`), multi-valued value count, the [`Account`] (binary) |
//! | `attrflow_identities` | id, the [`Identity`] (binary) |
//! | `attrflow_index_spec` | the attributes of [`Store::set_index`] with their `case_exact` |
//! | `attrflow_identity_index` | `(attribute, match_key, identity)` of the indexed attributes |
//! | `attrflow_pending_plans` | id, system, the [`PendingPlan`] as JSON, the exact bits of its floats |
//!
//! A threshold base (`account_base`) and the accounts of an identity (`accounts_of`)
//! are computed with SQL from `attrflow_accounts`. The store answers exactly as
//! [`crate::MemoryStore`] does.
//!
//! Floating-point numbers (the figures of exceeded thresholds in pending plans, and any
//! float in the engine state) are kept bit for bit beside their JSON, since JSON cannot
//! spell an infinite percentage and does not promise an exact round trip.
//!
//! # Atomicity
//! [`Store::begin`] starts a transaction (`BEGIN IMMEDIATE`, so the write lock is
//! taken up front), [`Store::commit`] commits it and [`Store::rollback`] rolls it back:
//! the engine applies a plan in one transaction, and a crash before the commit leaves
//! the previous state. A nested `begin` opens a savepoint. Calls outside a unit of work
//! commit on their own, each in one savepoint (a call writing many records is
//! all-or-nothing too).
//!
//! A failure inside a unit of work (any method returning an error) rolls the whole
//! unit back at once: the unit can then no longer commit ([`Store::commit`] reports
//! the earlier failure), and an engine that stops on the error without calling
//! [`Store::rollback`] leaves nothing half-written behind.
//!
//! # Records
//! Accounts and identities are kept in a compact binary form (the `record` module):
//! values in name order behind the number of their name, lengths and numbers as
//! variable-length integers, the rarely set fields as JSON. Version 1 kept JSON per
//! record, about 28 times the export it held; version 2 about 3 times.
//!
//! # Versions
//! The database records [`SCHEMA_VERSION`]. [`SqliteStore::open`] migrates a database
//! of version 1 (JSON records) to it in one transaction, record by record, and refuses
//! any other version ([`OpenError::SchemaVersion`]) rather than misreading it.

mod migrate;
mod names;
use crate::record;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use smallvec::SmallVec;

use crate::model::{Account, Identity, IdentityId, PendingCreate};
use crate::store::{
    in_line_on_records, lent_only, AccountSummary, EngineState, InLine, LinkedAccount, PendingCreateChange,
    PendingCreates, PendingPlan, PlanId, Store, StoreError,
};
use crate::text::Text;

/// Lends an identity's record (its id and bytes) by the position that asked for it.
type BlobVisit<'a> = dyn FnMut(usize, Option<(i64, &[u8])>) -> Result<(), StoreError> + 'a;
use crate::thresholds::{Base, Exceeded};

/// Reads one account record (its key and blob) as a `T`.
type RecordReader<'a, T> = dyn Fn(String, &[u8]) -> Result<T, StoreError> + 'a;

/// The version of the table layout this build reads and writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The tables of accounts and identities with their indexes (version 2), apart from
/// the rest of [`SCHEMA`]: the migration from version 1 creates them anew.
const RECORD_TABLES: &str = "
CREATE TABLE attrflow_names (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (scope, name)
);
CREATE TABLE attrflow_accounts (
    system TEXT NOT NULL,
    key TEXT NOT NULL,
    identity INTEGER,
    link_values INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (system, key)
) WITHOUT ROWID;
CREATE INDEX attrflow_accounts_by_identity
    ON attrflow_accounts (identity, system, key) WHERE identity IS NOT NULL;
CREATE TABLE attrflow_identities (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
";

const SCHEMA: &str = "
CREATE TABLE attrflow_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value
) WITHOUT ROWID;
CREATE TABLE attrflow_systems (
    system TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE attrflow_index_spec (
    attribute TEXT PRIMARY KEY NOT NULL,
    case_exact INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE attrflow_identity_index (
    attribute TEXT NOT NULL,
    match_key TEXT NOT NULL,
    identity INTEGER NOT NULL,
    PRIMARY KEY (attribute, match_key, identity)
) WITHOUT ROWID;
CREATE INDEX attrflow_identity_index_by_identity ON attrflow_identity_index (identity);
CREATE TABLE attrflow_pending_plans (
    id INTEGER PRIMARY KEY,
    system TEXT NOT NULL,
    data TEXT NOT NULL,
    floats TEXT NOT NULL
);
";

/// The page cache of a store's connection, in KiB.
const CACHE_KIB: u32 = 64 * 1024;

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NEXT_IDENTITY: &str = "next_identity";
const META_NEXT_PLAN: &str = "next_plan";
const META_ENGINE_STATE: &str = "engine_state";
const META_ENGINE_STATE_FLOATS: &str = "engine_state_floats";

/// Why a database could not be opened as a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite failed (the file cannot be opened, is not a database, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database was written with another table layout.
    #[error(
        "the database holds attrflow schema version {}, this build reads version {supported}",
        found.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
    )]
    SchemaVersion {
        /// The version recorded in the database (`None` when the row is missing or unreadable).
        found: Option<i64>,
        /// The version this build reads ([`SCHEMA_VERSION`]).
        supported: i64,
    },
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> StoreError {
        match e {
            OpenError::Store(e) => e,
            other => StoreError::new(other.to_string()),
        }
    }
}

/// A [`Store`] in a SQLite database. See the [module documentation](self) for the
/// tables and the transaction rules.
///
/// A host opens it once and hands it to the engine:
/// `Engine::with_store(config, SqliteStore::open("attrflow.db")?)`.
///
/// ```
/// use attrflow::sqlite_store::SqliteStore;
/// use attrflow::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut store = SqliteStore::open_in_memory()?;
/// store.begin()?;
/// let id = store.allocate_identity_id()?;
/// store.rollback();
/// assert_eq!(store.allocate_identity_id()?, id, "the rolled-back allocation is undone");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// Open units of work (`begin` without `commit` / `rollback`); 0 = autocommit.
    depth: Cell<usize>,
    /// Set when a failure rolled the open unit of work back; cleared by the next
    /// `commit` (which reports it), `rollback` or `begin`.
    failed: Cell<bool>,
    /// The cached names table (see `names`).
    names: RefCell<names::NameTable>,
}

/// A failure of one operation, naming it.
fn sql_error(op: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::new(format!("sqlite store: {op}: {e}"))
}

/// A record that does not decode, naming the operation and what was wrong.
fn record_error(op: &str) -> impl Fn(record::DecodeError) -> StoreError + '_ {
    move |e| StoreError::new(format!("sqlite store: {op}: a stored record is damaged: {e}"))
}

fn json_error(op: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::new(format!("sqlite store: {op}: stored JSON does not fit: {e}"))
}

fn to_i64(op: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::new(format!("sqlite store: {op}: {value} is too large for SQLite")))
}

fn to_u64(op: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::new(format!("sqlite store: {op}: negative number {value} stored")))
}

// ---------------------------------------------------------------- exact floats

/// Appends the bits of every float in `value`, in document order.
fn collect_floats(value: &serde_json::Value, out: &mut Vec<u64>) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                out.push(f.to_bits());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_floats(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_floats(v, out)),
        _ => {}
    }
}

/// Puts back the exact floats `collect_floats` took, in the same order.
fn restore_floats(value: &mut serde_json::Value, bits: &mut std::slice::Iter<'_, u64>) -> Result<(), String> {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let Some(b) = bits.next() else {
                return Err("fewer stored floats than numbers".into());
            };
            *n = serde_json::Number::from_f64(f64::from_bits(*b)).ok_or("a stored float is not finite")?;
        }
        serde_json::Value::Array(items) => {
            for v in items {
                restore_floats(v, bits)?;
            }
        }
        serde_json::Value::Object(map) => {
            for v in map.values_mut() {
                restore_floats(v, bits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A value as JSON text plus the bits of its floats, in document order.
fn encode_exact<T: serde::Serialize>(op: &str, value: &T) -> Result<(String, Vec<u64>), StoreError> {
    let json = serde_json::to_value(value).map_err(json_error(op))?;
    let mut floats = Vec::new();
    collect_floats(&json, &mut floats);
    Ok((json.to_string(), floats))
}

/// The inverse of [`encode_exact`].
/// From this many keys on, [`Store::visit_accounts_by_key`] scans the system's
/// accounts once instead of querying each key.
const SCAN_FROM: usize = 256;

fn decode_exact<T: serde::de::DeserializeOwned>(op: &str, data: &str, floats: &[u64]) -> Result<T, StoreError> {
    let mut json: serde_json::Value = serde_json::from_str(data).map_err(json_error(op))?;
    let mut bits = floats.iter();
    restore_floats(&mut json, &mut bits)
        .and_then(|()| match bits.next() {
            Some(_) => Err("more stored floats than numbers".into()),
            None => Ok(()),
        })
        .map_err(|e| StoreError::new(format!("sqlite store: {op}: {e}")))?;
    serde_json::from_value(json).map_err(json_error(op))
}

/// The exact floats of a stored plan (its `floats` column, as JSON).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PlanFloats {
    /// `(limit, percent)` of each exceeded threshold, which may be infinite (a first
    /// load over a percentage limit) and so have no JSON form.
    exceeded: Vec<(u64, Option<u64>)>,
    /// Every other float of the plan, in document order.
    #[serde(default)]
    other: Vec<u64>,
}

fn exceeded_mut(plan: &mut PendingPlan) -> &mut Vec<Exceeded> {
    match plan {
        PendingPlan::Import(p) => &mut p.exceeded,
        PendingPlan::Outbound(p) => &mut p.exceeded,
    }
}

/// A plan as JSON plus its exact floats (JSON of [`PlanFloats`]).
fn encode_plan(op: &str, plan: &PendingPlan) -> Result<(String, String), StoreError> {
    let mut plan = plan.clone();
    let mut floats = PlanFloats::default();
    for e in exceeded_mut(&mut plan) {
        floats.exceeded.push((e.limit.to_bits(), e.percent.map(f64::to_bits)));
        e.limit = 0.0;
        e.percent = e.percent.map(|_| 0.0);
    }
    let (data, other) = encode_exact(op, &plan)?;
    floats.other = other;
    let floats = serde_json::to_string(&floats).map_err(json_error(op))?;
    Ok((data, floats))
}

/// The inverse of [`encode_plan`].
fn decode_plan(op: &str, data: &str, floats: &str) -> Result<PendingPlan, StoreError> {
    let floats: PlanFloats = serde_json::from_str(floats).map_err(json_error(op))?;
    let mut plan: PendingPlan = decode_exact(op, data, &floats.other)?;
    let exceeded = exceeded_mut(&mut plan);
    if exceeded.len() != floats.exceeded.len() {
        return Err(StoreError::new(format!(
            "sqlite store: {op}: {} stored threshold figures for {} exceeded thresholds",
            floats.exceeded.len(),
            exceeded.len()
        )));
    }
    for (e, (limit, percent)) in exceeded.iter_mut().zip(floats.exceeded) {
        e.limit = f64::from_bits(limit);
        e.percent = percent.map(f64::from_bits);
    }
    Ok(plan)
}

// ---------------------------------------------------------------- opening

impl SqliteStore {
    /// Opens (creating if needed) the store in the database file at `path`.
    ///
    /// A new database gets the tables; an existing one must hold this build's
    /// [`SCHEMA_VERSION`], or [`OpenError::SchemaVersion`] is returned and nothing is
    /// changed.
    ///
    /// # Example
    /// An engine over a database file: what one process imported, the next one finds.
    /// ```
    /// use attrflow::sqlite_store::SqliteStore;
    /// use attrflow::{Engine, Snapshot, ValidatedConfig};
    /// use chrono::{TimeZone, Utc};
    /// use serde_json::json;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = || ValidatedConfig::from_json(&json!({
    ///     "identity": { "attributes": { "employeeNumber": { "type": "string" } } },
    ///     "systems": { "hr": {
    ///         "schema": { "account_id": "id", "account_name": "id", "attributes": { "id": { "type": "string" } } },
    ///         "authoritative": true,
    ///         "correlation": [[{ "account": "id", "identity": "employeeNumber" }]],
    ///         "flows": [{ "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100 }] } }
    /// }).to_string());
    /// let path = std::env::temp_dir().join(format!("attrflow-doc-{}.db", std::process::id()));
    /// let now = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    /// {
    ///     let mut engine = Engine::with_store(config()?, SqliteStore::open(&path)?)?;
    ///     let hr: Snapshot = serde_json::from_value(json!({ "mode": "complete", "columns": ["id"], "rows": [{ "id": "E1" }] }))?;
    ///     assert!(engine.import("hr", &hr, now)?.applied);
    /// }
    /// let engine = Engine::with_store(config()?, SqliteStore::open(&path)?)?;
    /// assert_eq!(engine.identity_count()?, 1);
    /// # drop(engine);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| StoreError::new(format!("sqlite store: open {}: {e}", path.display())))?;
        SqliteStore::init(conn)
    }

    /// A new store in a private in-memory database (gone when dropped).
    pub fn open_in_memory() -> Result<SqliteStore, OpenError> {
        let conn = Connection::open_in_memory().map_err(sql_error("open_in_memory"))?;
        SqliteStore::init(conn)
    }

    fn init(conn: Connection) -> Result<SqliteStore, OpenError> {
        let op = "open";
        // SQLite's default page cache is 2 MB: a store of a million identities is read
        // and written a page at a time through the operating system. 64 MiB keeps the
        // indexes and the pages a batch touches in the process.
        conn.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB}"))
            .map_err(sql_error(op))?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error(op))?;
        match SqliteStore::prepare_schema(&conn) {
            Ok(()) => {
                if let Err(e) = conn.execute_batch("COMMIT").map_err(sql_error(op)) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok(SqliteStore {
            conn,
            depth: Cell::new(0),
            failed: Cell::new(false),
            names: RefCell::new({
                let mut names = names::NameTable::default();
                // Read on first use.
                names.invalidate();
                names
            }),
        })
    }

    /// Creates the tables in a new database, or checks the schema version of an
    /// existing one.
    fn prepare_schema(conn: &Connection) -> Result<(), OpenError> {
        let op = "open";
        let exists: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'attrflow_meta'",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error(op))?;
        if exists > 0 {
            let found = match conn.query_row(
                "SELECT value FROM attrflow_meta WHERE name = ?1",
                [META_SCHEMA_VERSION],
                |row| row.get::<_, i64>(0),
            ) {
                Ok(version) => Some(version),
                Err(
                    rusqlite::Error::QueryReturnedNoRows
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..),
                ) => None,
                Err(e) => return Err(sql_error(op)(e).into()),
            };
            if found == Some(1) {
                return migrate::from_version_1(conn);
            }
            if found != Some(SCHEMA_VERSION) {
                return Err(OpenError::SchemaVersion {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            return Ok(());
        }
        conn.execute_batch(SCHEMA).map_err(sql_error(op))?;
        conn.execute_batch(RECORD_TABLES).map_err(sql_error(op))?;
        let mut insert = conn
            .prepare("INSERT INTO attrflow_meta (name, value) VALUES (?1, ?2)")
            .map_err(sql_error(op))?;
        for (name, value) in [
            (META_SCHEMA_VERSION, SCHEMA_VERSION),
            (META_NEXT_IDENTITY, 0),
            (META_NEXT_PLAN, 0),
        ] {
            insert.execute(params![name, value]).map_err(sql_error(op))?;
        }
        Ok(())
    }

    /// Whether a unit of work ([`Store::begin`]) is open.
    pub fn in_unit_of_work(&self) -> bool {
        self.depth.get() > 0
    }

    // ------------------------------------------------------------ failure handling

    /// Passes a result through; a failure inside a unit of work rolls the whole unit
    /// back first (see the module documentation).
    fn guard<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            // Names given out by what was rolled back are taken back.
            self.names.borrow_mut().invalidate();
        }
        if result.is_err() && self.depth.get() > 0 {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.depth.set(0);
            self.failed.set(true);
        }
        result
    }

    /// Runs the writes of one call in a savepoint: all of them or none.
    fn write<T>(&self, op: &str, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = (|| {
            self.conn
                .execute_batch("SAVEPOINT attrflow_call")
                .map_err(sql_error(op))?;
            match f(&self.conn) {
                Ok(value) => {
                    if let Err(e) = self.conn.execute_batch("RELEASE attrflow_call").map_err(sql_error(op)) {
                        let _ = self
                            .conn
                            .execute_batch("ROLLBACK TO attrflow_call; RELEASE attrflow_call");
                        return Err(e);
                    }
                    Ok(value)
                }
                Err(e) => {
                    let _ = self
                        .conn
                        .execute_batch("ROLLBACK TO attrflow_call; RELEASE attrflow_call");
                    Err(e)
                }
            }
        })();
        self.guard(result)
    }

    // ------------------------------------------------------------ helpers

    /// An account from its stored blob.
    fn decode_account(&self, op: &str, key: String, data: &[u8]) -> Result<Account, StoreError> {
        let mut names = self.names.borrow_mut();
        record::decode_account(key, data, &mut |id| name_of(&mut names, &self.conn, op, id)).map_err(record_error(op))
    }

    /// An identity from its stored blob.
    fn decode_identity(&self, op: &str, id: i64, data: &[u8]) -> Result<Identity, StoreError> {
        self.decode_identity_reading(op, id, data, None)
    }

    /// The identity of a blob with the values of the attributes numbered `wanted` only
    /// (all with `None`).
    fn decode_identity_reading(
        &self,
        op: &str,
        id: i64,
        data: &[u8],
        wanted: Option<&[u32]>,
    ) -> Result<Identity, StoreError> {
        let id = IdentityId::from_raw(to_u64(op, id)?);
        let mut names = self.names.borrow_mut();
        record::decode_identity_reading(
            id,
            data,
            wanted,
            &mut |n| name_of(&mut names, &self.conn, op, n),
            &record::NoReferences,
        )
        .map_err(record_error(op))
    }

    /// The numbers of attribute names (a name without one is in no record: left out).
    fn name_numbers(&self, op: &str, names: &[&str]) -> Result<Vec<u32>, StoreError> {
        let mut table = self.names.borrow_mut();
        let mut numbers = Vec::with_capacity(names.len());
        for name in names {
            numbers.extend(table.number(&self.conn, op, name)?);
        }
        Ok(numbers)
    }

    /// The blob of an account, with its fingerprint.
    fn encode_account(
        &self,
        conn: &Connection,
        op: &str,
        account: &Account,
        fingerprint: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut names = self.names.borrow_mut();
        out.clear();
        record::encode_account(
            account,
            fingerprint,
            &mut Dictionary {
                names: &mut names,
                conn,
                op,
            },
            out,
        )
    }

    /// The blob of an identity.
    fn encode_identity(
        &self,
        conn: &Connection,
        op: &str,
        identity: &Identity,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut names = self.names.borrow_mut();
        out.clear();
        record::encode_identity(
            identity,
            &mut Dictionary {
                names: &mut names,
                conn,
                op,
            },
            out,
        )
    }

    fn meta_i64(conn: &Connection, op: &str, name: &str) -> Result<i64, StoreError> {
        conn.prepare_cached("SELECT value FROM attrflow_meta WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
            .map_err(sql_error(op))
            .map(Option::unwrap_or_default)
    }

    fn set_meta(conn: &Connection, op: &str, name: &str, value: &dyn rusqlite::ToSql) -> Result<(), StoreError> {
        conn.prepare_cached("INSERT OR REPLACE INTO attrflow_meta (name, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![name, value]))
            .map_err(sql_error(op))
            .map(|_| ())
    }

    /// Increments a counter and returns its new value.
    fn next_counter(conn: &Connection, op: &str, name: &str) -> Result<u64, StoreError> {
        let next = SqliteStore::meta_i64(conn, op, name)?
            .checked_add(1)
            .ok_or_else(|| StoreError::new(format!("sqlite store: {op}: counter overflow")))?;
        SqliteStore::set_meta(conn, op, name, &next)?;
        to_u64(op, next)
    }

    fn index_spec(conn: &Connection, op: &str) -> Result<HashMap<String, bool>, StoreError> {
        let mut stmt = conn
            .prepare_cached("SELECT attribute, case_exact FROM attrflow_index_spec")
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?)))
            .map_err(sql_error(op))?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(sql_error(op))
    }

    /// The index entries `(attribute, match_key)` of one identity, sorted.
    fn index_entries<'s>(spec: &'s HashMap<String, bool>, identity: &Identity) -> Vec<(&'s str, String)> {
        let mut entries: Vec<(&str, String)> = spec
            .iter()
            .flat_map(|(attribute, case_exact)| {
                identity
                    .value(attribute)
                    .scalars()
                    .iter()
                    .map(|scalar| (attribute.as_str(), scalar.match_key(*case_exact)))
            })
            .collect();
        entries.sort_unstable();
        entries.dedup();
        entries
    }

    /// Adds the index entries of one identity.
    fn index_identity(
        conn: &Connection,
        op: &str,
        spec: &HashMap<String, bool>,
        identity: &Identity,
    ) -> Result<(), StoreError> {
        let id = to_i64(op, identity.id.get())?;
        let mut insert = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO attrflow_identity_index (attribute, match_key, identity) VALUES (?1, ?2, ?3)",
            )
            .map_err(sql_error(op))?;
        for (attribute, case_exact) in spec {
            for scalar in identity.value(attribute).scalars() {
                insert
                    .execute(params![attribute, scalar.match_key(*case_exact), id])
                    .map_err(sql_error(op))?;
            }
        }
        Ok(())
    }

    fn read_identities(&self, op: &str, visit: &mut dyn FnMut(Identity)) -> Result<(), StoreError> {
        self.read_identities_after(op, None, &mut |identity| {
            visit(identity);
            true
        })
    }

    /// Identities with ids above `after`, in id order, until `visit` returns false: a
    /// page is read from the primary key, not from a scan.
    fn read_identities_after(
        &self,
        op: &str,
        after: Option<IdentityId>,
        visit: &mut dyn FnMut(Identity) -> bool,
    ) -> Result<(), StoreError> {
        let start = match after {
            Some(id) => to_i64(op, id.get())?,
            None => i64::MIN,
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, data FROM attrflow_identities WHERE id > ?1 ORDER BY id")
            .map_err(sql_error(op))?;
        let mut rows = stmt.query([start]).map_err(sql_error(op))?;
        while let Some(row) = rows.next().map_err(sql_error(op))? {
            let id: i64 = row.get(0).map_err(sql_error(op))?;
            let data = blob_at(row, 1).map_err(sql_error(op))?;
            if !visit(self.decode_identity(op, id, data)?) {
                break;
            }
        }
        Ok(())
    }

    fn set_index_inner(&mut self, attributes: &[(String, bool)]) -> Result<(), StoreError> {
        let op = "set_index";
        let wanted: HashMap<String, bool> = attributes.iter().cloned().collect();
        if wanted == SqliteStore::index_spec(&self.conn, op)? {
            return Ok(());
        }
        let mut identities = Vec::new();
        self.read_identities(op, &mut |i| identities.push(i))?;
        self.write(op, |conn| {
            conn.execute_batch("DELETE FROM attrflow_index_spec; DELETE FROM attrflow_identity_index;")
                .map_err(sql_error(op))?;
            let mut insert = conn
                .prepare_cached("INSERT INTO attrflow_index_spec (attribute, case_exact) VALUES (?1, ?2)")
                .map_err(sql_error(op))?;
            for (attribute, case_exact) in &wanted {
                insert.execute(params![attribute, case_exact]).map_err(sql_error(op))?;
            }
            for identity in &identities {
                SqliteStore::index_identity(conn, op, &wanted, identity)?;
            }
            Ok(())
        })
    }

    fn account_inner(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        let op = "account";
        let data: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT data FROM attrflow_accounts WHERE system = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row([system, key], |row| row.get(0)).optional())
            .map_err(sql_error(op))?;
        data.map(|d| self.decode_account(op, key.to_owned(), &d)).transpose()
    }

    fn visit_accounts_by_key_inner(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<(), StoreError> {
        let op = "visit_accounts_by_key";
        // Many keys (a complete import): one scan of the system's accounts instead of a
        // query per key; only the accounts asked for are decoded.
        if keys.len() >= SCAN_FROM {
            return self.scan_accounts_by_key(op, system, keys, visit, None);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM attrflow_accounts WHERE system = ?1 AND key = ?2")
            .map_err(sql_error(op))?;
        for (index, key) in keys.iter().enumerate() {
            let data: Option<Vec<u8>> = stmt
                .query_row([system, key], |row| row.get(0))
                .optional()
                .map_err(sql_error(op))?;
            let account: Option<Account> = data
                .map(|d| self.decode_account(op, (*key).to_owned(), &d))
                .transpose()?;
            visit(index, account.as_ref());
        }
        Ok(())
    }

    /// One scan of the system's accounts: those of `keys` to `visit` (by position;
    /// `None` for keys not stored), and, with `others`, every other one to it (a
    /// complete import asks for every key its snapshot holds and learns its deletes from
    /// the others). Each account is decoded at most once; without `others` the ones
    /// not asked for are not decoded.
    fn scan_accounts_by_key(
        &self,
        op: &str,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
        others: Option<&mut dyn FnMut(&Account)>,
    ) -> Result<(), StoreError> {
        self.scan_by_key(
            op,
            system,
            keys,
            &|key, data| self.decode_account(op, key, data),
            visit,
            others,
        )
    }

    /// [`SqliteStore::scan_accounts_by_key`] with each record read by `decode` (an
    /// account, or only what a complete import needs of it).
    fn scan_by_key<T>(
        &self,
        op: &str,
        system: &str,
        keys: &[&str],
        decode: &RecordReader<'_, T>,
        visit: &mut dyn FnMut(usize, Option<&T>),
        mut others: Option<&mut dyn FnMut(&T)>,
    ) -> Result<(), StoreError> {
        let mut positions: HashMap<&str, SmallVec<[usize; 1]>> = HashMap::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            positions.entry(*key).or_default().push(index);
        }
        let mut seen = vec![false; keys.len()];
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, data FROM attrflow_accounts WHERE system = ?1")
            .map_err(sql_error(op))?;
        let mut rows = stmt.query([system]).map_err(sql_error(op))?;
        while let Some(row) = rows.next().map_err(sql_error(op))? {
            let key: String = row.get(0).map_err(sql_error(op))?;
            let at = positions.get(key.as_str());
            if at.is_none() && others.is_none() {
                continue;
            }
            let account = decode(key, blob_at(row, 1).map_err(sql_error(op))?)?;
            match (at, others.as_mut()) {
                (Some(at), _) => {
                    for &index in at {
                        if let Some(slot) = seen.get_mut(index) {
                            *slot = true;
                        }
                        visit(index, Some(&account));
                    }
                }
                (None, Some(others)) => others(&account),
                (None, None) => {}
            }
        }
        for (index, seen) in seen.into_iter().enumerate() {
            if !seen {
                visit(index, None);
            }
        }
        Ok(())
    }

    fn visit_accounts_inner(&self, system: &str, visit: &mut dyn FnMut(&Account)) -> Result<(), StoreError> {
        let op = "visit_accounts";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, data FROM attrflow_accounts WHERE system = ?1 ORDER BY key")
            .map_err(sql_error(op))?;
        let mut rows = stmt.query([system]).map_err(sql_error(op))?;
        while let Some(row) = rows.next().map_err(sql_error(op))? {
            let key: String = row.get(0).map_err(sql_error(op))?;
            let data = blob_at(row, 1).map_err(sql_error(op))?;
            let account = self.decode_account(op, key, data)?;
            visit(&account);
        }
        Ok(())
    }

    fn account_base_inner(&self, system: &str) -> Result<Base, StoreError> {
        let op = "account_base";
        let (accounts, link_values): (i64, i64) = self
            .conn
            .prepare_cached("SELECT COUNT(*), COALESCE(SUM(link_values), 0) FROM attrflow_accounts WHERE system = ?1")
            .and_then(|mut s| s.query_row([system], |row| Ok((row.get(0)?, row.get(1)?))))
            .map_err(sql_error(op))?;
        Ok(Base::new(to_u64(op, accounts)?, to_u64(op, link_values)?))
    }

    fn visit_linked_accounts_inner(
        &self,
        system: &str,
        reading: Option<&[&str]>,
        in_line: Option<&InLine>,
        visit: &mut dyn FnMut(LinkedAccount<'_>),
    ) -> Result<(), StoreError> {
        let op = "visit_linked_accounts";
        let wanted = reading.map(|names| self.name_numbers(op, names)).transpose()?;
        // The pairs' names numbered, and the cached dictionary fresh, before any row.
        let numbered = match in_line {
            Some(check) => {
                let number = |name: Option<&str>| -> Result<Option<u32>, StoreError> {
                    match name {
                        Some(name) => self.names.borrow_mut().number(&self.conn, op, name),
                        None => Ok(None),
                    }
                };
                let mut identity = Vec::with_capacity(check.pairs().len());
                let mut account = Vec::with_capacity(check.pairs().len());
                for pair in check.pairs() {
                    identity.push(number(pair.identity.as_deref())?);
                    account.push(number(Some(&pair.account))?);
                }
                self.names.borrow_mut().fresh(&self.conn, op)?;
                Some((check.pairs(), identity, account))
            }
            None => None,
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.key, a.data, i.id, i.data FROM attrflow_accounts a \
                 JOIN attrflow_identities i ON i.id = a.identity WHERE a.system = ?1",
            )
            .map_err(sql_error(op))?;
        let mut rows = stmt.query([system]).map_err(sql_error(op))?;
        while let Some(row) = rows.next().map_err(sql_error(op))? {
            let id: i64 = row.get(2).map_err(sql_error(op))?;
            if let Some((pairs, identity_numbers, account_numbers)) = &numbered {
                let key = row
                    .get_ref(0)
                    .and_then(|v| v.as_str().map_err(Into::into))
                    .map_err(sql_error(op))?;
                let account_data = blob_at(row, 1).map_err(sql_error(op))?;
                let identity_data = blob_at(row, 3).map_err(sql_error(op))?;
                let names = self.names.borrow();
                let text = |n: u32| names.cached(n);
                // This store writes no shaped identity; a record it cannot tell here
                // (a text not cached, a damaged one) is decoded below.
                let found = in_line_on_records(
                    pairs,
                    (key, account_data, account_numbers),
                    identity_numbers,
                    &|_| Some(identity_data),
                    &|_, shape, _, _| Err(format!("shape {shape}: this store writes no shaped identity")),
                    &text,
                );
                if let Ok(Some(identity)) = found {
                    visit(LinkedAccount::InLine(identity));
                    continue;
                }
            }
            let key: String = row.get(0).map_err(sql_error(op))?;
            let account = self.decode_account(op, key, blob_at(row, 1).map_err(sql_error(op))?)?;
            let identity =
                self.decode_identity_reading(op, id, blob_at(row, 3).map_err(sql_error(op))?, wanted.as_deref())?;
            visit(LinkedAccount::Lent(&account, &identity));
        }
        Ok(())
    }

    fn linked_accounts_inner(&self, system: &str) -> Result<Vec<(IdentityId, String)>, StoreError> {
        let op = "linked_accounts";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT identity, key FROM attrflow_accounts WHERE system = ?1 AND identity IS NOT NULL")
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([system], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
            .map_err(sql_error(op))?;
        let mut linked = Vec::new();
        for row in rows {
            let (id, key) = row.map_err(sql_error(op))?;
            linked.push((IdentityId::from_raw(to_u64(op, id)?), key));
        }
        Ok(linked)
    }

    fn visit_identities_by_id_inner(
        &self,
        ids: &[IdentityId],
        reading: Option<&[&str]>,
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        let op = "visit_identities_by_id";
        let wanted = reading.map(|names| self.name_numbers(op, names)).transpose()?;
        self.visit_identity_blobs_by_id(op, ids, &mut |at, blob| {
            match blob {
                Some((id, data)) => visit(
                    at,
                    Some(&self.decode_identity_reading(op, id, data, wanted.as_deref())?),
                ),
                None => visit(at, None),
            }
            Ok(())
        })
    }

    fn visit_pending_creates_by_id_inner(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&PendingCreates>),
    ) -> Result<(), StoreError> {
        let op = "visit_pending_creates_by_id";
        // One list for every identity, refilled (in system name order, as the map's).
        let mut pending: Vec<(Text, PendingCreate)> = Vec::new();
        self.visit_identity_blobs_by_id(op, ids, &mut |at, blob| {
            match blob {
                Some((_, data)) => {
                    pending.clear();
                    pending.extend(record::pending_creates(data).map_err(record_error(op))?);
                    visit(at, Some(&pending));
                }
                None => visit(at, None),
            }
            Ok(())
        })
    }

    /// The records of `ids`, each lent with the id's position (`None`: absent), in any
    /// order; the same record is lent once per position asking for it.
    fn visit_identity_blobs_by_id(
        &self,
        op: &str,
        ids: &[IdentityId],
        visit: &mut BlobVisit<'_>,
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<(u64, usize)> = ids.iter().enumerate().map(|(at, id)| (id.get(), at)).collect();
        wanted.sort_unstable();
        let (Some(&(first, _)), Some(&(last, _))) = (wanted.first(), wanted.last()) else {
            return Ok(());
        };
        // Many ids close together (a batch over a range of identities): one scan of the
        // range, reading only the ids asked for; otherwise a query per id.
        let dense = last.saturating_sub(first) / 8 < wanted.len() as u64;
        if wanted.len() < SCAN_FROM || !dense {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT data FROM attrflow_identities WHERE id = ?1")
                .map_err(sql_error(op))?;
            for (at, id) in ids.iter().enumerate() {
                let raw = to_i64(op, id.get())?;
                let data: Option<Vec<u8>> = stmt
                    .query_row([raw], |row| row.get(0))
                    .optional()
                    .map_err(sql_error(op))?;
                visit(at, data.as_deref().map(|d| (raw, d)))?;
            }
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, data FROM attrflow_identities WHERE id >= ?1 AND id <= ?2 ORDER BY id")
            .map_err(sql_error(op))?;
        let mut rows = stmt
            .query([to_i64(op, first)?, to_i64(op, last)?])
            .map_err(sql_error(op))?;
        let mut next = 0;
        while let Some(row) = rows.next().map_err(sql_error(op))? {
            let id: i64 = row.get(0).map_err(sql_error(op))?;
            let id_u64 = to_u64(op, id)?;
            // Ids asked for below this row's are absent.
            while let Some(&(_, at)) = wanted.get(next).filter(|(w, _)| *w < id_u64) {
                visit(at, None)?;
                next += 1;
            }
            if wanted.get(next).is_some_and(|(w, _)| *w == id_u64) {
                let data = blob_at(row, 1).map_err(sql_error(op))?;
                while let Some(&(_, at)) = wanted.get(next).filter(|(w, _)| *w == id_u64) {
                    visit(at, Some((id, data)))?;
                    next += 1;
                }
            }
        }
        for &(_, at) in wanted.get(next..).unwrap_or_default() {
            visit(at, None)?;
        }
        Ok(())
    }

    fn accounts_of_inner(&self, identity: IdentityId) -> Result<Vec<(String, String)>, StoreError> {
        let op = "accounts_of";
        let id = to_i64(op, identity.get())?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT system, key FROM attrflow_accounts WHERE identity = ?1 ORDER BY system, key")
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql_error(op))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_error(op))
    }

    fn identity_inner(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        let op = "identity";
        let raw = to_i64(op, id.get())?;
        let data: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT data FROM attrflow_identities WHERE id = ?1")
            .and_then(|mut s| s.query_row([raw], |row| row.get(0)).optional())
            .map_err(sql_error(op))?;
        data.map(|d| self.decode_identity(op, raw, &d)).transpose()
    }

    fn identity_count_inner(&self) -> Result<usize, StoreError> {
        let op = "identity_count";
        let count: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM attrflow_identities")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(sql_error(op))?;
        usize::try_from(count).map_err(|_| StoreError::new(format!("sqlite store: {op}: bad count {count}")))
    }

    fn find_identities_inner(&self, attribute: &str, match_key: &str) -> Result<Vec<IdentityId>, StoreError> {
        let op = "find_identities";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT identity FROM attrflow_identity_index \
                 WHERE attribute = ?1 AND match_key = ?2 ORDER BY identity",
            )
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([attribute, match_key], |row| row.get::<_, i64>(0))
            .map_err(sql_error(op))?;
        let mut found = Vec::new();
        for id in rows {
            found.push(IdentityId::from_raw(to_u64(op, id.map_err(sql_error(op))?)?));
        }
        Ok(found)
    }

    fn system_version_inner(&self, system: &str) -> Result<u64, StoreError> {
        let op = "system_version";
        let version: Option<i64> = self
            .conn
            .prepare_cached("SELECT version FROM attrflow_systems WHERE system = ?1")
            .and_then(|mut s| s.query_row([system], |row| row.get(0)).optional())
            .map_err(sql_error(op))?;
        to_u64(op, version.unwrap_or(0))
    }

    fn pending_plans_inner(&self) -> Result<Vec<PendingPlan>, StoreError> {
        let op = "pending_plans";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data, floats FROM attrflow_pending_plans ORDER BY id")
            .map_err(sql_error(op))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .map_err(sql_error(op))?;
        let mut plans = Vec::new();
        for row in rows {
            let (data, floats) = row.map_err(sql_error(op))?;
            plans.push(decode_plan(op, &data, &floats)?);
        }
        Ok(plans)
    }

    fn engine_state_inner(&self) -> Result<EngineState, StoreError> {
        let op = "engine_state";
        let read = |name: &str| -> Result<Option<String>, StoreError> {
            self.conn
                .prepare_cached("SELECT value FROM attrflow_meta WHERE name = ?1")
                .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
                .map_err(sql_error(op))
        };
        let Some(data) = read(META_ENGINE_STATE)? else {
            return Ok(EngineState::default());
        };
        let floats: Vec<u64> = match read(META_ENGINE_STATE_FLOATS)? {
            Some(floats) => serde_json::from_str(&floats).map_err(json_error(op))?,
            None => Vec::new(),
        };
        decode_exact(op, &data, &floats)
    }
}

// ---------------------------------------------------------------- the trait

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        let op = "begin";
        self.failed.set(false);
        let depth = self.depth.get();
        let sql = if depth == 0 {
            "BEGIN IMMEDIATE".to_owned()
        } else {
            format!("SAVEPOINT attrflow_unit_{depth}")
        };
        self.conn.execute_batch(&sql).map_err(sql_error(op))?;
        self.depth.set(depth + 1);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let op = "commit";
        let depth = self.depth.get();
        if depth == 0 {
            if self.failed.replace(false) {
                return Err(StoreError::new(
                    "sqlite store: commit: the unit of work was rolled back after an earlier failure",
                ));
            }
            return Err(StoreError::new("sqlite store: commit: no unit of work is open"));
        }
        if depth > 1 {
            let sql = format!("RELEASE attrflow_unit_{}", depth - 1);
            let result = self.conn.execute_batch(&sql).map_err(sql_error(op));
            if result.is_ok() {
                self.depth.set(depth - 1);
            }
            return self.guard(result);
        }
        let result = self.conn.execute_batch("COMMIT").map_err(sql_error(op));
        if result.is_err() {
            self.names.borrow_mut().invalidate();
        }
        if result.is_err() && !self.conn.is_autocommit() {
            // A failed COMMIT may leave the transaction open: abandon it, nothing applied.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.depth.set(0);
        result
    }

    fn rollback(&mut self) {
        self.failed.set(false);
        self.names.borrow_mut().invalidate();
        let depth = self.depth.get();
        if depth == 0 {
            return;
        }
        let undone = if depth > 1 {
            let sp = format!("attrflow_unit_{}", depth - 1);
            self.conn
                .execute_batch(&format!("ROLLBACK TO {sp}; RELEASE {sp}"))
                .is_ok()
        } else {
            false
        };
        if undone {
            self.depth.set(depth - 1);
        } else {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.depth.set(0);
        }
    }

    fn set_index(&mut self, attributes: &[(String, bool)]) -> Result<(), StoreError> {
        let result = self.set_index_inner(attributes);
        self.guard(result)
    }

    fn account(&self, system: &str, key: &str) -> Result<Option<Account>, StoreError> {
        self.guard(self.account_inner(system, key))
    }

    fn visit_accounts_by_key(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_accounts_by_key_inner(system, keys, visit))
    }

    fn visit_accounts_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Account>),
        others: &mut dyn FnMut(&Account),
    ) -> Result<(), StoreError> {
        self.guard(self.scan_accounts_by_key("visit_accounts_by_key_and_others", system, keys, visit, Some(others)))
    }

    fn visit_account_summaries_by_key_and_others(
        &self,
        system: &str,
        keys: &[&str],
        visit: &mut dyn FnMut(usize, Option<AccountSummary>),
        others: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError> {
        let op = "visit_account_summaries_by_key_and_others";
        let summary = |key: String, data: &[u8]| {
            record::account_summary(data)
                .map(|summary| (key, summary))
                .map_err(record_error(op))
        };
        self.guard(self.scan_by_key(
            op,
            system,
            keys,
            &summary,
            &mut |index, found| visit(index, found.map(|(_, summary)| *summary)),
            Some(&mut |(key, _): &(String, AccountSummary)| others(key)),
        ))
    }

    fn visit_accounts(&self, system: &str, visit: &mut dyn FnMut(&Account)) -> Result<(), StoreError> {
        self.guard(self.visit_accounts_inner(system, visit))
    }

    fn account_base(&self, system: &str) -> Result<Base, StoreError> {
        self.guard(self.account_base_inner(system))
    }

    fn put_accounts(&mut self, system: &str, accounts: Vec<Account>) -> Result<(), StoreError> {
        let op = "put_accounts";
        self.write(op, |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO attrflow_accounts (system, key, identity, link_values, data) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql_error(op))?;
            let mut data = Vec::new();
            // In key order: a large batch (a first load, a million confirmed creates)
            // then fills the table's B-tree from left to right instead of at random
            // pages. Stable, so of two versions of one key the later still wins.
            let mut sorted: Vec<&Account> = accounts.iter().collect();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            for account in sorted {
                let identity = account.identity().map(|id| to_i64(op, id.get())).transpose()?;
                let link_values = to_i64(op, account.link_values())?;
                // As the memory store does: the stored fingerprint always matches the
                // stored values, so a stale one can never hide a change from the diff.
                self.encode_account(conn, op, account, account.values_fingerprint(), &mut data)?;
                insert
                    .execute(params![system, account.key, identity, link_values, data])
                    .map_err(sql_error(op))?;
            }
            Ok(())
        })
    }

    fn remove_accounts(&mut self, system: &str, keys: &[String]) -> Result<(), StoreError> {
        let op = "remove_accounts";
        self.write(op, |conn| {
            let mut delete = conn
                .prepare_cached("DELETE FROM attrflow_accounts WHERE system = ?1 AND key = ?2")
                .map_err(sql_error(op))?;
            for key in keys {
                delete.execute(params![system, key]).map_err(sql_error(op))?;
            }
            Ok(())
        })
    }

    fn remove_system(&mut self, system: &str) -> Result<(), StoreError> {
        let op = "remove_system";
        self.write(op, |conn| {
            conn.prepare_cached("DELETE FROM attrflow_accounts WHERE system = ?1")
                .and_then(|mut s| s.execute([system]))
                .map_err(sql_error(op))
                .map(|_| ())
        })
    }

    fn accounts_of(&self, identity: IdentityId) -> Result<Vec<(String, String)>, StoreError> {
        self.guard(self.accounts_of_inner(identity))
    }

    fn linked_accounts(&self, system: &str) -> Result<Vec<(IdentityId, String)>, StoreError> {
        self.guard(self.linked_accounts_inner(system))
    }

    fn visit_linked_accounts(
        &self,
        system: &str,
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_linked_accounts_inner(system, None, None, &mut lent_only(visit)))
    }

    fn visit_linked_accounts_reading(
        &self,
        system: &str,
        reading: &[&str],
        visit: &mut dyn FnMut(&Account, &Identity),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_linked_accounts_inner(system, Some(reading), None, &mut lent_only(visit)))
    }

    fn visit_linked_accounts_out_of_line(
        &self,
        system: &str,
        reading: &[&str],
        in_line: &InLine,
        visit: &mut dyn FnMut(LinkedAccount<'_>),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_linked_accounts_inner(system, Some(reading), Some(in_line), visit))
    }

    fn visit_identities_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_identities_by_id_inner(ids, None, visit))
    }

    fn visit_identities_by_id_reading(
        &self,
        ids: &[IdentityId],
        reading: &[&str],
        visit: &mut dyn FnMut(usize, Option<&Identity>),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_identities_by_id_inner(ids, Some(reading), visit))
    }

    fn visit_pending_creates_by_id(
        &self,
        ids: &[IdentityId],
        visit: &mut dyn FnMut(usize, Option<&PendingCreates>),
    ) -> Result<(), StoreError> {
        self.guard(self.visit_pending_creates_by_id_inner(ids, visit))
    }

    fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        self.guard(self.identity_inner(id))
    }

    fn visit_identities(&self, visit: &mut dyn FnMut(&Identity)) -> Result<(), StoreError> {
        self.guard(self.read_identities("visit_identities", &mut |i| visit(&i)))
    }

    fn visit_identities_after(
        &self,
        after: Option<IdentityId>,
        visit: &mut dyn FnMut(&Identity) -> bool,
    ) -> Result<(), StoreError> {
        self.guard(self.read_identities_after("visit_identities_after", after, &mut |i| visit(&i)))
    }

    fn identity_count(&self) -> Result<usize, StoreError> {
        self.guard(self.identity_count_inner())
    }

    fn find_identities(&self, attribute: &str, match_key: &str) -> Result<Vec<IdentityId>, StoreError> {
        self.guard(self.find_identities_inner(attribute, match_key))
    }

    fn put_identities(&mut self, identities: Vec<Identity>) -> Result<(), StoreError> {
        let op = "put_identities";
        self.write(op, |conn| {
            let spec = SqliteStore::index_spec(conn, op)?;
            let mut next = SqliteStore::meta_i64(conn, op, META_NEXT_IDENTITY)?;
            let mut unindex = conn
                .prepare_cached("DELETE FROM attrflow_identity_index WHERE identity = ?1")
                .map_err(sql_error(op))?;
            let mut indexed = conn
                .prepare_cached(
                    "SELECT attribute, match_key FROM attrflow_identity_index WHERE identity = ?1 \
                     ORDER BY attribute, match_key",
                )
                .map_err(sql_error(op))?;
            let mut insert = conn
                .prepare_cached("INSERT OR REPLACE INTO attrflow_identities (id, data) VALUES (?1, ?2)")
                .map_err(sql_error(op))?;
            // In id order, the last version of an id only.
            let mut sorted: Vec<&Identity> = identities.iter().collect();
            sorted.sort_by_key(|identity| identity.id);
            let mut last: Vec<&Identity> = Vec::with_capacity(sorted.len());
            for identity in sorted {
                match last.last_mut() {
                    Some(held) if held.id == identity.id => *held = identity,
                    _ => last.push(identity),
                }
            }
            // Index entries are rewritten only when they change (rewriting an identity
            // to remember a pending create leaves them as they were), and new ones are
            // inserted in index order after the records: at random, a million entries
            // would each touch another page of the index.
            let mut fresh: Vec<(&str, String, i64)> = Vec::new();
            let mut data = Vec::new();
            for identity in last {
                let id = to_i64(op, identity.id.get())?;
                self.encode_identity(conn, op, identity, &mut data)?;
                insert.execute(params![id, data]).map_err(sql_error(op))?;
                next = next.max(id);
                let wanted = SqliteStore::index_entries(&spec, identity);
                let held = indexed
                    .query_map([id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                    .map_err(sql_error(op))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error(op))?;
                let same = held.len() == wanted.len()
                    && held.iter().zip(&wanted).all(|((a, k), (wa, wk))| a == wa && k == wk);
                if !same {
                    if !held.is_empty() {
                        unindex.execute([id]).map_err(sql_error(op))?;
                    }
                    fresh.extend(wanted.into_iter().map(|(a, k)| (a, k, id)));
                }
            }
            fresh.sort_unstable();
            let mut add = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO attrflow_identity_index (attribute, match_key, identity) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql_error(op))?;
            for (attribute, match_key, id) in fresh {
                add.execute(params![attribute, match_key, id]).map_err(sql_error(op))?;
            }
            SqliteStore::set_meta(conn, op, META_NEXT_IDENTITY, &next)
        })
    }

    fn update_pending_creates(&mut self, changes: &[PendingCreateChange]) -> Result<(), StoreError> {
        let op = "update_pending_creates";
        // Per identity in id order (sequential pages), its changes in their order.
        let mut by_identity: std::collections::BTreeMap<IdentityId, Vec<&PendingCreateChange>> =
            std::collections::BTreeMap::new();
        for change in changes {
            by_identity.entry(change.identity).or_default().push(change);
        }
        self.write(op, |conn| {
            let mut read = conn
                .prepare_cached("SELECT data FROM attrflow_identities WHERE id = ?1")
                .map_err(sql_error(op))?;
            let mut update = conn
                .prepare_cached("UPDATE attrflow_identities SET data = ?2 WHERE id = ?1")
                .map_err(sql_error(op))?;
            for (id, list) in by_identity {
                let id = to_i64(op, id.get())?;
                let data: Option<Vec<u8>> = read
                    .query_row([id], |row| row.get(0))
                    .optional()
                    .map_err(sql_error(op))?;
                let Some(data) = data else { continue };
                // The pending creates sit in the record's JSON tail: its values are
                // copied, not decoded and encoded again.
                let changed = record::change_pending_creates(&data, &mut |pending| {
                    for change in &list {
                        change.apply_to(pending);
                    }
                })
                .map_err(record_error(op))?;
                update.execute(params![id, changed]).map_err(sql_error(op))?;
            }
            Ok(())
        })
    }

    fn allocate_identity_id(&mut self) -> Result<IdentityId, StoreError> {
        let op = "allocate_identity_id";
        self.write(op, |conn| {
            SqliteStore::next_counter(conn, op, META_NEXT_IDENTITY).map(IdentityId::from_raw)
        })
    }

    fn allocate_identity_ids(&mut self, count: usize) -> Result<Vec<IdentityId>, StoreError> {
        let op = "allocate_identity_ids";
        self.write(op, |conn| {
            let last = SqliteStore::meta_i64(conn, op, META_NEXT_IDENTITY)?;
            let next = i64::try_from(count)
                .ok()
                .and_then(|count| last.checked_add(count))
                .ok_or_else(|| StoreError::new(format!("sqlite store: {op}: counter overflow")))?;
            SqliteStore::set_meta(conn, op, META_NEXT_IDENTITY, &next)?;
            // One counter update for the batch, the ids `count` single allocations give.
            (last + 1..=next)
                .map(|id| to_u64(op, id).map(IdentityId::from_raw))
                .collect()
        })
    }

    fn system_version(&self, system: &str) -> Result<u64, StoreError> {
        self.guard(self.system_version_inner(system))
    }

    fn bump_system_version(&mut self, system: &str) -> Result<(), StoreError> {
        let op = "bump_system_version";
        self.write(op, |conn| {
            conn.prepare_cached(
                "INSERT INTO attrflow_systems (system, version) VALUES (?1, 1) \
                 ON CONFLICT (system) DO UPDATE SET version = version + 1",
            )
            .and_then(|mut s| s.execute([system]))
            .map_err(sql_error(op))
            .map(|_| ())
        })
    }

    fn allocate_plan_id(&mut self) -> Result<PlanId, StoreError> {
        let op = "allocate_plan_id";
        self.write(op, |conn| {
            SqliteStore::next_counter(conn, op, META_NEXT_PLAN).map(PlanId::from_raw)
        })
    }

    fn put_pending_plan(&mut self, plan: PendingPlan) -> Result<(), StoreError> {
        let op = "put_pending_plan";
        self.write(op, |conn| {
            let id = to_i64(op, plan.id().get())?;
            let (data, floats) = encode_plan(op, &plan)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO attrflow_pending_plans (id, system, data, floats) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![id, plan.system(), data, floats]))
            .map_err(sql_error(op))
            .map(|_| ())
        })
    }

    fn take_pending_plan(&mut self, id: PlanId) -> Result<Option<PendingPlan>, StoreError> {
        let op = "take_pending_plan";
        self.write(op, |conn| {
            let raw = to_i64(op, id.get())?;
            let row: Option<(String, String)> = conn
                .prepare_cached("SELECT data, floats FROM attrflow_pending_plans WHERE id = ?1")
                .and_then(|mut s| s.query_row([raw], |row| Ok((row.get(0)?, row.get(1)?))).optional())
                .map_err(sql_error(op))?;
            let Some((data, floats)) = row else {
                return Ok(None);
            };
            let plan = decode_plan(op, &data, &floats)?;
            conn.prepare_cached("DELETE FROM attrflow_pending_plans WHERE id = ?1")
                .and_then(|mut s| s.execute([raw]))
                .map_err(sql_error(op))?;
            Ok(Some(plan))
        })
    }

    fn pending_plans(&self) -> Result<Vec<PendingPlan>, StoreError> {
        self.guard(self.pending_plans_inner())
    }

    fn engine_state(&self) -> Result<EngineState, StoreError> {
        self.guard(self.engine_state_inner())
    }

    fn put_engine_state(&mut self, state: EngineState) -> Result<(), StoreError> {
        let op = "put_engine_state";
        self.write(op, |conn| {
            let (data, floats) = encode_exact(op, &state)?;
            let floats = serde_json::to_string(&floats).map_err(json_error(op))?;
            SqliteStore::set_meta(conn, op, META_ENGINE_STATE, &data)?;
            SqliteStore::set_meta(conn, op, META_ENGINE_STATE_FLOATS, &floats)
        })
    }
}

/// The blob in column `at` of a row, lent.
fn blob_at<'r>(row: &'r rusqlite::Row<'_>, at: usize) -> rusqlite::Result<&'r [u8]> {
    row.get_ref(at)?
        .as_blob()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Blob, Box::new(e)))
}

/// The name numbered `id`, for the record decoder.
fn name_of(
    names: &mut names::NameTable,
    conn: &Connection,
    op: &str,
    id: u32,
) -> Result<crate::text::Text, record::DecodeError> {
    match names.name(conn, op, id) {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(format!("no name is numbered {id}")),
        Err(e) => Err(e.message().to_owned()),
    }
}

/// The dictionary as the record encoder uses it, within one operation.
struct Dictionary<'a> {
    names: &'a mut names::NameTable,
    conn: &'a Connection,
    op: &'a str,
}

impl record::Intern for Dictionary<'_> {
    fn name_id(&mut self, name: &str) -> Result<u32, StoreError> {
        self.names.id(self.conn, self.op, name)
    }
    fn text_id(&mut self, attribute: u32, text: &str) -> Result<Option<u32>, StoreError> {
        self.names.text_id(self.conn, self.op, attribute, text)
    }
}
