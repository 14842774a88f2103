//! The privacy policy's operations: export everything stored about one end user (access and
//! portability), erase it (leaving only an audit record without personal data), restrict or
//! resume processing, the retention sweeper, and the in-chat commands that let end users ask
//! for these themselves.

use std::sync::Arc;
use std::time::Duration;

use influxify_core::Event;
use influxify_core::conversation::Outbound;
use influxify_runtime::clock::now_ms;
use influxify_store::{ConversationKey, Inbound, PluginKv};
use schemars::JsonSchema;
use serde::Serialize;

use crate::audit::{AuditEntry, AuditLog};
use crate::config::PrivacySettings;

/// How long dedup markers are kept: channels redeliver within hours, never after days.
pub const DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the privacy operations work on.
#[derive(Debug)]
pub struct Privacy {
    /// The retention periods and in-chat commands.
    pub settings: PrivacySettings,
    /// Plugins' stored entries (consents among them).
    pub kv: Arc<PluginKv>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// The web chat, whose reply buffers an erasure empties.
    pub webchat: Option<Arc<crate::WebChat>>,
    /// Transcripts, when the bot opted in.
    pub transcripts: Option<Arc<crate::transcripts::Transcripts>>,
}

/// Everything stored about one end user.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Export {
    /// Who.
    pub subject: Subject,
    /// When the export was made, ms since the Unix epoch.
    pub exported_at: u64,
    /// Whether processing is restricted.
    pub restricted: bool,
    /// The conversation: where it is and its variables (null when none is stored).
    pub conversation: Option<serde_json::Value>,
    /// Events received but not processed yet.
    pub inbox: Vec<serde_json::Value>,
    /// Effects not carried out yet (messages to send, plugin calls).
    pub outbox: Vec<serde_json::Value>,
    /// Pending timers.
    pub timers: Vec<serde_json::Value>,
    /// What plugins stored about the user (consent records among them), by plugin and key.
    pub plugin_data: Vec<PluginEntry>,
    /// Audit entries about the user.
    pub audit: Vec<AuditEntry>,
    /// What was said, when the bot keeps transcripts (else empty: message text is not stored).
    pub transcript: Vec<crate::transcripts::Line>,
}

/// An end user: a user id on a channel.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Subject {
    /// The channel.
    pub channel: String,
    /// The user's id there.
    pub user: String,
}

/// One stored plugin entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginEntry {
    /// The plugin.
    pub plugin: String,
    /// The key.
    pub key: String,
    /// The value: JSON when it is JSON, else text.
    pub value: serde_json::Value,
}

/// What an erasure removed.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct ErasureReport {
    /// Whether a conversation was stored.
    pub conversation: bool,
    /// Unprocessed events removed.
    pub inbox: usize,
    /// Pending effects removed.
    pub outbox: usize,
    /// Pending timers removed.
    pub timers: usize,
    /// Plugin entries removed.
    pub plugin_entries: usize,
    /// Audit entries that named the user, removed.
    pub audit_entries: usize,
    /// Transcript lines removed.
    pub transcript_lines: usize,
}

/// What a retention sweep removed.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct SweepReport {
    /// Conversations idle longer than the inactivity period, erased.
    pub conversations: usize,
    /// Dedup markers older than a week.
    pub dedup_markers: usize,
    /// Audit (usage log) entries older than the retention period.
    pub audit_entries: usize,
    /// Transcript lines older than the bot's transcript period.
    pub transcript_lines: usize,
    /// Web chat replies kept for a reconnecting page, older than 15 minutes.
    pub webchat_replies: usize,
}

