//! Parsers for what the Linux probes read from `/proc`. Pure functions: bytes in, numbers out.
//!
//! No I/O here, and no allocation where the result is numbers (only error messages and the
//! path of [`classify_fd_target`] allocate), so the probes can call them while measuring.
//! Formats are those of proc(5); the tests feed real texts captured on Linux 6.18 from
//! `tests/fixtures/proc/` (see `capture.py` there).

use crate::error::{Error, Result};
use crate::probes::FdKind;

const STATM: &str = "/proc/self/statm";
const SMAPS_ROLLUP: &str = "/proc/self/smaps_rollup";
const STATUS: &str = "/proc/self/status";
const DIRENTS: &str = "getdents64";

/// A decimal `u64`: ASCII digits only (no sign, no spaces), `None` if empty or overflowing.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The whitespace-separated fields of `text`, without allocating.
fn fields(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty())
}

/// `/proc/self/statm` (proc(5)): `size resident shared text lib data dt`, all in pages.
/// Returns `(size, resident)` in pages.
pub(crate) fn parse_statm(text: &[u8]) -> Result<(u64, u64)> {
    let mut f = fields(text);
    let mut next = |what: &str| {
        f.next()
            .and_then(parse_u64)
            .ok_or_else(|| Error::parse(STATM, format!("no page count for '{what}'")))
    };
    let size = next("size")?;
    let resident = next("resident")?;
    Ok((size, resident))
}

/// The fields psleak uses from `/proc/self/smaps_rollup` (since Linux 4.14), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rollup {
    pub(crate) rss: u64,
    pub(crate) pss: u64,
    pub(crate) private_clean: u64,
    pub(crate) private_dirty: u64,
    pub(crate) swap: u64,
}

impl Rollup {
    /// Unique set size: the resident pages no other process maps.
    pub(crate) fn uss(&self) -> u64 {
        self.private_clean.saturating_add(self.private_dirty)
    }
}

/// The `Key: N kB` lines named in `keys`, in bytes, in the order of `keys`. Every key must be
/// present once or more (the last wins); other lines are ignored, since the set of keys
/// grows with kernel versions.
fn parse_kb_lines<const N: usize>(text: &[u8], keys: [&str; N], path: &'static str) -> Result<[u64; N]> {
    let mut values = [None::<u64>; N];
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let Some(i) = keys.iter().position(|k| k.as_bytes() == key) else {
            continue;
        };
        let mut f = fields(rest);
        let bytes = match (f.next().and_then(parse_u64), f.next(), f.next()) {
            (Some(kb), Some(b"kB"), None) => kb.checked_mul(1024),
            _ => None,
        };
        let Some(bytes) = bytes else {
            return Err(Error::parse(
                path,
                format!("bad value for {}: {:?}", keys[i], String::from_utf8_lossy(rest)),
            ));
        };
        values[i] = Some(bytes);
    }
    let mut out = [0u64; N];
    for (i, v) in values.iter().enumerate() {
        out[i] = v.ok_or_else(|| Error::parse(path, format!("no '{}:' line", keys[i])))?;
    }
    Ok(out)
}

/// `/proc/self/smaps_rollup`: a header line (`start-end ---p ... [rollup]`) then `Key: N kB`
/// lines, the sums of the per-mapping values of smaps (proc(5)).
pub(crate) fn parse_smaps_rollup(text: &[u8]) -> Result<Rollup> {
    let [rss, pss, private_clean, private_dirty, swap] = parse_kb_lines(
        text,
        ["Rss", "Pss", "Private_Clean", "Private_Dirty", "Swap"],
        SMAPS_ROLLUP,
    )?;
    Ok(Rollup {
        rss,
        pss,
        private_clean,
        private_dirty,
        swap,
    })
}

