//! Builds `tests/c/leaks.c` into a shared library with the `cc` crate and loads it.
//!
//! cc is meant for build scripts, which get TARGET, HOST and OUT_DIR from cargo; the tests
//! set them explicitly, so that the C code is built only when the tests run and never
//! becomes part of the library.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the report

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;

pub struct Lib(*mut libc::c_void);

/// Serialises the tests of one binary: a leak check measures the whole process, so a test
/// running beside it on another thread of the harness would be measured too. `make test`
/// also passes --test-threads=1; this keeps a plain `cargo test` right.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The 1-based line of `tests/c/<file>` holding `marker`.
pub fn line_of(file: &str, marker: &str) -> u32 {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let i = text
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in {file}"));
    i as u32 + 1
}

fn target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

impl Lib {
    /// Compiles the library and loads it.
    pub fn load() -> Lib {
        let so = build();
        let path = CString::new(so.to_str().unwrap()).unwrap();
        // SAFETY: dlopen with a valid NUL-terminated path.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        assert!(!handle.is_null(), "dlopen({}) failed", so.display());
        Lib(handle)
    }

    /// Compiles the library and copies it to `name` (not loaded): a distinct object for
    /// the dynamic linker, for a test to load when it wants.
    pub fn build_copy(name: &str) -> PathBuf {
        let so = build();
        let copy = so.with_file_name(name);
        std::fs::copy(&so, &copy).unwrap();
        copy
    }

    fn sym(&self, name: &str) -> *mut libc::c_void {
        let c = CString::new(name).unwrap();
        // SAFETY: the handle is open and the name NUL-terminated.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!p.is_null(), "symbol {name} not found");
        p
    }

    /// A `void f(void)` of the library.
    pub fn void_fn(&self, name: &str) -> extern "C" fn() {
        // SAFETY: the symbol is a C function taking and returning nothing.
        unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(self.sym(name)) }
    }

    /// An `int f(void)` of the library.
    pub fn int_fn(&self, name: &str) -> extern "C" fn() -> libc::c_int {
        // SAFETY: the symbol is a C function taking nothing and returning int.
        unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn() -> libc::c_int>(self.sym(name)) }
    }

    #[allow(dead_code)] // not every test binary reads addresses
    pub fn size_fn(&self, name: &str) -> extern "C" fn() -> libc::size_t {
        // SAFETY: the symbol is a C function taking nothing and returning size_t.
        unsafe { std::mem::transmute::<*mut libc::c_void, extern "C" fn() -> libc::size_t>(self.sym(name)) }
    }
}

/// Compiles `tests/c/leaks.c` into a shared library (once per test binary: later calls
/// find it built) and returns its path.
fn build() -> PathBuf {
    build_as("libleaks.so", &[])
}

impl Lib {
    /// Compiles the library as `name`, with `DT_RUNPATH` `runpath` (`$ORIGIN` expanded by
    /// the dynamic linker), and loads it.
    pub fn load_with_runpath(name: &str, runpath: &str) -> Lib {
        let so = build_as(
            name,
            &[&format!("-Wl,-rpath,{runpath}"), "-Wl,--enable-new-dtags"],
        );
        let path = CString::new(so.to_str().unwrap()).unwrap();
        // SAFETY: dlopen with a valid NUL-terminated path.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
        assert!(!handle.is_null(), "dlopen({}) failed", so.display());
        Lib(handle)
    }

    /// A `void *f(const char *)` of the library.
    pub fn open_fn(&self, name: &str) -> extern "C" fn(*const libc::c_char) -> *mut libc::c_void {
        // SAFETY: the symbol is a C function taking a string and returning a pointer.
        unsafe {
            std::mem::transmute::<*mut libc::c_void, extern "C" fn(*const libc::c_char) -> *mut libc::c_void>(
                self.sym(name),
            )
        }
    }
}

/// Compiles `tests/c/leaks.c` into the shared library `name` with `extra` flags (once per
/// test binary and name) and returns its path.
fn build_as(name: &str, extra: &[&str]) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tests/c/leaks.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("leaks-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let so = out.join(name);
    if so.exists() {
        return so;
    }
    let compiler = cc::Build::new()
        .target(&target())
        .host(&target())
        .opt_level(2)
        // DWARF, so that allocation sites name file:line; no frame pointers, so that the
        // unwinder is shown to work without them (it reads .eh_frame).
        .debug(true)
        .flag("-fomit-frame-pointer")
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args(["-shared", "-fPIC", "-pthread", "-Wall", "-Werror"])
        .args(extra)
        .arg("-o")
        .arg(&so)
        .arg(&src);
    let status = cmd.status().expect("cannot run the C compiler");
    assert!(status.success(), "compiling {} failed", src.display());
    so
}
