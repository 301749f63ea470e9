//! Open file descriptors, from libproc's `proc_pidinfo(PROC_PIDLISTFDS)` and
//! `proc_pidfdinfo` (sys/proc_info.h; what lsof uses on macOS).

use std::io;

use super::decode::{describe_fd, fd_records, flavor, flavor_for, FdAnswer, PROC_FDINFO_SIZE};
use super::pid;
use crate::error::{Error, Result};
use crate::probes::FdInfo;

const LISTFDS: &str = "proc_pidinfo(PROC_PIDLISTFDS)";

/// Records that fit the stack buffer of [`fd_count`]: 4 KiB.
const STACK_RECORDS: usize = 512;

/// `proc_pidinfo(PROC_PIDLISTFDS)` into `buf` (or, with an empty `buf`, the kernel's estimate
/// of the size needed). Returns the bytes the kernel wrote (or estimated).
fn list_into(buf: &mut [u8]) -> Result<usize> {
    let len = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    let ptr = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // libproc answers 0 both for an error (errno set) and for an empty table.
    // SAFETY: __error returns this thread's errno location.
    unsafe { *libc::__error() = 0 };
    // SAFETY: `ptr` is NULL (a size query) or valid for writes of `len` bytes.
    let n = unsafe { libc::proc_pidinfo(pid(), libc::PROC_PIDLISTFDS, 0, ptr, len) };
    if let Some(n) = usize::try_from(n).ok().filter(|&n| n > 0) {
        return Ok(if buf.is_empty() { n } else { n.min(buf.len()) });
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(0) | None => Ok(0),
        _ => Err(Error::io(LISTFDS, e)),
    }
}

/// The whole listing in a heap buffer, grown until the table fits: the kernel truncates to
/// the buffer, so an answer that fills it may have been cut short.
fn list_all() -> Result<Vec<u8>> {
    let mut size = list_into(&mut [])?.max(STACK_RECORDS * PROC_FDINFO_SIZE);
    loop {
        // Room for descriptors opened meanwhile by other threads.
        size = size.saturating_add(64 * PROC_FDINFO_SIZE);
        let mut buf = vec![0u8; size];
        let n = list_into(&mut buf)?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        size = size.saturating_mul(2);
    }
}

/// Number of open descriptors. No allocation while the descriptor table has fewer than 492
/// slots (a 4 KiB stack buffer); above, the listing is read into the heap. Two calls: the
/// kernel's size bound, then the listing.
pub(crate) fn fd_count() -> Result<usize> {
    let mut buf = [0u8; STACK_RECORDS * PROC_FDINFO_SIZE];
    // The size query answers (table slots + 20) records. Current XNU lists the first open
    // descriptors that fit the buffer (proc_fdlist_internal, fdt_foreach); older releases
    // walked only as many table *slots* as the buffer holds records, so a buffer smaller than
    // the table could miss descriptors without filling up. A buffer above the bound holds
    // every descriptor on both; a full answer means the table grew meanwhile.
    let bound = list_into(&mut [])?;
    let n = if bound <= buf.len() {
        list_into(&mut buf)?
    } else {
        buf.len()
    };
    let bytes = if n < buf.len() { n } else { list_all()?.len() };
    Ok(bytes / PROC_FDINFO_SIZE)
}

/// Every open descriptor, described, in numeric order. A descriptor closed before it could
/// be described is left out.
pub(crate) fn fd_list() -> Result<Vec<FdInfo>> {
    let listing = list_all()?;
    let mut fds: Vec<(i32, u32)> = fd_records(&listing).collect();
    fds.sort_unstable();
    let mut buf = [0u8; flavor::MAX_SIZE];
    Ok(fds
        .into_iter()
        .filter_map(|(fd, fdtype)| describe(fd, fdtype, &mut buf))
        .collect())
}

