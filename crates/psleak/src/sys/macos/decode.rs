//! Pure decoders for what the macOS probes read: bytes or numbers in, psleak's types out.
//!
//! Compiled on every platform (on Linux for the tests only), so that the layouts and the
//! mappings are unit-tested where the project's CI runs; macOS itself is only type-checked
//! there. Every offset below comes from XNU's `bsd/sys/proc_info.h` (the public header of
//! `proc_pidinfo`/`proc_pidfdinfo`, unchanged in layout since macOS 10.7 apart from the
//! `SOCKINFO_VSOCK` member added to a union that is larger anyway), computed for the LP64
//! ABI of both Apple targets (`int64_t`/`uint64_t` 8-aligned, little-endian). The tests
//! rebuild the structs field by field from the header and check every offset against the
//! compiler's layout.
//!
//! No allocation except for the strings a description returns.

use crate::error::{Error, Result};
use crate::probes::{FdKind, MallocStats, MemoryCounters};

// ---------------------------------------------------------------------------------------
// malloc zones

/// The sums `malloc_zone_statistics(NULL, ...)` fills in over every registered zone
/// (`malloc_statistics_t`, malloc/malloc.h). Its `blocks_in_use` (live allocations) has no
/// field in [`MallocStats`], whose keys are the same on every platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ZoneTotals {
    /// `size_in_use`: bytes handed out, every size class (tiny, small, medium and the large
    /// blocks the zone gets with `vm_allocate`).
    pub(crate) size_in_use: u64,
    /// `size_allocated`: bytes the zones hold from the kernel.
    pub(crate) size_allocated: u64,
}

/// psleak's malloc statistics from the zone totals.
///
/// libmalloc counts its large blocks (served with `vm_allocate`, the counterpart of glibc's
/// mmapped chunks) inside `size_in_use` and gives no separate figure for them, so
/// `heap_used` covers every size and `mmap_used` is 0. A number taken from elsewhere (the
/// task's VM counters) would be page-granular and disturbed by unrelated mappings, where
/// `mmap` is a byte-exact metric with no noise floor. Memory mapped outside malloc shows in
/// the task counters instead ([`memory_counters`]: footprint and virtual size), as direct
/// `mmap` shows in `RssAnon` and `VmSize` on Linux.
pub(crate) fn malloc_stats_from_zones(z: ZoneTotals) -> MallocStats {
    MallocStats {
        heap_used: z.size_in_use,
        mmap_used: 0,
        heap_total: z.size_allocated,
        // Zones may report more in use than allocated while another thread is mid-update;
        // free space is never negative.
        heap_free: z.size_allocated.saturating_sub(z.size_in_use),
    }
}

// ---------------------------------------------------------------------------------------
// task_info(TASK_VM_INFO)

/// `TASK_VM_INFO_REV1_COUNT` (mach/task_info.h): the count, in `natural_t`, of the fields up
/// to and including `phys_footprint` (revision 1, macOS 10.11). A kernel answers with the
/// count of the revision it filled; below this, `phys_footprint` was not written.
pub(crate) const TASK_VM_INFO_REV1_COUNT: u32 = 38;

/// The fields of `task_vm_info_data_t` psleak reads, in bytes, and the count the kernel
/// answered with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VmInfo {
    pub(crate) virtual_size: u64,
    pub(crate) resident_size: u64,
    pub(crate) internal: u64,
    pub(crate) compressed: u64,
    pub(crate) phys_footprint: u64,
    pub(crate) count: u32,
}

impl VmInfo {
    /// The task's footprint: `phys_footprint`, the figure Activity Monitor and Xcode show as
    /// "Memory" (dirty private memory, resident or compressed, plus IOKit mappings). Kernels
    /// older than revision 1 did not fill it: their counterpart is resident anonymous memory
    /// plus what the compressor holds.
    pub(crate) fn footprint(&self) -> u64 {
        if self.count >= TASK_VM_INFO_REV1_COUNT {
            self.phys_footprint
        } else {
            self.internal.saturating_add(self.compressed)
        }
    }
}

/// psleak's memory counters from `task_info(TASK_VM_INFO)`.
///
/// `anon` is the footprint, not `internal`: macOS compresses idle anonymous pages early and
/// often, so leaked memory leaves the resident set (`internal` drops) while it stays in the
/// footprint. `swap` is what the compressor (and the swap files behind it) holds.
pub(crate) fn memory_counters(vm: &VmInfo) -> MemoryCounters {
    MemoryCounters {
        rss: vm.resident_size,
        vms: vm.virtual_size,
        anon: vm.footprint(),
        swap: vm.compressed,
    }
}

/// `share_mode` values of `vm_region_top_info` (mach/vm_region.h; `SM_LARGE_PAGE` since
/// macOS 10.9).
pub(crate) mod share_mode {
    pub(crate) const COW: u8 = 1;
    pub(crate) const PRIVATE: u8 = 2;
    pub(crate) const EMPTY: u8 = 3;
    pub(crate) const SHARED: u8 = 4;
    pub(crate) const TRUESHARED: u8 = 5;
    pub(crate) const PRIVATE_ALIASED: u8 = 6;
    pub(crate) const SHARED_ALIASED: u8 = 7;
    pub(crate) const LARGE_PAGE: u8 = 8;
}

/// Unique and proportional set sizes, in pages, summed over the regions of
/// `mach_vm_region(VM_REGION_TOP_INFO)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RegionTotals {
    pub(crate) uss_pages: u64,
    pub(crate) pss_pages: f64,
}

