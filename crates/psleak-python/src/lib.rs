//! `psleak._psleak`: the PyO3 binding of the psleak core. It only converts: Python callables
//! become a [`psleak::Host`], core results become Python dicts and lists, core errors become
//! `psleak.ProbeError` (a subclass of `OSError`) in one place. The public API is written in
//! Python on top of it (`python/psleak/`).

use pyo3::prelude::*;

mod census;

/// Converts a serialized core value into Python objects (dict, list, str, int, float, None).
fn to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::{PyDict, PyList};
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

fn serialize<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(value).map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("psleak: cannot convert result: {e}"))
    })?;
    to_py(py, &v)
}

pyo3::create_exception!(
    _psleak,
    ProbeError,
    pyo3::exceptions::PyOSError,
    "A probe of psleak is not available or failed."
);

/// The one place where core errors become Python exceptions.
fn to_pyerr(e: psleak::Error) -> PyErr {
    match e {
        psleak::Error::InvalidArgument { .. } => pyo3::exceptions::PyValueError::new_err(e.to_string()),
        e => ProbeError::new_err(e.to_string()),
    }
}

/// Where the interpreter is when native code allocates, during the where run: a trace
/// function (`sys.settrace`) notes the running frame's code object and line at every line
/// and call, as a token in the core's thread-local slot ([`psleak::set_host_location`]),
/// so that a native allocation is tagged with the Python line being executed. When a
/// tracer is already set (a debugger, coverage), a profile function (`sys.setprofile`,
/// call and C-call events) is used instead; when both are taken, nothing. Tokens index
/// `frames`; the code objects are kept alive until the report is made.
#[pyclass(module = "psleak._psleak")]
struct Locator {
    frames: Vec<(Py<PyAny>, u32)>,
    index: std::collections::HashMap<(usize, u32), u64>,
    /// "settrace" or "setprofile": how it was installed.
    via: Option<&'static str>,
    /// psleak's package directory: frames of its own Python code get no token.
    own_dir: String,
}

#[pymethods]
impl Locator {
    /// The trace or profile hook: `(frame, event, arg)`. Returns itself, the local trace
    /// function for the frame (so that its line events come too).
    fn __call__<'py>(
        slf: Bound<'py, Self>,
        frame: &Bound<'py, PyAny>,
        event: &str,
        _arg: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Self>> {
        // Everything here is the locator's own work: none of it is the function's.
        psleak::untracked(|| -> PyResult<()> {
            let frame = match event {
                // Back in the caller: its line (the one that made the call) is current.
                "return" => frame.getattr("f_back")?,
                "call" | "line" | "c_call" | "c_return" | "c_exception" => frame.clone(),
                _ => return Ok(()),
            };
            if frame.is_none() {
                psleak::set_host_location(0);
                return Ok(());
            }
            let code = frame.getattr("f_code")?;
            let mut this = slf.borrow_mut();
            // psleak's own Python code (the call gate) is no caller worth naming.
            let file: String = code.getattr("co_filename")?.extract().unwrap_or_default();
            if !this.own_dir.is_empty() && file.starts_with(&this.own_dir) {
                psleak::set_host_location(0);
                return Ok(());
            }
            let line: u32 = frame.getattr("f_lineno")?.extract().unwrap_or(0);
            let key = (code.as_ptr() as usize, line);
            let next = this.frames.len() as u64 + 1;
            let token = *this.index.entry(key).or_insert(next);
            if token == next {
                this.frames.push((code.unbind(), line));
            }
            psleak::set_host_location(token);
            Ok(())
        })?;
        Ok(slf)
    }
}

