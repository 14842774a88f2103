//! The admin API in Rust (the server exposes it over HTTP): list and inspect conversations,
//! retry or skip a failed effect, resume a handed-off conversation, reset one, speak as an
//! operator. Changes to a conversation go through its inbox, so its single writer applies them.

use influxify_core::{Event, OperatorAction};
use influxify_store::{
    Applied, ConversationKey, Inbound, OutboxItem, Place, StoredConversation, Timer, Write,
};

use crate::clock::now_ms;
use crate::{Runtime, RuntimeError};

/// Everything known about one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// Its record: version, state, turn count, pause reason, recent events.
    pub record: StoredConversation,
    /// Pending timers.
    pub timers: Vec<Timer>,
    /// Pending effects, failed ones included (with their last error).
    pub outbox: Vec<OutboxItem>,
    /// Events not yet applied.
    pub inbox: usize,
}

/// Which conversations to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A flow version hash.
    pub version: Option<String>,
    /// A flow id.
    pub flow: Option<String>,
    /// A node id.
    pub node: Option<String>,
}

impl Runtime {
    /// Conversations by version, flow and node (from the place index: no full scan).
    pub fn list(&self, filter: &Filter) -> Result<Vec<(Place, ConversationKey)>, RuntimeError> {
        let store = &self.inner.store;
        let versions = match &filter.version {
            Some(version) => vec![version.clone()],
            None => store.versions()?,
        };
        let mut found = Vec::new();
        for version in versions {
            for (place, key) in store.placed(&version)? {
                if filter.flow.as_ref().is_none_or(|f| *f == place.flow)
                    && filter.node.as_ref().is_none_or(|n| *n == place.node)
                {
                    found.push((place, key));
                }
            }
        }
        Ok(found)
    }

    /// One conversation in full.
    pub fn inspect(&self, key: &ConversationKey) -> Result<Inspection, RuntimeError> {
        let store = &self.inner.store;
        let record = store
            .conversation(key)?
            .ok_or_else(|| RuntimeError::UnknownConversation(key.clone()))?;
        Ok(Inspection {
            record,
            timers: store.timers(key)?,
            outbox: store.outbox(key)?,
            inbox: store.inbox(key)?.len(),
        })
    }

    /// Tries the failed effect of a paused conversation again.
    pub async fn retry_effect(&self, key: &ConversationKey) -> Result<(), RuntimeError> {
        self.unpause(key, false).await
    }

    /// Drops the failed effect of a paused conversation and carries on.
    pub async fn skip_effect(&self, key: &ConversationKey) -> Result<(), RuntimeError> {
        self.unpause(key, true).await
    }

    async fn unpause(&self, key: &ConversationKey, skip: bool) -> Result<(), RuntimeError> {
        let store = &self.inner.store;
        let record = store
            .conversation(key)?
            .ok_or_else(|| RuntimeError::UnknownConversation(key.clone()))?;
        if record.paused.is_none() {
            return Err(RuntimeError::Refused(format!(
                "conversation {key} has no failed effect"
            )));
        }
        let failed = store.outbox(key)?.into_iter().find(|item| {
            item.last_error.is_some()
                && !matches!(item.effect, influxify_core::Effect::CallPlugin { .. })
        });
        // Applied by the committer only if the record is still the one read here, so two
        // operators (or an operator and the writer) cannot undo each other's work.
        let write = Write::Unpause {
            conversation: key.clone(),
            turns: record.turns,
            failed,
            skip,
        };
        match self.inner.commit.apply(vec![write]).await?.pop() {
            Some(Applied::Unpaused(true)) => {
                self.schedule(key.clone());
                Ok(())
            }
            _ => Err(RuntimeError::Refused(format!(
                "conversation {key} changed meanwhile; look again"
            ))),
        }
    }

    /// Gives a handed-off conversation back to the bot.
    pub async fn resume(&self, key: &ConversationKey) -> Result<(), RuntimeError> {
        self.operator(key, OperatorAction::Resume).await
    }

    /// Starts a conversation over (variables forgotten, profile kept).
    pub async fn reset(&self, key: &ConversationKey) -> Result<(), RuntimeError> {
        self.operator(key, OperatorAction::Reset).await
    }

    /// Says something to the user as an operator.
    pub async fn say(&self, key: &ConversationKey, text: &str) -> Result<(), RuntimeError> {
        self.operator(
            key,
            OperatorAction::Say {
                text: text.to_string(),
            },
        )
        .await
    }

    async fn operator(
        &self,
        key: &ConversationKey,
        action: OperatorAction,
    ) -> Result<(), RuntimeError> {
        if self.inner.store.conversation(key)?.is_none() {
            return Err(RuntimeError::UnknownConversation(key.clone()));
        }
        let inbound = Inbound::new(
            key.clone(),
            self.next_operator_id(),
            now_ms(),
            Event::Operator(action),
        );
        match self.ingest(vec![inbound]).await?.pop() {
            Some(influxify_store::Ingested::New(_)) => Ok(()),
            _ => Err(RuntimeError::Refused(
                "this operator action was already recorded (duplicate id); try again".into(),
            )),
        }
    }
}
