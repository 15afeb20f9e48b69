//! The SQLite store: an engine on it answers exactly as one on the memory store, and
//! keeps doing so after a restart; a rolled-back (or never committed) unit of work
//! leaves nothing; a database of another schema version is refused.
#![cfg(feature = "sqlite")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use attrflow::sqlite_store::{OpenError, SqliteStore, SCHEMA_VERSION};
use attrflow::store::Store;
use attrflow::{
    Account, Engine, EngineState, Identity, IdentityId, InLine, InLinePair, LinkState, LinkedAccount, MemoryStore,
    PendingPlan, Phase, Provenance, Scalar, Text, Value, ValueType,
};
use serde_json::json;

mod common;

use common::history::*;

// ---------------------------------------------------------------- fixtures

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("attrflow-sqlite-{}-{name}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- restart

#[test]
fn restart_keeps_everything_observable() {
    let dir = TempDir::new("restart");
    let path = dir.file("attrflow.db");

    let mut memory = Engine::with_store(config(), MemoryStore::new()).unwrap();
    before_restart(&mut memory);

    let mut sqlite = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    before_restart(&mut sqlite);
    let expected = observe(&memory);
    assert_eq!(observe(&sqlite), expected, "before the restart");
    assert_eq!(expected.pending.len(), 2);
    assert!(
        expected.pending.iter().any(|p| matches!(p, PendingPlan::Import(i)
            if i.exceeded.iter().any(|e| e.base == Some(0) && e.percent.is_none()))),
        "the phone plan exceeds a percentage limit with nothing stored (percentage undefined)"
    );
    drop(sqlite);

    let mut sqlite = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    assert_eq!(observe(&sqlite), expected, "after the restart");

    after_restart(&mut memory);
    after_restart(&mut sqlite);
    let expected = observe(&memory);
    assert_eq!(observe(&sqlite), expected, "steps after the restart");
    assert!(expected.pending.is_empty());
    assert!(expected.state.paused);
    assert!(!expected.state.inbox.is_empty() && !expected.state.outbox.is_empty());
    drop(sqlite);

    let mut sqlite = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    assert_eq!(observe(&sqlite), expected, "after a second restart");

    after_resume(&mut memory);
    after_resume(&mut sqlite);
    let expected = observe(&memory);
    assert_eq!(observe(&sqlite), expected, "after resuming");
    assert_eq!(expected.identity_count, 4);
    assert_eq!(expected.state, EngineState::default());
    drop(sqlite);
    let sqlite = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    assert_eq!(observe(&sqlite), expected, "after a third restart");
}

// ---------------------------------------------------------------- the store's answers

fn text(s: &str) -> Value {
    Value::Single(Scalar::Text(s.to_owned().into()))
}

fn person(id: u64, mail: &str, groups: &[&str]) -> Identity {
    let mut identity = Identity::new(IdentityId::from_raw(id), at(1));
    let hr = || Provenance::new("hr", 50, Phase::Create, at(1));
    identity.set("mail", text(mail), hr());
    if !groups.is_empty() {
        let items = groups.iter().map(|g| Scalar::Text((*g).to_owned().into())).collect();
        identity.set("groups", Value::Multi(items), hr());
    }
    identity
}

fn account(key: &str, identity: Option<u64>, groups: &[&str]) -> Account {
    let mut account = Account::new(key);
    if let Some(id) = identity {
        account.link = LinkState::Linked(IdentityId::from_raw(id));
    }
    if !groups.is_empty() {
        let items = groups.iter().map(|g| Scalar::Text((*g).to_owned().into())).collect();
        account.attributes.insert("groups".into(), Value::Multi(items));
    }
    account
}

/// Every answer the store gives about a fixed set of questions.
fn answers(store: &dyn Store) -> String {
    let mut out = String::new();
    for (attribute, key) in [
        ("mail", "ann@x"),
        ("mail", "Ann@X"),
        ("mail", "bob@x"),
        ("groups", "G1"),
        ("groups", "g1"),
        ("groups", "G2"),
    ] {
        out += &format!(
            "find {attribute} {key}: {:?}\n",
            store.find_identities(attribute, key).unwrap()
        );
    }
    for system in ["a", "b"] {
        let mut keys = Vec::new();
        store.visit_accounts(system, &mut |a| keys.push(a.key.clone())).unwrap();
        keys.sort();
        let mut by_key = Vec::new();
        store
            .visit_accounts_by_key(system, &["k2", "absent", "k1", "z"], &mut |i, a| {
                by_key.push((i, a.cloned()));
            })
            .unwrap();
        by_key.sort_by_key(|(i, _)| *i);
        out += &format!("{system} by key: {by_key:?}\n");
        // Enough keys for a store to answer with one scan.
        let many: Vec<String> = (0..300)
            .map(|i| format!("x{i}"))
            .chain(["k1".into(), "k2".into()])
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        store
            .visit_accounts_by_key(system, &many, &mut |i, a| {
                if let Some(a) = a {
                    found.push((i, a.clone()));
                }
            })
            .unwrap();
        found.sort_by_key(|(i, _)| *i);
        out += &format!("{system} by many keys: {found:?}\n");
        let (mut asked, mut others) = (Vec::new(), Vec::new());
        store
            .visit_accounts_by_key_and_others(
                system,
                &["k2", "absent", "k1", "k2"],
                &mut |i, a| asked.push((i, a.cloned())),
                &mut |a| others.push(a.clone()),
            )
            .unwrap();
        asked.sort_by_key(|(i, _)| *i);
        others.sort_by(|x, y| x.key.cmp(&y.key));
        out += &format!("{system} by key and others: {asked:?} {others:?}\n");
        let base = store.account_base(system).unwrap();
        out += &format!(
            "{system}: {keys:?} base {} {} version {}\n",
            base.accounts,
            base.link_values,
            store.system_version(system).unwrap()
        );
    }
    for id in 1..=4 {
        let id = IdentityId::from_raw(id);
        out += &format!(
            "{id}: {:?} {:?}\n",
            store.accounts_of(id).unwrap(),
            store.identity(id).unwrap()
        );
    }
    out += &format!("count {}\n", store.identity_count().unwrap());
    for system in ["a", "b"] {
        let mut linked = store.linked_accounts(system).unwrap();
        linked.sort();
        out += &format!("{system} linked: {linked:?}\n");
        let mut pairs = Vec::new();
        store
            .visit_linked_accounts(system, &mut |a, i| pairs.push((a.clone(), i.clone())))
            .unwrap();
        pairs.sort_by(|x, y| x.0.key.cmp(&y.0.key));
        out += &format!("{system} linked pairs: {pairs:?}\n");
    }
    // A few ids, then enough (absent ones and repeats among them) for a store to read
    // them as one batch.
    let few = [3, 1, 9, 1].map(IdentityId::from_raw);
    let many: Vec<IdentityId> = (0..300).rev().chain([2, 2, 4]).map(IdentityId::from_raw).collect();
    for ids in [&few[..], &many[..]] {
        let mut seen = Vec::new();
        store
            .visit_identities_by_id(ids, &mut |at, i| seen.push((at, i.cloned())))
            .unwrap();
        seen.sort_by_key(|(at, _)| *at);
        out += &format!("by id {}: {seen:?}\n", ids.len());
    }
    // Pages of identity ids after each id, two at most.
    for after in [None, Some(1), Some(2), Some(9)] {
        let mut page = Vec::new();
        store
            .visit_identities_after(after.map(IdentityId::from_raw), &mut |i| {
                page.push(i.id.get());
                page.len() < 2
            })
            .unwrap();
        out += &format!("after {after:?}: {page:?}\n");
    }
    out
}

#[test]
fn direct_calls_answer_as_the_memory_store() {
    let mut sqlite = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    type Step = Box<dyn Fn(&mut dyn Store)>;
    let steps: Vec<Step> = vec![
        Box::new(|s| s.set_index(&[("mail".into(), false)]).unwrap()),
        Box::new(|s| {
            s.put_identities(vec![person(1, "Ann@X", &["G1"]), person(2, "bob@x", &["G1", "G2"])])
                .unwrap()
        }),
        Box::new(|s| {
            s.put_accounts(
                "a",
                vec![account("k1", Some(1), &["G1", "G2"]), account("k2", None, &[])],
            )
            .unwrap()
        }),
        Box::new(|s| s.put_accounts("b", vec![account("z", Some(1), &["X"])]).unwrap()),
        Box::new(|s| s.bump_system_version("a").unwrap()),
        // re-link k1 to identity 2, drop a group
        Box::new(|s| s.put_accounts("a", vec![account("k1", Some(2), &["G1"])]).unwrap()),
        // the index follows a changed spec: groups exact, mail now exact too
        Box::new(|s| s.set_index(&[("mail".into(), true), ("groups".into(), true)]).unwrap()),
        Box::new(|s| s.put_identities(vec![person(1, "ann@x", &["G2"])]).unwrap()),
        Box::new(|s| s.set_index(&[("groups".into(), false)]).unwrap()),
        Box::new(|s| s.remove_accounts("a", &["k2".into(), "absent".into()]).unwrap()),
        Box::new(|s| s.remove_system("b").unwrap()),
        Box::new(|s| s.bump_system_version("b").unwrap()),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(&mut sqlite);
        step(&mut memory);
        assert_eq!(answers(&sqlite), answers(&memory), "after step {i}");
    }
}

// ---------------------------------------------------------------- atomicity

/// Writes one of everything inside a unit of work, checking it is visible there.
fn write_everything(store: &mut SqliteStore, plan: PendingPlan) {
    store.set_index(&[("mail".into(), false)]).unwrap();
    store.begin().unwrap();
    let id = store.allocate_identity_id().unwrap();
    store.put_identities(vec![person(id.get(), "ann@x", &[])]).unwrap();
    store
        .put_accounts("a", vec![account("k1", Some(id.get()), &["G1"])])
        .unwrap();
    store.bump_system_version("a").unwrap();
    let plan_id = plan.id();
    store.put_pending_plan(plan).unwrap();
    let mut state = EngineState::default();
    state.paused = true;
    store.put_engine_state(state).unwrap();
    // read-your-writes inside the unit
    assert_eq!(store.identity_count().unwrap(), 1);
    assert_eq!(store.find_identities("mail", "ann@x").unwrap(), vec![id]);
    assert_eq!(store.accounts_of(id).unwrap(), vec![("a".to_owned(), "k1".to_owned())]);
    assert_eq!(store.system_version("a").unwrap(), 1);
    assert_eq!(store.pending_plans().unwrap().len(), 1);
    assert_eq!(store.pending_plans().unwrap()[0].id(), plan_id);
    assert!(store.engine_state().unwrap().paused);
}

fn assert_nothing_written(store: &mut SqliteStore) {
    assert_eq!(store.identity_count().unwrap(), 0);
    assert_eq!(store.identity(IdentityId::from_raw(1)).unwrap(), None);
    assert_eq!(store.find_identities("mail", "ann@x").unwrap(), vec![]);
    assert_eq!(store.account("a", "k1").unwrap(), None);
    assert_eq!(store.accounts_of(IdentityId::from_raw(1)).unwrap(), vec![]);
    assert_eq!(store.account_base("a").unwrap().accounts, 0);
    assert_eq!(store.system_version("a").unwrap(), 0);
    assert!(store.pending_plans().unwrap().is_empty());
    assert_eq!(store.engine_state().unwrap(), EngineState::default());
    assert_eq!(
        store.allocate_identity_id().unwrap().get(),
        1,
        "the id counter was rolled back"
    );
}

#[test]
fn ids_allocated_at_once_are_the_ids_allocated_one_by_one() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    for count in [1, 0, 3, 2] {
        let batch = store.allocate_identity_ids(count).unwrap();
        let one_by_one: Vec<IdentityId> = (0..count).map(|_| memory.allocate_identity_id().unwrap()).collect();
        assert_eq!(batch, one_by_one, "{count} ids");
    }
    assert_eq!(store.allocate_identity_id().unwrap().get(), 7);
    // Undone with its unit of work, as a single allocation is.
    store.begin().unwrap();
    assert_eq!(store.allocate_identity_ids(2).unwrap().len(), 2);
    store.rollback();
    assert_eq!(store.allocate_identity_id().unwrap().get(), 8);
}

