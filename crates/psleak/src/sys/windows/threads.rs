//! Threads from a Toolhelp snapshot (`CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD)` lists the
//! threads of every process; ours are filtered by process id), named with
//! `GetThreadDescription` (Windows 10 1607 and later, and Wine; looked up at run time so
//! that older systems still load the crate).

use std::mem::{size_of, zeroed};

use windows_sys::core::PWSTR;
use windows_sys::Win32::Foundation::{LocalFree, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, OpenThread, THREAD_QUERY_LIMITED_INFORMATION,
};

use super::{last_error, system_proc, Owned};
use crate::error::Result;
use crate::probes::ThreadInfo;

/// Calls `f` with the id of every thread of this process.
fn each_thread(mut f: impl FnMut(u32)) -> Result<()> {
    // SAFETY: a snapshot of all threads; the handle is closed by Owned.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return Err(last_error("CreateToolhelp32Snapshot"));
    }
    let snap = Owned(snap);
    // SAFETY: GetCurrentProcessId cannot fail.
    let pid = unsafe { GetCurrentProcessId() };
    // SAFETY: dwSize set as Thread32First requires; the entry is plain data.
    let mut e: THREADENTRY32 = unsafe { zeroed() };
    e.dwSize = size_of::<THREADENTRY32>() as u32;
    // SAFETY: a valid snapshot handle and entry.
    let mut more = unsafe { Thread32First(snap.0, &mut e) } != 0;
    while more {
        if e.th32OwnerProcessID == pid {
            f(e.th32ThreadID);
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snap.0, &mut e) } != 0;
    }
    Ok(())
}

/// Number of threads of this process. The snapshot is made by the system; nothing is
/// allocated on our heaps.
pub(crate) fn thread_count() -> Result<usize> {
    let mut n = 0;
    each_thread(|_| n += 1)?;
    Ok(n)
}

type GetThreadDescription = unsafe extern "system" fn(HANDLE, *mut PWSTR) -> i32;

/// The thread's description (`SetThreadDescription`, which Rust's `thread::Builder::name`
/// calls), or "" where there is none or it cannot be read.
fn thread_name(tid: u32) -> String {
    let Some(proc_) = system_proc(b"kernel32.dll\0", b"GetThreadDescription\0") else {
        return String::new();
    };
    // SAFETY: the export has this signature (processthreadsapi.h).
    let get: GetThreadDescription = unsafe { std::mem::transmute(proc_) };
    // SAFETY: opening a thread id for a query; a thread that has exited fails the call.
    let h = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, tid) };
    if h.is_null() {
        return String::new();
    }
    let h = Owned(h);
    let mut p: PWSTR = std::ptr::null_mut();
    // SAFETY: an open thread handle; on success p is a LocalAlloc'd, NUL-terminated string.
    let hr = unsafe { get(h.0, &mut p) };
    if hr < 0 || p.is_null() {
        return String::new();
    }
    // SAFETY: p is NUL-terminated (above); freed once with LocalFree as the docs require.
    unsafe {
        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
        let name = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
        LocalFree(p.cast());
        name
    }
}

/// Every thread of this process, with its description. Allocates.
pub(crate) fn thread_list() -> Result<Vec<ThreadInfo>> {
    let mut ids = Vec::with_capacity(64);
    each_thread(|id| ids.push(id))?;
    Ok(ids
        .into_iter()
        .map(|id| ThreadInfo {
            id: i64::from(id),
            name: thread_name(id),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_named_thread_is_listed_until_joined() {
        let before = thread_count().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("psleak-probe".into())
            .spawn(move || rx.recv().ok())
            .unwrap();
        assert_eq!(thread_count().unwrap(), before + 1);
        let names: Vec<String> = thread_list().unwrap().into_iter().map(|t| t.name).collect();
        assert!(names.iter().any(|n| n == "psleak-probe"), "{names:?}");
        drop(tx);
        t.join().unwrap();
        assert_eq!(thread_count().unwrap(), before);
    }
}
