//! Exact native allocation tracking, as a check uses it: which blocks allocated during a
//! run are still alive, and where they were allocated.
//!
//! The mechanism lives behind the OS boundary (`sys/linux/track`: GOT hooks, the live
//! table, stack capture); this module holds what every front end sees: the [`Site`] and
//! [`Frame`] of a report, the RAII [`Tracking`] guard that guarantees the hooks come out
//! whatever happens to the check (an error, a panic, a Python exception or Ctrl-C, which
//! reach the driver as errors), and the frame filtering that turns raw stacks into sites.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::sys::backend::track as sys;

/// Runs whose survivors are counted apart; later runs share the last count.
pub(crate) const MAX_RUNS: usize = sys::MAX_RUNS;

/// One frame of an allocation site: a native function, or the line of a runtime's code
/// (Python) that was running when the allocation was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Frame {
    /// Function name, demangled; `None` where the object has no symbol for the address.
    pub function: Option<String>,
    /// Source file, where debug information (DWARF) or the runtime says.
    pub file: Option<String>,
    /// Line in `file`.
    pub line: Option<u32>,
    /// Path of the shared object or program holding the code (native frames).
    pub object: Option<String>,
    /// Offset of the address in `object` (`addr2line -e object offset`).
    pub offset: Option<u64>,
    /// A frame of the runtime's own code (Python), not native code.
    pub python: bool,
}

impl Frame {
    /// `function (file:line)`, or what is known of it.
    pub fn describe(&self) -> String {
        let function = self.function.as_deref().unwrap_or("??");
        match (&self.file, self.line, &self.object, self.offset) {
            (Some(file), Some(line), _, _) => format!("{function} ({file}:{line})"),
            (Some(file), None, _, _) => format!("{function} ({file})"),
            (None, _, Some(object), Some(offset)) => format!("{function} ({object}+{offset:#x})"),
            _ => function.to_string(),
        }
    }
}

/// Where blocks that a check's calls left alive were allocated: one distinct stack, with
/// how much it leaves per call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Site {
    /// Bytes left alive per call by allocations made here.
    pub bytes_per_call: f64,
    /// Blocks left alive per call.
    pub blocks_per_call: f64,
    /// Innermost first: the allocating call, its callers, then the runtime's line (Python).
    pub frames: Vec<Frame>,
    /// Threads other than the one running the check that made these allocations, by id,
    /// at most [`SITE_THREADS`] of them (a worker thread, a thread the function started);
    /// empty when the checking thread made them all.
    pub threads: Vec<SiteThread>,
    /// How many such threads there were (a thread started per call: one per call).
    pub thread_count: usize,
    /// No block made here outlived the function's later calls, which freed each and made
    /// a larger one (a buffer replaced by a larger copy on every call): the figures per
    /// call are what the blocks alive grew by, not blocks left alive.
    pub replaced: bool,
}

/// Most threads a [`Site`] lists.
pub const SITE_THREADS: usize = 4;

/// A thread that allocated blocks of a [`Site`], as it was at the allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SiteThread {
    /// Kernel thread id (`gettid`).
    pub tid: u32,
    /// Its name (`PR_GET_NAME`; "" where unnamed or unknown).
    pub name: String,
}

/// A stack recorded by the where run, as the backend hands it over.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedStack {
    /// The front end's location token (0: none).
    pub(crate) host: u64,
    /// Return addresses, innermost first.
    pub(crate) ips: Vec<usize>,
    /// The allocating thread's id and name.
    pub(crate) tid: u32,
    pub(crate) thread_name: String,
}

impl Site {
    /// ", in thread 'name' (tid N)" or ", in N threads ('a', 'b')": where the blocks were
    /// allocated when not by the thread running the check; "" otherwise.
    pub fn threads_text(&self) -> String {
        match self.threads.as_slice() {
            [] => String::new(),
            [t] if self.thread_count == 1 => format!(", in thread '{}' (tid {})", t.name, t.tid),
            threads => {
                let mut names: Vec<String> = Vec::new();
                for t in threads {
                    let quoted = format!("'{}'", t.name);
                    if !names.contains(&quoted) {
                        names.push(quoted);
                    }
                }
                format!(", in {} threads ({})", self.thread_count, names.join(", "))
            }
        }
    }
}

