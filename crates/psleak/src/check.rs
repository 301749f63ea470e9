//! The public face of a check: the [`LeakCheck`] builder and its knobs, [`Checkers`], and
//! the [`Host`] trait through which a front end lends its function and runtime. Every front
//! end (the Rust API, the Python binding, the pytest plugin and the CLI through it) goes
//! through [`LeakCheck::run_host`], so they all reach the same verdict for the same
//! measurements. The measuring loop is in `driver.rs`, the rules in `verdict.rs`.

use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::report::{Report, Resource};
use crate::tracking::Frame;
use crate::verdict::{Metric, Values, METRIC_COUNT};

/// Which checks run. Front ends may add their own resource kinds through
/// [`Host::resources`] (Python adds Python threads and gc garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkers {
    /// Memory growth over many calls (malloc statistics, process memory, runtime blocks).
    pub memory: bool,
    /// File descriptors left open by one call (and by the runs).
    pub fds: bool,
    /// Native threads left running by one call (and by the runs).
    pub threads: bool,
    /// Handles and `HeapCreate` heaps left open by one call (and by the runs). Windows;
    /// elsewhere there are none to check.
    pub handles: bool,
}

impl Default for Checkers {
    fn default() -> Self {
        Checkers {
            memory: true,
            fds: true,
            threads: true,
            handles: true,
        }
    }
}

impl Checkers {
    /// All checks on.
    pub fn all() -> Self {
        Checkers::default()
    }

    /// All checks off; turn on what you need with the fields.
    pub fn none() -> Self {
        Checkers {
            memory: false,
            fds: false,
            threads: false,
            handles: false,
        }
    }
}

/// When [`Host::resources`] is asked for the current resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the single call of the resource check.
    BeforeCall,
    /// After that call.
    AfterCall,
    /// Before the memory runs.
    BeforeRuns,
    /// After the memory runs.
    AfterRuns,
    /// While a seeming leak is given time to go away: only resources that can vanish on
    /// their own (threads finishing) are asked for again; the rest keep their first answer.
    Recheck,
}

/// Where a check is, for progress displays.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Progress {
    /// 1-based index of the run just finished.
    pub run: usize,
    /// Most runs the check may make.
    pub max_runs: u32,
    /// Calls in the run just finished.
    pub calls: u64,
    /// Calls so far, warm-up included.
    pub total_calls: u64,
    /// Growth of each metric since the runs began.
    pub growth: Values,
}

/// What the driver needs from a front end: a way to call the function, and optionally a
/// way to settle the runtime before a precise measurement, a runtime block counter and
/// runtime resources.
pub trait Host {
    /// What a failing call returns; the check stops and hands it back.
    type Error;

    /// Calls the function under test once.
    fn call(&mut self) -> std::result::Result<(), Self::Error>;

    /// Brings the runtime to a quiet state before a precise sample (Python: `gc.collect()`,
    /// the user's trim callback). The driver trims malloc itself afterwards.
    fn settle(&mut self) -> std::result::Result<(), Self::Error> {
        Ok(())
    }

    /// The runtime's count of allocated blocks ([`Metric::Blocks`]), if it has one.
    fn blocks(&mut self) -> Option<i64> {
        None
    }

    /// The sum of the reference counts of the objects the function holds (its arguments,
    /// its `self`, the function itself: [`Metric::Refs`]), if the runtime counts references.
    /// Sampled with the other metrics, after [`Host::settle`], never during the calls.
    fn refs(&mut self) -> Option<i64> {
        None
    }

    /// The memory runs are decided: `leaked` when they found a leak; `calls` were made since
    /// the runs began, at about `seconds_per_call` each (their sampling included). Called
    /// once, before [`Host::resources`] is asked for [`Phase::AfterRuns`]. Returns how many
    /// more calls to make first, counted with the runs' (the resources are compared across
    /// all of them). A host that compares a snapshot of its own across the runs (Python:
    /// the reference-count census) may want it to span more calls than cheap runs made,
    /// and may skip its second snapshot when a leak was found.
    fn runs_decided(&mut self, _leaked: bool, _calls: u64, _seconds_per_call: f64) -> u64 {
        0
    }

