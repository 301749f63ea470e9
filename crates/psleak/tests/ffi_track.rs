//! Native allocation tracking through FFI: each leak of `tests/c/leaks.c` is found exactly
//! and its report names the C function and the file:line of the allocating call; the clean
//! twins pass. Run serially (the Makefile passes --test-threads=1).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use psleak::{LeakCheck, LeakError, Metric, Outcome, Report};

fn leak_report(name: &str, f: impl FnMut()) -> Report {
    match LeakCheck::new().name(name).run(f) {
        Err(LeakError::Leak(report)) => *report,
        Ok(report) => panic!("{name}: expected a leak, got\n{report}"),
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The report's first site starts with `function` at `leaks.c:<line of marker>`.
fn assert_site(report: &Report, function: &str, marker: &str) {
    let line = common::line_of("leaks.c", marker);
    let site = report
        .sites
        .first()
        .unwrap_or_else(|| panic!("no site:\n{report}"));
    let frame = site
        .frames
        .iter()
        .find(|f| f.function.as_deref() == Some(function))
        .unwrap_or_else(|| panic!("{function} not among the frames:\n{report}"));
    assert!(
        frame.file.as_deref().is_some_and(|f| f.ends_with("leaks.c")) && frame.line == Some(line),
        "{function} should be at leaks.c:{line}:\n{report}"
    );
    let text = report.to_text();
    assert!(text.contains(&format!("{function} (")), "{text}");
    assert!(text.contains(&format!("leaks.c:{line})")), "{text}");
}

fn survivors_metric(report: &Report) -> Metric {
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    findings[0].metric
}

#[test]
fn malloc_leak_is_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_malloc");
    let report = leak_report("leak_malloc", || leak());
    assert_eq!(survivors_metric(&report), Metric::NativeBytes, "{report}");
    assert_site(&report, "leak_malloc", "LEAK_MALLOC");
    let site = &report.sites[0];
    assert_eq!(site.bytes_per_call, 100.0, "{report}");
    assert_eq!(site.blocks_per_call, 1.0, "{report}");
    // The caller: this test's closure, and nothing of psleak's driver below it.
    assert!(
        site.frames
            .iter()
            .all(|f| !f.function.as_deref().unwrap_or("").contains("psleak::")),
        "{report}"
    );
}

#[test]
fn libc_allocating_for_its_caller_is_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_strdup");
    let report = leak_report("leak_strdup", || leak());
    assert_eq!(survivors_metric(&report), Metric::NativeBytes, "{report}");
    // strdup's own frame (inside libc) comes first, then the caller's line.
    assert_site(&report, "leak_strdup", "LEAK_STRDUP");
    let names: Vec<&str> = report.sites[0]
        .frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert!(names[0].contains("strdup"), "{report}");
}

#[test]
fn mmap_leak_is_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_mmap_site");
    let report = leak_report("leak_mmap_site", || leak());
    assert_site(&report, "leak_mmap_site", "LEAK_MMAP");
    assert_eq!(report.sites[0].bytes_per_call, 8192.0, "{report}");
}

#[test]
fn rare_leak_is_found_and_located_with_default_knobs() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_rare");
    let report = leak_report("leak_rare", || leak());
    assert_site(&report, "leak_rare", "LEAK_RARE");
    assert!((0.6..=0.7).contains(&report.sites[0].bytes_per_call), "{report}");
    let clean = lib.void_fn("clean_rare");
    let report = LeakCheck::new().name("clean_rare").run(|| clean()).unwrap();
    assert!(report.is_clean());
}

#[test]
fn leak_beside_a_flushed_cache_is_found_and_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_beside_churn");
    let report = leak_report("leak_beside_churn", || leak());
    assert_site(&report, "leak_beside_churn", "LEAK_CHURN");
    assert_eq!(report.sites.len(), 1, "the cache is not a site:\n{report}");
    let clean = lib.void_fn("clean_churn");
    let report = LeakCheck::new().name("clean_churn").run(|| clean()).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn leak_in_a_persistent_worker_thread_is_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_in_worker");
    let report = leak_report("leak_in_worker", || leak());
    assert_site(&report, "worker_main", "LEAK_WORKER");
}

#[test]
fn leak_in_a_short_lived_thread_is_located() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_in_short_thread");
    let report = leak_report("leak_in_short_thread", || leak());
    assert_site(&report, "short_main", "LEAK_SHORT_THREAD");
}

