//! The driver: calls the function under test, takes the measurements, hands them to the
//! verdict engine (which owns every rule) and assembles the [`Report`]. It samples and
//! calls; it does not judge.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::check::{CheckError, Host, LeakCheck, Phase, Progress};
use crate::error::Result;
use crate::report::{Outcome, Report, Resource, ResourceKind, ResourceLeak};
use crate::sys::backend;
use crate::tracking::{Site, Tracking};
use crate::verdict::{
    decide, first_run_calls, thresholds, wants_reachability, warmup_done, Decision, Finding, Metric, Policy,
    Run, Values, METRIC_COUNT,
};

/// How long a seeming fd or thread leak is given to go away before it is reported.
const RESOURCE_SETTLE_MS: u64 = 50;

/// How many idle intervals measure the noise floor.
const NOISE_SAMPLES: usize = 3;

/// Most allocation sites a report lists.
const MAX_SITES: usize = 5;

/// Blocks the where run's capturing part should leave at the leak's rate: enough to name
/// its sites and their share.
const SITE_BLOCKS: f64 = 64.0;

/// Fewest calls in the where run's capturing part: a leak that comes in bursts (50 blocks
/// on every 50th call) still shows in it.
const MIN_LOCATE_CALLS: f64 = 50.0;

/// Takes samples of the enabled metrics.
struct Sampler {
    enabled: [bool; METRIC_COUNT],
    malloc: bool,
    uss: bool,
    /// Whether allocation tracking is on: its table's pages (mapped and faulted in at
    /// once, see `track::table::map`) are taken out of the judged rss, anon and vms, so
    /// that the table growing to a function's peak of live blocks, shard by shard, is not
    /// read as the function's growth. The budget still counts them (`quick`).
    own: bool,
}

impl Sampler {
    /// Finds out which probes work here; notes the ones that do not.
    fn new(notes: &mut Vec<String>) -> Result<Sampler> {
        let mut enabled = [true; METRIC_COUNT];
        let malloc = match backend::malloc_stats() {
            Ok(_) => true,
            Err(e) => {
                notes.push(format!("heap and mmap not measured: {e}"));
                enabled[Metric::Heap.index()] = false;
                enabled[Metric::Mmap.index()] = false;
                false
            }
        };
        backend::memory_quick()?;
        let uss = match backend::memory_counters() {
            Ok(_) => true,
            Err(e) => {
                notes.push(format!("anon not measured: {e}"));
                enabled[Metric::Anon.index()] = false;
                false
            }
        };
        Ok(Sampler {
            enabled,
            malloc,
            uss,
            own: false,
        })
    }

    /// Heap and mmap in use, where malloc's statistics exist, and the arenas' size.
    fn malloc_sample(&self) -> Result<(Values, i64)> {
        let mut v = Values::default();
        let mut arenas = 0;
        if self.malloc {
            let m = backend::malloc_stats()?;
            v.set(Metric::Heap, m.heap_used as i64);
            v.set(Metric::Mmap, m.mmap_used as i64);
            arenas = m.heap_total as i64;
        }
        Ok((v, arenas))
    }

    /// A sample of every metric.
    fn sample<H: Host>(&self, host: &mut H) -> Result<Values> {
        let (mut v, arenas) = self.malloc_sample()?;
        if self.uss {
            let c = backend::memory_counters()?;
            v.set(Metric::Anon, c.anon as i64);
            v.set(Metric::Rss, c.rss as i64);
            v.set(Metric::Vms, c.vms as i64);
        } else {
            let (rss, vms) = backend::memory_quick()?;
            v.set(Metric::Rss, rss as i64);
            v.set(Metric::Vms, vms as i64);
        }
        if self.own {
            let own = Tracking::bytes() as i64;
            for m in [Metric::Rss, Metric::Anon, Metric::Vms] {
                v.set(m, v.get(m) - own);
            }
        }
        // The judged vms leaves out malloc's arenas, whose part in use the heap metric
        // judges exactly: an arena whose top creeps up with fragmentation, its use flat,
        // made a steady +13 B/call of vms that was reported as a leak (Pillow's PNG
        // save, 17,000 calls; standalone it creeps and falls back, +3 B/call).
        if backend::VMS_HOLDS_HEAP {
            v.set(Metric::Vms, v.get(Metric::Vms) - arenas);
        }
        if let Some(b) = host.blocks() {
            v.set(Metric::Blocks, b);
        }
        if let Some(r) = host.refs() {
            v.set(Metric::Refs, r);
        }
        Ok(v)
    }

    /// A cheap sample for the memory budget: rss and malloc in use only (allocation
    /// tracking's own pages included: the budget counts them).
    fn quick(&self) -> Result<Values> {
        let (mut v, _) = self.malloc_sample()?;
        v.set(Metric::Rss, backend::memory_quick()?.0 as i64);
        Ok(v)
    }
}

pub(crate) struct Driver<'a, H: Host> {
    check: &'a LeakCheck,
    host: &'a mut H,
    started: Instant,
    calls: u64,
    notes: Vec<String>,
    /// Native threads when the memory runs began: a settled sample waits (briefly) for the
    /// threads the calls started to finish, see [`Driver::settle`].
    threads_before_runs: Option<usize>,
    /// What a call cost during the warm-up (seconds; 0 when not measured).
    seconds_per_call: f64,
    /// Warm-up calls made (fewer than asked for a slow function, see `warmup_done`).
    warmup_made: u64,
}

