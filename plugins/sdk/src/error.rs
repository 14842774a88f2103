//! [`Error`]: why an action (or a channel call) failed, in the four kinds the engine knows, and
//! how the host's own errors (HTTP, kv, crypto) map to them.

use std::fmt;

use crate::bindings::influxify::plugin::crypto::CryptoError;
use crate::bindings::influxify::plugin::http::HttpError;
use crate::bindings::influxify::plugin::kv::KvError;
use crate::bindings::influxify::plugin::types::Error as WitError;

/// `Result` with the SDK's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed. The engine retries [`Error::Retryable`] with backoff (per the flow node's
/// retry policy) and never retries the others.
///
/// Build one with [`Error::invalid_input`], [`Error::retryable`], [`Error::permanent`] or
/// [`Error::misconfigured`]; host errors convert with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input does not match the action's input schema, or a request is malformed.
    InvalidInput(String),
    /// Trying again later may succeed: a timeout, a rate limit, a server error.
    Retryable(String),
    /// Trying again may succeed, but not before this many milliseconds (a provider's
    /// `Retry-After`). The engine waits on its own timers: a plugin never sleeps.
    RetryAfter(String, u64),
    /// It will not succeed without a change: bad data, a refused request.
    Permanent(String),
    /// The plugin is set up wrong (an invalid token, a missing grant or setting): reported
    /// loudly to operators, not only to the conversation.
    Misconfigured(String),
}

impl Error {
    /// An [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// An [`Error::Retryable`].
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::Retryable(message.into())
    }

    /// An [`Error::RetryAfter`]: retry, but not before `after_ms` milliseconds.
    pub fn retry_after(message: impl Into<String>, after_ms: u64) -> Self {
        Error::RetryAfter(message.into(), after_ms)
    }

    /// An [`Error::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Error::Permanent(message.into())
    }

    /// An [`Error::Misconfigured`].
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Error::Misconfigured(message.into())
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::Retryable(m)
            | Error::RetryAfter(m, _)
            | Error::Permanent(m)
            | Error::Misconfigured(m) => m,
        }
    }

    /// Whether the engine may retry the call.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Retryable(_) | Error::RetryAfter(..))
    }

    /// The same kind of error, its message prefixed with `context` (`"fetching rates: timeout"`).
    pub fn context(self, context: impl fmt::Display) -> Self {
        let prefix = |m: String| format!("{context}: {m}");
        match self {
            Error::InvalidInput(m) => Error::InvalidInput(prefix(m)),
            Error::Retryable(m) => Error::Retryable(prefix(m)),
            Error::RetryAfter(m, ms) => Error::RetryAfter(prefix(m), ms),
            Error::Permanent(m) => Error::Permanent(prefix(m)),
            Error::Misconfigured(m) => Error::Misconfigured(prefix(m)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Retryable(m) => write!(f, "retryable: {m}"),
            Error::RetryAfter(m, ms) => write!(f, "retryable after {ms} ms: {m}"),
            Error::Permanent(m) => write!(f, "permanent: {m}"),
            Error::Misconfigured(m) => write!(f, "misconfigured: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for WitError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidInput(m) => WitError::InvalidInput(m),
            Error::Retryable(m) => WitError::Retryable(m),
            Error::RetryAfter(m, ms) => WitError::RetryAfter((m, ms)),
            Error::Permanent(m) => WitError::Permanent(m),
            Error::Misconfigured(m) => WitError::Misconfigured(m),
        }
    }
}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::InvalidInput(m) => Error::InvalidInput(m),
            WitError::Retryable(m) => Error::Retryable(m),
            WitError::RetryAfter((m, ms)) => Error::RetryAfter(m, ms),
            WitError::Permanent(m) => Error::Permanent(m),
            WitError::Misconfigured(m) => Error::Misconfigured(m),
        }
    }
}

/// A request the manifest does not allow (or a budget too small for the plugin) is a setup
/// problem; a timeout or a transport failure may pass; an oversized response will not shrink.
impl From<HttpError> for Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Denied(m) => Error::Misconfigured(format!("HTTP request denied: {m}")),
            HttpError::Timeout => Error::Retryable("HTTP request timed out".to_string()),
            HttpError::TooLarge => {
                Error::Permanent("HTTP response larger than the granted cap".to_string())
            }
            HttpError::BudgetExhausted => Error::Misconfigured(
                "the call used up its granted number of HTTP requests".to_string(),
            ),
            HttpError::Transport(m) => Error::Retryable(format!("HTTP transport error: {m}")),
        }
    }
}

/// A full quota or an oversized entry will not fix itself; an unavailable store may.
impl From<KvError> for Error {
    fn from(error: KvError) -> Self {
        match error {
            KvError::Denied(m) => Error::Misconfigured(format!("kv denied: {m}")),
            KvError::QuotaExceeded => Error::Permanent("kv quota exceeded".to_string()),
            KvError::TooLarge => Error::Permanent("kv key or value too large".to_string()),
            KvError::Unavailable(m) => Error::Retryable(format!("kv unavailable: {m}")),
        }
    }
}

/// A secret that is missing or not granted is a setup problem.
impl From<CryptoError> for Error {
    fn from(error: CryptoError) -> Self {
        match error {
            CryptoError::Denied(m) => Error::Misconfigured(format!("crypto denied: {m}")),
        }
    }
}