/// The directory of the `psleak` package (with a trailing separator), "" if unknown.
fn psleak_dir(py: Python<'_>) -> String {
    let file = py
        .import("psleak")
        .and_then(|m| m.getattr("__file__"))
        .and_then(|f| f.extract::<String>());
    match file {
        Ok(f) => match std::path::Path::new(&f).parent() {
            Some(dir) => format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR),
            None => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Routing CPython's object and `PyMem_Malloc` allocators through psleak's allocation
/// tracking for the where run ([`psleak::route_runtime_allocator`]): under pymalloc a
/// leaked object lives in an arena the malloc hooks never see, and its site would only be
/// the Python line that called in, not the C function that made it.
#[cfg(target_os = "linux")]
mod runtime_allocator {
    use std::cell::UnsafeCell;
    use std::os::raw::c_int;
    use std::sync::atomic::{AtomicBool, Ordering};

    use psleak::RuntimeAllocator;

    /// `PYMEM_DOMAIN_MEM` and `PYMEM_DOMAIN_OBJ` (Include/cpython/pymem.h). The raw domain
    /// is `malloc` itself, which the hooks see.
    const DOMAINS: [c_int; 2] = [1, 2];

    extern "C" {
        // Not in the limited API this module is built for (abi3), but exported by every
        // CPython since 3.4, and on Linux an extension's undefined symbols resolve against
        // the interpreter when it is loaded. The struct is `PyMemAllocatorEx`, the same
        // since 3.5.
        fn PyMem_GetAllocator(domain: c_int, allocator: *mut RuntimeAllocator);
        fn PyMem_SetAllocator(domain: c_int, allocator: *mut RuntimeAllocator);
    }

    const EMPTY: RuntimeAllocator = RuntimeAllocator {
        ctx: std::ptr::null_mut(),
        malloc: None,
        calloc: None,
        realloc: None,
        free: None,
    };

    /// The allocators replaced while routed: a wrapper's context points here, so it must
    /// outlive any wrapper left installed (a static does).
    struct Saved(UnsafeCell<[RuntimeAllocator; 2]>);
    // SAFETY: read and written only with the GIL held, in `route`.
    unsafe impl Sync for Saved {}
    static SAVED: Saved = Saved(UnsafeCell::new([EMPTY; 2]));
    /// Whether the wrappers are in: routing twice would save a wrapper as the original.
    static ROUTED: AtomicBool = AtomicBool::new(false);

    /// Installs the wrappers (`on`) or puts the originals back; returns whether the state
    /// changed. The GIL must be held (`_py`): the MEM and OBJ domains are used under it.
    pub(crate) fn route(_py: pyo3::Python<'_>, on: bool) -> bool {
        if ROUTED.swap(on, Ordering::SeqCst) == on {
            return false;
        }
        let saved = SAVED.0.get().cast::<RuntimeAllocator>();
        for (i, domain) in DOMAINS.into_iter().enumerate() {
            // SAFETY: `saved.add(i)` is one of the two slots of a static (i < 2), touched
            // only here under the GIL; PyMem_GetAllocator fills it, and it stays unchanged
            // while the wrapper made from it is installed (until the call with `on` false).
            // PyMem_SetAllocator copies the struct it is given. The wrapper forwards to the
            // original, so blocks allocated before, during and after can be freed by any.
            unsafe {
                let slot = saved.add(i);
                if on {
                    PyMem_GetAllocator(domain, slot);
                    let mut wrapper = psleak::route_runtime_allocator(slot);
                    PyMem_SetAllocator(domain, &mut wrapper);
                } else {
                    PyMem_SetAllocator(domain, slot);
                }
            }
        }
        true
    }
}

/// A Python function under test, with the Python-side hooks.
struct PyHost<'py> {
    fun: Bound<'py, PyAny>,
    settle: Option<Bound<'py, PyAny>>,
    blocks: Option<Bound<'py, PyAny>>,
    refs: Option<Bound<'py, PyAny>>,
    resources: Option<Bound<'py, PyAny>>,
    progress: Option<Bound<'py, PyAny>>,
    calls: u64,
    progress_error: Option<PyErr>,
    locator: Option<Bound<'py, Locator>>,
    runs_decided: Option<Bound<'py, PyAny>>,
}

impl psleak::Host for PyHost<'_> {
    type Error = PyErr;

    fn call(&mut self) -> PyResult<()> {
        self.calls += 1;
        // Let Ctrl-C stop a long check.
        if self.calls % 256 == 0 {
            self.fun.py().check_signals()?;
        }
        self.fun.call0().map(drop)
    }

    fn settle(&mut self) -> PyResult<()> {
        if let Some(f) = &self.settle {
            f.call0()?;
        }
        Ok(())
    }

    fn blocks(&mut self) -> Option<i64> {
        self.blocks
            .as_ref()
            .and_then(|f| f.call0().ok()?.extract::<i64>().ok())
    }

    fn refs(&mut self) -> Option<i64> {
        self.refs
            .as_ref()
            .and_then(|f| f.call0().ok()?.extract::<i64>().ok())
    }

    fn runs_decided(&mut self, leaked: bool, calls: u64, seconds_per_call: f64) -> u64 {
        // A hook that fails asks for no calls; its error is the check's (see `progress`).
        let Some(f) = &self.runs_decided else { return 0 };
        match f
            .call1((leaked, calls, seconds_per_call))
            .and_then(|n| n.extract::<u64>())
        {
            Ok(n) => n,
            Err(e) => {
                self.progress_error.get_or_insert(e);
                0
            }
        }
    }

    fn resources(&mut self, phase: psleak::Phase, out: &mut Vec<psleak::Resource>) -> PyResult<()> {
        let Some(f) = &self.resources else { return Ok(()) };
        let phase = match phase {
            psleak::Phase::BeforeCall => "before_call",
            psleak::Phase::AfterCall => "after_call",
            psleak::Phase::BeforeRuns => "before_runs",
            psleak::Phase::AfterRuns => "after_runs",
            psleak::Phase::Recheck => "recheck",
        };
        for item in f.call1((phase,))?.try_iter()? {
            let item = item?;
            let (kind, id, description): (String, String, String) = (
                item.get_item("kind")?.extract()?,
                item.get_item("id")?.extract()?,
                item.get_item("description")?.extract()?,
            );
            let kind = match kind.as_str() {
                "py_thread" => psleak::ResourceKind::RuntimeThread,
                "gc_object" => psleak::ResourceKind::GcObject,
                "handle" => psleak::ResourceKind::Handle,
                "heap_create" => psleak::ResourceKind::HeapCreate,
                other => {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "psleak: unknown resource kind {other:?} from the resources hook"
                    )))
                }
            };
            out.push(psleak::Resource {
                kind,
                id,
                description,
                path: None,
                number: None,
            });
        }
        Ok(())
    }

    /// Installs the locator for the where run (see [`Locator`]); removes it afterwards,
    /// only if it is still the one installed.
    fn locate(&mut self, on: bool) {
        let py = self.fun.py();
        let Ok(sys) = py.import("sys") else { return };
        let free = |getter: &str| sys.call_method0(getter).is_ok_and(|t| t.is_none());
        if on {
            let via = if free("gettrace") {
                "settrace"
            } else if free("getprofile") {
                "setprofile"
            } else {
                return;
            };
            let locator = match &self.locator {
                Some(l) => l.clone(),
                None => match Bound::new(
                    py,
                    Locator {
                        frames: Vec::new(),
                        index: std::collections::HashMap::new(),
                        via: None,
                        own_dir: psleak_dir(py),
                    },
                ) {
                    Ok(l) => l,
                    Err(_) => return,
                },
            };
            if sys.call_method1(via, (&locator,)).is_ok() {
                locator.borrow_mut().via = Some(via);
                self.locator = Some(locator);
            }
        } else if let Some(locator) = &self.locator {
            let via = locator.borrow_mut().via.take();
            if let Some(via) = via {
                let getter = if via == "settrace" {
                    "gettrace"
                } else {
                    "getprofile"
                };
                if sys.call_method0(getter).is_ok_and(|t| t.is(locator)) {
                    let _ = sys.call_method1(via, (py.None(),));
                }
            }
            psleak::set_host_location(0);
        }
    }

    fn location(&mut self, token: u64) -> Option<psleak::Frame> {
        let locator = self.locator.as_ref()?.borrow();
        let (code, line) = locator.frames.get(usize::try_from(token).ok()?.checked_sub(1)?)?;
        let code = code.bind(self.fun.py());
        let text = |attr: &str| code.getattr(attr).ok()?.extract::<String>().ok();
        Some(psleak::Frame {
            function: text("co_qualname").or_else(|| text("co_name")),
            file: text("co_filename"),
            line: Some(*line),
            object: None,
            offset: None,
            python: true,
        })
    }

    /// CPython's object and `PyMem` allocators go through the tracker during the where run.
    fn route_runtime_allocator(&mut self, on: bool) -> bool {
        #[cfg(target_os = "linux")]
        {
            runtime_allocator::route(self.fun.py(), on)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = on;
            false
        }
    }

    /// An address in the interpreter: the `python` program or `libpython`.
    fn runtime_address(&self) -> Option<usize> {
        Some(pyo3::ffi::Py_IsInitialized as *const () as usize)
    }

    /// Sleeps without the GIL: a Python thread that finished its work needs it to exit.
    fn pause(&mut self, duration: std::time::Duration) {
        self.fun.py().detach(|| std::thread::sleep(duration));
    }

    fn progress(&mut self, p: &psleak::Progress) {
        let Some(f) = &self.progress else { return };
        if self.progress_error.is_some() {
            return;
        }
        let py = f.py();
        let growth: Vec<(String, i64)> = psleak::Metric::ALL
            .iter()
            .map(|m| (m.name().to_string(), p.growth.get(*m)))
            .collect();
        let r = (|| -> PyResult<()> {
            let d = pyo3::types::PyDict::new(py);
            d.set_item("run", p.run)?;
            d.set_item("max_runs", p.max_runs)?;
            d.set_item("calls", p.calls)?;
            d.set_item("total_calls", p.total_calls)?;
            d.set_item("growth", growth.into_pyobject(py)?)?;
            f.call1((d,))?;
            Ok(())
        })();
        if let Err(e) = r {
            self.progress_error = Some(e);
        }
    }
}

