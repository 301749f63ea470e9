//! A small in-place ELF patcher: finds the GOT entries through which every loaded object
//! calls the functions psleak intercepts, and the data words where an object keeps their
//! addresses (an allocator table such as libxml2's `xmlMalloc`), and rewrites them.
//!
//! Why our own rather than a crate: `goblin` parses ELF files from bytes and allocates its
//! results, and we must read objects already mapped by the dynamic linker, from inside a
//! process whose allocations we are about to count; `plthook` and `plt-rs` patch one object
//! at a time through `.rela.plt` only, which misses `R_*_GLOB_DAT` entries in `.rela.dyn`
//! (taking a function's address, `-fno-plt` builds, and how libc itself reaches `malloc`
//! from `strdup` when built with `-z now`). What we need is small: walk
//! `dl_iterate_phdr(3)`, read `PT_DYNAMIC` in place (`DT_JMPREL`/`DT_PLTRELSZ`,
//! `DT_RELA`/`DT_RELASZ`, `DT_SYMTAB`, `DT_STRTAB`), match relocation symbol names against
//! one table, and store 8 bytes atomically. Nothing here allocates.
//!
//! Page protection: entries covered by `PT_GNU_RELRO` were made read-only by the dynamic
//! linker after relocation (`-z relro`; with `-z now` the whole GOT). We make the page
//! writable for the store and read-only again, exactly as ld.so left it: it protects
//! `[page_down(start), page_down(start + size))` (glibc `_dl_protect_relro`), so a page
//! that RELRO only partly covers stays writable and is left alone.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

// Dynamic section tags (elf.h).
const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RELAENT: i64 = 9;
const DT_PLTREL: i64 = 20;
const DT_JMPREL: i64 = 23;

#[cfg(target_arch = "x86_64")]
const GOT_RELOCS: [u32; 2] = [6 /* R_X86_64_GLOB_DAT */, 7 /* R_X86_64_JUMP_SLOT */];
#[cfg(target_arch = "aarch64")]
const GOT_RELOCS: [u32; 2] = [
    1025, /* R_AARCH64_GLOB_DAT */
    1026, /* R_AARCH64_JUMP_SLOT */
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const GOT_RELOCS: [u32; 0] = [];

/// Relocations that store a symbol's address, plus an addend, in a data word: a function
/// pointer initialised to `malloc` in a global (libxml2's `xmlMalloc`, `xmlFree`, linked into
/// lxml, and any allocator table of that kind).
#[cfg(target_arch = "x86_64")]
const DATA_RELOCS: [u32; 1] = [1 /* R_X86_64_64 */];
#[cfg(target_arch = "aarch64")]
const DATA_RELOCS: [u32; 1] = [257 /* R_AARCH64_ABS64 */];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const DATA_RELOCS: [u32; 0] = [];

/// What kind of word a relocation filled in (see [`Object::for_each_got`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    /// A GOT entry (`GLOB_DAT`, `JUMP_SLOT`): only the dynamic linker writes it.
    Got,
    /// A pointer in the object's writable data (`R_X86_64_64`, addend 0): the program may
    /// store another function there itself (`xmlMemSetup`), at any time.
    Data,
}

/// Whether this architecture's GOT relocations are known here.
pub(crate) const SUPPORTED_ARCH: bool = !GOT_RELOCS.is_empty();

#[repr(C)]
#[derive(Clone, Copy)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

/// `Elf64_Dyn`: a tag and a value or address.
#[repr(C)]
#[derive(Clone, Copy)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

/// One loaded object, as `dl_iterate_phdr` describes it.
#[derive(Clone, Copy)]
pub(crate) struct Object {
    pub(crate) base: usize,
    pub(crate) name: *const libc::c_char,
    phdr: *const libc::Elf64_Phdr,
    phnum: usize,
}

impl Object {
    fn phdrs(&self) -> &[libc::Elf64_Phdr] {
        if self.phdr.is_null() {
            return &[];
        }
        // SAFETY: dl_iterate_phdr describes `phnum` program headers at `phdr`, mapped for
        // as long as the object is loaded.
        unsafe { std::slice::from_raw_parts(self.phdr, self.phnum) }
    }

