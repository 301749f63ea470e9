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
    /// Open-addressing table of the pages the smaller blocks cover: page number + 1 (0 is
    /// empty), and the first and last of the blocks on it (indices into `entries`).
    pages: &'a mut [(usize, u32, u32)],
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
        for (k, e) in self.entries.iter().enumerate() {
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
                    let slot = &mut self.pages[i];
                    if slot.0 == page + 1 {
                        // Blocks are visited by address: this one is the page's last yet.
                        slot.2 = k as u32;
                        break;
                    }
                    if slot.0 == 0 {
                        *slot = (page + 1, k as u32, k as u32);
                        break;
                    }
                    i = (i + 1) & mask;
                }
            }
        }
    }

    /// The first and last block (indices) that lie on `page`, among the indexed ones.
    #[inline]
    fn on_page(&self, page: usize) -> Option<(usize, usize)> {
        let mask = self.pages.len() - 1;
        let mut i = page_slot(page, mask);
        loop {
            let (v, first, last) = self.pages[i];
            if v == page + 1 {
                return Some((first as usize, last as usize));
            }
            if v == 0 {
                return None;
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
        // Among the few blocks on its page (a binary search over all of them, 150k blocks
        // of Python objects, cost a cache miss a step), else among all when it may lie in
        // a large one.
        let (from, to) = match self.on_page(w / PAGE) {
            Some((first, last)) if !(w >= self.large_lo && w < self.large_hi) => (first, last + 1),
            _ if w >= self.large_lo && w < self.large_hi => (0, self.entries.len()),
            _ => return None,
        };
        let i = from
            + self.entries[from..to]
                .partition_point(|e| e.addr <= w)
                .checked_sub(1)?;
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

/// Most blocks read by one `process_vm_readv` call (the kernel's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Reads our own memory without faulting: through `process_vm_readv`, present pages only.
struct Reader<'a> {
    pid: libc::pid_t,
    pagemap: Fd,
    buf: &'a mut [u8],
    /// Page-map entries of up to a chunk's pages.
    pm: &'a mut [u8],
    local: &'a mut [libc::iovec],
    remote: &'a mut [libc::iovec],
}

impl Reader<'_> {
    /// Hands `f` the contents of `[start, end)`, chunk by chunk; pages that cannot be read
    /// (unmapped meanwhile) are skipped. False where the call is not permitted (seccomp, an
    /// old kernel): no answer.
    fn read(&mut self, start: usize, end: usize, mut f: impl FnMut(&[u8])) -> bool {
        let mut at = start;
        while at < end {
            let len = (end - at).min(self.buf.len());
            self.local[0] = libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast::<c_void>(),
                iov_len: len,
            };
            self.remote[0] = libc::iovec {
                iov_base: at as *mut c_void,
                iov_len: len,
            };
            // SAFETY: the local buffer is valid for `len` bytes; the kernel checks the
            // remote range and fails (EFAULT) or stops short instead of faulting.
            let n = unsafe {
                libc::process_vm_readv(self.pid, self.local.as_ptr(), 1, self.remote.as_ptr(), 1, 0)
            };
            if n < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    // Interrupted: again (a page skipped could hold the only pointer).
                    Some(libc::EINTR) => continue,
                    // Unmapped meanwhile: it holds no pointer any more.
                    Some(libc::EFAULT) => {
                        at = (at / PAGE + 1) * PAGE;
                        continue;
                    }
                    _ => return false,
                }
            }
            let n = n as usize;
            f(&self.buf[..n - n % WORD]);
            at += if n == 0 { PAGE - at % PAGE } else { n };
        }
        true
    }

    /// Calls `f` with each run of pages of `[start, end)` present in memory (clipped to
    /// the range). False when a page is swapped out (it may hold the only pointer to a
    /// block) or the page map cannot be read.
    fn present(
        &mut self,
        start: usize,
        end: usize,
        mut f: impl FnMut(&mut Self, usize, usize) -> bool,
    ) -> bool {
        let mut at = start;
        while at < end {
            let stop = end.min((at / PAGE) * PAGE + CHUNK);
            let first = at / PAGE;
            let pages = (stop - 1) / PAGE - first + 1;
            let Some(got) = self.pagemap.pread(&mut self.pm[..pages * 8], (first * 8) as u64) else {
                return false;
            };
            let flags = |pm: &[u8], k: usize| -> u64 {
                if (k + 1) * 8 > got {
                    return 0;
                }
                u64::from_ne_bytes(pm[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]))
            };
            let mut p = 0;
            while p < pages {
                let flag = flags(self.pm, p);
                if flag & (1 << 62) != 0 {
                    return false;
                }
                if flag & (1 << 63) == 0 {
                    p += 1;
                    continue;
                }
                let mut q = p + 1;
                while q < pages && flags(self.pm, q) & (1 << 63) != 0 {
                    q += 1;
                }
                if !f(self, ((first + p) * PAGE).max(at), ((first + q) * PAGE).min(stop)) {
                    return false;
                }
                p = q;
            }
            at = stop;
        }
        true
    }

    /// Hands `f` the contents of many small blocks `(addr, size)`, each whole, reading up
    /// to [`IOV_MAX`] of them a call (a block each call made the scan of a heap of Python
    /// objects, all linked by the collector, 80k system calls). A block that cannot be
    /// read (freed and unmapped meanwhile) is skipped.
    fn read_many(&mut self, blocks: &[(usize, usize)], mut f: impl FnMut(&[u8])) -> bool {
        let mut i = 0;
        while i < blocks.len() {
            let (mut n, mut used) = (0, 0);
            while i + n < blocks.len() && n < IOV_MAX && used + blocks[i + n].1 <= self.buf.len() {
                let (addr, size) = blocks[i + n];
                // SAFETY: `used + size <= buf.len()`.
                self.local[n] = libc::iovec {
                    iov_base: unsafe { self.buf.as_mut_ptr().add(used) }.cast::<c_void>(),
                    iov_len: size,
                };
                self.remote[n] = libc::iovec {
                    iov_base: addr as *mut c_void,
                    iov_len: size,
                };
                used += size;
                n += 1;
            }
            if n == 0 {
                // Larger than the buffer: read in chunks.
                let (addr, size) = blocks[i];
                if !self.read(addr, addr + size, &mut f) {
                    return false;
                }
                i += 1;
                continue;
            }
            // SAFETY: every local iovec lies in `buf`; the kernel checks the remote ones.
            let got = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    self.local.as_ptr(),
                    n as u64,
                    self.remote.as_ptr(),
                    n as u64,
                    0,
                )
            };
            if got < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The first block is gone (freed and unmapped meanwhile): the next.
                    Some(libc::EFAULT) => {
                        i += 1;
                        continue;
                    }
                    _ => return false,
                }
            }
            // The reads stop at the first block that fails: those read are whole.
            let got = got as usize;
            let mut off = 0;
            let mut done = 0;
            while done < n && off + blocks[i + done].1 <= got {
                let size = blocks[i + done].1;
                f(&self.buf[off..off + size - size % WORD]);
                off += size;
                done += 1;
            }
            // A block read in part failed: skipped.
            i += done.max(1).min(n);
        }
        true
    }
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
    let mut pages_buf = Buf::new(pages_len * std::mem::size_of::<(usize, u32, u32)>())?;
    let mut read_buf = Buf::new(CHUNK)?;
    let mut map_buf = Buf::new((CHUNK / PAGE) * 8)?;
    let mut iov_buf = Buf::new(2 * IOV_MAX * std::mem::size_of::<libc::iovec>())?;
    let mut batch_buf = Buf::new(IOV_MAX * std::mem::size_of::<(usize, usize)>())?;
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
        &iov_buf,
        &batch_buf,
        &maps,
    ] {
        add(b.range());
    }
    table::for_each_array(|start, len| add((start, start + len)));
    let skip = &mut skip[..nskip];
    skip.sort_unstable();

    // SAFETY: both mappings live until the end of this function and are distinct.
    let entries: &[Entry] = unsafe { std::slice::from_raw_parts(entries_buf.ptr.cast::<Entry>(), n) };
    let reached = &mut reached_buf.slice::<u8>()[..n];
    let mut blocks = Blocks {
        entries,
        reached,
        pages: &mut pages_buf.slice::<(usize, u32, u32)>()[..pages_len],
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
    let (local, remote) = iov_buf.slice::<libc::iovec>().split_at_mut(IOV_MAX);
    let mut reader = Reader {
        pid: std::process::id() as libc::pid_t,
        pagemap: Fd::open(c"/proc/self/pagemap")?,
        buf: read_buf.slice::<u8>(),
        pm: map_buf.slice::<u8>(),
        local,
        remote,
    };
    for line in text.split(|&b| b == b'\n') {
        let Some((mut start, end)) = writable(line) else {
            continue;
        };
        if (start..end).contains(&stack_top) {
            start = stack_top & !(WORD - 1);
        }
        // The roots: the mapping minus our own memory and minus the tracked blocks.
        let mut ok = true;
        outside(start, end, skip, |s, e| {
            ok = ok && reader.present(s, e, |r, s, e| scan_roots(r, &mut blocks, s, e));
        });
        if !ok {
            return None;
        }
    }
    // Then what the reached blocks point to, until nothing new is reached: the small
    // blocks many a call, the large ones (mappings) by their present pages.
    let batch = batch_buf.slice::<(usize, usize)>();
    while blocks.npending > 0 {
        let mut k = 0;
        while blocks.npending > 0 && k < batch.len() {
            blocks.npending -= 1;
            let e = blocks.entries[blocks.pending[blocks.npending] as usize];
            if pages_of(&e).is_some() {
                batch[k] = (e.addr, e.size());
                k += 1;
            } else if !reader.present(e.addr, e.addr + e.size(), |r, s, e| {
                r.read(s, e, |data| blocks.scan_words(data))
            }) {
                return None;
            }
        }
        if !reader.read_many(&batch[..k], |data| blocks.scan_words(data)) {
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
fn scan_roots(reader: &mut Reader<'_>, blocks: &mut Blocks<'_>, start: usize, end: usize) -> bool {
    let start = start.next_multiple_of(WORD);
    // The first block ending after `start`.
    let mut i = blocks
        .entries
        .partition_point(|e| e.addr + e.size().max(1) <= start);
    let mut at = start;
    while at < end {
        let next = blocks.entries.get(i).map_or(end, |e| e.addr.clamp(at, end));
        if next > at && !reader.read(at, next, |data| blocks.scan_words(data)) {
            return false;
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
