//! The only module that knows the operating system. One backend is chosen here, once; the
//! rest of the crate calls these functions and never uses `#[cfg(target_os)]` itself.
//!
//! Every backend provides the same functions:
//!
//! | function          | cost (Linux)                                   | allocates |
//! |-------------------|------------------------------------------------|-----------|
//! | `malloc_stats`    | `mallinfo2()`: walks malloc's free lists       | no        |
//! | `malloc_trim`     | `malloc_trim(0)`: walks the heap               | no        |
//! | `memory_quick`    | one read of `/proc/self/statm` (rss, vms)      | no        |
//! | `memory_counters` | one read of `/proc/self/status` (rss, vms, anon, swap) | no   |
//! | `process_memory`  | statm + `/proc/self/smaps_rollup` (Linux 4.14) | no        |
//! | `fd_count`        | `getdents64` over `/proc/self/fd`              | no        |
//! | `fd_list`         | readlink + fstat (+ socket calls) per fd       | yes       |
//! | `thread_count`    | one read of `/proc/self/status`                | no        |
//! | `thread_list`     | `/proc/self/task/*/comm`                       | yes       |
//! | `page_size`       | `sysconf(_SC_PAGESIZE)`, once                  | no        |

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

#[cfg(any(not(any(target_os = "linux", target_os = "macos")), psleak_unsupported))]
pub(crate) mod unsupported;
#[cfg(any(not(any(target_os = "linux", target_os = "macos")), psleak_unsupported))]
pub(crate) use unsupported as backend;

/// The name of the backend compiled in (`"linux"`, `"macos"`, `"unsupported"`).
pub const BACKEND: &str = backend::NAME;