/// A real blocked plan (the phone system's first load).
fn a_pending_plan() -> PendingPlan {
    let mut engine = Engine::new(config());
    assert!(!engine.import("phone", &phone(), at(1)).unwrap().applied);
    engine.pending_plans().unwrap().remove(0)
}

#[test]
fn rollback_leaves_nothing() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    write_everything(&mut store, a_pending_plan());
    assert!(store.in_unit_of_work());
    store.rollback();
    assert!(!store.in_unit_of_work());
    assert_nothing_written(&mut store);
}

#[test]
fn a_crash_before_commit_leaves_the_previous_state() {
    let dir = TempDir::new("crash");
    let path = dir.file("crash.db");
    let mut store = SqliteStore::open(&path).unwrap();
    write_everything(&mut store, a_pending_plan());
    drop(store); // never committed
    let mut store = SqliteStore::open(&path).unwrap();
    assert_nothing_written(&mut store);
}

#[test]
fn a_committed_unit_survives_and_plans_keep_their_floats() {
    let dir = TempDir::new("commit");
    let path = dir.file("commit.db");
    let plan = a_pending_plan();
    let mut store = SqliteStore::open(&path).unwrap();
    write_everything(&mut store, plan.clone());
    store.commit().unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.identity_count().unwrap(), 1);
    assert_eq!(store.pending_plans().unwrap(), vec![plan]);
}

