//! Which tracked blocks nothing points to any more: LeakSanitizer's "definitely lost",
//! found in the running process without stopping it.
//!
//! A leaked block is one whose every pointer was dropped; a cache keeps a pointer to each
//! entry it holds. Both leave survivors in proportion to the calls until the cache is
//! full, so the engine, judging counts alone, has to make runs of thousands of calls to
//! see a cache stop (for a function that starts a thread per call, half a second of
//! runs). Reachability tells them apart at once.
//!
//! The scan is conservative, as LeakSanitizer's is: every aligned word of the process's
//! writable memory that holds an address inside a tracked block (its start or anywhere
//! within, as C code and CPython's collector keep interior pointers) makes the block
//! reachable, and so does a word inside a block made reachable so (transitively). The
//! roots are every readable and writable mapping (data and bss of every object, heaps,
//! thread stacks, anonymous mappings) except the tracked blocks themselves and the
//! tracker's own arrays, which hold every block's address. Memory that merely looks like a
//! pointer (a stale copy in a freed chunk or a dead stack frame, an integer) makes a lost
//! block look reachable: never the other way round, so the answer errs towards "reachable"
//! and the engine towards more runs. The exceptions, where a pointer is not where the scan
//! looks, are rare in extension code: a pointer only in another thread's registers, one
//! stored disguised (xor-linked lists, tagged pointers that clear their low bits are fine),
//! or in swapped-out memory (the scan then gives no answer).
//!
//! It reads only pages present in memory (per `/proc/self/pagemap`), through
//! `process_vm_readv(2)` on its own process, which fails cleanly where another thread
//! unmaps memory meanwhile instead of faulting; its buffers are mapped from the kernel and
//! unmapped before it returns, so the samples around it see no growth.

use std::os::raw::c_void;

use super::table::{self, counts_slot, Entry, MAX_RUNS};

const PAGE: usize = 4096;
const WORD: usize = std::mem::size_of::<usize>();

/// Bytes read per `process_vm_readv` call.
const CHUNK: usize = 256 << 10;

/// Blocks larger than this many pages are not put in the page index (a 64 MiB mapping
/// would fill it): words pointing into them are found by a range test instead.
const INDEXED_PAGES: usize = 16;

/// Most writable address space scanned for pages present, bytes: past it (a runtime that
/// reserves tens of GiB), reading the page map alone would take seconds, and the scan
/// gives no answer.
const MAX_WRITABLE: usize = 64 << 30;

/// Memory mapped straight from the kernel for the scan's own use, unmapped on drop.
struct Buf {
    ptr: *mut u8,
    bytes: usize,
}

impl Buf {
    fn new(bytes: usize) -> Option<Buf> {
        let bytes = bytes.max(PAGE).next_multiple_of(PAGE);
        let ptr = table::map_lazy(bytes);
        (!ptr.is_null()).then_some(Buf { ptr, bytes })
    }

    fn range(&self) -> (usize, usize) {
        (self.ptr as usize, self.ptr as usize + self.bytes)
    }

    /// The mapping as a slice of `T` (zeroed when new, as the kernel gives it).
    fn slice<T: Copy>(&mut self) -> &mut [T] {
        // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for any T used
        // here), readable and writable, and owned by this Buf alone.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<T>(), self.bytes / std::mem::size_of::<T>()) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        table::unmap(self.ptr, self.bytes);
    }
}

/// A file descriptor closed on drop.
struct Fd(i32);