/// The core's report of one check, which the Python side completes with what only it can
/// find (allocation sites from tracemalloc) before rendering: one model, rendered by the
/// core, so the text, the JSON and the chart always agree.
#[pyclass(module = "psleak._psleak")]
struct CoreReport {
    inner: psleak::Report,
}

#[pymethods]
impl CoreReport {
    /// The report as a dict: the JSON document (`report.schema.json`).
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.to_json_value())
    }

    /// The report for people.
    fn text(&self) -> String {
        self.inner.to_text()
    }

    /// The runs as an SVG chart.
    fn svg(&self) -> String {
        self.inner.to_svg()
    }

    /// Adds where the leak allocates, as seen by `tracer`: growth per call in bytes and
    /// blocks, and the stack as `(file, line, code)` frames, innermost last.
    fn add_site(
        &mut self,
        tracer: String,
        bytes_per_call: f64,
        blocks_per_call: f64,
        frames: Vec<(String, u32, Option<String>)>,
    ) {
        self.inner.traced_sites.push(psleak::TracedSite {
            tracer,
            bytes_per_call,
            blocks_per_call,
            frames: frames
                .into_iter()
                .map(|(file, line, code)| psleak::TracedFrame { file, line, code })
                .collect(),
        });
    }
}

fn checkers_from(memory: bool, fds: bool, threads: bool, handles: bool) -> psleak::Checkers {
    let mut c = psleak::Checkers::none();
    c.memory = memory;
    c.fds = fds;
    c.threads = threads;
    c.handles = handles;
    c
}