#[test]
fn a_failure_inside_a_unit_rolls_the_whole_unit_back() {
    let dir = TempDir::new("failure");
    let path = dir.file("failure.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.put_accounts("a", vec![account("bad", None, &[])]).unwrap();
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("UPDATE attrflow_accounts SET data = 'not json' WHERE key = 'bad'", [])
            .unwrap();
    }
    store.begin().unwrap();
    store.put_accounts("a", vec![account("good", None, &[])]).unwrap();
    let err = store.account("a", "bad").unwrap_err();
    assert!(err.message().contains("account"), "{err}");
    assert!(!store.in_unit_of_work(), "the failure ended the unit");
    let err = store.commit().unwrap_err();
    assert!(err.message().contains("rolled back"), "{err}");
    assert_eq!(store.account("a", "good").unwrap(), None);
    // the store works on afterwards
    store.begin().unwrap();
    store.put_accounts("a", vec![account("good", None, &[])]).unwrap();
    store.commit().unwrap();
    assert!(store.account("a", "good").unwrap().is_some());
}

#[test]
fn nested_units_use_savepoints() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.begin().unwrap();
    store.put_accounts("a", vec![account("outer", None, &[])]).unwrap();
    store.begin().unwrap();
    store.put_accounts("a", vec![account("inner", None, &[])]).unwrap();
    store.rollback();
    assert!(store.in_unit_of_work());
    store.begin().unwrap();
    store.put_accounts("a", vec![account("kept", None, &[])]).unwrap();
    store.commit().unwrap();
    store.commit().unwrap();
    assert!(!store.in_unit_of_work());
    let mut keys = Vec::new();
    store.visit_accounts("a", &mut |a| keys.push(a.key.clone())).unwrap();
    keys.sort();
    assert_eq!(keys, ["kept", "outer"]);
    assert!(store.commit().is_err(), "a commit without a unit of work is refused");
}

