//! The live table: every block allocated during a measured run and not yet freed, keyed by
//! its address, with its size, run and stack.
//!
//! It is written from inside `malloc` and `free`, on every thread, so it must neither
//! allocate through malloc nor serialise the threads: its memory comes from the `mmap`
//! system call (never the hooked `mmap` symbol), and it is split into shards, each an
//! open-addressing table with linear probing behind its own spin lock. A pointer picks its
//! shard by hash, so two threads rarely meet on one lock, and a lock is held for a few
//! probes only. Deletion shifts the following entries back (no tombstones), so a table
//! that sees millions of allocate/free pairs never degrades.
//!
//! Survivor counts are not kept as running totals: an operation then touches two cache
//! lines (the shard's header and the slot), and the counts come from a scan of the table
//! once per run (microseconds for a clean function's few live blocks).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs counted separately; later runs share the last counter (the engine never makes
/// that many).
pub(crate) const MAX_RUNS: usize = 64;
/// Enough that threads rarely meet on a lock (a lock is held for a few probes).
const SHARDS: usize = 16;
/// Entries per shard at first: 16 shards x 256 x 16 B = 64 KiB in one mapping. Small and
/// contiguous on purpose: a clean function keeps few blocks alive at once, and slots that
/// stay in the CPU caches and the TLB are what make a hooked malloc cheap (64 shards in
/// separate pages cost a TLB miss per operation: twice the hook's time in the overhead
/// benchmark).
const INITIAL_CAPACITY: usize = 256;
const INITIAL_BYTES: usize = SHARDS * INITIAL_CAPACITY * std::mem::size_of::<Entry>();

/// One live block: 16 bytes, so that a shard's slots stay in the CPU caches.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct Entry {
    /// Address; 0 marks an empty slot.
    pub(crate) addr: usize,
    /// size (bits 0-39) | kind (bit 40) | run (bits 41-47) | stack id (bits 48-63).
    meta: u64,
}

const SIZE_BITS: u32 = 40;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;

impl Entry {
    /// A block of `size` bytes (sizes past 1 TiB are counted as 1 TiB), `mmap` mapping if
    /// `mapping`, allocated by `run` (1..=127), with stack id `stack`.
    pub(crate) fn new(addr: usize, size: usize, mapping: bool, run: u32, stack: u16) -> Entry {
        let size = (size as u64).min(SIZE_MASK);
        let run = u64::from(run.min(127));
        Entry {
            addr,
            meta: size | u64::from(mapping) << SIZE_BITS | run << 41 | u64::from(stack) << 48,
        }
    }

    pub(crate) fn size(&self) -> usize {
        (self.meta & SIZE_MASK) as usize
    }

    pub(crate) fn with_size(mut self, size: usize) -> Entry {
        self.meta = (self.meta & !SIZE_MASK) | (size as u64).min(SIZE_MASK);
        self
    }

    pub(crate) fn run(&self) -> u32 {
        ((self.meta >> 41) & 127) as u32
    }

    pub(crate) fn stack(&self) -> u16 {
        (self.meta >> 48) as u16
    }
}

struct ShardData {
    slots: *mut Entry,
    capacity: usize,
    len: usize,
    /// Whether `slots` lies in the shared first mapping (not unmapped on growth).
    initial: bool,
}

/// One cache line: the lock, the length and the slots pointer are read together.
#[repr(C, align(64))]
struct Shard {
    lock: AtomicBool,
    /// Entries in the shard, readable without the lock: a free of a block the table never
    /// saw (most frees) skips the lock when the shard is empty. A block's insertion
    /// happens-before its free in any correct program, so a recorded block is never
    /// missed this way.
    len: AtomicUsize,
    data: UnsafeCell<ShardData>,
}

// SAFETY: `data` is only reached while `lock` is held (see `Shard::with`).
unsafe impl Sync for Shard {}

impl Shard {
    const fn new() -> Shard {
        Shard {
            lock: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            data: UnsafeCell::new(ShardData {
                slots: std::ptr::null_mut(),
                capacity: 0,
                len: 0,
                initial: false,
            }),
        }
    }

    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut ShardData) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.lock.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
        // SAFETY: the lock is held until the store below, so this is the only reference.
        let r = f(unsafe { &mut *self.data.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

static TABLE: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
/// The first arrays of every shard, side by side (see `INITIAL_CAPACITY`).
static INITIAL: AtomicUsize = AtomicUsize::new(0);
/// Bytes of address space the table holds (for the memory budget and the page metrics).
static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Anonymous memory straight from the kernel (the `mmap` symbol may be hooked), faulted in
/// at once (`MAP_POPULATE`): the table's resident size is then the size it mapped, which
/// the driver takes out of the judged rss and anon. Left to fault in page by page as the
/// hashed slots are first touched, a table grown to a function's peak of live blocks kept
/// adding resident pages run after run (`ssl.create_default_context()`: +24 to +64 KiB of
/// anon a run, whatever the run's length).
pub(crate) fn map(bytes: usize) -> *mut u8 {
    map_with(bytes, libc::MAP_POPULATE)
}

/// Like [`map`], with pages faulted in as they are touched: for the stack store, mapped
/// for the where run only, after the last judged sample, and mostly never touched.
pub(crate) fn map_lazy(bytes: usize) -> *mut u8 {
    map_with(bytes, 0)
}

fn map_with(bytes: usize, flags: i32) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            0usize,
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1i32,
            0usize,
        )
    };
    if p < 0 {
        return std::ptr::null_mut();
    }
    MAPPED.fetch_add(bytes, Ordering::Relaxed);
    p as *mut u8
}

