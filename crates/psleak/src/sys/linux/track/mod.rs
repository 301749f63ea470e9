//! Exact tracking of native allocations: GOT hooks on every loaded object, a live table of
//! the blocks allocated during measured runs, and stack capture for the where run.
//!
//! The method is memray's (hooks installed into a running process, no `LD_PRELOAD`): for
//! every object `dl_iterate_phdr(3)` lists, the GOT entries that the dynamic linker filled
//! for the intercepted symbols are pointed at our hooks, libc's own included (so that
//! `strdup`, `opendir` or `fopen` allocating for their caller are seen); `dlopen` is hooked
//! so that objects loaded later get the same. Removal writes back the exact value each
//! entry held, where it still holds our hook.
//!
//! Where it cannot run it says why ([`Unavailable`]) and the check judges from the
//! allocator's counters as before: not glibc, an architecture without known GOT
//! relocations, a static program (no GOT entry for `malloc` anywhere), or entries already
//! pointing at another tool's hooks (memray, a profiler), which we neither chain nor break.

mod elf;
mod hooks;
mod loaded;
mod reach;
mod stacks;
mod symbolize;
mod table;

use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use hooks::{REAL, SYMBOLS};

use crate::tracking::CapturedStack;

pub(crate) use hooks::{current_thread_id, paused, runtime_wrapper, set_host_location};
pub(crate) use stacks::{in_runtime, is_own, shown};
pub(crate) use symbolize::{object_of, Resolved, Symbolizer};
pub(crate) use table::MAX_RUNS;

/// Why tracking cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable(pub(crate) String);

/// One GOT entry we changed, and what it held.
#[derive(Clone, Copy)]
struct Patched {
    addr: usize,
    original: usize,
}

struct State {
    installed: bool,
    /// Every entry patched since installation, in order; mmap'd, so that patching from
    /// inside the dlopen hook allocates nothing.
    patched: *mut Patched,
    len: usize,
    /// The module psleak lives in, when it is a shared object of its own (the Python
    /// extension): its entries stay as they are, so that psleak's own allocations never
    /// reach the hooks.
    own_base: usize,
    /// Addresses inside the allocators whose own page mappings are not the program's
    /// allocations: the object providing `malloc` (jemalloc maps its extents through its
    /// GOT; glibc's malloc calls mmap internally, never through it) and the front end's
    /// runtime (pymalloc's 1 MiB arenas). Their `mmap`-family entries stay unhooked.
    allocators: [usize; 2],
    /// The objects whose entries have been gone through since installation (see
    /// [`Visited`]); room reserved at installation, so that the dlopen hook allocates
    /// nothing.
    visited: Vec<Visited>,
}

/// An object [`patch_all`] went through, and one GOT entry there that holds our hook (0:
/// none did), with that hook: while the object stays loaded the entry keeps it, so a
/// `dlopen` need not read the object's relocations again (2 ms a call for a process with
/// polars and duckdb loaded, against 60 us); a library unloaded and another, or the same,
/// loaded at its address has the entry fresh, and is gone through anew.
#[derive(Clone, Copy)]
struct Visited {
    base: usize,
    /// [`path_hash`] of its path.
    path: u64,
    sample: usize,
    hook: usize,
}

/// Objects remembered as visited; past this, the others are gone through on every dlopen.
const MAX_VISITED: usize = 4096;