/// How long a settled sample waits for threads the calls started to finish.
const THREAD_SETTLE_MS: u64 = 100;

type Res<T, E> = std::result::Result<T, CheckError<E>>;

impl<'a, H: Host> Driver<'a, H> {
    pub(crate) fn new(check: &'a LeakCheck, host: &'a mut H) -> Self {
        Driver {
            check,
            host,
            started: Instant::now(),
            calls: 0,
            notes: Vec::new(),
            threads_before_runs: None,
            seconds_per_call: 0.0,
            warmup_made: 0,
        }
    }

    fn call(&mut self) -> Res<(), H::Error> {
        self.calls += 1;
        self.host.call().map_err(CheckError::Host)
    }

    fn settle(&mut self) -> Res<(), H::Error> {
        // Threads the calls started and that are still finishing their work hold memory
        // (their stacks, the runtime's objects for them) that is gone a moment later. A
        // function whose threads outlive each call by a few ms, called faster than they
        // finish, leaves a backlog that grows with the run's length: sampled at once, it
        // looks like a leak. Wait for them, without the host's lock (the GIL).
        if let Some(before) = self.threads_before_runs {
            let deadline = Instant::now() + std::time::Duration::from_millis(THREAD_SETTLE_MS);
            while backend::thread_count().is_ok_and(|n| n > before) && Instant::now() < deadline {
                self.host.pause(std::time::Duration::from_millis(1));
            }
        }
        self.host.settle().map_err(CheckError::Host)?;
        // Give free memory back so that rss follows what is in use. An allocator without
        // malloc_trim is fine: the sampler already noted what it cannot see.
        let _ = backend::malloc_trim();
        Ok(())
    }

    /// The report as of now; the memory check fills in its runs.
    fn report(&self, outcome: Outcome) -> Report {
        Report {
            name: self.check.name.clone(),
            outcome,
            warmup_calls: self.warmup_made,
            total_calls: self.calls,
            runs: Vec::new(),
            noise: Values::default(),
            thresholds: Values::default(),
            enabled: [false; METRIC_COUNT],
            max_runs: self.check.retries,
            memory_budget: self.check.memory_budget,
            peak_growth: 0,
            seconds: self.started.elapsed().as_secs_f64(),
            notes: self.notes.clone(),
            traced_sites: Vec::new(),
            sites: Vec::new(),
        }
    }

    /// Installs the allocation hooks for the runs, or notes why they cannot be.
    fn start_tracking(&mut self) -> Option<Tracking> {
        if !self.check.track_native {
            return None;
        }
        match Tracking::start(self.host.runtime_address()) {
            Ok(t) => Some(t),
            Err(why) => {
                self.notes.push(format!(
                    "native allocations not tracked ({why}): judged from malloc's and the \
                     kernel's counters"
                ));
                None
            }
        }
    }

    pub(crate) fn run(mut self) -> Res<Report, H::Error> {
        match backend::thread_count() {
            Ok(n) if n > 1 => self.notes.push(format!(
                "{} other thread(s) existed during the check: what they allocate meanwhile \
                 counts as noise; for exact figures run leak checks with no other thread \
                 busy (cargo test: --test-threads=1; pytest: without -n)",
                n - 1
            )),
            _ => {}
        }
        // The warm-up calls after the first (which may initialise things) say what a call
        // costs, for sizing the first run when `times` was left at its default.
        // A slow function's warm-up, left at its default, ends early (see `warmup_done`).
        let mut warm = (0u32, 0.0f64);
        let mut made = 0;
        while !warmup_done(self.check.warmup, self.check.warmup_chosen, made, warm.1) {
            let started = Instant::now();
            self.call()?;
            if made > 0 {
                warm = (warm.0 + 1, warm.1 + started.elapsed().as_secs_f64());
            }
            made += 1;
        }
        self.warmup_made = made;
        self.seconds_per_call = if warm.0 > 0 {
            warm.1 / f64::from(warm.0)
        } else {
            0.0
        };
        if let Some(leaks) = self.resource_check()? {
            return Ok(self.report(Outcome::ResourceLeak { leaks }));
        }
        if !self.check.checkers.memory {
            return self.resource_runs();
        }
        self.memory_check()
    }

    fn resources(&mut self, phase: Phase) -> Res<Vec<Resource>, H::Error> {
        let mut out = Vec::new();
        self.host.resources(phase, &mut out).map_err(CheckError::Host)?;
        self.native_resources(&mut out)?;
        Ok(out)
    }

    fn native_resources(&self, out: &mut Vec<Resource>) -> Result<()> {
        if self.check.checkers.fds && backend::HAS_FDS {
            out.extend(backend::fd_list()?.iter().map(Resource::from_fd));
        }
        if self.check.checkers.handles && backend::HAS_HANDLES {
            out.extend(backend::handle_list()?.iter().map(Resource::from));
            out.extend(backend::heap_list()?.iter().map(Resource::from));
        }
        if self.check.checkers.threads {
            out.extend(backend::thread_list()?.iter().map(Resource::from_thread));
        }
        Ok(())
    }

