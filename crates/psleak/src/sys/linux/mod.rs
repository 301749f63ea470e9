//! Linux backend: glibc's malloc statistics and `/proc/self`.
//!
//! Everything on the measuring path reads into fixed stack buffers and allocates nothing:
//! the probes run inside the process they measure.

mod fds;
mod malloc;
mod memory;
pub(crate) mod parse;
mod threads;
pub(crate) mod track;

pub(crate) const NAME: &str = "linux";
/// POSIX file descriptors are this OS's resource table.
pub(crate) const HAS_FDS: bool = true;
/// Whether the process's virtual size includes malloc's arenas as `heap_total` counts
/// them (glibc: the main heap's brk area and each thread arena's heap), so that the
/// judged vms can leave them out (see the driver's sampler).
pub(crate) const VMS_HOLDS_HEAP: bool = true;

pub(crate) use super::no_handles::{handle_count, handle_list, heap_list, HAS_HANDLES};

pub(crate) use super::posix_threads::default_thread_stack;
pub(crate) use fds::{fd_count, fd_list};
pub(crate) use malloc::{malloc_stats, malloc_trim};
pub(crate) use memory::{memory_counters, memory_quick, page_size, process_memory};
pub(crate) use threads::{thread_count, thread_list};
