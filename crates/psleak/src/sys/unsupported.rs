//! The backend for platforms psleak does not support yet. It compiles everywhere and answers
//! every probe with [`Error::Unavailable`], naming the platform.

use crate::error::{Error, Result};
use crate::probes::{FdInfo, MallocStats, MemoryCounters, ProcessMemory, ThreadInfo};

pub(crate) const NAME: &str = "unsupported";

fn unavailable<T>(what: &'static str) -> Result<T> {
    Err(Error::Unavailable {
        what,
        reason: format!(
            "psleak has no backend for {} yet (supported: Linux)",
            std::env::consts::OS
        ),
    })
}

pub(crate) fn malloc_stats() -> Result<MallocStats> {
    unavailable("malloc statistics")
}

pub(crate) fn malloc_trim() -> Result<bool> {
    unavailable("malloc_trim")
}

pub(crate) fn memory_quick() -> Result<(u64, u64)> {
    unavailable("process memory")
}

pub(crate) fn memory_counters() -> Result<MemoryCounters> {
    unavailable("process memory")
}

pub(crate) fn process_memory() -> Result<ProcessMemory> {
    unavailable("process memory")
}

pub(crate) fn fd_count() -> Result<usize> {
    unavailable("file descriptor count")
}

pub(crate) fn fd_list() -> Result<Vec<FdInfo>> {
    unavailable("file descriptor list")
}

pub(crate) fn thread_count() -> Result<usize> {
    unavailable("thread count")
}

pub(crate) fn thread_list() -> Result<Vec<ThreadInfo>> {
    unavailable("thread list")
}
