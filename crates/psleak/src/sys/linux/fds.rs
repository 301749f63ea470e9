//! Open file descriptors, from `/proc/self/fd` (proc(5)).
//!
//! Counting uses raw `getdents64(2)` into a stack buffer: `std::fs::read_dir` would allocate
//! for every entry. The directory's own descriptor shows up in the listing and is left out.

use std::ffi::CStr;
use std::io;

use super::parse::{
    classify_fd_target, family_name, format_sockaddr, parse_entry_number, socktype_name, Dirents,
};
use crate::error::{Error, Result};
use crate::probes::{FdInfo, FdKind};

/// A buffer for `getdents64`, aligned like `struct linux_dirent64` (its `d_ino` is a u64).
#[repr(C, align(8))]
struct DirentBuf([u8; 4096]);

/// A directory opened with `open(2)`, closed on drop.
struct RawDir {
    fd: libc::c_int,
}

impl RawDir {
    fn open(path: &CStr) -> io::Result<Self> {
        // SAFETY: `path` is a valid NUL-terminated string; the flags need no other argument.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(RawDir { fd })
        }
    }
}

impl Drop for RawDir {
    fn drop(&mut self) {
        // SAFETY: `fd` was opened by `RawDir::open` and is closed only here, once.
        unsafe { libc::close(self.fd) };
    }
}

/// Calls `f` with the number each entry of the directory `path` names (`.`, `..` and
/// non-numeric names skipped) and the descriptor used to read the directory. No allocation
/// except for an error.
pub(super) fn for_each_numbered_entry(
    path: &'static CStr,
    mut f: impl FnMut(i32, libc::c_int),
) -> Result<()> {
    let name = || path.to_string_lossy().into_owned();
    let dir = RawDir::open(path).map_err(|e| Error::io(name(), e))?;
    let mut buf = DirentBuf([0; 4096]);
    loop {
        // SAFETY: the buffer is valid for writes of its whole length and outlives the call;
        // `dir.fd` is an open directory. getdents64(2) exists since Linux 2.4.1.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir.fd, buf.0.as_mut_ptr(), buf.0.len()) };
        let len = match usize::try_from(n) {
            Ok(0) => return Ok(()),
            Ok(len) => len.min(buf.0.len()),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io(name(), e));
            }
        };
        for entry in Dirents::new(&buf.0[..len]) {
            if let Some(number) = parse_entry_number(entry?.name) {
                f(number, dir.fd);
            }
        }
    }
}

/// Number of open descriptors, not counting the one used to count. No allocation.
pub(crate) fn fd_count() -> Result<usize> {
    let mut count = 0;
    for_each_numbered_entry(c"/proc/self/fd", |fd, dir_fd| {
        if fd != dir_fd {
            count += 1;
        }
    })?;
    Ok(count)
}

/// Every open descriptor (but the one used to list them), described. A descriptor closed
/// before it could be described is left out.
pub(crate) fn fd_list() -> Result<Vec<FdInfo>> {
    let mut fds = Vec::new();
    for_each_numbered_entry(c"/proc/self/fd", |fd, dir_fd| {
        if fd != dir_fd {
            fds.push(fd);
        }
    })?;
    // The listing's order is the kernel's; numeric order reads better and is stable.
    fds.sort_unstable();
    Ok(fds.into_iter().filter_map(describe).collect())
}

/// Describes one descriptor; `None` if it is no longer open.
///
/// Another thread may close the descriptor, or close it and open another one under the same
/// number, between these calls: a closed one is skipped, a replaced one may be described
/// half from each. Both are rare and harmless for a leak report.
fn describe(fd: i32) -> Option<FdInfo> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let target = target.to_string_lossy().into_owned();
    let st_mode = match fstat_mode(fd) {
        Ok(mode) => Some(mode),
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => return None,
        Err(_) => None,
    };
    let (mut kind, path) = classify_fd_target(&target, st_mode);
    if let FdKind::Socket { .. } = kind {
        kind = describe_socket(fd)?;
    }
    Some(FdInfo {
        fd,
        kind,
        path,
        target,
    })
}

/// `st_mode` of an open descriptor.
fn fstat_mode(fd: i32) -> io::Result<u32> {
    // SAFETY: an all-zero `struct stat` is a valid value (plain integers).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `struct stat`; a bad `fd` only yields EBADF.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        Ok(st.st_mode)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An `int` socket option at `SOL_SOCKET` level.
fn sockopt_int(fd: i32, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` holds the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// The socket's own (`getsockname`) or peer (`getpeername`) address, formatted; `None` when
/// unbound, unconnected, or for families without peers.
fn sock_address(fd: i32, call: NameFn) -> Option<String> {
    // SAFETY: an all-zero `sockaddr_storage` is a valid value (plain integers).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sockaddr_storage>();
    let mut len = size as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes, the size of the largest address.
    let rc = unsafe { call(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    // The kernel reports the address's full length even when it truncated it to our buffer.
    let len = (len as usize).min(size);
    // SAFETY: `storage` is `size` initialized bytes (zeroed, then partly written) and
    // `len <= size`; u8 has no alignment or validity requirements.
    let bytes =
        unsafe { std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len) };
    format_sockaddr(bytes)
}

/// Family, type and addresses of a socket (socket(7): `SO_DOMAIN` since Linux 2.6.32);
/// `None` if the descriptor was closed meanwhile.
fn describe_socket(fd: i32) -> Option<FdKind> {
    let domain = match sockopt_int(fd, libc::SO_DOMAIN) {
        Ok(domain) => Some(domain),
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => return None,
        Err(_) => None,
    };
    let family = match domain {
        Some(domain) => family_name(domain),
        None => "unknown".to_owned(),
    };
    let socktype = match sockopt_int(fd, libc::SO_TYPE) {
        Ok(t) => socktype_name(t),
        Err(_) => "unknown".to_owned(),
    };
    Some(FdKind::Socket {
        family,
        socktype,
        local: sock_address(fd, libc::getsockname),
        remote: sock_address(fd, libc::getpeername),
    })
}

#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn count_matches_list_and_excludes_the_listing_fd() {
        // Other tests open descriptors concurrently: compare a few times, expect one match.
        let consistent = (0..20).any(|_| fd_count().unwrap() == fd_list().unwrap().len());
        assert!(consistent);
        // stdin/stdout/stderr are open under cargo test.
        let list = fd_list().unwrap();
        assert!(list.iter().all(|i| !i.target.is_empty()));
        assert!(list.windows(2).all(|w| w[0].fd < w[1].fd));
    }

    #[test]
    fn closed_descriptor_is_skipped() {
        // SAFETY: plain syscalls on a descriptor this test owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        assert_eq!(describe(fd).unwrap().kind, FdKind::EventFd);
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(fd) };
        // Unless another test reopened the number meanwhile, it is gone.
        if let Some(info) = describe(fd) {
            assert_ne!(info.kind, FdKind::EventFd);
        }
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let err = for_each_numbered_entry(c"/nonexistent/psleak", |_, _| {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
