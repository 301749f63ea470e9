//! Allocation tracking where it does not exist yet (macOS, other platforms, and the
//! unsupported backend tested on Linux): installing says why, everything else is inert, and
//! a check judges from the counters it has.

use crate::tracking::{CapturedStack, Frame, RuntimeAllocator};

pub(crate) const MAX_RUNS: usize = 64;

/// Why tracking cannot run here.
pub(crate) struct Unavailable(pub(crate) String);

pub(crate) struct LiveBlock {
    pub(crate) size: usize,
    pub(crate) run: u32,
    pub(crate) stack: u16,
}

pub(crate) struct Resolved {
    pub(crate) frame: Frame,
    pub(crate) object_base: usize,
}

pub(crate) fn install(_runtime: Option<usize>) -> Result<(), Unavailable> {
    Err(Unavailable(format!(
        "psleak tracks native allocations on Linux only (this is {})",
        std::env::consts::OS
    )))
}

pub(crate) fn uninstall() {}
pub(crate) fn reset() {}
pub(crate) fn set_run(_run: u32) {}
pub(crate) fn set_capture(_on: bool) {}
pub(crate) fn set_host_location(_token: u64) {}

/// Without tracking, the runtime's allocator stays as it is.
///
/// # Safety
///
/// `original` must point to a valid allocator.
pub(crate) unsafe fn runtime_wrapper(original: *const RuntimeAllocator) -> RuntimeAllocator {
    // SAFETY: the caller's promise.
    unsafe { *original }
}

pub(crate) fn paused<R>(f: impl FnOnce() -> R) -> R {
    f()
}

pub(crate) fn survivors() -> [(i64, i64); MAX_RUNS] {
    [(0, 0); MAX_RUNS]
}

pub(crate) fn resize_sites() -> Vec<(u16, i64)> {
    Vec::new()
}

pub(crate) fn resized() -> [i64; MAX_RUNS] {
    [0; MAX_RUNS]
}

pub(crate) fn lost() -> Option<[(i64, i64); MAX_RUNS]> {
    None
}

pub(crate) fn live_blocks() -> Vec<LiveBlock> {
    Vec::new()
}

pub(crate) fn is_own(_ip: usize) -> bool {
    false
}

pub(crate) fn in_runtime(_ip: usize) -> bool {
    false
}

pub(crate) fn shown(ips: &[usize]) -> usize {
    ips.len()
}

pub(crate) fn stack(_id: u16) -> Option<CapturedStack> {
    None
}

pub(crate) fn current_thread_id() -> u32 {
    0
}

pub(crate) fn tracker_bytes() -> usize {
    0
}

pub(crate) fn object_of(_addr: usize) -> Option<(String, usize)> {
    None
}

/// Nothing to resolve without tracking (a field, so that it is built like the Linux one:
/// `Symbolizer::default()`).
#[derive(Default)]
pub(crate) struct Symbolizer {
    _none: (),
}

impl Symbolizer {
    pub(crate) fn resolve(&mut self, _ip: usize, _lines: &dyn Fn(&str) -> bool) -> Vec<Resolved> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracking_says_it_is_unavailable() {
        let Err(e) = super::install(None) else {
            panic!("installed")
        };
        assert!(e.0.contains("Linux only"), "{}", e.0);
    }
}
