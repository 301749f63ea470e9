//! The Windows probes and checks against tests/windows/winleaks.c, a DLL built with mingw
//! before the tests run (`make test-windows` passes its path in PSLEAK_WINLEAKS_DLL: a
//! process under Wine cannot start the host's compiler). Each leak is caught with the right
//! metric or resource kind and described; each twin passes.
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Mutex, MutexGuard};

use psleak::{Checkers, LeakCheck, LeakError, Metric, Outcome, Report, ResourceKind};
use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};

/// One check at a time: each measures the whole process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A `void f(void)` of the fixture DLL.
fn dll_fn(name: &str) -> extern "C" fn() {
    let path = std::env::var("PSLEAK_WINLEAKS_DLL")
        .expect("PSLEAK_WINLEAKS_DLL: the path of winleaks.dll (make test-windows builds it)");
    let wide: Vec<u16> = path.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated path; the DLL stays loaded for the life of the process.
    let module = unsafe { LoadLibraryW(wide.as_ptr()) };
    assert!(!module.is_null(), "LoadLibraryW({path}) failed");
    let cname = format!("{name}\0");
    // SAFETY: a loaded module and a NUL-terminated name.
    let f =
        unsafe { GetProcAddress(module, cname.as_ptr()) }.unwrap_or_else(|| panic!("{name} not exported"));
    // SAFETY: every export of winleaks.dll that this is used for takes and returns nothing.
    unsafe { std::mem::transmute::<unsafe extern "system" fn() -> isize, extern "C" fn()>(f) }
}

fn leak_report(name: &str, checkers: Checkers) -> Box<Report> {
    let f = dll_fn(name);
    match LeakCheck::new().name(name).checkers(checkers).run(|| f()) {
        Err(LeakError::Leak(report)) => report,
        other => panic!("{name}: expected a leak, got {other:?}"),
    }
}

fn passes(name: &str) {
    let f = dll_fn(name);
    if let Err(e) = LeakCheck::new().name(name).run(|| f()) {
        panic!("{name}: expected no leak, got {e}");
    }
}

fn memory_only() -> Checkers {
    let mut c = Checkers::none();
    c.memory = true;
    c
}

fn handles_only() -> Checkers {
    let mut c = Checkers::none();
    c.handles = true;
    c
}

/// The metric of the strongest finding.
fn leaking_metric(report: &Report) -> Metric {
    match &report.outcome {
        Outcome::MemoryLeak { findings } => findings[0].metric,
        other => panic!("expected a memory leak, got {other:?}\n{report}"),
    }
}

#[test]
fn heapalloc_leak_is_heap_growth_twin_passes() {
    let _s = serial();
    let report = leak_report("leak_heapalloc", memory_only());
    assert_eq!(leaking_metric(&report), Metric::Heap, "{report}");
    passes("clean_heapalloc");
}

#[test]
fn malloc_leak_is_heap_growth_twin_passes() {
    let _s = serial();
    let report = leak_report("leak_malloc", memory_only());
    assert_eq!(leaking_metric(&report), Metric::Heap, "{report}");
    passes("clean_malloc");
}

#[test]
fn virtualalloc_leak_is_mmap_growth_twin_passes() {
    let _s = serial();
    let before = psleak::malloc_stats().unwrap();
    let f = dll_fn("leak_virtualalloc");
    f();
    let after = psleak::malloc_stats().unwrap();
    assert_eq!(
        after.mmap_used - before.mmap_used,
        64 * 1024,
        "{before:?} -> {after:?}"
    );
    let report = leak_report("leak_virtualalloc", memory_only());
    assert_eq!(leaking_metric(&report), Metric::Mmap, "{report}");
    passes("clean_virtualalloc");
}

fn resource_leak(report: &Report) -> &psleak::ResourceLeak {
    match &report.outcome {
        Outcome::ResourceLeak { leaks } => &leaks[0],
        other => panic!("expected a resource leak, got {other:?}\n{report}"),
    }
}

#[test]
fn heapcreate_leak_is_described_twin_passes() {
    let _s = serial();
    let before = psleak::heap_list().unwrap().len();
    dll_fn("leak_heapcreate")();
    assert_eq!(psleak::heap_list().unwrap().len(), before + 1);
    let report = leak_report("leak_heapcreate", handles_only());
    let leak = resource_leak(&report);
    assert_eq!(
        (leak.kind, leak.count, leak.calls),
        (ResourceKind::HeapCreate, 1, 1),
        "{report}"
    );
    let text = report.to_text();
    assert!(
        text.starts_with("detected 1 unclosed HeapCreate() call after calling 'leak_heapcreate' 1 time")
            && text.contains("\n* heap 0x"),
        "{report}"
    );
    passes("clean_heapcreate");
}

#[test]
fn handle_leak_is_described_twin_passes() {
    let _s = serial();
    let before = psleak::handle_count().unwrap();
    dll_fn("leak_handle")();
    assert_eq!(psleak::handle_count().unwrap(), before + 1);
    let report = leak_report("leak_handle", handles_only());
    let leak = resource_leak(&report);
    assert_eq!((leak.kind, leak.count), (ResourceKind::Handle, 1), "{report}");
    assert!(leak.leaked[0].description.ends_with(": Event"), "{report}");
    passes("clean_handle");
}

#[test]
fn thread_leak_is_caught_twin_passes() {
    let _s = serial();
    let mut threads = Checkers::none();
    threads.threads = true;
    let report = leak_report("leak_thread", threads);
    let leak = resource_leak(&report);
    assert_eq!(
        (leak.kind, leak.count),
        (ResourceKind::NativeThread, 1),
        "{report}"
    );
    dll_fn("release_threads")();
    passes("clean_thread");
}

#[test]
fn probes_answer_and_fds_are_unavailable() {
    let _s = serial();
    assert_eq!(psleak::BACKEND, "windows");
    let m = psleak::malloc_stats().unwrap();
    assert!(m.heap_used > 0 && m.heap_total >= m.heap_used, "{m:?}");
    assert!(psleak::thread_count().unwrap() >= 1);
    assert!(psleak::memory_quick().unwrap().0 > 0);
    assert!(matches!(
        psleak::fd_count(),
        Err(psleak::Error::Unavailable { .. })
    ));
    assert!(psleak::malloc_trim().is_ok());
}