/// FNV-1a of an object's path: tells apart two objects loaded in turn at one address.
fn path_hash(path: &CStr) -> u64 {
    path.to_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// SAFETY: the raw pointer is only used under the STATE mutex.
unsafe impl Send for State {}

/// Serialises install, removal and dlopen patching. std's Mutex is a futex and does not
/// allocate.
static STATE: Mutex<State> = Mutex::new(State {
    installed: false,
    patched: std::ptr::null_mut(),
    len: 0,
    own_base: 0,
    allocators: [0; 2],
    visited: Vec::new(),
});

/// Entries kept: enough for thousands of objects.
const MAX_PATCHED: usize = 1 << 16;
const PATCHED_BYTES: usize = MAX_PATCHED * std::mem::size_of::<Patched>();

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an entry currently holds, judged before we patch it.
enum Entry {
    /// Bound to the real function, or still lazy (PLT stub of the object itself): ours to
    /// patch.
    Ours(usize),
    /// Already our hook.
    Hooked,
    /// The object defines the symbol and binds it to itself: a private allocator we must
    /// not reroute to the global one.
    Private,
    /// Points at another object's function: another tool hooked it.
    Foreign(usize),
}

fn judge(object: &elf::Object, addr: usize, symbol: usize, defined_here: bool) -> Entry {
    // SAFETY: addr comes from the object's relocations and the object is loaded.
    let value = unsafe { elf::read(addr) };
    let hooks = hooks::hook_addresses();
    if value == hooks[symbol] {
        Entry::Hooked
    } else if value == REAL[symbol].load(Ordering::Relaxed) {
        Entry::Ours(value)
    } else if object.contains(value) {
        if defined_here {
            Entry::Private
        } else {
            Entry::Ours(value)
        }
    } else {
        Entry::Foreign(value)
    }
}

fn symbol_index(name: &CStr) -> Option<usize> {
    SYMBOLS.iter().position(|s| *s == name)
}

/// Whether this object's entries are left alone: psleak's own shared object, the vDSO
/// and the dynamic linker (which binds its allocations through its own pointers).
fn skipped(state: &State, object: &elf::Object) -> bool {
    let path = object.path().to_bytes();
    (state.own_base != 0 && object.base == state.own_base)
        || path.starts_with(b"linux-vdso")
        || path.windows(6).any(|w| w == b"/ld-li")
}

/// An address range: (start, end).
type Range = (usize, usize);

/// The objects the hooks and the unwinder tell apart.
struct Objects {
    /// psleak's module: the object holding this function, unless it is the main program
    /// (then the Rust API is checking code linked into it, which must be hooked; psleak's
    /// own allocations there are kept out by the reentrancy guard). Its load bias (0 when
    /// none) and its address range.
    own_base: usize,
    own: Option<Range>,
    /// The runtime's object (holding the address the front end gave), for the unwinder's
    /// early stop (see `stacks::set_bounds`).
    runtime: Option<Range>,
}

fn objects(runtime: Option<usize>) -> Objects {
    let here = objects as *const () as usize;
    let mut out = Objects {
        own_base: 0,
        own: None,
        runtime: None,
    };
    let mut first = true;
    elf::for_each_object(|o| {
        if runtime.is_some_and(|r| o.contains(r)) {
            out.runtime = Some(o.extent());
        }
        if o.contains(here) && !first {
            out.own_base = o.base;
            out.own = Some(o.extent());
        }
        first = false;
    });
    out
}

/// Whether entry `symbol` of `object` is left alone: an allocator's own mmap calls.
fn allocator_mapping(st: &State, object: &elf::Object, symbol: usize) -> bool {
    hooks::MAPPINGS.contains(&symbol) && st.allocators.iter().any(|&a| a != 0 && object.contains(a))
}

/// Points every entry of every loaded object at the hooks and starts recording.
/// `runtime` is an address inside a language runtime whose own allocator maps memory in
/// large arenas (Python's pymalloc): its `mmap` calls are not counted.
pub(crate) fn install(runtime: Option<usize>) -> Result<(), Unavailable> {
    paused(|| {
        let mut st = state();
        if st.installed {
            return Err(Unavailable(
                "another check in this process is tracking already".into(),
            ));
        }
        precheck()?;
        if st.patched.is_null() {
            st.patched = table::map(PATCHED_BYTES) as *mut Patched;
            if st.patched.is_null() {
                return Err(Unavailable("the kernel refused memory for the patch list".into()));
            }
        }
        let objects = objects(runtime);
        st.own_base = objects.own_base;
        stacks::set_bounds(objects.runtime, objects.own);
        st.allocators = [REAL[0].load(Ordering::Relaxed), runtime.unwrap_or(0)];
        // Refuse before changing anything if another tool owns an entry.
        let mut foreign: Option<(String, usize)> = None;
        let mut malloc_entries = 0usize;
        elf::for_each_object(|o| {
            if skipped(&st, o) {
                return;
            }
            o.for_each_got(|addr, name, defined, slot| {
                let Some(i) = symbol_index(name) else { return };
                // A data pointer holding something else was set by the program (its own
                // allocator): only GOT entries tell of another tool.
                if slot == elf::Slot::Data {
                    return;
                }
                malloc_entries += usize::from(i == 0);
                if let Entry::Foreign(v) = judge(o, addr, i, defined) {
                    // dlopen has compatibility versions at other addresses; only the
                    // allocation functions decide.
                    if i != hooks::DLOPEN && foreign.is_none() {
                        foreign = Some((format!("{} in {:?}", name.to_string_lossy(), o.path()), v));
                    }
                }
            });
        });
        if let Some((what, value)) = foreign {
            return Err(Unavailable(format!(
                "{what} already points elsewhere ({value:#x}): another tool (memray, a \
                 profiler) hooks allocations in this process"
            )));
        }
        if malloc_entries == 0 {
            return Err(Unavailable(
                "no loaded object imports malloc through its GOT (a static program?)".into(),
            ));
        }
        if !table::prepare() {
            return Err(Unavailable("the kernel refused memory for the live table".into()));
        }
        table::guard_fork();
        loaded::reset();
        st.installed = true;
        st.len = 0;
        st.visited.clear();
        st.visited.reserve(MAX_VISITED);
        patch_all(&mut st, false);
        Ok(())
    })
}

fn precheck() -> Result<(), Unavailable> {
    if !elf::SUPPORTED_ARCH {
        return Err(Unavailable(format!(
            "GOT relocations of {} are not known",
            std::env::consts::ARCH
        )));
    }
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    if unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"gnu_get_libc_version".as_ptr()) }.is_null() {
        return Err(Unavailable("the C library is not glibc (musl?)".into()));
    }
    if !hooks::resolve() {
        return Err(Unavailable(
            "an intercepted function is missing from the C library".into(),
        ));
    }
    Ok(())
}