/// The memory lines of `/proc/self/status` (proc(5)), in bytes: `VmSize`, `VmRSS`, `RssAnon`
/// (since Linux 4.5) and `VmSwap`. These are counters the kernel keeps up to date, so the
/// file costs a few microseconds, where smaps_rollup walks every mapping's page tables.
pub(crate) fn parse_status_memory(text: &[u8]) -> Result<StatusMemory> {
    let [vms, rss, anon, swap] = parse_kb_lines(text, ["VmSize", "VmRSS", "RssAnon", "VmSwap"], STATUS)?;
    Ok(StatusMemory { vms, rss, anon, swap })
}

/// What [`parse_status_memory`] reads, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusMemory {
    pub(crate) vms: u64,
    pub(crate) rss: u64,
    pub(crate) anon: u64,
    pub(crate) swap: u64,
}

/// The `Threads:` line of `/proc/self/status` (proc(5), since Linux 2.6.0): the number of
/// threads in the process.
pub(crate) fn parse_status_threads(text: &[u8]) -> Result<usize> {
    let line = text
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"Threads:"))
        .ok_or_else(|| Error::parse(STATUS, "no 'Threads:' line"))?;
    let mut f = fields(line);
    match (f.next().and_then(parse_u64), f.next()) {
        (Some(n), None) => {
            usize::try_from(n).map_err(|_| Error::parse(STATUS, format!("thread count {n} out of range")))
        }
        _ => Err(Error::parse(
            STATUS,
            format!("bad 'Threads:' value {:?}", String::from_utf8_lossy(line)),
        )),
    }
}

/// `/proc/self/task/TID/comm` (proc(5)): the thread name, at most 15 bytes, plus a newline.
pub(crate) fn parse_comm(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\n").unwrap_or(text)
}

/// One record of a `getdents64` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dirent<'a> {
    /// The entry's name, without the terminating NUL.
    pub(crate) name: &'a [u8],
}

/// The records of a buffer filled by `getdents64(2)`: `struct linux_dirent64 { u64 d_ino;
/// s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }`, each `d_reclen` bytes long, the
/// name NUL-terminated and padded. A record that does not fit yields an error, then the
/// iteration ends.
#[derive(Debug, Clone)]
pub(crate) struct Dirents<'a> {
    buf: &'a [u8],
}

/// Offset of `d_name` in `struct linux_dirent64`.
const DIRENT_NAME: usize = 19;

impl<'a> Dirents<'a> {
    /// Iterates over `buf`: the bytes one `getdents64` call filled, no more.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Dirents { buf }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = Result<Dirent<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let buf = std::mem::take(&mut self.buf);
        let reclen = match buf.get(16..18) {
            Some(&[lo, hi]) => usize::from(u16::from_ne_bytes([lo, hi])),
            _ => 0,
        };
        if reclen <= DIRENT_NAME || reclen > buf.len() {
            return Some(Err(Error::parse(
                DIRENTS,
                format!(
                    "record length {reclen} with {} bytes left in the buffer",
                    buf.len()
                ),
            )));
        }
        let (record, rest) = buf.split_at(reclen);
        let raw_name = &record[DIRENT_NAME..];
        let Some(nul) = raw_name.iter().position(|&b| b == 0) else {
            return Some(Err(Error::parse(DIRENTS, "name without NUL terminator")));
        };
        self.buf = rest;
        Some(Ok(Dirent {
            name: &raw_name[..nul],
        }))
    }
}

/// The number an entry of `/proc/self/fd` (a descriptor) or `/proc/self/task` (a thread id)
/// names; `None` for `.` and `..`.
pub(crate) fn parse_entry_number(name: &[u8]) -> Option<i32> {
    parse_u64(name).and_then(|n| i32::try_from(n).ok())
}

