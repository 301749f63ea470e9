//! Names for return addresses: function, file and line from DWARF where the object has it
//! (the `addr2line` crate; inlined calls expanded; a separate debug file found by build id
//! under `/usr/lib/debug/.build-id/`, as Debian's `-dbg` packages install them), the
//! symbol table otherwise and for the interpreter and the C and C++ runtime libraries, and always the object's path and the offset into it, so that a
//! stripped library still says where to look (`addr2line -e object offset`).
//!
//! Only the distinct addresses of surviving allocations are resolved, once per report,
//! with recording paused: symbolising allocates and reads files. The objects are looked up
//! afresh for each report (`dl_iterate_phdr`), so a library loaded during the check is
//! named too; a symboliser that lists the objects once per process would miss it. One
//! that was also unloaded during the check is named from what the dlopen hook noted of it
//! (`loaded`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use addr2line::Loader;
use object::Object;

use super::elf;
use crate::tracking::Frame;

/// A resolved frame and the load address of its object.
pub(crate) struct Resolved {
    pub(crate) frame: Frame,
    pub(crate) object_base: usize,
}

/// A loaded object as symbolisation needs it.
#[derive(Clone)]
struct ObjectInfo {
    /// Path ("" for the main program, read as /proc/self/exe).
    path: String,
    /// Load bias: link-time addresses are `address - bias`.
    bias: usize,
    build_id: Option<Vec<u8>>,
}

/// The object holding `addr`: its path and load bias. One loaded during the check and
/// unloaded since is found too (see [`super::loaded`]).
fn find_object(addr: usize) -> Option<ObjectInfo> {
    loaded_object(addr).or_else(|| {
        super::loaded::unloaded_object(addr).map(|(path, bias, build_id)| ObjectInfo { path, bias, build_id })
    })
}

/// The loaded object holding `addr`.
fn loaded_object(addr: usize) -> Option<ObjectInfo> {
    let mut out = None;
    elf::for_each_object(|o| {
        if out.is_none() && o.contains(addr) {
            out = Some(ObjectInfo {
                path: o.path().to_string_lossy().into_owned(),
                bias: o.base,
                build_id: o.build_id().map(<[u8]>::to_vec),
            });
        }
    });
    out
}

/// The object holding `addr`: its path and load bias (for frame filtering).
pub(crate) fn object_of(addr: usize) -> Option<(String, usize)> {
    find_object(addr).map(|o| (o.path, o.bias))
}

/// The object file and its separate debug file, each read only as far as a report needs:
/// the symbol tables for names, the DWARF only for a frame whose file and line are shown.
/// Opening a DWARF reader inflates every compressed debug section of the file: 50-90 ms
/// for a Debian libc debug file, paid for nothing when the only libc frames are a thread's
/// entry (`start_thread`, `clone3`) that the report drops.
struct Debug {
    path: PathBuf,
    /// Whether file and line are read for this object's frames: not for the C and C++
    /// runtime libraries (see [`is_system_runtime`]).
    lines: bool,
    separate_path: Option<PathBuf>,
    symbols: Option<Option<Symbols>>,
    loaders: Option<[Option<Loader>; 2]>,
}

impl Debug {
    fn new(info: &ObjectInfo) -> Debug {
        let path = if info.path.is_empty() {
            PathBuf::from("/proc/self/exe")
        } else {
            PathBuf::from(&info.path)
        };
        let separate_path = info.build_id.as_ref().filter(|id| id.len() > 1).map(|id| {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            PathBuf::from(format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &hex[..2],
                &hex[2..]
            ))
        });
        Debug {
            lines: !is_system_runtime(&path),
            path,
            separate_path,
            symbols: None,
            loaders: None,
        }
    }

    /// The DWARF readers of the object and of its separate debug file, opened on first use.
    fn loaders(&mut self) -> &[Option<Loader>; 2] {
        let (path, separate) = (&self.path, &self.separate_path);
        self.loaders.get_or_insert_with(|| {
            [
                Loader::new(path).ok(),
                separate.as_ref().and_then(|p| Loader::new(p).ok()),
            ]
        })
    }

    /// The symbol-table name at `probe`, without reading any DWARF: from the separate
    /// debug file's full table when there is one (a stripped object keeps only its
    /// exported names), else the object's own.
    fn symbol(&mut self, probe: u64) -> Option<String> {
        let (path, separate) = (&self.path, &self.separate_path);
        self.symbols
            .get_or_insert_with(|| {
                separate
                    .as_ref()
                    .and_then(|p| Symbols::read(p))
                    .or_else(|| Symbols::read(path))
            })
            .as_ref()?
            .get(probe)
    }

    /// Function, file and line of each (inlined) frame at `probe` (runtime address `pc`),
    /// innermost first; `lines` says, from the symbol-table name, whether the frame's file
    /// and line are wanted (a thread's entry is dropped by the report: its name is enough).
    fn frames(
        &mut self,
        probe: u64,
        pc: usize,
        lines: &dyn Fn(&str) -> bool,
    ) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
        // The loader's own table first: an exported function (`strdup`, `opendir`,
        // `PyList_New`) is named without reading a symbol table from disk (libc's, from
        // its debug file: 10 ms a report).
        if let Some(name) = exported(pc).or_else(|| self.symbol(probe)) {
            if !self.lines || !lines(&name) {
                return vec![(Some(name), None, None)];
            }
        }
        let mut out = Vec::new();
        let loaders = self.loaders();
        for loader in loaders.iter().flatten() {
            if let Ok(mut frames) = loader.find_frames(probe) {
                while let Ok(Some(f)) = frames.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok())
                        .map(|n| n.into_owned());
                    let (file, line) = f
                        .location
                        .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
                    out.push((function, file, line));
                }
            }
            if out.iter().any(|(_, file, _)| file.is_some()) {
                return out;
            }
            out.clear();
        }
        // No line information: the symbol table's name, unless the address lies past the
        // end of that symbol (a static function of a stripped object: the nearest exported
        // symbol below it is another function, `PyInit_<module>` in a stripped extension).
        let symbol = loaders
            .iter()
            .flatten()
            .find_map(|l| l.find_symbol(probe))
            .filter(|raw| !beyond_dynamic_symbol(pc, raw))
            .map(|n| addr2line::demangle_auto(n.into(), None).into_owned());
        vec![(symbol, None, None)]
    }
}

