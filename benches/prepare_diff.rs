//! Prepare + diff + thresholds of a complete snapshot (column-ordered [`Table`] form)
//! against a store holding N accounts: about 1% of rows updated, 0.5% deleted and 0.5%
//! inserted, shuffled. A `max_pct_deleted` limit of 0.1% blocks every plan, so each
//! iteration computes the whole plan and applies nothing (the same engine is reused:
//! a new blocked plan supersedes the previous one).
//!
//! `cargo bench --bench prepare_diff -- --quick`

#![allow(clippy::expect_used, reason = "a benchmark's setup fails loudly")]

mod common;

use attrflow::Snapshot;
use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;

fn prepare_diff(c: &mut Criterion) {
    let config = common::config(json!({ "thresholds": { "max_pct_deleted": 0.1 } }));
    let mut group = c.benchmark_group("prepare_diff");
    group.sample_size(10);
    for n in [10_000, 100_000] {
        let (old, new) = common::tables(n);
        let mut engine = common::loaded(&config, old);
        let new = Snapshot::Table(new);
        let report = engine.import("hr", &new, common::at(2)).expect("accepted");
        assert!(!report.applied, "the plan is blocked");
        let counts = report.plan.counts;
        assert_eq!(
            (counts.inserted, counts.updated, counts.deleted),
            ((n / 200) as u64, (n / 100) as u64, (n / 200) as u64)
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &new, |b, new| {
            b.iter(|| engine.import("hr", new, common::at(2)).expect("accepted"));
        });
    }
    group.finish();
}

// What `criterion_group!` / `criterion_main!` expand to, written out: the macro's
// generated function would be undocumented.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    prepare_diff(&mut criterion);
    criterion.final_summary();
}
