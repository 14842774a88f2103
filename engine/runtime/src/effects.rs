//! The effect port: how the runtime reaches the outside world (channels, plugins, operators).
//! The plugin host and channel plugins implement it; tests implement it with recorders.

use std::future::Future;
use std::pin::Pin;

use influxify_core::conversation::{Effect, Outbound};
use influxify_store::{ConversationKey, OutboxItem};

/// A boxed future, so that the port can be used as `dyn EffectHandler`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an effect failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EffectError {
    /// Whether trying again later may succeed (a timeout, a 5xx, a rate limit).
    pub retryable: bool,
    /// What went wrong.
    pub message: String,
    /// The provider asked not to be tried again before this many milliseconds (its
    /// `Retry-After`): the runtime waits at least this long, on its own timers.
    pub retry_after_ms: Option<u64>,
}

impl EffectError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        EffectError {
            retryable: true,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A failure worth retrying, but not before `after_ms` milliseconds.
    pub fn retry_after(message: impl Into<String>, after_ms: u64) -> Self {
        EffectError {
            retry_after_ms: Some(after_ms),
            ..EffectError::retryable(message)
        }
    }

    /// A failure that will not go away by itself.
    pub fn permanent(message: impl Into<String>) -> Self {
        EffectError {
            retryable: false,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// How long to wait before the next attempt: the backoff, or the provider's
    /// `Retry-After` when that is longer (capped at `max_ms`).
    pub fn delay_ms(&self, backoff_ms: u64, max_ms: u64) -> u64 {
        backoff_ms.max(self.retry_after_ms.unwrap_or(0).min(max_ms))
    }
}

/// How a message reaches its user, for channels that need it: when the user last wrote (the
/// channel's clock, milliseconds since the Unix epoch: Messenger only takes replies within a
/// window after it) and the channel account they wrote to (a Messenger page, when one app
/// serves many).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach<'a> {
    /// When the user last wrote.
    pub last_user_at: Option<u64>,
    /// The account they wrote to.
    pub account: Option<&'a str>,
}

impl<'a> Reach<'a> {
    /// The reach of an outbox item.
    pub fn of(item: &'a OutboxItem) -> Self {
        Reach {
            last_user_at: item.last_user_at,
            account: item.account.as_deref(),
        }
    }
}

/// Runs effects after their turn is durable. Every call carries the effect's deterministic
/// idempotency key `(conversation, turn, step)`: after a crash an effect may run again, and the
/// receiver uses the key to drop the repeat.
pub trait EffectHandler: Send + Sync + 'static {
    /// Delivers a message to the user, as far as `reach` tells how.
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        reach: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>>;

    /// Calls a plugin action; returns its outcome and output.
    fn call<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        action: &'a str,
        input: &'a serde_json::Value,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>>;

    /// Shows the user a typing indicator before a message that asks for one. The runtime then
    /// waits the message's `typing_ms` on its own timer (no thread, no plugin instance is held
    /// meanwhile) and sends it. A failure is only logged: the message goes out all the same.
    /// The default shows nothing.
    fn typing<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        ms: u64,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        let _ = (conversation, reach, ms, key);
        Box::pin(async { Ok(()) })
    }

    /// The user's profile fields named in `fields` that their channel has (Messenger's User
    /// Profile API), asked before a conversation's first turn and at most daily after, only
    /// when its flows read some. The default: none.
    fn profile<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, EffectError>> {
        let _ = (conversation, reach, fields);
        Box::pin(async { Ok(serde_json::Map::new()) })
    }

    /// Tells operators about a handoff, a forwarded message, an end or a failure.
    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>>;

    /// Whether notifications must survive a crash between their turn and `notify`. `true` (the
    /// default): each waits in the outbox until delivered, is retried, and may be delivered
    /// twice. `false`, for a handler that only reports them (a log line): each is delivered
    /// once its turn is durable, tried once and not stored, which saves two store writes per
    /// notification; it is stored after all when the conversation is paused or restricted
    /// before its turn, and runs when it goes on. A crash or a store failure in between loses
    /// it (the conversation's state still says it was handed off, ended or failed).
    fn durable_notifications(&self) -> bool {
        true
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then scaled by a factor in
/// [0.5, 1.0) drawn from `seed` (jitter spreads retries of many conversations apart).
pub fn backoff_ms(attempt: u32, base_ms: u64, max_ms: u64, seed: u64) -> u64 {
    let exponential = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
        .min(max_ms);
    // A cheap, deterministic mix of the seed (splitmix64), not a cryptographic random.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let fraction = 500 + z % 500;
    exponential.saturating_mul(fraction) / 1000
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let first = backoff_ms(1, 100, 10_000, 1);
        assert!((50..100).contains(&first), "{first}");
        let fifth = backoff_ms(5, 100, 10_000, 1);
        assert!((800..1600).contains(&fifth), "{fifth}");
        assert!(backoff_ms(30, 100, 10_000, 1) < 10_000);
        assert_ne!(backoff_ms(3, 100, 10_000, 1), backoff_ms(3, 100, 10_000, 2));
    }
}
