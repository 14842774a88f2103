//! Test mode, for end-to-end tests of the channels (never in production): transcript tests
//! (`*.test.yaml`) drive a real server through its real channels, and need to move time, answer
//! plugin calls as the test file's `mocks` say, and know when a turn's effects have all run.
//!
//! It is on only with both `[testing] enabled = true` and `INFLUXIFY_TESTING=1`; with one of
//! them alone the server refuses to start ([`Testing::start`]). Then:
//!
//! - [`TestEffects`] wraps the server's [`ChannelEffects`]: sends, typing indicators, profile
//!   look-ups and notifications go through it unchanged (the channel path stays real: every
//!   method of the port but `call` must delegate), plugin calls of a conversation that a
//!   test registered mocks for are answered by them (the designer's [`Mocks`]), and every call
//!   and send is recorded per conversation.
//! - Routes under `/testing/v1/` (admin key, `admin` scope): `POST clock/advance` `{"ms": N}`
//!   moves the engine's clock ([`TestClock`]) forward and wakes the timer task; `GET clock`;
//!   `PUT conversations/{channel}/{user}/mocks` `{"layers": [{action: [mock...]}...]}` (most
//!   specific first, like a case's mocks before its file's); `GET
//!   conversations/{channel}/{user}/record` (the calls and sends so far); `POST quiesce`
//!   (answers once no writer runs, no plugin call is under way and no timer is due).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use indexmap::IndexMap;
use influxify_core::conversation::{Effect, Outbound};
use influxify_designer::session::Mocks;
use influxify_designer::spec::Mock;
use influxify_runtime::{BoxFuture, EffectError, EffectHandler, Reach};
use influxify_store::ConversationKey;
use influxify_store::clock::{TestClock, now_ms};
use serde::{Deserialize, Serialize};

use crate::config::{Scope, TestingSettings};
use crate::reply::{error, json};
use crate::{AppState, ChannelEffects};

/// The environment variable that must be `1` beside `[testing] enabled = true`.
pub const TESTING_VAR: &str = "INFLUXIFY_TESTING";

/// The longest a `quiesce` request waits, in seconds (below the default request timeout).
const QUIESCE_LIMIT_S: u64 = 25;

/// Why test mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    /// One of the two switches is on, the other is not.
    #[error(
        "test mode needs both `[testing] enabled = true` in the configuration and \
         {TESTING_VAR}=1 in the environment, and only {0} is set; test mode is for \
         end-to-end tests and must never be on in production"
    )]
    HalfEnabled(&'static str),
    /// The variable has a value that is neither on nor off.
    #[error("{TESTING_VAR} is `{0}`: set it to `1` for test mode, or leave it unset")]
    BadVariable(String),
    /// Something else in this process controls the clock already.
    #[error("the test clock is taken already in this process")]
    ClockTaken,
}

/// Whether test mode is asked for: both switches on is yes, both off is no, one alone is an
/// error.
pub fn requested(settings: &TestingSettings, variable: Option<&str>) -> Result<bool, TestingError> {
    let variable = match variable.map(str::trim) {
        None | Some("" | "0") => false,
        Some("1") => true,
        Some(other) => return Err(TestingError::BadVariable(other.to_string())),
    };
    match (settings.enabled, variable) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(TestingError::HalfEnabled(
            "`[testing] enabled = true` in the configuration",
        )),
        (false, true) => Err(TestingError::HalfEnabled(
            "INFLUXIFY_TESTING=1 in the environment",
        )),
    }
}

/// A plugin call a conversation made.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// `plugin.action`.
    pub action: String,
    /// Its rendered input.
    pub input: serde_json::Value,
    /// The outcome given, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a registered mock answered it (otherwise the real plugin did).
    pub mocked: bool,
}

/// A message the engine handed to the conversation's channel.
#[derive(Debug, Clone, Serialize)]
pub struct SendRecord {
    /// Its text.
    pub text: String,
    /// The quick replies' titles.
    pub quick_replies: Vec<String>,
    /// The buttons' titles.
    pub buttons: Vec<String>,
    /// Why the channel refused it, when it did (the runtime may try again: each attempt is a
    /// record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a conversation did so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConversationRecord {
    /// Plugin calls, in order.
    pub calls: Vec<CallRecord>,
    /// Send attempts, in order.
    pub sends: Vec<SendRecord>,
}

