//! The verdict engine: a pure function from measured runs to a decision.
//!
//! A *run* is a batch of calls of the function under test, measured before and after; its
//! *growth* is how much each metric rose. The engine looks at the runs so far and says what
//! to do next: run again with more calls, stop because the function is clean, or stop
//! because it leaks. It does no I/O, so it is tested with synthetic series.
//!
//! The rules, and why:
//!
//! * A run *grew* on a metric when its growth exceeds that metric's threshold: the larger of
//!   the user's tolerance and the noise floor the driver measures in-process, both between
//!   idle samples before the runs and as the largest drop of the metric between two
//!   checkpoints within a run (a leak only adds; drops are the function's own churn, e.g.
//!   allocator caches filling and draining).
//! * Batches escalate (each run twice the calls of the previous, up to 16× `times`). A leak
//!   grows in proportion to calls, so its growth keeps pace; noise and caches that have
//!   filled up do not.
//! * A metric *keeps pace* in a run when the run's growth is at least half of what the
//!   rate of the runs before it (in the same streak) predicts for this run's calls. A
//!   streak of runs that grew and kept pace, `confirm_runs` long (default 4: 3000 calls with
//!   the default `times`), is a leak, provided the streak spans at least three run sizes
//!   (growth shown to scale over a 4x range of calls) and a least-squares line through the
//!   streak's (calls, growth) points passes near the origin. A bounded cache filling over the
//!   first thousand calls breaks the streak before that; a fixed-size fluctuation fails the
//!   pace test by the third run; the slow random filling of allocator caches (glibc's
//!   tcache) cannot make a streak of equal-sized runs count, once runs reach their cap.
//! * `clean_runs` consecutive runs (default 2) in which no metric grew make the function
//!   clean. Requiring two keeps one lucky run from passing a small leak that a free
//!   elsewhere happened to hide; the confirming run has the size of the clean one.
//! * A memory budget bounds the cost: the next run is shortened so that the projected
//!   growth stays within budget, and the driver stops a run that crosses it. Growing past
//!   the budget is a leak (`LeakReason::Budget`): a function that retains more than the
//!   budget is reported, whatever it would have done later.
//! * A byte-exact metric growing by less than one malloc chunk (32 B) in 16 calls is not
//!   confirmed early: that is the scale of glibc's tcache drift. It is reported only if it
//!   is still growing in proportion when `retries` runs are used up.
//! * When `retries` runs are used up, a metric that grew and kept pace in the last two runs
//!   or more, over three run sizes, is a leak; otherwise the function is clean (growth that
//!   does not scale with calls).

use serde::Serialize;

/// What is measured. Byte metrics come from the allocator and the kernel; `Blocks` counts
/// allocations made by a language runtime (Python: `sys.getallocatedblocks()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// malloc heap in use (bytes), all arenas: byte-exact.
    Heap,
    /// malloc's own mmapped chunks (bytes): byte-exact.
    Mmap,
    /// Private resident memory (bytes): page-granular. Sampled as the kernel's `RssAnon`
    /// (resident anonymous memory), whose growth is USS growth for the anonymous memory that
    /// leaks are made of, at a tenth of the cost of reading USS itself.
    Uss,
    /// Resident set size (bytes): page-granular.
    Rss,
    /// Virtual memory size (bytes): catches untouched `mmap` leaks.
    Vms,
    /// Allocated blocks of a language runtime (a count, not bytes).
    Blocks,
}

/// glibc's smallest malloc chunk on 64-bit (malloc.c: MINSIZE), bytes.
const MIN_CHUNK: f64 = 32.0;

/// Number of metrics.
pub const METRIC_COUNT: usize = 6;

