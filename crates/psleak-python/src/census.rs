//! A reference-count census: the reference count of every object the garbage collector
//! tracks and of every object they refer to, read without creating a single Python object.
//!
//! Why here and not in Python: a Python census would hold each referent in a list (one more
//! reference per occurrence), build an int per count and a dict of a million entries, and
//! would see its own objects. Here the referents are visited through the type's
//! `tp_traverse` slot (what `gc.get_referents()` does, without the list), counts are read
//! with `Py_REFCNT`, and the result is a sorted vector of (address, count) pairs: 16 bytes
//! an object. No Python code runs during a census, so no count changes while it is taken.
//!
//! Addresses identify objects only while they are alive, so a comparison is made within one
//! call ([`census_growth`]) that returns the objects themselves, alive, and never turns a
//! stored address back into an object.

use std::cell::RefCell;
use std::os::raw::{c_int, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// An object's address and reference count.
type Entry = (usize, isize);

/// Entries sorted by address, one per object.
type Entries = Vec<Entry>;

/// The reference counts of a set of objects at one moment (see the module docs).
#[pyclass(module = "psleak._psleak", frozen)]
pub struct Census {
    entries: Entries,
    tracked: usize,
}

#[pymethods]
impl Census {
    /// Objects counted: those tracked by the collector, then the referents not tracked.
    fn __len__(&self) -> usize {
        self.entries.len()
    }

    /// How many of the objects counted came from the collector's list.
    #[getter]
    fn tracked(&self) -> usize {
        self.tracked
    }

    /// Bytes the census holds.
    #[getter]
    fn nbytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(usize, isize)>()
    }

    fn __repr__(&self) -> String {
        format!(
            "<psleak census of {} objects ({} tracked)>",
            self.entries.len(),
            self.tracked
        )
    }
}

/// Whether a reference count marks an immortal object (CPython 3.12+, 64-bit builds):
/// `_Py_IsImmortal()` in Include/object.h tests `(int32_t)ob_refcnt < 0`.
fn immortal(count: isize) -> bool {
    (count as i32) < 0
}

/// What the visit callback collects.
struct Referents {
    out: Entries,
    /// The objects of the collector's list, with their counts.
    own: Entries,
    /// Scratch space of [`sort_by_address`].
    sort: Entries,
    /// Skip referents the collector tracks: they are in its list already (nothing is frozen).
    skip_tracked: bool,
    skip_immortal: bool,
    /// Length at which `out` is sorted and deduplicated (the same few objects, `None` or a
    /// common key string, are referred to by most of a large heap).
    compact_at: usize,
    /// Untracked containers entered to reach the referents being visited.
    depth: u32,
    /// Referents met but not read yet, with the depth they were met at: `visit` only
    /// queues them, and [`drain`] reads them in order with their headers prefetched some
    /// entries ahead. Read one by one as met, each was a cache miss waited for in turn
    /// (three quarters of a census's time went to one load, the referent's type).
    pending: Vec<(usize, u32)>,
    types: Types,
    /// The referents met last, direct-mapped by address: most visits meet the same few
    /// thousand objects (`None`, small ints, attribute-name strings, classes), and a repeat
    /// found here is neither read, pushed nor entered again. Nothing is lost: no Python
    /// code runs during a census, so a repeat has the count already recorded (or was
    /// skipped for a reason that still holds). It halves what [`compact`] sorts.
    recent: Vec<usize>,
}

/// Slots of [`Referents::recent`]: 256 KiB, within a core's L2 cache.
const RECENT_SLOTS: usize = 1 << 15;

