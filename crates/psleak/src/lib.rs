//! # psleak: in-process leak checks for native code
//!
//! psleak calls a function many times inside the current process and fails when the process
//! keeps growing, or when a single call leaves resources behind. It sees what Rust's global
//! allocator hooks cannot: C `malloc` reached through FFI, `mmap`, file descriptors and
//! native threads.
//!
//! ## What is measured
//!
//! | metric   | source (Linux)                          | source (Windows)                     | granularity |
//! |----------|-----------------------------------------|--------------------------------------|-------------|
//! | `heap`   | glibc `mallinfo2().uordblks`, all arenas | busy blocks of every heap (`HeapWalk`) | byte-exact |
//! | `mmap`   | glibc `mallinfo2().hblkhd`               | private committed memory outside the heaps (`VirtualQuery`) | byte-exact (Linux), page (Windows) |
//! | `anon`   | `RssAnon` of `/proc/self/status`: resident anonymous memory | `PrivateUsage` (private bytes, committed) | page |
//! | `rss`    | `/proc/self/statm`                       | `WorkingSetSize`                     | page        |
//! | `vms`    | `/proc/self/statm`, less glibc's arenas (`mallinfo2().arena`: `heap` judges them) | `PagefileUsage` (commit charge) | page |
//! | `blocks` | a front end's counter (Python: `sys.getallocatedblocks()`) | the same       | exact       |
//! | `native_blocks` | allocation tracking: blocks a run allocated that are still alive | not tracked | exact |
//! | `native_bytes`  | allocation tracking: their bytes          | not tracked                          | byte-exact  |
//!
//! Resources: file descriptors (`/proc/self/fd`, described by kind), native threads
//! (`/proc/self/task`); on Windows handles (described by type and name), heaps made by
//! `HeapCreate`, and native threads (Toolhelp, named by their description).
//!
//! ## Allocation tracking: what survives, and where it was allocated
//!
//! During the memory runs psleak counts native allocations exactly (Linux, glibc; on by
//! default, [`LeakCheck::track_native`]). It rewrites, in every loaded object, the GOT
//! entries through which code calls `malloc`, `calloc`, `realloc`, `reallocarray`, `free`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`, `mmap`, `mmap64`,
//! `munmap`, `mremap` and `dlopen` (libc's own entries too, so `strdup` or `opendir`
//! allocating for their caller are seen; objects `dlopen`ed during the check are patched
//! before `dlopen` returns), and writes every entry back exactly when the check ends, on
//! every way out. No `LD_PRELOAD`, no restart. Each block a run allocates is kept in a live
//! table (its own memory from the kernel, never from `malloc`) until it is freed; frees of
//! blocks allocated before the check are ignored.
//!
//! A run's *survivors* are its blocks still alive after the runs that followed it: a cache
//! that is flushed, or a buffer that is replaced, stops counting; a leak keeps counting, in
//! proportion to the calls. That makes the verdict exact where allocator counters drift: a
//! 64-byte leak on one call in a hundred, or 16 bytes a call beside a cache of 500 KB that
//! is flushed every 500 calls, are found with the default knobs.
//!
//! Once a tracked leak is confirmed, the check calls the function again with stack capture
//! on (libgcc's unwinder reads `.eh_frame`, so `-O2` code without frame pointers unwinds),
//! groups the survivors by stack, and names each frame from DWARF (`function (file:line)`,
//! a separate debug file found by build id) or the symbol table (`function
//! (object+offset)`): [`Report::sites`], innermost frame first, without psleak's own frames
//! and the runtime's; a front end adds the line of its own language that called native code
//! ([`Host::location`]; Python does).
//!
//! Costs: a hooked malloc/free pair costs about 30 ns more (a table insert and a removal);
//! a function that does real work besides ~100 allocations a call runs at ~1.2x, a bare
//! C malloc/free loop at ~1.9x (`make bench`, `bench/tracking.py`). The live table is 64 KiB
//! to start and grows with the blocks alive; the stack store (6.4 MiB of address space) is
//! mapped only for the where run. Its pages are counted in `rss` and the memory budget.
//!
//! Where tracking cannot run the report says why in a note, and the check judges from the
//! counters: not glibc (musl), a static program (no GOT entry for `malloc`), an
//! architecture other than x86-64 and AArch64, or entries already hooked by another tool
//! (memray, a profiler), which are left alone. An `LD_PRELOAD`ed allocator (jemalloc) is
//! tracked through: the hooks call whatever `malloc` the process resolves, and its own
//! page mappings are not counted. `dlopen` through the hook sees psleak as its caller, so a
//! bare library name that only the caller's `DT_RUNPATH` would find is not found while a
//! check runs (absolute paths, as Python's importer uses, are unaffected).
//!
//! ## What it costs
//!
//! The probes read `/proc` into fixed stack buffers and call `mallinfo2`; they allocate
//! nothing, so measuring does not disturb what is measured. A sample costs about ten
//! microseconds: `anon` is the kernel's `RssAnon` counter, where the exact USS of
//! [`process_memory`] (`smaps_rollup`) walks every page table and costs ten times more.
//! Leaked memory is anonymous memory, so both grow alike under a leak. On Windows a sample
//! walks every heap block (`HeapWalk`: 2–3 ms per 100,000 live blocks under Wine) and
//! every memory region (`VirtualQuery`), also without allocating. A clean function is judged after 10 warm-up calls and two runs
//! (200 + 400 calls by default); a leak after four runs, or as soon as the process has grown
//! by the memory budget (64 MiB by default).
//!
//! ## The test harness hazard
//!
//! The probes measure the whole process. `cargo test` runs tests on several threads at
//! once, so while one test measures, another may allocate, open files or start threads,
//! and its activity lands in the measurement: a clean function may look leaky, a leak may
//! hide behind another test's frees. psleak measures the noise floor before the runs and
//! raises its thresholds to match, and the report notes how many other threads existed,
//! but the remedy is to run leak checks alone:
//!
//! * put each leak test in its own integration-test file (`tests/leak_parse.rs`, ...):
//!   every file is its own process, or
//! * run the leak tests with `cargo test -- --test-threads=1` (this project's own tests
//!   do this; see its `Makefile`).
//!
//! ## Other caveats
//!
//! * glibc only for `heap`/`mmap` and allocation tracking on Linux (musl has no
//!   `mallinfo2`: those metrics are skipped and the report says so). Backends: Linux;
//!   Windows (tested under Wine, which reports no private bytes: `anon` stays flat there);
//!   macOS (type-checked, not run here). Allocation tracking is Linux-only. Other
//!   platforms compile and answer [`Error::Unavailable`].
//! * Memory that a function keeps on purpose (a cache) looks like a leak until it stops
//!   growing. Caches that fill within the first few thousand calls pass; a larger one
//!   needs a `warmup`, a `tolerance`, or a trim hook in the front end.
//! * A function that grows the process by more than the memory budget is reported, even
//!   if it would stop later: raise the budget for functions that legitimately do.
//!
//! ## Example
//!
//! A leak reached through FFI (libc's `malloc`, never freed) fails; its twin passes:
//!
//! ```
//! use psleak::{LeakCheck, LeakError};
//!
//! extern "C" {
//!     fn malloc(size: usize) -> *mut std::ffi::c_void;
//!     fn free(p: *mut std::ffi::c_void);
//! }
//!
//! let leak = LeakCheck::new().name("leaky").run(|| unsafe {
//!     std::hint::black_box(malloc(64));
//! });
//! match leak {
//!     Err(LeakError::Leak(report)) => println!("{report}"),
//!     other => panic!("expected a leak, got {other:?}"),
//! }
//!
//! LeakCheck::new()
//!     .name("tidy")
//!     .run(|| unsafe { free(std::hint::black_box(malloc(64))) })
//!     .expect("no leak");
//! ```
//!
//! In a test, [`assert_no_leak`] panics with the report.

