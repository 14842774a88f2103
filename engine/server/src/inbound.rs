//! The one inbound path of the server: every channel's events (a webhook's, the web chat's)
//! go through [`accept`]: in-chat privacy requests are taken out and carried out, transcript
//! lines are kept for a bot that keeps them, the rest is ingested durably, and the latency is
//! measured. Answer the channel only once this returns.

use std::time::Instant;

use influxify_runtime::RuntimeError;
use influxify_store::{Inbound, Ingested};

use crate::AppState;

/// What became of a channel's events.
#[derive(Debug)]
pub enum Accepted {
    /// Ingested durably, with each event's result, in order.
    Ingested(Vec<Ingested>),
    /// Nothing was left to ingest: every event was an in-chat privacy request (now under way)
    /// or there were none.
    Nothing,
}

/// Accepts `events` that arrived at `started`.
pub async fn accept(
    state: &AppState,
    mut events: Vec<Inbound>,
    started: Instant,
) -> Result<Accepted, RuntimeError> {
    let commands = crate::privacy::take_commands(&state.privacy, &mut events);
    if !commands.is_empty() {
        let state = state.clone();
        tokio::spawn(async move { crate::privacy::run_commands(&state, commands).await });
    }
    if events.is_empty() {
        return Ok(Accepted::Nothing);
    }
    let said = state.privacy.transcript_lines(&events);
    let results = state.runtime.ingest(events).await?;
    state.privacy.transcribe_new(&said, &results);
    state.metrics.ingest_latency.observe(started.elapsed());
    Ok(Accepted::Ingested(results))
}
