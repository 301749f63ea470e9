//! Native threads, from `/proc/self/status` and `/proc/self/task` (proc(5)).

use super::fds::for_each_numbered_entry;
use super::memory::read_small;
use super::parse::{parse_comm, parse_status_threads};
use crate::error::Result;
use crate::probes::ThreadInfo;

/// Number of threads in the process: the `Threads:` line of `/proc/self/status`. No
/// allocation.
pub(crate) fn thread_count() -> Result<usize> {
    // status is ~1.5 KB on Linux 6.x (it grows with CPU and NUMA node counts: the
    // Cpus_allowed and Mems_allowed masks); 8 KiB leaves room for large machines.
    let mut buf = [0u8; 8192];
    parse_status_threads(read_small("/proc/self/status", &mut buf)?)
}

/// Every thread with its id and name (`/proc/self/task/TID/comm`), ordered by id. A thread
/// that exits while being listed is left out.
pub(crate) fn thread_list() -> Result<Vec<ThreadInfo>> {
    let mut tids = Vec::new();
    for_each_numbered_entry(c"/proc/self/task", |tid, _| tids.push(tid))?;
    tids.sort_unstable();
    Ok(tids
        .into_iter()
        .filter_map(|tid| {
            // The directory of an exited thread is gone: the read fails, the thread is skipped.
            let comm = std::fs::read(format!("/proc/self/task/{tid}/comm")).ok()?;
            Some(ThreadInfo {
                id: i64::from(tid),
                name: String::from_utf8_lossy(parse_comm(&comm)).into_owned(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn this_thread_is_listed() {
        // SAFETY: gettid has no preconditions (glibc 2.30+ wrapper; the raw syscall here).
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let list = thread_list().unwrap();
        assert!(list.iter().any(|t| t.id == tid), "{tid} not in {list:?}");
        assert!(thread_count().unwrap() >= 1);
        // The process's main thread has TID == PID.
        let pid = i64::from(std::process::id());
        assert_eq!(list.first().map(|t| t.id), Some(pid));
    }
}