/// Patches every entry not patched yet; `new_only`: in the objects not visited yet (see
/// [`Visited`]). Caller holds the state lock with `installed` set.
fn patch_all(st: &mut State, new_only: bool) {
    let hooks = hooks::hook_addresses();
    let (patched, mut len) = (st.patched, st.len);
    let mut visited = std::mem::take(&mut st.visited);
    let st_ref: &State = st;
    elf::for_each_object(|o| {
        if skipped(st_ref, o) {
            return;
        }
        let path = path_hash(o.path());
        let known = visited.iter().position(|v| v.base == o.base && v.path == path);
        if let Some(v) = known.filter(|_| new_only).map(|k| visited[k]) {
            // SAFETY: the sample lies in a loaded segment of this object (a file of the
            // same path reloaded here may be laid out otherwise: then it is gone through).
            if v.sample == 0 || (o.contains(v.sample) && unsafe { elf::read(v.sample) } == v.hook) {
                return;
            }
        }
        if new_only {
            loaded::note(o);
        }
        let mut sample = (0, 0);
        o.for_each_got(|addr, name, defined, slot| {
            let Some(i) = symbol_index(name) else { return };
            if allocator_mapping(st_ref, o, i) {
                return;
            }
            let entry = judge(o, addr, i, defined);
            if matches!(entry, Entry::Hooked) && slot == elf::Slot::Got && sample.0 == 0 {
                sample = (addr, hooks[i]);
            }
            let Entry::Ours(original) = entry else {
                return;
            };
            // A data pointer is patched only while it holds the C library's function: one
            // the program pointed at its own allocator stays its own.
            if slot == elf::Slot::Data && original != REAL[i].load(Ordering::Relaxed) {
                return;
            }
            if len == MAX_PATCHED {
                return;
            }
            // SAFETY: addr is this loaded object's GOT entry for SYMBOLS[i] and the hook
            // has the same C prototype.
            if unsafe { o.write(addr, hooks[i]) } {
                // SAFETY: len < MAX_PATCHED, the list's capacity.
                unsafe { *patched.add(len) = Patched { addr, original } };
                len += 1;
                // A GOT entry, not a data pointer: the program may set one of those.
                if slot == elf::Slot::Got && sample.0 == 0 {
                    sample = (addr, hooks[i]);
                }
            }
        });
        let v = Visited {
            base: o.base,
            path,
            sample: sample.0,
            hook: sample.1,
        };
        match known {
            Some(k) => visited[k] = v,
            None if visited.len() < visited.capacity() => visited.push(v),
            None => {}
        }
    });
    st.visited = visited;
    st.len = len;
}

/// `Dl_serpath` of `<dlfcn.h>`: one directory of an object's library search path.
#[repr(C)]
struct SerPath {
    name: *const libc::c_char,
    flags: libc::c_uint,
}

/// `Dl_serinfo` of `<dlfcn.h>`, followed in memory by `count` [`SerPath`]s and their names.
#[repr(C)]
struct SerInfo {
    size: libc::size_t,
    count: libc::c_uint,
}

/// libc's dlopen, resolved before the hooks went in.
fn real_dlopen(name: *const libc::c_char, flags: libc::c_int) -> *mut libc::c_void {
    // SAFETY: REAL[DLOPEN] is libc's dlopen (the hooks are installed only once it is found).
    unsafe {
        std::mem::transmute::<usize, hooks::Dlopen>(REAL[hooks::DLOPEN].load(Ordering::Relaxed))(name, flags)
    }
}

/// Opens `name`, a bare library name, as the object holding `caller` would have found it
/// by calling dlopen itself rather than through the hook (in `hook`'s object). glibc
/// searches the calling object's path (dlinfo(3) `RTLD_DI_SERINFO`: its `DT_RPATH`, or
/// its loaders', `LD_LIBRARY_PATH`, its `DT_RUNPATH`, then the system directories, after
/// ld.so's cache) once no loaded object has that name. So: an object loaded under that
/// name first; then, when the two objects' paths differ, each directory of the caller's
/// before the system ones that both end with, in order. `None` when none holds it: the
/// plain call then finds what the caller's would (the cache, the system directories).
/// Called by the dlopen hook, recording paused. The lookups that failed on the way leave
/// no message for dlerror(3): the caller sees only what its own call did.
fn open_as_caller(name: &CStr, flags: libc::c_int, caller: usize, hook: usize) -> Option<*mut libc::c_void> {
    let found = search_as_caller(name, flags, caller, hook);
    // SAFETY: dlerror only reads and clears this thread's message.
    unsafe { libc::dlerror() };
    found
}

