//! The report of a check: what was run, what grew, the verdict, what was left open, and
//! where a leak allocates. The [`Report`] is the one model of it; front ends fill in what
//! only they can find ([`Report::traced_sites`]: Python's tracemalloc) and this module renders it:
//! text for people ([`Report::to_text`]), JSON for tools ([`Report::to_json`], described
//! by the JSON Schema the Python package ships as `psleak/report.schema.json`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::probes::{FdInfo, FdKind, ThreadInfo};
use crate::tracking::Site;
use crate::verdict::{Finding, LeakReason, Metric, Run, Values, METRIC_COUNT};

/// A kind of resource that a call can leave open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A file descriptor (POSIX).
    Fd,
    /// A handle (Windows).
    Handle,
    /// A private heap made by `HeapCreate` (Windows).
    HeapCreate,
    /// A native thread still running.
    NativeThread,
    /// A thread of a language runtime still running (Python: `threading`).
    RuntimeThread,
    /// An object left in a garbage collector's garbage (Python: `gc.garbage`).
    GcObject,
}

impl ResourceKind {
    /// Singular noun as used in messages (`"file descriptor"`).
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Fd => "file descriptor",
            ResourceKind::Handle => "handle",
            ResourceKind::HeapCreate => "HeapCreate() call",
            ResourceKind::NativeThread => "native C thread",
            ResourceKind::RuntimeThread => "Python thread",
            ResourceKind::GcObject => "GC object",
        }
    }

    /// Adjective as used in messages (`"unclosed"`).
    pub fn verb(self) -> &'static str {
        match self {
            ResourceKind::GcObject => "uncollectable",
            _ => "unclosed",
        }
    }
}

/// One resource, described. Two resources are the same when kind and `id` are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Identity within its kind (fd number and link target, thread id, object id).
    pub id: String,
    /// One line for people.
    pub description: String,
    /// Filesystem path, where the resource has one.
    pub path: Option<String>,
    /// Native number: fd, thread id.
    pub number: Option<i64>,
}

impl Resource {
    /// Describes an open file descriptor.
    pub fn from_fd(fd: &FdInfo) -> Resource {
        let what = match &fd.kind {
            FdKind::File => "regular file".to_string(),
            FdKind::Directory => "directory".to_string(),
            FdKind::Pipe => "pipe".to_string(),
            FdKind::Socket {
                family,
                socktype,
                local,
                remote,
            } => {
                let mut s = format!("socket {family} {socktype}");
                if let Some(l) = local {
                    let _ = write!(s, " laddr={l}");
                }
                if let Some(r) = remote {
                    let _ = write!(s, " raddr={r}");
                }
                s
            }
            FdKind::EventFd => "eventfd".to_string(),
            FdKind::Epoll => "epoll".to_string(),
            FdKind::TimerFd => "timerfd".to_string(),
            FdKind::SignalFd => "signalfd".to_string(),
            FdKind::Inotify => "inotify".to_string(),
            FdKind::Fanotify => "fanotify".to_string(),
            FdKind::MemFd => "memfd".to_string(),
            FdKind::PidFd => "pidfd".to_string(),
            FdKind::AnonInode { name } => format!("anon inode [{name}]"),
            FdKind::CharDevice => "character device".to_string(),
            FdKind::BlockDevice => "block device".to_string(),
            FdKind::Other => "other".to_string(),
        };
        let mut description = format!("fd {}: {what}", fd.fd);
        match &fd.path {
            Some(p) => {
                let _ = write!(description, " {p}");
            }
            None if !matches!(fd.kind, FdKind::Socket { .. }) => {
                let _ = write!(description, " ({})", fd.target);
            }
            None => {}
        }
        Resource {
            kind: ResourceKind::Fd,
            id: format!("{}:{}", fd.fd, fd.target),
            description,
            path: fd.path.clone(),
            number: Some(i64::from(fd.fd)),
        }
    }

    /// Describes a native thread.
    pub fn from_thread(t: &ThreadInfo) -> Resource {
        Resource {
            kind: ResourceKind::NativeThread,
            id: t.id.to_string(),
            description: format!("thread id={} name={:?}", t.id, t.name),
            path: None,
            number: Some(t.id),
        }
    }
}