// ---------------------------------------------------------------- schema version

fn set_schema_version(path: &Path, sql: &str) {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.execute_batch(sql).unwrap();
}

#[test]
fn another_schema_version_is_refused() {
    let dir = TempDir::new("schema");
    let path = dir.file("schema.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.put_accounts("a", vec![account("k", None, &[])]).unwrap();
    drop(store);

    set_schema_version(
        &path,
        "UPDATE attrflow_meta SET value = 99 WHERE name = 'schema_version'",
    );
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err,
        OpenError::SchemaVersion {
            found: Some(99),
            supported: SCHEMA_VERSION
        }
    );
    assert!(err.to_string().contains("99"), "{err}");
    let as_store_error: attrflow::StoreError = err.into();
    assert!(as_store_error.message().contains("schema version"));

    set_schema_version(&path, "DELETE FROM attrflow_meta WHERE name = 'schema_version'");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::SchemaVersion { found: None, .. }), "{err:?}");

    // back at this build's version, the data is still there
    set_schema_version(
        &path,
        &format!("INSERT INTO attrflow_meta (name, value) VALUES ('schema_version', {SCHEMA_VERSION})"),
    );
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.account("a", "k").unwrap().is_some());
}

#[test]
fn a_file_that_is_not_a_database_is_a_store_error() {
    let dir = TempDir::new("garbage");
    let path = dir.file("garbage.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Store(_)), "{err:?}");
    assert!(err.to_string().contains("open"), "{err}");
}

#[test]
fn a_shared_database_keeps_the_hosts_tables() {
    let dir = TempDir::new("shared");
    let path = dir.file("shared.db");
    set_schema_version(
        &path,
        "CREATE TABLE host_things (x INTEGER); INSERT INTO host_things VALUES (1);",
    );
    let mut store = SqliteStore::open(&path).unwrap();
    store.put_accounts("a", vec![account("k", None, &[])]).unwrap();
    drop(store);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let x: i64 = raw.query_row("SELECT x FROM host_things", [], |r| r.get(0)).unwrap();
    assert_eq!(x, 1);
}

// ---------------------------------------------------------------- host units of work

/// An import, the provisioning of its new identities and their confirmation, as one
/// host unit of work.
fn hire_and_provision<S: Store>(engine: &mut Engine<S>) -> Result<usize, attrflow::OutboundError> {
    let report = engine
        .import("hr", &hr(hr_rows()), at(1))
        .map_err(|e| attrflow::OutboundError::Store(attrflow::store::StoreError::new(e.to_string())))?;
    assert!(report.applied);
    let mut ids = Vec::new();
    engine.store().visit_identities(&mut |i| ids.push(i.id))?;
    let plan = engine.provision_many("ad", &ids, at(2))?;
    Ok(engine.confirm(&plan.ops, at(2))?.created)
}

#[test]
fn a_host_unit_of_work_commits_several_calls_together() {
    let mut memory = Engine::with_store(config(), MemoryStore::new()).unwrap();
    assert_eq!(hire_and_provision(&mut memory).unwrap(), 3);

    let mut sqlite = Engine::with_store(config(), SqliteStore::open_in_memory().unwrap()).unwrap();
    let created = sqlite.unit_of_work(hire_and_provision).unwrap();
    assert_eq!(created, 3);
    assert!(!sqlite.store().in_unit_of_work());
    assert_eq!(observe(&sqlite), observe(&memory));
}

#[test]
fn a_failing_host_unit_of_work_keeps_none_of_its_calls() {
    let mut sqlite = Engine::with_store(config(), SqliteStore::open_in_memory().unwrap()).unwrap();
    let before = observe(&sqlite);
    let err = sqlite
        .unit_of_work(|engine| {
            let created = hire_and_provision(engine)?;
            assert_eq!(created, 3, "the calls inside the unit succeed");
            assert_eq!(engine.identity_count()?, 3);
            engine.provision("ad", IdentityId::from_raw(999), at(3))
        })
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_identity");
    assert!(!sqlite.store().in_unit_of_work());
    assert_eq!(
        sqlite.identity_count().unwrap(),
        0,
        "the import inside the unit is undone"
    );
    assert_eq!(observe(&sqlite), before);
}

// ---------------------------------------------------------------- keyed reads

/// What `visit_accounts_by_key` lends for each position, sorted by position.
fn lent(store: &dyn Store, system: &str, keys: &[&str]) -> Vec<(usize, Option<Account>)> {
    let mut out = Vec::new();
    store
        .visit_accounts_by_key(system, keys, &mut |index, account| out.push((index, account.cloned())))
        .unwrap();
    out.sort_by_key(|(index, _)| *index);
    out
}

#[test]
fn many_keyed_reads_answer_as_the_memory_store() {
    let mut sqlite = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    let accounts: Vec<Account> = (0..400)
        .map(|i| account(&format!("k{i:03}"), (i % 3 == 0).then_some(i), &["G1"]))
        .collect();
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        store.put_accounts("a", accounts.clone()).unwrap();
        store.put_accounts("b", vec![account("k001", None, &[])]).unwrap();
    }
    // Enough keys for the scan, with absent keys, a repeated key and another system's.
    let owned: Vec<String> = (0..300)
        .map(|i| format!("k{:03}", i * 2))
        .chain(["k001".to_owned(), "k001".to_owned(), "missing".to_owned()])
        .collect();
    let keys: Vec<&str> = owned.iter().map(String::as_str).collect();
    let got = lent(&sqlite, "a", &keys);
    assert_eq!(got.len(), keys.len(), "one visit per position");
    assert_eq!(got, lent(&memory, "a", &keys));
    assert!(
        got.iter().filter(|(_, a)| a.is_none()).count() >= 100,
        "absent keys are lent as none"
    );
    // Few keys take the query per key: the same answers.
    assert_eq!(lent(&sqlite, "a", &keys[..5]), lent(&memory, "a", &keys[..5]));
}