/// Sets the current thread's location in the front end's runtime, an opaque token that
/// stack capture records beside the native frames (0: none). The Python binding sets it
/// from a profile hook to the code object and line about to call native code, and
/// resolves it back with [`crate::Host::location`]. Cheap: one thread-local store.
pub fn set_host_location(token: u64) {
    sys::set_host_location(token);
}

/// A runtime's own allocator as CPython describes one (`PyMemAllocatorEx`,
/// Include/cpython/pymem.h, the same layout since Python 3.5): a context and four
/// functions that receive it. See [`route_runtime_allocator`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RuntimeAllocator {
    /// Passed to each function as its first argument.
    pub ctx: *mut std::ffi::c_void,
    /// `malloc(ctx, size)`.
    pub malloc: Option<unsafe extern "C" fn(*mut std::ffi::c_void, usize) -> *mut std::ffi::c_void>,
    /// `calloc(ctx, nelem, elsize)`.
    pub calloc: Option<unsafe extern "C" fn(*mut std::ffi::c_void, usize, usize) -> *mut std::ffi::c_void>,
    /// `realloc(ctx, ptr, size)`.
    pub realloc: Option<
        unsafe extern "C" fn(*mut std::ffi::c_void, *mut std::ffi::c_void, usize) -> *mut std::ffi::c_void,
    >,
    /// `free(ctx, ptr)`.
    pub free: Option<unsafe extern "C" fn(*mut std::ffi::c_void, *mut std::ffi::c_void)>,
}

/// An allocator that forwards to `*original` and records the blocks it hands out with
/// allocation tracking, as the GOT hooks record `malloc`'s: for a runtime whose objects
/// come from its own arenas (CPython's pymalloc), which the hooks never see. The Python
/// binding installs it (`PyMem_SetAllocator`) for the where run only, so that a leaked
/// object's site names the C function that created it, not only the Python line. Where
/// tracking does not exist, it is `*original` itself.
///
/// # Safety
///
/// `original` must point to a valid allocator that stays valid, unchanged, for as long as
/// the returned allocator is installed.
pub unsafe fn route_runtime_allocator(original: *const RuntimeAllocator) -> RuntimeAllocator {
    // SAFETY: the caller's promise.
    unsafe { sys::runtime_wrapper(original) }
}

/// Runs `f` with allocation recording paused on the current thread: what it allocates
/// never counts as the checked function's. For a front end's own work during the calls
/// (the Python binding's profile hook, which notes where the interpreter is).
pub fn untracked<R>(f: impl FnOnce() -> R) -> R {
    sys::paused(f)
}

/// Hooks installed for one check. Dropping it removes them and forgets every block.
pub(crate) struct Tracking {
    _installed: (),
}

impl Tracking {
    /// Installs the hooks; `Err` says why tracking cannot run here. `runtime`: an address
    /// in the front end's runtime, whose own arena mappings are not counted.
    pub(crate) fn start(runtime: Option<usize>) -> Result<Tracking, String> {
        sys::install(runtime).map_err(|e| e.0)?;
        Ok(Tracking { _installed: () })
    }

    /// New blocks belong to `run` (1-based) from now on; 0: not recorded.
    pub(crate) fn set_run(&self, run: u32) {
        sys::set_run(run);
    }

    /// Turns stack capture on or off.
    pub(crate) fn set_capture(&self, on: bool) {
        if on {
            sys::resize_sites(); // what an earlier capture counted
        }
        sys::set_capture(on);
    }

    /// Live (blocks, bytes) allocated by runs 1, 2, ... (index 0 = run 1). An array, not a
    /// `Vec`: read between two samples, it must not allocate (a freed 1 KiB block stays in
    /// glibc's tcache, which `mallinfo2` counts as in use).
    pub(crate) fn survivors(&self) -> [(i64, i64); sys::MAX_RUNS] {
        sys::survivors()
    }

