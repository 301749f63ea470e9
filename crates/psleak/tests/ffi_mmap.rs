//! Direct mmap through FFI: invisible to malloc's counters, counted exactly by allocation
//! tracking, and by the kernel's counters when tracking is off.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use psleak::{LeakCheck, LeakError, Metric, Outcome};

#[test]
fn mmap_leak_is_caught_within_budget() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_mmap");
    let err = LeakCheck::new()
        .name("leak_mmap")
        .memory_budget(32 << 20)
        .run(|| leak())
        .unwrap_err();
    let LeakError::Leak(report) = err else {
        panic!("expected a leak, got {err}")
    };
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    assert_eq!(findings[0].metric, Metric::NativeBytes, "{report}");
    assert_eq!(findings[0].per_call, 65536.0, "{report}");
    assert!(report.peak_growth <= (32 << 20) + (1 << 20), "{report}");
}

#[test]
fn mmap_leak_is_caught_by_the_kernel_counters_without_tracking() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_mmap");
    let err = LeakCheck::new()
        .name("leak_mmap")
        .memory_budget(32 << 20)
        .track_native(false)
        .run(|| leak())
        .unwrap_err();
    let LeakError::Leak(report) = err else {
        panic!("expected a leak, got {err}")
    };
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    assert!(
        matches!(findings[0].metric, Metric::Anon | Metric::Rss | Metric::Vms),
        "{report}"
    );
    // 64 KiB per call, page-granular.
    assert!((60_000.0..70_000.0).contains(&findings[0].per_call), "{report}");
    assert!(report.peak_growth <= (32 << 20) + (1 << 20), "{report}");
}

#[test]
fn mmap_clean_twin_passes() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let clean = lib.void_fn("clean_mmap");
    let report = LeakCheck::new().name("clean_mmap").run(|| clean()).unwrap();
    assert!(report.is_clean(), "{report}");
}