    /// Compares resources before and after; when resources that can go away on their own
    /// seem to have leaked, looks again for a short while before believing it. A joined
    /// thread can stay listed in /proc/self/task for a moment after pthread_join returns
    /// (the kernel reaps it after the join's futex wake-up), a socket closed by another
    /// thread may be released a moment later, and a Python thread that has finished its
    /// work still needs the GIL to exit: the host releases it while the driver waits.
    /// Descriptors and handles are only waited for while another thread exists: only a
    /// thread can close them, and the one running this check is not closing anything (a
    /// leaked descriptor cost 50 ms of waiting, about fifty times the rest of its check).
    fn leaks_after_settling(
        &mut self,
        before: &[Resource],
        mut after: Vec<Resource>,
        calls: u64,
    ) -> Res<Option<Vec<ResourceLeak>>, H::Error> {
        // What is listed again while waiting: all but gc garbage, which cannot go away on
        // its own and keeps its first answer.
        let relisted = |k: ResourceKind| k != ResourceKind::GcObject;
        let alone = backend::thread_count().is_ok_and(|n| n <= 1);
        let transient = |k: ResourceKind| match k {
            ResourceKind::Fd | ResourceKind::Handle | ResourceKind::HeapCreate => !alone,
            ResourceKind::NativeThread | ResourceKind::RuntimeThread => true,
            ResourceKind::GcObject => false,
        };
        let deadline = Instant::now() + std::time::Duration::from_millis(RESOURCE_SETTLE_MS);
        loop {
            let leaks = resource_leaks(before, &after, calls);
            let waiting = leaks
                .as_ref()
                .is_some_and(|l| l.iter().any(|l| transient(l.kind)));
            if !waiting || Instant::now() >= deadline {
                return Ok(leaks);
            }
            self.host.pause(std::time::Duration::from_millis(1));
            after.retain(|r| !relisted(r.kind));
            self.host
                .resources(Phase::Recheck, &mut after)
                .map_err(CheckError::Host)?;
            self.native_resources(&mut after)?;
        }
    }

    /// Calls the function once and compares resources before and after.
    fn resource_check(&mut self) -> Res<Option<Vec<ResourceLeak>>, H::Error> {
        let before = self.resources(Phase::BeforeCall)?;
        self.call()?;
        let after = self.resources(Phase::AfterCall)?;
        self.leaks_after_settling(&before, after, 1)
    }

    /// With the memory check off: resources are still compared across many calls (the
    /// runs a clean memory check would make: two of `times`), so that a descriptor leaked
    /// on one call in fifty is found, not only one leaked by the single call.
    fn resource_runs(mut self) -> Res<Report, H::Error> {
        let before = self.resources(Phase::BeforeRuns)?;
        let calls = self.check.times.saturating_mul(2);
        for _ in 0..calls {
            self.call()?;
        }
        self.settle()?;
        let after = self.resources(Phase::AfterRuns)?;
        let outcome = match self.leaks_after_settling(&before, after, calls)? {
            Some(leaks) => Outcome::ResourceLeak { leaks },
            None => Outcome::Clean,
        };
        Ok(self.report(outcome))
    }