// ---------------------------------------------------------------- two writers

#[test]
fn an_import_computed_before_another_writer_committed_is_not_applied() {
    let dir = TempDir::new("writers");
    let path = dir.file("shared.db");
    let mut first = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    let report = first.import("hr", &hr(hr_rows()), at(1)).unwrap();
    assert!(report.applied);
    // A second process on the same file.
    let mut second = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
    let mut rows = hr_rows();
    rows[0]["title"] = json!("Lead");
    let mut theirs = hr_rows();
    theirs[1]["title"] = json!("Manager");
    // The second writer commits after the first computed its plan, before it applies.
    let mut raced = false;
    let mut race = |p: attrflow::Progress| {
        if p.stage == attrflow::Stage::Diff && p.done == p.total && !raced {
            raced = true;
            let report = second.import("hr", &hr(theirs.clone()), at(2)).unwrap();
            assert!(report.applied);
        }
    };
    let err = first
        .import_observed(
            "hr",
            &hr(rows),
            at(3),
            &mut attrflow::Observer::new().on_progress(&mut race),
        )
        .unwrap_err();
    assert!(raced);
    assert_eq!(err.kind(), "stale_plan", "{err}");
    // The store holds the second writer's change and nothing of the first's.
    let title =
        |engine: &Engine<SqliteStore>, key: &str| engine.account("hr", key).unwrap().unwrap().value("title").to_json();
    assert_eq!(title(&first, "E2"), json!("Manager"));
    assert_eq!(title(&first, "E1"), json!("Engineer"));
    // Imported again, it applies.
    let mut rows = hr_rows();
    rows[0]["title"] = json!("Lead");
    rows[1]["title"] = json!("Manager");
    assert!(first.import("hr", &hr(rows), at(4)).unwrap().applied);
    assert_eq!(title(&first, "E1"), json!("Lead"));
}