#![deny(missing_docs)]

mod check;
mod driver;
mod error;
mod probes;
mod report;
mod sys;
mod testing;
mod tracking;
pub mod verdict;

pub use check::{CheckError, Checkers, Host, LeakCheck, Phase, Progress, DEFAULT_MEMORY_BUDGET};
pub use error::{Error, Result};
pub use probes::{
    FdInfo, FdKind, HandleInfo, HeapInfo, MallocStats, MemoryCounters, ProcessMemory, ThreadInfo,
};
pub use report::{
    format_bytes, Outcome, Report, Resource, ResourceKind, ResourceLeak, TracedFrame, TracedSite,
    SCHEMA_VERSION,
};
pub use sys::BACKEND;
pub use testing::{assert_no_leak, LeakError};
pub use tracking::{
    route_runtime_allocator, set_host_location, untracked, Frame, RuntimeAllocator, Site, SiteThread,
    SITE_THREADS,
};
pub use verdict::{Finding, LeakReason, Metric, Values};

use sys::backend;

/// The allocator's statistics. Cost: one `mallinfo2()` call (walks malloc's free lists).
pub fn malloc_stats() -> Result<MallocStats> {
    backend::malloc_stats()
}

/// Gives free heap memory back to the OS (`malloc_trim(0)`); true if anything was released.
pub fn malloc_trim() -> Result<bool> {
    backend::malloc_trim()
}

/// rss and vms in bytes. Cost: one read of `/proc/self/statm`; no allocation.
pub fn memory_quick() -> Result<(u64, u64)> {
    backend::memory_quick()
}

/// rss, vms, resident anonymous memory and swap. Cost: one read of `/proc/self/status`
/// (kernel counters, a few microseconds); no allocation. This is what a check samples.
pub fn memory_counters() -> Result<MemoryCounters> {
    backend::memory_counters()
}

/// rss, vms, uss, pss and swap. Cost: statm plus `/proc/self/smaps_rollup` (Linux 4.14+),
/// whose cost grows with the number of mappings; no allocation.
pub fn process_memory() -> Result<ProcessMemory> {
    backend::process_memory()
}

/// Number of open file descriptors. Cost: one `getdents64` pass over `/proc/self/fd`.
pub fn fd_count() -> Result<usize> {
    backend::fd_count()
}

/// Every open file descriptor, described. Allocates; a few syscalls per descriptor.
pub fn fd_list() -> Result<Vec<FdInfo>> {
    backend::fd_list()
}

/// Number of native threads. Cost: one read of `/proc/self/status`.
pub fn thread_count() -> Result<usize> {
    backend::thread_count()
}

/// Every native thread with its id and name. Allocates.
pub fn thread_list() -> Result<Vec<ThreadInfo>> {
    backend::thread_list()
}

/// Number of open handles (Windows). Cost: one `GetProcessHandleCount`; under Wine, where
/// that call answers 0, the system's handle table is read (allocates). Elsewhere
/// [`Error::Unavailable`].
pub fn handle_count() -> Result<usize> {
    backend::handle_count()
}

/// Every open handle with its type and name (Windows). Allocates; one `NtQueryObject` or
/// two per handle. Elsewhere [`Error::Unavailable`].
pub fn handle_list() -> Result<Vec<HandleInfo>> {
    backend::handle_list()
}

/// Every heap of the process with what it holds (Windows: `GetProcessHeaps` + `HeapWalk`).
/// Allocates the list. Elsewhere [`Error::Unavailable`].
pub fn heap_list() -> Result<Vec<HeapInfo>> {
    backend::heap_list()
}
