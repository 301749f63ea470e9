//! Windows backend: the heaps of `GetProcessHeaps` walked with `HeapWalk`, private memory
//! with `VirtualQuery`, `GetProcessMemoryInfo`, handles, Toolhelp threads.
//!
//! The measuring path (`malloc_stats`, `memory_quick`, `memory_counters`) allocates nothing:
//! it runs inside the process it measures, and a heap walk that allocated would count its
//! own blocks. Listing handles, heaps and threads allocates; the driver lists them outside
//! the memory runs.
//!
//! Tested under Wine 8 (see the README's platform section). Wine answers most of these
//! calls like Windows; where it does not, the probe detects Wine (`wine_get_version` in
//! ntdll) and says so in its docs.

mod handles;
mod heap;
mod memory;
mod threads;

use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use crate::error::{Error, Result};
use crate::probes::FdInfo;

pub(crate) const NAME: &str = "windows";
/// Windows has no descriptor table of its own: the CRT's descriptors wrap handles, which
/// the handle check sees.
pub(crate) const HAS_FDS: bool = false;
/// Whether the process's virtual size includes malloc's arenas as `heap_total` counts
/// them (see the Linux backend): not established here, so vms is judged whole.
pub(crate) const VMS_HOLDS_HEAP: bool = false;
pub(crate) const HAS_HANDLES: bool = true;

/// Allocation tracking: not on Windows yet (its loader binds through the import address
/// table, a different patcher); checks judge from the counters.
pub(crate) use super::no_track as track;
pub(crate) use handles::{handle_count, handle_list};
pub(crate) use heap::{heap_list, malloc_stats, malloc_trim};
pub(crate) use memory::{memory_counters, memory_quick, page_size, process_memory};
pub(crate) use threads::{thread_count, thread_list};

/// None to tell: a thread that ends frees its own stack here (an unclosed handle keeps
/// only the thread object, which the handle check sees).
pub(crate) fn default_thread_stack() -> Option<u64> {
    None
}

fn no_fds<T>(what: &'static str) -> Result<T> {
    Err(Error::Unavailable {
        what,
        reason: "Windows has no file descriptors of its own (the C runtime's wrap handles): \
                 use the handle probes"
            .into(),
    })
}

pub(crate) fn fd_count() -> Result<usize> {
    no_fds("file descriptor count")
}

pub(crate) fn fd_list() -> Result<Vec<FdInfo>> {
    no_fds("file descriptor list")
}

/// The last OS error as the crate's error, naming the call that failed.
fn last_error(call: &'static str) -> Error {
    Error::io(call, std::io::Error::last_os_error())
}

/// Looks up an export of an already loaded system DLL (`name` NUL-terminated), for calls
/// that do not exist on every Windows version or only under Wine.
fn system_proc(dll: &[u8], name: &[u8]) -> Option<unsafe extern "system" fn() -> isize> {
    debug_assert!(dll.ends_with(&[0]) && name.ends_with(&[0]));
    // SAFETY: both names are NUL-terminated; GetModuleHandleA does not load anything.
    unsafe {
        let module = GetModuleHandleA(dll.as_ptr());
        if module.is_null() {
            return None;
        }
        GetProcAddress(module, name.as_ptr())
    }
}

/// True under Wine: ntdll exports `wine_get_version` there, never on Windows
/// (<https://gitlab.winehq.org/wine/wine/-/wikis/Developer-FAQ#how-can-i-detect-wine>).
pub(crate) fn is_wine() -> bool {
    static WINE: OnceLock<bool> = OnceLock::new();
    *WINE.get_or_init(|| system_proc(b"ntdll.dll\0", b"wine_get_version\0").is_some())
}

/// Page size and address range of this system (they never change while it runs).
fn system_info() -> SYSTEM_INFO {
    // SAFETY: GetSystemInfo only fills the struct, and cannot fail.
    unsafe {
        let mut i: SYSTEM_INFO = std::mem::zeroed();
        GetSystemInfo(&mut i);
        i
    }
}

/// A handle closed on drop.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A UTF-16 buffer as a String, up to its first NUL.
fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(&buf[..end])
}
