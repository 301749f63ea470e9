//! Handles and `HeapCreate` heaps are Windows resources: elsewhere these probes answer
//! [`Error::Unavailable`], and the driver does not ask (`HAS_HANDLES` is false).

use crate::error::{Error, Result};
use crate::probes::{HandleInfo, HeapInfo};

/// There is no handle table to look at.
pub(crate) const HAS_HANDLES: bool = false;

fn windows_only<T>(what: &'static str) -> Result<T> {
    Err(Error::Unavailable {
        what,
        reason: format!(
            "handles and private heaps are Windows resources (this is {})",
            std::env::consts::OS
        ),
    })
}

pub(crate) fn handle_count() -> Result<usize> {
    windows_only("handle count")
}

pub(crate) fn handle_list() -> Result<Vec<HandleInfo>> {
    windows_only("handle list")
}

pub(crate) fn heap_list() -> Result<Vec<HeapInfo>> {
    windows_only("heap list")
}