    /// Appends the runtime's own resources (threads, gc garbage) to `out`.
    fn resources(&mut self, _phase: Phase, _out: &mut Vec<Resource>) -> std::result::Result<(), Self::Error> {
        Ok(())
    }

    /// Called after each run.
    fn progress(&mut self, _progress: &Progress) {}

    /// Waits while a seeming resource leak is given time to go away. A host whose threads
    /// need a lock to finish (Python: the GIL) releases it here.
    fn pause(&mut self, duration: std::time::Duration) {
        std::thread::sleep(duration);
    }

    /// The where run (stack capture, after a leak is confirmed) starts (`true`) or ends. A
    /// host that can say where its runtime is when native code allocates (Python: the line
    /// calling into the extension) starts telling it through
    /// [`crate::set_host_location`] here, and stops when called with `false`.
    fn locate(&mut self, _on: bool) {}

    /// The where run begins (`true`) or has ended (`false`, on every way out of it): a host
    /// whose runtime serves its objects from arenas of its own (CPython's pymalloc), which
    /// the allocation hooks never see, routes that allocator through the tracker meanwhile
    /// ([`crate::route_runtime_allocator`]), so that a leaked object's site names the
    /// native code that made it. Returns whether it did (`false`: nothing to route).
    fn route_runtime_allocator(&mut self, _on: bool) -> bool {
        false
    }

    /// The runtime frame for a token the host passed to [`crate::set_host_location`].
    fn location(&mut self, _token: u64) -> Option<Frame> {
        None
    }

    /// An address inside the runtime's own shared object or program (Python: the
    /// interpreter's). Native frames of that object past the code under test are the
    /// runtime's machinery (its eval loop), left out of allocation sites; its `mmap` calls
    /// are its allocator's arenas (pymalloc's), not counted by allocation tracking (its
    /// objects are counted by [`Host::blocks`]).
    fn runtime_address(&self) -> Option<usize> {
        None
    }
}

/// Why a check could not reach a verdict.
#[derive(Debug)]
pub enum CheckError<E> {
    /// A probe failed.
    Probe(Error),
    /// The host (the function under test, usually) failed.
    Host(E),
}

impl<E> From<Error> for CheckError<E> {
    fn from(e: Error) -> Self {
        CheckError::Probe(e)
    }
}

/// Default memory budget: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;

/// A configured leak check. Build with [`LeakCheck::new`], adjust with the builder methods,
/// then [`LeakCheck::run`] (Rust closures) or [`LeakCheck::run_host`] (front ends).
#[derive(Debug, Clone)]
pub struct LeakCheck {
    pub(crate) name: String,
    pub(crate) warmup: u64,
    pub(crate) times: u64,
    /// `times` was set by the user ([`LeakCheck::times`]): never shortened for a slow
    /// function (see [`LeakCheck::times`]).
    pub(crate) times_chosen: bool,
    /// `warmup` was set by the user ([`LeakCheck::warmup`]): made in full.
    pub(crate) warmup_chosen: bool,
    pub(crate) retries: u32,
    pub(crate) tolerance: [u64; METRIC_COUNT],
    pub(crate) memory_budget: u64,
    pub(crate) checkers: Checkers,
    pub(crate) track_native: bool,
}

impl Default for LeakCheck {
    fn default() -> Self {
        LeakCheck::new()
    }
}

