//! Process memory from `/proc/self/statm` and `/proc/self/smaps_rollup` (proc(5)).
//!
//! Both files are read into fixed stack buffers: `std::fs::File::open` converts a short path
//! to a C string on the stack, and reading into an array allocates nothing, so measuring does
//! not move the heap it measures.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use super::parse::{parse_smaps_rollup, parse_statm, parse_status_memory};
use crate::error::{Error, Result};
use crate::probes::{MemoryCounters, ProcessMemory};

/// Reads the whole of `path` into `buf` and returns the filled part. A file that does not fit
/// is an error rather than a silently truncated text. `/proc` files are generated on `read`,
/// so one `open` + reads until EOF gives a consistent snapshot for files under a page
/// (proc(5) notes larger ones may be produced across several reads).
pub(super) fn read_small<'b>(path: &'static str, buf: &'b mut [u8]) -> Result<&'b [u8]> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = 0;
    loop {
        let Some(free) = buf.get_mut(len..).filter(|b| !b.is_empty()) else {
            return Err(Error::parse(
                path,
                format!("larger than the {} byte buffer", buf.len()),
            ));
        };
        match file.read(free) {
            Ok(0) => return Ok(&buf[..len]),
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

/// The page size, from `sysconf(_SC_PAGESIZE)` once; 0 = not asked yet.
static PAGE_SIZE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn page_size() -> u64 {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported on Linux.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // sysconf cannot fail for _SC_PAGESIZE; 4 KiB is the smallest page size Linux has, should
    // it ever answer -1.
    let size = u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096);
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// `(rss, vms)` in bytes: size and resident pages of `/proc/self/statm`.
fn statm() -> Result<(u64, u64)> {
    // statm is seven numbers, well under 100 bytes.
    let mut buf = [0u8; 256];
    let (size, resident) = parse_statm(read_small("/proc/self/statm", &mut buf)?)?;
    let page = page_size();
    Ok((resident.saturating_mul(page), size.saturating_mul(page)))
}

/// `(rss, vms)` in bytes. One read of `/proc/self/statm`; no allocation.
pub(crate) fn memory_quick() -> Result<(u64, u64)> {
    statm()
}

/// rss, vms, private anonymous resident memory and swap from `/proc/self/status`: kernel
/// counters, a few microseconds; no allocation.
pub(crate) fn memory_counters() -> Result<MemoryCounters> {
    // status is ~1.5 KB on Linux 6.x; 8 KiB leaves room for what later kernels add.
    let mut buf = [0u8; 8192];
    let m = parse_status_memory(read_small("/proc/self/status", &mut buf)?)?;
    Ok(MemoryCounters {
        rss: m.rss,
        vms: m.vms,
        anon: m.anon,
        swap: m.swap,
    })
}

/// rss and vms from statm, uss/pss/swap from `/proc/self/smaps_rollup`; no allocation.
pub(crate) fn process_memory() -> Result<ProcessMemory> {
    // smaps_rollup is ~25 lines of ~30 bytes (about 700 bytes on Linux 6.x); 4 KiB leaves
    // room for keys added by future kernels.
    let mut buf = [0u8; 4096];
    let text = match read_small("/proc/self/smaps_rollup", &mut buf) {
        Ok(text) => text,
        // The file exists since Linux 4.14; the full smaps would work on older kernels but is
        // megabytes of text to parse on every sample.
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Err(Error::Unavailable {
                what: "uss/pss (/proc/self/smaps_rollup)",
                reason: "/proc/self/smaps_rollup does not exist: it needs Linux 4.14 or later".into(),
            })
        }
        Err(e) => return Err(e),
    };
    let rollup = parse_smaps_rollup(text)?;
    let (rss, vms) = statm()?;
    Ok(ProcessMemory {
        rss,
        vms,
        uss: rollup.uss(),
        pss: rollup.pss,
        swap: rollup.swap,
    })
}

#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn page_size_is_cached_and_sane() {
        let p = page_size();
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
        assert_eq!(PAGE_SIZE.load(Ordering::Relaxed), p);
        assert_eq!(page_size(), p);
    }

    #[test]
    fn read_small_rejects_what_does_not_fit() {
        let mut buf = [0u8; 8];
        let err = read_small("/proc/self/status", &mut buf).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err}");
        let mut buf = [0u8; 8];
        let err = read_small("/nonexistent/psleak", &mut buf).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn live_values_are_consistent() {
        let m = process_memory().unwrap();
        assert!(m.rss > 0 && m.vms >= m.rss, "{m:?}");
        assert!(m.uss > 0 && m.pss > 0, "{m:?}");
        let (rss, vms) = memory_quick().unwrap();
        assert!(rss > 0 && vms >= rss);
    }
}