/// A privacy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The runtime refused or failed.
    #[error(transparent)]
    Runtime(#[from] influxify_runtime::RuntimeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] influxify_store::StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The transcripts failed.
    #[error(transparent)]
    Transcripts(#[from] crate::transcripts::TranscriptError),
}

/// A user's text among a batch of events, by position (see [`Privacy::transcript_lines`]).
pub type TranscriptLine = Option<(ConversationKey, String)>;

impl Privacy {
    /// The user texts among `events`, by position, to write to transcripts once they are
    /// stored; nothing is copied when the bot keeps no transcripts.
    pub fn transcript_lines(&self, events: &[Inbound]) -> Vec<TranscriptLine> {
        if self.transcripts.is_none() {
            return Vec::new();
        }
        events
            .iter()
            .map(|event| match &event.event {
                Event::User(message) => message
                    .text
                    .clone()
                    .map(|text| (event.conversation.clone(), text)),
                _ => None,
            })
            .collect()
    }

    /// Writes the lines whose events were new (not redeliveries, not restricted) to their
    /// transcripts (a failure is logged: it never stops a message).
    pub fn transcribe_new(&self, lines: &[TranscriptLine], results: &[influxify_store::Ingested]) {
        let Some(transcripts) = &self.transcripts else {
            return;
        };
        for (line, result) in lines.iter().zip(results) {
            if let (Some((key, text)), influxify_store::Ingested::New(_)) = (line, result)
                && let Err(err) = transcripts.record(key, crate::transcripts::Speaker::User, text)
            {
                tracing::error!(error = %err, "a transcript line was not stored");
            }
        }
    }
}

fn as_json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl Privacy {
    /// Everything stored about `key`.
    pub fn export(
        &self,
        runtime: &influxify_runtime::Runtime,
        key: &ConversationKey,
    ) -> Result<Export, PrivacyError> {
        let store = runtime.store();
        let conversation = store.conversation(key)?.map(|record| {
            serde_json::json!({
                "version": record.version,
                "flow": record.state.flow,
                "node": record.state.node,
                "status": record.state.status,
                "variables": record.state.vars,
                "turns": record.turns,
                "updated_at": record.updated_at,
                "last_user_at": record.last_user_at,
                "paused": record.paused,
                "recent_events": record.recent,
            })
        });
        let plugin_data = self
            .kv
            .user_entries(key)?
            .into_iter()
            .map(|entry| PluginEntry {
                value: serde_json::from_slice(&entry.value).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&entry.value).into_owned())
                }),
                plugin: entry.plugin,
                key: entry.key,
            })
            .collect();
        Ok(Export {
            subject: Subject {
                channel: key.channel.clone(),
                user: key.user.clone(),
            },
            exported_at: now_ms(),
            restricted: runtime.is_restricted(key),
            conversation,
            inbox: store
                .inbox(key)?
                .into_iter()
                .map(|(_, e)| as_json(e))
                .collect(),
            outbox: store.outbox(key)?.into_iter().map(as_json).collect(),
            timers: store.timers(key)?.into_iter().map(as_json).collect(),
            plugin_data,
            audit: self.audit.about(&key.to_string())?,
            transcript: match &self.transcripts {
                Some(transcripts) => transcripts.of(key)?,
                None => Vec::new(),
            },
        })
    }

    /// Erases everything stored about `key` and records that an erasure happened (without the
    /// user's id).
    pub async fn erase(
        &self,
        runtime: &influxify_runtime::Runtime,
        key: &ConversationKey,
        actor: &str,
    ) -> Result<ErasureReport, PrivacyError> {
        let erased = runtime.erase(key).await?;
        if let Some(webchat) = &self.webchat {
            webchat.forget(key);
        }
        let report = ErasureReport {
            conversation: erased.record,
            inbox: erased.inbox,
            outbox: erased.outbox,
            timers: erased.timers,
            plugin_entries: self.kv.erase_user(key)?,
            audit_entries: self.audit.forget(&key.to_string())?,
            transcript_lines: match &self.transcripts {
                Some(transcripts) => transcripts.erase(key)?,
                None => 0,
            },
        };
        self.audit.record(
            actor,
            "erase",
            None,
            serde_json::json!({ "channel": key.channel, "removed": as_json(&report) }),
        )?;
        Ok(report)
    }

    /// Restricts processing for `key`, or lifts the restriction.
    pub async fn restrict(
        &self,
        runtime: &influxify_runtime::Runtime,
        key: &ConversationKey,
        restricted: bool,
        actor: &str,
    ) -> Result<(), PrivacyError> {
        runtime.restrict(key, restricted).await?;
        let action = if restricted {
            "restrict"
        } else {
            "restriction.lift"
        };
        self.audit.record(
            actor,
            action,
            Some(key.to_string()),
            serde_json::Value::Null,
        )?;
        Ok(())
    }

    /// Enforces the retention periods once.
    pub async fn sweep(
        &self,
        runtime: &influxify_runtime::Runtime,
    ) -> Result<SweepReport, PrivacyError> {
        let now = now_ms();
        let mut report = SweepReport::default();
        let store = runtime.store().clone();
        let idle_before = now.saturating_sub(self.settings.inactivity_ttl.as_millis());
        let idle = tokio::task::spawn_blocking(move || store.idle_conversations(idle_before))
            .await
            .map_err(|e| influxify_runtime::RuntimeError::Refused(e.to_string()))??;
        for key in idle {
            // Checked again under the conversation's writer: it may have woken up meanwhile.
            if runtime.erase_if_idle(&key, idle_before).await?.is_some() {
                self.kv.erase_user(&key)?;
                self.audit.forget(&key.to_string())?;
                if let Some(transcripts) = &self.transcripts {
                    transcripts.erase(&key)?;
                }
                if let Some(webchat) = &self.webchat {
                    webchat.forget(&key);
                }
                report.conversations += 1;
            }
        }
        let store = runtime.store().clone();
        let dedup_before = now.saturating_sub(DEDUP_TTL.as_millis() as u64);
        report.dedup_markers = tokio::task::spawn_blocking(move || store.sweep_dedup(dedup_before))
            .await
            .map_err(|e| influxify_runtime::RuntimeError::Refused(e.to_string()))??;
        if let Some(transcripts) = &self.transcripts {
            report.transcript_lines = transcripts.sweep()?;
        }
        if let Some(webchat) = &self.webchat {
            report.webchat_replies = webchat.sweep_replay();
        }
        report.audit_entries = self
            .audit
            .sweep(now.saturating_sub(self.settings.usage_log_ttl.as_millis()))?;
        self.audit
            .record("retention", "sweep", None, as_json(&report))?;
        Ok(report)
    }

    /// The in-chat command `text` asks for, if any.
    pub fn command(&self, text: &str) -> Option<Command> {
        let commands = &self.settings.commands;
        let said = text.trim().trim_end_matches(['.', '!']);
        let longest = [&commands.erase, &commands.stop, &commands.resume]
            .into_iter()
            .flatten()
            .map(String::len)
            .max()
            .unwrap_or(0);
        // Lower-casing changes a text's length little: most messages are too long to be a
        // command, and are not copied to find out.
        if said.len() > 2 * longest {
            return None;
        }
        let said = said.to_lowercase();
        let matches = |words: &[String]| words.iter().any(|w| w.to_lowercase() == said);
        if matches(&commands.erase) {
            Some(Command::Erase)
        } else if matches(&commands.stop) {
            Some(Command::Stop)
        } else if matches(&commands.resume) {
            Some(Command::Resume)
        } else {
            None
        }
    }
}

