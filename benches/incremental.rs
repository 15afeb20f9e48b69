//! Incremental import of 1,000 upserts (1-3 attributes each) against a store of
//! 100,000 accounts: the whole import (prepare, diff, mirror, resolution). Iterations
//! alternate two deltas that set the same attributes to different values, so every
//! iteration changes 1,000 accounts of the same engine (no store copy per iteration).
//!
//! `cargo bench --bench incremental -- --quick`

#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

mod common;

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;

const ROWS: usize = 100_000;
const CHANGES: usize = 1_000;

fn incremental(c: &mut Criterion) {
    let config = common::config(json!({}));
    let (old, _) = common::tables(ROWS);
    let mut engine = common::loaded(&config, old);
    let deltas = [common::delta(ROWS, CHANGES, "a"), common::delta(ROWS, CHANGES, "b")];
    for delta in &deltas {
        let report = engine.import("hr", delta, common::at(2)).expect("accepted");
        assert!(report.applied && report.plan.rejections.is_empty());
        assert_eq!(report.plan.counts.updated, CHANGES as u64);
    }
    let mut group = c.benchmark_group("incremental");
    group.sample_size(10);
    group.throughput(Throughput::Elements(CHANGES as u64));
    let mut turn = 0;
    group.bench_function(BenchmarkId::from_parameter(format!("{CHANGES}_of_{ROWS}")), |b| {
        b.iter(|| {
            turn ^= 1;
            engine.import("hr", &deltas[turn], common::at(2)).expect("accepted")
        });
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    incremental(&mut criterion);
    criterion.final_summary();
}
