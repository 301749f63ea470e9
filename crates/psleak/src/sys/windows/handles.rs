//! Handles: the count from `GetProcessHandleCount`, the list from the system's handle table
//! (`NtQuerySystemInformation`, filtered by our process id), each described by its object
//! type (`NtQueryObject(ObjectTypeInformation)`) and name (a file's path, a key's, a named
//! object's).
//!
//! Under Wine 8, `GetProcessHandleCount` succeeds but always answers 0 (ntdll's
//! `ProcessHandleCount` is a stub); there the count is taken from the list, which Wine
//! fills like Windows.

use std::ffi::c_void;
use std::mem::size_of;

use windows_sys::Wdk::Foundation::{NtQueryObject, OBJECT_INFORMATION_CLASS};
use windows_sys::Wdk::System::SystemInformation::{NtQuerySystemInformation, SYSTEM_INFORMATION_CLASS};
use windows_sys::Win32::Foundation::{HANDLE, STATUS_INFO_LENGTH_MISMATCH, UNICODE_STRING};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, GetFinalPathNameByHandleW, FILE_TYPE_CHAR, FILE_TYPE_DISK, FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetCurrentProcessId, GetProcessHandleCount};

use super::{from_wide, is_wine, last_error};
use crate::error::{Error, Result};
use crate::probes::HandleInfo;

/// `SystemExtendedHandleInformation` (full-width process ids and handle values, Windows XP
/// and later, Wine) and the older `SystemHandleInformation`, whose 16-bit fields truncate
/// both on Windows. Undocumented classes; the layouts are those of the Windows SDK's
/// ntexapi.h as published by the Process Hacker / System Informer headers.
const SYSTEM_EXTENDED_HANDLE_INFORMATION: SYSTEM_INFORMATION_CLASS = 64;
const SYSTEM_HANDLE_INFORMATION: SYSTEM_INFORMATION_CLASS = 16;
const OBJECT_NAME_INFORMATION: OBJECT_INFORMATION_CLASS = 1;
const OBJECT_TYPE_INFORMATION: OBJECT_INFORMATION_CLASS = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct ExtendedEntry {
    object: *mut c_void,
    pid: usize,
    handle: usize,
    access: u32,
    creator_back_trace_index: u16,
    object_type_index: u16,
    attributes: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct LegacyEntry {
    // Windows: a USHORT pid and a USHORT back-trace index; Wine: one ULONG pid.
    pid: u32,
    object_type: u8,
    flags: u8,
    handle: u16,
    object: *mut c_void,
    access: u32,
}

/// Asks for a system information class, growing the buffer until it fits. The buffer is
/// of u64 so that the entries, which hold pointers, are aligned.
fn query_system(class: SYSTEM_INFORMATION_CLASS) -> Result<Vec<u64>> {
    let mut buf: Vec<u64> = vec![0; 8192];
    for _ in 0..16 {
        let bytes = (buf.len() * 8) as u32;
        let mut needed = 0u32;
        // SAFETY: the buffer has `bytes` writable bytes.
        let status = unsafe { NtQuerySystemInformation(class, buf.as_mut_ptr().cast(), bytes, &mut needed) };
        if status == STATUS_INFO_LENGTH_MISMATCH {
            // Handles come and go meanwhile: leave room.
            let want = (needed as usize).max(bytes as usize * 2) / 8 + 1024;
            buf = vec![0; want];
            continue;
        }
        if status < 0 {
            return Err(Error::io(
                "NtQuerySystemInformation",
                std::io::Error::other(format!("NTSTATUS {:#x}", status as u32)),
            ));
        }
        return Ok(buf);
    }
    Err(Error::io(
        "NtQuerySystemInformation",
        std::io::Error::other("the handle table kept growing"),
    ))
}

/// (handle value, granted access) of every handle of this process.
fn own_handles() -> Result<Vec<(usize, u32)>> {
    // SAFETY: cannot fail.
    let pid = unsafe { GetCurrentProcessId() } as usize;
    if let Ok(buf) = query_system(SYSTEM_EXTENDED_HANDLE_INFORMATION) {
        // Layout: ULONG_PTR count, ULONG_PTR reserved, then the entries.
        let count = buf[0] as usize;
        let room = (buf.len() - 2) * 8 / size_of::<ExtendedEntry>();
        // SAFETY: the entries follow the two-word header, aligned (u64 buffer), and no more
        // than fit in the buffer are read.
        let entries = unsafe {
            std::slice::from_raw_parts(buf.as_ptr().add(2).cast::<ExtendedEntry>(), count.min(room))
        };
        return Ok(entries
            .iter()
            .filter(|e| e.pid == pid)
            .map(|e| (e.handle, e.access))
            .collect());
    }
    let buf = query_system(SYSTEM_HANDLE_INFORMATION)?;
    // Layout: ULONG count (padded to 8 bytes: the entries hold pointers), then the entries.
    let count = (buf[0] & 0xffff_ffff) as usize;
    let room = (buf.len() - 1) * 8 / size_of::<LegacyEntry>();
    // SAFETY: as above, after a one-word header.
    let entries =
        unsafe { std::slice::from_raw_parts(buf.as_ptr().add(1).cast::<LegacyEntry>(), count.min(room)) };
    Ok(entries
        .iter()
        .filter(|e| (e.pid & 0xffff) as usize == pid & 0xffff)
        .map(|e| (usize::from(e.handle), e.access))
        .collect())
}

/// Number of open handles. One call on Windows; under Wine, where that call answers 0, the
/// length of [`handle_list`]'s table (allocates).
pub(crate) fn handle_count() -> Result<usize> {
    let mut n = 0u32;
    // SAFETY: the pseudo-handle of this process and a u32 out-parameter.
    if unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut n) } == 0 {
        return Err(last_error("GetProcessHandleCount"));
    }
    if n == 0 && is_wine() {
        return Ok(own_handles()?.len());
    }
    Ok(n as usize)
}

