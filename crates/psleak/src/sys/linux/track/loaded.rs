//! Objects loaded during a check, remembered after they are unloaded. A library that each
//! call opens with `dlopen` and closes with `dlclose` (a plugin, a codec, a provider) is
//! gone by the time the report names the where run's frames, and `dl_iterate_phdr` no
//! longer lists it: its frames would have no name. The patcher notes each object a dlopen
//! brought in as it goes through it: where it was mapped, its path and its build id, which
//! is all symbolisation needs, as it reads the file from disk.
//!
//! Everything lives in storage reserved when the hooks go in (before the first sample):
//! noting an object inside a run allocates nothing that the heap metrics could see.

use std::sync::{Mutex, MutexGuard};

use super::elf;

/// Objects remembered: the latest this many (a library reloaded at another address each
/// time takes one more).
const MAX_LOADED: usize = 64;
/// Longest path kept; a longer one is cut (the object is then found by no name).
const PATH_BYTES: usize = 512;
/// Longest build id kept (GNU build ids are 20 bytes).
const BUILD_ID_BYTES: usize = 64;

#[derive(Clone, Copy)]
struct Loaded {
    base: usize,
    /// The addresses its loaded segments spanned.
    extent: (usize, usize),
    /// When it was noted: of two objects that held an address, the later one wins.
    seq: u64,
    path: [u8; PATH_BYTES],
    path_len: usize,
    build_id: [u8; BUILD_ID_BYTES],
    build_id_len: usize,
}

impl Loaded {
    fn of(object: &elf::Object, seq: u64) -> Option<Loaded> {
        let path = object.path().to_bytes();
        if path.is_empty() || path.len() > PATH_BYTES {
            return None;
        }
        let mut out = Loaded {
            base: object.base,
            extent: object.extent(),
            seq,
            path: [0; PATH_BYTES],
            path_len: path.len(),
            build_id: [0; BUILD_ID_BYTES],
            build_id_len: 0,
        };
        out.path[..path.len()].copy_from_slice(path);
        if let Some(id) = object.build_id().filter(|id| id.len() <= BUILD_ID_BYTES) {
            out.build_id[..id.len()].copy_from_slice(id);
            out.build_id_len = id.len();
        }
        Some(out)
    }

    fn path(&self) -> &[u8] {
        &self.path[..self.path_len]
    }
}

struct Registry {
    loaded: Vec<Loaded>,
    seq: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    loaded: Vec::new(),
    seq: 0,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When the hooks go in: forgets the objects of earlier checks and reserves the storage
/// later notes use.
pub(super) fn reset() {
    let mut r = registry();
    r.loaded.clear();
    r.loaded.reserve_exact(MAX_LOADED);
}

/// Notes an object a `dlopen` during the check loaded (the patcher goes through each new
/// object once: see `Visited`). Allocates nothing (see the module docs).
pub(super) fn note(object: &elf::Object) {
    let mut r = registry();
    let r = &mut *r;
    r.seq += 1;
    let Some(entry) = Loaded::of(object, r.seq) else {
        return;
    };
    let same = r
        .loaded
        .iter()
        .position(|l| l.base == entry.base && l.path() == entry.path());
    if let Some(i) = same {
        r.loaded[i] = entry;
    } else if r.loaded.len() < r.loaded.capacity() {
        r.loaded.push(entry);
    } else if let Some(oldest) = r.loaded.iter_mut().min_by_key(|l| l.seq) {
        *oldest = entry;
    }
}

/// The object that was loaded at `addr` during the check, if any was noted: its path, load
/// bias and build id. Asked for addresses no loaded object holds.
pub(super) fn unloaded_object(addr: usize) -> Option<(String, usize, Option<Vec<u8>>)> {
    let r = registry();
    r.loaded
        .iter()
        .filter(|l| addr >= l.extent.0 && addr < l.extent.1)
        .max_by_key(|l| l.seq)
        .map(|l| {
            (
                String::from_utf8_lossy(l.path()).into_owned(),
                l.base,
                (l.build_id_len > 0).then(|| l.build_id[..l.build_id_len].to_vec()),
            )
        })
}
