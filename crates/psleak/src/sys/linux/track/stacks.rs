//! Stack capture for the "where" run: the native return addresses of an allocation, plus
//! the front end's location token (Python: the line that was running), interned so that a
//! live-table entry holds a 4-byte id.
//!
//! The unwinder is libgcc's `_Unwind_Backtrace`, which Rust's standard library links on
//! every `*-linux-gnu` target for panics. It reads `.eh_frame`, which GCC and Clang emit
//! at every optimisation level (it is what C++ exceptions and `pthread_cancel` unwind
//! with), so it walks `-O2` code built without frame pointers, where a frame-pointer walk
//! stops at the first such frame. It allocates nothing: glibc 2.35+ answers its lookups
//! through `_dl_find_object`, older glibc through `dl_iterate_phdr`. Cost: about a
//! microsecond per frame, paid only during the where run (measured in `make bench`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::table;

/// Deepest stack kept, innermost frames first.
pub(crate) const MAX_FRAMES: usize = 48;
/// Most distinct stacks kept (ids are 16 bits in the live table): 16384 x 424 B = 6.6 MiB
/// of address space, mapped when the where run starts; later stacks share `OVERFLOW`.
const MAX_STACKS: usize = 1 << 14;
/// The id of allocations whose stack could not be kept.
pub(crate) const OVERFLOW: u16 = u16::MAX - 1;
/// The id of allocations made with capture off.
pub(crate) const NONE: u16 = u16::MAX;

/// One interned stack: frame count, host token, the allocating thread, frames, hash.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Stack {
    pub(crate) hash: u64,
    pub(crate) host: u64,
    pub(crate) len: u32,
    /// The allocating thread's id (`gettid`) and name (`PR_GET_NAME`, NUL-padded), as they
    /// were at the allocation: a short-lived thread is gone when the report is made.
    pub(crate) tid: u32,
    pub(crate) thread_name: [u8; 16],
    pub(crate) frames: [usize; MAX_FRAMES],
}

struct Store {
    stacks: *mut Stack,
    /// Open-addressing index: stack id + 1, 0 = empty. Twice `MAX_STACKS` slots.
    index: *mut u32,
    len: usize,
}

static LOCK: AtomicBool = AtomicBool::new(false);
static mut STORE: Store = Store {
    stacks: std::ptr::null_mut(),
    index: std::ptr::null_mut(),
    len: 0,
};

fn locked<R>(f: impl FnOnce(&mut Store) -> R) -> R {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    // SAFETY: LOCK is held, so this is the only reference to STORE.
    let r = f(unsafe { &mut *std::ptr::addr_of_mut!(STORE) });
    LOCK.store(false, Ordering::Release);
    r
}

const STACKS_BYTES: usize = MAX_STACKS * std::mem::size_of::<Stack>();
const INDEX_SLOTS: usize = 1 << 15;
const INDEX_BYTES: usize = INDEX_SLOTS * std::mem::size_of::<u32>();

/// Maps the store (address space only; pages are touched as stacks arrive). False if the
/// kernel refused.
pub(crate) fn prepare() -> bool {
    locked(|s| {
        if s.stacks.is_null() {
            let stacks = table::map_lazy(STACKS_BYTES);
            let index = table::map_lazy(INDEX_BYTES);
            if stacks.is_null() || index.is_null() {
                table::unmap(stacks, STACKS_BYTES);
                table::unmap(index, INDEX_BYTES);
                return false;
            }
            s.stacks = stacks as *mut Stack;
            s.index = index as *mut u32;
            s.len = 0;
        }
        true
    })
}

/// Forgets every stack and unmaps the store.
pub(crate) fn clear() {
    locked(|s| {
        table::unmap(s.stacks as *mut u8, STACKS_BYTES);
        table::unmap(s.index as *mut u8, INDEX_BYTES);
        s.stacks = std::ptr::null_mut();
        s.index = std::ptr::null_mut();
        s.len = 0;
    });
}

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut libc::c_void, *mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
    ) -> libc::c_int;
    fn _Unwind_GetIP(ctx: *mut libc::c_void) -> usize;
    fn _Unwind_FindEnclosingFunction(pc: *mut libc::c_void) -> *mut libc::c_void;
}