/// A library first loaded while the hooks are in: the dlopen hook patches it before
/// dlopen returns, so its allocations are counted and located.
#[test]
fn leak_in_a_library_loaded_during_the_check_is_located() {
    let _serial = common::serial();
    let late = common::Lib::build_copy("libleaks-late.so");
    let mut calls = 0u32;
    let mut handle: *mut libc::c_void = std::ptr::null_mut();
    let mut leak: Option<extern "C" fn()> = None;
    // Warm-up (10), the resource check (1) and the first calls of the first run pass
    // before the library is loaded.
    let report = leak_report("late_library", || {
        calls += 1;
        if calls == 50 {
            let path = std::ffi::CString::new(late.to_str().unwrap()).unwrap();
            // SAFETY: dlopen with a valid path; dlsym of a `void f(void)` function.
            unsafe {
                handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
                assert!(!handle.is_null());
                let f = libc::dlsym(handle, c"leak_malloc".as_ptr());
                assert!(!f.is_null());
                leak = Some(std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(f));
            }
        }
        if let Some(f) = leak {
            f();
        }
    });
    assert_site(&report, "leak_malloc", "LEAK_MALLOC");
    let object = report.sites[0].frames[0].object.clone().unwrap_or_default();
    assert!(object.ends_with("libleaks-late.so"), "{report}");
}

/// A library each call opens and closes again (a plugin): reloaded, it is patched again
/// (its fresh GOT holds no hook), and its frames are named after it is unmapped.
#[test]
fn leak_in_a_library_each_call_loads_and_unloads_is_located() {
    let _serial = common::serial();
    let plugin = common::Lib::build_copy("libleaks-plugin.so");
    let path = std::ffi::CString::new(plugin.to_str().unwrap()).unwrap();
    let report = leak_report("plugin", || {
        // SAFETY: dlopen with a valid path; dlsym of a `void f(void)` function, called
        // before the handle is closed.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!handle.is_null());
            let f = libc::dlsym(handle, c"leak_malloc".as_ptr());
            assert!(!f.is_null());
            std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(f)();
            libc::dlclose(handle);
        }
    });
    assert_site(&report, "leak_malloc", "LEAK_MALLOC");
    let object = report.sites[0].frames[0].object.clone().unwrap_or_default();
    assert!(object.ends_with("libleaks-plugin.so"), "{report}");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(!maps.contains("libleaks-plugin.so"), "the plugin is still mapped");
}

/// A library that opens another by a bare name, found only through its own `DT_RUNPATH`
/// (`$ORIGIN/plugins`): through the dlopen hook it is found all the same, as without
/// psleak, and its leak is tracked.
#[test]
fn dlopen_by_a_bare_name_searches_the_callers_runpath() {
    let _serial = common::serial();
    let host = common::Lib::load_with_runpath("libleaks-runpath.so", "$ORIGIN/plugins");
    let plain = common::Lib::build_copy("libleaks-bare-plugin.so");
    let dir = plain.with_file_name("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&plain, dir.join("libleaks-bare-plugin.so")).unwrap();
    let open = host.open_fn("open_bare");
    let name = c"libleaks-bare-plugin.so";
    let mut opened = 0u64;
    let report = leak_report("bare_name", || {
        let handle = open(name.as_ptr());
        if !handle.is_null() {
            opened += 1;
            // SAFETY: dlsym of a `void f(void)` of the library just opened, called before
            // the handle is closed.
            unsafe {
                let f = libc::dlsym(handle, c"leak_malloc".as_ptr());
                std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(f)();
                libc::dlclose(handle);
            }
        }
    });
    assert!(
        opened > 0 && opened == report.total_calls,
        "opened {opened}:\n{report}"
    );
    assert_site(&report, "leak_malloc", "LEAK_MALLOC");
}

#[test]
fn a_buffer_realloc_grows_on_every_call_is_a_leak() {
    // Each call's realloc replaces the block: no block outlives the next call, and counted
    // as new blocks of each run, the latest one's size explained the heap's growth.
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_realloc_grown");
    let report = leak_report("leak_realloc_grown", || leak());
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    assert!((60.0..70.0).contains(&findings[0].per_call), "{report}");
    let clean = lib.void_fn("clean_realloc_cycled");
    let report = LeakCheck::new()
        .name("clean_realloc_cycled")
        .run(|| clean())
        .unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_buffer_realloc_grows_by_8_bytes_a_call_is_a_leak() {
    // An array appended to, its capacity grown by an eighth when full: no run makes a
    // block, and the heap grows 6-13 KiB a run, what glibc's caches may hold after a run
    // that freed all it made. Such a run did grow a block it did not make, though.
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_realloc_appended");
    let report = leak_report("leak_realloc_appended", || leak());
    let Outcome::MemoryLeak { findings } = &report.outcome else {
        panic!("{report}")
    };
    assert!((6.0..12.0).contains(&findings[0].per_call), "{report}");
    assert!(report.runs.iter().any(|r| r.resized > 0), "{report}");
    // The where run goes on until the buffer is resized, and names the realloc, with the
    // leak's rate as its share.
    assert_site(&report, "leak_realloc_appended", "LEAK_REALLOC_APPENDED");
    let site = &report.sites[0];
    assert!(
        site.replaced && (site.bytes_per_call - findings[0].per_call).abs() < 0.5,
        "{report}"
    );
}

#[test]
fn tracking_off_judges_from_the_counters() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_malloc");
    let err = LeakCheck::new().track_native(false).run(|| leak()).unwrap_err();
    let LeakError::Leak(report) = err else {
        panic!("{err}")
    };
    assert_eq!(survivors_metric(&report), Metric::Heap, "{report}");
    assert!(report.sites.is_empty());
    assert!(!report.enabled[Metric::NativeBytes.index()]);
}

/// A panic in the middle of a check unwinds through the driver: the hooks come out (the
/// next check installs them again rather than finding them taken).
#[test]
fn hooks_come_out_when_the_closure_panics() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_malloc");
    let mut calls = 0;
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        LeakCheck::new().run(|| {
            calls += 1;
            leak();
            assert!(calls < 300, "stop");
        })
    }));
    assert!(unwound.is_err());
    let report = leak_report("leak_malloc", || leak());
    assert!(
        report.notes.iter().all(|n| !n.contains("not tracked")),
        "{report}"
    );
    assert!(!report.sites.is_empty(), "{report}");
}