    /// Bytes by which runs 1, 2, ... (index 0 = run 1) resized blocks they did not make
    /// (`realloc`, `mremap`), net: see [`crate::verdict::Run::resized`].
    pub(crate) fn resized(&self) -> [i64; sys::MAX_RUNS] {
        sys::resized()
    }

    /// Survivors of runs 1, 2, ... (index 0 = run 1) that nothing in the process points
    /// to any more, (blocks, bytes): leaked for certain, where a cache keeps a pointer to
    /// what it holds. `None` where the scan cannot answer. Maps what it needs from the
    /// kernel and gives it back, so the samples around it see no growth.
    pub(crate) fn lost(&self) -> Option<[(i64, i64); sys::MAX_RUNS]> {
        sys::lost()
    }

    /// Address space the tracker holds (its table and stacks), bytes; all of it resident.
    pub(crate) fn bytes() -> u64 {
        sys::tracker_bytes() as u64
    }

    /// The blocks allocated in `run` and alive now, by stack: (blocks, bytes).
    /// Allocates nothing that a run records: it may be called during one.
    pub(crate) fn held(&self, run: u32) -> HashMap<u16, (i64, i64)> {
        sys::paused(|| {
            let mut by_stack: HashMap<u16, (i64, i64)> = HashMap::new();
            for b in sys::live_blocks().iter().filter(|b| b.run == run) {
                let e = by_stack.entry(b.stack).or_default();
                e.0 += 1;
                e.1 += b.size as i64;
            }
            by_stack
        })
    }

    /// The sites of blocks allocated in `run` and still alive, largest first, at most
    /// `limit`. `runtime` is an address inside the front end's runtime (the Python
    /// interpreter): native frames of that object beyond the extension's are dropped, and
    /// `location` turns the recorded host token into the runtime's frame.
    pub(crate) fn sites(
        &self,
        run: u32,
        calls: u64,
        limit: usize,
        runtime: Option<usize>,
        location: &mut dyn FnMut(u64) -> Option<Frame>,
    ) -> Vec<Site> {
        self.sites_of(self.held(run), calls, limit, runtime, location, false)
    }

    /// The sites of what grew from `before` to `after` (both [`Tracking::held`] of one
    /// run, `calls` apart), largest first: blocks that later calls free and replace with
    /// larger ones (a buffer copied into a larger one on every call) leave no survivor, but
    /// what a site holds grows with the calls.
    pub(crate) fn growing_sites(
        &self,
        before: &HashMap<u16, (i64, i64)>,
        after: HashMap<u16, (i64, i64)>,
        calls: u64,
        limit: usize,
        runtime: Option<usize>,
        location: &mut dyn FnMut(u64) -> Option<Frame>,
    ) -> Vec<Site> {
        let grown = after
            .into_iter()
            .filter_map(|(stack, (n, bytes))| {
                let (n0, bytes0) = before.get(&stack).copied().unwrap_or_default();
                (bytes > bytes0).then_some((stack, ((n - n0).max(0), bytes - bytes0)))
            })
            .collect();
        self.sites_of(grown, calls, limit, runtime, location, true)
    }

    /// The sites of blocks that `calls` calls with stack capture on resized without making
    /// them (a buffer grown by realloc on every call: see `sys::resize_sites`), largest
    /// first, as [`Site::replaced`] sites.
    pub(crate) fn resized_sites(
        &self,
        calls: u64,
        limit: usize,
        runtime: Option<usize>,
        location: &mut dyn FnMut(u64) -> Option<Frame>,
    ) -> Vec<Site> {
        let grown = sys::resize_sites()
            .into_iter()
            .filter(|&(_, bytes)| bytes > 0)
            .map(|(stack, bytes)| (stack, (0, bytes)))
            .collect();
        self.sites_of(grown, calls, limit, runtime, location, true)
    }