    /// The object's path as the dynamic linker knows it ("" for the main program).
    pub(crate) fn path(&self) -> &CStr {
        if self.name.is_null() {
            return c"";
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the link map.
        unsafe { CStr::from_ptr(self.name) }
    }

    /// Whether `addr` lies in one of the object's loaded segments.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.phdrs().iter().any(|p| {
            let start = self.base.wrapping_add(p.p_vaddr as usize);
            p.p_type == libc::PT_LOAD && addr >= start && addr < start + p.p_memsz as usize
        })
    }

    /// The addresses its loaded segments span: (lowest start, highest end).
    pub(crate) fn extent(&self) -> (usize, usize) {
        self.phdrs()
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| {
                let start = self.base.wrapping_add(p.p_vaddr as usize);
                (start, start + p.p_memsz as usize)
            })
            .fold((usize::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)))
    }

    /// The GNU build id (`NT_GNU_BUILD_ID` note, read from the mapped `PT_NOTE`
    /// segments): names the object's separate debug file under
    /// `/usr/lib/debug/.build-id/`.
    pub(crate) fn build_id(&self) -> Option<&[u8]> {
        const NT_GNU_BUILD_ID: u32 = 3;
        for p in self.phdrs().iter().filter(|p| p.p_type == libc::PT_NOTE) {
            let start = self.base.wrapping_add(p.p_vaddr as usize);
            let end = start + p.p_memsz as usize;
            let mut at = start;
            // Elf64_Nhdr: namesz, descsz, type (u32 each), then name and desc, each padded
            // to 4 bytes.
            while at + 12 <= end {
                // SAFETY: [at, at + 12) lies in the mapped note segment.
                let (namesz, descsz, kind) = unsafe {
                    let w = at as *const u32;
                    (*w as usize, *w.add(1) as usize, *w.add(2))
                };
                let name = at + 12;
                let desc = name + namesz.div_ceil(4) * 4;
                let next = desc + descsz.div_ceil(4) * 4;
                if next > end {
                    break;
                }
                // SAFETY: the name lies in the segment (checked against `end` above).
                let name_bytes = unsafe { std::slice::from_raw_parts(name as *const u8, namesz) };
                if kind == NT_GNU_BUILD_ID && name_bytes == b"GNU\0" {
                    // SAFETY: as above, for the descriptor.
                    return Some(unsafe { std::slice::from_raw_parts(desc as *const u8, descsz) });
                }
                at = next;
            }
        }
        None
    }

    /// Calls `f(entry_address, symbol_name, defined_here, slot)` for every GOT entry of the
    /// object that a `GLOB_DAT` or `JUMP_SLOT` relocation filled in, and every data word
    /// that an absolute relocation without addend filled in with the address of a symbol
    /// the object imports, within a segment loaded writable ([`Slot::Data`]);
    /// `defined_here` says the object defines the symbol itself (libc's own `malloc`
    /// entry) rather than importing it.
    pub(crate) fn for_each_got(&self, mut f: impl FnMut(usize, &CStr, bool, Slot)) {
        let Some(dynamic) = self
            .phdrs()
            .iter()
            .find(|p| p.p_type == libc::PT_DYNAMIC)
            .map(|p| self.base.wrapping_add(p.p_vaddr as usize) as *const Dyn)
        else {
            return; // a static program, or the vDSO without imports
        };
        let (mut strtab, mut symtab) = (0usize, 0usize);
        let (mut rela, mut relasz, mut relaent) = (0usize, 0usize, std::mem::size_of::<Rela>());
        let (mut jmprel, mut pltrelsz, mut pltrel) = (0usize, 0usize, DT_RELA);
        let mut i = 0;
        loop {
            // SAFETY: the dynamic section is an array ended by DT_NULL, mapped while the
            // object is loaded.
            let d = unsafe { *dynamic.add(i) };
            i += 1;
            let v = d.val as usize;
            match d.tag {
                DT_NULL => break,
                DT_STRTAB => strtab = self.address(v),
                DT_SYMTAB => symtab = self.address(v),
                DT_RELA => rela = self.address(v),
                DT_RELASZ => relasz = v,
                DT_RELAENT => relaent = v,
                DT_JMPREL => jmprel = self.address(v),
                DT_PLTRELSZ => pltrelsz = v,
                DT_PLTREL => pltrel = v as i64,
                _ => {}
            }
        }
        if strtab == 0 || symtab == 0 || relaent != std::mem::size_of::<Rela>() {
            return;
        }
        let mut walk = |table: usize, bytes: usize| {
            if table == 0 {
                return;
            }
            for k in 0..bytes / std::mem::size_of::<Rela>() {
                // SAFETY: DT_RELA/DT_JMPREL point at arrays of that many Elf64_Rela.
                let r = unsafe { *(table as *const Rela).add(k) };
                let kind = (r.info & 0xffff_ffff) as u32;
                let slot = if GOT_RELOCS.contains(&kind) {
                    Slot::Got
                } else if DATA_RELOCS.contains(&kind) && r.addend == 0 {
                    Slot::Data
                } else {
                    continue;
                };
                let sym_index = (r.info >> 32) as usize;
                if sym_index == 0 {
                    continue;
                }
                let at = self.base.wrapping_add(r.offset as usize);
                // SAFETY: the relocation's symbol index lies within the symbol table (the
                // linker wrote both).
                let sym = unsafe { *(symtab as *const Sym).add(sym_index) };
                let defined = sym.shndx != 0 /* SHN_UNDEF */;
                // Data words: only those holding a function the object imports (a shared
                // library's own absolute relocations, 13,000 in libpython, point at its
                // own objects), and outside a text relocation's read-only pages, where
                // storing would fault.
                if slot == Slot::Data && (defined || !self.writable(at)) {
                    continue;
                }
                // SAFETY: st_name lies within the string table.
                let name = unsafe { CStr::from_ptr((strtab + sym.name as usize) as *const libc::c_char) };
                f(at, name, defined, slot);
            }
        };
        walk(rela, relasz);
        // DT_PLTREL says whether the PLT relocations are RELA (always, on x86-64 and
        // AArch64); REL entries would be misread, so skip them.
        if pltrel == DT_RELA {
            walk(jmprel, pltrelsz);
        }
    }

    /// glibc relocates the `d_ptr` values of a loaded object's dynamic section in place;
    /// a few objects (the vDSO, objects on architectures with a read-only dynamic
    /// section) keep the link-time value. An address below the load base is unrelocated.
    fn address(&self, v: usize) -> usize {
        if v < self.base {
            self.base.wrapping_add(v)
        } else {
            v
        }
    }

    /// Whether `addr` lies in a segment loaded writable (`PF_W`: the data segment, RELRO
    /// part included).
    fn writable(&self, addr: usize) -> bool {
        self.phdrs().iter().any(|p| {
            let start = self.base.wrapping_add(p.p_vaddr as usize);
            p.p_type == libc::PT_LOAD
                && p.p_flags & libc::PF_W != 0
                && addr >= start
                && addr + std::mem::size_of::<usize>() <= start + p.p_memsz as usize
        })
    }

    /// Whether the page holding `addr` is one the dynamic linker made read-only (RELRO).
    fn in_relro(&self, addr: usize) -> bool {
        let page = page_size();
        self.phdrs().iter().any(|p| {
            if p.p_type != libc::PT_GNU_RELRO {
                return false;
            }
            let start = self.base.wrapping_add(p.p_vaddr as usize) & !(page - 1);
            let end = self.base.wrapping_add((p.p_vaddr + p.p_memsz) as usize) & !(page - 1);
            addr >= start && addr < end
        })
    }

    /// Stores `value` at the GOT entry `addr` with one atomic 8-byte store, lifting RELRO
    /// protection around it. False if the page could not be made writable.
    ///
    /// # Safety
    /// `addr` must be a GOT entry of this loaded object (from [`Object::for_each_got`]), and
    /// `value` a function compatible with the one the entry's callers expect.
    pub(crate) unsafe fn write(&self, addr: usize, value: usize) -> bool {
        let relro = self.in_relro(addr);
        let page = addr & !(page_size() - 1);
        // SAFETY: page is the start of a page of this object's mapped data segment.
        if relro
            && unsafe { libc::mprotect(page as *mut _, page_size(), libc::PROT_READ | libc::PROT_WRITE) } != 0
        {
            return false;
        }
        // SAFETY: GOT entries are 8-byte aligned words; other threads read them while they
        // call through them, so the store must be atomic (never a torn pointer).
        unsafe { (*(addr as *const AtomicUsize)).store(value, Ordering::SeqCst) };
        if relro {
            // SAFETY: as above; PROT_READ is what ld.so left on RELRO pages.
            unsafe { libc::mprotect(page as *mut _, page_size(), libc::PROT_READ) };
        }
        true
    }
}