/// The slot of an address in [`Referents::recent`] (Fibonacci hashing: objects are
/// 16-byte aligned and often allocated in runs).
fn recent_slot(addr: usize) -> usize {
    ((addr as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 49) as usize
}

/// What the census needs to know of a type, looked up once per census.
#[derive(Clone, Copy)]
struct TypeInfo {
    tp: usize,
    /// `Py_TPFLAGS_HAVE_GC`: only such objects can be tracked or traversed.
    gc: bool,
    is_gc: Option<ffi::inquiry>,
    traverse: Option<ffi::traverseproc>,
}

/// A direct-mapped cache of [`TypeInfo`] by type address: a census meets a few hundred
/// types a million times, and each lookup would otherwise be three calls into libpython.
/// Types cannot go away during a census (no Python code runs).
struct Types {
    slots: Vec<TypeInfo>,
}

const TYPE_SLOTS: usize = 1024;

const NO_TYPE: TypeInfo = TypeInfo {
    tp: 0,
    gc: false,
    is_gc: None,
    traverse: None,
};

impl Types {
    fn new() -> Types {
        Types {
            slots: vec![NO_TYPE; TYPE_SLOTS],
        }
    }

    /// Forgets every type: one may have been freed, and its address reused, since.
    fn clear(&mut self) {
        self.slots.fill(NO_TYPE);
    }

    fn info(&mut self, tp: *mut ffi::PyTypeObject) -> TypeInfo {
        let i = (tp as usize >> 4) % TYPE_SLOTS;
        let slot = self.slots[i];
        if slot.tp == tp as usize {
            return slot;
        }
        let info = type_info(tp);
        self.slots[i] = info;
        info
    }

    /// The `tp_traverse` of `obj`, if it is a collector object (`PyObject_IS_GC()` in
    /// Include/internal/pycore_object.h: the type has `Py_TPFLAGS_HAVE_GC` and its
    /// `tp_is_gc`, if any, says yes; static type objects say no, and their `tp_traverse`
    /// must not be called).
    fn traverse_of(&mut self, obj: *mut ffi::PyObject) -> Option<ffi::traverseproc> {
        // SAFETY: `obj` is a live object (borrowed from the list we hold, or handed over
        // by tp_traverse): its type is alive; tp_is_gc only reads the object.
        let info = self.info(unsafe { ffi::Py_TYPE(obj) });
        if !info.gc {
            return None;
        }
        if let Some(is_gc) = info.is_gc {
            // SAFETY: as above.
            if unsafe { is_gc(obj) } == 0 {
                return None;
            }
        }
        info.traverse
    }
}

/// How deep untracked containers are entered (a tuple of tuples of atoms is untracked too).
const MAX_UNTRACKED_DEPTH: u32 = 4;

/// Referents recorded before `out` is first sorted and deduplicated on the way: 4M entries
/// (64 MiB). [`Referents::recent`] already drops most repeats as they are met, so a heap of
/// a million objects (3M entries) is sorted once, at the end: compacting from 64K entries
/// on, doubling, sorted the same entries again and again (a third of the census's time)
/// and raised the peak with each sort's scratch. Past this, repeats the recent-cache
/// missed are dropped as before, so that memory stays bounded by the distinct objects.
const MIN_COMPACT: usize = 1 << 22;

/// Queued referents that make [`take`] stop and read them (see `Referents::pending`).
const DRAIN_AT: usize = 4096;

fn compact(entries: &mut Entries, scratch: &mut Entries) {
    sort_by_address(entries, scratch);
    entries.dedup_by_key(|e| e.0);
}

/// Sorts entries by address: a least-significant-digit radix sort, one byte per pass,
/// skipping the bytes every address shares (the high ones, mostly). Addresses are 16-byte
/// aligned by CPython's allocators, and spread over a few GiB at most: three or four passes
/// instead of the log2(n) of a comparison sort over a few million entries.
fn sort_by_address(entries: &mut Entries, scratch: &mut Entries) {
    if entries.len() < 1024 {
        entries.sort_unstable_by_key(|e| e.0);
        return;
    }
    let (mut and, mut or) = (usize::MAX, 0usize);
    for e in entries.iter() {
        and &= e.0;
        or |= e.0;
    }
    let varying = and ^ or;
    scratch.clear();
    scratch.resize(entries.len(), (0, 0));
    let mut src_is_entries = true;
    for shift in (0..usize::BITS).step_by(8) {
        if (varying >> shift) & 0xff == 0 {
            continue;
        }
        let (src, dst): (&[Entry], &mut [Entry]) = if src_is_entries {
            (entries.as_slice(), scratch.as_mut_slice())
        } else {
            (scratch.as_slice(), entries.as_mut_slice())
        };
        let mut counts = [0usize; 257];
        for e in src {
            counts[((e.0 >> shift) & 0xff) + 1] += 1;
        }
        for i in 1..257 {
            counts[i] += counts[i - 1];
        }
        for e in src {
            let d = (e.0 >> shift) & 0xff;
            dst[counts[d]] = *e;
            counts[d] += 1;
        }
        src_is_entries = !src_is_entries;
    }
    if !src_is_entries {
        entries.copy_from_slice(scratch);
    }
}

/// The `visitproc` given to `tp_traverse`: queues one referent for [`drain`].
unsafe extern "C" fn visit(obj: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
    if obj.is_null() || arg.is_null() {
        return 0;
    }
    // SAFETY: `arg` is the `Referents` that `take` or `drain` passed to tp_traverse, alive,
    // and not otherwise borrowed during the call.
    let r = unsafe { &mut *arg.cast::<Referents>() };
    // A repeat is decided before the object is read at all: most visits meet the same few
    // objects. Skipped objects stay in `recent` too: skipped again, unread, when met again.
    let slot = recent_slot(obj as usize);
    if r.recent[slot] == obj as usize {
        return 0;
    }
    r.recent[slot] = obj as usize;
    r.pending.push((obj as usize, r.depth));
    0
}

/// How many queued referents ahead [`drain`] prefetches: enough misses in flight to cover
/// the memory latency, few enough that the lines are still cached when read.
const PREFETCH_AHEAD: usize = 16;

/// Asks for the cache lines of an object's header and of the collector's header before it
/// (`PyObject_GC_IsTracked` reads that one). A hint only: nothing is read or faulted.
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch instructions never fault, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(addr.wrapping_sub(16) as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Reads the queued referents: records each one's count and enters the containers the
/// collector does not track (a dict or tuple of atoms: CPython untracks them), whose
/// referents join the queue, a few levels deep.
///
/// # Safety
/// `r` is the census's `Referents`, not otherwise borrowed; the GIL is held and no Python
/// code has run since the referents were queued (they are alive: something held them).
unsafe fn drain(r: *mut Referents) {
    let mut i = 0;
    loop {
        // SAFETY: `r` is valid (contract); this borrow ends before tp_traverse is called.
        let (obj, depth, ahead) = {
            let rr = unsafe { &mut *r };
            let Some(&(obj, depth)) = rr.pending.get(i) else {
                rr.pending.clear();
                return;
            };
            (obj, depth, rr.pending.get(i + PREFETCH_AHEAD).map(|e| e.0))
        };
        if let Some(a) = ahead {
            prefetch(a);
        }
        i += 1;
        let obj = obj as *mut ffi::PyObject;
        // SAFETY: as above; `obj` is a live object.
        let rr = unsafe { &mut *r };
        let count = unsafe { ffi::Py_REFCNT(obj) };
        // Only objects of GC types can be tracked (the call is made for those alone, which
        // saves a call into libpython per int or string).
        let tracked =
            rr.types.info(unsafe { ffi::Py_TYPE(obj) }).gc && unsafe { ffi::PyObject_GC_IsTracked(obj) } == 1;
        if (rr.skip_tracked && tracked) || (rr.skip_immortal && immortal(count)) {
            continue;
        }
        rr.out.push((obj as usize, count));
        if rr.out.len() >= rr.compact_at {
            compact(&mut rr.out, &mut rr.sort);
            rr.compact_at = (rr.out.len() * 2).max(MIN_COMPACT);
        }
        if !tracked && depth < MAX_UNTRACKED_DEPTH {
            if let Some(traverse) = rr.types.traverse_of(obj) {
                rr.depth = depth + 1;
                // SAFETY: as in `take`: tp_traverse of obj's own type, GIL held, live
                // object; `visit` only appends to the queue.
                unsafe {
                    traverse(obj, visit, r.cast::<c_void>());
                }
            }
        }
    }
}

/// Looks a type up: its GC flag and its `tp_is_gc` and `tp_traverse` slots.
/// `PyType_GetSlot` works on static types since CPython 3.10 (bpo-41073); on 3.9 it fails
/// for them (and sets an exception, cleared here: this is a probe, not an error), and
/// their objects' referents are not visited.
fn type_info(tp: *mut ffi::PyTypeObject) -> TypeInfo {
    // SAFETY: `tp` is the type of a live object; these calls only read it.
    unsafe {
        let mut info = TypeInfo {
            tp: tp as usize,
            gc: ffi::PyType_GetFlags(tp) & ffi::Py_TPFLAGS_HAVE_GC != 0,
            is_gc: None,
            traverse: None,
        };
        if info.gc {
            let is_gc = ffi::PyType_GetSlot(tp, ffi::Py_tp_is_gc);
            let traverse = ffi::PyType_GetSlot(tp, ffi::Py_tp_traverse);
            if !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
            }
            info.is_gc = (!is_gc.is_null()).then(|| std::mem::transmute::<*mut c_void, ffi::inquiry>(is_gc));
            info.traverse = (!traverse.is_null())
                .then(|| std::mem::transmute::<*mut c_void, ffi::traverseproc>(traverse));
        }
        info
    }
}

thread_local! {
    /// The buffers of a census, kept for the next one on the same thread while they are
    /// small (see [`MAX_SPARE_BYTES`]): taken twice per check, a census spent about half
    /// its time faulting in fresh pages for its vectors (the leak matrix's process, 33k
    /// objects counted: 4.2 ms a census, 1.8-2.3 ms with its buffers already mapped).
    static SPARE: RefCell<Option<Box<Referents>>> = const { RefCell::new(None) };
}

/// Most bytes of buffers kept between censuses: about a third of a million objects' worth.
const MAX_SPARE_BYTES: usize = 16 << 20;

impl Referents {
    fn new() -> Box<Referents> {
        Box::new(Referents {
            out: Vec::new(),
            own: Vec::new(),
            sort: Vec::new(),
            skip_tracked: false,
            skip_immortal: false,
            compact_at: MIN_COMPACT,
            depth: 0,
            pending: Vec::new(),
            types: Types::new(),
            recent: vec![0; RECENT_SLOTS],
        })
    }

    /// Ready for a new census: empty, and nothing remembered of the last one (the objects
    /// and types it met may have been freed, and their addresses reused, since).
    fn reset(&mut self, skip_tracked: bool, skip_immortal: bool) {
        self.out.clear();
        self.own.clear();
        self.pending.clear();
        self.recent.fill(0);
        self.types.clear();
        self.compact_at = MIN_COMPACT;
        self.depth = 0;
        self.skip_tracked = skip_tracked;
        self.skip_immortal = skip_immortal;
    }

    fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        (self.out.capacity() + self.own.capacity() + self.sort.capacity()) * entry
            + self.pending.capacity() * std::mem::size_of::<(usize, u32)>()
            + self.recent.capacity() * std::mem::size_of::<usize>()
            + self.types.slots.capacity() * std::mem::size_of::<TypeInfo>()
    }
}

