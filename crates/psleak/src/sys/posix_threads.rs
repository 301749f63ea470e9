//! What POSIX threads share across the backends that have them (Linux, macOS).

/// The stack size a thread gets when its creator sets none: `pthread_attr_getstacksize`
/// of a fresh attribute object, which reports the default (glibc: `RLIMIT_STACK`'s soft
/// limit, 8 MiB on most systems; macOS: 512 KiB). `None` if the calls fail.
pub(crate) fn default_thread_stack() -> Option<u64> {
    // SAFETY: the attribute object lives on this stack, is initialised before it is read
    // and destroyed after; these calls only touch it.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_attr_init(&mut attr) != 0 {
            return None;
        }
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstacksize(&attr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && size > 0).then_some(size as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_stack_is_at_least_a_page() {
        let size = default_thread_stack();
        assert!(size.is_some_and(|s| s >= 4096), "{size:?}");
    }
}
