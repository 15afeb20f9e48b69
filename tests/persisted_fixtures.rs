//! State written by release 0.1 keeps loading: documents of `MemoryStore::encode` and
//! SQLite files committed under `tests/fixtures/` (written by the 0.1 code, before the
//! compact data model) load, equal to what a fresh run of the same history holds, and
//! the history goes on from them exactly as it goes on from the fresh run.
//!
//! Two points of the shared history are kept: `pending` (after the first steps: two
//! blocked plans, a host edit, confirmed outbound and provisioning) and `paused` (after
//! the approvals and a pause: an inbox and an outbox).
#![allow(clippy::unwrap_used, reason = "test code: a failed setup is a failed test")]

mod common;

use std::path::PathBuf;

use attrflow::{Engine, MemoryStore};
use common::history::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh memory-store engine taken through the history up to `point`.
fn fresh(point: &str) -> Engine<MemoryStore> {
    let mut engine = Engine::with_store(config(), MemoryStore::new()).unwrap();
    before_restart(&mut engine);
    if point == "paused" {
        after_restart(&mut engine);
    }
    engine
}

/// Takes two engines at `point` through the rest of the history, comparing them at
/// every step.
fn continue_both<A: attrflow::store::Store, B: attrflow::store::Store>(
    point: &str,
    loaded: &mut Engine<A>,
    expected: &mut Engine<B>,
) {
    if point == "pending" {
        after_restart(loaded);
        after_restart(expected);
        assert_eq!(
            observe(loaded),
            as_version_1(observe(expected)),
            "{point}: after the approvals and the pause"
        );
    }
    after_resume(loaded);
    after_resume(expected);
    assert_eq!(
        observe(loaded),
        as_version_1(observe(expected)),
        "{point}: after resuming"
    );
}

#[test]
fn version_1_documents_load_equal_to_what_they_held() {
    for point in ["pending", "paused"] {
        let bytes = std::fs::read(fixture(&format!("memory-v1-{point}.json"))).unwrap();
        let store = MemoryStore::decode(&bytes).unwrap_or_else(|e| panic!("{point}: {e}"));
        let mut loaded = Engine::with_store(config(), store).unwrap();
        let mut expected = fresh(point);
        assert_eq!(observe(&loaded), as_version_1(observe(&expected)), "{point}: as loaded");
        continue_both(point, &mut loaded, &mut expected);
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn version_1_sqlite_files_load_equal_to_what_they_held() {
    use attrflow::sqlite_store::SqliteStore;
    for point in ["pending", "paused"] {
        // Open a copy: opening may migrate the file in place.
        let dir = std::env::temp_dir().join(format!("attrflow-fixture-{}-{point}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("attrflow.db");
        std::fs::copy(fixture(&format!("sqlite-v1-{point}.db")), &path).unwrap();
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{point}: {e}"));
        let mut loaded = Engine::with_store(config(), store).unwrap();
        let mut expected = fresh(point);
        assert_eq!(observe(&loaded), as_version_1(observe(&expected)), "{point}: as loaded");
        continue_both(point, &mut loaded, &mut expected);
        drop(loaded);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Writes the fixtures (run by hand, once per persisted format version:
/// `cargo test --features sqlite --test persisted_fixtures -- --ignored`).
#[cfg(feature = "sqlite")]
#[test]
#[ignore = "writes tests/fixtures; run by hand when a format version is released"]
fn write_fixtures() {
    use attrflow::sqlite_store::SqliteStore;
    for point in ["pending", "paused"] {
        let engine = fresh(point);
        std::fs::write(fixture(&format!("memory-v1-{point}.json")), engine.store().encode()).unwrap();
        let path = fixture(&format!("sqlite-v1-{point}.db"));
        let _ = std::fs::remove_file(&path);
        let mut sqlite = Engine::with_store(config(), SqliteStore::open(&path).unwrap()).unwrap();
        before_restart(&mut sqlite);
        if point == "paused" {
            after_restart(&mut sqlite);
        }
    }
}