/// Whether `path` is the C library, its loader or the C++ runtime (glibc's and musl's
/// `libc`, `ld-linux`/`ld-musl`, `libstdc++`, `libgcc_s`): a frame there is `strdup`,
/// `opendir` or `operator new` on the way to `malloc`, and its name says all a user can act
/// on. Their file and line cost the whole debug file when one is installed (Debian's
/// `libc6-dbg`: 65-80 ms per report, to print glibc's own source paths).
fn is_system_runtime(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    [
        "libc.so",
        "libc-",
        "libc.musl",
        "ld-linux",
        "ld-musl",
        "libstdc++.so",
        "libgcc_s.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A symbol table as (address, name) pairs sorted by address: the `.symtab` of an object,
/// or its `.dynsym` when stripped. Names are demangled when looked up.
struct Symbols(Vec<(u64, String)>);

impl Symbols {
    fn read(path: &Path) -> Option<Symbols> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: a read-only private mapping, read here and dropped before returning; a
        // debug file or library rewritten meanwhile would give wrong names, not a fault
        // (the same as addr2line's own loader, which maps files this way).
        let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let file = object::File::parse(&*data).ok()?;
        let map = file.symbol_map();
        let symbols: Vec<(u64, String)> = map
            .symbols()
            .iter()
            .map(|s| (s.address(), s.name().to_string()))
            .collect();
        (!symbols.is_empty()).then_some(Symbols(symbols))
    }

    /// The name of the last symbol at or below `probe` (as `addr2line` finds it).
    fn get(&self, probe: u64) -> Option<String> {
        let i = self.0.partition_point(|(a, _)| *a <= probe);
        let raw = &self.0[i.checked_sub(1)?].1;
        Some(addr2line::demangle_auto(raw.as_str().into(), None).into_owned())
    }
}

/// Whether `pc` lies past the end of `name`, a dynamic symbol of the object holding it:
/// the loader finds no dynamic symbol that contains `pc` (glibc's `dladdr` matches by
/// size), yet
/// the symbol table's nearest name below it is one of the object's dynamic symbols, which
/// must then end before `pc`. A name the loader does not export (a `.symtab` symbol of an
/// unstripped object, a static function) is trusted.
#[cfg(target_env = "gnu")]
fn beyond_dynamic_symbol(pc: usize, name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: Dl_info is plain data; zeroes are a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`.
    let found = unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return false; // not in a loaded object: nothing to check against
    }
    if !info.dli_sname.is_null() {
        return false; // a dynamic symbol contains pc: the loader's word is final
    }
    // SAFETY: dli_fname is the object's NUL-terminated path; RTLD_NOLOAD loads nothing
    // and only takes a reference to an object already loaded, given back below.
    let handle = unsafe { libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return false; // the main program, or an object the loader does not know by path
    }
    // SAFETY: a valid handle and a NUL-terminated name.
    let addr = unsafe { libc::dlsym(handle, cname.as_ptr()) } as usize;
    // SAFETY: the handle came from the dlopen above.
    unsafe { libc::dlclose(handle) };
    // The name is this object's own dynamic symbol, at or below pc: it does not contain pc.
    addr != 0 && addr >= info.dli_fbase as usize && addr <= pc
}

#[cfg(not(target_env = "gnu"))]
fn beyond_dynamic_symbol(_pc: usize, _name: &str) -> bool {
    false
}

/// The name of the exported (dynamic) symbol that contains `pc`, from the loader's tables
/// (glibc's `dladdr` matches by symbol size): none for a static function.
#[cfg(target_env = "gnu")]
fn exported(pc: usize) -> Option<String> {
    // SAFETY: Dl_info is plain data; zeroes are a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`.
    let found = unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_sname.is_null() || (info.dli_saddr as usize) > pc {
        return None;
    }
    // SAFETY: dli_sname is the symbol's NUL-terminated name in the loader's string table.
    let raw = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) }
        .to_str()
        .ok()?;
    Some(addr2line::demangle_auto(raw.into(), None).into_owned())
}