#[derive(Debug, Default)]
struct Conversation {
    mocks: Option<Mocks>,
    record: ConversationRecord,
}

/// Test mode's state: the clock and the conversations' mocks and records.
#[derive(Debug)]
pub struct Testing {
    clock: TestClock,
    conversations: Mutex<HashMap<ConversationKey, Conversation>>,
}

impl Testing {
    /// Test mode, if `settings` and the value of [`TESTING_VAR`] ask for it (logging a loud
    /// warning); an error if only one of them does.
    pub fn start(
        settings: &TestingSettings,
        variable: Option<&str>,
    ) -> Result<Option<Arc<Testing>>, TestingError> {
        if !requested(settings, variable)? {
            return Ok(None);
        }
        let clock = TestClock::take().ok_or(TestingError::ClockTaken)?;
        tracing::warn!(
            "TEST MODE IS ON ([testing] enabled and {TESTING_VAR}=1): admin keys can move the \
             clock and plugin calls can be answered by mocks under /testing/v1; never run a \
             production bot like this"
        );
        Ok(Some(Arc::new(Testing {
            clock,
            conversations: Mutex::new(HashMap::new()),
        })))
    }

    /// The effect handler for the runtime: `effects`, with plugin calls answered by the
    /// registered mocks and everything recorded.
    pub fn wrap(self: &Arc<Self>, effects: Arc<ChannelEffects>) -> Arc<TestEffects> {
        Arc::new(TestEffects {
            inner: effects,
            testing: self.clone(),
        })
    }

    fn with<T>(&self, key: &ConversationKey, f: impl FnOnce(&mut Conversation) -> T) -> T {
        let mut conversations = self
            .conversations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(conversations.entry(key.clone()).or_default())
    }

    /// Answers `key`'s call of `action` from its mocks; `None` when it has none.
    fn mocked(
        &self,
        key: &ConversationKey,
        action: &str,
        input: &serde_json::Value,
    ) -> Option<Result<(String, serde_json::Value), String>> {
        self.with(key, |c| {
            c.mocks.as_ref().map(|mocks| mocks.answer(action, input))
        })
    }
}

/// The runtime's effect handler in test mode (see the module's documentation).
#[derive(Debug)]
pub struct TestEffects {
    inner: Arc<ChannelEffects>,
    testing: Arc<Testing>,
}

fn send_record(message: &Outbound, error: Option<String>) -> SendRecord {
    SendRecord {
        text: message.text.clone(),
        quick_replies: message
            .quick_replies
            .iter()
            .map(|q| q.title.clone())
            .collect(),
        buttons: message.buttons.iter().map(|b| b.title.clone()).collect(),
        error,
    }
}

impl EffectHandler for TestEffects {
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        reach: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            let sent = self.inner.send(conversation, message, key, reach).await;
            let record = send_record(message, sent.as_ref().err().map(|e| e.message.clone()));
            self.testing
                .with(conversation, |c| c.record.sends.push(record));
            sent
        })
    }

    fn call<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        action: &'a str,
        input: &'a serde_json::Value,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>> {
        Box::pin(async move {
            let (answer, mocked) = match self.testing.mocked(conversation, action, input) {
                Some(answer) => (answer.map_err(EffectError::permanent), true),
                None => (
                    self.inner.call(conversation, action, input, key).await,
                    false,
                ),
            };
            let record = CallRecord {
                action: action.to_string(),
                input: input.clone(),
                outcome: answer.as_ref().ok().map(|(outcome, _)| outcome.clone()),
                error: answer.as_ref().err().map(|e| e.message.clone()),
                mocked,
            };
            self.testing
                .with(conversation, |c| c.record.calls.push(record));
            answer
        })
    }

    fn typing<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        ms: u64,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        self.inner.typing(conversation, reach, ms, key)
    }

    fn profile<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, EffectError>> {
        self.inner.profile(conversation, reach, fields)
    }

    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        self.inner.notify(conversation, effect, key)
    }

    fn durable_notifications(&self) -> bool {
        self.inner.durable_notifications()
    }
}

/// `POST /testing/v1/clock/advance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    /// How far to move the clock, in milliseconds.
    ms: u64,
}