/// Classifies an open descriptor from the text of its `/proc/self/fd/N` link (proc(5)) and,
/// when `fstat` succeeded, its `st_mode`. Returns the kind and the path, if it has one.
///
/// A socket comes back as `FdKind::Socket` with empty `family` and `socktype`: the link says
/// only `socket:[inode]`, the caller fills in the rest with socket calls.
pub(crate) fn classify_fd_target(target: &str, st_mode: Option<u32>) -> (FdKind, Option<String>) {
    if target.starts_with("socket:[") {
        let kind = FdKind::Socket {
            family: String::new(),
            socktype: String::new(),
            local: None,
            remote: None,
        };
        return (kind, None);
    }
    // Anonymous pipes; a FIFO opened by path shows its path instead (handled below).
    if target.starts_with("pipe:[") {
        return (FdKind::Pipe, None);
    }
    // Anonymous inodes (fs/anon_inodes.c): the link reads `anon_inode:` plus the name the
    // subsystem registered, usually in brackets (`[eventfd]`), a few without (`inotify`,
    // `bpf-map`). pidfds still read `anon_inode:[pidfd]` on pidfs (Linux 6.9+).
    if let Some(name) = target.strip_prefix("anon_inode:") {
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let kind = match name {
            "eventfd" => FdKind::EventFd,
            "eventpoll" => FdKind::Epoll,
            "timerfd" => FdKind::TimerFd,
            "signalfd" => FdKind::SignalFd,
            "inotify" => FdKind::Inotify,
            "fanotify" => FdKind::Fanotify,
            "pidfd" => FdKind::PidFd,
            _ => FdKind::AnonInode {
                name: name.to_owned(),
            },
        };
        return (kind, None);
    }
    // Everything else that is not a path (`net:[4026531833]` from nsfs, ...) has no kind of
    // its own. nsfs files are S_IFREG, so the mode alone would say "file".
    if !target.starts_with('/') {
        return (FdKind::Other, None);
    }
    let file_type = st_mode.map(|m| m & libc::S_IFMT);
    // memfd_create(2) files are unlinked shmem (or hugetlbfs) files named `memfd:NAME`; the
    // kernel appends " (deleted)" to every path without a directory entry.
    if target.starts_with("/memfd:")
        && target.ends_with(" (deleted)")
        && matches!(file_type, None | Some(libc::S_IFREG))
    {
        return (FdKind::MemFd, Some(target.to_owned()));
    }
    let kind = match file_type {
        None | Some(libc::S_IFREG) => FdKind::File,
        Some(libc::S_IFDIR) => FdKind::Directory,
        Some(libc::S_IFCHR) => FdKind::CharDevice,
        Some(libc::S_IFBLK) => FdKind::BlockDevice,
        Some(libc::S_IFIFO) => FdKind::Pipe,
        // O_PATH descriptors of symlinks or socket files, and anything newer.
        Some(_) => FdKind::Other,
    };
    (kind, Some(target.to_owned()))
}

/// The name of an address family (`SO_DOMAIN`, socket(2)): `AF_INET`..., or `AF_<n>`.
pub(crate) fn family_name(domain: i32) -> String {
    let name = match domain {
        libc::AF_UNIX => "AF_UNIX",
        libc::AF_INET => "AF_INET",
        libc::AF_INET6 => "AF_INET6",
        libc::AF_NETLINK => "AF_NETLINK",
        libc::AF_PACKET => "AF_PACKET",
        libc::AF_KEY => "AF_KEY",
        libc::AF_RDS => "AF_RDS",
        libc::AF_CAN => "AF_CAN",
        libc::AF_TIPC => "AF_TIPC",
        libc::AF_BLUETOOTH => "AF_BLUETOOTH",
        libc::AF_ALG => "AF_ALG",
        libc::AF_NFC => "AF_NFC",
        libc::AF_VSOCK => "AF_VSOCK",
        libc::AF_XDP => "AF_XDP",
        _ => return format!("AF_{domain}"),
    };
    name.to_owned()
}

/// The name of a socket type (`SO_TYPE`, socket(2)): `SOCK_STREAM`..., or `SOCK_<n>`.
pub(crate) fn socktype_name(socktype: i32) -> String {
    let name = match socktype {
        libc::SOCK_STREAM => "SOCK_STREAM",
        libc::SOCK_DGRAM => "SOCK_DGRAM",
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET",
        libc::SOCK_RAW => "SOCK_RAW",
        libc::SOCK_RDM => "SOCK_RDM",
        libc::SOCK_DCCP => "SOCK_DCCP",
        // Obsolete (packet(7)): libc deprecates the constant, old programs still use it.
        10 => "SOCK_PACKET",
        _ => return format!("SOCK_{socktype}"),
    };
    name.to_owned()
}