// ---------------------------------------------------------------- binary records

/// Attribute names are numbered inside the unit of work that first writes them: a
/// rolled-back unit takes its numbers back, and names written after it must not be
/// read back as the names the rollback removed.
#[test]
fn names_of_a_rolled_back_unit_are_not_reused_for_others() {
    let dir = TempDir::new("names");
    let path = dir.file("names.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let with = |key: &str, attribute: &str| {
        let mut a = Account::new(key);
        a.attributes.insert(attribute.into(), Value::from("v"));
        a
    };
    store.begin().unwrap();
    store.put_accounts("hr", vec![with("k1", "title")]).unwrap();
    store.rollback();
    store.begin().unwrap();
    store.put_accounts("hr", vec![with("k2", "mail")]).unwrap();
    store.put_accounts("hr", vec![with("k3", "title")]).unwrap();
    store.commit().unwrap();
    for store in [store, SqliteStore::open(&path).unwrap()] {
        assert!(store.account("hr", "k1").unwrap().is_none());
        assert_eq!(store.account("hr", "k2").unwrap(), Some(with("k2", "mail")));
        assert_eq!(store.account("hr", "k3").unwrap(), Some(with("k3", "title")));
    }
}

/// A record damaged on disk is a store error naming the operation, not a panic.
#[test]
fn a_damaged_record_is_a_store_error() {
    let dir = TempDir::new("damaged");
    let path = dir.file("damaged.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.put_accounts("a", vec![account("k", None, &[])]).unwrap();
    drop(store);
    set_schema_version(&path, "UPDATE attrflow_accounts SET data = x'0009'");
    let store = SqliteStore::open(&path).unwrap();
    let err = store.account("a", "k").unwrap_err();
    assert!(
        err.message()
            .contains("account: a stored record is damaged: unknown link tag 9"),
        "{err}"
    );
}

/// A version 1 database whose records do not decode is refused, and the file is left
/// as version 1 (the migration runs in one transaction).
#[test]
fn a_failed_migration_leaves_the_version_1_file() {
    let dir = TempDir::new("migrate");
    let path = dir.file("v1.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sqlite-v1-pending.db"),
        &path,
    )
    .unwrap();
    set_schema_version(&path, "UPDATE attrflow_identities SET data = '{\"not\": \"an identity\"}' WHERE id = (SELECT MIN(id) FROM attrflow_identities)");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("migrate from schema version 1: identity"),
        "{err}"
    );
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .query_row(
            "SELECT value FROM attrflow_meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 1);
    let v1_tables: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('attrflow_accounts_v1', 'attrflow_names')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v1_tables, 0, "nothing of the migration is left");
}

