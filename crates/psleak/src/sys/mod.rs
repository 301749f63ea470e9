//! The only module that knows the operating system. One backend is chosen here, once; the
//! rest of the crate calls these functions and never uses `#[cfg(target_os)]` itself.
//!
//! Every backend provides the same functions:
//!
//! | function          | cost (Linux)                                   | cost (Windows)                          | allocates |
//! |-------------------|------------------------------------------------|-----------------------------------------|-----------|
//! | `malloc_stats`    | `mallinfo2()`: walks malloc's free lists       | `HeapWalk` of every heap + `VirtualQuery` walk | no |
//! | `malloc_trim`     | `malloc_trim(0)`: walks the heap               | `HeapCompact` of every heap             | no        |
//! | `memory_quick`    | one read of `/proc/self/statm` (rss, vms)      | `GetProcessMemoryInfo`                  | no        |
//! | `memory_counters` | one read of `/proc/self/status` (rss, vms, anon, swap) | `GetProcessMemoryInfo`          | no        |
//! | `process_memory`  | statm + `/proc/self/smaps_rollup` (Linux 4.14) | `GetProcessMemoryInfo`                  | no        |
//! | `fd_count`        | `getdents64` over `/proc/self/fd`              | unavailable (no fds; see handles)       | no        |
//! | `fd_list`         | readlink + fstat (+ socket calls) per fd       | unavailable                             | yes       |
//! | `handle_count`    | unavailable (no handles)                       | `GetProcessHandleCount`                 | no (Wine: yes) |
//! | `handle_list`     | unavailable                                    | `NtQuerySystemInformation` + per handle `NtQueryObject` | yes |
//! | `heap_list`       | unavailable                                    | `GetProcessHeaps` + `HeapWalk`          | yes       |
//! | `thread_count`    | one read of `/proc/self/status`                | Toolhelp snapshot                       | no        |
//! | `thread_list`     | `/proc/self/task/*/comm`                       | Toolhelp + `GetThreadDescription`       | yes       |
//! | `page_size`       | `sysconf(_SC_PAGESIZE)`, once                  | `GetSystemInfo().dwPageSize`, once      | no        |
//! | `default_thread_stack` | `pthread_attr_getstacksize` of a fresh attribute | none: an exited thread's stack is freed | no |
//!
//! `HAS_FDS` and `HAS_HANDLES` say which kind of resource table the OS has: the checks of
//! the other kind have nothing to look at there and are skipped.

// `--cfg psleak_unsupported` builds the unsupported backend on Linux too, so that the
// project's tests check it compiles and answers as it should (`make test` does this).
#[cfg(all(target_os = "linux", not(psleak_unsupported)))]
pub(crate) mod linux;
#[cfg(all(target_os = "linux", not(psleak_unsupported)))]
pub(crate) use linux as backend;

// macOS (costs in macos/mod.rs). Its pure decoders (`macos::decode`) are built into the
// tests on every platform, so that Linux CI checks them.
#[cfg(any(target_os = "macos", test))]
#[cfg_attr(any(not(target_os = "macos"), psleak_unsupported), allow(dead_code))]
pub(crate) mod macos;
#[cfg(all(target_os = "macos", not(psleak_unsupported)))]
pub(crate) use macos as backend;

#[cfg(all(windows, not(psleak_unsupported)))]
pub(crate) mod windows;
#[cfg(all(windows, not(psleak_unsupported)))]
pub(crate) use windows as backend;

// Allocation tracking for every backend without one (macOS, Windows, unsupported).
#[cfg(any(not(target_os = "linux"), psleak_unsupported, test))]
#[cfg_attr(all(target_os = "linux", not(psleak_unsupported)), allow(dead_code))]
pub(crate) mod no_track;

#[cfg(any(
    not(any(target_os = "linux", target_os = "macos", windows)),
    psleak_unsupported
))]
pub(crate) mod unsupported;
#[cfg(any(
    not(any(target_os = "linux", target_os = "macos", windows)),
    psleak_unsupported
))]
pub(crate) use unsupported as backend;

// What POSIX threads share (Linux, macOS).
#[cfg(all(any(target_os = "linux", target_os = "macos"), not(psleak_unsupported)))]
pub(crate) mod posix_threads;

// Handles and private heaps exist on Windows only; the other backends share these answers.
#[cfg(any(not(windows), psleak_unsupported))]
pub(crate) mod no_handles;

/// The name of the backend compiled in (`"linux"`, `"macos"`, `"windows"`, `"unsupported"`).
pub const BACKEND: &str = backend::NAME;