    fn memory_check(mut self) -> Res<Report, H::Error> {
        let mut sampler = Sampler::new(&mut self.notes)?;
        let resources_before = self.resources(Phase::BeforeRuns)?;
        let calls_before_runs = self.calls;
        self.threads_before_runs = backend::thread_count().ok();
        // Allocated before the first sample: allocating it between two samples would count
        // as the function's growth.
        let mut runs: Vec<Run> = Vec::with_capacity(self.check.retries as usize);

        // Installed before the first sample (installing maps the live table, which must not
        // count as the function's growth); dropped, and so removed, on every way out of
        // this function.
        let tracking = self.start_tracking();
        sampler.own = tracking.is_some();

        // Noise floor: the largest change between samples with no call in between.
        self.settle()?;
        let base = sampler.sample(self.host)?;
        let mut prev = base;
        let mut noise = Values::default();
        for _ in 0..NOISE_SAMPLES {
            self.settle()?;
            let s = sampler.sample(self.host)?;
            for m in Metric::ALL {
                let d = (s.get(m) - prev.get(m)).abs();
                noise.set(m, noise.get(m).max(d));
            }
            prev = s;
        }
        let base = prev;
        let times = if self.check.times_chosen {
            self.check.times
        } else {
            first_run_calls(self.check.times, self.seconds_per_call)
        };
        if times < self.check.times {
            let warmup = if self.warmup_made < self.check.warmup {
                format!(
                    " after {} warm-up calls instead of {}",
                    self.warmup_made, self.check.warmup
                )
            } else {
                String::new()
            };
            self.notes.push(format!(
                "a call took {:.1} ms in the warm-up: runs started at {times} calls instead of \
                 {} (about half a second a run){warmup}; a leak on one call in hundreds needs \
                 more: set times to choose",
                self.seconds_per_call * 1e3,
                self.check.times
            ));
        }
        let mut policy = Policy::new(
            times,
            self.check.retries,
            Values(self.check.tolerance.map(|t| i64::try_from(t).unwrap_or(i64::MAX))),
            self.check.memory_budget,
        );
        policy.idle_noise = noise;
        policy.page_size = backend::page_size();
        policy.enabled = sampler.enabled;
        if self.host.blocks().is_none() {
            policy.enabled[Metric::Blocks.index()] = false;
        }
        if self.host.refs().is_none() {
            policy.enabled[Metric::Refs.index()] = false;
        }
        policy.enabled[Metric::NativeBlocks.index()] = tracking.is_some();
        policy.enabled[Metric::NativeBytes.index()] = tracking.is_some();

        let mut peak: i64 = 0;
        let decision = loop {
            let calls = match decide(&policy, &runs) {
                Decision::Continue { calls } => calls,
                d => break d,
            };
            let started = Instant::now();
            if let Some(t) = &tracking {
                t.set_run(runs.len() as u32 + 1);
            }
            let batch = self.batch(&sampler, calls, base, &policy);
            if let Some(t) = &tracking {
                t.set_run(0);
            }
            let batch = batch?;
            peak = peak.max(batch.peak);
            self.settle()?;
            let s = sampler.sample(self.host)?;
            peak = peak.max(s.minus(&base).footprint());
            runs.push(Run {
                calls: batch.calls,
                growth: s.minus(&prev),
                churn: batch.churn,
                seconds: started.elapsed().as_secs_f64(),
                budget_stop: batch.budget_stop,
                held: Values::default(),
                lost: 0,
                resized: 0,
            });
            let mut growth = s.minus(&base);
            if let Some(t) = &tracking {
                // Every run's survivors as of now: what later runs freed no longer counts.
                let survivors = t.survivors();
                for (run, (blocks, bytes)) in runs.iter_mut().zip(survivors) {
                    run.growth.set(Metric::NativeBlocks, blocks);
                    run.growth.set(Metric::NativeBytes, bytes);
                }
                for (run, resized) in runs.iter_mut().zip(t.resized()) {
                    run.resized = resized;
                }
                for m in [Metric::NativeBlocks, Metric::NativeBytes] {
                    if let Some(last) = runs.last_mut() {
                        last.held.set(m, last.growth.get(m));
                    }
                    growth.set(m, runs.iter().map(|r| r.growth.get(m)).sum());
                }
                // Which survivors nothing points to any more, when knowing it can confirm a
                // leak sooner: a cache keeps a pointer to each block it holds.
                let tracked = growth.get(Metric::NativeBlocks);
                if wants_reachability(&policy, &runs)
                    && scan_pays(runs.last().map_or(0.0, |r| 2.0 * r.seconds), tracked)
                {
                    if let Some(lost) = timed_scan(t, tracked) {
                        for (run, (blocks, _)) in runs.iter_mut().zip(lost) {
                            run.lost = blocks;
                        }
                    }
                }
            }
            prev = s;
            self.host.progress(&Progress {
                run: runs.len(),
                max_runs: policy.retries,
                calls: batch.calls,
                total_calls: self.calls,
                growth,
            });
        };

        if tracking.is_some() {
            // Its pages count against the budget, though not in the judged columns; say so
            // when they were enough to matter (the where run's stack store comes after).
            let bytes = Tracking::bytes();
            if bytes > 4 << 20 {
                self.notes.push(format!(
                    "allocation tracking held {} for its table and stacks (counted in the \
                     memory budget, left out of the rss, anon and vms columns)",
                    crate::report::format_bytes(bytes as f64)
                ));
            }
        }
        // What the latest reachability scan found, when one was made and the function leaks.
        let lost: i64 = runs.iter().map(|r| r.lost).sum();
        if lost > 0 && matches!(decision, Decision::Leak(_)) {
            let alive: i64 = runs.iter().map(|r| r.growth.get(Metric::NativeBlocks)).sum();
            self.notes.push(format!(
                "nothing in the process points to {lost} of the {alive} native blocks the runs \
                 left alive: leaked for certain, no cache holds them"
            ));
        }
        // Sites for what tracking counted, and for the runtime's blocks (Python objects in
        // pymalloc's arenas) where the host can route its allocator through the tracker for
        // the where run. A leak seen by the other counters alone has none to show, and
        // extra calls would only grow it.
        // Nor has a leak of the heap whose blocks each later run freed, unless what the
        // runs' blocks held when new grew: blocks replaced by larger ones (see `replacing`).
        let replaced = matches!(&decision, Decision::Leak(findings) if replacing(findings, &runs));
        let sites = match (&tracking, &decision) {
            (Some(t), Decision::Leak(findings))
                if replaced
                    || findings
                        .iter()
                        .any(|f| f.metric.is_survivors() || f.metric == Metric::Blocks) =>
            {
                let survivors = findings.iter().any(|f| f.metric.is_survivors());
                let routed = !replaced && self.host.route_runtime_allocator(true);
                let sites = if survivors || routed || replaced {
                    self.locate(t, findings, &runs, policy.times, replaced)
                } else {
                    Ok(Vec::new())
                };
                if routed {
                    self.host.route_runtime_allocator(false);
                }
                sites?
            }
            _ => Vec::new(),
        };
        // Address space growing by a thread's stack a call: threads that ended unjoined.
        // Their heap growth is their thread-local storage, which the dynamic linker
        // allocates through a pointer of its own: the note below would send the user to
        // the wrong cause.
        if let Some(note) = unjoined_threads(&decision, &runs, backend::default_thread_stack()) {
            self.notes.push(note);
        } else if tracking.is_some() && sites.is_empty() && untracked_heap_leak(&decision, &runs) {
            // A leak of the heap that no tracked block explains: say why it has no site.
            self.notes.push(
                "allocation tracking saw no block that explains the heap's growth (none of the \
                 runs' blocks outlived them): it was allocated through a pointer to malloc the \
                 hooks do not rewrite (one looked up with dlsym, as ctypes and cffi's ABI mode \
                 do, or copied before the check), or by an allocator psleak does not track; \
                 valgrind --leak-check=full or memray names where"
                    .to_string(),
            );
        }
        drop(tracking);

        let (run_calls, run_seconds) = runs
            .iter()
            .fold((0u64, 0.0f64), |(c, s), r| (c + r.calls, s + r.seconds));
        let leaked = matches!(decision, Decision::Leak(_));
        let more = self.host.runs_decided(
            leaked,
            self.calls - calls_before_runs,
            run_seconds / run_calls.max(1) as f64,
        );
        if more > 0 {
            for _ in 0..more {
                self.call()?;
            }
            self.settle()?;
        }
        let calls_in_runs = self.calls - calls_before_runs;
        let resources_after = self.resources(Phase::AfterRuns)?;
        let outcome = if let Some(leaks) =
            self.leaks_after_settling(&resources_before, resources_after, calls_in_runs)?
        {
            Outcome::ResourceLeak { leaks }
        } else {
            match decision {
                Decision::Leak(findings) => Outcome::MemoryLeak { findings },
                _ => Outcome::Clean,
            }
        };
        let mut report = self.report(outcome);
        report.thresholds = thresholds(&policy, &runs);
        // The noise shown beside the thresholds: idle noise, and the churn seen in the runs.
        for m in Metric::ALL {
            let churn = runs.iter().map(|r| r.churn.get(m)).max().unwrap_or(0);
            noise.set(m, noise.get(m).max(churn));
        }
        report.runs = runs;
        report.noise = noise;
        report.enabled = policy.enabled;
        report.peak_growth = peak;
        report.sites = sites;
        Ok(report)
    }

