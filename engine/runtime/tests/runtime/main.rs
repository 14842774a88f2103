//! Tests of the durable runtime through its API, on the real sled store and the in-memory one.

mod delivery;
mod engine_waits;
mod migration;
mod privacy;
mod recovery;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use influxify_core::Event;
use influxify_core::conversation::{Effect, Origin, Outbound, UserMessage};
use influxify_runtime::{BoxFuture, Config, EffectError, EffectHandler, Reach, Runtime};
use influxify_store::{ConversationKey, Inbound, MemoryStore, Store};

/// Records what the runtime does to the world; plugin answers and send failures are scripted.
#[derive(Debug, Default)]
pub struct Recorder {
    /// (user, text, idempotency key) of every delivered message.
    pub sent: Mutex<Vec<(String, String, String)>>,
    /// When the user last wrote, as handed to each delivered message.
    pub last_user: Mutex<Vec<Option<u64>>>,
    /// Operator notifications: (user, effect kind).
    pub notes: Mutex<Vec<(String, String)>>,
    /// Plugin calls: (action, input, key).
    pub calls: Mutex<Vec<(String, serde_json::Value, String)>>,
    /// Answers for the next plugin calls (default: ok with null output).
    pub answers: Mutex<VecDeque<Result<(String, serde_json::Value), EffectError>>>,
    /// Failures for the next sends.
    pub send_failures: Mutex<VecDeque<EffectError>>,
    /// What made the bot send each delivered message.
    pub origins: Mutex<Vec<Origin>>,
    /// Typing indicators shown: (user, ms, when).
    pub typing: Mutex<Vec<(String, u64, std::time::Instant)>>,
    /// When each message was delivered.
    pub sent_at: Mutex<Vec<std::time::Instant>>,
    /// Profile requests: (user, fields).
    pub profiles: Mutex<Vec<(String, Vec<String>)>>,
    /// The profile the channel answers (none: a channel without profiles).
    pub profile: Mutex<serde_json::Map<String, serde_json::Value>>,
}

impl Recorder {
    pub fn texts(&self, user: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _, _)| u == user)
            .map(|(_, t, _)| t.clone())
            .collect()
    }
}

impl EffectHandler for Recorder {
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        reach: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            if let Some(err) = self.send_failures.lock().unwrap().pop_front() {
                return Err(err);
            }
            self.sent.lock().unwrap().push((
                conversation.user.clone(),
                message.text.clone(),
                key.to_string(),
            ));
            self.last_user.lock().unwrap().push(reach.last_user_at);
            self.origins.lock().unwrap().push(message.origin);
            self.sent_at.lock().unwrap().push(std::time::Instant::now());
            Ok(())
        })
    }

    fn typing<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        _reach: Reach<'a>,
        ms: u64,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            self.typing.lock().unwrap().push((
                conversation.user.clone(),
                ms,
                std::time::Instant::now(),
            ));
            Ok(())
        })
    }

    fn profile<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        _reach: Reach<'a>,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, EffectError>> {
        Box::pin(async move {
            self.profiles
                .lock()
                .unwrap()
                .push((conversation.user.clone(), fields.to_vec()));
            let profile = self.profile.lock().unwrap().clone();
            Ok(profile
                .into_iter()
                .filter(|(field, _)| fields.contains(field))
                .collect())
        })
    }

    fn call<'a>(
        &'a self,
        _conversation: &'a ConversationKey,
        action: &'a str,
        input: &'a serde_json::Value,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(String, serde_json::Value), EffectError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((action.to_string(), input.clone(), key.to_string()));
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(("ok".into(), serde_json::Value::Null)))
        })
    }

    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            let kind = serde_json::to_value(effect).unwrap()["effect"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.notes
                .lock()
                .unwrap()
                .push((conversation.user.clone(), kind));
            Ok(())
        })
    }
}

pub const ECHO: &str = "
id: echo
variables:
  log: { type: list }
start: listen
nodes:
  listen:
    kind: ask
    prompt: ready
    store: last
    next: record
  record:
    kind: set
    assign: { log: 'log + [last]' }
    next: say
  say:
    kind: message
    text: 'echo {{ last }}'
    next: listen
";

pub fn key(user: &str) -> ConversationKey {
    ConversationKey::new("test", user)
}

pub fn message(user: &str, id: &str, timestamp: u64, text: &str) -> Inbound {
    Inbound::new(
        key(user),
        id,
        timestamp,
        Event::User(UserMessage::text(text)),
    )
}

/// A runtime on `store` with `flows` published (as `bot`, entering flow `entry`).
pub async fn runtime_with(
    store: Arc<dyn Store>,
    recorder: Arc<Recorder>,
    entry: &str,
    flows: &[(&str, &str)],
) -> Runtime {
    let runtime = Runtime::start(store, recorder, Config::new("bot", entry))
        .await
        .unwrap();
    let sources = flows
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    runtime.publish(sources, None).await.unwrap();
    runtime
}

pub async fn echo_runtime() -> (Runtime, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let runtime = runtime_with(
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        "echo",
        &[("echo.yaml", ECHO)],
    )
    .await;
    (runtime, recorder)
}

pub fn log_of(runtime: &Runtime, user: &str) -> Vec<String> {
    let record = runtime.store().conversation(&key(user)).unwrap().unwrap();
    record.state.vars["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
