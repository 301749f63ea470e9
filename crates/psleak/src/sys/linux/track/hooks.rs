//! The intercepted functions: one table ([`SYMBOLS`]), one hook each.
//!
//! A hook calls the real function through the address `dlsym(RTLD_DEFAULT)` gave before
//! installation (so an `LD_PRELOAD`ed allocator stays the one that allocates), then
//! records the result in the live table. The reentrancy guard is a thread-local flag: while
//! it is set (the tracker's own work, the driver's bookkeeping, symbolisation) the hooks
//! only forward. Frees are forgotten *before* the real call, so that the address cannot be
//! handed to another thread and recorded anew before we forget the old block.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};

use super::{stacks, table};
use crate::tracking::RuntimeAllocator;

/// What is intercepted. The order is the index into [`REAL`] and [`hook_addresses`].
pub(crate) const SYMBOLS: [&CStr; 15] = [
    c"malloc",
    c"calloc",
    c"realloc",
    c"reallocarray",
    c"free",
    c"posix_memalign",
    c"aligned_alloc",
    c"memalign",
    c"valloc",
    c"pvalloc",
    c"mmap",
    c"mmap64",
    c"munmap",
    c"mremap",
    c"dlopen",
];
pub(crate) const DLOPEN: usize = 14;
/// The page-mapping functions (indices into [`SYMBOLS`]).
pub(crate) const MAPPINGS: [usize; 4] = [10, 11, 12, 13];

/// The real functions, resolved before the hooks go in (0: not found).
pub(crate) static REAL: [AtomicUsize; SYMBOLS.len()] = [const { AtomicUsize::new(0) }; SYMBOLS.len()];

/// The run being measured (1-based); 0 between runs, when nothing new is recorded.
pub(crate) static RUN: AtomicU32 = AtomicU32::new(0);
/// Bytes by which each run (index 0 = run 1) resized blocks it did not make (blocks of
/// earlier runs, or made before the check): a buffer grown by `realloc` on every call
/// leaves no new block, and its growth would otherwise be the heap's alone, which a run
/// that left no survivor is forgiven as glibc's caches (`array.array.append`, 8 B a call,
/// passed as clean). Net: a shrink counts against a growth.
pub(crate) static RESIZED: [AtomicI64; super::MAX_RUNS] = [const { AtomicI64::new(0) }; super::MAX_RUNS];

/// Whether stacks are captured (the where run): 0 when not, else the capture's number
/// (each turning on takes the next), which tells a thread's cached name out of date.
pub(crate) static CAPTURE: AtomicU32 = AtomicU32::new(0);
/// The last capture number handed out.
static CAPTURES: AtomicU32 = AtomicU32::new(0);

/// A new capture number for [`CAPTURE`] (never 0).
pub(crate) fn next_capture() -> u32 {
    loop {
        let n = CAPTURES.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n != 0 {
            return n;
        }
    }
}

struct Local {
    /// Set while this thread must not record (see the module doc).
    busy: Cell<bool>,
    /// The front end's token for where this thread is (Python: code object and line).
    host: Cell<u64>,
    /// This thread's id (`gettid`), 0 until a stack is first captured on it.
    tid: Cell<u32>,
    /// This thread's name as read during capture number `name_capture` (a system call, so
    /// read once a capture and thread rather than once an allocation: 1,200 calls a
    /// where run; a thread renamed in the middle of one keeps its earlier name there).
    name: Cell<[u8; 16]>,
    name_capture: Cell<u32>,
}

thread_local! {
    // const-initialised and without Drop: no lazy registration, no allocation, usable
    // while a thread exits.
    static LOCAL: Local = const {
        Local {
            busy: Cell::new(false),
            host: Cell::new(0),
            tid: Cell::new(0),
            name: Cell::new([0; 16]),
            name_capture: Cell::new(0),
        }
    };
}

/// Runs `f` with this thread's recording paused.
pub(crate) fn paused<R>(f: impl FnOnce() -> R) -> R {
    let was = LOCAL.with(|l| l.busy.replace(true));
    let r = f();
    LOCAL.with(|l| l.busy.set(was));
    r
}