    /// The where run, once a leak is confirmed: `times` calls with stack capture on (run
    /// A; fewer when the leak's block rate leaves [`SITE_BLOCKS`] blocks sooner, never
    /// fewer than [`MIN_LOCATE_CALLS`]), then four times `times` with capture off, at most
    /// as many as the longest run (run B, so that A's blocks that a cache or a flush would
    /// free get the chance: the leak itself is already confirmed, B only keeps a cache's
    /// blocks out of the sites),
    /// settle, and group A's survivors by stack. Both are shortened so that the leak, at
    /// the rate found, adds at most a quarter of the memory budget.
    fn locate(
        &mut self,
        tracking: &Tracking,
        findings: &[Finding],
        runs: &[Run],
        times: u64,
        replaced: bool,
    ) -> Res<Vec<Site>, H::Error> {
        let rate = findings
            .iter()
            .filter(|f| f.metric.is_bytes())
            .map(|f| f.per_call)
            .fold(1.0f64, f64::max);
        let room = (self.check.memory_budget / 4) as f64 / rate;
        let longest = runs.iter().map(|r| r.calls).max().unwrap_or(times);
        // Run A needs only enough calls to leave SITE_BLOCKS blocks at the rate found: every
        // allocation it makes, the runtime's too, pays for an unwind.
        let enough = findings
            .iter()
            .filter(|f| matches!(f.metric, Metric::NativeBlocks | Metric::Blocks) && f.per_call > 0.0)
            .map(|f| (SITE_BLOCKS / f.per_call).ceil().max(MIN_LOCATE_CALLS))
            .fold(times as f64, f64::min);
        let a = (times as f64).min(enough).min(room).max(1.0) as u64;
        let b = (longest.min(times.saturating_mul(4)) as f64)
            .min(room - a as f64)
            .max(0.0) as u64;
        let run_a = runs.len() as u32 + 1;
        self.settle()?;
        self.host.locate(true);
        // One call with the host's locator on and nothing recorded: what the locator makes
        // the runtime build once (CPython gives every code object it traces a line table)
        // is not the function's, and would otherwise show as sites of A's survivors.
        let mut result = self.call();
        tracking.set_capture(true);
        tracking.set_run(run_a);
        // Blocks that later calls replace (see `replacing`) leave no survivor: what run A's
        // blocks hold is compared halfway and at the end instead, the sites whose blocks
        // grew are the leak's, and run B, which would free them, is not made.
        let half = a / 2;
        let mut halfway = None;
        let mut made = 0;
        // A buffer grown by a share of its size when full is resized ever more rarely (an
        // array of 1.7 MB grown by a sixteenth: once in 13,000 calls): the run goes on
        // until it resized a block it did not make, within the longest run's calls and
        // RESIZE_SECONDS.
        let slot = (run_a as usize).clamp(1, crate::tracking::MAX_RUNS) - 1;
        let started = Instant::now();
        let resizing = |made: u64| {
            replaced
                && runs.last().is_some_and(|r| r.resized > 0)
                && tracking.resized()[slot] <= 0
                && made < longest
                && started.elapsed().as_secs_f64() < RESIZE_SECONDS
        };
        while (made < a || resizing(made)) && result.is_ok() {
            if replaced && made == half {
                halfway = Some(tracking.held(run_a));
            }
            result = self.call();
            made += 1;
        }
        tracking.set_capture(false);
        self.host.locate(false);
        tracking.set_run(0);
        if let Some(halfway) = halfway.filter(|_| result.is_ok() && made > half) {
            let sites = self.replaced_sites(tracking, findings, run_a, &halfway, made, half);
            let _ = backend::malloc_trim();
            return Ok(sites);
        }
        // Run B is for A's blocks that a cache holds: none when nothing points to nearly
        // all of them (see `Tracking::lost`), or when the runs' own latest scan found
        // nearly all of theirs lost (a cache would hold a share of those too; a second
        // scan cost 7 ms in the leak matrix's process, more than the calls it spared).
        let tracked: i64 = tracking.survivors().iter().map(|s| s.0).sum();
        let b = if result.is_ok()
            && (runs_mostly_lost(runs)
                || (scan_pays(b as f64 * self.seconds_per_call, tracked)
                    && self.mostly_lost(tracking, run_a, tracked)?))
        {
            0
        } else {
            b
        };
        tracking.set_run(run_a + 1);
        for _ in 0..b {
            if result.is_err() {
                break;
            }
            result = self.call();
        }
        tracking.set_run(0);
        result?;
        self.settle()?;
        let runtime = self.host.runtime_address();
        let host = &mut *self.host;
        let sites = tracking.sites(run_a, made, MAX_SITES, runtime, &mut |token| host.location(token));
        // Symbolising reads debug information into large temporary buffers; freeing them
        // raised glibc's dynamic mmap threshold and left their pages resident in the heap.
        // Give the pages back, so that the process's memory after the check is as before.
        let _ = backend::malloc_trim();
        Ok(sites)
    }