/// The clock, as the routes report it.
#[derive(Debug, Serialize)]
struct ClockInfo {
    /// The engine's time, ms since the Unix epoch.
    now_ms: u64,
    /// How far it is ahead of the wall clock.
    offset_ms: u64,
}

/// `PUT /testing/v1/conversations/{channel}/{user}/mocks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockLayers {
    /// Mocks by action, the layer tried first first.
    layers: Vec<IndexMap<String, Vec<Mock>>>,
}

/// The test state, or the refusal of a caller without an admin key.
fn testing(state: &AppState, headers: &HeaderMap) -> Result<Arc<Testing>, Response> {
    crate::admin::authorize(state, headers, Scope::Admin)?;
    state
        .testing
        .clone()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "test mode is off"))
}

fn clock_info(testing: &Testing) -> Response {
    json(
        StatusCode::OK,
        &ClockInfo {
            now_ms: now_ms(),
            offset_ms: testing.clock.offset_ms(),
        },
    )
}

async fn clock(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match testing(&state, &headers) {
        Ok(testing) => clock_info(&testing),
        Err(refused) => refused,
    }
}

async fn advance(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let testing = match testing(&state, &headers) {
        Ok(testing) => testing,
        Err(refused) => return refused,
    };
    let advance: Advance = match serde_json::from_slice(&body) {
        Ok(advance) => advance,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not of the form {{\"ms\": 7200000}}: {err}"),
            );
        }
    };
    testing.clock.advance(advance.ms);
    state.runtime.wake_timers();
    clock_info(&testing)
}

async fn register_mocks(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let testing = match testing(&state, &headers) {
        Ok(testing) => testing,
        Err(refused) => return refused,
    };
    let request: MockLayers = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body is not of the form {{\"layers\": [{{\"action\": [mock...]}}]}}: {err}"
                ),
            );
        }
    };
    let mut mocks = Mocks::default();
    // Each layer pushed goes before the earlier ones: the least specific goes first.
    for layer in request.layers.iter().rev() {
        if let Err(why) = mocks.push_front(layer) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, &why);
        }
    }
    let key = ConversationKey::new(channel, user);
    testing.with(&key, |c| c.mocks = Some(mocks));
    json(StatusCode::OK, &serde_json::json!({ "ok": true }))
}

async fn record(
    State(state): State<AppState>,
    Path((channel, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let testing = match testing(&state, &headers) {
        Ok(testing) => testing,
        Err(refused) => return refused,
    };
    let key = ConversationKey::new(channel, user);
    let record = testing.with(&key, |c| c.record.clone());
    json(StatusCode::OK, &record)
}

async fn quiesce(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let testing = match testing(&state, &headers) {
        Ok(testing) => testing,
        Err(refused) => return refused,
    };
    let limit = std::time::Duration::from_secs(QUIESCE_LIMIT_S);
    match tokio::time::timeout(limit, state.runtime.quiesce()).await {
        Ok(()) => clock_info(&testing),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the runtime was still busy after {QUIESCE_LIMIT_S} s"),
        ),
    }
}

/// The routes of test mode (merged into the router only when it is on).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/testing/v1/clock", get(clock))
        .route("/testing/v1/clock/advance", post(advance))
        .route(
            "/testing/v1/conversations/{channel}/{user}/mocks",
            put(register_mocks),
        )
        .route(
            "/testing/v1/conversations/{channel}/{user}/record",
            get(record),
        )
        .route("/testing/v1/quiesce", post(quiesce))
}

#[cfg(test)]
mod tests {
    use super::{TestingError, requested};
    use crate::config::TestingSettings;

    #[test]
    fn test_mode_needs_both_switches() {
        let on = TestingSettings { enabled: true };
        let off = TestingSettings::default();
        assert!(requested(&on, Some("1")).unwrap());
        assert!(!requested(&off, None).unwrap());
        assert!(!requested(&off, Some("0")).unwrap());
        for (settings, variable) in [(&on, None), (&on, Some("0")), (&off, Some("1"))] {
            let err = requested(settings, variable).unwrap_err();
            assert!(matches!(err, TestingError::HalfEnabled(_)), "{err}");
            assert!(
                err.to_string().contains("never be on in production"),
                "{err}"
            );
        }
        assert!(matches!(
            requested(&on, Some("yes")),
            Err(TestingError::BadVariable(_))
        ));
    }
}
