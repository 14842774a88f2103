//! The runtime's effects through the plugin host: messages go out through the conversation's
//! channel plugin, plugin calls run in the host (on the low-priority background threads, so
//! that webhooks are acknowledged first under load), notifications are logged.

use std::sync::Arc;
use std::time::Instant;

use influxify_core::conversation::{Effect, Origin as CoreOrigin, Outbound};
use influxify_plugin_host::channel_types::{
    Button, Origin, OutboundMessage, QuickReply, SenderAction,
};
use influxify_plugin_host::{Call, PluginError, PluginHost};
use influxify_runtime::{BoxFuture, EffectError, EffectHandler, Reach};
use influxify_store::ConversationKey;

use crate::background::{BACKGROUND_NICE, Background};
use crate::metrics::Metrics;
use crate::transcripts::{Speaker, Transcripts};
use crate::webchat::{self, WebChat};

/// Effects through the plugin host.
#[derive(Debug, Clone)]
pub struct ChannelEffects {
    plugins: Arc<PluginHost>,
    webchat: Option<Arc<WebChat>>,
    metrics: Option<Arc<Metrics>>,
    /// Plugin calls for effects wait here for one of half the host's instance slots, so that
    /// a backlog of sends queues instead of failing as busy, and webhooks keep the other half.
    slots: Arc<tokio::sync::Semaphore>,
    background: Arc<Background>,
    transcripts: Option<Arc<Transcripts>>,
}

/// Where a conversation's messages go.
enum Route<'a> {
    /// The first-party web chat, which lives in the server (it holds the pages' connections).
    WebChat(&'a WebChat),
    /// The channel plugin named by the conversation's channel.
    Plugin,
}

/// The host's instance slots left to effects (the rest serve webhooks).
pub const EFFECT_SLOTS: usize = influxify_plugin_host::MAX_CONCURRENT_CALLS as usize / 2;

impl ChannelEffects {
    /// Effects through `plugins`, whose calls run on background threads of their own.
    pub fn new(plugins: Arc<PluginHost>) -> std::io::Result<Self> {
        Ok(ChannelEffects {
            plugins,
            webchat: None,
            metrics: None,
            slots: Arc::new(tokio::sync::Semaphore::new(EFFECT_SLOTS)),
            background: Arc::new(Background::new(EFFECT_SLOTS, BACKGROUND_NICE)?),
            transcripts: None,
        })
    }

    /// Also writes what the bot sends to `transcripts` (a bot that keeps transcripts).
    pub fn with_transcripts(mut self, transcripts: Arc<Transcripts>) -> Self {
        self.transcripts = Some(transcripts);
        self
    }

    fn transcribe(&self, conversation: &ConversationKey, message: &Outbound) {
        if let Some(transcripts) = &self.transcripts
            && let Err(err) = transcripts.record(conversation, Speaker::Bot, &message.text)
        {
            tracing::error!(error = %err, "a transcript line was not stored");
        }
    }

    /// Delivers `message` through the conversation's channel (the web chat, or its channel
    /// plugin), without writing it to a transcript: what the server says itself (the
    /// confirmation of an erasure must not outlive the erasure) goes out this way.
    pub async fn deliver(
        &self,
        conversation: &ConversationKey,
        message: &Outbound,
        key: &str,
        reach: Reach<'_>,
    ) -> Result<(), EffectError> {
        if let Route::WebChat(webchat) = self.route(conversation) {
            webchat.deliver(&conversation.user, message, key).await;
            return Ok(());
        }
        let plugins = self.plugins.clone();
        let channel = conversation.channel.clone();
        let outgoing = outbound(&conversation.user, message, reach);
        let call = Call::new(Some(conversation.clone()), key);
        let (sent, started) = self
            .in_slot(move || plugins.channel_send(&channel, &outgoing, &call))
            .await?;
        self.record(
            &conversation.channel,
            sent.as_ref().map(|_| "sent"),
            started,
        );
        sent.map(|_| ()).map_err(effect_error)
    }

    /// Where `conversation`'s messages go: the one place that tells channels apart.
    fn route(&self, conversation: &ConversationKey) -> Route<'_> {
        match (&self.webchat, conversation.channel.as_str()) {
            (Some(webchat), webchat::CHANNEL) => Route::WebChat(webchat),
            _ => Route::Plugin,
        }
    }

    /// Runs a plugin call on the background pool once one of the effects' slots is free; with
    /// when it started (after the wait for the slot).
    async fn in_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Instant), EffectError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|err| EffectError::retryable(err.to_string()))?;
        let started = Instant::now();
        let done = self
            .background
            .run(work)
            .await
            .map_err(|err| EffectError::retryable(err.to_string()))?;
        Ok((done, started))
    }

    /// Also counts plugin calls in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn record(&self, plugin: &str, result: Result<&str, &PluginError>, started: Instant) {
        if let Some(metrics) = &self.metrics {
            metrics.plugin_call(plugin, result.map_err(|e| e.kind()), started.elapsed());
        }
    }

    /// Also delivers to the web chat channel.
    pub fn with_webchat(mut self, webchat: Arc<WebChat>) -> Self {
        self.webchat = Some(webchat);
        self
    }
}