    /// The sites of blocks replaced by larger ones or resized, after run A (`run`) made
    /// `made` calls and its blocks held `halfway` after `half` of them (see `replacing`).
    fn replaced_sites(
        &mut self,
        tracking: &Tracking,
        findings: &[Finding],
        run: u32,
        halfway: &HashMap<u16, (i64, i64)>,
        made: u64,
        half: u64,
    ) -> Vec<Site> {
        let end = tracking.held(run);
        let runtime = self.host.runtime_address();
        let host = &mut *self.host;
        let mut sites = tracking.growing_sites(halfway, end, made - half, MAX_SITES, runtime, &mut |token| {
            host.location(token)
        });
        // A buffer grown by an eighth when full is resized a few times in run A, each time
        // by a step worth many calls: its site gets its share of the leak's rate, measured
        // over the runs, rather than the steps that fell in run A.
        let mut resized = tracking.resized_sites(made, MAX_SITES, runtime, &mut |token| host.location(token));
        let rate = findings
            .iter()
            .find(|f| f.metric.is_bytes())
            .map_or(0.0, |f| f.per_call);
        let total: f64 = resized.iter().map(|s| s.bytes_per_call).sum();
        if total > 0.0 && rate > 0.0 {
            for s in &mut resized {
                s.bytes_per_call = rate * s.bytes_per_call / total;
            }
        }
        sites.extend(resized);
        sites.sort_by(|a, b| b.bytes_per_call.total_cmp(&a.bytes_per_call));
        sites.truncate(MAX_SITES);
        sites
    }

    /// Whether nothing points to nine in ten or more of the blocks `run` left alive, after
    /// settling.
    fn mostly_lost(&mut self, tracking: &Tracking, run: u32, tracked: i64) -> Res<bool, H::Error> {
        self.settle()?;
        let slot = (run as usize).clamp(1, crate::tracking::MAX_RUNS) - 1;
        let alive = tracking.survivors()[slot].0;
        Ok(alive > 0 && timed_scan(tracking, tracked).is_some_and(|lost| lost[slot].0 * 10 >= alive * 9))
    }

    /// One run of `calls` calls. Samples rss and malloc's counters at checkpoints that get
    /// closer as the footprint nears the budget, and stops the run past the budget. Returns
    /// the calls made, whether the budget stopped the run, the peak footprint growth, and
    /// the largest drop of each sampled metric between two checkpoints: a leak only adds,
    /// so drops measure the function's own churn (allocator caches filling and draining,
    /// automatic garbage collection), which the engine weighs the runs against.
    fn batch(
        &mut self,
        sampler: &Sampler,
        calls: u64,
        base: Values,
        policy: &Policy,
    ) -> Res<Batch, H::Error> {
        // A budget past i64::MAX bytes is no limit (and must not wrap to a negative one).
        let budget = i64::try_from(policy.memory_budget).unwrap_or(i64::MAX);
        let mut next_checkpoint = 1;
        let mut out = Batch {
            calls,
            budget_stop: false,
            peak: 0,
            churn: Values::default(),
        };
        let mut last: Option<Values> = None;
        for done in 1..=calls {
            self.call()?;
            if done == next_checkpoint && done < calls {
                let now = sampler.quick()?;
                if let Some(last) = last {
                    for m in [Metric::Heap, Metric::Mmap, Metric::Rss] {
                        let drop = last.get(m) - now.get(m);
                        out.churn.set(m, out.churn.get(m).max(drop));
                    }
                }
                last = Some(now);
                let growth = now.minus(&base).footprint();
                out.peak = out.peak.max(growth);
                if growth > budget {
                    out.calls = done;
                    out.budget_stop = true;
                    return Ok(out);
                }
                // Next checkpoint: double the calls, but no further than halfway to where
                // the current rate would cross the budget.
                let rate = (growth.max(0) as f64 / done as f64).max(1.0);
                let room = ((budget - growth).max(0) as f64 / rate / 2.0) as u64;
                next_checkpoint = done + done.min(room).max(1);
            }
        }
        Ok(out)
    }
}