impl Metric {
    /// All metrics, in report order.
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::Heap,
        Metric::Mmap,
        Metric::Uss,
        Metric::Rss,
        Metric::Vms,
        Metric::Blocks,
    ];

    /// The name used in tolerances and reports (`"heap"`, `"mmap"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Heap => "heap",
            Metric::Mmap => "mmap",
            Metric::Uss => "uss",
            Metric::Rss => "rss",
            Metric::Vms => "vms",
            Metric::Blocks => "blocks",
        }
    }

    /// The metric with that name.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the metric is in bytes (all but `Blocks`).
    pub fn is_bytes(self) -> bool {
        self != Metric::Blocks
    }

    /// 0 for the most precise metrics: allocator counters are byte-exact, block counts exact,
    /// kernel memory page-granular and disturbed by the allocator's own caching.
    pub fn precision_rank(self) -> u8 {
        match self {
            Metric::Heap | Metric::Mmap => 0,
            Metric::Blocks => 1,
            Metric::Uss | Metric::Rss => 2,
            Metric::Vms => 3,
        }
    }

    /// Position in a [`Values`] array.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One value per metric, indexed by [`Metric::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Values(pub [i64; METRIC_COUNT]);

impl Values {
    /// The value of one metric.
    pub fn get(&self, m: Metric) -> i64 {
        self.0[m.index()]
    }

    /// Sets the value of one metric.
    pub fn set(&mut self, m: Metric, v: i64) {
        self.0[m.index()] = v;
    }

    /// `self - other`, metric by metric.
    pub fn minus(&self, other: &Values) -> Values {
        let mut out = Values::default();
        for m in Metric::ALL {
            out.set(m, self.get(m).saturating_sub(other.get(m)));
        }
        out
    }

    /// Growth of the process's memory footprint: the larger of resident growth and malloc's
    /// in-use growth. This is what the memory budget limits.
    pub fn footprint(&self) -> i64 {
        self.get(Metric::Rss)
            .max(self.get(Metric::Heap).saturating_add(self.get(Metric::Mmap)))
    }
}

/// One measured batch of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Calls made in the run.
    pub calls: u64,
    /// Growth of each metric over the run.
    pub growth: Values,
    /// The driver stopped the run early because the process grew past the memory budget.
    pub budget_stop: bool,
}

/// The engine's settings, derived from the user's knobs and the measured noise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Calls in the first run.
    pub times: u64,
    /// Most runs.
    pub retries: u32,
    /// Growth above which a run counts as grown, per metric.
    pub thresholds: Values,
    /// Which metrics are judged.
    pub enabled: [bool; METRIC_COUNT],
    /// Consecutive grown runs, keeping pace with calls, that make a leak.
    pub confirm_runs: u32,
    /// Consecutive runs without growth that make the function clean.
    pub clean_runs: u32,
    /// Most the process may grow (bytes) during the runs.
    pub memory_budget: u64,
}

impl Policy {
    /// Default policy for the given first-run size, run count, thresholds and budget.
    pub fn new(times: u64, retries: u32, thresholds: Values, memory_budget: u64) -> Policy {
        Policy {
            times: times.max(1),
            retries: retries.max(1),
            thresholds,
            enabled: [true; METRIC_COUNT],
            confirm_runs: 4,
            clean_runs: 2,
            memory_budget,
        }
    }

    fn grew(&self, run: &Run, m: Metric) -> bool {
        self.enabled[m.index()] && run.growth.get(m) > self.thresholds.get(m)
    }

    fn any_grew(&self, run: &Run) -> bool {
        Metric::ALL.into_iter().any(|m| self.grew(run, m))
    }
}

/// Why a leak was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakReason {
    /// Grew in `confirm_runs` consecutive runs, in proportion to calls.
    Consistent,
    /// Grew past the memory budget.
    Budget,
    /// Still growing in proportion to calls when `retries` ran out.
    Persistent,
}

/// A leak found on one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The metric that leaks.
    pub metric: Metric,
    /// Estimated growth per call over the runs of the streak (bytes, or blocks).
    pub per_call: f64,
    /// Runs that grew on this metric.
    pub runs_grown: u32,
    /// Runs made.
    pub runs_total: u32,
    /// Why it counts as a leak.
    pub reason: LeakReason,
}

/// What to do after the runs so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Decision {
    /// Make another run of that many calls.
    Continue {
        /// Calls in the next run.
        calls: u64,
    },
    /// The function does not leak.
    Clean,
    /// The function leaks; the first finding is the strongest.
    Leak(Vec<Finding>),
}

/// A metric's current streak: runs that grew and kept pace, and their totals.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    len: u32,
    growth: i64,
    calls: u64,
    /// Distinct run sizes in the streak: growth only proves it scales with calls when the
    /// calls changed.
    sizes: u32,
    last_calls: u64,
}