pub(crate) fn unmap(p: *mut u8, bytes: usize) {
    if !p.is_null() {
        // SAFETY: `p` came from `map(bytes)` and nothing refers to it any more.
        unsafe { libc::syscall(libc::SYS_munmap, p as usize, bytes) };
        MAPPED.fetch_sub(bytes, Ordering::Relaxed);
    }
}

pub(crate) fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

/// Fibonacci hashing of an address's 4 KiB page: the top bits of the product are well
/// mixed.
#[inline]
fn page_hash(addr: usize) -> usize {
    ((addr >> 12) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize
}

/// A page's blocks share a shard (glibc gives each thread its own arena, so threads
/// rarely share pages, and so locks).
#[inline]
fn shard_of(addr: usize) -> &'static Shard {
    &TABLE[(page_hash(addr) >> 60) % SHARDS]
}

impl ShardData {
    /// A block's first slot: its 16-byte granule within the page, shifted by the page's
    /// hash. Blocks allocated one after another lie side by side in memory, and so do
    /// their slots: a run of mallocs and frees walks the table sequentially and stays in
    /// the cache, where a fully mixed hash would miss it on nearly every operation (the
    /// overhead benchmark measured 2.2x per call with one, see bench/tracking.py).
    #[inline]
    fn home(&self, addr: usize) -> usize {
        ((addr >> 4).wrapping_add(page_hash(addr) >> 20)) & (self.capacity - 1)
    }