/// The calling thread's id (gettid(2)).
pub(crate) fn current_thread_id() -> u32 {
    // SAFETY: gettid takes no argument and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

pub(crate) fn set_host_location(token: u64) {
    LOCAL.with(|l| l.host.set(token));
}

/// Records a new block, unless this thread is busy or no run is measured.
#[inline]
fn record(addr: usize, size: usize, mapping: bool) {
    let run = RUN.load(Ordering::Relaxed);
    if run == 0 || addr == 0 {
        return;
    }
    LOCAL.with(|l| {
        if l.busy.replace(true) {
            return;
        }
        let stack = capture_stack(l).unwrap_or(stacks::NONE);
        table::insert(table::Entry::new(addr, size, mapping, run, stack));
        l.busy.set(false);
    });
}

/// This thread's stack when capture is on (the caller holds `busy`).
#[inline]
fn capture_stack(l: &Local) -> Option<u16> {
    let capture = CAPTURE.load(Ordering::Relaxed);
    if capture == 0 {
        return None;
    }
    if l.tid.get() == 0 {
        l.tid.set(current_thread_id());
    }
    if l.name_capture.get() != capture {
        l.name.set(stacks::thread_name());
        l.name_capture.set(capture);
    }
    Some(stacks::capture(l.host.get(), l.tid.get(), l.name.get()))
}

/// Records the block that `realloc` or `mremap` made of `old`: the same allocation,
/// resized, still counted for the run that first made it (even between runs). A buffer
/// that grows on every call (an array appended to) was otherwise a new survivor of each
/// run, freed by the next one, whose size explained each run's heap growth: a leak of
/// 64 B a call passed as clean. Its growth now shows in the heap, which nothing explains.
/// A block recorded before the realloc keeps being recorded; one that was not (made
/// before the check, or between runs) is not recorded now either. The stack is the
/// resizing call's while capturing, else the one recorded.
/// `old_size`: the size of a block that was not recorded, where known (else 0).
#[inline]
fn resized(old: Option<table::Entry>, old_size: usize, addr: usize, size: usize, mapping: bool) {
    if addr == 0 {
        return;
    }
    let run = RUN.load(Ordering::Relaxed);
    let foreign = run != 0 && old.map_or(true, |o| o.run() != run);
    let delta = size as i64 - old.map_or(old_size, |o| o.size()) as i64;
    if foreign {
        if let Some(slot) = RESIZED.get(run as usize - 1) {
            slot.fetch_add(delta, Ordering::Relaxed);
        }
    }
    if old.is_none() && !(foreign && CAPTURE.load(Ordering::Relaxed) != 0) {
        return;
    }
    LOCAL.with(|l| {
        let was = l.busy.replace(true);
        let stack = if was { None } else { capture_stack(l) };
        if let (true, Some(stack)) = (foreign, stack) {
            resize_site(stack, delta);
        }
        if let Some(old) = old {
            table::insert(table::Entry::new(
                addr,
                size,
                mapping,
                old.run(),
                stack.unwrap_or(old.stack()),
            ));
        }
        l.busy.set(was);
    });
}

/// Slots of [`RESIZE_SITES`].
const RESIZE_SLOTS: usize = 256;

/// While stacks are captured (the where run), the bytes by which blocks a run did not make
/// were resized, by the resizing call's stack: key (stack + 1; 0: free) and bytes, open
/// addressing. The sites of a buffer grown by realloc on every call, whose block is no
/// run's survivor. Stacks past the slots are not counted.
static RESIZE_SITES: [(AtomicU32, AtomicI64); RESIZE_SLOTS] =
    [const { (AtomicU32::new(0), AtomicI64::new(0)) }; RESIZE_SLOTS];

fn resize_site(stack: u16, delta: i64) {
    let key = u32::from(stack) + 1;
    let start = (key as usize).wrapping_mul(0x9E37_79B9) % RESIZE_SLOTS;
    for i in 0..RESIZE_SLOTS {
        let (k, bytes) = &RESIZE_SITES[(start + i) % RESIZE_SLOTS];
        let found = match k.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(current) => current == key,
        };
        if found {
            bytes.fetch_add(delta, Ordering::Relaxed);
            return;
        }
    }
}

/// The bytes counted by stack in [`RESIZE_SITES`], and the slots emptied.
pub(crate) fn take_resize_sites() -> Vec<(u16, i64)> {
    let mut out = Vec::new();
    for (k, bytes) in &RESIZE_SITES {
        let key = k.swap(0, Ordering::AcqRel);
        let b = bytes.swap(0, Ordering::AcqRel);
        if key != 0 {
            out.push(((key - 1) as u16, b));
        }
    }
    out
}

/// Forgets a block (if recorded) and returns it.
#[inline]
fn forget(addr: usize) -> Option<table::Entry> {
    if addr == 0 {
        return None;
    }
    table::remove(addr)
}

#[inline]
fn real(i: usize) -> usize {
    REAL[i].load(Ordering::Relaxed)
}

