//! `/metrics` in Prometheus' text format: turns, ingest latency, plugin calls and errors by
//! plugin, outbox depth, timer lag and dedup hits. Counters live in atomics; gauges that the
//! store knows are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use influxify_runtime::clock::now_ms;

use crate::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Per-plugin call figures.
#[derive(Debug, Default)]
struct PluginFigures {
    calls: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    latency: Histogram,
}

/// The server's own measurements (the runtime keeps its counters itself).
#[derive(Debug, Default)]
pub struct Metrics {
    /// From a channel's request to its events being durable.
    pub ingest_latency: Histogram,
    /// Requests refused by the webhook (bad signature, malformed payload).
    pub webhook_refused: AtomicU64,
    plugins: Mutex<BTreeMap<String, PluginFigures>>,
}

impl Metrics {
    /// Records a plugin call: its outcome (`ok`, a named outcome) or error kind.
    pub fn plugin_call(&self, plugin: &str, result: Result<&str, &str>, elapsed: Duration) {
        let Ok(mut plugins) = self.plugins.lock() else {
            return;
        };
        let figures = plugins.entry(plugin.to_string()).or_default();
        figures.latency.observe(elapsed);
        match result {
            Ok(outcome) => *figures.calls.entry(outcome.to_string()).or_default() += 1,
            Err(kind) => *figures.errors.entry(kind.to_string()).or_default() += 1,
        }
    }

    fn render_plugins(&self, out: &mut String) {
        let Ok(plugins) = self.plugins.lock() else {
            return;
        };
        out.push_str("# HELP influxify_plugin_calls_total Plugin calls that returned, by plugin and outcome.\n# TYPE influxify_plugin_calls_total counter\n");
        for (plugin, figures) in plugins.iter() {
            for (outcome, n) in &figures.calls {
                let _ = writeln!(
                    out,
                    "influxify_plugin_calls_total{{plugin=\"{}\",outcome=\"{}\"}} {n}",
                    escape(plugin),
                    escape(outcome)
                );
            }
        }
        out.push_str("# HELP influxify_plugin_errors_total Plugin calls that failed, by plugin and error kind.\n# TYPE influxify_plugin_errors_total counter\n");
        for (plugin, figures) in plugins.iter() {
            for (kind, n) in &figures.errors {
                let _ = writeln!(
                    out,
                    "influxify_plugin_errors_total{{plugin=\"{}\",kind=\"{}\"}} {n}",
                    escape(plugin),
                    escape(kind)
                );
            }
        }
        out.push_str("# HELP influxify_plugin_call_seconds Plugin call latency, by plugin.\n# TYPE influxify_plugin_call_seconds histogram\n");
        for (plugin, figures) in plugins.iter() {
            figures.latency.render(
                out,
                "influxify_plugin_call_seconds",
                &format!("plugin=\"{}\"", escape(plugin)),
            );
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.runtime.store().clone();
    // The store's gauges scan indexes: off the async threads.
    let gauges = tokio::task::spawn_blocking(move || {
        let outbox = store.conversations_with_outbox().map(|c| c.len()).ok();
        let lag = store
            .next_timer()
            .ok()
            .flatten()
            .map(|t| now_ms().saturating_sub(t.due) as f64 / 1000.0);
        (outbox, lag)
    })
    .await
    .unwrap_or((None, None));
    let stats = state.runtime.stats();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    counter(
        &mut out,
        "influxify_events_ingested_total",
        "Events stored for processing.",
        load(&stats.ingested),
    );
    counter(
        &mut out,
        "influxify_dedup_hits_total",
        "Events dropped as redeliveries.",
        load(&stats.duplicates),
    );
    counter(
        &mut out,
        "influxify_turns_total",
        "Turns committed.",
        load(&stats.turns),
    );
    counter(
        &mut out,
        "influxify_effects_total",
        "Effects completed (messages, plugin calls, notifications).",
        load(&stats.effects),
    );
    counter(
        &mut out,
        "influxify_timers_fired_total",
        "Durable timers fired.",
        load(&stats.timers),
    );
    counter(
        &mut out,
        "influxify_flushes_total",
        "Store flushes (group commit).",
        state.runtime.flushes(),
    );
    counter(
        &mut out,
        "influxify_webhook_refused_total",
        "Webhook requests refused (signature, payload).",
        load(&state.metrics.webhook_refused),
    );
    out.push_str("# HELP influxify_ingest_seconds From a request's arrival to its events being durable.\n# TYPE influxify_ingest_seconds histogram\n");
    state
        .metrics
        .ingest_latency
        .render(&mut out, "influxify_ingest_seconds", "");
    if let Some(outbox) = gauges.0 {
        gauge(
            &mut out,
            "influxify_outbox_conversations",
            "Conversations with effects waiting to run.",
            outbox,
        );
    }
    gauge(
        &mut out,
        "influxify_timer_lag_seconds",
        "How late the earliest pending timer is (0 when none is due).",
        gauges.1.unwrap_or(0.0),
    );
    state.metrics.render_plugins(&mut out);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
