//! Objects loaded during a check, remembered after they are unloaded. A library that each
//! call opens with `dlopen` and closes with `dlclose` (a plugin, a codec, a provider) is
//! gone by the time the report names the where run's frames, and `dl_iterate_phdr` no
//! longer lists it: its frames would have no name. The dlopen hook notes every object that
//! was not loaded when the hooks went in: where it was mapped, its path and its build id,
//! which is all symbolisation needs, as it reads the file from disk.
//!
//! Everything lives in storage reserved when the hooks go in (before the first sample):
//! noting an object inside a run allocates nothing that the heap metrics could see.

use std::sync::{Mutex, MutexGuard};

use super::elf;

/// Objects remembered: the latest this many (a library reloaded at another address each
/// time takes one more).
const MAX_LOADED: usize = 64;
/// Objects loaded when the hooks go in that are told apart from later ones.
const MAX_AT_INSTALL: usize = 4096;
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
    /// Load addresses of the objects loaded when the hooks went in, sorted.
    at_install: Vec<usize>,
    loaded: Vec<Loaded>,
    seq: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    at_install: Vec::new(),
    loaded: Vec::new(),
    seq: 0,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When the hooks go in: forgets the objects of earlier checks, notes the ones loaded now
/// and reserves the storage later notes use.
pub(super) fn reset() {
    let mut r = registry();
    let r = &mut *r;
    r.at_install.clear();
    r.at_install.reserve(MAX_AT_INSTALL);
    r.loaded.clear();
    r.loaded.reserve_exact(MAX_LOADED);
    elf::for_each_object(|o| {
        if r.at_install.len() < r.at_install.capacity() {
            r.at_install.push(o.base);
        }
    });
    r.at_install.sort_unstable();
}

/// After a `dlopen` during the check: notes the objects loaded since the hooks went in that
/// are not noted yet. Allocates nothing (see the module docs).
pub(super) fn note_new() {
    let mut r = registry();
    let r = &mut *r;
    elf::for_each_object(|o| {
        if r.at_install.binary_search(&o.base).is_ok()
            || r.loaded
                .iter()
                .any(|l| l.base == o.base && l.path() == o.path().to_bytes())
        {
            return;
        }
        r.seq += 1;
        let Some(entry) = Loaded::of(o, r.seq) else { return };
        if r.loaded.len() < r.loaded.capacity() {
            r.loaded.push(entry);
        } else if let Some(oldest) = r.loaded.iter_mut().min_by_key(|l| l.seq) {
            *oldest = entry;
        }
    });
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