type Malloc = unsafe extern "C" fn(usize) -> *mut libc::c_void;
type Calloc = unsafe extern "C" fn(usize, usize) -> *mut libc::c_void;
type Realloc = unsafe extern "C" fn(*mut libc::c_void, usize) -> *mut libc::c_void;
type ReallocArray = unsafe extern "C" fn(*mut libc::c_void, usize, usize) -> *mut libc::c_void;
type Free = unsafe extern "C" fn(*mut libc::c_void);
type PosixMemalign = unsafe extern "C" fn(*mut *mut libc::c_void, usize, usize) -> libc::c_int;
type Aligned = unsafe extern "C" fn(usize, usize) -> *mut libc::c_void;
type Mmap = unsafe extern "C" fn(
    *mut libc::c_void,
    usize,
    libc::c_int,
    libc::c_int,
    libc::c_int,
    libc::off_t,
) -> *mut libc::c_void;
type Munmap = unsafe extern "C" fn(*mut libc::c_void, usize) -> libc::c_int;
type Mremap = unsafe extern "C" fn(*mut libc::c_void, usize, usize, libc::c_int, ...) -> *mut libc::c_void;
pub(crate) type Dlopen = unsafe extern "C" fn(*const libc::c_char, libc::c_int) -> *mut libc::c_void;

/// The real function `$i` as a `$t`. Used inside the hooks' `unsafe` blocks: REAL[$i]
/// holds the address dlsym returned for SYMBOLS[$i], whose C prototype is `$t`; the hooks
/// are installed only when every one was found.
macro_rules! real {
    ($i:expr, $t:ty) => {
        std::mem::transmute::<usize, $t>(real($i))
    };
}

unsafe extern "C" fn malloc(size: usize) -> *mut libc::c_void {
    // SAFETY: forwarding the caller's arguments to the real function.
    let p = unsafe { real!(0, Malloc)(size) };
    record(p as usize, size, false);
    p
}

unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut libc::c_void {
    // SAFETY: as in malloc.
    let p = unsafe { real!(1, Calloc)(n, size) };
    record(p as usize, n.saturating_mul(size), false);
    p
}

/// realloc resizes a block: the new one is counted as the old one was (see `resized`);
/// `realloc(NULL, n)` is a malloc. The old block is forgotten first (see the module doc)
/// and put back if the call fails.
unsafe extern "C" fn realloc(p: *mut libc::c_void, size: usize) -> *mut libc::c_void {
    // SAFETY: as in malloc.
    reallocated(p, size, usable_size, || unsafe { real!(2, Realloc)(p, size) })
}

/// The usable size of `p`, a live block of the C library's malloc not recorded, while a
/// run is measured (0 otherwise: it is only needed for [`RESIZED`]).
fn usable_size(p: *mut libc::c_void) -> usize {
    if p.is_null() || RUN.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    // SAFETY: `p` is a live block of this malloc, about to be passed to its realloc.
    unsafe { libc::malloc_usable_size(p) }
}

/// A realloc of `p` to `size` bytes done by `call`: the old block is forgotten before the
/// call (as a free is), and put back if the call failed and left it in place.
#[inline]
fn reallocated(
    p: *mut libc::c_void,
    size: usize,
    unrecorded_size: fn(*mut libc::c_void) -> usize,
    call: impl FnOnce() -> *mut libc::c_void,
) -> *mut libc::c_void {
    let old = forget(p as usize);
    let old_size = if old.is_none() { unrecorded_size(p) } else { 0 };
    let q = call();
    if q.is_null() {
        if let (Some(old), true) = (old, size != 0) {
            table::insert(old);
        }
    } else if p.is_null() {
        record(q as usize, size, false);
    } else {
        resized(old, old_size, q as usize, size, false);
    }
    q
}

unsafe extern "C" fn reallocarray(p: *mut libc::c_void, n: usize, size: usize) -> *mut libc::c_void {
    let old = forget(p as usize);
    let old_size = if old.is_none() { usable_size(p) } else { 0 };
    // SAFETY: as in malloc.
    let q = unsafe { real!(3, ReallocArray)(p, n, size) };
    if q.is_null() {
        if let (Some(old), true) = (old, n.saturating_mul(size) != 0) {
            table::insert(old);
        }
    } else if p.is_null() {
        record(q as usize, n.saturating_mul(size), false);
    } else {
        resized(old, old_size, q as usize, n.saturating_mul(size), false);
    }
    q
}

unsafe extern "C" fn free(p: *mut libc::c_void) {
    forget(p as usize);
    // SAFETY: as in malloc.
    unsafe { real!(4, Free)(p) }
}