/// Takes a census of `objects` (the list `gc.get_objects()` returned) and their referents,
/// and hands `done` the collector's objects and the referents, each sorted by address and
/// deduplicated, in buffers kept for the next census (see [`SPARE`]).
fn take<T>(
    objects: &Bound<'_, PyList>,
    skip_tracked: bool,
    skip_immortal: bool,
    done: impl FnOnce(&[Entry], &[Entry]) -> T,
) -> PyResult<T> {
    let mut referents = SPARE
        .with(|s| s.borrow_mut().take())
        .unwrap_or_else(Referents::new);
    referents.reset(skip_tracked, skip_immortal);
    clear_type_cache();
    let result = walk(objects, &mut referents).map(|()| done(&referents.own, &referents.out));
    if referents.bytes() <= MAX_SPARE_BYTES {
        SPARE.with(|s| *s.borrow_mut() = Some(referents));
    }
    result
}

/// Empties CPython's type attribute cache (`PyType_ClearCache`), as the last thing before
/// counts are read: each of its 4,096 entries holds a reference to a name, `None` once
/// emptied (before 3.12, where `None` is mortal), and every attribute lookup made between
/// an emptying and a reading fills one entry. Emptied only by the caller, before the
/// Python code that leads here, `None`'s count differed between two readings by the
/// lookups each made on the way (a reading reached through four more lookups than the
/// other: `None` up by 4, a candidate to confirm). Nothing runs between this and the
/// reading, so every reading sees every entry empty.
fn clear_type_cache() {
    // SAFETY: a plain C API call; the GIL is held (callers are called from Python). It may
    // free names the cache held, which runs no Python code (strings).
    unsafe {
        ffi::PyType_ClearCache();
    }
}