/// Two versions of one identity in one batch: the later is stored and indexed, as the
/// memory store does; an identity rewritten with its indexed values unchanged keeps
/// answering, and one whose value changed answers for the new value only.
#[test]
fn a_batch_of_identities_keeps_the_last_version_and_its_index() {
    let mut sqlite = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    let with_mail = |mail: &str, title: &str| {
        let mut identity = Identity::new(IdentityId::from_raw(1), at(1));
        identity.set(
            "mail",
            Value::from(mail),
            Provenance::new("hr", 100, Phase::Create, at(1)),
        );
        identity.set(
            "title",
            Value::from(title),
            Provenance::new("hr", 100, Phase::Create, at(1)),
        );
        identity
    };
    let steps = [
        vec![with_mail("a@x", "One"), with_mail("b@x", "Two")],
        vec![with_mail("b@x", "Three")],
        vec![with_mail("c@x", "Three")],
    ];
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        store.set_index(&[("mail".into(), false)]).unwrap();
    }
    for (i, batch) in steps.into_iter().enumerate() {
        sqlite.put_identities(batch.clone()).unwrap();
        memory.put_identities(batch).unwrap();
        for mail in ["a@x", "b@x", "c@x"] {
            assert_eq!(
                sqlite.find_identities("mail", mail).unwrap(),
                memory.find_identities("mail", mail).unwrap(),
                "step {i}: {mail}"
            );
        }
        assert_eq!(
            sqlite.identity(IdentityId::from_raw(1)).unwrap(),
            memory.identity(IdentityId::from_raw(1)).unwrap()
        );
    }
    assert_eq!(
        sqlite.find_identities("mail", "c@x").unwrap(),
        [IdentityId::from_raw(1)]
    );
}

/// Pending creates changed through the store: the SQLite store (the trait's default,
/// reading and putting back) and the memory store (in place) hold the same afterwards,
/// and an absent identity is skipped.
#[test]
fn pending_creates_change_alike_in_both_stores() {
    use attrflow::store::PendingCreateChange;
    use attrflow::PendingCreate;
    let mut sqlite = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    let identity = |id: u64| Identity::new(IdentityId::from_raw(id), at(1));
    // `PendingCreate` is non-exhaustive: built from its serialized form.
    let create = |account: &str| {
        Some(serde_json::from_value::<PendingCreate>(json!({ "account": account, "since": at(2) })).unwrap())
    };
    let steps = [
        vec![
            PendingCreateChange::new(IdentityId::from_raw(1), "ad".into(), create("a1")),
            PendingCreateChange::new(IdentityId::from_raw(2), "ad".into(), create("a2")),
            PendingCreateChange::new(IdentityId::from_raw(1), "phone".into(), create("p1")),
            PendingCreateChange::new(IdentityId::from_raw(9), "ad".into(), create("absent")),
        ],
        vec![
            PendingCreateChange::new(IdentityId::from_raw(1), "ad".into(), None),
            PendingCreateChange::new(IdentityId::from_raw(2), "phone".into(), None),
        ],
    ];
    // Identities 3..=400 without pending creates: a batch read of them all scans.
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        store.put_identities((1..=400).map(identity).collect()).unwrap();
    }
    // Read apart from the values, and read from the whole identities.
    let pending_by_id = |store: &dyn Store, ids: &[IdentityId]| {
        let mut apart = vec![None; ids.len()];
        store
            .visit_pending_creates_by_id(ids, &mut |at, pending| apart[at] = Some(pending.map(<[_]>::to_vec)))
            .unwrap();
        let mut whole = vec![None; ids.len()];
        store
            .visit_identities_by_id(ids, &mut |at, identity| {
                // In system name order, as lent apart.
                whole[at] = Some(identity.map(|i| i.pending_creates.clone().into_iter().collect::<Vec<_>>()))
            })
            .unwrap();
        assert_eq!(apart, whole);
        apart
    };
    let few: Vec<IdentityId> = [2, 9, 1, 1].into_iter().map(IdentityId::from_raw).collect();
    let many: Vec<IdentityId> = (0..=410).rev().map(IdentityId::from_raw).collect();
    for (i, changes) in steps.iter().enumerate() {
        sqlite.update_pending_creates(changes).unwrap();
        memory.update_pending_creates(changes).unwrap();
        for id in [1, 2, 9] {
            let id = IdentityId::from_raw(id);
            assert_eq!(
                sqlite.identity(id).unwrap(),
                memory.identity(id).unwrap(),
                "step {i}, {id}"
            );
        }
        for ids in [&few, &many] {
            let read = pending_by_id(&sqlite, ids);
            assert_eq!(read, pending_by_id(&memory, ids), "step {i}");
            assert_eq!(
                read.iter().filter(|p| p.as_ref().is_some_and(|p| p.is_none())).count(),
                ids.len() - ids.iter().filter(|id| (1..=400).contains(&id.get())).count()
            );
        }
    }
    let one = memory.identity(IdentityId::from_raw(1)).unwrap().unwrap();
    assert_eq!(
        one.pending_creates.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        ["phone"]
    );
    let two = memory.identity(IdentityId::from_raw(2)).unwrap().unwrap();
    assert_eq!(two.pending_creates["ad"].account, "a2");
}

