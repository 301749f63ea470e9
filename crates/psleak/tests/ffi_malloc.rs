//! malloc reached through FFI: the leak is caught with a byte-exact estimate, the twin passes.
//! Run serially (the Makefile passes --test-threads=1): the check measures the whole process.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use psleak::{LeakCheck, LeakError, Metric, Outcome};

#[test]
fn malloc_leak_is_caught() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_malloc");
    let err = LeakCheck::new().name("leak_malloc").run(|| leak()).unwrap_err();
    let LeakError::Leak(report) = err else {
        panic!("expected a leak, got {err}")
    };
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    // Counted exactly by allocation tracking: 100 bytes a call...
    assert_eq!(findings[0].metric, Metric::NativeBytes);
    assert_eq!(findings[0].per_call, 100.0, "{report}");
    // ... and seen by malloc's counters too: malloc(100) takes a 112-byte chunk.
    let heap = findings.iter().find(|f| f.metric == Metric::Heap).unwrap();
    assert!((100.0..=120.0).contains(&heap.per_call), "{report}");
    let text = LeakError::Leak(report.clone()).to_string();
    assert!(text.starts_with("'leak_malloc' leaks ~"), "{text}");
    assert!(text.contains("runs grew"), "{text}");
}

#[test]
fn malloc_clean_twin_passes() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let clean = lib.void_fn("clean_malloc");
    let report = LeakCheck::new().name("clean_malloc").run(|| clean()).unwrap();
    assert!(report.is_clean());
    // Two quiet runs; a cheap function's third makes up 1,000 calls (a rare leak's span).
    let calls: u64 = report.runs.iter().map(|r| r.calls).sum();
    assert!(
        report.runs.len() == 2 || (report.runs.len() == 3 && calls == 1000),
        "{report}"
    );
}

#[test]
#[should_panic(expected = "leaks ~")]
fn assert_no_leak_panics_with_the_report() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_malloc");
    psleak::assert_no_leak(|| leak());
}
