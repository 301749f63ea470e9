//! Process memory from `GetProcessMemoryInfo` (`PROCESS_MEMORY_COUNTERS_EX`): one call, no
//! allocation. Which counter each metric is
//! (<https://learn.microsoft.com/en-us/windows/win32/api/psapi/ns-psapi-process_memory_counters_ex>):
//!
//! | metric | counter | meaning |
//! |--------|---------|---------|
//! | `rss`  | `WorkingSetSize` | resident pages (the working set) |
//! | `vms`  | `PagefileUsage` | commit charge: private memory committed (psutil's `vms` too) |
//! | `anon` / `uss` | `PrivateUsage` | private committed bytes ("private bytes") |
//! | `pss`, `swap` | — | Windows has no such per-process counters: 0 |
//!
//! Under Wine 8, `PrivateUsage` is always 0 and `PagefileUsage` follows the working set,
//! not commit: the commit-charge metrics cannot be verified there.

use std::mem::{size_of, zeroed};
use std::sync::OnceLock;

use windows_sys::Win32::System::ProcessStatus::{
    K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS, PROCESS_MEMORY_COUNTERS_EX,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::{last_error, system_info};
use crate::error::Result;
use crate::probes::{MemoryCounters, ProcessMemory};

/// The page size (`GetSystemInfo().dwPageSize`: 4 KiB on x86-64 and arm64), asked once.
pub(crate) fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| u64::from(system_info().dwPageSize).max(4096))
}

fn counters() -> Result<PROCESS_MEMORY_COUNTERS_EX> {
    // SAFETY: the struct is plain data; cb tells the call it is the _EX variant, which
    // Windows XP SP2 and later fill in full. GetCurrentProcess is a pseudo-handle.
    unsafe {
        let mut c: PROCESS_MEMORY_COUNTERS_EX = zeroed();
        c.cb = size_of::<PROCESS_MEMORY_COUNTERS_EX>() as u32;
        let ok = K32GetProcessMemoryInfo(
            GetCurrentProcess(),
            (&mut c as *mut PROCESS_MEMORY_COUNTERS_EX).cast::<PROCESS_MEMORY_COUNTERS>(),
            c.cb,
        );
        if ok == 0 {
            return Err(last_error("GetProcessMemoryInfo"));
        }
        Ok(c)
    }
}

/// rss (working set) and vms (commit charge).
pub(crate) fn memory_quick() -> Result<(u64, u64)> {
    let c = counters()?;
    Ok((c.WorkingSetSize as u64, c.PagefileUsage as u64))
}

/// rss, vms and private bytes; no swap counter on Windows.
pub(crate) fn memory_counters() -> Result<MemoryCounters> {
    let c = counters()?;
    Ok(MemoryCounters {
        rss: c.WorkingSetSize as u64,
        vms: c.PagefileUsage as u64,
        anon: c.PrivateUsage as u64,
        swap: 0,
    })
}

/// rss, vms, and private bytes as uss; pss and swap do not exist here.
pub(crate) fn process_memory() -> Result<ProcessMemory> {
    let c = counters()?;
    Ok(ProcessMemory {
        rss: c.WorkingSetSize as u64,
        vms: c.PagefileUsage as u64,
        uss: c.PrivateUsage as u64,
        pss: 0,
        swap: 0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn touching_memory_grows_the_working_set() {
        let (rss0, _) = memory_quick().unwrap();
        let v = std::hint::black_box(vec![1u8; 32 << 20]);
        let (rss1, _) = memory_quick().unwrap();
        assert!(rss1 >= rss0 + (24 << 20), "{rss0} -> {rss1}");
        drop(v);
        let c = memory_counters().unwrap();
        assert!(c.rss > 0 && c.vms > 0);
    }
}
