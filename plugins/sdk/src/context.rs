//! [`Context`]: what the engine tells a plugin about one call (the conversation, the user, an
//! idempotency key and a deadline).

use crate::bindings::influxify::plugin::types::CallContext;
use crate::clock;

/// What the engine tells a plugin about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    conversation_id: String,
    user_id: String,
    idempotency_key: String,
    deadline_ms: u64,
}

impl Context {
    /// A context with these values (for tests of an action's `run`; the engine makes the real
    /// ones).
    pub fn new(
        conversation_id: impl Into<String>,
        user_id: impl Into<String>,
        idempotency_key: impl Into<String>,
        deadline_ms: u64,
    ) -> Self {
        Context {
            conversation_id: conversation_id.into(),
            user_id: user_id.into(),
            idempotency_key: idempotency_key.into(),
            deadline_ms,
        }
    }

    /// The conversation, as `channel/user`.
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// The end user's id on the channel.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// `(conversation, turn, step)`: the same effect run again (after a crash, or a retry)
    /// carries the same key, so that side effects can be made idempotent (send it as an
    /// `Idempotency-Key` header, or remember it in [`kv`](crate::kv)).
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }

    /// Milliseconds since the Unix epoch by which the call must have returned; host calls
    /// (http) are cut short at this deadline too.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Milliseconds left before the deadline, by the host's clock (0 once it has passed).
    pub fn remaining_ms(&self) -> u64 {
        self.deadline_ms.saturating_sub(clock::now_ms())
    }
}

/// The context of a call, as the WIT bindings deliver it.
impl From<CallContext> for Context {
    fn from(context: CallContext) -> Self {
        Context {
            conversation_id: context.conversation_id,
            user_id: context.user_id,
            idempotency_key: context.idempotency_key,
            deadline_ms: context.deadline_ms,
        }
    }
}
