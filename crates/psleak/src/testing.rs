//! The Rust test API: check a closure, get a `Result`, or assert.

use crate::check::{CheckError, Host, LeakCheck};
use crate::error::Error;
use crate::report::Report;

/// Why [`LeakCheck::run`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LeakError {
    /// The function leaks; the report says what and how much.
    Leak(Box<Report>),
    /// A probe failed, so no verdict was reached.
    Probe(Error),
}

impl std::fmt::Display for LeakError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeakError::Leak(r) => write!(f, "{}", r.to_text()),
            LeakError::Probe(e) => write!(f, "leak check failed: {e}"),
        }
    }
}

impl std::error::Error for LeakError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeakError::Probe(e) => Some(e),
            LeakError::Leak(_) => None,
        }
    }
}

struct ClosureHost<F>(F);

impl<F: FnMut()> Host for ClosureHost<F> {
    type Error = std::convert::Infallible;

    fn call(&mut self) -> Result<(), Self::Error> {
        (self.0)();
        Ok(())
    }
}

impl LeakCheck {
    /// Checks a closure: calls it many times and returns the clean report, or
    /// [`LeakError::Leak`] with the report of what leaked.
    pub fn run<F: FnMut()>(&self, f: F) -> Result<Report, LeakError> {
        let mut host = ClosureHost(f);
        match self.run_host(&mut host) {
            Ok(report) if report.is_clean() => Ok(report),
            Ok(report) => Err(LeakError::Leak(Box::new(report))),
            Err(CheckError::Probe(e)) => Err(LeakError::Probe(e)),
            Err(CheckError::Host(never)) => match never {},
        }
    }
}

/// Panics with the full report when `f` leaks under the default [`LeakCheck`]. For tests.
///
/// ```no_run
/// psleak::assert_no_leak(|| {
///     let v: Vec<u8> = Vec::with_capacity(64);
///     drop(v);
/// });
/// ```
#[track_caller]
pub fn assert_no_leak<F: FnMut()>(f: F) {
    if let Err(e) = LeakCheck::new().run(f) {
        panic!("{e}");
    }
}
