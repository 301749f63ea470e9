//! The Linux probes against the live test process: every kind of descriptor this test opens
//! is found and described, counts move by what the test did, threads and memory show up.
//!
//! Descriptors and threads are process-wide and cargo runs tests on parallel threads, where
//! even a first `malloc` in a new thread opens a file for a moment (glibc reads
//! `/sys/devices/system/cpu/online` to size its arenas). So the tests run twice: here, in
//! parallel, checking what each test opened by its number and holding `LOCK` so that no
//! other test reuses a number meanwhile; and in a child process that runs them one at a time
//! ([`quiet`]), where counts are exact and are checked too.
#![cfg(target_os = "linux")]
// Tests may panic on unexpected values: that is how they fail.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use psleak::{fd_count, fd_list, memory_quick, process_memory, thread_count, thread_list};
use psleak::{FdInfo, FdKind};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the others still run.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes ownership of what a libc call returned, failing the test on -1.
fn owned(fd: RawFd, what: &str) -> OwnedFd {
    assert!(fd >= 0, "{what}: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by a successful call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn described(fd: RawFd) -> Option<FdInfo> {
    fd_list().unwrap().into_iter().find(|i| i.fd == fd)
}

/// The description of an open descriptor; fails if `fd_list` lacks it.
fn describe(fd: &impl AsRawFd) -> FdInfo {
    let fd = fd.as_raw_fd();
    described(fd).unwrap_or_else(|| panic!("fd {fd} not in fd_list"))
}

/// Runs `open`, checks that its descriptors are listed while its result lives and are gone
/// once dropped, and, when [`quiet`], that `fd_count` and `fd_list` moved by exactly `n`.
fn check_opened<T: AsRawFd>(n: usize, open: impl FnOnce() -> Vec<T>, check: impl FnOnce(&[T])) {
    let before = fd_count().unwrap();
    let opened = open();
    assert_eq!(opened.len(), n);
    if quiet() {
        assert_eq!(fd_count().unwrap(), before + n);
        assert_eq!(fd_list().unwrap().len(), before + n);
    }
    check(&opened);
    let targets: Vec<(RawFd, String)> = opened
        .iter()
        .map(|o| (o.as_raw_fd(), describe(o).target))
        .collect();
    drop(opened);
    if quiet() {
        assert_eq!(fd_count().unwrap(), before);
    }
    for (fd, target) in targets {
        // Under LOCK no test reuses the number; glibc's brief file may, but not this target.
        let now = described(fd).map(|i| i.target);
        assert_ne!(now.as_ref(), Some(&target), "fd {fd} still listed");
    }
}

/// A fresh path in the temp directory, with spaces in its name.
fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("psleak probe {} {name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn socket_of(info: &FdInfo) -> (&str, &str, Option<&str>, Option<&str>) {
    match &info.kind {
        FdKind::Socket {
            family,
            socktype,
            local,
            remote,
        } => (family, socktype, local.as_deref(), remote.as_deref()),
        other => panic!("fd {} is {other:?}, not a socket", info.fd),
    }
}

/// Counts the allocations of each thread, to check that the cheap probes make none.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the counter is a const-initialized
// thread-local without destructor, so touching it never allocates or re-enters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// How many allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    std::hint::black_box(f());
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn cheap_probes_do_not_allocate() {
    let _g = lock();
    // Warm up: the page size cache, and whatever std sets up on first use.
    let _ = (memory_quick(), process_memory(), fd_count(), thread_count());
    assert_eq!(allocations(|| memory_quick().unwrap()), 0, "memory_quick");
    assert_eq!(allocations(|| process_memory().unwrap()), 0, "process_memory");
    assert_eq!(allocations(|| fd_count().unwrap()), 0, "fd_count");
    assert_eq!(allocations(|| thread_count().unwrap()), 0, "thread_count");
    // The counter works: the listing probes do allocate.
    assert!(allocations(|| fd_list().unwrap()) > 0);
    // Nor does anything below Rust's allocator (libc) keep heap: malloc's own count stays
    // the same over 100 rounds. Only exact when no other thread allocates meanwhile, and
    // even in the quiet child libtest's main thread may free something as the test starts:
    // one clean try out of five suffices, a probe that kept memory would fail all five.
    if quiet() {
        if let Ok(first) = psleak::malloc_stats() {
            let clean = (0..5).any(|_| {
                let start = psleak::malloc_stats().unwrap();
                for _ in 0..100 {
                    let _ = (memory_quick(), process_memory(), fd_count(), thread_count());
                }
                let end = psleak::malloc_stats().unwrap();
                (end.heap_used, end.mmap_used) == (start.heap_used, start.mmap_used)
            });
            assert!(
                clean,
                "malloc's heap moved: {first:?} -> {:?}",
                psleak::malloc_stats()
            );
        }
    }
}

#[test]
fn listing_matches_count() {
    let _g = lock();
    let list = fd_list().unwrap();
    if quiet() {
        assert_eq!(list.len(), fd_count().unwrap());
    }
    assert!(list.windows(2).all(|w| w[0].fd < w[1].fd));
}

#[test]
fn count_moves_by_what_was_opened() {
    let _g = lock();
    let open = || {
        (0..10)
            // SAFETY: eventfd has no memory preconditions.
            .map(|_| owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }, "eventfd"))
            .collect::<Vec<_>>()
    };
    check_opened(10, open, |fds| {
        for fd in fds {
            assert_eq!(describe(fd).kind, FdKind::EventFd);
        }
    });
}