/// The latest reachability scan: seconds it took (as f64 bits; 0: none yet), blocks it
/// looked at, and the process's resident bytes then. A scan reads the process's memory,
/// so its cost grows with what is resident and with the blocks tracked.
static SCAN_SECONDS: AtomicU64 = AtomicU64::new(0);
static SCAN_BLOCKS: AtomicU64 = AtomicU64::new(0);
static SCAN_RESIDENT: AtomicU64 = AtomicU64::new(0);

/// What reading a resident byte costs a scan before any was made, seconds: 2 GB/s, about
/// half what the leak matrix's process measured (27 MB resident, 7-10 ms a scan).
const SCAN_SECONDS_PER_BYTE: f64 = 0.5e-9;

/// What a scan costs per block tracked, seconds: 150k blocks of Python objects (all
/// pointing at each other) took 270 ms with a binary search per pointer.
const SCAN_SECONDS_PER_BLOCK: f64 = 2e-6;

fn resident() -> f64 {
    backend::memory_quick().map_or(0.0, |(rss, _)| rss as f64)
}

/// Whether a reachability scan of `blocks` tracked blocks costs less than the `saved`
/// seconds of calls it may spare: the latest scan's cost, less its blocks', scaled by
/// what is resident now (a process that grew by a GiB reads a GiB more).
fn scan_pays(saved: f64, blocks: i64) -> bool {
    let last = f64::from_bits(SCAN_SECONDS.load(Ordering::Relaxed));
    let last_blocks = SCAN_BLOCKS.load(Ordering::Relaxed) as f64;
    let then = SCAN_RESIDENT.load(Ordering::Relaxed) as f64;
    let now = resident();
    let base = if last > 0.0 && then > 0.0 {
        (last - last_blocks * SCAN_SECONDS_PER_BLOCK).max(last / 4.0) * (now / then).max(0.5)
    } else {
        now * SCAN_SECONDS_PER_BYTE
    };
    saved > base.max(1e-3) + blocks.max(0) as f64 * SCAN_SECONDS_PER_BLOCK
}

/// Longest the where run goes on for a resize (see [`Driver::locate`]), seconds.
const RESIZE_SECONDS: f64 = 0.5;

/// What the report says of a leak whose runs grew the address space by about a thread's
/// default stack (`stack` bytes, if the platform keeps the stacks of threads that ended)
/// or more on every call: a joinable thread that ends keeps its stack and descriptor until
/// it is joined, and counts in no list of threads, as it no longer runs. Each such thread
/// also leaves its thread-local storage on the heap; a leak of mappings the hooks saw made
/// (an `mmap` of that size, kept) is not threads.
fn unjoined_threads(decision: &Decision, runs: &[Run], stack: Option<u64>) -> Option<String> {
    let stack = stack? as f64;
    if !matches!(decision, Decision::Leak(_)) || runs.is_empty() {
        return None;
    }
    let per_call = |r: &Run, m: Metric| r.growth.get(m) as f64 / r.calls.max(1) as f64;
    // Every run: a single thread stack's worth of mappings in one run is not a trend.
    if !runs.iter().all(|r| {
        per_call(r, Metric::Vms) >= UNJOINED_STACK_SHARE * stack
            && r.growth.get(Metric::Heap) > 0
            && per_call(r, Metric::NativeBytes) < UNJOINED_STACK_SHARE * stack / 2.0
    }) {
        return None;
    }
    let (vms, calls) = runs.iter().fold((0i64, 0u64), |(v, c), r| {
        (v + r.growth.get(Metric::Vms), c + r.calls)
    });
    let per_call = vms as f64 / calls.max(1) as f64;
    Some(format!(
        "the address space grew by {} a call, {:.1} times the {} stack a thread gets by \
         default: a thread that ends without pthread_join() or pthread_detach() (join() or \
         detach() of a std::thread) keeps its stack until it is joined, and no longer shows \
         among the process's threads",
        crate::report::format_bytes(per_call),
        per_call / stack,
        crate::report::format_bytes(stack),
    ))
}

/// Share of a thread's default stack that the address space must grow by on each call of
/// every run for [`unjoined_threads`] to name them (a stack is mapped with a guard page,
/// so each thread adds a little more than the stack).
const UNJOINED_STACK_SHARE: f64 = 0.9;

/// Whether a leak was found on the heap with no tracked survivor in any run, no block
/// resized and none replaced by a larger one: memory the hooks did not see allocated.
fn untracked_heap_leak(decision: &Decision, runs: &[Run]) -> bool {
    matches!(decision, Decision::Leak(findings)
        if findings.iter().any(|f| f.metric == Metric::Heap)
            && !findings.iter().any(|f| f.metric.is_survivors())
            && !replacing(findings, runs))
        && runs
            .iter()
            .all(|r| r.growth.get(Metric::NativeBlocks) <= 0 && r.resized <= 0)
}