fn search_as_caller(
    name: &CStr,
    flags: libc::c_int,
    caller: usize,
    hook: usize,
) -> Option<*mut libc::c_void> {
    let loaded = real_dlopen(name.as_ptr(), flags | libc::RTLD_NOLOAD);
    if !loaded.is_null() {
        return Some(loaded);
    }
    let theirs = search_path(caller)?;
    let ours = search_path(hook).unwrap_or_default();
    if theirs == ours {
        return None;
    }
    let system = theirs
        .iter()
        .rev()
        .zip(ours.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    for dir in &theirs[..theirs.len() - system] {
        let mut path = dir.clone();
        if !path.is_empty() && !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(name.to_bytes());
        let Ok(path) = std::ffi::CString::new(path) else {
            continue;
        };
        // SAFETY: access with a NUL-terminated path.
        if unsafe { libc::access(path.as_ptr(), libc::F_OK) } == 0 {
            let handle = real_dlopen(path.as_ptr(), flags);
            if !handle.is_null() {
                return Some(handle);
            }
        }
    }
    None
}

/// The library search path of the loaded object holding `addr`, directory by directory.
fn search_path(addr: usize) -> Option<Vec<Vec<u8>>> {
    // SAFETY: a zeroed Dl_info is a valid out-parameter; dladdr only writes it.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr with any address and a valid out-parameter.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    let object = real_dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD);
    if object.is_null() {
        return None;
    }
    let out = serinfo(object);
    // SAFETY: the handle came from the dlopen above (RTLD_NOLOAD took a reference).
    unsafe { libc::dlclose(object) };
    out
}

/// dlinfo(3) `RTLD_DI_SERINFO` of a handle: its search path's directories, in order.
fn serinfo(object: *mut libc::c_void) -> Option<Vec<Vec<u8>>> {
    let mut head = SerInfo { size: 0, count: 0 };
    // SAFETY: RTLD_DI_SERINFOSIZE fills in the size and count of a live handle's list.
    if unsafe {
        libc::dlinfo(
            object,
            libc::RTLD_DI_SERINFOSIZE,
            (&mut head as *mut SerInfo).cast(),
        )
    } != 0
        || head.size < std::mem::size_of::<SerInfo>()
    {
        return None;
    }
    // u64 words: the list holds pointers and must be aligned for them.
    let mut buf = vec![0u64; head.size.div_ceil(8)];
    let info = buf.as_mut_ptr().cast::<SerInfo>();
    // SAFETY: glibc's protocol: the buffer starts with the size and count just read, and
    // RTLD_DI_SERINFO fills the rest (paths and their names) within `size` bytes; the
    // names are NUL-terminated strings inside the buffer, read before it is dropped.
    unsafe {
        info.write(SerInfo {
            size: head.size,
            count: head.count,
        });
        if libc::dlinfo(object, libc::RTLD_DI_SERINFO, info.cast()) != 0 {
            return None;
        }
        let first = info
            .cast::<u8>()
            .add(std::mem::size_of::<SerInfo>())
            .cast::<SerPath>();
        let paths = std::slice::from_raw_parts(first, head.count as usize);
        Some(
            paths
                .iter()
                .filter(|p| !p.name.is_null())
                .map(|p| CStr::from_ptr(p.name).to_bytes().to_vec())
                .collect(),
        )
    }
}

/// Called by the dlopen hook: patches the objects it loaded.
fn patch_new_objects() {
    let mut st = state();
    if st.installed {
        patch_all(&mut st, true);
    }
}

/// Stops recording and writes back every entry that still holds our hook. Idempotent.
pub(crate) fn uninstall() {
    paused(|| {
        hooks::RUN.store(0, Ordering::SeqCst);
        hooks::CAPTURE.store(0, Ordering::SeqCst);
        let mut st = state();
        if !st.installed {
            return;
        }
        let hooks = hooks::hook_addresses();
        let (patched, len) = (st.patched, st.len);
        elf::for_each_object(|o| {
            o.for_each_got(|addr, name, _, _| {
                let Some(i) = symbol_index(name) else { return };
                // SAFETY: addr is a GOT entry or data pointer of this loaded object.
                if unsafe { elf::read(addr) } != hooks[i] {
                    return;
                }
                // The latest record for this address: an object unloaded and another
                // loaded in its place leave two, and only the newest is this object's.
                // SAFETY: indices below len are initialised records.
                let record = (0..len)
                    .rev()
                    .map(|k| unsafe { *patched.add(k) })
                    .find(|p| p.addr == addr);
                let original = record.map_or(REAL[i].load(Ordering::Relaxed), |p| p.original);
                // SAFETY: restoring the value the entry held (or the real function).
                unsafe { o.write(addr, original) };
            });
        });
        st.installed = false;
        st.len = 0;
    });
}

/// Whether the hooks are in.
#[cfg(test)]
pub(crate) fn installed() -> bool {
    state().installed
}

/// Starts recording allocations as belonging to `run` (1-based); 0 stops recording.
pub(crate) fn set_run(run: u32) {
    hooks::RUN.store(run, Ordering::SeqCst);
}

/// Turns stack capture on or off (stays off if the stack store cannot be mapped).
pub(crate) fn set_capture(on: bool) {
    let on = on && paused(stacks::prepare);
    hooks::CAPTURE.store(if on { hooks::next_capture() } else { 0 }, Ordering::SeqCst);
}

/// Live blocks and bytes allocated by each run, index 0 = run 1.
pub(crate) fn survivors() -> [(i64, i64); MAX_RUNS] {
    paused(table::survivors)
}

/// Survivors that nothing in the process points to any more, per run (index 0 = run 1):
/// blocks and bytes. `None` when the scan cannot answer here (see `reach`).
#[inline(never)]
pub(crate) fn lost() -> Option<[(i64, i64); MAX_RUNS]> {
    // The stack below this frame is psleak's own (see `reach::lost`).
    let here = 0u8;
    let top = std::hint::black_box(std::ptr::addr_of!(here)) as usize;
    paused(|| reach::lost(top))
}

/// A live block of the where run.
pub(crate) struct LiveBlock {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) addr: usize,
    pub(crate) size: usize,
    pub(crate) run: u32,
    pub(crate) stack: u16,
}