unsafe extern "C" fn posix_memalign(out: *mut *mut libc::c_void, align: usize, size: usize) -> libc::c_int {
    // SAFETY: as in malloc.
    let rc = unsafe { real!(5, PosixMemalign)(out, align, size) };
    if rc == 0 && !out.is_null() {
        // SAFETY: on success posix_memalign stored the block at *out.
        record(unsafe { *out } as usize, size, false);
    }
    rc
}

macro_rules! aligned_hook {
    ($name:ident, $i:expr) => {
        unsafe extern "C" fn $name(align: usize, size: usize) -> *mut libc::c_void {
            // SAFETY: as in malloc.
            let p = unsafe { real!($i, Aligned)(align, size) };
            record(p as usize, size, false);
            p
        }
    };
}
aligned_hook!(aligned_alloc, 6);
aligned_hook!(memalign, 7);

unsafe extern "C" fn valloc(size: usize) -> *mut libc::c_void {
    // SAFETY: as in malloc.
    let p = unsafe { real!(8, Malloc)(size) };
    record(p as usize, size, false);
    p
}

unsafe extern "C" fn pvalloc(size: usize) -> *mut libc::c_void {
    // SAFETY: as in malloc.
    let p = unsafe { real!(9, Malloc)(size) };
    record(p as usize, size, false);
    p
}

macro_rules! mmap_hook {
    ($name:ident, $i:expr) => {
        unsafe extern "C" fn $name(
            addr: *mut libc::c_void,
            len: usize,
            prot: libc::c_int,
            flags: libc::c_int,
            fd: libc::c_int,
            off: libc::off_t,
        ) -> *mut libc::c_void {
            // SAFETY: as in malloc.
            let p = unsafe { real!($i, Mmap)(addr, len, prot, flags, fd, off) };
            if p != libc::MAP_FAILED {
                record(p as usize, len, true);
            }
            p
        }
    };
}
mmap_hook!(mmap, 10);
mmap_hook!(mmap64, 11);

/// Unmapping the head of a recorded mapping keeps its tail recorded; other partial unmaps
/// are not followed (the mapping stays counted whole).
unsafe extern "C" fn munmap(addr: *mut libc::c_void, len: usize) -> libc::c_int {
    let old = forget(addr as usize);
    // SAFETY: as in malloc.
    let rc = unsafe { real!(12, Munmap)(addr, len) };
    if let Some(mut old) = old {
        if rc != 0 {
            table::insert(old);
        } else if len < old.size() {
            let page_len = (len + 4095) & !4095;
            if page_len < old.size() {
                old.addr += page_len;
                table::insert(old.with_size(old.size() - page_len));
            }
        }
    }
    rc
}

/// mremap(2) is variadic (`new_address` only with `MREMAP_FIXED`); a Rust function cannot
/// be, so the hook takes the fifth argument as a fixed one. On x86-64 and AArch64 Linux a
/// variadic callee reads its arguments from the same registers, so this is what the
/// caller passed (or an unused register); it is forwarded to the real, variadic, mremap.
unsafe extern "C" fn mremap(
    old_addr: *mut libc::c_void,
    old_size: usize,
    new_size: usize,
    flags: libc::c_int,
    new_addr: *mut libc::c_void,
) -> *mut libc::c_void {
    let old = forget(old_addr as usize);
    // SAFETY: as in malloc.
    let p = unsafe { real!(13, Mremap)(old_addr, old_size, new_size, flags, new_addr) };
    if p == libc::MAP_FAILED {
        if let Some(old) = old {
            table::insert(old);
        }
    } else {
        resized(old, old_size, p as usize, new_size, true);
    }
    p
}

/// Objects loaded during a check get their entries patched before dlopen returns to the
/// caller. glibc's dlopen looks the caller up (its return address) for the caller's
/// `DT_RPATH` and `DT_RUNPATH`; through this hook the caller is psleak, so a bare library
/// name is first looked for where the real caller's would be (see
/// [`super::open_as_caller`]; an absolute path, as Python's importer uses, needs nothing).
/// The caller also picks the link-map namespace: code loaded with `dlmopen` into another
/// one loads into psleak's while tracking is on (not emulated: dlmopen is rare).
unsafe extern "C" fn dlopen(name: *const libc::c_char, flags: libc::c_int) -> *mut libc::c_void {
    // SAFETY: dlopen's contract: NULL or a NUL-terminated name.
    let bare = (!name.is_null())
        .then(|| unsafe { CStr::from_ptr(name) })
        .filter(|n| !n.to_bytes().is_empty() && !n.to_bytes().contains(&b'/'));
    let handle = bare.and_then(|name| {
        paused(|| {
            let hook = dlopen as *const () as usize;
            let caller = stacks::caller_of(hook)?;
            super::open_as_caller(name, flags, caller, hook)
        })
    });
    // SAFETY: as in malloc.
    let handle = handle.unwrap_or_else(|| unsafe { real!(DLOPEN, Dlopen)(name, flags) });
    if !handle.is_null() {
        paused(super::patch_new_objects);
    }
    handle
}