    /// Sites of `by_stack` ((blocks, bytes) by stack id) over `calls` calls.
    fn sites_of(
        &self,
        by_stack: HashMap<u16, (i64, i64)>,
        calls: u64,
        limit: usize,
        runtime: Option<usize>,
        location: &mut dyn FnMut(u64) -> Option<Frame>,
        replaced: bool,
    ) -> Vec<Site> {
        let runtime_base = runtime.and_then(sys::object_of).map(|(_, base)| base);
        let mut resolved: HashMap<usize, Vec<sys::Resolved>> = HashMap::new();
        let checking_thread = sys::current_thread_id();
        let mut by_frames: HashMap<Vec<Frame>, (i64, i64, BTreeSet<SiteThread>)> = HashMap::new();
        sys::paused(|| {
            let mut symbolizer = sys::Symbolizer::default();
            for (stack, (n, bytes)) in by_stack {
                let CapturedStack {
                    host: token,
                    ips,
                    tid,
                    thread_name,
                } = sys::stack(stack).unwrap_or_default();
                // Resolved lazily, innermost first, only as far as the frames are kept: the
                // interpreter's and libc's frames below the kept ones would cost their
                // objects' DWARF (a compressed libc debug file is inflated whole).
                // psleak's own frames on top (the hooks) are dropped unresolved (their
                // names would cost a symbol table of psleak's own object per report), and
                // so are the runtime's frames where the shown part ends.
                let shown = sys::shown(&ips);
                let ips: Vec<usize> = ips
                    .into_iter()
                    .take(shown)
                    .skip_while(|&ip| sys::is_own(ip))
                    .collect();
                let caller = (token != 0).then(|| location(token)).flatten();
                // The runtime's own bookkeeping (every frame in the runtime, no caller in its
                // language) is dropped below; known by address, it is not even resolved
                // (the interpreter's DWARF, for an entry the runtime added to a cache).
                if caller.is_none() && ips.iter().all(|&ip| sys::in_runtime(ip)) {
                    continue;
                }
                let frames = ips.into_iter().flat_map(|ip| {
                    let r = resolved
                        .entry(ip)
                        .or_insert_with(|| symbolizer.resolve(ip, &|name| !is_entry(name)));
                    r.iter()
                        .map(|r| (r.frame.clone(), r.object_base))
                        .collect::<Vec<_>>()
                });
                let (mut kept, own_code) = keep_frames(frames, runtime_base);
                // Neither native code of its own nor a caller in the runtime's language:
                // the runtime's (or psleak's) own bookkeeping, not the function's.
                if !own_code && caller.is_none() {
                    continue;
                }
                // An object the runtime made for a line of its own language: the line says
                // where, and the innermost few of the runtime's frames which object (the
                // rest was its evaluation loop, six frames of it).
                if !own_code {
                    kept.truncate(RUNTIME_FRAMES_UNDER_CALLER);
                }
                kept.extend(caller);
                let e = by_frames.entry(kept).or_default();
                e.0 += n;
                e.1 += bytes;
                if tid != 0 && tid != checking_thread {
                    e.2.insert(SiteThread {
                        tid,
                        name: thread_name,
                    });
                }
            }
        });
        let calls = calls.max(1) as f64;
        let mut sites: Vec<Site> = by_frames
            .into_iter()
            .map(|(frames, (n, bytes, threads))| Site {
                bytes_per_call: bytes as f64 / calls,
                blocks_per_call: n as f64 / calls,
                frames,
                thread_count: threads.len(),
                threads: threads.into_iter().take(SITE_THREADS).collect(),
                replaced,
            })
            .collect();
        sites.sort_by(|a, b| {
            b.bytes_per_call
                .total_cmp(&a.bytes_per_call)
                .then(b.blocks_per_call.total_cmp(&a.blocks_per_call))
        });
        sites.truncate(limit);
        sites
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        sys::uninstall();
        sys::reset();
    }
}

/// Whether a function is psleak's own (hooks, driver, binding): Rust paths of the crates.
fn is_psleak(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("psleak::") || f.starts_with("_psleak::") || f.starts_with("psleak_python::")
}

/// Whether an object is foreign-function glue between the runtime and the C code it calls:
/// libffi (the system's, or a copy a wheel bundles as `libffi-<hash>.so`) and the modules
/// that drive it (`_ctypes`, cffi's `_cffi_backend`). A C function called through ctypes or
/// cffi is the code under test; the glue frames below it said nothing the Python caller's
/// line does not (three of libffi, then `_ctypes_callproc` and its callers).
fn is_glue(object: &str) -> bool {
    let file = object.rsplit(['/', '\\']).next().unwrap_or(object);
    file.starts_with("libffi.")
        || file.starts_with("libffi-")
        || file.starts_with("_ctypes.")
        || file.starts_with("_cffi_backend.")
}