/// A UNICODE_STRING at the start of an NtQueryObject answer.
fn object_query(h: HANDLE, class: OBJECT_INFORMATION_CLASS) -> Option<String> {
    let mut buf = [0u64; 256];
    let mut len = 0u32;
    // SAFETY: a 2 KiB aligned buffer; both classes start their answer with a UNICODE_STRING
    // whose Buffer points into the same buffer.
    unsafe {
        let status = NtQueryObject(
            h,
            class,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        );
        if status < 0 {
            return None;
        }
        let s = &*buf.as_ptr().cast::<UNICODE_STRING>();
        if s.Buffer.is_null() || s.Length == 0 {
            return None;
        }
        let chars = std::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2);
        Some(String::from_utf16_lossy(chars))
    }
}

/// A file handle's path; pipes and consoles have none. Only disk files are asked for a
/// name: asking a synchronous pipe for its name can block (the reason Process Explorer and
/// psutil avoid `NtQueryObject(ObjectNameInformation)` on files).
fn file_name(h: HANDLE) -> Option<String> {
    // SAFETY: GetFileType only queries the handle.
    match unsafe { GetFileType(h) } {
        FILE_TYPE_DISK => {
            let mut buf = [0u16; 1024];
            // SAFETY: the buffer's length in characters is passed.
            let n = unsafe { GetFinalPathNameByHandleW(h, buf.as_mut_ptr(), buf.len() as u32, 0) };
            let path = from_wide(&buf[..(n as usize).min(buf.len())]);
            // \\?\C:\x → C:\x: the prefix only says the path is not to be parsed.
            Some(path.strip_prefix(r"\\?\").map(str::to_owned).unwrap_or(path)).filter(|p| !p.is_empty())
        }
        FILE_TYPE_PIPE => Some("(pipe)".into()),
        FILE_TYPE_CHAR => Some("(character device)".into()),
        _ => None,
    }
}

/// Every open handle of this process, with its type and name. Allocates.
pub(crate) fn handle_list() -> Result<Vec<HandleInfo>> {
    let handles = own_handles()?;
    Ok(handles
        .into_iter()
        .map(|(value, access)| {
            let h = value as HANDLE;
            let kind = object_query(h, OBJECT_TYPE_INFORMATION).unwrap_or_else(|| "Unknown".into());
            let name = if kind == "File" {
                file_name(h)
            } else {
                object_query(h, OBJECT_NAME_INFORMATION)
            };
            HandleInfo {
                handle: value as u64,
                kind,
                name,
                access,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::CreateEventW;

    #[test]
    fn events_are_counted_and_described() {
        let name: Vec<u16> = "psleak-test-event\0".encode_utf16().collect();
        // SAFETY: a named event with default security; closed at once. The first named
        // object opens the session's BaseNamedObjects directory for good: not counted.
        unsafe { CloseHandle(CreateEventW(std::ptr::null(), 1, 0, name.as_ptr())) };
        let before = handle_count().unwrap();
        // SAFETY: as above; closed below.
        let ev = unsafe { CreateEventW(std::ptr::null(), 1, 0, name.as_ptr()) };
        assert!(!ev.is_null());
        assert_eq!(handle_count().unwrap(), before + 1);
        let list = handle_list().unwrap();
        let mine = list.iter().find(|h| h.handle == ev as u64).unwrap();
        assert_eq!(mine.kind, "Event");
        assert!(
            mine.name.as_deref().unwrap_or("").ends_with("psleak-test-event"),
            "{mine:?}"
        );
        // SAFETY: created above.
        unsafe { CloseHandle(ev) };
        assert_eq!(handle_count().unwrap(), before);
    }

    #[test]
    fn an_open_file_is_described_by_its_path() {
        let path = std::env::temp_dir().join("psleak-handle-test.txt");
        let f = std::fs::File::create(&path).unwrap();
        let list = handle_list().unwrap();
        let files: Vec<&HandleInfo> = list.iter().filter(|h| h.kind == "File").collect();
        assert!(
            files.iter().any(|h| h
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("psleak-handle-test.txt"))),
            "{files:?}"
        );
        drop(f);
        let _ = std::fs::remove_file(path);
    }
}