/// Our hook for each entry of [`SYMBOLS`].
pub(crate) fn hook_addresses() -> [usize; SYMBOLS.len()] {
    [
        malloc as *const () as usize,
        calloc as *const () as usize,
        realloc as *const () as usize,
        reallocarray as *const () as usize,
        free as *const () as usize,
        posix_memalign as *const () as usize,
        aligned_alloc as *const () as usize,
        memalign as *const () as usize,
        valloc as *const () as usize,
        pvalloc as *const () as usize,
        mmap as *const () as usize,
        mmap64 as *const () as usize,
        munmap as *const () as usize,
        mremap as *const () as usize,
        dlopen as *const () as usize,
    ]
}

/// Looks up every real function. False if one is missing (not glibc, or a static program).
pub(crate) fn resolve() -> bool {
    let mut all = true;
    for (name, slot) in SYMBOLS.iter().zip(REAL.iter()) {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        slot.store(p, Ordering::Relaxed);
        all &= p != 0;
    }
    all
}

// --- A runtime's own allocator (CPython's PyMem domains), routed through the tracker for
// the where run (`crate::tracking::route_runtime_allocator`). Each function receives the
// original allocator as its context, forwards to it with recording paused (under
// PYTHONMALLOC=malloc the original calls the hooked malloc, which must not record the
// block a second time), then records or forgets the block itself. Their names hold
// `track::hooks::`, so that sites begin below them.

/// The original allocator behind a wrapper's context.
///
/// # Safety
///
/// `ctx` is the pointer `runtime_wrapper` stored: a valid allocator (its caller's promise).
unsafe fn original<'a>(ctx: *mut libc::c_void) -> &'a RuntimeAllocator {
    // SAFETY: see above.
    unsafe { &*ctx.cast::<RuntimeAllocator>() }
}

unsafe extern "C" fn runtime_malloc(ctx: *mut libc::c_void, size: usize) -> *mut libc::c_void {
    // SAFETY: ctx is the original allocator; its malloc gets the caller's arguments.
    let a = unsafe { original(ctx) };
    let Some(f) = a.malloc else {
        return std::ptr::null_mut();
    };
    let p = paused(|| unsafe { f(a.ctx, size) });
    record(p as usize, size, false);
    p
}

unsafe extern "C" fn runtime_calloc(ctx: *mut libc::c_void, n: usize, size: usize) -> *mut libc::c_void {
    // SAFETY: as in runtime_malloc.
    let a = unsafe { original(ctx) };
    let Some(f) = a.calloc else {
        return std::ptr::null_mut();
    };
    let p = paused(|| unsafe { f(a.ctx, n, size) });
    record(p as usize, n.saturating_mul(size), false);
    p
}

unsafe extern "C" fn runtime_realloc(
    ctx: *mut libc::c_void,
    p: *mut libc::c_void,
    size: usize,
) -> *mut libc::c_void {
    // SAFETY: as in runtime_malloc.
    let a = unsafe { original(ctx) };
    let Some(f) = a.realloc else {
        return std::ptr::null_mut();
    };
    // The size of a block the runtime's allocator made unrecorded is not known here.
    reallocated(p, size, |_| 0, || paused(|| unsafe { f(a.ctx, p, size) }))
}

unsafe extern "C" fn runtime_free(ctx: *mut libc::c_void, p: *mut libc::c_void) {
    // SAFETY: as in runtime_malloc.
    let a = unsafe { original(ctx) };
    forget(p as usize);
    if let Some(f) = a.free {
        paused(|| unsafe { f(a.ctx, p) });
    }
}

/// The wrapper of `original` (see `crate::tracking::route_runtime_allocator`).
///
/// # Safety
///
/// `original` stays valid while the wrapper is installed.
pub(crate) unsafe fn runtime_wrapper(original: *const RuntimeAllocator) -> RuntimeAllocator {
    RuntimeAllocator {
        ctx: original.cast_mut().cast(),
        malloc: Some(runtime_malloc),
        calloc: Some(runtime_calloc),
        realloc: Some(runtime_realloc),
        free: Some(runtime_free),
    }
}