/// Resources of one kind that a call left open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceLeak {
    /// What leaked.
    pub kind: ResourceKind,
    /// How many more there were after the calls than before.
    pub count: i64,
    /// Calls made between the two counts.
    pub calls: u64,
    /// The new resources, described (may be fewer than `count` when some could not be told
    /// apart from old ones, e.g. a reused fd number).
    pub leaked: Vec<Resource>,
}

impl ResourceLeak {
    /// "detected 1 unclosed file descriptor after calling 'f' 1 time", then one line per
    /// leaked resource. The first line ends without a colon: pytest's short summary shows
    /// that line alone.
    pub fn message(&self, name: &str) -> String {
        let plural = if self.count == 1 { "" } else { "s" };
        let times = if self.calls == 1 { "time" } else { "times" };
        let mut s = format!(
            "detected {} {} {}{plural} after calling '{name}' {} {times}",
            self.count,
            self.kind.verb(),
            self.kind.noun(),
            self.calls
        );
        if !self.leaked.is_empty() {
            for r in &self.leaked {
                let _ = write!(s, "\n* {}", r.description);
            }
        }
        s
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing leaked.
    Clean,
    /// Memory grows with calls; strongest finding first.
    MemoryLeak {
        /// One finding per leaking metric.
        findings: Vec<Finding>,
    },
    /// Resources were left open; the first is the one reported.
    ResourceLeak {
        /// One entry per leaking resource kind.
        leaks: Vec<ResourceLeak>,
    },
}

/// The version of the JSON document of [`Report::to_json`]; raised when a field changes
/// meaning or goes away (adding a field does not change it).
pub const SCHEMA_VERSION: u32 = 2;

/// One frame of the stack of a [`TracedSite`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedFrame {
    /// Source file.
    pub file: String,
    /// Line number; 0 when unknown.
    pub line: u32,
    /// The source line, when known.
    pub code: Option<String>,
}

/// A place whose allocations grew with the calls, found after a memory-leak verdict by a
/// front end calling the function again under its runtime's tracer (Python: tracemalloc,
/// which sees objects and `PyMem_*`, not raw C `malloc`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracedSite {
    /// What saw the allocations (`"tracemalloc"`).
    pub tracer: String,
    /// Growth per call of the memory allocated there, bytes.
    pub bytes_per_call: f64,
    /// Growth per call of the number of blocks allocated there.
    pub blocks_per_call: f64,
    /// The stack, innermost frame last, without the frames of test harnesses.
    pub frames: Vec<TracedFrame>,
}

/// Everything a check measured and decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The function's name.
    pub name: String,
    /// The verdict.
    pub outcome: Outcome,
    /// Calls before measuring.
    pub warmup_calls: u64,
    /// Calls in all, warm-up included.
    pub total_calls: u64,
    /// The measured runs.
    pub runs: Vec<Run>,
    /// The noise floor measured in-process: the largest change between idle samples before
    /// the runs, and the largest drop between two checkpoints within a run (the function's
    /// own churn: a leak only adds).
    pub noise: Values,
    /// The growth above which a run counted as grown (max of tolerance and noise).
    pub thresholds: Values,
    /// Which metrics were measured and judged.
    #[serde(serialize_with = "by_metric_name")]
    pub enabled: [bool; METRIC_COUNT],
    /// Most measured runs (the `retries` knob): the check stops before, as soon as the
    /// verdict is clear.
    pub max_runs: u32,
    /// The memory budget (bytes).
    pub memory_budget: u64,
    /// Largest growth of the footprint (rss, or malloc in use) seen, bytes.
    pub peak_growth: i64,
    /// Wall time of the check, seconds.
    pub seconds: f64,
    /// Things worth knowing about the measurement (other threads running, a probe missing).
    pub notes: Vec<String>,
    /// Where a memory leak allocates, largest first, as filled in by a front end after the
    /// verdict (Python: tracemalloc). Empty when nothing traced it.
    #[serde(rename = "where")]
    pub traced_sites: Vec<TracedSite>,
    /// Where the blocks a leak leaves alive were allocated, largest first, counted by
    /// native allocation tracking (empty when it was off, unavailable, or counted no leak).
    pub sites: Vec<Site>,
}