    /// Doubles the capacity. False when the kernel refused, or before `prepare`.
    fn grow(&mut self) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let capacity = self.capacity * 2;
        let fresh = map(capacity * std::mem::size_of::<Entry>()) as *mut Entry;
        if fresh.is_null() {
            return false;
        }
        let (old, old_capacity, old_initial) = (self.slots, self.capacity, self.initial);
        self.slots = fresh;
        self.capacity = capacity;
        self.initial = false;
        for i in 0..old_capacity {
            // SAFETY: i < old_capacity, the old array's length.
            let e = unsafe { *old.add(i) };
            if e.addr != 0 {
                self.place(e);
            }
        }
        if !old_initial {
            unmap(old as *mut u8, old_capacity * std::mem::size_of::<Entry>());
        }
        true
    }

    /// Puts an entry whose address is not in the table yet into its slot.
    fn place(&mut self, e: Entry) {
        let mask = self.capacity - 1;
        let mut i = self.home(e.addr);
        loop {
            // SAFETY: i <= mask < capacity.
            let slot = unsafe { &mut *self.slots.add(i) };
            if slot.addr == 0 || slot.addr == e.addr {
                *slot = e;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.capacity - 1;
        let mut i = self.home(addr);
        loop {
            // SAFETY: i <= mask < capacity.
            let slot = unsafe { &*self.slots.add(i) };
            if slot.addr == addr {
                return Some(i);
            }
            if slot.addr == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Empties slot `i` and shifts back the entries of its probe chain (Knuth's
    /// algorithm R), so that lookups never need tombstones.
    fn vacate(&mut self, mut i: usize) {
        let mask = self.capacity - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            // SAFETY: j <= mask < capacity.
            let e = unsafe { *self.slots.add(j) };
            if e.addr == 0 {
                break;
            }
            let k = self.home(e.addr);
            // Move e back to i unless its home lies cyclically in (i, j].
            let stays = if i <= j { i < k && k <= j } else { i < k || k <= j };
            if !stays {
                // SAFETY: i, j < capacity.
                unsafe { *self.slots.add(i) = e };
                i = j;
            }
        }
        // SAFETY: i < capacity.
        unsafe { *self.slots.add(i) = Entry::default() };
    }
}

pub(crate) fn counts_slot(run: u32) -> usize {
    (run as usize).clamp(1, MAX_RUNS) - 1 // run 0 is never recorded
}

/// Records a block. A block already recorded at that address (its free went unseen, e.g.
/// freed by a hook-less path) is replaced. False if the table could not grow.
#[inline(always)]
pub(crate) fn insert(e: Entry) -> bool {
    let shard = shard_of(e.addr);
    match shard.with(|s| {
        // At most half full: linear probing's chains stay short (about 2.5 probes for a
        // miss at 1/2 load, 8.5 at 3/4: Knuth, TAOCP 6.4).
        if (s.len + 1) * 2 > s.capacity && !s.grow() {
            return 0;
        }
        // One probe: the block's slot, or the stale entry of an address whose free went
        // unseen (freed by a path without hooks), which the new block replaces.
        let mask = s.capacity - 1;
        let mut i = s.home(e.addr);
        loop {
            // SAFETY: i <= mask < capacity.
            let slot = unsafe { &mut *s.slots.add(i) };
            if slot.addr == 0 {
                *slot = e;
                s.len += 1;
                break;
            }
            if slot.addr == e.addr {
                *slot = e;
                break;
            }
            i = (i + 1) & mask;
        }
        s.len
    }) {
        0 => false,
        len => {
            shard.len.store(len, Ordering::Relaxed);
            true
        }
    }
}

/// Forgets the block at `addr` and returns it, if it was recorded.
#[inline(always)]
pub(crate) fn remove(addr: usize) -> Option<Entry> {
    let shard = shard_of(addr);
    if shard.len.load(Ordering::Relaxed) == 0 {
        return None;
    }
    shard.with(|s| {
        let i = s.find(addr)?;
        // SAFETY: i < capacity.
        let e = unsafe { *s.slots.add(i) };
        s.vacate(i);
        s.len -= 1;
        shard.len.store(s.len, Ordering::Relaxed);
        Some(e)
    })
}

/// Holds every shard's lock across `fork(2)` (`pthread_atfork` handlers): a child forked
/// while another thread was inside a shard would otherwise inherit a lock nobody releases,
/// and hang on its first malloc.
extern "C" fn lock_all() {
    for shard in &TABLE {
        while shard
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
}

extern "C" fn unlock_all() {
    for shard in TABLE.iter().rev() {
        shard.lock.store(false, Ordering::Release);
    }
}

/// Registers the fork handlers, once per process.
pub(crate) fn guard_fork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers only take and release this module's spin locks. Failure
        // (ENOMEM) leaves fork as unguarded as it was before.
        unsafe { libc::pthread_atfork(Some(lock_all), Some(unlock_all), Some(unlock_all)) };
    });
}

/// Live blocks and bytes allocated by each run (index 0 = run 1): a scan of the table.
pub(crate) fn survivors() -> [(i64, i64); MAX_RUNS] {
    let mut out = [(0, 0); MAX_RUNS];
    for_each(|e| {
        let c = &mut out[counts_slot(e.run())];
        c.0 += 1;
        c.1 += e.size() as i64;
    });
    out
}

/// Calls `f` on every live entry; shard by shard, each under its lock, so `f` must not
/// allocate through the hooks (the caller holds the reentrancy guard).
pub(crate) fn for_each(mut f: impl FnMut(&Entry)) {
    for shard in &TABLE {
        shard.with(|s| {
            for i in 0..s.capacity {
                // SAFETY: i < capacity.
                let e = unsafe { &*s.slots.add(i) };
                if e.addr != 0 {
                    f(e);
                }
            }
        });
    }
}

/// Calls `f` with the address and length of every array of the table's slots (the
/// shared first mapping and each shard's grown array): memory that holds the addresses of
/// every live block, and so must not count as pointing at them (see `reach`).
pub(crate) fn for_each_array(mut f: impl FnMut(usize, usize)) {
    let initial = INITIAL.load(Ordering::Relaxed);
    if initial != 0 {
        f(initial, INITIAL_BYTES);
    }
    for shard in &TABLE {
        shard.with(|s| {
            if !s.initial && !s.slots.is_null() {
                f(s.slots as usize, s.capacity * std::mem::size_of::<Entry>());
            }
        });
    }
}

/// Empties the table and gives its memory back. Only when no hook is installed.
pub(crate) fn clear() {
    for shard in &TABLE {
        shard.with(|s| {
            if !s.initial {
                unmap(s.slots as *mut u8, s.capacity * std::mem::size_of::<Entry>());
            }
            s.initial = false;
            s.slots = std::ptr::null_mut();
            s.capacity = 0;
            s.len = 0;
            shard.len.store(0, Ordering::Relaxed);
        });
    }
    unmap(INITIAL.swap(0, Ordering::Relaxed) as *mut u8, INITIAL_BYTES);
}

/// Makes every shard's first array now, so that the measured runs do not see the table
/// appear. False if the kernel refused memory.
pub(crate) fn prepare() -> bool {
    if INITIAL.load(Ordering::Relaxed) != 0 {
        return true;
    }
    let block = map(INITIAL_BYTES) as *mut Entry;
    if block.is_null() {
        return false;
    }
    INITIAL.store(block as usize, Ordering::Relaxed);
    for (k, shard) in TABLE.iter().enumerate() {
        shard.with(|s| {
            // SAFETY: k * INITIAL_CAPACITY + INITIAL_CAPACITY <= the block's entries.
            s.slots = unsafe { block.add(k * INITIAL_CAPACITY) };
            s.capacity = INITIAL_CAPACITY;
            s.initial = true;
        });
    }
    true
}
