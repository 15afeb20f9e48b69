//! Inbound resolution: approving a blocked complete-import plan over a store of 10,000
//! accounts (mirror update, correlation, candidates, resolution). Throughput is in
//! candidates (decisions) per second. Each iteration approves the plan in a fresh copy
//! of the engine holding it (the copy is made outside the timing).
//!
//! `cargo bench --bench resolution -- --quick`

#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark's setup fails loudly")]

mod common;

use attrflow::{Approval, Snapshot};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::json;

const ROWS: usize = 10_000;

fn resolution(c: &mut Criterion) {
    let config = common::config(json!({ "thresholds": { "max_pct_deleted": 0.1 } }));
    let (old, new) = common::tables(ROWS);
    let mut engine = common::loaded(&config, old);
    let report = engine
        .import("hr", &Snapshot::Table(new), common::at(2))
        .expect("accepted");
    assert!(!report.applied);
    let plan = report.plan.id;
    let Approval::Import(applied) = common::copy(&engine).approve(plan).expect("approved") else {
        panic!("an import plan")
    };
    let decisions = applied.decisions.total();
    assert!(decisions > 0);

    let mut group = c.benchmark_group("resolution");
    group.sample_size(10);
    group.throughput(Throughput::Elements(decisions));
    group.bench_function(
        BenchmarkId::from_parameter(format!("{decisions}_candidates_of_{ROWS}")),
        |b| {
            b.iter_batched_ref(
                || common::copy(&engine),
                |engine| engine.approve(plan).expect("approved"),
                BatchSize::LargeInput,
            );
        },
    );
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    resolution(&mut criterion);
    criterion.final_summary();
}