/// Every live block (under the guard: the closure may allocate freely).
pub(crate) fn live_blocks() -> Vec<LiveBlock> {
    paused(|| {
        let mut out = Vec::new();
        // Counted first, then filled without growing: `out` must not reallocate while a
        // shard's lock is held, or malloc's own locks would nest inside ours while another
        // thread, inside malloc, waits for that shard in its free hook.
        let mut count = 0usize;
        table::for_each(|_| count += 1);
        out.reserve(count + 1024);
        table::for_each(|e| {
            if out.len() < out.capacity() {
                out.push(LiveBlock {
                    addr: e.addr,
                    size: e.size(),
                    run: e.run(),
                    stack: e.stack(),
                });
            }
        });
        out
    })
}

/// The frames and host token of a stack id.
pub(crate) fn stack(id: u16) -> Option<CapturedStack> {
    let s = stacks::get(id)?;
    let name_len = s
        .thread_name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(s.thread_name.len());
    Some(CapturedStack {
        host: s.host,
        ips: s.frames[..s.len as usize].to_vec(),
        tid: s.tid,
        thread_name: String::from_utf8_lossy(&s.thread_name[..name_len]).into_owned(),
    })
}

/// Forgets every block and stack; gives the table's memory back. After [`uninstall`].
pub(crate) fn reset() {
    paused(|| {
        table::clear();
        stacks::clear();
    });
    for slot in &hooks::RESIZED {
        slot.store(0, Ordering::Relaxed);
    }
}

/// Bytes by which blocks were resized while stacks were captured, by the resizing call's
/// stack, since the last call (see `hooks::RESIZE_SITES`).
pub(crate) fn resize_sites() -> Vec<(u16, i64)> {
    paused(hooks::take_resize_sites)
}

/// Bytes by which each run (index 0 = run 1) resized blocks it did not make (see
/// [`hooks::RESIZED`]).
pub(crate) fn resized() -> [i64; MAX_RUNS] {
    std::array::from_fn(|i| hooks::RESIZED[i].load(Ordering::Relaxed))
}

/// Bytes of address space the tracker holds (table, stacks, patch list).
pub(crate) fn tracker_bytes() -> usize {
    table::mapped_bytes()
}