#[pymodule]
mod _psleak {
    use super::*;

    #[pymodule_export]
    use super::ProbeError;

    #[pymodule_export]
    use super::CoreReport;

    #[pymodule_export]
    use super::census::{census_growth, refcount_census, Census};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "BUILD_PROFILE",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        m.add("BACKEND", psleak::BACKEND)?;
        m.add("DEFAULT_MEMORY_BUDGET", psleak::DEFAULT_MEMORY_BUDGET)?;
        m.add(
            "METRICS",
            psleak::Metric::ALL.iter().map(|m| m.name()).collect::<Vec<_>>(),
        )?;
        Ok(())
    }

    /// malloc statistics as a dict: heap_used, mmap_used, heap_total, heap_free (bytes).
    #[pyfunction]
    fn malloc_stats(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        serialize(py, &psleak::malloc_stats().map_err(to_pyerr)?)
    }

    /// malloc_trim(0); True if memory was released.
    #[pyfunction]
    fn malloc_trim() -> PyResult<bool> {
        psleak::malloc_trim().map_err(to_pyerr)
    }

    /// Process memory as a dict: rss, vms, uss, pss, swap (bytes).
    #[pyfunction]
    fn process_memory(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        serialize(py, &psleak::process_memory().map_err(to_pyerr)?)
    }

    /// Cheap memory counters as a dict: rss, vms, anon (RssAnon), swap (bytes).
    #[pyfunction]
    fn memory_counters(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        serialize(py, &psleak::memory_counters().map_err(to_pyerr)?)
    }

    /// (rss, vms) in bytes from /proc/self/statm.
    #[pyfunction]
    fn memory_quick() -> PyResult<(u64, u64)> {
        psleak::memory_quick().map_err(to_pyerr)
    }

    /// Number of open file descriptors.
    #[pyfunction]
    fn fd_count() -> PyResult<usize> {
        psleak::fd_count().map_err(to_pyerr)
    }

    /// Open file descriptors, described, as a list of dicts.
    #[pyfunction]
    fn fd_list(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        serialize(py, &psleak::fd_list().map_err(to_pyerr)?)
    }

    /// Number of native threads.
    #[pyfunction]
    fn thread_count() -> PyResult<usize> {
        psleak::thread_count().map_err(to_pyerr)
    }

    /// Native threads as a list of dicts (id, name).
    #[pyfunction]
    fn thread_list(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        serialize(py, &psleak::thread_list().map_err(to_pyerr)?)
    }

    /// Formats a byte count with a binary unit.
    #[pyfunction]
    fn format_bytes(v: f64) -> String {
        psleak::format_bytes(v)
    }

    /// Runs a leak check of `fun` (a zero-argument callable) and returns its
    /// [`CoreReport`]. Exceptions raised by `fun` or the hooks propagate.
    #[pyfunction]
    #[pyo3(signature = (fun, *, name, warmup, times, retries, tolerance, memory_budget,
                        memory=true, fds=true, threads=true, handles=true, track_native=true,
                        settle=None, blocks=None, refs=None, resources=None, progress=None,
                        runs_decided=None))]
    #[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
    fn run_check<'py>(
        fun: Bound<'py, PyAny>,
        name: String,
        warmup: Option<u64>,
        times: Option<u64>,
        retries: u32,
        tolerance: std::collections::HashMap<String, u64>,
        memory_budget: u64,
        memory: bool,
        fds: bool,
        threads: bool,
        handles: bool,
        track_native: bool,
        settle: Option<Bound<'py, PyAny>>,
        blocks: Option<Bound<'py, PyAny>>,
        refs: Option<Bound<'py, PyAny>>,
        resources: Option<Bound<'py, PyAny>>,
        progress: Option<Bound<'py, PyAny>>,
        runs_decided: Option<Bound<'py, PyAny>>,
    ) -> PyResult<CoreReport> {
        if !fun.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err("'fun' must be callable"));
        }
        let mut check = psleak::LeakCheck::new().name(name);
        // None: the defaults, which a slow function's check may shorten
        // (LeakCheck::warmup, LeakCheck::times).
        if let Some(warmup) = warmup {
            check = check.warmup(warmup);
        }
        if let Some(times) = times {
            check = check.times(times);
        }
        let mut check = check
            .retries(retries)
            .memory_budget(memory_budget)
            .checkers(checkers_from(memory, fds, threads, handles))
            .track_native(track_native);
        for (key, amount) in tolerance {
            let metric = psleak::Metric::from_name(&key).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("invalid tolerance key {key:?}"))
            })?;
            check = check.tolerance_for(metric, amount);
        }
        let mut host = PyHost {
            fun,
            settle,
            blocks,
            refs,
            resources,
            progress,
            calls: 0,
            progress_error: None,
            locator: None,
            runs_decided,
        };
        let report = match check.run_host(&mut host) {
            Ok(r) => r,
            Err(psleak::CheckError::Host(e)) => return Err(e),
            Err(psleak::CheckError::Probe(e)) => return Err(to_pyerr(e)),
        };
        if let Some(e) = host.progress_error.take() {
            return Err(e);
        }
        Ok(CoreReport { inner: report })
    }
}