#[test]
fn pipes_and_fifos() {
    let _g = lock();
    let mut ends = [0; 2];
    let open = || {
        // SAFETY: `ends` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        vec![owned(ends[0], "pipe"), owned(ends[1], "pipe")]
    };
    check_opened(2, open, |fds| {
        let (r, w) = (describe(&fds[0]), describe(&fds[1]));
        assert_eq!((&r.kind, &w.kind), (&FdKind::Pipe, &FdKind::Pipe));
        assert_eq!((r.path.as_deref(), w.path.as_deref()), (None, None));
        assert!(r.target.starts_with("pipe:["), "{}", r.target);
        assert_eq!(r.target, w.target, "both ends are the same pipe");
    });

    let fifo = temp_path("fifo");
    let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c_path` is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // O_RDWR on a FIFO does not block waiting for a writer (fifo(7), Linux).
    let open = || {
        // SAFETY: `c_path` is NUL-terminated.
        let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        vec![owned(fd, "fifo")]
    };
    check_opened(1, open, |fds| {
        let info = describe(&fds[0]);
        assert_eq!(info.kind, FdKind::Pipe);
        assert_eq!(info.path.as_deref(), fifo.to_str());
    });
    std::fs::remove_file(&fifo).unwrap();
}

#[test]
fn files_directories_devices() {
    let _g = lock();
    let path = temp_path("file.txt");
    let open = || {
        let f = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        vec![f, dir, null]
    };
    check_opened(3, open, |files| {
        let file = describe(&files[0]);
        assert_eq!(file.kind, FdKind::File);
        let deleted = format!("{} (deleted)", path.display());
        assert_eq!(file.path.as_deref(), Some(deleted.as_str()));
        let dir = describe(&files[1]);
        assert_eq!(dir.kind, FdKind::Directory);
        assert_eq!(dir.path.as_deref().map(Path::new), Some(&*std::env::temp_dir()));
        let null = describe(&files[2]);
        assert_eq!(null.kind, FdKind::CharDevice);
        assert_eq!(null.path.as_deref(), Some("/dev/null"));
    });
}

#[test]
fn anonymous_inodes() {
    let _g = lock();
    // SAFETY (all calls below): plain descriptor-creating syscalls; the only pointer is
    // `mask`, a valid sigset_t.
    let open = || unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigaddset(&mut mask, libc::SIGUSR2);
        vec![
            owned(libc::eventfd(0, libc::EFD_CLOEXEC), "eventfd"),
            owned(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll"),
            owned(
                libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC),
                "timerfd",
            ),
            owned(libc::signalfd(-1, &mask, libc::SFD_CLOEXEC), "signalfd"),
            owned(libc::inotify_init1(libc::IN_CLOEXEC), "inotify"),
            owned(
                libc::memfd_create(c"psleak memfd".as_ptr(), libc::MFD_CLOEXEC),
                "memfd",
            ),
        ]
    };
    check_opened(6, open, |fds| {
        let kinds: Vec<(FdKind, Option<String>)> = fds
            .iter()
            .map(|fd| {
                let i = describe(fd);
                (i.kind, i.path)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (FdKind::EventFd, None),
                (FdKind::Epoll, None),
                (FdKind::TimerFd, None),
                (FdKind::SignalFd, None),
                (FdKind::Inotify, None),
                (FdKind::MemFd, Some("/memfd:psleak memfd (deleted)".to_owned())),
            ]
        );
    });
}

#[test]
fn pidfd_and_fanotify_where_permitted() {
    let _g = lock();
    // pidfd_open(2) needs Linux 5.3; fanotify_init(2) needs CAP_SYS_ADMIN. Skip what fails.
    // SAFETY: plain syscalls without pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd >= 0 {
        let fd = owned(pidfd as RawFd, "pidfd_open");
        assert_eq!(describe(&fd).kind, FdKind::PidFd);
    }
    // SAFETY: plain syscall without pointers.
    let fan = unsafe { libc::fanotify_init(libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC, 0) };
    if fan >= 0 {
        let fd = owned(fan, "fanotify_init");
        assert_eq!(describe(&fd).kind, FdKind::Fanotify);
    }
}

#[test]
fn inet_sockets() {
    use std::net::{TcpListener, TcpStream, UdpSocket};
    let _g = lock();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = TcpStream::connect(&addr).unwrap();
    let client_addr = client.local_addr().unwrap().to_string();
    let (accepted, _) = listener.accept().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap().to_string();

    let l = describe(&listener);
    assert_eq!(socket_of(&l), ("AF_INET", "SOCK_STREAM", Some(&*addr), None));
    assert!(l.target.starts_with("socket:["), "{}", l.target);
    assert_eq!(l.path, None);
    assert_eq!(
        socket_of(&describe(&client)),
        ("AF_INET", "SOCK_STREAM", Some(&*client_addr), Some(&*addr))
    );
    assert_eq!(
        socket_of(&describe(&accepted)),
        ("AF_INET", "SOCK_STREAM", Some(&*addr), Some(&*client_addr))
    );
    assert_eq!(
        socket_of(&describe(&udp)),
        ("AF_INET", "SOCK_DGRAM", Some(&*udp_addr), None)
    );
    udp.connect("127.0.0.1:9").unwrap();
    assert_eq!(
        socket_of(&describe(&udp)),
        ("AF_INET", "SOCK_DGRAM", Some(&*udp_addr), Some("127.0.0.1:9"))
    );

    // IPv6 may be disabled: skip then.
    if let Ok(v6) = TcpListener::bind("[::1]:0") {
        let port = v6.local_addr().unwrap().port();
        let want = format!("[::1]:{port}");
        assert_eq!(
            socket_of(&describe(&v6)),
            ("AF_INET6", "SOCK_STREAM", Some(&*want), None)
        );
    }

    // SAFETY: plain syscall without pointers.
    let unbound = owned(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) },
        "socket",
    );
    assert_eq!(
        socket_of(&describe(&unbound)),
        ("AF_INET", "SOCK_STREAM", None, None)
    );
}

#[test]
fn unix_and_netlink_sockets() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
    let _g = lock();

    check_opened(
        2,
        || {
            let (a, b) = UnixStream::pair().unwrap();
            vec![a, b]
        },
        |pair| {
            for s in pair {
                assert_eq!(
                    socket_of(&describe(s)),
                    ("AF_UNIX", "SOCK_STREAM", None, None),
                    "a socketpair is unnamed"
                );
            }
        },
    );

    let path = temp_path("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let client = UnixStream::connect(&path).unwrap();
    let path_str = path.to_str().unwrap();
    assert_eq!(
        socket_of(&describe(&listener)),
        ("AF_UNIX", "SOCK_STREAM", Some(path_str), None)
    );
    assert_eq!(
        socket_of(&describe(&client)),
        ("AF_UNIX", "SOCK_STREAM", None, Some(path_str))
    );
    std::fs::remove_file(&path).unwrap();

    let name = format!("psleak-probe-{}", std::process::id());
    let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let dgram = UnixDatagram::bind_addr(&abstract_addr).unwrap();
    let want = format!("@{name}");
    assert_eq!(
        socket_of(&describe(&dgram)),
        ("AF_UNIX", "SOCK_DGRAM", Some(&*want), None)
    );

    // SAFETY: plain syscall without pointers.
    let netlink = owned(
        unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        },
        "netlink socket",
    );
    let info = describe(&netlink);
    let (family, socktype, _, remote) = socket_of(&info);
    assert_eq!((family, socktype, remote), ("AF_NETLINK", "SOCK_RAW", None));
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// Retries `cond` for up to two seconds: an exited thread leaves `/proc` only once the
/// kernel has reaped it, shortly after `join` returns.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

#[test]
fn named_thread_is_listed() {
    let _g = lock();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("psleak-probe-t".into())
        .spawn(move || {
            tid_tx.send(gettid()).unwrap();
            let _ = stop_rx.recv();
        })
        .unwrap();
    let tid = tid_rx.recv().unwrap();
    let list = thread_list().unwrap();
    let found = list.iter().find(|t| t.id == tid);
    assert_eq!(found.map(|t| t.name.as_str()), Some("psleak-probe-t"), "{list:?}");
    assert!(list.iter().any(|t| t.id == gettid()), "this thread is listed");
    assert!(thread_count().unwrap() >= 2);
    drop(stop_tx);
    handle.join().unwrap();
    assert!(eventually(|| thread_list().unwrap().iter().all(|t| t.id != tid)));
}

/// Set in the child process that `again_one_at_a_time` starts.
const CHILD_ENV: &str = "PSLEAK_LINUX_PROBES_QUIET";

/// True in the child process that runs the tests one at a time: nothing else in the process
/// opens descriptors or starts threads, so counts are exact.
fn quiet() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

#[test]
fn again_one_at_a_time() {
    if quiet() {
        return;
    }
    // Spawning the child opens pipes in this process.
    let _g = lock();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--test-threads=1")
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the tests failed when run one at a time:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exact_thread_counts() {
    // Other tests' threads come and go while the tests run in parallel.
    if !quiet() {
        return;
    }
    // A thread an earlier test joined may stay listed until the kernel reaps it: start
    // from a count that holds still.
    let mut before = thread_count().unwrap();
    assert!(eventually(|| {
        std::thread::sleep(Duration::from_millis(10));
        let now = thread_count().unwrap();
        std::mem::replace(&mut before, now) == now
    }));
    assert_eq!(thread_list().unwrap().len(), before);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let b = barrier.clone();
            std::thread::Builder::new()
                .name(format!("psleak-exact-{i}"))
                .spawn(move || {
                    b.wait();
                    b.wait();
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    assert_eq!(thread_count().unwrap(), before + 3);
    let list = thread_list().unwrap();
    assert_eq!(list.len(), before + 3);
    for i in 0..3 {
        let name = format!("psleak-exact-{i}");
        assert_eq!(list.iter().filter(|t| t.name == name).count(), 1, "{list:?}");
    }
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert!(eventually(|| thread_count().unwrap() == before));
    assert!(eventually(|| thread_list().unwrap().len() == before));
}

#[test]
fn rss_grows_when_pages_are_touched() {
    const SIZE: usize = 8 << 20;
    // Other tests' threads exit and unmap their stacks while the tests run in parallel.
    if !quiet() {
        return;
    }
    let _g = lock();
    let before = process_memory().unwrap();
    let (quick_rss, quick_vms) = memory_quick().unwrap();
    assert!(before.rss > 0 && before.vms >= before.rss && before.uss > 0 && before.pss > 0);
    assert!(quick_rss > 0 && quick_vms >= quick_rss);

    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED);
    let mapped = process_memory().unwrap();
    assert!(mapped.vms >= before.vms + SIZE as u64, "{before:?} -> {mapped:?}");

    // Touch every page: only then does the kernel back it with memory.
    for offset in (0..SIZE).step_by(4096) {
        // SAFETY: `offset` is inside the SIZE-byte writable mapping.
        unsafe { ptr.cast::<u8>().add(offset).write_volatile(1) };
    }
    let touched = process_memory().unwrap();
    let (quick_rss, _) = memory_quick().unwrap();
    // The allocator or the harness may free a little meanwhile: ask for 3/4 of the mapping.
    let min_growth = SIZE as u64 * 3 / 4;
    assert!(
        touched.rss >= mapped.rss + min_growth,
        "{mapped:?} -> {touched:?}"
    );
    assert!(
        touched.uss >= mapped.uss + min_growth,
        "{mapped:?} -> {touched:?}"
    );
    assert!(
        touched.pss >= mapped.pss + min_growth,
        "{mapped:?} -> {touched:?}"
    );
    assert!(quick_rss >= mapped.rss + min_growth);

    // SAFETY: unmaps exactly the mapping created above, which nothing references any more.
    assert_eq!(unsafe { libc::munmap(ptr, SIZE) }, 0);
    let unmapped = process_memory().unwrap();
    assert!(
        unmapped.rss + min_growth <= touched.rss,
        "{touched:?} -> {unmapped:?}"
    );
}

#[test]
fn the_engine_allocates_nothing_between_two_samples_of_a_clean_function() {
    // `decide` runs between a run's sample and the next run: a block it allocates and frees
    // stays in glibc's tcache, counted as in use, and shows as the function's heap growth.
    use psleak::verdict::{decide, Decision, Policy, Run};
    use psleak::{Metric, Values};
    let policy = Policy::new(200, 30, Values::default(), 64 << 20);
    let mut runs: Vec<Run> = Vec::with_capacity(40);
    for i in 0..30u64 {
        let mut growth = Values::default();
        // Some noise below any threshold, and survivors that explain heap growth.
        growth.set(Metric::Heap, (i % 3) as i64 * 48);
        growth.set(Metric::NativeBlocks, (i % 2) as i64);
        growth.set(Metric::NativeBytes, (i % 2) as i64 * 32);
        runs.push(Run::new(200 << (i % 4), growth));
        let n = allocations(|| decide(&policy, &runs));
        assert_eq!(n, 0, "decide allocated after {} runs", runs.len());
    }
    assert!(matches!(
        decide(&policy, &runs),
        Decision::Clean | Decision::Continue { .. }
    ));
}
