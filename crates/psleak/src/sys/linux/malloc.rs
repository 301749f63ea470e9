//! glibc's malloc statistics, resolved at run time.
//!
//! `mallinfo2` exists since glibc 2.33; older glibc only has `mallinfo`, whose `int` fields
//! wrap past 2 GiB (mallinfo(3), BUGS). musl and other allocators have neither: the symbols
//! are looked up with `dlsym` so that psleak loads everywhere and answers "not available"
//! instead of failing to link.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::probes::MallocStats;

/// `struct mallinfo2` (glibc >= 2.33): every field `size_t`.
#[repr(C)]
#[derive(Default)]
struct Mallinfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

/// `struct mallinfo` (all glibc): the same fields as `int`.
#[repr(C)]
struct Mallinfo {
    arena: libc::c_int,
    ordblks: libc::c_int,
    smblks: libc::c_int,
    hblks: libc::c_int,
    hblkhd: libc::c_int,
    usmblks: libc::c_int,
    fsmblks: libc::c_int,
    uordblks: libc::c_int,
    fordblks: libc::c_int,
    keepcost: libc::c_int,
}

type Mallinfo2Fn = unsafe extern "C" fn() -> Mallinfo2;
type MallinfoFn = unsafe extern "C" fn() -> Mallinfo;
type MallocTrimFn = unsafe extern "C" fn(libc::size_t) -> libc::c_int;

// Resolved symbol addresses: 0 = not looked up yet, 1 = not found, else the address.
const UNRESOLVED: usize = 0;
const MISSING: usize = 1;

static MALLINFO2: AtomicUsize = AtomicUsize::new(UNRESOLVED);
static MALLINFO: AtomicUsize = AtomicUsize::new(UNRESOLVED);
static MALLOC_TRIM: AtomicUsize = AtomicUsize::new(UNRESOLVED);
/// Whether the process's `malloc` is the C library's: 0 = not asked yet, 1 = yes, 2 = no.
static MALLOC_IS_LIBC: AtomicUsize = AtomicUsize::new(0);

/// The object (shared library or executable) that defines the code at `addr`, as dladdr(3)
/// names it: its base address and path.
fn defining_object(addr: usize) -> Option<(usize, String)> {
    // SAFETY: Dl_info is plain data; dladdr fills it or returns 0, and reads no memory of
    // ours besides the struct.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `addr` is only compared with the loaded objects' address ranges.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 {
        return None;
    }
    let path = if info.dli_fname.is_null() {
        String::from("?")
    } else {
        // SAFETY: dladdr sets dli_fname to a NUL-terminated path owned by the dynamic linker,
        // valid while the object stays loaded.
        unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    };
    Some((info.dli_fbase as usize, path))
}

/// Fails when the `malloc` this process calls is not defined by the library that defines
/// `stats_fn` (glibc's `mallinfo2`): a replacement allocator (jemalloc or tcmalloc through
/// `LD_PRELOAD`, or linked in) leaves glibc's counters at zero, and a leak would go unseen
/// without a word. Asked once; dladdr(3) is a GNU extension present in glibc and musl.
fn check_malloc_is_libc(stats_fn: usize) -> Result<()> {
    match MALLOC_IS_LIBC.load(Ordering::Relaxed) {
        1 => return Ok(()),
        0 => {}
        _ => return Err(foreign_malloc(stats_fn)),
    }
    let verdict = match foreign_malloc_path(stats_fn) {
        None => 1,
        Some(_) => 2,
    };
    MALLOC_IS_LIBC.store(verdict, Ordering::Relaxed);
    if verdict == 1 {
        Ok(())
    } else {
        Err(foreign_malloc(stats_fn))
    }
}

/// The path of the object defining `malloc`, when it is not the one defining `stats_fn`.
fn foreign_malloc_path(stats_fn: usize) -> Option<String> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions. It
    // finds the definition the process's calls bind to (the first in search order), which
    // is what an LD_PRELOADed allocator replaces.
    let malloc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
    let (malloc_base, malloc_path) = defining_object(malloc)?;
    let (stats_base, _) = defining_object(stats_fn)?;
    (malloc_base != stats_base).then_some(malloc_path)
}

fn foreign_malloc(stats_fn: usize) -> Error {
    let path = foreign_malloc_path(stats_fn).unwrap_or_else(|| "another library".into());
    Error::Unavailable {
        what: "malloc statistics",
        reason: format!(
            "malloc is provided by {path}, not by the C library: glibc's counters \
             (mallinfo2) do not see its allocations; heap and mmap are not measured"
        ),
    }
}

