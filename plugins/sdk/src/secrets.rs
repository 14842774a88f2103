//! Secrets, by name. A plugin may learn whether one is configured, never its value: values are
//! only injected by the host into requests ([`http::RequestBuilder::secret`]) or used for
//! signatures ([`crypto`]).
//!
//! [`http::RequestBuilder::secret`]: crate::http::RequestBuilder::secret
//! [`crypto`]: crate::crypto

use crate::Error;
use crate::bindings::influxify::plugin::secrets as wit;

/// Whether secret `name` exists and the manifest grants it to this plugin.
pub fn available(name: &str) -> bool {
    wit::available(name)
}

/// Succeeds when secret `name` is available; [`Error::Misconfigured`] otherwise (check early,
/// before any side effect).
pub fn require(name: &str) -> Result<(), Error> {
    if available(name) {
        Ok(())
    } else {
        Err(Error::misconfigured(format!(
            "the secret `{name}` is not configured or not granted"
        )))
    }
}