/// Reads a GOT entry.
///
/// # Safety
/// `addr` must be a GOT entry of a loaded object.
pub(crate) unsafe fn read(addr: usize) -> usize {
    // SAFETY: see the function's contract; atomic for the same reason as `write`.
    unsafe { (*(addr as *const AtomicUsize)).load(Ordering::SeqCst) }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let mut p = PAGE.load(Ordering::Relaxed);
    if p == 0 {
        // SAFETY: sysconf has no preconditions.
        p = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        PAGE.store(p, Ordering::Relaxed);
    }
    p
}

/// Calls `f` on every loaded object, under the dynamic linker's lock: no object can be
/// loaded or unloaded meanwhile (dl_iterate_phdr(3)). `f` must not call `dlopen`.
pub(crate) fn for_each_object(mut f: impl FnMut(&Object)) {
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: data is the `&mut dyn FnMut` passed below; info is valid for the call.
        let (f, info) = unsafe { (&mut *(data as *mut &mut dyn FnMut(&Object)), &*info) };
        f(&Object {
            base: info.dlpi_addr as usize,
            name: info.dlpi_name,
            phdr: info.dlpi_phdr,
            phnum: usize::from(info.dlpi_phnum),
        });
        0
    }
    let mut dynf: &mut dyn FnMut(&Object) = &mut f;
    // SAFETY: the callback matches dl_iterate_phdr's contract and `dynf` outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(callback),
            &mut dynf as *mut &mut dyn FnMut(&Object) as *mut libc::c_void,
        );
    }
}