/// The census itself, into `referents` (reset): `own` and `out` end sorted and deduplicated.
fn walk(objects: &Bound<'_, PyList>, referents: &mut Referents) -> PyResult<()> {
    let list = objects.as_ptr();
    // SAFETY: `list` is a list (the type of `objects`), alive for this call.
    let n = unsafe { ffi::PyList_Size(list) };
    referents.own.reserve(n.max(0) as usize);
    let skip_immortal = referents.skip_immortal;
    for i in 0..n {
        if i + (PREFETCH_AHEAD as isize) < n {
            // SAFETY: in range; a borrowed reference, used as an address only.
            prefetch(unsafe { ffi::PyList_GetItem(list, i + PREFETCH_AHEAD as isize) } as usize);
        }
        // SAFETY: 0 <= i < len(list); PyList_GetItem returns a borrowed reference, so the
        // count read is the object's own plus the one the list holds. No Python code runs
        // in this loop (tp_traverse must not run any), so the list cannot change.
        let obj = unsafe { ffi::PyList_GetItem(list, i) };
        if obj.is_null() {
            return Err(PyErr::fetch(objects.py()));
        }
        // SAFETY: `obj` is alive (the list holds it).
        let count = unsafe { ffi::Py_REFCNT(obj) };
        if !(skip_immortal && immortal(count)) {
            // Less the list's own reference, so that the count is the same whether the
            // object is met in the list or as a referent.
            referents.own.push((obj as usize, count - 1));
        }
        if let Some(traverse) = referents.types.traverse_of(obj) {
            referents.depth = 0;
            let arg = std::ptr::from_mut(&mut *referents).cast::<c_void>();
            // SAFETY: `traverse` is the tp_traverse of obj's type, called as
            // gc.get_referents() calls it: with the GIL held, a live object, a visitproc
            // and its argument. The result is ignored: `visit` never stops the traversal.
            unsafe {
                traverse(obj, visit, arg);
            }
        }
        // The queue is read in batches: long enough for the prefetches to run ahead, short
        // enough to stay in the cache.
        if referents.pending.len() >= DRAIN_AT {
            // SAFETY: `referents` is not borrowed elsewhere; no Python code ran since the
            // referents were queued (the objects holding them are in the list we hold).
            unsafe { drain(&mut *referents) };
        }
    }
    // SAFETY: as above.
    unsafe { drain(&mut *referents) };
    let r = &mut *referents;
    compact(&mut r.own, &mut r.sort);
    compact(&mut r.out, &mut r.sort);
    Ok(())
}