/// Snapshot of every intercepted GOT entry: (address, value). For tests.
#[cfg(test)]
pub(crate) fn got_snapshot() -> Vec<(usize, usize)> {
    paused(|| {
        let mut v = Vec::with_capacity(4096);
        elf::for_each_object(|o| {
            o.for_each_got(|addr, name, _, _| {
                if symbol_index(name).is_some() && v.len() < v.capacity() {
                    // SAFETY: addr is a GOT entry of a loaded object.
                    v.push((addr, unsafe { elf::read(addr) }));
                }
            })
        });
        v
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
    use std::sync::Arc;

    const WORKERS: usize = 4;

    /// Blocks and bytes recorded at these addresses. Tests look at their own blocks only:
    /// the test harness may run other tests, which allocate too, on other threads.
    fn live_of(ptrs: &[*mut libc::c_void]) -> (i64, i64) {
        let mut out = (0, 0);
        for b in live_blocks() {
            if ptrs.iter().any(|p| *p as usize == b.addr) {
                out.0 += 1;
                out.1 += b.size as i64;
            }
        }
        out
    }

    /// Tests that install the hooks run one at a time (one installation per process).
    pub(super) fn serial() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Each intercepted function is counted exactly, and pointers from before the run are
    /// ignored when freed.
    #[test]
    fn every_function_is_counted() {
        let _serial = serial();
        // SAFETY: plain C allocation calls; each block is released once.
        unsafe {
            let old = libc::malloc(40);
            install(None).unwrap();
            set_run(1);
            let live = || survivors()[0];
            let a = libc::malloc(81);
            assert_eq!(live(), (1, 81));
            let a = libc::realloc(a, 319);
            assert_eq!(live(), (1, 319));
            let b = libc::calloc(3, 41);
            assert_eq!(live(), (2, 319 + 123));
            let mut c = std::ptr::null_mut();
            assert_eq!(libc::posix_memalign(&mut c, 64, 200), 0);
            let d = libc::aligned_alloc(32, 64);
            let e = libc::memalign(128, 10);
            assert_eq!(live(), (5, 319 + 123 + 200 + 64 + 10));
            for p in [a, b, c, d, e] {
                libc::free(p);
            }
            assert_eq!(live(), (0, 0));
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            let m = libc::mmap(std::ptr::null_mut(), 3 * 4096, prot, flags, -1, 0);
            assert_eq!(live(), (1, 3 * 4096));
            libc::munmap(m, 4096); // the head: the tail stays counted
            assert_eq!(live(), (1, 2 * 4096));
            let m = libc::mremap(
                m.cast::<u8>().add(4096).cast(),
                2 * 4096,
                5 * 4096,
                libc::MREMAP_MAYMOVE,
            );
            assert_eq!(live(), (1, 5 * 4096));
            libc::munmap(m, 5 * 4096);
            assert_eq!(live(), (0, 0));
            libc::free(old); // allocated before: ignored
            assert_eq!(live(), (0, 0));
            let s = libc::strdup(c"allocated by libc for its caller".as_ptr());
            assert_eq!(live().0, 1, "libc's own malloc entry is hooked");
            libc::free(s.cast());
            set_run(0);
            let f = libc::malloc(10); // between runs: not recorded
            assert_eq!(live(), (0, 0));
            libc::free(f);
            uninstall();
            reset();
        }
    }
    #[test]
    fn a_resized_block_stays_with_the_run_that_made_it() {
        let _serial = serial();
        // SAFETY: plain C allocation calls; each block is released once.
        unsafe {
            let before = libc::malloc(40);
            install(None).unwrap();
            set_run(1);
            let a = libc::malloc(64);
            set_run(2);
            // Grown in run 2: still run 1's block, at its new size; run 2 made none.
            let a = libc::realloc(a, 4096);
            let runs = survivors();
            assert_eq!((runs[0], runs[1]), ((1, 4096), (0, 0)));
            // A block from before the check stays unrecorded, however it is resized...
            let before = libc::realloc(before, 8192);
            assert_eq!(survivors()[1], (0, 0));
            // ...and so does a block resized between runs; realloc(NULL) is a malloc.
            set_run(0);
            let a = libc::realloc(a, 100);
            assert_eq!(survivors()[0], (1, 100), "resized between runs: still counted");
            set_run(2);
            let b = libc::realloc(std::ptr::null_mut(), 24);
            assert_eq!(survivors()[1], (1, 24));
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            set_run(1);
            let m = libc::mmap(std::ptr::null_mut(), 4096, prot, flags, -1, 0);
            set_run(3);
            let m = libc::mremap(m, 4096, 3 * 4096, libc::MREMAP_MAYMOVE);
            let runs = survivors();
            assert_eq!((runs[0], runs[2]), ((2, 100 + 3 * 4096), (0, 0)));
            libc::munmap(m, 3 * 4096);
            for p in [a, b, before] {
                libc::free(p);
            }
            assert_eq!(survivors()[..3], [(0, 0); 3]);
            set_run(0);
            uninstall();
            reset();
        }
    }

    /// Blocks a static keeps a pointer to (directly or through another block) are
    /// reachable; blocks whose only trace is a disguised pointer are lost, and so is a
    /// block only a lost block points to. The lost ones are of a size no other test uses:
    /// memory freed by earlier tests holds stale pointers to the addresses of their
    /// blocks, which the scan takes for pointers (it errs towards reachable).
    #[test]
    fn blocks_nothing_points_to_are_lost() {
        use std::sync::atomic::AtomicUsize;
        static KEPT: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
        static HIDDEN: [AtomicUsize; 40] = [const { AtomicUsize::new(0) }; 40];
        const MASK: usize = 0x5a5a_5a5a_5a5a_5a5a;
        let _serial = serial();
        install(None).unwrap();
        // SAFETY: plain C allocation calls; each block is written within its size and
        // released once.
        unsafe {
            set_run(5);
            for k in &KEPT {
                k.store(libc::malloc(48) as usize, Ordering::SeqCst);
            }
            // Kept through another block: the first kept block points to a new one.
            let inner = libc::malloc(24);
            *(KEPT[0].load(Ordering::SeqCst) as *mut usize) = inner as usize;
            set_run(6);
            // In a frame of its own, gone by the scan: a live frame holding the last
            // pointers would rightly keep them reachable.
            #[inline(never)]
            unsafe fn hide(hidden: &[AtomicUsize]) {
                for (i, h) in hidden.iter().enumerate() {
                    // SAFETY: see the caller.
                    let p = unsafe { libc::malloc(1352 + i % 3 * 8) };
                    // The second block of a lost pair is lost too.
                    if i % 2 == 1 {
                        let prev = (hidden[i - 1].load(Ordering::SeqCst) ^ MASK) as *mut usize;
                        // SAFETY: the previous block is at least 1,352 bytes.
                        unsafe { *prev = p as usize };
                    }
                    h.store(p as usize ^ MASK, Ordering::SeqCst);
                }
            }
            hide(&HIDDEN);
            // Mappings: of 16 pages (indexed by page) and of 40 (too large for the index),
            // one kept through a static, six hidden.
            set_run(7);
            static MAPS: [AtomicUsize; 7] = [const { AtomicUsize::new(0) }; 7];
            #[inline(never)]
            unsafe fn map_hidden(maps: &[AtomicUsize]) {
                let prot = libc::PROT_READ | libc::PROT_WRITE;
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                for (i, m) in maps.iter().enumerate() {
                    // At addresses no earlier test used, so that no stale copy lingers.
                    let hint = (0x5e00_0000_0000usize + i * (1 << 20)) as *mut libc::c_void;
                    // SAFETY: an anonymous mapping, written within its first page.
                    unsafe {
                        let p = libc::mmap(hint, map_len(i), prot, flags, -1, 0);
                        *p.cast::<u8>() = 1;
                        m.store(
                            if i == 0 { p as usize } else { p as usize ^ MASK },
                            Ordering::SeqCst,
                        );
                    }
                }
            }
            fn map_len(i: usize) -> usize {
                if i % 2 == 0 {
                    16 * 4096
                } else {
                    40 * 4096
                }
            }
            map_hidden(&MAPS);
            set_run(0);
            let found = lost();
            let after_free = |found: Option<[(i64, i64); MAX_RUNS]>| {
                let found = found.expect("the scan answers here");
                assert_eq!(found[4].0, 0, "kept blocks are reachable: {:?}", &found[..8]);
                // The scan is conservative: a stale copy of one of these addresses (in a
                // live frame's unwritten slot, in memory earlier tests freed) keeps its
                // block, and the block it points to, reachable. Alone, this test finds
                // 34-40 of 40 lost; after the whole suite, 27 and more.
                let (blocks, bytes) = found[5];
                assert!(
                    (20..=40).contains(&blocks),
                    "disguised pointers do not count: {:?}",
                    &found[..8]
                );
                assert!(
                    bytes >= blocks * 1352 && bytes <= blocks * 1368,
                    "{bytes} B in {blocks} blocks"
                );
                assert_eq!(found[6].0, 6, "hidden mappings: {:?}", &found[..8]);
            };
            for (i, m) in MAPS.iter().enumerate() {
                let p = m.load(Ordering::SeqCst);
                libc::munmap(
                    (if i == 0 { p } else { p ^ MASK }) as *mut libc::c_void,
                    map_len(i),
                );
            }
            for h in &HIDDEN {
                libc::free((h.load(Ordering::SeqCst) ^ MASK) as *mut libc::c_void);
            }
            libc::free(inner);
            for k in &KEPT {
                libc::free(k.load(Ordering::SeqCst) as *mut libc::c_void);
            }
            let empty = lost();
            uninstall();
            reset();
            after_free(found);
            assert_eq!(empty.unwrap()[4..8], [(0, 0); 4]);
        }
    }

    const KEPT: usize = 10;

    /// Four threads allocate and free all along while the hooks go in and out 100 times.
    /// In each installed window every thread makes a known set of blocks: the table must
    /// count exactly those (no allocation lost, none counted twice), then none once they
    /// are freed; after every removal each GOT entry reads back as it was.
    #[test]
    fn install_and_remove_under_allocating_threads() {
        let _serial = serial();
        let before = got_snapshot();
        let phase = Arc::new(AtomicU32::new(0));
        let acks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let published: Arc<Vec<AtomicUsize>> =
            Arc::new((0..WORKERS * KEPT).map(|_| AtomicUsize::new(0)).collect());
        let workers: Vec<_> = (0..WORKERS)
            .map(|t| {
                let (phase, acks, stop, started) =
                    (phase.clone(), acks.clone(), stop.clone(), started.clone());
                let published = published.clone();
                std::thread::spawn(move || {
                    let mut kept = [std::ptr::null_mut::<libc::c_void>(); KEPT];
                    let mut seen = 0;
                    let mut n = 0usize;
                    let mut first = true;
                    while !stop.load(Ordering::Acquire) {
                        if std::mem::take(&mut first) {
                            started.fetch_add(1, Ordering::AcqRel);
                        }
                        // Churn: every pair completes before the phase is looked at.
                        n = n.wrapping_add(1);
                        // SAFETY: plain C allocation calls, each block freed once.
                        unsafe {
                            let a = libc::malloc(16 + n % 200);
                            let b = libc::calloc(3, 8 + n % 50);
                            let c = libc::realloc(a, 300 + n % 1000);
                            let d = libc::mmap(
                                std::ptr::null_mut(),
                                4096,
                                libc::PROT_READ | libc::PROT_WRITE,
                                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                                -1,
                                0,
                            );
                            libc::free(b);
                            libc::free(c);
                            if d != libc::MAP_FAILED {
                                libc::munmap(d, 4096);
                            }
                        }
                        let p = phase.load(Ordering::Acquire);
                        if p == seen {
                            continue;
                        }
                        seen = p;
                        if p % 3 == 0 {
                            continue; // churn through removal and the next installation
                        }
                        if p % 3 == 1 {
                            for (k, slot) in kept.iter_mut().enumerate() {
                                // SAFETY: a plain C allocation, freed in the next phase.
                                *slot = unsafe { libc::malloc(100 + 10 * t + k) };
                                published[t * KEPT + k].store(*slot as usize, Ordering::Release);
                            }
                        } else {
                            for slot in &mut kept {
                                // SAFETY: blocks allocated in the previous phase.
                                unsafe { libc::free(*slot) };
                            }
                        }
                        acks.fetch_add(1, Ordering::AcqRel);
                        // No churn until the main thread has counted.
                        while phase.load(Ordering::Acquire) == p {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        // Thread start-up registers thread-local destructors (a calloc in glibc): let it
        // happen before the first count.
        while started.load(Ordering::Acquire) < WORKERS {
            std::thread::yield_now();
        }
        let wait_acks = |n: usize| {
            while acks.load(Ordering::Acquire) < n {
                std::thread::yield_now();
            }
        };
        let kept_bytes: i64 = (0..WORKERS)
            .map(|t| (0..KEPT).map(|k| (100 + 10 * t + k) as i64).sum::<i64>())
            .sum();
        for round in 0..100u32 {
            install(None).unwrap();
            // Stacks are captured in every other round: capture runs inside the hooks too.
            set_capture(round % 2 == 1);
            assert!(installed());
            set_run(1);
            phase.store(3 * round + 1, Ordering::Release);
            wait_acks(WORKERS * (2 * round as usize + 1));
            let kept: Vec<*mut libc::c_void> = published
                .iter()
                .map(|p| p.load(Ordering::Acquire) as *mut libc::c_void)
                .collect();
            assert_eq!(
                live_of(&kept),
                ((WORKERS * KEPT) as i64, kept_bytes),
                "round {round}: kept blocks"
            );
            phase.store(3 * round + 2, Ordering::Release);
            wait_acks(WORKERS * (2 * round as usize + 2));
            assert_eq!(live_of(&kept), (0, 0), "round {round}: after the frees");
            phase.store(3 * round + 3, Ordering::Release);
            uninstall();
            assert!(!installed());
            assert!(
                got_snapshot() == before,
                "round {round}: GOT entries differ after removal"
            );
            reset();
        }
        stop.store(true, Ordering::Release);
        for w in workers {
            w.join().unwrap();
        }
    }
}

#[cfg(test)]
mod foreign_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Another tool's hook (memray, a profiler) in a GOT entry: tracking refuses, says so,
    /// and changes nothing.
    #[test]
    fn entries_hooked_by_another_tool_are_left_alone() {
        let _serial = super::tests::serial();
        assert!(hooks::resolve());
        let malloc = REAL[0].load(Ordering::Relaxed);
        // Stand-in for a foreign hook: another function, in another object than the
        // patched one (libc's valloc has malloc's prototype).
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let foreign = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"valloc".as_ptr()) } as usize;
        let mut target: Option<(elf::Object, usize)> = None;
        elf::for_each_object(|o| {
            if target.is_none() && o.path().to_bytes().is_empty() {
                o.for_each_got(|addr, name, _, _| {
                    // SAFETY: addr is a GOT entry of the loaded main program.
                    if name == c"malloc" && unsafe { elf::read(addr) } == malloc {
                        target = Some((*o, addr));
                    }
                });
            }
        });
        let (object, addr) = target.expect("the test program imports malloc");
        // SAFETY: valloc has malloc's prototype; the entry is restored below.
        assert!(unsafe { object.write(addr, foreign) });
        let before = got_snapshot();
        let refused = install(None);
        let after = got_snapshot();
        // SAFETY: restoring the entry's value.
        assert!(unsafe { object.write(addr, malloc) });
        let Err(why) = refused else {
            uninstall();
            panic!("installed over a foreign hook");
        };
        assert!(why.0.contains("already points elsewhere"), "{}", why.0);
        assert!(
            before == after,
            "an entry changed although installation was refused"
        );
    }
}
