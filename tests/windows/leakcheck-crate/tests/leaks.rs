//! Six kinds of Windows leaks caught by `LeakCheck::new().run(f)` with the defaults, and
//! their clean twins passing. One test runs at a time (--test-threads=1 and a lock): each
//! check measures the whole process.
#![cfg(windows)]

use std::sync::Mutex;

use psleak::{LeakCheck, LeakError, Outcome, ResourceKind};
use psleak_leakcheck_windows::winleaks;

static SERIAL: Mutex<()> = Mutex::new(());

/// `leak_<kind>` fails the check with what `expect` accepts; `clean_<kind>` passes.
fn caught_and_twin_passes(kind: &str, expect: impl Fn(&Outcome) -> bool) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let leak = winleaks(&format!("leak_{kind}"));
    match LeakCheck::new().run(|| leak()) {
        Err(LeakError::Leak(report)) => assert!(expect(&report.outcome), "leak_{kind}:\n{report}"),
        other => panic!("leak_{kind} was not caught: {other:?}"),
    }
    if kind == "thread" {
        winleaks("release_threads")();
    }
    let clean = winleaks(&format!("clean_{kind}"));
    if let Err(e) = LeakCheck::new().run(|| clean()) {
        panic!("clean_{kind} was reported: {e}");
    }
}

fn memory(o: &Outcome) -> bool {
    matches!(o, Outcome::MemoryLeak { .. })
}

fn resource(kind: ResourceKind) -> impl Fn(&Outcome) -> bool {
    move |o| matches!(o, Outcome::ResourceLeak { leaks } if leaks[0].kind == kind)
}

#[test]
fn heapalloc() {
    caught_and_twin_passes("heapalloc", memory);
}

#[test]
fn malloc() {
    caught_and_twin_passes("malloc", memory);
}

#[test]
fn virtualalloc() {
    caught_and_twin_passes("virtualalloc", memory);
}

#[test]
fn heapcreate() {
    caught_and_twin_passes("heapcreate", resource(ResourceKind::HeapCreate));
}

#[test]
fn handle() {
    caught_and_twin_passes("handle", resource(ResourceKind::Handle));
}

#[test]
fn thread() {
    caught_and_twin_passes("thread", resource(ResourceKind::NativeThread));
}
