//! Native threads, from Mach's `task_threads` and `thread_info` and libproc's
//! `proc_pidinfo` (mach/task.defs, mach/thread_info.h, sys/proc_info.h).

use std::mem::size_of;

use mach2::kern_return::KERN_SUCCESS;
use mach2::mach_port::mach_port_deallocate;
use mach2::mach_types::{thread_act_array_t, thread_act_t};
use mach2::message::mach_msg_type_number_t;
use mach2::task::task_threads;
use mach2::traps::mach_task_self;
use mach2::vm::mach_vm_deallocate;

use super::decode::{thread_name, PROC_THREADINFO_SIZE};
use super::{mach_error, pid};
use crate::error::{Error, Result};
use crate::probes::ThreadInfo;

// libc's proc_threadinfo is the struct the decoder reads by offset.
const _: () = assert!(size_of::<libc::proc_threadinfo>() == PROC_THREADINFO_SIZE);

/// Number of threads in the task: `proc_pidinfo(PROC_PIDTASKINFO).pti_threadnum`, one call
/// into a stack struct; no allocation (where `task_threads` would map a port array).
pub(crate) fn thread_count() -> Result<usize> {
    // SAFETY: proc_taskinfo is plain integers, for which all-zero is valid.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: `info` is writable for `size` bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            pid(),
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast(),
            size,
        )
    };
    if n != size {
        return Err(Error::io(
            "proc_pidinfo(PROC_PIDTASKINFO)",
            std::io::Error::last_os_error(),
        ));
    }
    usize::try_from(info.pti_threadnum).map_err(|_| {
        Error::parse(
            "proc_pidinfo(PROC_PIDTASKINFO)",
            format!("negative thread count {}", info.pti_threadnum),
        )
    })
}

/// The thread ports `task_threads` returned, released on drop: one send right per thread,
/// and the out-of-line array the kernel mapped into this task.
struct ThreadPorts {
    list: thread_act_array_t,
    count: mach_msg_type_number_t,
}

impl ThreadPorts {
    fn get() -> Result<ThreadPorts> {
        let mut ports = ThreadPorts {
            list: std::ptr::null_mut(),
            count: 0,
        };
        // SAFETY: both out-pointers are valid; on success the kernel fills them with an
        // array of `count` ports, which Drop releases.
        let kr = unsafe { task_threads(mach_task_self(), &mut ports.list, &mut ports.count) };
        if kr != KERN_SUCCESS {
            return Err(mach_error("task_threads", kr));
        }
        Ok(ports)
    }

    fn ports(&self) -> &[thread_act_t] {
        if self.list.is_null() {
            return &[];
        }
        // SAFETY: task_threads returned `count` ports at `list`, mapped until Drop.
        unsafe { std::slice::from_raw_parts(self.list, self.count as usize) }
    }
}

impl Drop for ThreadPorts {
    fn drop(&mut self) {
        // SAFETY: reading the task's own port has no preconditions.
        let task = unsafe { mach_task_self() };
        for &port in self.ports() {
            // SAFETY: each port is a send right task_threads gave us, released once.
            unsafe { mach_port_deallocate(task, port) };
        }
        if !self.list.is_null() {
            let bytes = u64::from(self.count) * size_of::<thread_act_t>() as u64;
            // SAFETY: the array was mapped into this task by task_threads (vm_allocate'd
            // out-of-line memory) and is unmapped once, here.
            unsafe { mach_vm_deallocate(task, self.list as u64, bytes) };
        }
    }
}

/// The system-wide id (`thread_identifier_info.thread_id`, what `pthread_threadid_np`
/// returns) and the handle `PROC_PIDTHREADINFO` takes; `None` if the thread has exited.
#[allow(deprecated)] // libc's mach items point to mach2, which lacks thread_info
fn identify(port: thread_act_t) -> Option<(u64, u64)> {
    // SAFETY: thread_identifier_info is plain integers, for which all-zero is valid.
    let mut ident: libc::thread_identifier_info = unsafe { std::mem::zeroed() };
    let mut count = libc::THREAD_IDENTIFIER_INFO_COUNT;
    // SAFETY: `ident` is writable for `count` integers, the size told to the kernel.
    let kr = unsafe {
        libc::thread_info(
            port,
            libc::THREAD_IDENTIFIER_INFO as libc::thread_flavor_t,
            (&mut ident as *mut libc::thread_identifier_info).cast(),
            &mut count,
        )
    };
    (kr == KERN_SUCCESS).then_some((ident.thread_id, ident.thread_handle))
}

/// The thread's name (`pthread_setname_np`), from the kernel; empty if it has none or the
/// call fails.
fn name(handle: u64) -> String {
    let mut buf = [0u8; PROC_THREADINFO_SIZE];
    // SAFETY: `buf` is writable for its whole length, the size told to the kernel.
    let n = unsafe {
        libc::proc_pidinfo(
            pid(),
            libc::PROC_PIDTHREADINFO,
            handle,
            buf.as_mut_ptr().cast(),
            PROC_THREADINFO_SIZE as libc::c_int,
        )
    };
    match usize::try_from(n) {
        Ok(n) if n > 0 => thread_name(&buf[..n.min(buf.len())]),
        _ => String::new(),
    }
}

/// Every thread with its id and name, ordered by id. A thread that exits while being listed
/// is left out.
pub(crate) fn thread_list() -> Result<Vec<ThreadInfo>> {
    let ports = ThreadPorts::get()?;
    let mut threads: Vec<ThreadInfo> = ports
        .ports()
        .iter()
        .filter_map(|&port| {
            let (id, handle) = identify(port)?;
            Some(ThreadInfo {
                // Thread ids count up from boot; they stay far below 2^63.
                id: id as i64,
                name: name(handle),
            })
        })
        .collect();
    drop(ports);
    threads.sort_unstable_by_key(|t| t.id);
    Ok(threads)
}

/// Run on macOS only (`cargo test` there); here they are type-checked and linted.
#[cfg(test)]
mod tests {
    // Tests may panic on unexpected values: that is how they fail.
    #![allow(clippy::unwrap_used)]

    use std::sync::mpsc;

    use super::*;

    /// This thread's system-wide id (`pthread_threadid_np`).
    fn current_id() -> i64 {
        let mut id = 0u64;
        // SAFETY: `id` is writable; pthread_self() is a live thread.
        assert_eq!(
            unsafe { libc::pthread_threadid_np(libc::pthread_self(), &mut id) },
            0
        );
        id as i64
    }

    #[test]
    fn named_thread_is_listed_and_counted() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("psleak-probe".into())
            .spawn(move || {
                ready_tx.send(current_id()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let worker_id = ready_rx.recv().unwrap();
        let list = thread_list().unwrap();
        assert!(list.iter().any(|t| t.id == current_id()), "{list:?}");
        let listed = list.iter().find(|t| t.id == worker_id).unwrap();
        assert_eq!(listed.name, "psleak-probe");
        assert!(list.windows(2).all(|w| w[0].id < w[1].id));
        assert!(thread_count().unwrap() >= 2);
        drop(done_tx);
        worker.join().unwrap();
    }
}