/// The union of two sorted, deduplicated entry lists, in order; `first` wins on a shared
/// address (its counts are corrected for the list's reference).
fn merged<'a>(first: &'a [Entry], second: &'a [Entry]) -> impl Iterator<Item = Entry> + 'a {
    let (mut a, mut b) = (
        first.iter().copied().peekable(),
        second.iter().copied().peekable(),
    );
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 == y.0 => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x.0 < y.0 => a.next(),
        (Some(_), Some(_)) | (None, Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, None) => None,
    })
}

/// Reference counts of `objects` (a list from `gc.get_objects()`) and of every object they
/// refer to. `skip_tracked_referents`: referents the collector tracks are in `objects`
/// already (true unless objects are frozen with `gc.freeze()`). `skip_immortal`: leave out
/// immortal objects (CPython 3.12+).
#[pyfunction]
#[pyo3(signature = (objects, *, skip_tracked_referents, skip_immortal))]
pub fn refcount_census(
    objects: &Bound<'_, PyList>,
    skip_tracked_referents: bool,
    skip_immortal: bool,
) -> PyResult<Census> {
    take(objects, skip_tracked_referents, skip_immortal, |own, others| {
        let mut entries = Vec::with_capacity(own.len() + others.len());
        entries.extend(merged(own, others));
        Census {
            entries,
            tracked: own.len(),
        }
    })
}

