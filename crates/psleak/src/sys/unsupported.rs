//! The backend for platforms psleak does not support yet. It compiles everywhere and answers
//! every probe with [`Error::Unavailable`], naming the platform.

use crate::error::{Error, Result};
use crate::probes::{FdInfo, MallocStats, MemoryCounters, ProcessMemory, ThreadInfo};

pub(crate) const NAME: &str = "unsupported";

pub(crate) use super::no_track as track;
/// Asked anyway, so that a check reports the missing probe instead of skipping it.
pub(crate) const HAS_FDS: bool = true;
/// Whether the process's virtual size includes malloc's arenas as `heap_total` counts
/// them (see the Linux backend): not established here, so vms is judged whole.
pub(crate) const VMS_HOLDS_HEAP: bool = false;

pub(crate) use super::no_handles::{handle_count, handle_list, heap_list, HAS_HANDLES};

fn unavailable<T>(what: &'static str) -> Result<T> {
    Err(Error::Unavailable {
        what,
        reason: format!(
            "psleak has no backend for {} yet (supported: Linux, macOS, Windows)",
            std::env::consts::OS
        ),
    })
}

/// The page size is only a unit for the verdict's page-granular floors: 4 KiB, the common
/// one, where the platform cannot be asked.
pub(crate) fn page_size() -> u64 {
    4096
}

/// Unknown here.
pub(crate) fn default_thread_stack() -> Option<u64> {
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkers, LeakCheck, LeakError};

    fn assert_unavailable<T: std::fmt::Debug>(r: Result<T>, what: &str) {
        match r {
            Err(e @ Error::Unavailable { .. }) => {
                let text = e.to_string();
                assert!(text.starts_with(what), "{text}");
                assert!(text.contains("no backend for"), "{text}");
            }
            other => panic!("expected Unavailable for {what}, got {other:?}"),
        }
    }

    #[test]
    fn every_probe_says_it_is_unavailable() {
        assert_unavailable(malloc_stats(), "malloc statistics");
        assert_unavailable(malloc_trim(), "malloc_trim");
        assert_unavailable(memory_quick(), "process memory");
        assert_unavailable(memory_counters(), "process memory");
        assert_unavailable(process_memory(), "process memory");
        assert_unavailable(fd_count(), "file descriptor count");
        assert_unavailable(fd_list(), "file descriptor list");
        assert_unavailable(thread_count(), "thread count");
        assert_unavailable(thread_list(), "thread list");
    }

    #[test]
    fn a_check_fails_with_the_probe_error_not_a_verdict() {
        let r = LeakCheck::new().run(|| {});
        assert!(
            matches!(r, Err(LeakError::Probe(Error::Unavailable { .. }))),
            "{r:?}"
        );
        let r = LeakCheck::new().checkers(Checkers::none()).run(|| {});
        assert!(r.is_ok(), "{r:?}");
    }
}