fn resolve(cache: &AtomicUsize, name: &std::ffi::CStr) -> Option<usize> {
    let mut addr = cache.load(Ordering::Relaxed);
    if addr == UNRESOLVED {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions; a
        // racing second lookup stores the same value.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        addr = if found == 0 { MISSING } else { found };
        cache.store(addr, Ordering::Relaxed);
    }
    (addr != MISSING).then_some(addr)
}

fn from_counters(arena: u64, hblkhd: u64, uordblks: u64, fordblks: u64) -> MallocStats {
    MallocStats {
        heap_used: uordblks,
        mmap_used: hblkhd,
        heap_total: arena,
        heap_free: fordblks,
    }
}

/// Reads the allocator's counters. Cost: glibc walks the fast bins and the bins of every
/// arena, so it grows with the number of free chunks; it takes each arena's lock in turn.
pub(crate) fn malloc_stats() -> Result<MallocStats> {
    if let Some(addr) = resolve(&MALLINFO2, c"mallinfo2") {
        check_malloc_is_libc(addr)?;
        // SAFETY: the address is glibc's `mallinfo2`, whose signature is Mallinfo2Fn.
        let f: Mallinfo2Fn = unsafe { std::mem::transmute::<usize, Mallinfo2Fn>(addr) };
        // SAFETY: mallinfo2 takes no arguments and is thread-safe (it locks each arena).
        let m = unsafe { f() };
        return Ok(from_counters(
            m.arena as u64,
            m.hblkhd as u64,
            m.uordblks as u64,
            m.fordblks as u64,
        ));
    }
    if let Some(addr) = resolve(&MALLINFO, c"mallinfo") {
        check_malloc_is_libc(addr)?;
        // SAFETY: the address is glibc's `mallinfo`, whose signature is MallinfoFn.
        let f: MallinfoFn = unsafe { std::mem::transmute::<usize, MallinfoFn>(addr) };
        // SAFETY: as above.
        let m = unsafe { f() };
        // The int fields wrap past 2 GiB; reading them as u32 keeps up to 4 GiB right.
        let u = |v: libc::c_int| u64::from(v as u32);
        return Ok(from_counters(
            u(m.arena),
            u(m.hblkhd),
            u(m.uordblks),
            u(m.fordblks),
        ));
    }
    Err(Error::Unavailable {
        what: "malloc statistics",
        reason: "neither mallinfo2 (glibc >= 2.33) nor mallinfo was found: the C library is not \
                 glibc (musl?) or a replacement allocator hides them"
            .into(),
    })
}

/// `malloc_trim(0)`: gives free memory at the top of the heap and whole free pages inside the
/// arenas back to the OS (malloc_trim(3)). Returns whether anything was released.
pub(crate) fn malloc_trim() -> Result<bool> {
    let Some(addr) = resolve(&MALLOC_TRIM, c"malloc_trim") else {
        return Err(Error::Unavailable {
            what: "malloc_trim",
            reason: "malloc_trim was not found: the C library is not glibc".into(),
        });
    };
    // SAFETY: the address is glibc's `malloc_trim`, whose signature is MallocTrimFn.
    let f: MallocTrimFn = unsafe { std::mem::transmute::<usize, MallocTrimFn>(addr) };
    // SAFETY: malloc_trim(0) is always valid and thread-safe.
    Ok(unsafe { f(0) } != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn held_block_is_counted() {
        // One test only: other tests of this binary allocate on other threads, so this
        // compares with a margin rather than exactly.
        let before = malloc_stats().unwrap();
        let big: Vec<u8> = vec![1; 4 << 20];
        let during = malloc_stats().unwrap();
        assert!(
            during.mmap_used >= before.mmap_used + (4 << 20),
            "{before:?} {during:?}"
        );
        drop(big);
        let _ = malloc_trim().unwrap();
    }

    #[test]
    fn malloc_of_this_process_is_glibcs() {
        let addr = resolve(&MALLINFO2, c"mallinfo2").unwrap();
        assert_eq!(foreign_malloc_path(addr), None);
        // The executable defines main, not malloc: told apart from glibc.
        let here = defining_object(malloc_of_this_process_is_glibcs as *const () as usize).unwrap();
        let libc = defining_object(addr).unwrap();
        assert_ne!(here.0, libc.0, "{here:?} {libc:?}");
    }
}