#[cfg(not(target_env = "gnu"))]
fn exported(_pc: usize) -> Option<String> {
    None
}

/// Resolves return addresses, caching objects for the length of one report.
#[derive(Default)]
pub(crate) struct Symbolizer {
    debug: HashMap<String, Debug>,
}

impl Symbolizer {
    /// The frames at return address `ip`, innermost (inlined) first. `lines` says, from the
    /// frame's symbol-table name, whether its file and line are wanted: a frame the report
    /// drops (a thread's entry) is named without reading DWARF.
    pub(crate) fn resolve(&mut self, ip: usize, lines: &dyn Fn(&str) -> bool) -> Vec<Resolved> {
        // A return address points after the call; the call's own line is one byte before.
        let pc = ip.saturating_sub(1);
        let Some(info) = find_object(pc) else {
            return vec![Resolved {
                frame: Frame {
                    function: None,
                    file: None,
                    line: None,
                    object: None,
                    offset: None,
                    python: false,
                },
                object_base: 0,
            }];
        };
        let probe = (pc - info.bias) as u64;
        let debug = self
            .debug
            .entry(info.path.clone())
            .or_insert_with(|| Debug::new(&info));
        let object = if info.path.is_empty() {
            std::fs::read_link("/proc/self/exe")
                .ok()
                .map(|p| p.display().to_string())
        } else {
            Some(info.path.clone())
        };
        // The runtime's frames are named, not placed: `PyBytes_FromStringAndSize` says which
        // object was made; its source line would cost the interpreter's DWARF (40 ms).
        let in_runtime = super::stacks::in_runtime(ip);
        debug
            .frames(probe, pc, &|name| !in_runtime && lines(name))
            .into_iter()
            .map(|(function, file, line)| Resolved {
                frame: Frame {
                    function,
                    file,
                    line,
                    object: object.clone(),
                    offset: Some(probe),
                    python: false,
                },
                object_base: info.bias,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn a_frame_whose_lines_are_not_wanted_is_named_without_reading_dwarf() {
        let pc = libc::strdup as *const () as usize;
        let info = find_object(pc).unwrap();
        let probe = (pc - info.bias) as u64;
        let mut debug = Debug::new(&info);
        let frames = debug.frames(probe, pc, &|_| false);
        assert_eq!(frames.len(), 1, "{frames:?}");
        let (name, file, line) = &frames[0];
        assert!(
            name.as_deref().is_some_and(|n| n.contains("strdup")),
            "{frames:?}"
        );
        assert_eq!((file, line), (&None, &None));
        assert!(debug.loaders.is_none(), "a DWARF reader was opened");
        // Wanted, libc's lines are still not read: the C library is named, not placed.
        let frames = debug.frames(probe, pc, &|_| true);
        assert!(frames
            .iter()
            .any(|(n, _, _)| n.as_deref().is_some_and(|n| n.contains("strdup"))));
        assert!(debug.loaders.is_none(), "a DWARF reader was opened for libc");
        // In an object of the user's (this test program), they are looked for.
        let pc = a_function_of_the_test as fn() as usize;
        let info = find_object(pc).unwrap();
        let mut debug = Debug::new(&info);
        debug.frames((pc - info.bias) as u64, pc, &|_| true);
        assert!(debug.loaders.is_some());
    }

    #[inline(never)]
    fn a_function_of_the_test() {
        std::hint::black_box(());
    }

    #[test]
    fn the_c_and_cxx_runtimes_are_system_objects() {
        for p in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/ld-musl-x86_64.so.1",
            "/usr/lib/libstdc++.so.6",
        ] {
            assert!(is_system_runtime(Path::new(p)), "{p}");
        }
        for p in [
            "/usr/lib/libxml2.so.2",
            "/site-packages/_ext.cpython-311-x86_64-linux-gnu.so",
            "",
        ] {
            assert!(!is_system_runtime(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn symbols_name_the_last_symbol_at_or_below_an_address() {
        let s = Symbols(vec![(0x10, "helper".into()), (0x20, "_ZN3foo3barEv".into())]);
        assert_eq!(s.get(0x8), None);
        assert_eq!(s.get(0x10).as_deref(), Some("helper"));
        assert_eq!(s.get(0x1f).as_deref(), Some("helper"));
        assert_eq!(s.get(0x25).as_deref(), Some("foo::bar()"));
    }
}
