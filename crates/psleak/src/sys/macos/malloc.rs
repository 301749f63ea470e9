//! libmalloc's statistics (malloc/malloc.h; malloc_zone(3)).

use super::decode::{malloc_stats_from_zones, ZoneTotals};
use crate::error::Result;
use crate::probes::MallocStats;

extern "C" {
    /// malloc/malloc.h, macOS 10.7+: asks `zone` (every zone when NULL) to give free memory
    /// back to the kernel, `goal` bytes or as much as it can when 0. Returns the bytes
    /// released. libc does not declare it.
    fn malloc_zone_pressure_relief(zone: *mut libc::malloc_zone_t, goal: libc::size_t) -> libc::size_t;
}

/// Reads the allocator's counters over every registered zone (the default and nano zones,
/// and any zone a library creates). Cost: each zone's introspection `statistics` hook,
/// which takes each magazine's lock in turn; no allocation.
pub(crate) fn malloc_stats() -> Result<MallocStats> {
    let mut stats = libc::malloc_statistics_t {
        blocks_in_use: 0,
        size_in_use: 0,
        max_size_in_use: 0,
        size_allocated: 0,
    };
    // SAFETY: a NULL zone sums the statistics of all zones (malloc/malloc.h); `stats` is a
    // valid, writable malloc_statistics_t.
    unsafe { libc::malloc_zone_statistics(std::ptr::null_mut(), &mut stats) };
    Ok(malloc_stats_from_zones(ZoneTotals {
        size_in_use: stats.size_in_use as u64,
        size_allocated: stats.size_allocated as u64,
    }))
}

/// `malloc_zone_pressure_relief(NULL, 0)`: every zone returns what it can (the counterpart of
/// glibc's `malloc_trim(0)`). Returns whether anything was released.
pub(crate) fn malloc_trim() -> Result<bool> {
    // SAFETY: a NULL zone means all zones; a goal of 0 means "as much as possible". It is
    // thread-safe (each zone locks itself).
    Ok(unsafe { malloc_zone_pressure_relief(std::ptr::null_mut(), 0) } > 0)
}

/// Run on macOS only (`cargo test` there); here they are type-checked and linted.
#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn held_block_is_counted_in_heap_used() {
        // Other tests allocate on other threads: compare with a margin, not exactly.
        let before = malloc_stats().unwrap();
        let big: Vec<u8> = vec![1; 4 << 20];
        let during = malloc_stats().unwrap();
        // A large block comes from the zone's vm_allocate'd region and counts as in use.
        assert!(
            during.heap_used >= before.heap_used + (4 << 20),
            "{before:?} {during:?}"
        );
        assert!(during.heap_total >= during.heap_used, "{during:?}");
        assert_eq!(during.mmap_used, 0);
        drop(std::hint::black_box(big));
        let _ = malloc_trim().unwrap();
    }
}