impl LeakCheck {
    /// The defaults: 10 warm-up calls, first run of 200 calls, at most 10 runs, no
    /// tolerance, 64 MiB memory budget, all checkers, native allocations tracked.
    pub fn new() -> LeakCheck {
        LeakCheck {
            name: "function".into(),
            warmup: 10,
            times: 200,
            times_chosen: false,
            warmup_chosen: false,
            retries: 10,
            tolerance: [0; METRIC_COUNT],
            memory_budget: DEFAULT_MEMORY_BUDGET,
            checkers: Checkers::default(),
            track_native: true,
        }
    }

    /// The name shown in reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Calls made before measuring, so that lazy initialisation is not counted.
    ///
    /// Left at its default (10), the warm-up of a slow function ends once it has made 3
    /// calls and spent a tenth of a second after the first one. A value set here is made
    /// in full.
    pub fn warmup(mut self, calls: u64) -> Self {
        self.warmup = calls;
        self.warmup_chosen = true;
        self
    }

    /// Calls in the first run (later runs double, up to 16×). At least 1.
    ///
    /// Left at its default (200), it is shortened for a slow function: when the warm-up
    /// calls say that 200 calls would take more than half a second, the first run makes as
    /// many calls as fit in half a second, and at least 10 (the report says so). A steady leak shows
    /// in every run whatever its length; a leak on one call in hundreds needs the calls,
    /// so set `times` to keep them: a value set here is never shortened.
    pub fn times(mut self, calls: u64) -> Self {
        self.times = calls;
        self.times_chosen = true;
        self
    }

    /// Most runs. At least 1.
    pub fn retries(mut self, runs: u32) -> Self {
        self.retries = runs;
        self
    }

    /// Growth per run tolerated on every byte metric, and on the tracked survivors' count
    /// the blocks that many bytes make at glibc's smallest chunk (32 B). A runtime's counts
    /// ([`Metric::Blocks`], [`Metric::Refs`]) keep their own tolerance
    /// ([`LeakCheck::tolerance_for`]): a number of bytes says nothing of how many objects
    /// may leak (psleak 0.1.6 applies it to byte metrics only, too).
    pub fn tolerance(mut self, amount: u64) -> Self {
        for m in Metric::ALL.into_iter().filter(|m| m.is_bytes()) {
            self.tolerance[m.index()] = amount;
        }
        self.tolerance[Metric::NativeBlocks.index()] = amount / 32;
        self
    }

    /// Growth per run tolerated on one metric.
    pub fn tolerance_for(mut self, metric: Metric, amount: u64) -> Self {
        self.tolerance[metric.index()] = amount;
        self
    }

    /// Most the process may grow while the check runs (bytes). A function that grows it
    /// further is reported as leaking. At least 1 MiB.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Which checks run.
    pub fn checkers(mut self, checkers: Checkers) -> Self {
        self.checkers = checkers;
        self
    }

    /// Whether native allocations are tracked exactly during the memory runs (default: on,
    /// where the platform allows; see the crate docs): every block the runs allocate and
    /// leave alive is counted ([`Metric::NativeBlocks`], [`Metric::NativeBytes`]), and a
    /// confirmed leak is rerun with stack capture so that the report says where it
    /// allocates. Off: the check judges from the allocator's and the kernel's counters.
    pub fn track_native(mut self, on: bool) -> Self {
        self.track_native = on;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.times < 1 {
            return Err(Error::invalid(
                "times",
                format!("must be >= 1 (got {})", self.times),
            ));
        }
        if self.retries < 1 {
            return Err(Error::invalid(
                "retries",
                format!("must be >= 1 (got {})", self.retries),
            ));
        }
        if self.memory_budget < (1 << 20) {
            return Err(Error::invalid(
                "memory_budget",
                format!("must be >= 1048576 bytes (got {})", self.memory_budget),
            ));
        }
        Ok(())
    }

    /// Runs the check on a front end's host. Returns the report, clean or not; an `Err` means
    /// no verdict could be reached.
    pub fn run_host<H: Host>(&self, host: &mut H) -> std::result::Result<Report, CheckError<H::Error>> {
        self.validate()?;
        Driver::new(self, host).run()
    }
}