/// Frames that start a thread or a program: they say nothing about the allocation.
fn is_entry(function: &str) -> bool {
    matches!(
        function,
        "start_thread"
            | "clone"
            | "clone3"
            | "__clone"
            | "__clone3"
            | "_start"
            | "__libc_start_main"
            | "__libc_start_call_main"
    ) || function.starts_with("std::sys::") && (function.contains("thread") || function.contains("backtrace"))
}

/// Most frames of the runtime kept when the allocation is the runtime's own (a leak
/// inside the interpreter): enough to see which of its functions allocated.
pub(crate) const RUNTIME_FRAMES: usize = 6;

/// Of those, the frames kept when a line of the runtime's language made the allocation:
/// what kind of object it was (`PyByteArray_Resize`, `bytearray___init___impl`), the line
/// saying where.
const RUNTIME_FRAMES_UNDER_CALLER: usize = 3;

/// From a raw stack (innermost first, with each frame's object base): drops psleak's own
/// frames at the top (the hooks, stack capture: everything up to the last hook frame), then
/// keeps the frames of the code under test, and stops at psleak's driver, at a thread's
/// entry, or where the stack enters the runtime (`runtime_base`) or foreign-function glue
/// ([`is_glue`]) after leaving it. Also
/// says whether any kept frame is outside the runtime (native code under test). Consumes
/// `frames` only as far as it keeps them, so that a lazy stack resolves no more.
fn keep_frames(
    frames: impl IntoIterator<Item = (Frame, usize)>,
    runtime_base: Option<usize>,
) -> (Vec<Frame>, bool) {
    let name = |f: &Frame| f.function.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut native_seen = false;
    let mut runtime_kept = 0;
    // Until a hook frame has been passed, frames are psleak's own (stack capture).
    let mut hooked = false;
    for (f, base) in frames {
        let n = name(&f);
        if n.contains("track::hooks::") {
            // A hook deeper in the stack (a constructor run by a hooked dlopen allocated):
            // what came before it is the hook's own work; start again after it.
            out.clear();
            native_seen = false;
            runtime_kept = 0;
            hooked = true;
            continue;
        }
        if !hooked && is_psleak(&n) {
            continue;
        }
        hooked = true;
        if is_psleak(&n) || is_entry(&n) {
            break;
        }
        // Below native code, glue calling it ends the kept part as the runtime does.
        if native_seen && f.object.as_deref().is_some_and(is_glue) {
            break;
        }
        let in_runtime = runtime_base.is_some_and(|b| b == base);
        if in_runtime {
            if native_seen || runtime_kept == RUNTIME_FRAMES {
                break;
            }
            runtime_kept += 1;
        } else {
            native_seen = true;
        }
        out.push(f);
    }
    (out, native_seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Frame {
        Frame {
            function: Some(name.into()),
            file: None,
            line: None,
            object: None,
            offset: None,
            python: false,
        }
    }

    fn names(frames: &[Frame]) -> Vec<&str> {
        frames.iter().filter_map(|f| f.function.as_deref()).collect()
    }

    #[test]
    fn hooks_and_driver_frames_are_dropped() {
        let raw = vec![
            (f("psleak::sys::linux::track::stacks::capture"), 1),
            (f("psleak::sys::linux::track::hooks::record"), 1),
            (f("psleak::sys::linux::track::hooks::malloc"), 1),
            (f("leak_malloc"), 2),
            (f("ffi_malloc::leaks::{{closure}}"), 1),
            (
                f("<psleak::testing::ClosureHost<F> as psleak::check::Host>::call"),
                1,
            ),
            (f("main"), 1),
        ];
        assert_eq!(
            names(&keep_frames(raw, None).0),
            ["leak_malloc", "ffi_malloc::leaks::{{closure}}"]
        );
    }

    #[test]
    fn the_runtime_is_cut_after_the_extension() {
        let raw = vec![
            (f("psleak::sys::linux::track::hooks::malloc"), 1),
            (f("leaky_function"), 2),
            (f("cfunction_vectorcall_NOARGS"), 3),
            (f("_PyEval_EvalFrameDefault"), 3),
        ];
        assert_eq!(names(&keep_frames(raw, Some(3)).0), ["leaky_function"]);
    }

    #[test]
    fn ffi_glue_below_the_code_under_test_is_cut() {
        let on = |name: &str, object: &str| Frame {
            object: Some(object.into()),
            ..f(name)
        };
        let raw = vec![
            (f("psleak::sys::linux::track::hooks::malloc"), 1),
            (on("operator new(unsigned long)", "/lib/libstdc++.so.6"), 4),
            (on("cpp_new_leak", "/tmp/libleaky.so"), 2),
            (on("ffi_call", "/lib/x86_64-linux-gnu/libffi.so.8"), 5),
            (
                on(
                    "_ctypes_callproc",
                    "/py/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so",
                ),
                6,
            ),
            (f("_PyEval_EvalFrameDefault"), 3),
        ];
        let (kept, own_code) = keep_frames(raw, Some(3));
        assert_eq!(names(&kept), ["operator new(unsigned long)", "cpp_new_leak"]);
        assert!(own_code);
        // cffi's module and a libffi copy bundled by a wheel are glue too.
        assert!(is_glue(
            "/site-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so"
        ));
        assert!(is_glue("/site-packages/cffi.libs/libffi-40e64bc8.so.8.1.2"));
        assert!(!is_glue("/usr/lib/libffitest.so") && !is_glue("/tmp/libleaky.so"));
        // A leak inside the glue itself (no native frame above it) keeps its frames.
        let raw = vec![
            (f("psleak::sys::linux::track::hooks::malloc"), 1),
            (on("_ctypes_alloc_format_string", "/py/_ctypes.cpython-311.so"), 6),
            (f("_PyEval_EvalFrameDefault"), 3),
        ];
        assert_eq!(
            names(&keep_frames(raw, Some(3)).0),
            ["_ctypes_alloc_format_string"]
        );
    }

    #[test]
    fn a_leak_inside_the_runtime_keeps_a_few_of_its_frames() {
        let mut raw = vec![(f("psleak::sys::linux::track::hooks::malloc"), 1)];
        raw.extend((0..10).map(|i| (f(&format!("py_{i}")), 3)));
        assert_eq!(keep_frames(raw, Some(3)).0.len(), RUNTIME_FRAMES);
    }

    #[test]
    fn thread_entry_frames_end_the_stack() {
        let raw = vec![
            (f("psleak::sys::linux::track::hooks::malloc"), 1),
            (f("worker"), 2),
            (f("start_thread"), 4),
            (f("clone3"), 4),
        ];
        assert_eq!(names(&keep_frames(raw, None).0), ["worker"]);
    }

    #[test]
    fn sites_say_which_threads_allocated() {
        let thread = |tid: u32, name: &str| SiteThread {
            tid,
            name: name.into(),
        };
        let mut site = Site {
            bytes_per_call: 80.0,
            blocks_per_call: 1.0,
            frames: Vec::new(),
            threads: Vec::new(),
            thread_count: 0,
            replaced: false,
        };
        assert_eq!(site.threads_text(), "");
        site.threads = vec![thread(7, "worker")];
        site.thread_count = 1;
        assert_eq!(site.threads_text(), ", in thread 'worker' (tid 7)");
        site.threads = vec![thread(7, "a"), thread(8, "b"), thread(9, "a")];
        site.thread_count = 200;
        assert_eq!(site.threads_text(), ", in 200 threads ('a', 'b')");
    }

    #[test]
    fn frames_describe_themselves() {
        let mut fr = f("leak");
        fr.object = Some("/lib/x.so".into());
        fr.offset = Some(0x1234);
        assert_eq!(fr.describe(), "leak (/lib/x.so+0x1234)");
        fr.file = Some("x.c".into());
        fr.line = Some(7);
        assert_eq!(fr.describe(), "leak (x.c:7)");
    }
}