// ---------------------------------------------------------------- accounts in line

/// The identities of the accounts of `system` the store reports in line with `check`,
/// sorted, and those the check holds for on the decoded records; the count of lent ones.
fn in_line_answers(store: &dyn Store, system: &str, check: &InLine) -> (Vec<IdentityId>, Vec<IdentityId>, usize) {
    let reading = ["mail", "title"];
    let mut decoded = Vec::new();
    store
        .visit_linked_accounts_reading(system, &reading, &mut |account, identity| {
            if check.holds(account, identity) {
                decoded.push(identity.id);
            }
        })
        .unwrap();
    let (mut found, mut lent) = (Vec::new(), 0);
    store
        .visit_linked_accounts_out_of_line(system, &reading, check, &mut |visited| match visited {
            LinkedAccount::InLine(id) => found.push(id),
            LinkedAccount::Lent(..) => lent += 1,
        })
        .unwrap();
    decoded.sort_unstable();
    found.sort_unstable();
    (found, decoded, lent)
}

#[test]
fn accounts_in_line_are_found_on_the_records_as_on_the_decoded_ones() {
    let pair = |identity: Option<&str>, account: &str| InLinePair {
        identity: identity.map(Text::from),
        account: Text::from(account),
        account_type: ValueType::String,
    };
    let check = InLine::new(vec![
        pair(Some("mail"), "mail"),
        pair(Some("title"), "title"),
        pair(None, "nothing"),
    ]);
    let hr = || Provenance::new("hr", 50, Phase::Create, at(1));
    // People 1-6: mail and title; person 4 has no title; person 5 is out of scope.
    let people: Vec<Identity> = (1..=6u64)
        .map(|id| {
            let mut identity = Identity::new(IdentityId::from_raw(id), at(1));
            identity.set("mail", text(&format!("p{id}@x")), hr());
            if id != 4 {
                identity.set("title", text("Engineer"), hr());
            }
            if id == 5 {
                identity.out_of_scope.insert(Text::from("dir"), at(1));
            }
            identity
        })
        .collect();
    // Accounts: in line (1, 4, 5 but out of scope), another title (2), another case
    // (3), disabled (6), unlinked (u).
    let dir_account = |key: &str, id: Option<u64>, mail: &str, title: Option<&str>| {
        let mut account = Account::new(key);
        account.link = id.map_or(LinkState::Unmatched, |id| LinkState::Linked(IdentityId::from_raw(id)));
        account.attributes.insert("mail".into(), text(mail));
        if let Some(title) = title {
            account.attributes.insert("title".into(), text(title));
        }
        account
    };
    let mut disabled = dir_account("d6", Some(6), "p6@x", Some("Engineer"));
    disabled.disabled = true;
    let accounts = vec![
        dir_account("d1", Some(1), "p1@x", Some("Engineer")),
        dir_account("d2", Some(2), "p2@x", Some("Manager")),
        dir_account("d3", Some(3), "P3@x", Some("Engineer")),
        dir_account("d4", Some(4), "p4@x", None),
        dir_account("d5", Some(5), "p5@x", Some("Engineer")),
        disabled,
        dir_account("u", None, "p1@x", Some("Engineer")),
    ];
    let mut sqlite = SqliteStore::open_in_memory().unwrap();
    let mut memory = MemoryStore::new();
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        store.put_identities(people.clone()).unwrap();
        store.put_accounts("dir", accounts.clone()).unwrap();
    }
    let expected: Vec<IdentityId> = [1, 4].into_iter().map(IdentityId::from_raw).collect();
    for store in [&sqlite as &dyn Store, &memory] {
        let (found, decoded, lent) = in_line_answers(store, "dir", &check);
        assert_eq!(found, expected);
        assert_eq!(decoded, expected);
        assert_eq!(lent, 4, "2, 3, 5 and 6 are lent");
    }
}