/// `N` bytes of `b` at `at`, if there are that many.
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Formats the address `getsockname(2)`/`getpeername(2)` wrote (the first `addrlen` bytes of
/// a `sockaddr_storage`): `127.0.0.1:8080`, `[::1]:80`, `[fe80::1%2]:53`, a unix path,
/// `@abstract` (NULs in the name shown as `@`, as ss(8) does), `portid=N` (netlink),
/// `ifindex=N,protocol=0xNNNN` (packet). `None` when there is no address: unbound (all
/// zeros), unnamed (unix socketpair), too short, or a family not decoded here.
pub(crate) fn format_sockaddr(addr: &[u8]) -> Option<String> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    let family = i32::from(u16::from_ne_bytes(bytes_at(addr, 0)?));
    match family {
        // struct sockaddr_in: family, port (big endian), address (big endian) (ip(7)).
        libc::AF_INET => {
            let port = u16::from_be_bytes(bytes_at(addr, 2)?);
            let ip = Ipv4Addr::from(bytes_at::<4>(addr, 4)?);
            (port != 0 || !ip.is_unspecified()).then(|| SocketAddrV4::new(ip, port).to_string())
        }
        // struct sockaddr_in6: family, port, flowinfo, address, scope id (ipv6(7)).
        libc::AF_INET6 => {
            let port = u16::from_be_bytes(bytes_at(addr, 2)?);
            let ip = Ipv6Addr::from(bytes_at::<16>(addr, 8)?);
            let scope = bytes_at(addr, 24).map_or(0, u32::from_ne_bytes);
            (port != 0 || !ip.is_unspecified()).then(|| SocketAddrV6::new(ip, port, 0, scope).to_string())
        }
        // struct sockaddr_un: family, then the path; unix(7) "Address format": unnamed if
        // nothing follows the family, abstract if the path starts with a NUL (its length is
        // addrlen, NULs included), else a pathname, NUL-terminated or not.
        libc::AF_UNIX => {
            let path = addr.get(2..).filter(|p| !p.is_empty())?;
            if let Some(abstract_name) = path.strip_prefix(b"\0") {
                let name = String::from_utf8_lossy(abstract_name).replace('\0', "@");
                Some(format!("@{name}"))
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                Some(String::from_utf8_lossy(&path[..end]).into_owned())
            }
        }
        // struct sockaddr_nl: family, pad, port id, groups (netlink(7)); 0/0 = unbound, or
        // the kernel as peer.
        libc::AF_NETLINK => {
            let portid = u32::from_ne_bytes(bytes_at(addr, 4)?);
            let groups = u32::from_ne_bytes(bytes_at(addr, 8)?);
            match (portid, groups) {
                (0, 0) => None,
                (p, 0) => Some(format!("portid={p}")),
                (p, g) => Some(format!("portid={p},groups={g:#x}")),
            }
        }
        // struct sockaddr_ll: family, protocol (big endian), interface index (packet(7));
        // index 0 = not bound to an interface.
        libc::AF_PACKET => {
            let protocol = u16::from_be_bytes(bytes_at(addr, 2)?);
            let ifindex = i32::from_ne_bytes(bytes_at(addr, 4)?);
            (ifindex != 0).then(|| format!("ifindex={ifindex},protocol={protocol:#06x}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/proc/",
                $name
            ))
            .as_slice()
        };
    }

    const STATM_TXT: &[u8] = fixture!("statm");
    const ROLLUP_TXT: &[u8] = fixture!("smaps_rollup");
    const STATUS_TXT: &[u8] = fixture!("status");
    const COMM_TXT: &[u8] = fixture!("comm");
    const FD_TARGETS: &[u8] = fixture!("fd_targets.tsv");
    const DIRENTS_BIN: &[u8] = fixture!("getdents64_fd.bin");
    const DIRENTS_NAMES: &[u8] = fixture!("getdents64_fd.names");

    /// Runs `parse` on every prefix of `text` and on `text` with each byte replaced by a few
    /// troublesome values: it may fail, it must not panic (the test would abort).
    fn never_panics<T>(text: &[u8], parse: impl Fn(&[u8]) -> T) {
        for end in 0..=text.len() {
            let _ = parse(&text[..end]);
        }
        let mut copy = text.to_vec();
        for i in 0..copy.len() {
            let orig = copy[i];
            for b in [0u8, b'\n', b':', b' ', b'9', 0xff] {
                copy[i] = b;
                let _ = parse(&copy);
            }
            copy[i] = orig;
        }
    }

    #[test]
    fn parse_u64_rejects_everything_but_digits() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_u64(b" 1"), None);
        assert_eq!(parse_u64(b"1kB"), None);
    }

    #[test]
    fn statm_fixture() {
        assert_eq!(parse_statm(STATM_TXT).unwrap(), (41624, 3885));
        // Only the first two fields are needed.
        assert_eq!(parse_statm(b"10 20").unwrap(), (10, 20));
    }

    #[test]
    fn statm_malformed() {
        for bad in [
            &b""[..],
            b"\n",
            b"123",
            b"123 \n",
            b"abc 1 2",
            b"1 -2 3",
            b"1 99999999999999999999999 3",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_statm(bad), Err(Error::Parse { path: STATM, .. })),
                "{bad:?}"
            );
        }
        never_panics(STATM_TXT, parse_statm);
    }

    #[test]
    fn smaps_rollup_fixture() {
        let r = parse_smaps_rollup(ROLLUP_TXT).unwrap();
        assert_eq!(
            r,
            Rollup {
                rss: 15540 * 1024,
                pss: 14120 * 1024,
                private_clean: 5320 * 1024,
                private_dirty: 8480 * 1024,
                swap: 0,
            }
        );
        assert_eq!(r.uss(), (5320 + 8480) * 1024);
        // Keys are matched whole: `Pss_Dirty`, `SwapPss` and the header do not count.
        assert!(ROLLUP_TXT.starts_with(b"55a313403000-7ffedbde5000 ---p 00000000 00:00 0"));
    }

    #[test]
    fn smaps_rollup_minimal_and_reordered() {
        let text = b"Swap: 1 kB\nPrivate_Dirty: 2 kB\nPrivate_Clean: 3 kB\nPss: 4 kB\nRss: 5 kB\n";
        let r = parse_smaps_rollup(text).unwrap();
        assert_eq!((r.rss, r.pss, r.swap), (5120, 4096, 1024));
        assert_eq!(r.uss(), 5120);
    }

    #[test]
    fn smaps_rollup_malformed() {
        // Each required key removed in turn.
        let text = std::str::from_utf8(ROLLUP_TXT).unwrap();
        for key in ["Rss:", "Pss:", "Private_Clean:", "Private_Dirty:", "Swap:"] {
            let without: String = text
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = parse_smaps_rollup(without.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        for bad in [
            &b""[..],
            b"Rss: 5\n",
            b"Rss: 5 MB\n",
            b"Rss: kB\n",
            b"Rss: -5 kB\n",
            b"Rss: 5 kB extra\n",
            b"Rss: 18014398509481984 kB\n", // * 1024 overflows u64
        ] {
            assert!(
                matches!(
                    parse_smaps_rollup(bad),
                    Err(Error::Parse {
                        path: SMAPS_ROLLUP,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        never_panics(ROLLUP_TXT, parse_smaps_rollup);
    }

    #[test]
    fn status_memory_fixture() {
        let m = parse_status_memory(STATUS_TXT).unwrap();
        assert_eq!(
            m,
            StatusMemory {
                vms: 166_496 * 1024,
                rss: 15_540 * 1024,
                anon: 8_480 * 1024,
                swap: 0
            }
        );
    }

    #[test]
    fn status_memory_malformed() {
        for bad in [
            &b""[..],
            b"VmSize:\t1 kB\nVmRSS:\t1 kB\nVmSwap:\t0 kB\n",
            b"VmSize:\t1 kB\nVmRSS:\t1 kB\nRssAnon:\tx kB\nVmSwap:\t0 kB\n",
            b"VmSize:\t1 MB\nVmRSS:\t1 kB\nRssAnon:\t1 kB\nVmSwap:\t0 kB\n",
        ] {
            assert!(
                matches!(parse_status_memory(bad), Err(Error::Parse { path: STATUS, .. })),
                "{bad:?}"
            );
        }
        // Every prefix of the real file: an error or a value, never a panic.
        for end in 0..STATUS_TXT.len() {
            let _ = parse_status_memory(&STATUS_TXT[..end]);
        }
    }

    #[test]
    fn status_threads_fixture() {
        // Captured while the Python process ran two extra threads.
        assert_eq!(parse_status_threads(STATUS_TXT).unwrap(), 3);
        assert_eq!(parse_status_threads(b"Threads:\t1").unwrap(), 1);
    }

    #[test]
    fn status_threads_malformed() {
        for bad in [
            &b""[..],
            b"Name:\tpython3\n",
            b"Threads:\n",
            b"Threads:\tmany\n",
            b"Threads:\t3 4\n",
            b" Threads:\t3\n",
            b"threads:\t3\n",
        ] {
            assert!(
                matches!(parse_status_threads(bad), Err(Error::Parse { path: STATUS, .. })),
                "{bad:?}"
            );
        }
        never_panics(STATUS_TXT, parse_status_threads);
    }

    #[test]
    fn comm_fixture() {
        assert_eq!(parse_comm(COMM_TXT), b"psleak worker 1");
        assert_eq!(parse_comm(b""), b"");
        assert_eq!(parse_comm(b"no newline"), b"no newline");
    }

    #[test]
    fn dirents_fixture() {
        let names: Vec<&[u8]> = Dirents::new(DIRENTS_BIN).map(|d| d.unwrap().name).collect();
        // The names file says which descriptor listed and what fstat found open.
        let expected_text = std::str::from_utf8(DIRENTS_NAMES).unwrap();
        let mut lines = expected_text.lines();
        let dirfd: i32 = lines
            .next()
            .unwrap()
            .strip_prefix("dirfd ")
            .unwrap()
            .parse()
            .unwrap();
        let mut expected: Vec<&[u8]> = lines.map(str::as_bytes).collect();
        let mut got = names.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        let fds: Vec<i32> = names.iter().filter_map(|n| parse_entry_number(n)).collect();
        assert_eq!(fds.len(), names.len() - 2, "all but . and .. are numbers");
        assert!(fds.contains(&dirfd));
    }

    #[test]
    fn dirents_malformed() {
        assert_eq!(Dirents::new(&[]).count(), 0);
        // A zero record length must end the iteration, not loop forever.
        let zeros = [0u8; 64];
        let all: Vec<_> = Dirents::new(&zeros).collect();
        assert_eq!(all.len(), 1);
        assert!(all[0].is_err());
        // A record that claims more bytes than the buffer holds.
        let mut rec = DIRENTS_BIN[..24].to_vec();
        rec[16..18].copy_from_slice(&200u16.to_ne_bytes());
        assert!(Dirents::new(&rec).next().unwrap().is_err());
        // A name without its NUL.
        let mut rec = vec![b'x'; 24];
        rec[16..18].copy_from_slice(&24u16.to_ne_bytes());
        assert!(Dirents::new(&rec).next().unwrap().is_err());
        // Every prefix and corruption: errors at most once, never panics, always ends.
        never_panics(DIRENTS_BIN, |b| {
            let mut errors = 0;
            for d in Dirents::new(b) {
                errors += usize::from(d.is_err());
            }
            assert!(errors <= 1);
        });
    }

    #[test]
    fn entry_numbers() {
        assert_eq!(parse_entry_number(b"0"), Some(0));
        assert_eq!(parse_entry_number(b"1023"), Some(1023));
        assert_eq!(parse_entry_number(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_entry_number(b"2147483648"), None);
        assert_eq!(parse_entry_number(b"."), None);
        assert_eq!(parse_entry_number(b".."), None);
        assert_eq!(parse_entry_number(b""), None);
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sockaddr_fixtures() {
        let text = std::str::from_utf8(fixture!("sockaddrs.tsv")).unwrap();
        let mut families = Vec::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let [domain, family, socktype, typename, local, local_hex, remote, remote_hex] = cols[..] else {
                panic!("bad fixture line {line:?}");
            };
            assert_eq!(family_name(domain.parse().unwrap()), family, "{line}");
            assert_eq!(socktype_name(socktype.parse().unwrap()), typename, "{line}");
            let want = |s: &str| (s != "-").then(|| s.to_owned());
            assert_eq!(format_sockaddr(&unhex(local_hex)), want(local), "{line}");
            if remote_hex != "-" {
                assert_eq!(format_sockaddr(&unhex(remote_hex)), want(remote), "{line}");
            }
            families.push(family);
        }
        for f in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_PACKET"] {
            assert!(families.contains(&f), "fixture lacks {f}");
        }
    }

    #[test]
    fn sockaddr_odd() {
        assert_eq!(family_name(99), "AF_99");
        assert_eq!(socktype_name(42), "SOCK_42");
        let unix = u16::try_from(libc::AF_UNIX).unwrap().to_ne_bytes();
        // A pathname without its NUL (addrlen may leave it out).
        let mut a = unix.to_vec();
        a.extend_from_slice(b"/run/x.sock");
        assert_eq!(format_sockaddr(&a).as_deref(), Some("/run/x.sock"));
        // The shortest abstract name, and a non-UTF-8 path.
        assert_eq!(format_sockaddr(&[unix[0], unix[1], 0]).as_deref(), Some("@"));
        let a = [unix[0], unix[1], b'/', 0xff];
        assert_eq!(format_sockaddr(&a).as_deref(), Some("/\u{fffd}"));
        // Truncated or unknown addresses are not decoded, and do not panic.
        let inet = u16::try_from(libc::AF_INET).unwrap().to_ne_bytes();
        assert_eq!(format_sockaddr(&[inet[0], inet[1], 0, 80, 127]), None);
        assert_eq!(format_sockaddr(&[]), None);
        assert_eq!(format_sockaddr(&[1]), None);
        assert_eq!(format_sockaddr(&[0xee, 0xee, 1, 2, 3, 4]), None);
        let text = std::str::from_utf8(fixture!("sockaddrs.tsv")).unwrap();
        for hex in text.lines().flat_map(|l| l.split('\t').skip(5).step_by(2)) {
            if hex != "-" {
                never_panics(&unhex(hex), format_sockaddr);
            }
        }
    }

    fn tag(kind: &FdKind) -> String {
        match kind {
            FdKind::File => "file".into(),
            FdKind::Directory => "directory".into(),
            FdKind::Pipe => "pipe".into(),
            FdKind::Socket { .. } => "socket".into(),
            FdKind::EventFd => "eventfd".into(),
            FdKind::Epoll => "epoll".into(),
            FdKind::TimerFd => "timerfd".into(),
            FdKind::SignalFd => "signalfd".into(),
            FdKind::Inotify => "inotify".into(),
            FdKind::Fanotify => "fanotify".into(),
            FdKind::MemFd => "memfd".into(),
            FdKind::PidFd => "pidfd".into(),
            FdKind::AnonInode { name } => format!("anon_inode:{name}"),
            FdKind::CharDevice => "char_device".into(),
            FdKind::BlockDevice => "block_device".into(),
            FdKind::Other => "other".into(),
        }
    }

    /// The rows of `fd_targets.tsv`: (kind, has path, st_mode, link target).
    fn fd_rows() -> Vec<(&'static str, bool, u32, &'static str)> {
        std::str::from_utf8(FD_TARGETS)
            .unwrap()
            .lines()
            .map(|line| {
                let cols: Vec<&str> = line.splitn(4, '\t').collect();
                let [kind, path, mode, target] = cols[..] else {
                    panic!("bad fixture line {line:?}");
                };
                let mode = u32::from_str_radix(mode, 8).unwrap();
                (kind, path == "path", mode, target)
            })
            .collect()
    }

    #[test]
    fn classify_fixture_targets() {
        let rows = fd_rows();
        // The fixture must cover every kind the classifier knows.
        for kind in [
            "file",
            "directory",
            "pipe",
            "socket",
            "eventfd",
            "epoll",
            "timerfd",
            "signalfd",
            "inotify",
            "fanotify",
            "memfd",
            "pidfd",
            "anon_inode:io_uring",
            "char_device",
            "block_device",
            "other",
        ] {
            assert!(rows.iter().any(|r| r.0 == kind), "fixture lacks {kind}");
        }
        for (kind, has_path, mode, target) in rows {
            let (got, path) = classify_fd_target(target, Some(mode));
            assert_eq!(tag(&got), kind, "{target:?} mode {mode:o}");
            let want_path = has_path.then(|| target.to_owned());
            assert_eq!(path, want_path, "{target:?}");
        }
    }

    #[test]
    fn classify_fixture_targets_without_mode() {
        // When fstat failed, the link text alone decides: paths become files (or memfds).
        for (kind, has_path, _, target) in fd_rows() {
            let (got, path) = classify_fd_target(target, None);
            let want = match kind {
                "memfd" => "memfd",
                _ if has_path => "file",
                other => other,
            };
            assert_eq!(tag(&got), want, "{target:?}");
            assert_eq!(path.is_some(), has_path, "{target:?}");
        }
    }

    #[test]
    fn classify_odd_targets() {
        let reg = Some(libc::S_IFREG | 0o644);
        // Spaces and the deleted suffix stay in the path, verbatim.
        let (k, p) = classify_fd_target("/tmp/a b (deleted)", reg);
        assert_eq!((k, p.as_deref()), (FdKind::File, Some("/tmp/a b (deleted)")));
        // A memfd whose own name ends in " (deleted)".
        let (k, p) = classify_fd_target("/memfd:x (deleted) (deleted)", reg);
        assert_eq!(
            (k, p.as_deref()),
            (FdKind::MemFd, Some("/memfd:x (deleted) (deleted)"))
        );
        // A directory that merely looks like a memfd.
        let dir = Some(libc::S_IFDIR | 0o755);
        assert_eq!(classify_fd_target("/memfd:x (deleted)", dir).0, FdKind::Directory);
        // Sockets come back unfilled.
        let (k, p) = classify_fd_target("socket:[123]", Some(libc::S_IFSOCK | 0o777));
        assert_eq!(
            k,
            FdKind::Socket {
                family: String::new(),
                socktype: String::new(),
                local: None,
                remote: None
            }
        );
        assert_eq!(p, None);
        // Anonymous inodes, with or without brackets; unknown names are kept.
        for (target, kind) in [
            ("anon_inode:[eventfd]", FdKind::EventFd),
            ("anon_inode:[eventpoll]", FdKind::Epoll),
            ("anon_inode:[timerfd]", FdKind::TimerFd),
            ("anon_inode:[signalfd]", FdKind::SignalFd),
            ("anon_inode:inotify", FdKind::Inotify),
            ("anon_inode:[fanotify]", FdKind::Fanotify),
            ("anon_inode:[pidfd]", FdKind::PidFd),
            (
                "anon_inode:bpf-map",
                FdKind::AnonInode {
                    name: "bpf-map".into(),
                },
            ),
            (
                "anon_inode:[io_uring]",
                FdKind::AnonInode {
                    name: "io_uring".into(),
                },
            ),
            ("anon_inode:", FdKind::AnonInode { name: "".into() }),
            ("anon_inode:[", FdKind::AnonInode { name: "[".into() }),
        ] {
            assert_eq!(classify_fd_target(target, Some(0o600)), (kind, None));
        }
        // Neither a path nor a known prefix.
        for target in ["", "net:[4026531833]", "weird", "pipe:", "socket:"] {
            assert_eq!(classify_fd_target(target, reg), (FdKind::Other, None));
        }
    }
}