fn effect_error(err: PluginError) -> EffectError {
    match (err.is_retryable(), err.retry_after_ms()) {
        (true, Some(after_ms)) => EffectError::retry_after(err.to_string(), after_ms),
        (true, None) => EffectError::retryable(err.to_string()),
        (false, _) => EffectError::permanent(err.to_string()),
    }
}

fn outbound(user: &str, message: &Outbound, reach: Reach<'_>) -> OutboundMessage {
    OutboundMessage {
        user_id: user.to_string(),
        text: message.text.clone(),
        quick_replies: message
            .quick_replies
            .iter()
            .map(|q| QuickReply {
                title: q.title.clone(),
                payload: q.payload.clone(),
            })
            .collect(),
        buttons: message
            .buttons
            .iter()
            .map(|b| match (&b.url, &b.payload) {
                (Some(url), _) => Button::Url((b.title.clone(), url.clone())),
                (None, payload) => {
                    Button::Postback((b.title.clone(), payload.clone().unwrap_or_default()))
                }
            })
            .collect(),
        tag: message.tag.clone(),
        origin: match message.origin {
            CoreOrigin::Reply => Origin::Reply,
            CoreOrigin::Proactive => Origin::Proactive,
            CoreOrigin::Operator => Origin::Operator,
        },
        account: reach.account.map(str::to_string),
        last_user_message_ms: reach.last_user_at,
    }
}

impl EffectHandler for ChannelEffects {
    fn send<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        message: &'a Outbound,
        key: &'a str,
        reach: Reach<'a>,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            self.deliver(conversation, message, key, reach).await?;
            self.transcribe(conversation, message);
            Ok(())
        })
    }

    fn typing<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        ms: u64,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            if let Route::WebChat(webchat) = self.route(conversation) {
                webchat.typing(&conversation.user, ms, key);
                return Ok(());
            }
            let plugins = self.plugins.clone();
            let (channel, user) = (conversation.channel.clone(), conversation.user.clone());
            let account = reach.account.map(str::to_string);
            let call = Call::new(Some(conversation.clone()), key);
            let (shown, started) = self
                .in_slot(move || {
                    let account = account.as_deref();
                    plugins.channel_act(&channel, &user, account, SenderAction::TypingOn, &call)
                })
                .await?;
            self.record(
                &conversation.channel,
                shown.as_ref().map(|_| "typing"),
                started,
            );
            shown.map_err(effect_error)
        })
    }

    fn profile<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        reach: Reach<'a>,
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, EffectError>> {
        Box::pin(async move {
            if let Route::WebChat(_) = self.route(conversation) {
                // The page gives the profile when it opens its session.
                return Ok(serde_json::Map::new());
            }
            let plugins = self.plugins.clone();
            let (channel, user) = (conversation.channel.clone(), conversation.user.clone());
            let fields = fields.to_vec();
            let account = reach.account.map(str::to_string);
            let call = Call::new(Some(conversation.clone()), "profile");
            let (profile, started) = self
                .in_slot(move || {
                    plugins.channel_profile(&channel, &user, account.as_deref(), &fields, &call)
                })
                .await?;
            self.record(
                &conversation.channel,
                profile.as_ref().map(|_| "profile"),
                started,
            );
            profile.map_err(effect_error)
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
            let plugins = self.plugins.clone();
            let call = Call::new(Some(conversation.clone()), key);
            let plugin = action.split('.').next().unwrap_or(action).to_string();
            let (action, input) = (action.to_string(), input.to_string());
            let (invoked, started) = self
                .in_slot(move || plugins.invoke(&action, &input, &call))
                .await?;
            self.record(
                &plugin,
                invoked.as_ref().map(|i| i.outcome.as_str()),
                started,
            );
            let invocation = invoked.map_err(effect_error)?;
            let output = serde_json::from_str(&invocation.output).unwrap_or_default();
            Ok((invocation.outcome, output))
        })
    }

    fn notify<'a>(
        &'a self,
        conversation: &'a ConversationKey,
        effect: &'a Effect,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move {
            tracing::info!(conversation = %conversation, key, effect = ?std::mem::discriminant(effect), "notification");
            Ok(())
        })
    }

    /// Notifications are reported in the log only (operators find handed-off conversations
    /// through the admin API, by place and status): not worth two store writes each.
    fn durable_notifications(&self) -> bool {
        false
    }
}