/// Walks this thread's stack from here outwards, handing `frame` each return address
/// until it returns false or the stack ends (libgcc's `_Unwind_Backtrace`, which reads
/// `.eh_frame`: no frame pointers needed). Allocates nothing.
fn unwind<F: FnMut(usize) -> bool>(mut frame: F) {
    extern "C" fn step<F: FnMut(usize) -> bool>(
        ctx: *mut libc::c_void,
        arg: *mut libc::c_void,
    ) -> libc::c_int {
        const URC_NO_REASON: libc::c_int = 0;
        const URC_END_OF_STACK: libc::c_int = 5;
        // SAFETY: arg is the `F` passed to _Unwind_Backtrace below; ctx is the unwinder's.
        let (frame, ip) = unsafe { (&mut *(arg as *mut F), _Unwind_GetIP(ctx)) };
        if ip == 0 || !frame(ip) {
            return URC_END_OF_STACK;
        }
        URC_NO_REASON
    }
    // SAFETY: `step::<F>` matches the callback type and `frame` outlives the call.
    unsafe { _Unwind_Backtrace(step::<F>, &mut frame as *mut F as *mut libc::c_void) };
}

/// The return address into the code that called `function` (a hook, entered through its
/// address and so never inlined), from a walk of this thread's stack started inside it;
/// `None` if `function` is not on the stack.
pub(crate) fn caller_of(function: usize) -> Option<usize> {
    let (mut seen, mut caller, mut frames) = (false, None, 0);
    unwind(|ip| {
        frames += 1;
        if seen {
            caller = Some(ip);
            return false;
        }
        // A return address may be the first byte past its function: look one byte back.
        // SAFETY: a lookup in the unwinder's tables; the address is only compared.
        let start = unsafe { _Unwind_FindEnclosingFunction((ip - 1) as *mut libc::c_void) } as usize;
        seen = start == function;
        frames < MAX_FRAMES
    });
    caller
}

/// Address ranges (start, end; empty when unknown) of the runtime's object and of
/// psleak's own, set when the hooks go in (see [`Cut`]).
static RUNTIME: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static OWN: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Sets the ranges [`Cut`] classifies frames by.
pub(crate) fn set_bounds(runtime: Option<(usize, usize)>, own: Option<(usize, usize)>) {
    for (cell, range) in [(&RUNTIME, runtime), (&OWN, own)] {
        let (lo, hi) = range.unwrap_or((0, 0));
        cell[0].store(lo, Ordering::Relaxed);
        cell[1].store(hi, Ordering::Relaxed);
    }
}

/// Whether `ip` (a return address) is in psleak's own object: the hooks' frames on top of
/// every stack, which the report drops without resolving them.
pub(crate) fn is_own(ip: usize) -> bool {
    within(&OWN, ip)
}

/// Whether `ip` (a return address) is in the runtime's object (the interpreter).
pub(crate) fn in_runtime(ip: usize) -> bool {
    within(&RUNTIME, ip)
}

fn within(range: &[AtomicUsize; 2], ip: usize) -> bool {
    let pc = ip.wrapping_sub(1);
    pc >= range[0].load(Ordering::Relaxed) && pc < range[1].load(Ordering::Relaxed)
}

/// Where the shown part of a stack ends, read innermost frame first: where the report's
/// frame filter (`keep_frames` in tracking.rs) stops, at the runtime's first frame after
/// native code (the interpreter calling the extension), or at its 7th frame when no native
/// frame came first; frames of psleak's own (the hooks) start the count again, as they do
/// there. The unwinder stops there (the interpreter's frames below the extension were most
/// of a Python stack's 48, at about a microsecond each, and none was ever shown), and the
/// report resolves no further (that one runtime frame cost the interpreter's DWARF).
struct Cut {
    runtime: (usize, usize),
    own: (usize, usize),
    /// A frame outside the runtime and psleak was met since psleak's last frame.
    native_seen: bool,
    /// Runtime frames met since then, with no native frame before them.
    runtime_frames: usize,
}

impl Cut {
    fn new() -> Cut {
        let load = |c: &[AtomicUsize; 2]| (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed));
        Cut {
            runtime: load(&RUNTIME),
            own: load(&OWN),
            native_seen: false,
            runtime_frames: 0,
        }
    }

    /// Whether the frame at return address `ip`, the next one outwards, is not shown, nor
    /// any frame after it.
    fn ends_at(&mut self, ip: usize) -> bool {
        // A return address points after the call: the call itself is one byte before.
        let pc = ip.wrapping_sub(1);
        let within = |(lo, hi): (usize, usize)| pc >= lo && pc < hi;
        if within(self.own) {
            self.native_seen = false;
            self.runtime_frames = 0;
        } else if within(self.runtime) {
            self.runtime_frames += 1;
            return self.native_seen || self.runtime_frames > crate::tracking::RUNTIME_FRAMES;
        } else {
            self.native_seen = true;
        }
        false
    }
}