/// Takes a census as [`refcount_census`] does and compares it with `before`: returns
/// `(object, count_before, count_after)` for each object counted in both whose count rose
/// by at least `min_growth`, largest rise first. Objects that were freed and whose address
/// was reused count as one object: the caller confirms a rise before believing it.
#[pyfunction]
#[pyo3(signature = (before, objects, *, min_growth, skip_tracked_referents, skip_immortal))]
pub fn census_growth<'py>(
    before: &Census,
    objects: &Bound<'py, PyList>,
    min_growth: isize,
    skip_tracked_referents: bool,
    skip_immortal: bool,
) -> PyResult<Bound<'py, PyList>> {
    let py = objects.py();
    let mut grown = take(objects, skip_tracked_referents, skip_immortal, |own, others| {
        let mut grown: Vec<(usize, isize, isize)> = Vec::new();
        let mut old = before.entries.iter().peekable();
        for (addr, count) in merged(own, others) {
            while old.next_if(|e| e.0 < addr).is_some() {}
            if let Some(&&(a, was)) = old.peek() {
                if a == addr && count - was >= min_growth {
                    grown.push((addr, was, count));
                }
            }
        }
        grown
    })?;
    grown.sort_unstable_by_key(|g| std::cmp::Reverse(g.2 - g.1));
    // Every address becomes a reference before any Python object is made: making one may
    // start a collection, which may run finalizers that free objects.
    let held: Vec<(Bound<'py, PyAny>, isize, isize)> = grown
        .into_iter()
        .map(|(addr, was, count)| {
            // SAFETY: `addr` was read from a live object by the census just taken, and no
            // Python code has run since (nothing above calls into Python or allocates a
            // Python object), so it is still that object; this takes a new reference.
            let obj = unsafe { Bound::from_borrowed_ptr(py, addr as *mut ffi::PyObject) };
            (obj, was, count)
        })
        .collect();
    let out = PyList::empty(py);
    for (obj, was, count) in held {
        let row = PyTuple::new(
            py,
            [
                obj,
                was.into_pyobject(py)?.into_any(),
                count.into_pyobject(py)?.into_any(),
            ],
        )?;
        out.append(row)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_prefers_the_first_list_and_keeps_order() {
        let a = vec![(8, 1), (24, 3)];
        let b = vec![(8, 2), (16, 5), (32, 7)];
        assert_eq!(
            merged(&a, &b).collect::<Vec<_>>(),
            vec![(8, 1), (16, 5), (24, 3), (32, 7)]
        );
    }

    #[test]
    fn radix_sort_orders_by_address() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut v: Entries = (0..5000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((0x7f00_0000_0000 + (state % (1 << 32)) as usize) & !15, i)
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_by_key(|e| e.0);
        sort_by_address(&mut v, &mut Vec::new());
        assert_eq!(
            v.iter().map(|e| e.0).collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
    }

    #[test]
    fn immortal_counts() {
        assert!(immortal(0xFFFF_FFFF)); // 3.12
        assert!(immortal(3 << 30)); // 3.13+ initial
        assert!(immortal((3 << 30) | (5 << 48))); // 3.14 static, flags above bit 32
        assert!(!immortal(1));
        assert!(!immortal(1 << 30));
    }
}