impl Fd {
    fn open(path: &std::ffi::CStr) -> Option<Fd> {
        // SAFETY: a NUL-terminated path; open allocates nothing in the process.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        (fd >= 0).then_some(Fd(fd))
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> Option<usize> {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: the slice is valid for writes of its length.
            let n = unsafe {
                libc::pread(
                    self.0,
                    buf[done..].as_mut_ptr().cast::<c_void>(),
                    buf.len() - done,
                    (offset + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return None;
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        Some(done)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The tracked blocks, sorted by address, with what the scan needs to look them up.
struct Blocks<'a> {
    entries: &'a [Entry],
    reached: &'a mut [u8],
    /// Open-addressing set of the pages the smaller blocks cover (page number + 1; 0 is
    /// empty).
    pages: &'a mut [usize],
    /// Address range of all blocks, and of the blocks too large for the page set.
    lo: usize,
    hi: usize,
    large_lo: usize,
    large_hi: usize,
    /// Blocks reached and not scanned yet (indices into `entries`).
    pending: &'a mut [u32],
    npending: usize,
}

/// Where glibc's next chunk header lies, when it lies inside the block: a block of 40 B
/// takes a chunk of 48 whose last 8 bytes are the next chunk's first field, and glibc's
/// own pointers to that chunk (the top chunk, its free lists) are no pointer to the block.
fn next_chunk(e: &Entry) -> usize {
    let chunk = ((e.size() + 8 + 15) & !15).max(32);
    e.addr + chunk - 16
}

/// The pages a block covers, when it is small enough for the page index.
fn pages_of(e: &Entry) -> Option<usize> {
    let (start, end) = (e.addr, e.addr + e.size().max(1));
    let pages = (end - 1) / PAGE - start / PAGE + 1;
    (pages <= INDEXED_PAGES).then_some(pages)
}

fn page_slot(page: usize, mask: usize) -> usize {
    ((page as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) as usize & mask
}

impl Blocks<'_> {
    fn index_pages(&mut self) {
        let mask = self.pages.len() - 1;
        for e in self.entries {
            let (start, end) = (e.addr, e.addr + e.size().max(1));
            self.lo = self.lo.min(start);
            self.hi = self.hi.max(end);
            if pages_of(e).is_none() {
                self.large_lo = self.large_lo.min(start);
                self.large_hi = self.large_hi.max(end);
                continue;
            }
            for page in start / PAGE..=(end - 1) / PAGE {
                let mut i = page_slot(page, mask);
                loop {
                    let v = self.pages[i];
                    if v == page + 1 {
                        break;
                    }
                    if v == 0 {
                        self.pages[i] = page + 1;
                        break;
                    }
                    i = (i + 1) & mask;
                }
            }
        }
    }

    #[inline]
    fn in_pages(&self, page: usize) -> bool {
        let mask = self.pages.len() - 1;
        let mut i = page_slot(page, mask);
        loop {
            let v = self.pages[i];
            if v == page + 1 {
                return true;
            }
            if v == 0 {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// The block `w` points into, if any.
    #[inline]
    fn find(&self, w: usize) -> Option<usize> {
        if w < self.lo || w >= self.hi {
            return None;
        }
        if !(self.in_pages(w / PAGE) || (w >= self.large_lo && w < self.large_hi)) {
            return None;
        }
        let i = self.entries.partition_point(|e| e.addr <= w).checked_sub(1)?;
        let e = &self.entries[i];
        (w < e.addr + e.size().max(1) && w != next_chunk(e)).then_some(i)
    }

    /// Marks what the words of `data` point to.
    fn scan_words(&mut self, data: &[u8]) {
        for word in data.chunks_exact(WORD) {
            let w = usize::from_ne_bytes(word.try_into().unwrap_or([0; WORD]));
            if let Some(i) = self.find(w) {
                if self.reached[i] == 0 {
                    self.reached[i] = 1;
                    if self.npending < self.pending.len() {
                        self.pending[self.npending] = i as u32;
                        self.npending += 1;
                    }
                }
            }
        }
    }
}

/// Reads `[start, end)` of our own memory chunk by chunk into `buf` and hands each piece
/// read to `f`; a page that cannot be read (unmapped meanwhile) is skipped.
fn read_range(start: usize, end: usize, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> bool {
    let pid = std::process::id() as libc::pid_t;
    let mut at = start;
    while at < end {
        let len = (end - at).min(buf.len());
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<c_void>(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: at as *mut c_void,
            iov_len: len,
        };
        // SAFETY: the local buffer is valid for `len` bytes; the kernel checks the remote
        // range and fails (EFAULT) or stops short instead of faulting.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EFAULT) | Some(libc::EINTR) | Some(libc::ENOMEM) => {
                    at = (at / PAGE + 1) * PAGE;
                    continue;
                }
                // Not permitted here (seccomp, an old kernel): no answer.
                _ => return false,
            }
        }
        let n = n as usize;
        f(&buf[..n - n % WORD]);
        at += if n == 0 { PAGE - at % PAGE } else { n };
    }
    true
}

/// Whether a line of `/proc/self/maps` is writable memory worth scanning, and its range.
fn writable(line: &[u8]) -> Option<(usize, usize)> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let perms = fields.next()?;
    if perms.len() < 2 || perms[0] != b'r' || perms[1] != b'w' {
        return None;
    }
    let path = fields.nth(3).unwrap_or(b"");
    // Device memory may have side effects on read; the vvar page is the kernel's.
    if (path.starts_with(b"/dev/") && !path.starts_with(b"/dev/zero") && !path.starts_with(b"/dev/shm"))
        || path.starts_with(b"[vvar")
        || path.starts_with(b"[vsyscall")
    {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| -> Option<usize> {
        let mut v = 0usize;
        for &c in s {
            v = v.checked_mul(16)? + (c as char).to_digit(16)? as usize;
        }
        Some(v)
    };
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    (start < end).then_some((start, end))
}

/// Reads `/proc/self/maps` whole into a mapping of our own (it may be long).
fn read_maps() -> Option<(Buf, usize)> {
    let mut size = 1 << 20;
    loop {
        let fd = Fd::open(c"/proc/self/maps")?;
        let mut buf = Buf::new(size)?;
        let mut len = 0;
        loop {
            let slice = buf.slice::<u8>();
            if len == slice.len() {
                break;
            }
            // SAFETY: the buffer is valid for writes past `len`.
            let n = unsafe {
                libc::read(
                    fd.0,
                    slice[len..].as_mut_ptr().cast::<c_void>(),
                    slice.len() - len,
                )
            };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return None;
            }
            if n == 0 {
                return Some((buf, len));
            }
            len += n as usize;
        }
        size *= 4;
        if size > 256 << 20 {
            return None;
        }
    }
}

/// Parts of `[start, end)` outside every range of `skip` (sorted, few).
fn outside(start: usize, end: usize, skip: &[(usize, usize)], mut f: impl FnMut(usize, usize)) {
    let mut at = start;
    for &(s, e) in skip {
        if e <= at || s >= end {
            continue;
        }
        if s > at {
            f(at, s);
        }
        at = at.max(e);
    }
    if at < end {
        f(at, end);
    }
}

/// Survivors that nothing points to, per run (index 0 = run 1): blocks then bytes. `None`
/// when the scan cannot answer (memory unreadable, pages swapped out, too much address
/// space). `stack_top`: an address in the frame of the scan's outermost caller in psleak;
/// this thread's stack below it holds psleak's own frames, and below those whatever
/// earlier calls left there (the hooks' copies of the pointers they returned): dead, or
/// no roots. The caller holds the reentrancy guard.
pub(crate) fn lost(stack_top: usize) -> Option<[(i64, i64); MAX_RUNS]> {
    let mut out = [(0i64, 0i64); MAX_RUNS];
    let mut count = 0usize;
    table::for_each(|_| count += 1);
    if count == 0 {
        return Some(out);
    }
    // Room for blocks recorded meanwhile by other threads; more are left out.
    let room = count + count / 8 + 64;
    let mut entries_buf = Buf::new(room * std::mem::size_of::<Entry>())?;
    let n = {
        let entries = entries_buf.slice::<Entry>();
        let mut n = 0;
        table::for_each(|e| {
            if n < entries.len() {
                entries[n] = *e;
                n += 1;
            }
        });
        entries[..n].sort_unstable_by_key(|e| e.addr);
        n
    };
    let mut reached_buf = Buf::new(n)?;
    let mut pending_buf = Buf::new(n * 4)?;
    // SAFETY: the first `n` entries were written above; the mapping outlives this use.
    let indexed: usize = unsafe { std::slice::from_raw_parts(entries_buf.ptr.cast::<Entry>(), n) }
        .iter()
        .map(|e| pages_of(e).unwrap_or(0))
        .sum();
    // At most half full, so that a probe meets an empty slot soon.
    let pages_len = (indexed * 2).next_power_of_two().max(1024);
    let mut pages_buf = Buf::new(pages_len * WORD)?;
    let mut read_buf = Buf::new(CHUNK)?;
    let mut map_buf = Buf::new((CHUNK / PAGE) * 8)?;
    let (maps, maps_len) = read_maps()?;

    // The tracker's own memory: its slot arrays, and the scan's buffers.
    let mut skip = [(0usize, 0usize); 64];
    let mut nskip = 0;
    let mut add = |r: (usize, usize)| {
        if nskip < skip.len() {
            skip[nskip] = r;
            nskip += 1;
        }
    };
    for b in [
        &entries_buf,
        &reached_buf,
        &pending_buf,
        &pages_buf,
        &read_buf,
        &map_buf,
        &maps,
    ] {
        add(b.range());
    }
    table::for_each_array(|start, len| add((start, start + len)));
    let skip = &mut skip[..nskip];
    skip.sort_unstable();

    let pagemap = Fd::open(c"/proc/self/pagemap")?;
    // SAFETY: both mappings live until the end of this function and are distinct.
    let entries: &[Entry] = unsafe { std::slice::from_raw_parts(entries_buf.ptr.cast::<Entry>(), n) };
    let reached = &mut reached_buf.slice::<u8>()[..n];
    let mut blocks = Blocks {
        entries,
        reached,
        pages: &mut pages_buf.slice::<usize>()[..pages_len],
        lo: usize::MAX,
        hi: 0,
        large_lo: usize::MAX,
        large_hi: 0,
        pending: &mut pending_buf.slice::<u32>()[..n],
        npending: 0,
    };
    blocks.index_pages();

    // SAFETY: `maps` holds `maps_len` bytes read above.
    let text = unsafe { std::slice::from_raw_parts(maps.ptr, maps_len) };
    let mut total = 0usize;
    for line in text.split(|&b| b == b'\n') {
        if let Some((start, end)) = writable(line) {
            total += end - start;
        }
    }
    if total > MAX_WRITABLE {
        return None;
    }
    let sp = stack_top;
    let read = read_buf.slice::<u8>();
    let pm = map_buf.slice::<u8>();
    let mut ok = true;
    for line in text.split(|&b| b == b'\n') {
        let Some((mut start, end)) = writable(line) else {
            continue;
        };
        if (start..end).contains(&sp) {
            start = sp & !(WORD - 1);
        }
        // The roots: the mapping minus our own memory and minus the tracked blocks.
        outside(start, end, skip, |s, e| {
            let mut at = s;
            while ok && at < e {
                // The page map of the next chunk's pages: only present pages are read.
                let stop = e.min((at / PAGE) * PAGE + CHUNK);
                let first = at / PAGE;
                let pages = (stop - 1) / PAGE - first + 1;
                let Some(got) = pagemap.pread(&mut pm[..pages * 8], (first * 8) as u64) else {
                    ok = false;
                    return;
                };
                let mut p = 0;
                while p < pages && ok {
                    let flags = |k: usize| -> u64 {
                        if (k + 1) * 8 > got {
                            return 0;
                        }
                        u64::from_ne_bytes(pm[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]))
                    };
                    let f = flags(p);
                    if f & (1 << 62) != 0 {
                        // Swapped out: it may hold the only pointer to a block.
                        ok = false;
                        return;
                    }
                    if f & (1 << 63) == 0 {
                        p += 1;
                        continue;
                    }
                    let mut q = p + 1;
                    while q < pages && flags(q) & (1 << 63) != 0 {
                        q += 1;
                    }
                    let (rs, re) = (((first + p) * PAGE).max(at), ((first + q) * PAGE).min(stop));
                    ok &= scan_roots(&mut blocks, rs, re, read);
                    p = q;
                }
                at = stop;
            }
        });
        if !ok {
            return None;
        }
    }
    // Then what the reached blocks point to, until nothing new is reached.
    while blocks.npending > 0 {
        blocks.npending -= 1;
        let e = blocks.entries[blocks.pending[blocks.npending] as usize];
        if !read_range(e.addr, e.addr + e.size(), read, |data| blocks.scan_words(data)) {
            return None;
        }
    }
    for (e, &r) in blocks.entries.iter().zip(blocks.reached.iter()) {
        if r == 0 {
            let c = &mut out[counts_slot(e.run())];
            c.0 += 1;
            c.1 += e.size() as i64;
        }
    }
    Some(out)
}

/// Scans `[start, end)` (present pages) as roots: every word outside the tracked blocks.
fn scan_roots(blocks: &mut Blocks<'_>, start: usize, end: usize, buf: &mut [u8]) -> bool {
    let start = start.next_multiple_of(WORD);
    // The first block ending after `start`.
    let mut i = blocks
        .entries
        .partition_point(|e| e.addr + e.size().max(1) <= start);
    let mut at = start;
    while at < end {
        let next = blocks.entries.get(i).map_or(end, |e| e.addr.clamp(at, end));
        if next > at {
            let (s, e) = (at, next);
            if !read_range(s, e, buf, |data| blocks.scan_words(data)) {
                return false;
            }
        }
        match blocks.entries.get(i) {
            Some(b) if b.addr < end => {
                at = (b.addr + b.size().max(1)).next_multiple_of(WORD).max(at);
                i += 1;
            }
            _ => break,
        }
    }
    true
}
