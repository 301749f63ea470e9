//! The one error type of the core. Front ends convert it once (the Python binding maps it to
//! `psleak.ProbeError`).

use std::fmt;

/// Everything that can go wrong while probing the process or configuring a check.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The probe does not exist on this platform or allocator (e.g. malloc statistics on musl).
    /// `what` names the probe, `reason` says what is missing and what to do.
    Unavailable {
        /// The probe that is missing, e.g. `"malloc statistics"`.
        what: &'static str,
        /// Why, e.g. `"neither mallinfo2 nor mallinfo found: not glibc"`.
        reason: String,
    },
    /// Reading a kernel interface failed (e.g. `/proc` not mounted).
    Io {
        /// The file or call that failed, e.g. `"/proc/self/statm"`.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A kernel interface answered in a format this version does not understand.
    Parse {
        /// The file that could not be parsed.
        path: &'static str,
        /// What was unexpected.
        detail: String,
    },
    /// A check was configured with a value out of range.
    InvalidArgument {
        /// The argument's name, as the user spells it (`"times"`).
        name: String,
        /// What was expected and what was given.
        expected: String,
    },
}

impl Error {
    // Only the Linux backend reads files so far.
    #[cfg_attr(any(not(target_os = "linux"), psleak_unsupported), allow(dead_code))]
    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    #[cfg_attr(any(not(target_os = "linux"), psleak_unsupported), allow(dead_code))]
    pub(crate) fn parse(path: &'static str, detail: impl Into<String>) -> Self {
        Error::Parse {
            path,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(name: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable { what, reason } => write!(f, "{what} not available: {reason}"),
            Error::Io { path, source } => write!(f, "cannot read {path}: {source}"),
            Error::Parse { path, detail } => write!(f, "unexpected format in {path}: {detail}"),
            Error::InvalidArgument { name, expected } => write!(f, "'{name}' {expected}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
