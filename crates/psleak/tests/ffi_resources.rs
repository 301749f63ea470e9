//! File descriptors and threads left behind by one call through FFI.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use psleak::{Checkers, LeakCheck, LeakError, Outcome, ResourceKind};

fn only(fds: bool, threads: bool) -> Checkers {
    let mut c = Checkers::none();
    c.fds = fds;
    c.threads = threads;
    c
}

#[test]
fn pipe_leak_is_described() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.int_fn("leak_pipe");
    let err = LeakCheck::new()
        .name("leak_pipe")
        .checkers(only(true, false))
        .run(|| {
            assert!(leak() >= 0);
        });
    let Err(LeakError::Leak(report)) = err else {
        panic!("expected a leak")
    };
    let Outcome::ResourceLeak { leaks } = &report.outcome else {
        panic!("{report}")
    };
    assert_eq!(leaks[0].kind, ResourceKind::Fd);
    assert_eq!(leaks[0].count, 2);
    assert_eq!(leaks[0].calls, 1);
    assert!(
        leaks[0].leaked.iter().all(|r| r.description.contains("pipe")),
        "{report}"
    );
    assert!(
        report
            .to_text()
            .starts_with("detected 2 unclosed file descriptors after calling 'leak_pipe' 1 time\n* fd "),
        "{report}"
    );
}

#[test]
fn pipe_clean_twin_passes() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let clean = lib.void_fn("clean_pipe");
    LeakCheck::new()
        .checkers(only(true, false))
        .run(|| clean())
        .unwrap();
}

#[test]
fn thread_leak_is_named() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.int_fn("leak_thread");
    let err = LeakCheck::new()
        .name("leak_thread")
        .warmup(0)
        .checkers(only(false, true))
        .run(|| {
            assert_eq!(leak(), 0);
        });
    lib.void_fn("release_threads")();
    let Err(LeakError::Leak(report)) = err else {
        panic!("expected a leak")
    };
    let Outcome::ResourceLeak { leaks } = &report.outcome else {
        panic!("{report}")
    };
    assert_eq!(leaks[0].kind, ResourceKind::NativeThread);
    assert!(report.to_text().contains("leaky-worker"), "{report}");
}

#[test]
fn thread_clean_twin_passes() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let clean = lib.void_fn("clean_thread");
    LeakCheck::new()
        .checkers(only(false, true))
        .times(50)
        .run(|| clean())
        .unwrap();
}
