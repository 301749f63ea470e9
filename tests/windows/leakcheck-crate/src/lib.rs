//! Loads tests/windows/winleaks.c's DLL for the tests (path in `PSLEAK_WINLEAKS_DLL`).
#![cfg(windows)]

use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};

/// A `void f(void)` exported by the DLL at `$PSLEAK_WINLEAKS_DLL`.
///
/// # Panics
/// When the variable is unset, the DLL does not load or lacks `name`.
pub fn winleaks(name: &str) -> extern "C" fn() {
    let path = std::env::var("PSLEAK_WINLEAKS_DLL").expect("PSLEAK_WINLEAKS_DLL: path of winleaks.dll");
    let wide: Vec<u16> = path.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated path; the DLL stays loaded for the life of the process.
    let module = unsafe { LoadLibraryW(wide.as_ptr()) };
    assert!(!module.is_null(), "cannot load {path}");
    let cname = format!("{name}\0");
    // SAFETY: a loaded module, a NUL-terminated name.
    let f = unsafe { GetProcAddress(module, cname.as_ptr()) }.unwrap_or_else(|| panic!("no export {name}"));
    // SAFETY: the exports used take and return nothing.
    unsafe { std::mem::transmute::<unsafe extern "system" fn() -> isize, extern "C" fn()>(f) }
}