/// Whether a leak is of blocks that each later call frees and replaces with a larger one (a
/// buffer copied into a larger one on every call: a string concatenated to), or resizes
/// (a buffer grown by realloc): the heap leaks, no run a later one revised kept a
/// survivor, and what the runs' blocks held when new grew from run to run, or the latest
/// runs resized blocks they did not make.
fn replacing(findings: &[Finding], runs: &[Run]) -> bool {
    let held = |r: &Run| r.held.get(Metric::NativeBytes);
    let last_two = runs.windows(2).last();
    let copied = runs
        .iter()
        .rev()
        .skip(1)
        .all(|r| r.growth.get(Metric::NativeBlocks) <= 0)
        && last_two.is_some_and(|w| held(&w[1]) > held(&w[0]) && held(&w[0]) > 0);
    // A buffer that realloc moved out of the runtime's arenas in the first run is that
    // run's survivor (array.array): the latest runs' resizing tells it all the same.
    let resized = last_two.is_some_and(|w| w[0].resized > 0 && w[1].resized > 0);
    // Grown past glibc's mmap threshold, such a buffer is a mapping of its own: its
    // growth shows in mmap and anon, not in the heap.
    let heap = findings.iter().any(|f| f.metric == Metric::Heap);
    let bytes = findings.iter().any(|f| f.metric.is_bytes());
    findings
        .iter()
        .all(|f| !f.metric.is_survivors() && f.metric != Metric::Blocks)
        && ((heap && copied) || (bytes && resized))
}

/// Whether the runs' latest reachability scan found nine in ten or more of their surviving
/// native blocks lost (none was made: no).
fn runs_mostly_lost(runs: &[Run]) -> bool {
    let lost: i64 = runs.iter().map(|r| r.lost).sum();
    let alive: i64 = runs.iter().map(|r| r.growth.get(Metric::NativeBlocks)).sum();
    lost > 0 && lost * 10 >= alive * 9
}

/// [`Tracking::lost`] of `blocks` tracked blocks, its cost noted for [`scan_pays`].
fn timed_scan(tracking: &Tracking, blocks: i64) -> Option<[(i64, i64); crate::tracking::MAX_RUNS]> {
    let started = Instant::now();
    let lost = tracking.lost();
    SCAN_SECONDS.store(started.elapsed().as_secs_f64().to_bits(), Ordering::Relaxed);
    SCAN_BLOCKS.store(blocks.max(0) as u64, Ordering::Relaxed);
    SCAN_RESIDENT.store(resident() as u64, Ordering::Relaxed);
    lost
}

/// What [`Driver::batch`] measured.
struct Batch {
    calls: u64,
    budget_stop: bool,
    peak: i64,
    churn: Values,
}

/// Resources of each kind that are more numerous in `after` than in `before`; the new ones
/// (by identity) are listed. Ordered so that the most specific kind comes first: a leaked
/// Python thread is also a native thread.
fn resource_leaks(before: &[Resource], after: &[Resource], calls: u64) -> Option<Vec<ResourceLeak>> {
    const ORDER: [ResourceKind; 6] = [
        ResourceKind::RuntimeThread,
        ResourceKind::Fd,
        ResourceKind::Handle,
        ResourceKind::HeapCreate,
        ResourceKind::NativeThread,
        ResourceKind::GcObject,
    ];
    let mut leaks = Vec::new();
    for kind in ORDER {
        let old: HashSet<&str> = before
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.id.as_str())
            .collect();
        let new: Vec<&Resource> = after.iter().filter(|r| r.kind == kind).collect();
        let count = new.len() as i64 - old.len() as i64;
        if count > 0 {
            let leaked = new
                .into_iter()
                .filter(|r| !old.contains(r.id.as_str()))
                .cloned()
                .collect();
            leaks.push(ResourceLeak {
                kind,
                count,
                calls,
                leaked,
            });
        }
    }
    (!leaks.is_empty()).then_some(leaks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Finding, LeakReason, Values};

    const STACK: u64 = 8 << 20;

    fn leak() -> Decision {
        Decision::Leak(vec![Finding {
            metric: Metric::Heap,
            per_call: 304.0,
            runs_grown: 2,
            runs_total: 2,
            reason: LeakReason::Consistent,
        }])
    }

    /// Runs of `calls` calls, each growing by `vms`, `heap` and `native` bytes a call.
    fn runs(vms: u64, heap: i64, native: i64) -> Vec<Run> {
        [200u64, 400]
            .into_iter()
            .map(|calls| {
                let mut g = Values::default();
                g.set(Metric::Vms, (vms * calls) as i64);
                g.set(Metric::Heap, heap * calls as i64);
                g.set(Metric::NativeBytes, native * calls as i64);
                Run::new(calls, g)
            })
            .collect()
    }

    #[test]
    fn a_stack_a_call_with_heap_beside_it_is_named_as_unjoined_threads() {
        let note = unjoined_threads(&leak(), &runs(STACK + 4096, 304, 0), Some(STACK)).unwrap_or_default();
        assert!(note.contains("8.0 MiB a call, 1.0 times"), "{note}");
        assert!(note.contains("pthread_join()"), "{note}");
    }

    #[test]
    fn kept_mappings_less_than_a_stack_or_no_leak_are_not() {
        // An 8 MiB mmap kept per call: the hooks saw it made.
        assert!(unjoined_threads(&leak(), &runs(STACK, 0, STACK as i64), Some(STACK)).is_none());
        // Address space alone, nothing on the heap: mappings the hooks did not see.
        assert!(unjoined_threads(&leak(), &runs(STACK, 0, 0), Some(STACK)).is_none());
        assert!(unjoined_threads(&leak(), &runs(STACK / 2, 304, 0), Some(STACK)).is_none());
        assert!(unjoined_threads(&Decision::Clean, &runs(STACK, 304, 0), Some(STACK)).is_none());
        assert!(unjoined_threads(&leak(), &runs(STACK, 304, 0), None).is_none());
    }
}
