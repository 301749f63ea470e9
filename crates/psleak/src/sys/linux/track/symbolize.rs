//! Names for return addresses: function, file and line from DWARF where the object has it
//! (the `addr2line` crate; inlined calls expanded; a separate debug file found by build id
//! under `/usr/lib/debug/.build-id/`, as Debian's `-dbg` packages install them), the
//! symbol table otherwise, and always the object's path and the offset into it, so that a
//! stripped library still says where to look (`addr2line -e object offset`).
//!
//! Only the distinct addresses of surviving allocations are resolved, once per report,
//! with recording paused: symbolising allocates and reads files. The objects are looked up
//! afresh for each report (`dl_iterate_phdr`), so a library loaded during the check is
//! named too; a symboliser that lists the objects once per process would miss it.

use std::collections::HashMap;
use std::path::PathBuf;

use addr2line::Loader;

use super::elf;
use crate::tracking::Frame;

/// A resolved frame and the load address of its object.
pub(crate) struct Resolved {
    pub(crate) frame: Frame,
    pub(crate) object_base: usize,
}

/// A loaded object as symbolisation needs it.
#[derive(Clone)]
struct ObjectInfo {
    /// Path ("" for the main program, read as /proc/self/exe).
    path: String,
    /// Load bias: link-time addresses are `address - bias`.
    bias: usize,
    build_id: Option<Vec<u8>>,
}

/// The object holding `addr`: its path and load bias.
fn find_object(addr: usize) -> Option<ObjectInfo> {
    let mut out = None;
    elf::for_each_object(|o| {
        if out.is_none() && o.contains(addr) {
            out = Some(ObjectInfo {
                path: o.path().to_string_lossy().into_owned(),
                bias: o.base,
                build_id: o.build_id().map(<[u8]>::to_vec),
            });
        }
    });
    out
}

/// The object holding `addr`: its path and load bias (for frame filtering).
pub(crate) fn object_of(addr: usize) -> Option<(String, usize)> {
    find_object(addr).map(|o| (o.path, o.bias))
}

/// The object file and its separate debug file, opened once per report.
struct Debug {
    object: Option<Loader>,
    separate: Option<Loader>,
}

impl Debug {
    fn open(info: &ObjectInfo) -> Debug {
        let path = if info.path.is_empty() {
            PathBuf::from("/proc/self/exe")
        } else {
            PathBuf::from(&info.path)
        };
        let separate = info.build_id.as_ref().filter(|id| id.len() > 1).and_then(|id| {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let file = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
            Loader::new(file).ok()
        });
        Debug {
            object: Loader::new(path).ok(),
            separate,
        }
    }

    /// Function, file and line of each (inlined) frame at `probe`, innermost first.
    fn frames(&self, probe: u64) -> Vec<(Option<String>, Option<String>, Option<u32>)> {
        let mut out = Vec::new();
        for loader in [&self.object, &self.separate].into_iter().flatten() {
            if let Ok(mut frames) = loader.find_frames(probe) {
                while let Ok(Some(f)) = frames.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok())
                        .map(|n| n.into_owned());
                    let (file, line) = f
                        .location
                        .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
                    out.push((function, file, line));
                }
            }
            if out.iter().any(|(_, file, _)| file.is_some()) {
                return out;
            }
            out.clear();
        }
        // No line information: the symbol table's name.
        let symbol = [&self.object, &self.separate]
            .into_iter()
            .flatten()
            .find_map(|l| l.find_symbol(probe))
            .map(|n| addr2line::demangle_auto(n.into(), None).into_owned());
        vec![(symbol, None, None)]
    }
}

/// Resolves return addresses, caching objects for the length of one report.
#[derive(Default)]
pub(crate) struct Symbolizer {
    debug: HashMap<String, Debug>,
}

impl Symbolizer {
    /// The frames at return address `ip`, innermost (inlined) first.
    pub(crate) fn resolve(&mut self, ip: usize) -> Vec<Resolved> {
        // A return address points after the call; the call's own line is one byte before.
        let pc = ip.saturating_sub(1);
        let Some(info) = find_object(pc) else {
            return vec![Resolved {
                frame: Frame {
                    function: None,
                    file: None,
                    line: None,
                    object: None,
                    offset: None,
                    python: false,
                },
                object_base: 0,
            }];
        };
        let probe = (pc - info.bias) as u64;
        let debug = self
            .debug
            .entry(info.path.clone())
            .or_insert_with(|| Debug::open(&info));
        let object = if info.path.is_empty() {
            std::fs::read_link("/proc/self/exe")
                .ok()
                .map(|p| p.display().to_string())
        } else {
            Some(info.path.clone())
        };
        debug
            .frames(probe)
            .into_iter()
            .map(|(function, file, line)| Resolved {
                frame: Frame {
                    function,
                    file,
                    line,
                    object: object.clone(),
                    offset: Some(probe),
                    python: false,
                },
                object_base: info.bias,
            })
            .collect()
    }
}