/// What an end user can ask for in the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Erase my data.
    Erase,
    /// Stop processing my messages.
    Stop,
    /// Process my messages again.
    Resume,
}

impl Command {
    /// What the user is told once it is done.
    pub fn confirmation(self) -> &'static str {
        match self {
            Command::Erase => {
                "Done: everything we stored about you has been deleted. If you write again, we start afresh."
            }
            Command::Stop => {
                "Done: we will not process your messages any more. Write \"resume processing\" to undo this."
            }
            Command::Resume => "Done: we process your messages again.",
        }
    }
}

/// The in-chat commands among `events`, taken out: the rest go on to the runtime. A restricted
/// user's messages are dropped by the runtime, but their "resume" command still works.
/// An in-chat request: whose, which, and the channel account it came to (the confirmation goes
/// out from it).
pub type InChat = (ConversationKey, Command, Option<String>);

pub fn take_commands(privacy: &Privacy, events: &mut Vec<Inbound>) -> Vec<InChat> {
    let mut commands = Vec::new();
    events.retain(|event| {
        let command = match &event.event {
            Event::User(message) => message.text.as_deref().and_then(|t| privacy.command(t)),
            _ => None,
        };
        match command {
            Some(command) => {
                commands.push((event.conversation.clone(), command, event.account.clone()));
                false
            }
            None => true,
        }
    });
    commands
}

/// The confirmation as a message.
pub fn confirmation(command: Command) -> Outbound {
    Outbound {
        text: command.confirmation().to_string(),
        ..Outbound::default()
    }
}

/// Carries out in-chat commands and tells each user it is done (through their channel).
pub async fn run_commands(state: &crate::AppState, commands: Vec<InChat>) {
    for (key, command, account) in commands {
        let done = match command {
            Command::Erase => state
                .privacy
                .erase(&state.runtime, &key, "user")
                .await
                .map(|_| ()),
            Command::Stop => {
                state
                    .privacy
                    .restrict(&state.runtime, &key, true, "user")
                    .await
            }
            Command::Resume => {
                state
                    .privacy
                    .restrict(&state.runtime, &key, false, "user")
                    .await
            }
        };
        match done {
            Ok(()) => {
                let id = format!("privacy:{key}:{}", now_ms());
                if let Err(err) = state
                    .effects
                    .deliver(
                        &key,
                        &confirmation(command),
                        &id,
                        influxify_runtime::Reach {
                            last_user_at: Some(now_ms()),
                            account: account.as_deref(),
                        },
                    )
                    .await
                {
                    tracing::warn!(error = %err.message, "the confirmation of an in-chat privacy request was not delivered");
                }
            }
            Err(err) => {
                tracing::error!(error = %err, ?command, "an in-chat privacy request failed");
            }
        }
    }
}

/// Runs the retention sweeper every `every`.
pub fn spawn_sweeper(state: crate::AppState, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match state.privacy.sweep(&state.runtime).await {
                Ok(report) => tracing::info!(
                    conversations = report.conversations,
                    dedup_markers = report.dedup_markers,
                    audit_entries = report.audit_entries,
                    "retention sweep"
                ),
                Err(err) => tracing::error!(error = %err, "retention sweep failed"),
            }
        }
    });
}