fn by_metric_name<S: serde::Serializer>(
    values: &[bool; METRIC_COUNT],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(METRIC_COUNT))?;
    for m in Metric::ALL {
        map.serialize_entry(m.name(), &values[m.index()])?;
    }
    map.end()
}

/// The JSON document: the report, its schema version, and the figures derived from it.
#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    #[serde(flatten)]
    report: &'a Report,
    /// The metric the verdict leads with.
    lead_metric: Option<Metric>,
    bytes_per_call: Option<f64>,
}

impl Metric {
    /// The unit of the metric's values: `"bytes"`, `"blocks"` for [`Metric::Blocks`],
    /// `"refs"` for [`Metric::Refs`].
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Blocks | Metric::NativeBlocks => "blocks",
            Metric::Refs => "refs",
            _ => "bytes",
        }
    }
}

/// Formats a byte count with a binary unit: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub fn format_bytes(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a < 1024.0 {
        let digits = if a.fract() == 0.0 || a >= 100.0 { 0 } else { 1 };
        return format!("{sign}{a:.digits$} B");
    }
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut x = a / 1024.0;
    let mut i = 0;
    while x >= 1024.0 && i < units.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    format!("{sign}{x:.1} {}", units[i])
}

fn format_value(m: Metric, v: f64) -> String {
    if m.is_bytes() {
        format_bytes(v)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn format_growth(m: Metric, v: i64) -> String {
    match v {
        0 => "0".into(),
        v if v > 0 => format!("+{}", format_value(m, v as f64)),
        v => format_value(m, v as f64),
    }
}

impl Finding {
    /// One line: "leaks ~64 B/call (heap): 4 of 4 runs grew".
    pub fn summary(&self, runs: &[Run]) -> String {
        let unit = if self.metric.is_bytes() {
            String::new()
        } else {
            format!(" {}", self.metric.unit())
        };
        let mut s = format!(
            "leaks ~{}{unit}/call ({})",
            format_value(self.metric, self.per_call),
            self.metric.name()
        );
        match self.reason {
            LeakReason::Budget => {
                let calls: u64 = runs.iter().map(|r| r.calls).sum();
                let grown: i64 = runs.iter().map(|r| r.growth.get(self.metric)).sum();
                let _ = write!(
                    s,
                    ": grew by {} in {calls} calls and ran into the memory budget",
                    format_value(self.metric, grown as f64)
                );
            }
            LeakReason::Consistent => {
                let _ = write!(s, ": {} of {} runs grew", self.runs_grown, self.runs_total);
            }
            LeakReason::Persistent => {
                let _ = write!(
                    s,
                    ": {} of {} runs grew, still growing when retries ran out",
                    self.runs_grown, self.runs_total
                );
            }
        }
        s
    }
}

impl Report {
    /// Total bytes per call of the allocation sites, when a tracer found any.
    fn site_bytes_per_call(&self) -> Option<f64> {
        (!self.traced_sites.is_empty()).then(|| self.traced_sites.iter().map(|s| s.bytes_per_call).sum())
    }

    /// The finding that best measures what leaks, which the verdict leads with.
    ///
    /// The engine ranks exact byte counters first, but a runtime's objects (`blocks`) live
    /// in its own arenas, which the heap metric sees only as arenas are added: a Python
    /// object of 136 bytes leaked per call grows the heap by ~9 bytes a call. So `blocks`
    /// leads when the heap's growth is no more than the traced sites account for plus one
    /// malloc chunk (32 bytes, glibc's MINSIZE) of overhead per block; a heap growing
    /// faster than that leaks on its own, and leads.
    pub fn lead(&self) -> Option<&Finding> {
        let Outcome::MemoryLeak { findings } = &self.outcome else {
            return None;
        };
        let of = |m: Metric| findings.iter().find(|f| f.metric == m);
        if let Some(blocks) = of(Metric::Blocks) {
            let heap = of(Metric::Heap).map_or(0.0, |f| f.per_call);
            let explained = self.site_bytes_per_call().unwrap_or(0.0) + 32.0 * blocks.per_call;
            if heap <= explained {
                return Some(blocks);
            }
        }
        findings.first()
    }

    /// Growth per call of what leaks, in bytes: the leading finding's rate for a byte
    /// metric; for leaked runtime objects, the bytes their allocation sites grew by (None
    /// when no tracer sized them). None unless memory leaks.
    pub fn bytes_per_call(&self) -> Option<f64> {
        let lead = self.lead()?;
        if lead.metric.is_bytes() {
            Some(lead.per_call)
        } else {
            self.site_bytes_per_call()
        }
    }

    /// The summary line of the leading finding, sized by the sites when it counts blocks.
    fn lead_summary(&self, lead: &Finding) -> String {
        match (lead.metric, self.site_bytes_per_call(), self.traced_sites.first()) {
            (Metric::Blocks, Some(bytes), Some(site)) => {
                let s = lead.summary(&self.runs);
                let (_, rest) = s.split_once(": ").unwrap_or((&s, ""));
                format!(
                    "leaks ~{}/call ({} blocks/call, sized by {}): {rest}",
                    format_bytes(bytes),
                    format_value(Metric::Blocks, (lead.per_call * 10.0).round() / 10.0),
                    site.tracer
                )
            }
            _ => lead.summary(&self.runs),
        }
    }

    /// The one-line verdict.
    pub fn verdict_line(&self) -> String {
        match &self.outcome {
            Outcome::Clean => format!("'{}' is clean", self.name),
            Outcome::MemoryLeak { .. } => match self.lead() {
                Some(f) => format!("'{}' {}", self.name, self.lead_summary(f)),
                None => format!("'{}' leaks memory", self.name),
            },
            Outcome::ResourceLeak { leaks } => match leaks.first() {
                Some(l) => l.message(&self.name),
                None => format!("'{}' leaks resources", self.name),
            },
        }
    }

    /// Whether the verdict is clean.
    pub fn is_clean(&self) -> bool {
        self.outcome == Outcome::Clean
    }

    /// The full report for people: verdict line, the other findings, where the leak
    /// allocates, then one row per run with the growth of each metric, the thresholds and
    /// noise floor, and what the check cost.
    pub fn to_text(&self) -> String {
        let mut s = self.verdict_line();
        if let Outcome::MemoryLeak { findings } = &self.outcome {
            // Page-granular metrics grow along with any leak; the table shows them, and
            // only the exact metrics get a line of their own.
            let lead = self.lead().map(|f| f.metric);
            for f in findings
                .iter()
                .filter(|f| Some(f.metric) != lead && f.metric.precision_rank() <= 1)
            {
                let _ = write!(s, "\nalso {}", f.summary(&self.runs));
            }
        }
        self.write_sites(&mut s);
        let metrics: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|m| self.enabled[m.index()])
            .collect();
        if !self.runs.is_empty() {
            let _ = write!(s, "\n{:>5} {:>7}", "run", "calls");
            for m in &metrics {
                let _ = write!(s, " {:>11}", m.name());
            }
            let _ = write!(s, " {:>11}", "per call");
            for (i, run) in self.runs.iter().enumerate() {
                let _ = write!(s, "\n{:>5} {:>7}", i + 1, run.calls);
                for m in &metrics {
                    let _ = write!(s, " {:>11}", format_growth(*m, run.growth.get(*m)));
                }
                let pc = self.per_call_of(run);
                let _ = write!(s, " {:>11}", pc);
                if run.budget_stop {
                    s.push_str("  (stopped: memory budget)");
                }
            }
            let _ = write!(s, "\n{:>13}", "threshold");
            for m in &metrics {
                let _ = write!(s, " {:>11}", format_value(*m, self.thresholds.get(*m) as f64));
            }
            let _ = write!(s, "\n{:>13}", "noise floor");
            for m in &metrics {
                let _ = write!(s, " {:>11}", format_value(*m, self.noise.get(*m) as f64));
            }
        }
        if let Outcome::ResourceLeak { leaks } = &self.outcome {
            for l in leaks.iter().skip(1) {
                let _ = write!(s, "\nalso {}", l.message(&self.name));
            }
        }
        let times = if self.total_calls == 1 { "call" } else { "calls" };
        let _ = write!(
            s,
            "\n{} {times} ({} warm-up) in {:.2} s",
            self.total_calls, self.warmup_calls, self.seconds
        );
        // Memory figures only where memory was measured: a resource leak is found before
        // the runs, and "peak growth 0 B" would say nothing.
        if !self.runs.is_empty() {
            let _ = write!(
                s,
                "; {} of at most {} runs (retries); peak growth {} (budget {})",
                self.runs.len(),
                self.max_runs,
                format_bytes(self.peak_growth as f64),
                format_bytes(self.memory_budget as f64)
            );
        }
        for n in &self.notes {
            let _ = write!(s, "\nnote: {n}");
        }
        s
    }

    /// "allocated (tracemalloc, innermost frame last):" and the sites, one block each.
    fn write_sites(&self, s: &mut String) {
        s.push_str(&self.sites_text());
        let mut tracer: Option<&str> = None;
        for site in &self.traced_sites {
            if tracer != Some(site.tracer.as_str()) {
                tracer = Some(&site.tracer);
                let _ = write!(s, "\nallocated ({}, innermost frame last):", site.tracer);
            }
            let _ = write!(
                s,
                "\n  ~{}/call, {:.1} blocks/call from:",
                format_bytes(site.bytes_per_call),
                site.blocks_per_call
            );
            for f in &site.frames {
                let _ = write!(s, "\n    {}:{}", f.file, f.line);
                if let Some(code) = f.code.as_deref().filter(|c| !c.is_empty()) {
                    let _ = write!(s, ": {code}");
                }
            }
        }
    }

    /// The "allocated at" section of native allocation tracking: each site's share per
    /// call, then its frames, innermost first (the allocating call), down to the
    /// runtime's line that called native code.
    pub fn sites_text(&self) -> String {
        let mut s = String::new();
        if self.sites.is_empty() {
            return s;
        }
        if self.sites.iter().all(|site| site.replaced) {
            s.push_str(
                "\nallocated at (no block outlived later calls, which replaced each with a larger one: \
                 growth per call of what the blocks held; innermost frame first):",
            );
        } else {
            s.push_str("\nallocated at (blocks left alive per call; innermost frame first):");
        }
        for site in &self.sites {
            let blocks = site.blocks_per_call;
            if site.replaced {
                let _ = write!(
                    s,
                    "\n  {}/call more held, in blocks replaced by larger ones{}",
                    format_bytes(site.bytes_per_call),
                    site.threads_text()
                );
            } else {
                let _ = write!(
                    s,
                    "\n  {}/call in {} block{}/call{}",
                    format_bytes(site.bytes_per_call),
                    format_value(Metric::NativeBlocks, blocks),
                    if blocks == 1.0 { "" } else { "s" },
                    site.threads_text()
                );
            }
            if site.frames.is_empty() {
                s.push_str("\n    (no frame outside psleak and the runtime)");
            }
            for f in &site.frames {
                let _ = write!(s, "\n    {}", f.describe());
            }
        }
        s
    }

    /// The growth per call of a run on the metric that leaks (or the heap), for the table.
    fn per_call_of(&self, run: &Run) -> String {
        let m = self.lead().map_or(Metric::Heap, |f| f.metric);
        let v = run.growth.get(m) as f64 / run.calls.max(1) as f64;
        format!("{} {}", format_value(m, v), m.name())
    }

    /// The JSON document: the report's fields, metrics as objects keyed by metric name,
    /// plus `schema_version` ([`SCHEMA_VERSION`]), `lead_metric` and `bytes_per_call`.
    pub fn to_json_value(&self) -> serde_json::Value {
        let doc = Document {
            schema_version: SCHEMA_VERSION,
            report: self,
            lead_metric: self.lead().map(|f| f.metric),
            bytes_per_call: self.bytes_per_call(),
        };
        serde_json::to_value(doc).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }

    /// The report as JSON (see [`Report::to_json_value`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_json_value())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Escapes text for SVG.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// The runs as an SVG chart: one small panel per measured metric, cumulative growth
    /// against cumulative calls, with the leak's metric drawn in red. A leak grows along a
    /// straight line through the origin; a cache rises, then goes flat.
    pub fn to_svg(&self) -> String {
        const W: f64 = 300.0;
        const H: f64 = 150.0;
        const PAD: f64 = 46.0;
        let leaking: Option<Metric> = self.lead().map(|f| f.metric);
        let metrics: Vec<Metric> = Metric::ALL
            .into_iter()
            .filter(|m| self.enabled[m.index()])
            .collect();
        let cols = 3usize;
        let rows = metrics.len().div_ceil(cols).max(1);
        let width = cols as f64 * (W + PAD) + PAD;
        let height = rows as f64 * (H + PAD) + 50.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
             fill=\"white\"/>\n<text x=\"{PAD}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
            xml_escape(&self.verdict_line())
        );
        // Cumulative points: (calls, growth) after each run, from the origin.
        let mut calls = vec![0u64];
        for r in &self.runs {
            calls.push(calls.last().copied().unwrap_or(0) + r.calls);
        }
        let max_calls = calls.last().copied().unwrap_or(0).max(1) as f64;
        for (i, m) in metrics.iter().enumerate() {
            let x0 = PAD + (i % cols) as f64 * (W + PAD);
            let y0 = 40.0 + (i / cols) as f64 * (H + PAD);
            let mut growth = vec![0i64];
            for r in &self.runs {
                growth.push(growth.last().copied().unwrap_or(0) + r.growth.get(*m));
            }
            let lo = growth.iter().copied().min().unwrap_or(0).min(0) as f64;
            let hi = (growth.iter().copied().max().unwrap_or(0) as f64).max(lo + 1.0);
            let px = |c: u64| x0 + c as f64 / max_calls * W;
            let py = |g: i64| y0 + H - (g as f64 - lo) / (hi - lo) * H;
            let color = if Some(*m) == leaking { "#c0392b" } else { "#2471a3" };
            let _ = writeln!(
                s,
                "<rect x=\"{x0}\" y=\"{y0}\" width=\"{W}\" height=\"{H}\" fill=\"none\" stroke=\"#bbb\"/>\n\
                 <text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{}</text>\n\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">calls: {}</text>\n\
                 <line x1=\"{x0}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
                y0 - 4.0,
                m.name(),
                x0 + W - 4.0,
                y0 + 14.0,
                xml_escape(&format_growth(*m, growth.iter().copied().max().unwrap_or(0))),
                x0 + W - 4.0,
                y0 + H + 14.0,
                max_calls as u64,
                x0 + W,
                py(0),
                py(0)
            );
            let points: Vec<String> = calls
                .iter()
                .zip(&growth)
                .map(|(c, g)| format!("{:.1},{:.1}", px(*c), py(*g)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                points.join(" ")
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Values;

    #[test]
    fn bytes_are_formatted_with_binary_units() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(64.0), "64 B");
        assert_eq!(format_bytes(12.5), "12.5 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(64.0 * 1048576.0), "64.0 MiB");
        assert_eq!(format_bytes(-4096.0), "-4.0 KiB");
    }

    /// A memory leak of `blocks_per_call` objects and `heap_per_call` heap bytes, over
    /// four runs from 200 calls.
    fn leak_report(heap_per_call: f64, blocks_per_call: f64) -> Report {
        let finding = |metric, per_call| Finding {
            metric,
            per_call,
            runs_grown: 4,
            runs_total: 4,
            reason: LeakReason::Consistent,
        };
        let runs = [200u64, 400, 800, 1600]
            .into_iter()
            .map(|calls| {
                let mut growth = Values::default();
                growth.set(Metric::Heap, (heap_per_call * calls as f64) as i64);
                growth.set(Metric::Blocks, (blocks_per_call * calls as f64) as i64);
                Run {
                    seconds: 0.01,
                    ..Run::new(calls, growth)
                }
            })
            .collect();
        Report {
            name: "f".into(),
            outcome: Outcome::MemoryLeak {
                findings: vec![
                    finding(Metric::Heap, heap_per_call),
                    finding(Metric::Blocks, blocks_per_call),
                ],
            },
            warmup_calls: 10,
            total_calls: 3011,
            runs,
            noise: Values::default(),
            thresholds: Values::default(),
            enabled: [true; METRIC_COUNT],
            max_runs: 10,
            memory_budget: 1 << 26,
            peak_growth: 1 << 20,
            seconds: 0.1,
            notes: vec![],
            traced_sites: vec![],
            sites: vec![],
        }
    }

    #[test]
    fn objects_in_arenas_lead_with_blocks_sized_by_the_sites() {
        // pymalloc: 136 B objects grow the heap by ~9 B/call, as arenas are added.
        let mut r = leak_report(8.8, 1.0);
        assert_eq!(r.lead().map(|f| f.metric), Some(Metric::Blocks));
        assert_eq!(r.bytes_per_call(), None, "blocks alone are not bytes");
        r.traced_sites.push(TracedSite {
            tracer: "tracemalloc".into(),
            bytes_per_call: 136.0,
            blocks_per_call: 1.0,
            frames: vec![TracedFrame {
                file: "t.py".into(),
                line: 3,
                code: Some("hoard.append(x)".into()),
            }],
        });
        assert_eq!(r.bytes_per_call(), Some(136.0));
        let text = r.to_text();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("'f' leaks ~136 B/call (1 blocks/call, sized by tracemalloc): 4 of 4 runs grew")
        );
        assert_eq!(
            lines.next(),
            Some("also leaks ~8.8 B/call (heap): 4 of 4 runs grew")
        );
        assert_eq!(
            lines.next(),
            Some("allocated (tracemalloc, innermost frame last):")
        );
        assert!(text.contains("    t.py:3: hoard.append(x)"));
        assert!(text.contains("4 of at most 10 runs (retries)"));
    }

    #[test]
    fn heap_growing_beyond_the_objects_leads() {
        // A C leak of 200 B/call beside one small object a call.
        let r = leak_report(200.0, 1.0);
        assert_eq!(r.lead().map(|f| f.metric), Some(Metric::Heap));
        assert_eq!(r.bytes_per_call(), Some(200.0));
        assert!(r.verdict_line().contains("(heap)"));
    }

    #[test]
    fn json_names_metrics_and_carries_the_schema_version() {
        let r = leak_report(200.0, 1.0);
        let v = r.to_json_value();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["runs"][0]["growth"]["heap"], 40000);
        assert_eq!(v["runs"][0]["growth"]["blocks"], 200);
        assert_eq!(v["enabled"]["anon"], true);
        assert_eq!(v["thresholds"].as_object().map(|m| m.len()), Some(METRIC_COUNT));
        assert_eq!(v["lead_metric"], "heap");
        assert_eq!(v["bytes_per_call"], 200.0);
        assert_eq!(v["where"], serde_json::json!([]));
    }

    #[test]
    fn resource_leak_text_has_no_memory_figures() {
        let mut r = leak_report(0.0, 0.0);
        r.runs.clear();
        r.total_calls = 11;
        r.outcome = Outcome::ResourceLeak {
            leaks: vec![ResourceLeak {
                kind: ResourceKind::NativeThread,
                count: 1,
                calls: 1,
                leaked: vec![],
            }],
        };
        assert_eq!(
            r.to_text(),
            "detected 1 unclosed native C thread after calling 'f' 1 time\n11 calls (10 warm-up) in 0.10 s"
        );
    }

    #[test]
    fn svg_has_a_panel_per_metric_and_escapes_the_title() {
        let mut growth = Values::default();
        growth.set(Metric::Heap, 6400);
        let report = Report {
            name: "a<b>".into(),
            outcome: Outcome::Clean,
            warmup_calls: 10,
            total_calls: 211,
            runs: vec![Run::new(200, growth)],
            noise: Values::default(),
            thresholds: Values::default(),
            enabled: [true, true, false, false, false, false, false, false, false],
            max_runs: 10,
            memory_budget: 1 << 26,
            peak_growth: 6400,
            seconds: 0.1,
            notes: vec![],
            traced_sites: vec![],
            sites: vec![],
        };
        let svg = report.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("'a&lt;b&gt;' is clean"));
        assert!(svg.contains("+6.2 KiB"));
    }

    #[test]
    fn resource_message_reads_like_the_reference() {
        let l = ResourceLeak {
            kind: ResourceKind::Fd,
            count: 1,
            calls: 1,
            leaked: vec![Resource {
                kind: ResourceKind::Fd,
                id: "5:pipe:[1]".into(),
                description: "fd 5: pipe (pipe:[1])".into(),
                path: None,
                number: Some(5),
            }],
        };
        assert_eq!(
            l.message("fun"),
            "detected 1 unclosed file descriptor after calling 'fun' 1 time\n* fd 5: pipe (pipe:[1])"
        );
        let l = ResourceLeak {
            count: 2,
            calls: 3000,
            leaked: vec![],
            ..l
        };
        assert_eq!(
            l.message("f"),
            "detected 2 unclosed file descriptors after calling 'f' 3000 times"
        );
    }
}