/// Allocations through function pointers a library keeps in its data (libxml2's
/// `xmlMalloc`, linked into lxml), not through its GOT: tracked and located like the rest,
/// and a block made through one and freed through the other is not a survivor.
#[test]
fn allocations_through_a_pointer_table_are_tracked() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_through_table");
    let report = leak_report("leak_through_table", || leak());
    assert_eq!(survivors_metric(&report), Metric::NativeBytes, "{report}");
    assert_site(&report, "leak_through_table", "LEAK_THROUGH_TABLE");
    assert_eq!(report.sites[0].bytes_per_call, 48.0, "{report}");
    let clean = lib.void_fn("clean_mixed_table");
    let report = LeakCheck::new().run(|| clean()).unwrap();
    assert!(report.is_clean(), "{report}");
}

/// A pointer the program set to its own allocator (`xmlMemSetup`) is never patched, and one
/// it sets during a check is not changed back when the check ends; the C library's is
/// patched during the check's runs and restored after it.
#[test]
fn a_pointer_table_the_program_set_is_left_as_it_is() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let (address, own) = (
        lib.size_fn("table_malloc_address"),
        lib.size_fn("own_malloc_address"),
    );
    let (use_own, use_libc) = (lib.void_fn("table_use_own"), lib.void_fn("table_use_libc"));
    let libc_malloc = address();
    let mut patched = 0;
    LeakCheck::new()
        .run(|| patched += usize::from(address() != libc_malloc))
        .unwrap();
    assert!(patched > 0, "patched during the runs");
    assert_eq!(address(), libc_malloc, "restored after them");
    use_own();
    let mut other = 0;
    LeakCheck::new()
        .run(|| other += usize::from(address() != own()))
        .unwrap();
    assert_eq!(other, 0, "the program's own: not patched");
    assert_eq!(address(), own());
    use_libc();
    let mut calls = 0;
    LeakCheck::new()
        .run(|| {
            calls += 1;
            if calls == 300 {
                use_own();
            }
        })
        .unwrap();
    assert_eq!(address(), own(), "set during the check: kept");
    use_libc();
}

/// A joinable thread that ends and is never joined keeps its stack: the leak is found on the
/// address space and the heap (its thread-local storage), and the report names the cause
/// instead of sending the user after an untracked malloc. Its twin detaches its threads.
#[test]
fn threads_left_unjoined_are_named_as_the_cause() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_thread_unjoined");
    let join = lib.void_fn("join_ended_threads");
    let report = LeakCheck::new().name("leak_thread_unjoined").run(|| leak());
    join();
    let report = match report {
        Err(LeakError::Leak(report)) => *report,
        other => panic!("expected a leak, got {other:?}"),
    };
    let notes = report.notes.join("\n");
    assert!(notes.contains("pthread_join()"), "{report}");
    assert!(!notes.contains("dlsym"), "{report}");
    let clean = lib.void_fn("clean_thread_detached");
    let report = LeakCheck::new()
        .name("clean_thread_detached")
        .run(|| clean())
        .unwrap();
    assert!(
        report.notes.iter().all(|n| !n.contains("pthread_join()")),
        "{report}"
    );
}

/// malloc called through the address `dlsym` gave (ctypes, cffi's ABI mode): tracking does
/// not see it, the heap counters find the leak, and the report says why it has no site.
#[test]
fn a_leak_tracking_cannot_see_says_why_it_has_no_site() {
    let _serial = common::serial();
    let lib = common::Lib::load();
    let leak = lib.void_fn("leak_through_dlsym");
    let report = leak_report("leak_through_dlsym", || leak());
    assert_eq!(survivors_metric(&report), Metric::Heap, "{report}");
    assert!(report.sites.is_empty(), "{report}");
    assert!(report.notes.iter().any(|n| n.contains("dlsym")), "{report}");
    // A leak tracking explains gets no such note.
    let leak = lib.void_fn("leak_malloc");
    let report = leak_report("leak_malloc", || leak());
    assert!(report.notes.iter().all(|n| !n.contains("dlsym")), "{report}");
}