/// Describes one descriptor with the `proc_pidfdinfo` flavor of its type; `None` if it was
/// closed meanwhile (EBADF). Another thread may close it and open another under the same
/// number between the listing and this call; the description is then the new one's, which
/// is harmless for a leak report.
fn describe(fd: i32, fdtype: u32, buf: &mut [u8; flavor::MAX_SIZE]) -> Option<FdInfo> {
    let mut info = None;
    if let Some((flavor, size)) = flavor_for(fdtype) {
        let size = size.min(buf.len());
        let len = libc::c_int::try_from(size).unwrap_or(0);
        // SAFETY: `buf` is valid for writes of `size` bytes; the kernel writes at most the
        // buffer size it is told and answers ENOMEM when the struct would not fit.
        let n = unsafe { libc::proc_pidfdinfo(pid(), fd, flavor, buf.as_mut_ptr().cast(), len) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => info = Some(&buf[..n.min(size)]),
            _ => {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
                    return None;
                }
            }
        }
    }
    // An answer shorter than its struct (a kernel this decoder does not know): describe the
    // descriptor by its type alone rather than drop it.
    let (kind, path, target) = describe_fd(&FdAnswer { fdtype, info })
        .or_else(|_| describe_fd(&FdAnswer { fdtype, info: None }))
        .ok()?;
    Some(FdInfo {
        fd,
        kind,
        path,
        target,
    })
}

// libc's proc_fdinfo is the record the decoder reads by offset.
const _: () = assert!(std::mem::size_of::<libc::proc_fdinfo>() == PROC_FDINFO_SIZE);

/// Run on macOS only (`cargo test` there); here they are type-checked and linted.
#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use std::os::fd::AsRawFd;

    use super::*;
    use crate::probes::FdKind;

    fn find(fd: i32) -> FdInfo {
        let list = fd_list().unwrap();
        list.into_iter().find(|i| i.fd == fd).unwrap()
    }

    #[test]
    fn count_matches_list() {
        // Other tests open descriptors concurrently: compare a few times, expect one match.
        assert!((0..20).any(|_| fd_count().unwrap() == fd_list().unwrap().len()));
        let list = fd_list().unwrap();
        assert!(list.windows(2).all(|w| w[0].fd < w[1].fd));
    }

    #[test]
    fn files_sockets_pipes_and_kqueues_are_described() {
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        let file = std::fs::File::open(&exe).unwrap();
        let info = find(file.as_raw_fd());
        assert_eq!(info.kind, FdKind::File);
        // The kernel gives the resolved path (/private/var/..., not /var/...).
        assert_eq!(info.path.as_deref(), exe.to_str());

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = tcp.local_addr().unwrap().to_string();
        match find(tcp.as_raw_fd()).kind {
            FdKind::Socket {
                family,
                socktype,
                local: l,
                remote,
            } => {
                assert_eq!((family.as_str(), socktype.as_str()), ("AF_INET", "SOCK_STREAM"));
                assert_eq!((l, remote), (Some(local), None));
            }
            other => panic!("{other:?}"),
        }

        let dir = std::env::temp_dir().join(format!("psleak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        match find(unix.as_raw_fd()).kind {
            FdKind::Socket { family, local, .. } => {
                assert_eq!(family, "AF_UNIX");
                assert_eq!(local.as_deref(), path.to_str());
            }
            other => panic!("{other:?}"),
        }
        drop(unix);
        let _ = std::fs::remove_dir_all(&dir);

        let mut ends = [0; 2];
        // SAFETY: `ends` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
        // SAFETY: kqueue(2) has no preconditions.
        let kq = unsafe { libc::kqueue() };
        assert!(kq >= 0);
        let (read_end, queue) = (find(ends[0]), find(kq));
        assert_eq!(read_end.kind, FdKind::Pipe);
        assert!(read_end.target.starts_with("pipe:[0x"), "{read_end:?}");
        assert_eq!((queue.kind, queue.target.as_str()), (FdKind::Other, "kqueue"));
        for fd in [ends[0], ends[1], kq] {
            // SAFETY: descriptors this test opened, closed once.
            unsafe { libc::close(fd) };
        }
        // Unless another test reopened the number meanwhile, it is gone.
        if let Some(info) = fd_list().unwrap().into_iter().find(|i| i.fd == kq) {
            assert_ne!(info.target, "kqueue");
        }
    }
}