fn streak(policy: &Policy, runs: &[Run], m: Metric) -> Streak {
    let mut s = Streak::default();
    for run in runs {
        if !policy.grew(run, m) {
            s = Streak::default();
            continue;
        }
        let g = run.growth.get(m);
        let keeps_pace = s.len == 0 || {
            // Growth predicted for this run from the streak's rate so far.
            let predicted = s.growth as f64 / s.calls.max(1) as f64 * run.calls as f64;
            g as f64 >= 0.5 * predicted
        };
        if keeps_pace {
            s = Streak {
                len: s.len + 1,
                growth: s.growth + g,
                calls: s.calls + run.calls,
                sizes: s.sizes + u32::from(run.calls != s.last_calls),
                last_calls: run.calls,
            };
        } else {
            s = Streak {
                len: 1,
                growth: g,
                calls: run.calls,
                sizes: 1,
                last_calls: run.calls,
            };
        }
    }
    s
}

/// Whether the growth of `m` over `runs` (of at least two sizes) is proportional to the
/// calls: the least-squares line `growth = offset + rate * calls` must rise (rate > 0) and
/// pass near the origin (offset at most a quarter of the growth the rate gives an average run). A
/// leak's growth is proportional to its calls; a cache that fills at random (glibc's
/// tcache, a little more each run whatever its length) gives a large offset and a shallow
/// slope.
fn proportional(runs: &[Run], m: Metric) -> bool {
    let n = runs.len() as f64;
    let mean_calls = runs.iter().map(|r| r.calls as f64).sum::<f64>() / n;
    let mean_growth = runs.iter().map(|r| r.growth.get(m) as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for r in runs {
        let dc = r.calls as f64 - mean_calls;
        cov += dc * (r.growth.get(m) as f64 - mean_growth);
        var += dc * dc;
    }
    if var == 0.0 {
        return false;
    }
    let rate = cov / var;
    let offset = mean_growth - rate * mean_calls;
    rate > 0.0 && offset <= 0.25 * rate * mean_calls
}

fn finding(policy: &Policy, runs: &[Run], m: Metric, s: Streak, reason: LeakReason) -> Finding {
    Finding {
        metric: m,
        per_call: s.growth as f64 / s.calls.max(1) as f64,
        runs_grown: runs.iter().filter(|r| policy.grew(r, m)).count() as u32,
        runs_total: runs.len() as u32,
        reason,
    }
}

/// Findings for every metric whose streak satisfies `min_len`, most precise first: the
/// byte-exact allocator counters, then the exact block count, then page-granular memory.
fn findings(policy: &Policy, runs: &[Run], min_len: u32, reason: LeakReason) -> Vec<Finding> {
    let mut out: Vec<(Streak, Finding)> = Metric::ALL
        .into_iter()
        .filter_map(|m| {
            let s = streak(policy, runs, m);
            // A streak of equal-sized runs cannot tell a leak from allocator caches that
            // keep filling a little at random (glibc's tcache holds up to 7 chunks of each
            // size per thread, and counts them as in use): the calls must have changed.
            let tail = &runs[runs.len() - s.len as usize..];
            let scaled = reason == LeakReason::Budget
                || (s.sizes >= policy.confirm_runs.min(policy.retries).min(3)
                    && (s.sizes < 2 || proportional(tail, m)));
            // Less than a malloc chunk (32 B) in 16 calls is the scale at which glibc's
            // tcache drifts as it fills at random: such a rate needs every run to show it.
            let rate = s.growth as f64 / s.calls.max(1) as f64;
            let tiny = m.precision_rank() == 0 && rate < MIN_CHUNK / 16.0 && reason == LeakReason::Consistent;
            let scaled = scaled && !tiny;
            (s.len >= min_len && s.len > 0 && scaled).then(|| (s, finding(policy, runs, m, s, reason)))
        })
        .collect();
    out.sort_by_key(|(s, f)| (f.metric.precision_rank(), std::cmp::Reverse(s.growth)));
    out.into_iter().map(|(_, f)| f).collect()
}

/// Decides what to do after `runs`. With no runs, asks for the first one.
pub fn decide(policy: &Policy, runs: &[Run]) -> Decision {
    let Some(last) = runs.last() else {
        return Decision::Continue { calls: policy.times };
    };
    let footprint: i64 = runs.iter().map(|r| r.growth.footprint()).sum();
    let budget = policy.memory_budget as i64;

    if last.budget_stop || footprint > budget {
        let mut found = findings(policy, runs, 1, LeakReason::Budget);
        found.retain(|f| f.metric.is_bytes());
        if !found.is_empty() {
            return Decision::Leak(found);
        }
    }

    let clean_tail = runs.iter().rev().take_while(|r| !policy.any_grew(r)).count() as u32;
    if clean_tail >= policy.clean_runs.min(policy.retries) {
        return Decision::Clean;
    }

    let confirm = policy.confirm_runs.min(policy.retries).max(1);
    let found = findings(policy, runs, confirm, LeakReason::Consistent);
    if !found.is_empty() {
        return Decision::Leak(found);
    }

    if runs.len() as u32 >= policy.retries {
        let found = findings(policy, runs, 2.min(confirm), LeakReason::Persistent);
        return if found.is_empty() {
            Decision::Clean
        } else {
            Decision::Leak(found)
        };
    }

    let calls = next_run_calls(policy, runs, footprint);
    if calls
        < policy
            .times
            .min(runs.iter().map(|r| r.calls).min().unwrap_or(policy.times))
    {
        // The budget leaves room for a run shorter than any so far: too short to show growth
        // above the thresholds, so it could only pass a leak. The growth so far decides.
        let mut found = findings(policy, runs, 1, LeakReason::Budget);
        found.retain(|f| f.metric.is_bytes());
        if !found.is_empty() {
            return Decision::Leak(found);
        }
    }
    Decision::Continue { calls }
}

fn next_run_calls(policy: &Policy, runs: &[Run], footprint: i64) -> u64 {
    let last = runs.last().map_or(policy.times, |r| r.calls.max(1));
    let cap = policy.times.saturating_mul(16).max(policy.times);
    // After a run without growth, the next one confirms it at the same size: doubling is
    // for telling growth that scales from growth that does not, and there was none.
    let last_clean = runs.last().is_some_and(|r| !policy.any_grew(r));
    let wanted = if last_clean {
        last
    } else {
        last.saturating_mul(2).min(cap).max(policy.times.min(last))
    };
    // Shorten the run so that the projected growth stays within the budget.
    let calls_so_far: u64 = runs.iter().map(|r| r.calls).sum();
    if footprint <= 0 || calls_so_far == 0 {
        return wanted;
    }
    let rate = footprint as f64 / calls_so_far as f64;
    let room = (policy.memory_budget as i64 - footprint).max(0) as f64;
    let fits = (room / rate).floor() as u64;
    wanted.min(fits.max(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    const MIB: i64 = 1 << 20;

    fn policy() -> Policy {
        let mut t = Values::default();
        // Page-granular metrics: a page of noise.
        for m in [Metric::Uss, Metric::Rss, Metric::Vms] {
            t.set(m, 4096);
        }
        Policy::new(200, 10, t, 64 << 20)
    }

    /// Drives the engine with a synthetic function: `growth(calls_before, calls)` says how
    /// much the heap grows over a run of `calls` calls starting after `calls_before` calls.
    fn simulate(policy: &Policy, mut growth: impl FnMut(u64, u64) -> (Metric, i64)) -> (Decision, Vec<Run>) {
        let mut runs = Vec::new();
        let mut done = 0;
        loop {
            match decide(policy, &runs) {
                Decision::Continue { calls } => {
                    let (m, g) = growth(done, calls);
                    let mut v = Values::default();
                    v.set(m, g);
                    let budget_stop = v.footprint()
                        + runs.iter().map(|r: &Run| r.growth.footprint()).sum::<i64>()
                        > policy.memory_budget as i64;
                    runs.push(Run {
                        calls,
                        growth: v,
                        budget_stop,
                    });
                    done += calls;
                    assert!(runs.len() <= policy.retries as usize, "engine exceeded retries");
                }
                d => return (d, runs),
            }
        }
    }

    fn leak_metric(d: &Decision) -> Option<Metric> {
        match d {
            Decision::Leak(f) => Some(f[0].metric),
            _ => None,
        }
    }

    #[test]
    fn steady_small_leak_is_found() {
        // malloc(8) uses a 32-byte chunk.
        let (d, runs) = simulate(&policy(), |_, n| (Metric::Heap, 32 * n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
        assert_eq!(runs.len(), 4);
        if let Decision::Leak(f) = d {
            assert!((f[0].per_call - 32.0).abs() < 0.01);
            assert_eq!(f[0].reason, LeakReason::Consistent);
        }
    }

    #[test]
    fn intermittent_leak_is_found() {
        // 64 bytes (80-byte chunk) on one call in ten.
        let (d, _) = simulate(&policy(), |before, n| {
            let leaks = (before + n) / 10 - before / 10;
            (Metric::Heap, 80 * leaks as i64)
        });
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
    }

    #[test]
    fn rare_random_leak_is_found() {
        // One call in 50, at random positions: a xorshift makes it reproducible.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let (d, _) = simulate(&policy(), |_, n| {
            let mut leaks = 0;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                leaks += i64::from(x % 50 == 0);
            }
            (Metric::Heap, 48 * leaks)
        });
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
    }

    #[test]
    fn bounded_cache_filling_over_first_thousand_calls_is_clean() {
        let cap = 1000;
        let (d, _) = simulate(&policy(), |before, n| {
            let filled = (before + n).min(cap) - before.min(cap);
            (Metric::Heap, 144 * filled as i64)
        });
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn cache_filling_at_decreasing_rate_is_clean() {
        // An LRU cache of 2000 entries with random keys fills ever more slowly.
        let (d, _) = simulate(&policy(), |before, n| {
            let f = |c: u64| 2000.0 * (1.0 - (-(c as f64) / 800.0).exp());
            (Metric::Heap, ((f(before + n) - f(before)) * 100.0) as i64)
        });
        // Once each run adds under one entry the runs are clean.
        assert!(matches!(d, Decision::Clean), "{d:?}");
    }

    #[test]
    fn one_off_spikes_and_noise_are_clean() {
        let mut i = 0;
        let (d, _) = simulate(&policy(), |_, _| {
            i += 1;
            // A spike of a page in the first run, then +-1 page noise on rss.
            let g = match i {
                1 => 4096 * 3,
                _ if i % 2 == 0 => 4096,
                _ => -4096,
            };
            (Metric::Rss, g)
        });
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn irregular_drift_in_capped_runs_is_clean() {
        // glibc's tcache filling at random under PYTHONMALLOC=malloc: runs 1-4 show a cache
        // filling, then equal-sized runs grow by a little, irregularly (measured on CPython
        // 3.11 with re.match on 700 patterns).
        let growth = [
            97_800, 141_100, 19_500, 6_400, 13_500, 1_800, 4_600, 576, 4_000, 1_600,
        ];
        let mut i = 0;
        let (d, _) = simulate(&policy(), |_, _| {
            i += 1;
            (Metric::Heap, growth[i - 1])
        });
        assert_eq!(d, Decision::Clean);
        let growth = [2_300, 0, 1_400, 1_100, 2_200, 1_600, 752, 992, 2_800, 1_100];
        let mut i = 0;
        let (d, _) = simulate(&policy(), |_, _| {
            i += 1;
            (Metric::Heap, growth[i - 1])
        });
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn drift_kept_up_from_the_last_doubling_is_clean() {
        // Grows ~2 KiB a run from run 4 (1600 calls) on: equal-sized runs after that, so
        // the streak spans two sizes only.
        let mut i = 0;
        let (d, runs) = simulate(&policy(), |_, _| {
            i += 1;
            (Metric::Heap, if i < 4 { 0 } else { 2_000 + (i as i64 % 3) * 300 })
        });
        assert_eq!(d, Decision::Clean, "{runs:?}");
    }

    #[test]
    fn small_leak_under_allocator_noise_is_found() {
        // 1 leak of 32 B in 10 calls (3.2 B/call) under +-2 KiB of noise per run.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let (d, _) = simulate(&policy(), |before, n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 4096) as i64 - 2048;
            let leaks = (before + n) / 10 - before / 10;
            (Metric::Heap, (32 * leaks as i64 + noise).max(0))
        });
        assert_eq!(leak_metric(&d), Some(Metric::Heap), "{d:?}");
    }

    #[test]
    fn slow_random_cache_filling_is_clean() {
        // Measured on CPython 3.11 under PYTHONMALLOC=malloc, strings of varying sizes: the
        // tcache fills a little more each run, whatever the run's length.
        for growth in [
            [5_400, 0, 864, 480, 1_600, 1_900, 1_200, 1_500, 1_300, 1_700],
            [2_300, 1_600, 448, 864, 928, 1_400, 1_300, 1_100, 1_600, 1_200],
        ] {
            let mut i = 0;
            let (d, runs) = simulate(&policy(), |_, _| {
                i += 1;
                (Metric::Heap, growth[i - 1])
            });
            assert_eq!(d, Decision::Clean, "{runs:?}");
        }
    }

    #[test]
    fn proportional_growth_with_an_offset_is_still_a_leak() {
        // 3.2 B/call plus 300 B of noise a run.
        let (d, _) = simulate(&policy(), |_, n| (Metric::Heap, 300 + (32 * n / 10) as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
    }

    #[test]
    fn tiny_steady_leak_is_found_when_retries_run_out() {
        // One 32-byte chunk every 32 calls: 1 B/call, below the early-confirmation scale.
        let (d, runs) = simulate(&policy(), |before, n| {
            let leaks = (before + n) / 32 - before / 32;
            (Metric::Heap, 32 * leaks as i64)
        });
        assert_eq!(leak_metric(&d), Some(Metric::Heap), "{runs:?}");
        if let Decision::Leak(f) = &d {
            assert_eq!(f[0].reason, LeakReason::Persistent);
        }
    }

    #[test]
    fn large_leak_stops_at_budget() {
        let (d, runs) = simulate(&policy(), |_, n| (Metric::Mmap, MIB * n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Mmap));
        if let Decision::Leak(f) = &d {
            assert_eq!(f[0].reason, LeakReason::Budget);
        }
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn leak_that_fills_the_budget_between_runs_is_found() {
        // 64 KiB a call, page-granular, with the page floor: the third run is shortened to
        // fit the budget and the next would be a call or two.
        let mut p = policy();
        for m in [Metric::Uss, Metric::Rss, Metric::Vms] {
            p.thresholds.set(m, 65536);
        }
        let (d, runs) = simulate(&p, |_, n| (Metric::Uss, 65536 * n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Uss), "{runs:?}");
        assert!(runs.iter().all(|r| r.calls >= 200), "{runs:?}");
    }

    #[test]
    fn medium_leak_is_confirmed_within_budget() {
        let (d, runs) = simulate(&policy(), |_, n| (Metric::Heap, 10_000 * n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
        let total: i64 = runs.iter().map(|r| r.growth.footprint()).sum();
        assert!(total <= 64 * MIB + 10_000, "grew {total}");
    }

    #[test]
    fn clean_function_needs_two_runs() {
        let (d, runs) = simulate(&policy(), |_, _| (Metric::Heap, 0));
        assert_eq!(d, Decision::Clean);
        assert_eq!(runs.iter().map(|r| r.calls).collect::<Vec<_>>(), vec![200, 200]);
    }

    #[test]
    fn tolerance_hides_growth_below_it() {
        let mut p = policy();
        p.thresholds.set(Metric::Heap, 1_000_000);
        let (d, _) = simulate(&p, |_, n| (Metric::Heap, n as i64));
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn single_retry_judges_one_run() {
        let mut p = policy();
        p.retries = 1;
        let (d, runs) = simulate(&p, |_, n| (Metric::Heap, 32 * n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Heap));
        assert_eq!(runs.len(), 1);
        let (d, _) = simulate(&p, |_, _| (Metric::Heap, 0));
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn disabled_metric_is_ignored() {
        let mut p = policy();
        p.enabled[Metric::Vms.index()] = false;
        let (d, _) = simulate(&p, |_, n| (Metric::Vms, 65536 * n as i64));
        assert_eq!(d, Decision::Clean);
    }

    #[test]
    fn blocks_leak_is_found() {
        let (d, _) = simulate(&policy(), |_, n| (Metric::Blocks, n as i64));
        assert_eq!(leak_metric(&d), Some(Metric::Blocks));
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        assert_eq!(Metric::from_name("x"), None);
    }
}
