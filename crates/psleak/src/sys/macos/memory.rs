//! Process memory from Mach's `task_info` and `mach_vm_region` (mach/task_info.h,
//! mach/vm_region.h). Every struct lives on the stack: measuring allocates nothing.

use std::mem::{offset_of, size_of};

use mach2::kern_return::{KERN_INVALID_ADDRESS, KERN_SUCCESS};
use mach2::mach_port::mach_port_deallocate;
use mach2::message::mach_msg_type_number_t;
use mach2::port::{mach_port_t, MACH_PORT_NULL};
use mach2::task::task_info;
use mach2::task_info::{
    mach_task_basic_info, task_flavor_t, task_vm_info, MACH_TASK_BASIC_INFO, MACH_TASK_BASIC_INFO_COUNT,
    TASK_VM_INFO,
};
use mach2::traps::mach_task_self;
use mach2::vm::mach_vm_region;
use mach2::vm_region::{vm_region_top_info, VM_REGION_TOP_INFO};
use mach2::vm_types::{mach_vm_address_t, mach_vm_size_t, natural_t};

use super::decode::{self, RegionTotals, VmInfo};
use super::mach_error;
use crate::error::Result;
use crate::probes::{MemoryCounters, ProcessMemory};

/// `TASK_VM_INFO_COUNT` of mach/task_info.h, which mach2 does not define: the struct's size in
/// `natural_t`. mach2 0.5's `task_vm_info` has every field up to revision 7; a kernel that
/// knows fewer fills what it knows and answers with the smaller count.
const TASK_VM_INFO_COUNT: mach_msg_type_number_t =
    (size_of::<task_vm_info>() / size_of::<natural_t>()) as mach_msg_type_number_t;

// The revision-1 count the decoder checks is where mach2's struct puts `min_address`, the
// first field after `phys_footprint`.
const _: () = assert!(
    offset_of!(task_vm_info, min_address) / size_of::<natural_t>()
        == decode::TASK_VM_INFO_REV1_COUNT as usize
);

/// Mach's task info structs that [`task_info_of`] may fill.
///
/// # Safety
///
/// `COUNT` must be the struct's size in `natural_t` (its `*_COUNT` in mach/task_info.h) and
/// `FLAVOR` the flavor whose answer has that struct's layout; all-zero must be a valid value.
unsafe trait TaskInfo: Default {
    const FLAVOR: task_flavor_t;
    const COUNT: mach_msg_type_number_t;
    const CALL: &'static str;
}

// SAFETY: TASK_VM_INFO fills task_vm_info_data_t; the count is the struct's size.
unsafe impl TaskInfo for task_vm_info {
    const FLAVOR: task_flavor_t = TASK_VM_INFO;
    const COUNT: mach_msg_type_number_t = TASK_VM_INFO_COUNT;
    const CALL: &'static str = "task_info(TASK_VM_INFO)";
}

// SAFETY: MACH_TASK_BASIC_INFO fills mach_task_basic_info_data_t, of that count.
unsafe impl TaskInfo for mach_task_basic_info {
    const FLAVOR: task_flavor_t = MACH_TASK_BASIC_INFO;
    const COUNT: mach_msg_type_number_t = MACH_TASK_BASIC_INFO_COUNT;
    const CALL: &'static str = "task_info(MACH_TASK_BASIC_INFO)";
}

/// `task_info` of this task into a `T` on the stack, and the count the kernel answered with
/// (smaller than `T::COUNT` when it knows an older revision of the struct).
fn task_info_of<T: TaskInfo>() -> Result<(T, mach_msg_type_number_t)> {
    let mut info = T::default();
    let mut count = T::COUNT;
    // SAFETY: `info` is writable for `count` natural_t, the size told to the kernel (the
    // TaskInfo contract); the task's own port needs no deallocation.
    let kr = unsafe {
        task_info(
            mach_task_self(),
            T::FLAVOR,
            (&mut info as *mut T).cast(),
            &mut count,
        )
    };
    if kr != KERN_SUCCESS {
        return Err(mach_error(T::CALL, kr));
    }
    Ok((info, count))
}

/// `task_info(TASK_VM_INFO)` of this task.
fn vm_info() -> Result<VmInfo> {
    let (info, count) = task_info_of::<task_vm_info>()?;
    Ok(VmInfo {
        virtual_size: info.virtual_size,
        resident_size: info.resident_size,
        internal: info.internal,
        compressed: info.compressed,
        phys_footprint: info.phys_footprint,
        count,
    })
}