/// How many of a captured stack's frames (innermost first) can be shown (see [`Cut`]).
pub(crate) fn shown(ips: &[usize]) -> usize {
    let mut cut = Cut::new();
    ips.iter().position(|&ip| cut.ends_at(ip)).unwrap_or(ips.len())
}

/// The calling thread's name (prctl(2) `PR_GET_NAME`: at most 15 bytes and a NUL). A
/// system call that allocates nothing.
pub(crate) fn thread_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes to the buffer given.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    name
}

/// The current native stack, the host token, the thread `tid` and its name, interned;
/// returns its id.
pub(crate) fn capture(host: u64, tid: u32, thread_name: [u8; 16]) -> u16 {
    // Up to the frame where the shown part ends (see [`Cut`]).
    let (mut ips, mut len, mut cut) = ([0usize; MAX_FRAMES], 0, Cut::new());
    unwind(|ip| {
        ips[len] = ip;
        len += 1;
        len < MAX_FRAMES && !cut.ends_at(ip)
    });
    let frames = &ips[..len];
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ host ^ (u64::from(tid) << 32);
    for &f in frames {
        hash = (hash ^ f as u64).wrapping_mul(0x0100_0000_01b3);
    }
    locked(|s| {
        if s.stacks.is_null() {
            return OVERFLOW;
        }
        let mask = INDEX_SLOTS - 1;
        let mut i = (hash as usize) & mask;
        loop {
            // SAFETY: i < INDEX_SLOTS, the index's length.
            let slot = unsafe { &mut *s.index.add(i) };
            if *slot == 0 {
                if s.len == MAX_STACKS {
                    return OVERFLOW;
                }
                let id = s.len;
                let mut stack = Stack {
                    hash,
                    host,
                    len: frames.len() as u32,
                    tid,
                    thread_name,
                    frames: [0; MAX_FRAMES],
                };
                stack.frames[..frames.len()].copy_from_slice(frames);
                // SAFETY: id < MAX_STACKS, the array's length.
                unsafe { *s.stacks.add(id) = stack };
                s.len += 1;
                *slot = id as u32 + 1;
                return id as u16;
            }
            let id = (*slot - 1) as usize;
            // SAFETY: ids in the index are below s.len.
            let known = unsafe { &*s.stacks.add(id) };
            if known.hash == hash
                && known.host == host
                && known.tid == tid
                && known.thread_name == thread_name
                && &known.frames[..known.len as usize] == frames
            {
                return id as u16;
            }
            i = (i + 1) & mask;
        }
    })
}

/// The stack with that id.
pub(crate) fn get(id: u16) -> Option<Stack> {
    locked(|s| {
        let id = id as usize;
        // SAFETY: ids below s.len are initialised entries of the array.
        (id < s.len && !s.stacks.is_null()).then(|| unsafe { *s.stacks.add(id) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_part_ends_where_the_report_stops_reading() {
        // Return addresses: psleak's own at 0x1000.., the runtime's at 0x2000.., others
        // (an extension, libc) at 0x3000...
        set_bounds(Some((0x2000, 0x3000)), Some((0x1000, 0x2000)));
        let (own, rt, ext) = (0x1010, 0x2010, 0x3010);
        // hooks, the extension and libc, then the interpreter: ends at its first frame.
        assert_eq!(shown(&[own, own, ext, ext, rt, rt, rt]), 4);
        // The runtime's own allocation (pymalloc routed): its 6 innermost frames, then the
        // extension that called it, then the interpreter again.
        assert_eq!(shown(&[own, rt, rt, ext, rt, rt]), 4);
        // No native frame at all: 6 of the runtime's frames.
        assert_eq!(shown(&[own, rt, rt, rt, rt, rt, rt, rt, rt]), 7);
        // A hook deeper in the stack (dlopen running a constructor) starts the count again.
        assert_eq!(shown(&[own, ext, ext, own, ext, rt, rt]), 5);
        // Without bounds (a program with no runtime): everything.
        set_bounds(None, None);
        assert_eq!(shown(&[own, rt, ext, rt]), 4);
    }
}