impl RegionTotals {
    /// Adds one region. XNU's `vm_map_region_top_walk` fills `private_pages_resident` for
    /// objects only this map references and `shared_pages_resident` for the others (and for
    /// the shadow chain of a copy-on-write object); `ref_count` counts the references.
    /// A copy-on-write region with a single reference is private in all but name (the rule
    /// psutil's USS on macOS follows too). Shared pages are split evenly between the
    /// references for the PSS, as Linux does per page.
    pub(crate) fn add(&mut self, mode: u8, ref_count: u32, private_pages: u32, shared_pages: u32) {
        let (private, shared) = (u64::from(private_pages), u64::from(shared_pages));
        let private_mode = matches!(
            mode,
            share_mode::PRIVATE | share_mode::PRIVATE_ALIASED | share_mode::LARGE_PAGE
        ) || (mode == share_mode::COW && ref_count <= 1);
        match mode {
            share_mode::EMPTY => {}
            _ if private_mode => {
                self.uss_pages += private + shared;
                self.pss_pages += (private + shared) as f64;
            }
            share_mode::COW | share_mode::SHARED | share_mode::TRUESHARED | share_mode::SHARED_ALIASED => {
                self.uss_pages += private;
                self.pss_pages += private as f64 + shared as f64 / f64::from(ref_count.max(1));
            }
            // A mode added by a later kernel: count what is certainly private.
            _ => {
                self.uss_pages += private;
                self.pss_pages += private as f64;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// proc_pidinfo / proc_pidfdinfo

/// `proc_fdinfo.proc_fdtype` values (`PROX_FDTYPE_*`, sys/proc_info.h).
pub(crate) mod fdtype {
    pub(crate) const ATALK: u32 = 0;
    pub(crate) const VNODE: u32 = 1;
    pub(crate) const SOCKET: u32 = 2;
    pub(crate) const PSHM: u32 = 3;
    pub(crate) const PSEM: u32 = 4;
    pub(crate) const KQUEUE: u32 = 5;
    pub(crate) const PIPE: u32 = 6;
    pub(crate) const FSEVENTS: u32 = 7;
    pub(crate) const NETPOLICY: u32 = 9;
    pub(crate) const CHANNEL: u32 = 10;
    pub(crate) const NEXUS: u32 = 11;
}

/// `proc_pidfdinfo` flavors and the sizes of the structs they fill (sys/proc_info.h).
pub(crate) mod flavor {
    /// `PROC_PIDFDVNODEPATHINFO`: `struct vnode_fdinfowithpath`.
    pub(crate) const VNODEPATH: i32 = 2;
    pub(crate) const VNODEPATH_SIZE: usize = 1200;
    /// `PROC_PIDFDSOCKETINFO`: `struct socket_fdinfo`.
    pub(crate) const SOCKET: i32 = 3;
    pub(crate) const SOCKET_SIZE: usize = 792;
    /// `PROC_PIDFDPSEMINFO`: `struct psem_fdinfo`.
    pub(crate) const PSEM: i32 = 4;
    pub(crate) const PSEM_SIZE: usize = 1184;
    /// `PROC_PIDFDPSHMINFO`: `struct pshm_fdinfo`.
    pub(crate) const PSHM: i32 = 5;
    pub(crate) const PSHM_SIZE: usize = 1192;
    /// `PROC_PIDFDPIPEINFO`: `struct pipe_fdinfo`.
    pub(crate) const PIPE: i32 = 6;
    pub(crate) const PIPE_SIZE: usize = 184;
    /// The largest of the above: one buffer serves every flavor.
    pub(crate) const MAX_SIZE: usize = VNODEPATH_SIZE;
}

/// Size of `struct proc_fdinfo { int32_t proc_fd; uint32_t proc_fdtype; }`.
pub(crate) const PROC_FDINFO_SIZE: usize = 8;

/// `struct proc_fileinfo` (24 bytes) starts every `*_fdinfo`; `struct vinfo_stat` (136
/// bytes) follows it in all of them.
const PFI_SIZE: usize = 24;
const VINFO_STAT_SIZE: usize = 136;
/// `vinfo_stat.vst_mode` (uint16_t) after `vst_dev` (uint32_t).
const VST_MODE: usize = PFI_SIZE + 4;
/// `vnode_fdinfowithpath.pvip.vip_path`: after `vnode_info` = `vinfo_stat` + `vi_type`,
/// `vi_pad` (int each) + `vi_fsid` (two int32) = 152 bytes.
const VIP_PATH: usize = PFI_SIZE + VINFO_STAT_SIZE + 16;
/// `MAXPATHLEN` (sys/param.h).
const MAXPATHLEN: usize = 1024;
/// `pipe_fdinfo.pipeinfo.pipe_handle`, right after `pipe_stat`.
const PIPE_HANDLE: usize = PFI_SIZE + VINFO_STAT_SIZE;
/// `psem_fdinfo.pseminfo.psem_name`, right after `psem_stat`.
const PSEM_NAME: usize = PFI_SIZE + VINFO_STAT_SIZE;
/// `pshm_fdinfo.pshminfo.pshm_name`, after `pshm_stat` and `pshm_mappaddr` (uint64_t).
const PSHM_NAME: usize = PFI_SIZE + VINFO_STAT_SIZE + 8;

/// `socket_fdinfo.psi` (`struct socket_info`) and its fields.
const SOI: usize = PFI_SIZE;
/// `soi_so`: the socket's opaque handle (a kernel address, permuted), after `soi_stat`.
const SOI_SO: usize = SOI + VINFO_STAT_SIZE;
/// `soi_type`, `soi_protocol`, `soi_family` (int each) after `soi_so` and `soi_pcb`.
const SOI_TYPE: usize = SOI_SO + 16;
const SOI_FAMILY: usize = SOI_TYPE + 8;
/// `soi_kind`: after the seven shorts, `soi_error`, `soi_oobmark` (uint32_t) and the two
/// 24-byte `sockbuf_info` (`soi_rcv`, `soi_snd`): 164 + 16 + 4 + 48 = 232 into `socket_info`.
const SOI_KIND: usize = SOI + 232;
/// `soi_proto`, the union described by `soi_kind`, after `soi_kind` and `rfu_1`.
const SOI_PROTO: usize = SOI_KIND + 8;

/// `soi_kind` values (`SOCKINFO_*`).
mod sockinfo {
    pub(super) const IN: i32 = 1;
    pub(super) const TCP: i32 = 2;
    pub(super) const UN: i32 = 3;
    pub(super) const KERN_CTL: i32 = 6;
    pub(super) const VSOCK: i32 = 7;
}

/// `struct in_sockinfo` (also the head of `struct tcp_sockinfo`): `insi_fport`,
/// `insi_lport` (int each, holding the `in_port_t` in network byte order), `insi_gencnt`
/// (uint64_t), `insi_flags`, `insi_flow` (uint32_t), `insi_vflag`, `insi_ip_ttl` (uint8_t),
/// `rfu_1` (uint32_t, at 28), then `insi_faddr` and `insi_laddr`, 16-byte unions of
/// `struct in4in6_addr { u_int32_t i46a_pad32[3]; struct in_addr i46a_addr4; }` and
/// `struct in6_addr`.
const INSI_FPORT: usize = SOI_PROTO;
const INSI_LPORT: usize = SOI_PROTO + 4;
const INSI_VFLAG: usize = SOI_PROTO + 24;
const INSI_FADDR: usize = SOI_PROTO + 32;
const INSI_LADDR: usize = SOI_PROTO + 48;
/// `insi_vflag` bits.
const INI_IPV4: u8 = 0x1;
const INI_IPV6: u8 = 0x2;

/// `struct un_sockinfo`: `unsi_conn_so`, `unsi_conn_pcb` (uint64_t), then `unsi_addr` and
/// `unsi_caddr`, unions of `struct sockaddr_un` and `char[SOCK_MAXADDRLEN]` (255 bytes).
const UNSI_ADDR: usize = SOI_PROTO + 16;
const UNSI_CADDR: usize = UNSI_ADDR + 255;
/// `struct sockaddr_un` (sys/un.h): `sun_len`, `sun_family` (one byte each), `sun_path[104]`.
const SUN_PATH_MAX: usize = 104;

/// `struct kern_ctl_info`: six uint32_t (`kcsi_id`, ..., `kcsi_unit`), then
/// `kcsi_name[MAX_KCTL_NAME]` (96).
const KCSI_UNIT: usize = SOI_PROTO + 20;
const KCSI_NAME: usize = SOI_PROTO + 24;
const MAX_KCTL_NAME: usize = 96;

/// `struct proc_threadinfo`: two uint64_t and eight int32_t, then
/// `pth_name[MAXTHREADNAMESIZE]` (64).
pub(crate) const PROC_THREADINFO_SIZE: usize = 112;
const PTH_NAME: usize = 48;
const MAXTHREADNAMESIZE: usize = 64;

/// Address families of XNU's sys/socket.h. Their numbers differ from Linux's past
/// `AF_INET` (`AF_INET6` is 30), so they are spelled out here rather than taken from libc,
/// which would give the host's values in the tests.
mod af {
    pub(super) const UNIX: i32 = 1;
    pub(super) const INET: i32 = 2;
    pub(super) const ROUTE: i32 = 17;
    pub(super) const LINK: i32 = 18;
    pub(super) const NDRV: i32 = 27;
    pub(super) const KEY: i32 = 29;
    pub(super) const INET6: i32 = 30;
    pub(super) const SYSTEM: i32 = 32;
    pub(super) const VSOCK: i32 = 40;
}

/// File type bits of `st_mode` (sys/stat.h; the traditional values, as on Linux).
mod mode {
    pub(super) const IFMT: u16 = 0o170_000;
    pub(super) const IFIFO: u16 = 0o010_000;
    pub(super) const IFCHR: u16 = 0o020_000;
    pub(super) const IFDIR: u16 = 0o040_000;
    pub(super) const IFBLK: u16 = 0o060_000;
    pub(super) const IFREG: u16 = 0o100_000;
}

/// `N` bytes of `b` at `at`, if there are that many.
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    bytes_at(b, at).map(u16::from_ne_bytes)
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    bytes_at(b, at).map(i32::from_ne_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    bytes_at(b, at).map(u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    bytes_at(b, at).map(u64::from_ne_bytes)
}

/// The NUL-terminated string in the `len`-byte field at `at` (all of it if it has no NUL);
/// `None` if the buffer is shorter than the field or the string is empty.
fn c_string_at(b: &[u8], at: usize, len: usize) -> Option<String> {
    let field = b.get(at..at.checked_add(len)?)?;
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    (end > 0).then(|| String::from_utf8_lossy(&field[..end]).into_owned())
}

/// The records of a `proc_pidinfo(PROC_PIDLISTFDS)` buffer: `(fd, fdtype)` pairs, 8 bytes
/// each. A trailing partial record (never written by the kernel) is ignored.
pub(crate) fn fd_records(buf: &[u8]) -> impl Iterator<Item = (i32, u32)> + '_ {
    buf.chunks_exact(PROC_FDINFO_SIZE)
        .filter_map(|r| Some((i32_at(r, 0)?, u32_at(r, 4)?)))
}

/// The name shown for descriptor types psleak does not describe further.
pub(crate) fn fdtype_name(t: u32) -> String {
    let name = match t {
        fdtype::ATALK => "atalk",
        fdtype::VNODE => "vnode",
        fdtype::SOCKET => "socket",
        fdtype::PSHM => "pshm",
        fdtype::PSEM => "psem",
        fdtype::KQUEUE => "kqueue",
        fdtype::PIPE => "pipe",
        fdtype::FSEVENTS => "fsevents",
        fdtype::NETPOLICY => "netpolicy",
        fdtype::CHANNEL => "channel",
        fdtype::NEXUS => "nexus",
        _ => return format!("fdtype:{t}"),
    };
    name.to_owned()
}

/// What [`describe_fd`] needs to know about one descriptor: its type from the listing and
/// what `proc_pidfdinfo` answered with the flavor [`flavor_for`] chose (`None` when that call
/// failed or the type has no flavor).
pub(crate) struct FdAnswer<'a> {
    pub(crate) fdtype: u32,
    pub(crate) info: Option<&'a [u8]>,
}

/// The `proc_pidfdinfo` flavor and struct size that describe a descriptor type, if any.
pub(crate) fn flavor_for(fdtype: u32) -> Option<(i32, usize)> {
    match fdtype {
        fdtype::VNODE => Some((flavor::VNODEPATH, flavor::VNODEPATH_SIZE)),
        fdtype::SOCKET => Some((flavor::SOCKET, flavor::SOCKET_SIZE)),
        fdtype::PIPE => Some((flavor::PIPE, flavor::PIPE_SIZE)),
        fdtype::PSHM => Some((flavor::PSHM, flavor::PSHM_SIZE)),
        fdtype::PSEM => Some((flavor::PSEM, flavor::PSEM_SIZE)),
        _ => None,
    }
}

/// The kind, path and identity (`target`) of a descriptor.
///
/// `target` plays the part of Linux's `/proc/self/fd/N` link text: the path of a vnode,
/// `pipe:[0x…]` and `socket:[0x…]` with the kernel's opaque handle of the object (stable
/// while it lives), `pshm:NAME`, `psem:NAME`, or the type's name. An answer too short for its
/// struct is a parse error.
pub(crate) fn describe_fd(a: &FdAnswer<'_>) -> Result<(FdKind, Option<String>, String)> {
    let Some(info) = a.info else {
        let name = fdtype_name(a.fdtype);
        let kind = if a.fdtype == fdtype::PIPE {
            FdKind::Pipe
        } else {
            FdKind::Other
        };
        return Ok((kind, None, name));
    };
    if let Some((_, size)) = flavor_for(a.fdtype) {
        if info.len() < size {
            return Err(Error::parse(
                "proc_pidfdinfo",
                format!(
                    "{} bytes for a {} descriptor, expected {size}",
                    info.len(),
                    fdtype_name(a.fdtype)
                ),
            ));
        }
    }
    Ok(match a.fdtype {
        fdtype::VNODE => {
            let vst_mode = u16_at(info, VST_MODE).unwrap_or(0);
            let path = c_string_at(info, VIP_PATH, MAXPATHLEN);
            let kind = vnode_kind(vst_mode);
            let target = path.clone().unwrap_or_else(|| "vnode".to_owned());
            (kind, path, target)
        }
        fdtype::SOCKET => {
            let handle = u64_at(info, SOI_SO).unwrap_or(0);
            (decode_socket(info), None, format!("socket:[{handle:#x}]"))
        }
        fdtype::PIPE => {
            let handle = u64_at(info, PIPE_HANDLE).unwrap_or(0);
            (FdKind::Pipe, None, format!("pipe:[{handle:#x}]"))
        }
        fdtype::PSHM | fdtype::PSEM => {
            let at = if a.fdtype == fdtype::PSHM {
                PSHM_NAME
            } else {
                PSEM_NAME
            };
            let name = c_string_at(info, at, MAXPATHLEN);
            let target = format!("{}:{}", fdtype_name(a.fdtype), name.as_deref().unwrap_or(""));
            (FdKind::Other, name, target)
        }
        t => (FdKind::Other, None, fdtype_name(t)),
    })
}

/// The kind of a vnode from its `vst_mode`. Sockets bound to a path and symlinks cannot be
/// open vnodes of their own (a socket descriptor is `PROX_FDTYPE_SOCKET`), so they fall
/// under `Other` with anything unexpected.
fn vnode_kind(vst_mode: u16) -> FdKind {
    match vst_mode & mode::IFMT {
        mode::IFREG => FdKind::File,
        mode::IFDIR => FdKind::Directory,
        mode::IFCHR => FdKind::CharDevice,
        mode::IFBLK => FdKind::BlockDevice,
        mode::IFIFO => FdKind::Pipe,
        _ => FdKind::Other,
    }
}

/// The name of an XNU address family: `AF_INET`..., or `AF_<n>`.
pub(crate) fn family_name(family: i32) -> String {
    let name = match family {
        af::UNIX => "AF_UNIX",
        af::INET => "AF_INET",
        af::ROUTE => "AF_ROUTE",
        af::LINK => "AF_LINK",
        af::NDRV => "AF_NDRV",
        af::KEY => "AF_KEY",
        af::INET6 => "AF_INET6",
        af::SYSTEM => "AF_SYSTEM",
        af::VSOCK => "AF_VSOCK",
        _ => return format!("AF_{family}"),
    };
    name.to_owned()
}

/// The name of a socket type (sys/socket.h; the same numbers as Linux's).
pub(crate) fn socktype_name(socktype: i32) -> String {
    let name = match socktype {
        1 => "SOCK_STREAM",
        2 => "SOCK_DGRAM",
        3 => "SOCK_RAW",
        4 => "SOCK_RDM",
        5 => "SOCK_SEQPACKET",
        _ => return format!("SOCK_{socktype}"),
    };
    name.to_owned()
}

/// Family, type and addresses of a `socket_fdinfo`. The buffer's length was checked.
fn decode_socket(info: &[u8]) -> FdKind {
    let family = i32_at(info, SOI_FAMILY).unwrap_or(-1);
    let socktype = i32_at(info, SOI_TYPE).unwrap_or(-1);
    let (local, remote) = match i32_at(info, SOI_KIND).unwrap_or(0) {
        sockinfo::IN | sockinfo::TCP => (inet_address(info, true), inet_address(info, false)),
        sockinfo::UN => (unix_path(info, UNSI_ADDR), unix_path(info, UNSI_CADDR)),
        sockinfo::KERN_CTL => {
            let name = c_string_at(info, KCSI_NAME, MAX_KCTL_NAME);
            let unit = u32_at(info, KCSI_UNIT).unwrap_or(0);
            (name.map(|n| format!("{n} unit {unit}")), None)
        }
        sockinfo::VSOCK => {
            // struct vsock_sockinfo: local_cid, local_port, remote_cid, remote_port.
            let pair = |at: usize| -> Option<String> {
                let (cid, port) = (u32_at(info, at)?, u32_at(info, at + 4)?);
                (cid != 0 || port != 0).then(|| format!("{cid}:{port}"))
            };
            (pair(SOI_PROTO), pair(SOI_PROTO + 8))
        }
        _ => (None, None),
    };
    FdKind::Socket {
        family: family_name(family),
        socktype: socktype_name(socktype),
        local,
        remote,
    }
}

/// The local or foreign address of an `in_sockinfo`, formatted as Linux's are
/// (`127.0.0.1:8080`, `[::1]:80`, `[fe80::1%4]:53`); `None` when unbound/unconnected.
fn inet_address(info: &[u8], local: bool) -> Option<String> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    let (port_at, addr_at) = if local {
        (INSI_LPORT, INSI_LADDR)
    } else {
        (INSI_FPORT, INSI_FADDR)
    };
    // The int holds the in_port_t's bytes as stored (network order) in its low 16 bits.
    let port = u16::from_be(i32_at(info, port_at)? as u16);
    let vflag = *info.get(INSI_VFLAG)?;
    let raw: [u8; 16] = bytes_at(info, addr_at)?;
    if vflag & INI_IPV6 != 0 {
        let mut octets = raw;
        // The BSD stack keeps a link-local address's scope (interface index) embedded in
        // its second 16-bit word inside the kernel (KAME, RFC 4007 section 6); lsof and
        // netstat take it out the same way.
        let mut scope = 0;
        if octets[0] == 0xfe && octets[1] & 0xc0 == 0x80 {
            scope = u32::from(u16::from_be_bytes([octets[2], octets[3]]));
            octets[2] = 0;
            octets[3] = 0;
        }
        let ip = Ipv6Addr::from(octets);
        (port != 0 || !ip.is_unspecified()).then(|| SocketAddrV6::new(ip, port, 0, scope).to_string())
    } else if vflag & INI_IPV4 != 0 {
        let ip = Ipv4Addr::new(raw[12], raw[13], raw[14], raw[15]);
        (port != 0 || !ip.is_unspecified()).then(|| SocketAddrV4::new(ip, port).to_string())
    } else {
        None
    }
}

/// The path of a `sockaddr_un` at `at` (sys/un.h): `sun_len` counts the whole address, the
/// path is NUL-terminated or ends at `sun_len`; `None` for an unnamed socket.
fn unix_path(info: &[u8], at: usize) -> Option<String> {
    let sun_len = usize::from(*info.get(at)?);
    let path_len = sun_len.saturating_sub(2).min(SUN_PATH_MAX);
    c_string_at(info, at + 2, path_len)
}

/// The name in a `proc_threadinfo` (`pth_name`, set with `pthread_setname_np`); empty when
/// the thread has none or the buffer is short.
pub(crate) fn thread_name(info: &[u8]) -> String {
    c_string_at(info, PTH_NAME, MAXTHREADNAMESIZE).unwrap_or_default()
}

/// A `kern_return_t` (mach/kern_return.h) as text, for error messages.
pub(crate) fn kern_return_text(kr: i32) -> String {
    let name = match kr {
        1 => "KERN_INVALID_ADDRESS",
        2 => "KERN_PROTECTION_FAILURE",
        3 => "KERN_NO_SPACE",
        4 => "KERN_INVALID_ARGUMENT",
        5 => "KERN_FAILURE",
        6 => "KERN_RESOURCE_SHORTAGE",
        8 => "KERN_NO_ACCESS",
        15 => "KERN_INVALID_NAME",
        17 => "KERN_INVALID_RIGHT",
        18 => "KERN_INVALID_VALUE",
        37 => "KERN_NOT_SUPPORTED",
        _ => return format!("kern_return_t {kr}"),
    };
    format!("{name} ({kr})")
}

#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use layout::*;
    use std::mem::{offset_of, size_of};

    /// The structs of XNU's `bsd/sys/proc_info.h` (xnu-8796 and later; the same layout back
    /// to macOS 10.7 but for the vsock union member), transcribed field by field, with the
    /// headers they include: `struct sockaddr_un` (sys/un.h: `sun_len`, `sun_family`,
    /// `sun_path[104]`), `fsid_t` (two int32_t), `SOCK_MAXADDRLEN` 255, `MAXPATHLEN` 1024,
    /// `MAX_KCTL_NAME` 96, `MAXTHREADNAMESIZE` 64, `TSI_T_NTIMERS` 4. The LP64 C layout of
    /// both Apple targets is what `repr(C)` gives on x86_64 Linux: the fixtures built from
    /// them have the bytes a Mac would write.
    #[allow(dead_code)] // transcribed in full for the layout; the tests set a few fields
    mod layout {
        #[repr(C)]
        pub struct ProcFileinfo {
            pub fi_openflags: u32,
            pub fi_status: u32,
            pub fi_offset: i64,
            pub fi_type: i32,
            pub fi_guardflags: u32,
        }

        #[repr(C)]
        pub struct VinfoStat {
            pub vst_dev: u32,
            pub vst_mode: u16,
            pub vst_nlink: u16,
            pub vst_ino: u64,
            pub vst_uid: u32,
            pub vst_gid: u32,
            pub vst_atime: i64,
            pub vst_atimensec: i64,
            pub vst_mtime: i64,
            pub vst_mtimensec: i64,
            pub vst_ctime: i64,
            pub vst_ctimensec: i64,
            pub vst_birthtime: i64,
            pub vst_birthtimensec: i64,
            pub vst_size: i64,
            pub vst_blocks: i64,
            pub vst_blksize: i32,
            pub vst_flags: u32,
            pub vst_gen: u32,
            pub vst_rdev: u32,
            pub vst_qspare: [i64; 2],
        }

        #[repr(C)]
        pub struct VnodeInfo {
            pub vi_stat: VinfoStat,
            pub vi_type: i32,
            pub vi_pad: i32,
            pub vi_fsid: [i32; 2],
        }

        #[repr(C)]
        pub struct VnodeInfoPath {
            pub vip_vi: VnodeInfo,
            pub vip_path: [u8; 1024],
        }

        #[repr(C)]
        pub struct VnodeFdinfowithpath {
            pub pfi: ProcFileinfo,
            pub pvip: VnodeInfoPath,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct In4in6Addr {
            pub i46a_pad32: [u32; 3],
            /// `struct in_addr`: the address in network byte order.
            pub i46a_addr4: [u8; 4],
        }

        /// `struct in6_addr` is a union of byte, u16 and u32 arrays: 4-aligned.
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub union In6Addr {
            pub s6_addr: [u8; 16],
            pub s6_addr32: [u32; 4],
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub union InsiAddr {
            pub ina_46: In4in6Addr,
            pub ina_6: In6Addr,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct InsiV6 {
            pub in6_hlim: u8,
            pub in6_cksum: i32,
            pub in6_ifindex: u16,
            pub in6_hops: i16,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct InSockinfo {
            pub insi_fport: i32,
            pub insi_lport: i32,
            pub insi_gencnt: u64,
            pub insi_flags: u32,
            pub insi_flow: u32,
            pub insi_vflag: u8,
            pub insi_ip_ttl: u8,
            pub rfu_1: u32,
            pub insi_faddr: InsiAddr,
            pub insi_laddr: InsiAddr,
            pub insi_v4: u8,
            pub insi_v6: InsiV6,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct TcpSockinfo {
            pub tcpsi_ini: InSockinfo,
            pub tcpsi_state: i32,
            pub tcpsi_timer: [i32; 4],
            pub tcpsi_mss: i32,
            pub tcpsi_flags: u32,
            pub rfu_1: u32,
            pub tcpsi_tp: u64,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct SockaddrUn {
            pub sun_len: u8,
            pub sun_family: u8,
            pub sun_path: [u8; 104],
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub union UnAddr {
            pub ua_sun: SockaddrUn,
            pub ua_dummy: [u8; 255],
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct UnSockinfo {
            pub unsi_conn_so: u64,
            pub unsi_conn_pcb: u64,
            pub unsi_addr: UnAddr,
            pub unsi_caddr: UnAddr,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct NdrvInfo {
            pub ndrvsi_if_family: u32,
            pub ndrvsi_if_unit: u32,
            pub ndrvsi_if_name: [u8; 16],
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct KernEventInfo {
            pub kesi_vendor_code_filter: u32,
            pub kesi_class_filter: u32,
            pub kesi_subclass_filter: u32,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct KernCtlInfo {
            pub kcsi_id: u32,
            pub kcsi_reg_unit: u32,
            pub kcsi_flags: u32,
            pub kcsi_recvbufsize: u32,
            pub kcsi_sendbufsize: u32,
            pub kcsi_unit: u32,
            pub kcsi_name: [u8; 96],
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct VsockSockinfo {
            pub local_cid: u32,
            pub local_port: u32,
            pub remote_cid: u32,
            pub remote_port: u32,
        }

        #[repr(C)]
        #[derive(Clone, Copy)]
        pub union SoiProto {
            pub pri_in: InSockinfo,
            pub pri_tcp: TcpSockinfo,
            pub pri_un: UnSockinfo,
            pub pri_ndrv: NdrvInfo,
            pub pri_kern_event: KernEventInfo,
            pub pri_kern_ctl: KernCtlInfo,
            pub pri_vsock: VsockSockinfo,
        }

        #[repr(C)]
        pub struct SockbufInfo {
            pub sbi_cc: u32,
            pub sbi_hiwat: u32,
            pub sbi_mbcnt: u32,
            pub sbi_mbmax: u32,
            pub sbi_lowat: u32,
            pub sbi_flags: i16,
            pub sbi_timeo: i16,
        }

        #[repr(C)]
        pub struct SocketInfo {
            pub soi_stat: VinfoStat,
            pub soi_so: u64,
            pub soi_pcb: u64,
            pub soi_type: i32,
            pub soi_protocol: i32,
            pub soi_family: i32,
            pub soi_options: i16,
            pub soi_linger: i16,
            pub soi_state: i16,
            pub soi_qlen: i16,
            pub soi_incqlen: i16,
            pub soi_qlimit: i16,
            pub soi_timeo: i16,
            pub soi_error: u16,
            pub soi_oobmark: u32,
            pub soi_rcv: SockbufInfo,
            pub soi_snd: SockbufInfo,
            pub soi_kind: i32,
            pub rfu_1: u32,
            pub soi_proto: SoiProto,
        }

        #[repr(C)]
        pub struct SocketFdinfo {
            pub pfi: ProcFileinfo,
            pub psi: SocketInfo,
        }

        #[repr(C)]
        pub struct PipeInfo {
            pub pipe_stat: VinfoStat,
            pub pipe_handle: u64,
            pub pipe_peerhandle: u64,
            pub pipe_status: i32,
            pub rfu_1: i32,
        }

        #[repr(C)]
        pub struct PipeFdinfo {
            pub pfi: ProcFileinfo,
            pub pipeinfo: PipeInfo,
        }

        #[repr(C)]
        pub struct PshmInfo {
            pub pshm_stat: VinfoStat,
            pub pshm_mappaddr: u64,
            pub pshm_name: [u8; 1024],
        }

        #[repr(C)]
        pub struct PshmFdinfo {
            pub pfi: ProcFileinfo,
            pub pshminfo: PshmInfo,
        }

        #[repr(C)]
        pub struct PsemInfo {
            pub psem_stat: VinfoStat,
            pub psem_name: [u8; 1024],
        }

        #[repr(C)]
        pub struct PsemFdinfo {
            pub pfi: ProcFileinfo,
            pub pseminfo: PsemInfo,
        }

        #[repr(C)]
        pub struct ProcFdinfo {
            pub proc_fd: i32,
            pub proc_fdtype: u32,
        }

        #[repr(C)]
        pub struct ProcThreadinfo {
            pub pth_user_time: u64,
            pub pth_system_time: u64,
            pub pth_cpu_usage: i32,
            pub pth_policy: i32,
            pub pth_run_state: i32,
            pub pth_flags: i32,
            pub pth_sleep_time: i32,
            pub pth_curpri: i32,
            pub pth_priority: i32,
            pub pth_maxpriority: i32,
            pub pth_name: [u8; 64],
        }

        /// The bytes of a `T` whose fields `fill` sets, everything else (padding included)
        /// zero, as the kernel's `bzero` + copy-out leaves them.
        pub fn bytes_of<T>(fill: impl FnOnce(&mut T)) -> Vec<u8> {
            assert!(std::mem::align_of::<T>() <= 8);
            let mut words = vec![0u64; std::mem::size_of::<T>().div_ceil(8)];
            // SAFETY: the buffer is 8-aligned, at least size_of::<T>() bytes and all zero;
            // every T here is plain integers, arrays and unions of them, for which all-zero
            // is a valid value. The reference is dropped before the bytes are read.
            fill(unsafe { &mut *words.as_mut_ptr().cast::<T>() });
            // SAFETY: the same buffer, initialized bytes, read as u8.
            let bytes =
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of::<T>()) };
            bytes.to_vec()
        }

        /// Copies `s` into a fixed C char array (NUL-terminated when it fits).
        pub fn set_str<const N: usize>(dst: &mut [u8; N], s: &str) {
            dst[..s.len()].copy_from_slice(s.as_bytes());
        }
    }

    #[test]
    fn offsets_match_the_transcribed_header() {
        // The sizes the *_SIZE flavors of proc_info.h name.
        assert_eq!(size_of::<ProcFdinfo>(), PROC_FDINFO_SIZE);
        assert_eq!(size_of::<ProcFileinfo>(), PFI_SIZE);
        assert_eq!(size_of::<VinfoStat>(), VINFO_STAT_SIZE);
        assert_eq!(size_of::<VnodeFdinfowithpath>(), flavor::VNODEPATH_SIZE);
        assert_eq!(size_of::<SocketFdinfo>(), flavor::SOCKET_SIZE);
        assert_eq!(size_of::<PipeFdinfo>(), flavor::PIPE_SIZE);
        assert_eq!(size_of::<PshmFdinfo>(), flavor::PSHM_SIZE);
        assert_eq!(size_of::<PsemFdinfo>(), flavor::PSEM_SIZE);
        assert_eq!(size_of::<ProcThreadinfo>(), PROC_THREADINFO_SIZE);
        assert!(flavor::MAX_SIZE >= size_of::<VnodeFdinfowithpath>());
        assert!(flavor::MAX_SIZE >= size_of::<PshmFdinfo>());
        // Every offset the decoder reads.
        let pfi = offset_of!(SocketFdinfo, psi);
        assert_eq!(PFI_SIZE + offset_of!(VinfoStat, vst_mode), VST_MODE);
        assert_eq!(
            offset_of!(VnodeFdinfowithpath, pvip) + offset_of!(VnodeInfoPath, vip_path),
            VIP_PATH
        );
        assert_eq!(
            offset_of!(PipeFdinfo, pipeinfo) + offset_of!(PipeInfo, pipe_handle),
            PIPE_HANDLE
        );
        assert_eq!(
            offset_of!(PshmFdinfo, pshminfo) + offset_of!(PshmInfo, pshm_name),
            PSHM_NAME
        );
        assert_eq!(
            offset_of!(PsemFdinfo, pseminfo) + offset_of!(PsemInfo, psem_name),
            PSEM_NAME
        );
        assert_eq!(pfi, SOI);
        assert_eq!(pfi + offset_of!(SocketInfo, soi_so), SOI_SO);
        assert_eq!(pfi + offset_of!(SocketInfo, soi_type), SOI_TYPE);
        assert_eq!(pfi + offset_of!(SocketInfo, soi_family), SOI_FAMILY);
        assert_eq!(pfi + offset_of!(SocketInfo, soi_kind), SOI_KIND);
        let proto = pfi + offset_of!(SocketInfo, soi_proto);
        assert_eq!(proto, SOI_PROTO);
        assert_eq!(proto + offset_of!(InSockinfo, insi_fport), INSI_FPORT);
        assert_eq!(proto + offset_of!(InSockinfo, insi_lport), INSI_LPORT);
        assert_eq!(proto + offset_of!(InSockinfo, insi_vflag), INSI_VFLAG);
        assert_eq!(proto + offset_of!(InSockinfo, insi_faddr), INSI_FADDR);
        assert_eq!(proto + offset_of!(InSockinfo, insi_laddr), INSI_LADDR);
        assert_eq!(offset_of!(TcpSockinfo, tcpsi_ini), 0);
        assert_eq!(proto + offset_of!(UnSockinfo, unsi_addr), UNSI_ADDR);
        assert_eq!(proto + offset_of!(UnSockinfo, unsi_caddr), UNSI_CADDR);
        assert_eq!(offset_of!(SockaddrUn, sun_path), 2);
        assert_eq!(proto + offset_of!(KernCtlInfo, kcsi_unit), KCSI_UNIT);
        assert_eq!(proto + offset_of!(KernCtlInfo, kcsi_name), KCSI_NAME);
        assert_eq!(proto + offset_of!(VsockSockinfo, remote_cid), SOI_PROTO + 8);
        assert_eq!(offset_of!(ProcThreadinfo, pth_name), PTH_NAME);
    }

    /// `insi_lport`/`insi_fport` as the kernel stores them: the network-order `in_port_t`
    /// widened to an int.
    fn port_int(port: u16) -> i32 {
        i32::from(u16::from_ne_bytes(port.to_be_bytes()))
    }

    fn socket_fixture(fill: impl FnOnce(&mut SocketFdinfo)) -> Vec<u8> {
        bytes_of::<SocketFdinfo>(|s| {
            s.psi.soi_so = 0xffff_ff80_1234_5678;
            fill(s);
        })
    }

    fn describe(fdtype: u32, info: &[u8]) -> (FdKind, Option<String>, String) {
        describe_fd(&FdAnswer {
            fdtype,
            info: Some(info),
        })
        .unwrap()
    }

    fn socket(family: &str, socktype: &str, local: Option<&str>, remote: Option<&str>) -> FdKind {
        FdKind::Socket {
            family: family.into(),
            socktype: socktype.into(),
            local: local.map(Into::into),
            remote: remote.map(Into::into),
        }
    }

    #[test]
    fn tcp_over_ipv4() {
        // A connected TCP socket: 127.0.0.1:54321 -> 127.0.0.1:8080 (SOCKINFO_TCP).
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::INET;
            s.psi.soi_type = 1;
            s.psi.soi_protocol = 6;
            s.psi.soi_kind = sockinfo::TCP;
            let addr = |a: [u8; 4]| InsiAddr {
                ina_46: In4in6Addr {
                    i46a_pad32: [0; 3],
                    i46a_addr4: a,
                },
            };
            // SAFETY: writing plain integers into the union member soi_kind selects.
            let ini = unsafe { &mut s.psi.soi_proto.pri_tcp.tcpsi_ini };
            ini.insi_lport = port_int(54321);
            ini.insi_fport = port_int(8080);
            ini.insi_vflag = INI_IPV4;
            ini.insi_laddr = addr([127, 0, 0, 1]);
            ini.insi_faddr = addr([127, 0, 0, 1]);
        });
        let (kind, path, target) = describe(fdtype::SOCKET, &info);
        assert_eq!(
            kind,
            socket(
                "AF_INET",
                "SOCK_STREAM",
                Some("127.0.0.1:54321"),
                Some("127.0.0.1:8080")
            )
        );
        assert_eq!(path, None);
        assert_eq!(target, "socket:[0xffffff8012345678]");
    }

    #[test]
    fn udp_over_ipv6_bound_and_unconnected() {
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::INET6;
            s.psi.soi_type = 2;
            s.psi.soi_kind = sockinfo::IN;
            // SAFETY: as above.
            let ini = unsafe { &mut s.psi.soi_proto.pri_in };
            ini.insi_vflag = INI_IPV6;
            ini.insi_lport = port_int(5353);
            let mut local = [0u8; 16];
            local[15] = 1;
            ini.insi_laddr = InsiAddr {
                ina_6: In6Addr { s6_addr: local },
            };
        });
        let (kind, _, _) = describe(fdtype::SOCKET, &info);
        assert_eq!(kind, socket("AF_INET6", "SOCK_DGRAM", Some("[::1]:5353"), None));
    }

    #[test]
    fn link_local_scope_is_taken_out_of_the_address() {
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::INET6;
            s.psi.soi_type = 1;
            s.psi.soi_kind = sockinfo::TCP;
            // SAFETY: as above.
            let ini = unsafe { &mut s.psi.soi_proto.pri_tcp.tcpsi_ini };
            ini.insi_vflag = INI_IPV6;
            ini.insi_lport = port_int(22);
            // fe80:4::1 inside the kernel: fe80::1 on interface 4.
            let mut a = [0u8; 16];
            a[0] = 0xfe;
            a[1] = 0x80;
            a[3] = 4;
            a[15] = 1;
            ini.insi_laddr = InsiAddr {
                ina_6: In6Addr { s6_addr: a },
            };
        });
        let (kind, _, _) = describe(fdtype::SOCKET, &info);
        assert_eq!(
            kind,
            socket("AF_INET6", "SOCK_STREAM", Some("[fe80::1%4]:22"), None)
        );
    }

    #[test]
    fn unix_sockets() {
        let un = |addr: &str, caddr: &str| {
            socket_fixture(|s| {
                s.psi.soi_family = af::UNIX;
                s.psi.soi_type = 1;
                s.psi.soi_kind = sockinfo::UN;
                let sun = |path: &str| {
                    let mut sun = SockaddrUn {
                        sun_len: 0,
                        sun_family: 1,
                        sun_path: [0; 104],
                    };
                    if !path.is_empty() {
                        set_str(&mut sun.sun_path, path);
                        // SUN_LEN: the header plus the path and its NUL.
                        sun.sun_len = (2 + path.len() + 1) as u8;
                    }
                    UnAddr { ua_sun: sun }
                };
                // SAFETY: as above.
                let u = unsafe { &mut s.psi.soi_proto.pri_un };
                u.unsi_addr = sun(addr);
                u.unsi_caddr = sun(caddr);
            })
        };
        let (kind, _, _) = describe(fdtype::SOCKET, &un("/tmp/psleak.sock", ""));
        assert_eq!(
            kind,
            socket("AF_UNIX", "SOCK_STREAM", Some("/tmp/psleak.sock"), None)
        );
        let (kind, _, _) = describe(fdtype::SOCKET, &un("", "/var/run/mDNSResponder"));
        assert_eq!(
            kind,
            socket("AF_UNIX", "SOCK_STREAM", None, Some("/var/run/mDNSResponder"))
        );
        // socketpair(2): both unnamed.
        let (kind, _, _) = describe(fdtype::SOCKET, &un("", ""));
        assert_eq!(kind, socket("AF_UNIX", "SOCK_STREAM", None, None));
        // A path filling sun_path with no NUL ends at sun_path's end.
        let long = "x".repeat(104);
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::UNIX;
            s.psi.soi_kind = sockinfo::UN;
            // SAFETY: as above.
            let u = unsafe { &mut s.psi.soi_proto.pri_un };
            let mut sun = SockaddrUn {
                sun_len: 106,
                sun_family: 1,
                sun_path: [0; 104],
            };
            set_str(&mut sun.sun_path, &long);
            u.unsi_addr = UnAddr { ua_sun: sun };
        });
        match describe(fdtype::SOCKET, &info).0 {
            FdKind::Socket { local, .. } => assert_eq!(local.as_deref(), Some(long.as_str())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn system_and_vsock_sockets() {
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::SYSTEM;
            s.psi.soi_type = 2;
            s.psi.soi_kind = sockinfo::KERN_CTL;
            let mut ctl = KernCtlInfo {
                kcsi_id: 7,
                kcsi_reg_unit: 0,
                kcsi_flags: 0,
                kcsi_recvbufsize: 0,
                kcsi_sendbufsize: 0,
                kcsi_unit: 3,
                kcsi_name: [0; 96],
            };
            set_str(&mut ctl.kcsi_name, "com.apple.net.utun_control");
            s.psi.soi_proto = SoiProto { pri_kern_ctl: ctl };
        });
        let (kind, _, _) = describe(fdtype::SOCKET, &info);
        assert_eq!(
            kind,
            socket(
                "AF_SYSTEM",
                "SOCK_DGRAM",
                Some("com.apple.net.utun_control unit 3"),
                None
            )
        );
        let info = socket_fixture(|s| {
            s.psi.soi_family = af::VSOCK;
            s.psi.soi_type = 1;
            s.psi.soi_kind = sockinfo::VSOCK;
            s.psi.soi_proto = SoiProto {
                pri_vsock: VsockSockinfo {
                    local_cid: 3,
                    local_port: 1024,
                    remote_cid: 2,
                    remote_port: 80,
                },
            };
        });
        let (kind, _, _) = describe(fdtype::SOCKET, &info);
        assert_eq!(
            kind,
            socket("AF_VSOCK", "SOCK_STREAM", Some("3:1024"), Some("2:80"))
        );
        // A generic socket (SOCKINFO_GENERIC) of an unknown family: names, no addresses.
        let info = socket_fixture(|s| {
            s.psi.soi_family = 99;
            s.psi.soi_type = 9;
        });
        let (kind, _, _) = describe(fdtype::SOCKET, &info);
        assert_eq!(kind, socket("AF_99", "SOCK_9", None, None));
    }

    #[test]
    fn vnodes_by_mode() {
        let vnode = |mode: u16, path: &str| {
            bytes_of::<VnodeFdinfowithpath>(|v| {
                v.pvip.vip_vi.vi_stat.vst_mode = mode;
                set_str(&mut v.pvip.vip_path, path);
            })
        };
        let cases = [
            (0o100_644, "/tmp/data.bin", FdKind::File),
            (0o040_755, "/Users/me", FdKind::Directory),
            (0o020_666, "/dev/null", FdKind::CharDevice),
            (0o060_640, "/dev/disk0", FdKind::BlockDevice),
            (0o010_600, "/tmp/fifo", FdKind::Pipe),
            (0o140_755, "/tmp/sock", FdKind::Other),
        ];
        for (mode, path, want) in cases {
            let (kind, got_path, target) = describe(fdtype::VNODE, &vnode(mode, path));
            assert_eq!(kind, want, "{path}");
            assert_eq!(got_path.as_deref(), Some(path));
            assert_eq!(target, path);
        }
        // A vnode whose path the kernel could not build (revoked, or a deleted file).
        let (kind, path, target) = describe(fdtype::VNODE, &vnode(0o100_600, ""));
        assert_eq!((kind, path, target.as_str()), (FdKind::File, None, "vnode"));
    }

    #[test]
    fn pipes_shm_sem_and_the_rest() {
        let pipe = bytes_of::<PipeFdinfo>(|p| {
            p.pipeinfo.pipe_handle = 0xabc0;
            p.pipeinfo.pipe_peerhandle = 0xdef0;
        });
        assert_eq!(
            describe(fdtype::PIPE, &pipe),
            (FdKind::Pipe, None, "pipe:[0xabc0]".to_owned())
        );
        let shm = bytes_of::<PshmFdinfo>(|p| set_str(&mut p.pshminfo.pshm_name, "/psleak.shm"));
        assert_eq!(
            describe(fdtype::PSHM, &shm),
            (
                FdKind::Other,
                Some("/psleak.shm".to_owned()),
                "pshm:/psleak.shm".to_owned()
            )
        );
        let sem = bytes_of::<PsemFdinfo>(|p| set_str(&mut p.pseminfo.psem_name, "psleak.sem"));
        assert_eq!(describe(fdtype::PSEM, &sem).2, "psem:psleak.sem");
        // Types without a flavor, and a failed proc_pidfdinfo call.
        for (t, name) in [
            (fdtype::KQUEUE, "kqueue"),
            (fdtype::FSEVENTS, "fsevents"),
            (fdtype::NEXUS, "nexus"),
            (42, "fdtype:42"),
        ] {
            let d = describe_fd(&FdAnswer {
                fdtype: t,
                info: None,
            })
            .unwrap();
            assert_eq!(d, (FdKind::Other, None, name.to_owned()));
            assert_eq!(flavor_for(t), None);
        }
        let d = describe_fd(&FdAnswer {
            fdtype: fdtype::PIPE,
            info: None,
        })
        .unwrap();
        assert_eq!(d, (FdKind::Pipe, None, "pipe".to_owned()));
    }

    #[test]
    fn short_answers_are_errors_and_nothing_panics() {
        for (t, full) in [
            (fdtype::VNODE, bytes_of::<VnodeFdinfowithpath>(|_| {})),
            (fdtype::SOCKET, socket_fixture(|s| s.psi.soi_kind = sockinfo::UN)),
            (fdtype::PIPE, bytes_of::<PipeFdinfo>(|_| {})),
        ] {
            let err = describe_fd(&FdAnswer {
                fdtype: t,
                info: Some(&full[..full.len() - 1]),
            })
            .unwrap_err();
            assert!(matches!(err, Error::Parse { .. }), "{err}");
            // Any bytes at all: decoding may say little, it must not panic.
            let mut noise = full.clone();
            for (i, b) in noise.iter_mut().enumerate() {
                *b = (i * 37 % 251) as u8 | 0x80;
            }
            for kind in [sockinfo::IN, sockinfo::TCP, sockinfo::UN, sockinfo::KERN_CTL, 99] {
                if t == fdtype::SOCKET {
                    noise[SOI_KIND..SOI_KIND + 4].copy_from_slice(&kind.to_ne_bytes());
                }
                let _ = describe_fd(&FdAnswer {
                    fdtype: t,
                    info: Some(&noise),
                });
            }
        }
    }

    #[test]
    fn fd_list_records() {
        let mut buf = Vec::new();
        for (fd, t) in [(0, fdtype::VNODE), (3, fdtype::KQUEUE), (7, fdtype::SOCKET)] {
            buf.extend(bytes_of::<ProcFdinfo>(|r| {
                r.proc_fd = fd;
                r.proc_fdtype = t;
            }));
        }
        let all: Vec<_> = fd_records(&buf).collect();
        assert_eq!(all, [(0, 1), (3, 5), (7, 2)]);
        // A partial trailing record is ignored.
        assert_eq!(fd_records(&buf[..buf.len() - 3]).count(), 2);
        assert_eq!(fd_records(&[]).count(), 0);
    }

    #[test]
    fn thread_names() {
        let info = bytes_of::<ProcThreadinfo>(|t| {
            t.pth_user_time = 5;
            t.pth_maxpriority = 63;
            set_str(&mut t.pth_name, "psleak-worker");
        });
        assert_eq!(thread_name(&info), "psleak-worker");
        assert_eq!(thread_name(&bytes_of::<ProcThreadinfo>(|_| {})), "");
        // A 64-byte name with no NUL is taken whole; a short buffer gives no name.
        let full = bytes_of::<ProcThreadinfo>(|t| t.pth_name = [b'n'; 64]);
        assert_eq!(thread_name(&full), "n".repeat(64));
        assert_eq!(thread_name(&full[..100]), "");
    }

    #[test]
    fn zone_totals_map_to_malloc_stats() {
        let z = ZoneTotals {
            size_in_use: 3_000_000,
            size_allocated: 8_388_608,
        };
        assert_eq!(
            malloc_stats_from_zones(z),
            MallocStats {
                heap_used: 3_000_000,
                mmap_used: 0,
                heap_total: 8_388_608,
                heap_free: 5_388_608,
            }
        );
        // Counters read mid-update: free space clamps at zero.
        let racy = ZoneTotals {
            size_in_use: 10,
            size_allocated: 4,
        };
        assert_eq!(malloc_stats_from_zones(racy).heap_free, 0);
    }

    #[test]
    fn footprint_by_revision() {
        let vm = VmInfo {
            virtual_size: 400 << 30,
            resident_size: 50 << 20,
            internal: 30 << 20,
            compressed: 5 << 20,
            phys_footprint: 40 << 20,
            count: TASK_VM_INFO_REV1_COUNT,
        };
        assert_eq!(
            memory_counters(&vm),
            MemoryCounters {
                rss: 50 << 20,
                vms: 400 << 30,
                anon: 40 << 20,
                swap: 5 << 20,
            }
        );
        // A revision-0 kernel did not write phys_footprint.
        let old = VmInfo {
            count: TASK_VM_INFO_REV1_COUNT - 2,
            phys_footprint: 0,
            ..vm
        };
        assert_eq!(old.footprint(), 35 << 20);
    }

    #[test]
    fn region_totals() {
        let mut t = RegionTotals::default();
        t.add(share_mode::PRIVATE, 1, 10, 0);
        t.add(share_mode::LARGE_PAGE, 1, 4, 0);
        // A single-reference COW region counts whole, shadow pages included.
        t.add(share_mode::COW, 1, 3, 2);
        assert_eq!(t.uss_pages, 19);
        // Shared COW: own copies are private, the shared pages split three ways.
        t.add(share_mode::COW, 3, 1, 6);
        t.add(share_mode::SHARED, 4, 0, 8);
        t.add(share_mode::TRUESHARED, 2, 0, 2);
        t.add(share_mode::EMPTY, 0, 0, 0);
        // A shared region with a zero ref count (never seen) does not divide by zero.
        t.add(share_mode::SHARED_ALIASED, 0, 0, 1);
        assert_eq!(t.uss_pages, 20);
        assert!(
            (t.pss_pages - (20.0 + 2.0 + 2.0 + 1.0 + 1.0)).abs() < 1e-9,
            "{t:?}"
        );
        // An unknown mode counts its private pages only.
        t.add(99, 1, 5, 5);
        assert_eq!(t.uss_pages, 25);
    }

    #[test]
    fn names() {
        assert_eq!(family_name(30), "AF_INET6");
        assert_eq!(family_name(1), "AF_UNIX");
        assert_eq!(family_name(-1), "AF_-1");
        assert_eq!(socktype_name(5), "SOCK_SEQPACKET");
        assert_eq!(fdtype_name(fdtype::CHANNEL), "channel");
        assert_eq!(kern_return_text(5), "KERN_FAILURE (5)");
        assert_eq!(kern_return_text(-308), "kern_return_t -308");
    }
}