/// `(rss, vms)` in bytes: `task_info(MACH_TASK_BASIC_INFO)`, the cheapest task counters; no
/// allocation. The virtual size includes the shared cache mapped into every process
/// (several GiB): its growth, not its level, is what a check looks at.
pub(crate) fn memory_quick() -> Result<(u64, u64)> {
    let (info, _) = task_info_of::<mach_task_basic_info>()?;
    Ok((info.resident_size, info.virtual_size))
}

/// rss, vms, footprint (as `anon`) and compressed memory (as `swap`) from one
/// `task_info(TASK_VM_INFO)`: kernel counters and ledgers; no allocation.
pub(crate) fn memory_counters() -> Result<MemoryCounters> {
    Ok(decode::memory_counters(&vm_info()?))
}

/// The page size: the unit of the region walk's counts and of the verdict's page-granular
/// floors (16 KiB on Apple silicon, 4 KiB on Intel). One `sysconf` call, no allocation.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// USS and PSS in pages, over every region of this task. One Mach call per region (a few
/// hundred to a few thousand), like Linux's smaps_rollup walk; no allocation.
fn region_totals() -> Result<RegionTotals> {
    // SAFETY: reading the task's own port has no preconditions.
    let task = unsafe { mach_task_self() };
    let mut totals = RegionTotals::default();
    let mut address: mach_vm_address_t = 0;
    loop {
        let mut size: mach_vm_size_t = 0;
        let mut info = vm_region_top_info::default();
        let mut count = vm_region_top_info::count();
        let mut object: mach_port_t = MACH_PORT_NULL;
        // SAFETY: every out-pointer is valid and writable; `count` is the size of `info` in
        // ints, as VM_REGION_TOP_INFO_COUNT.
        let kr = unsafe {
            mach_vm_region(
                task,
                &mut address,
                &mut size,
                VM_REGION_TOP_INFO,
                (&mut info as *mut vm_region_top_info).cast(),
                &mut count,
                &mut object,
            )
        };
        // No region at or above `address`: the walk is done.
        if kr == KERN_INVALID_ADDRESS {
            break;
        }
        if kr != KERN_SUCCESS {
            return Err(mach_error("mach_vm_region(VM_REGION_TOP_INFO)", kr));
        }
        // The object name is always MACH_PORT_NULL on current kernels; release it should an
        // old one hand out a right.
        if object != MACH_PORT_NULL {
            // SAFETY: `object` is a send right this call gave us, released once.
            unsafe { mach_port_deallocate(task, object) };
        }
        totals.add(
            info.share_mode,
            info.ref_count,
            info.private_pages_resident,
            info.shared_pages_resident,
        );
        match address.checked_add(size) {
            Some(next) if size > 0 => address = next,
            _ => break,
        }
    }
    Ok(totals)
}

/// rss and vms from `TASK_VM_INFO`, uss and pss from the region walk, compressed memory as
/// swap. macOS keeps no PSS: it is estimated per region (shared resident pages divided by
/// the object's reference count), where Linux divides per page.
pub(crate) fn process_memory() -> Result<ProcessMemory> {
    let vm = vm_info()?;
    let regions = region_totals()?;
    let page = page_size();
    Ok(ProcessMemory {
        rss: vm.resident_size,
        vms: vm.virtual_size,
        uss: regions.uss_pages.saturating_mul(page),
        pss: (regions.pss_pages * page as f64) as u64,
        swap: vm.compressed,
    })
}

/// Run on macOS only (`cargo test` there); here they are type-checked and linted.
#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn live_values_are_consistent() {
        let (rss, vms) = memory_quick().unwrap();
        assert!(rss > 0 && vms >= rss, "{rss} {vms}");
        let c = memory_counters().unwrap();
        assert!(c.rss > 0 && c.vms >= c.rss && c.anon > 0, "{c:?}");
        let m = process_memory().unwrap();
        assert!(m.uss > 0 && m.pss >= m.uss / 2 && m.rss > 0, "{m:?}");
    }

    #[test]
    fn touched_mapping_grows_footprint_and_uss() {
        let len = 32 << 20;
        let before = memory_counters().unwrap();
        // SAFETY: a fresh anonymous private mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANON | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is `len` writable bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 1, len) };
        let during = memory_counters().unwrap();
        // SAFETY: unmapping the mapping made above, once.
        unsafe { libc::munmap(p, len) };
        assert!(
            during.anon >= before.anon + (len as u64) / 2,
            "{before:?} {during:?}"
        );
        assert!(during.vms >= before.vms + len as u64, "{before:?} {during:?}");
    }
}
