//! What the probes return. Plain data, the same on every platform; the OS-specific code that
//! fills them lives in [`crate::sys`].

use serde::Serialize;

use crate::report::{Resource, ResourceKind};

/// The allocator's own view of the heap (glibc: `mallinfo2`). All values in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MallocStats {
    /// Bytes in use in malloc's arenas (all arenas, all threads), excluding `mmap_used`.
    /// Chunks cached in glibc's per-thread tcache count as in use.
    pub heap_used: u64,
    /// Bytes in chunks that malloc serves with their own `mmap` (large allocations).
    pub mmap_used: u64,
    /// Bytes malloc holds from the OS for its arenas (`brk` heap plus thread arenas).
    pub heap_total: u64,
    /// Free bytes inside the arenas (`heap_total - heap_used`), reusable without a syscall.
    pub heap_free: u64,
}

/// The process's memory as the kernel accounts it. All values in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProcessMemory {
    /// Resident set size.
    pub rss: u64,
    /// Virtual memory size.
    pub vms: u64,
    /// Unique set size: resident pages private to this process.
    pub uss: u64,
    /// Proportional set size.
    pub pss: u64,
    /// Swapped-out bytes.
    pub swap: u64,
}

/// The kernel's memory counters of the process, cheap to read (Linux: `/proc/self/status`).
/// All values in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryCounters {
    /// Resident set size.
    pub rss: u64,
    /// Virtual memory size.
    pub vms: u64,
    /// Resident anonymous memory (`RssAnon`): the private part of the process where heap,
    /// `mmap(MAP_ANONYMOUS)` and stacks live, and so where leaked memory lives. Its growth
    /// equals USS growth for anonymous memory.
    pub anon: u64,
    /// Swapped-out bytes.
    pub swap: u64,
}

/// What kind of object a file descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FdKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A pipe or FIFO.
    Pipe,
    /// A socket.
    Socket {
        /// `AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_NETLINK`, ... or `AF_<number>`.
        family: String,
        /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`, `SOCK_RAW`, ...
        socktype: String,
        /// Local address (`127.0.0.1:8080`, a unix path, `@abstract`), if bound.
        local: Option<String>,
        /// Remote address, if connected.
        remote: Option<String>,
    },
    /// An eventfd.
    #[serde(rename = "eventfd")]
    EventFd,
    /// An epoll instance.
    Epoll,
    /// A timerfd.
    #[serde(rename = "timerfd")]
    TimerFd,
    /// A signalfd.
    #[serde(rename = "signalfd")]
    SignalFd,
    /// An inotify instance.
    Inotify,
    /// A fanotify instance.
    Fanotify,
    /// A memfd (`memfd_create`).
    #[serde(rename = "memfd")]
    MemFd,
    /// A pidfd (`pidfd_open`, `CLONE_PIDFD`).
    #[serde(rename = "pidfd")]
    PidFd,
    /// Another anonymous inode; `name` is what the kernel calls it (`io_uring`, `bpf-map`...).
    AnonInode {
        /// The kernel's name, from the `anon_inode:[name]` link.
        name: String,
    },
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Something else.
    Other,
}

/// One open file descriptor, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FdInfo {
    /// The descriptor number.
    pub fd: i32,
    /// What it refers to.
    #[serde(flatten)]
    pub kind: FdKind,
    /// The path, where one exists (files, directories, devices, FIFOs, memfds); a deleted
    /// file keeps the kernel's `" (deleted)"` suffix.
    pub path: Option<String>,
    /// The raw link text of `/proc/self/fd/N` (e.g. `pipe:[1234]`): the object's identity.
    pub target: String,
}

/// One native thread of the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// The kernel thread id (TID).
    pub id: i64,
    /// The thread's name (`pthread_setname_np`, at most 15 bytes on Linux).
    pub name: String,
}

/// One open handle of the process (Windows), described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandleInfo {
    /// The handle's value in this process.
    pub handle: u64,
    /// The object type as the kernel names it: `Event`, `File`, `Key`, `Thread`, `Process`,
    /// `Section`, `Mutant`, `Semaphore`, ... (`NtQueryObject(ObjectTypeInformation)`).
    pub kind: String,
    /// The object's name where it has one: a file's path, a registry key, a named event.
    pub name: Option<String>,
    /// The access rights the handle was opened with.
    pub access: u32,
}

/// One heap of the process (Windows: an entry of `GetProcessHeaps`). All sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeapInfo {
    /// The heap's handle (its base address).
    pub address: u64,
    /// Bytes in allocated blocks.
    pub used: u64,
    /// Allocated blocks.
    pub blocks: u64,
    /// Bytes the heap has committed (its regions plus blocks it allocated on their own).
    pub committed: u64,
}

impl From<&HandleInfo> for Resource {
    fn from(h: &HandleInfo) -> Resource {
        let mut description = format!("handle {:#x}: {}", h.handle, h.kind);
        if let Some(name) = &h.name {
            description.push(' ');
            description.push_str(name);
        }
        Resource {
            kind: ResourceKind::Handle,
            // The value alone is reused once closed; with the type, a new object of another
            // kind under an old value is told apart.
            id: format!("{:#x}:{}", h.handle, h.kind),
            description,
            path: h.name.clone(),
            number: Some(h.handle as i64),
        }
    }
}

impl From<&HeapInfo> for Resource {
    fn from(h: &HeapInfo) -> Resource {
        Resource {
            kind: ResourceKind::HeapCreate,
            id: format!("{:#x}", h.address),
            description: format!(
                "heap {:#x}: {} block(s), {} in use, {} committed",
                h.address,
                h.blocks,
                crate::report::format_bytes(h.used as f64),
                crate::report::format_bytes(h.committed as f64)
            ),
            path: None,
            number: Some(h.address as i64),
        }
    }
}
