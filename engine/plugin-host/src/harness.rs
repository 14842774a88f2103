//! The test harness for plugin authors: runs a plugin's actions against a script of cases, with
//! scripted HTTP responses (after the host's grant checks, so a request the manifest does not
//! allow fails as it would in production), kv contents and secrets, and reports each call's
//! instructions and peak memory. `influxify plugin test` prints its report.
//!
//! A script (YAML or JSON):
//!
//! ```yaml
//! secrets: { currency_api_key: "test-key" }
//! kv:
//!   plugin: { rates: '{"USD": 1.1}' }
//!   user: { name: "Ada" }
//! http:
//!   - match: GET https://api.example.com/latest   # method and URL prefix
//!     status: 200
//!     json: { base: EUR, rates: { USD: 1.08 } }    # or `body:` text
//! cases:
//!   - name: converts euros
//!     action: convert
//!     input: { amount: 10, from: EUR, to: USD }
//!     expect:
//!       outcome: ok
//!       output: { currency: USD }                  # fields that must match
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use influxify_store::{ConversationKey, KvScope, PluginKv};
use serde::Deserialize;
use url::Url;

use crate::http::{Responder, Response};
use crate::{Call, HostConfig, MemorySecrets, PluginError, PluginHost};

/// A harness script.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Secrets by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// kv entries present before the cases run.
    #[serde(default)]
    pub kv: KvContents,
    /// Scripted HTTP responses, matched in order; each answers once unless `repeat` is set.
    #[serde(default)]
    pub http: Vec<Scripted>,
    /// The calls to make.
    pub cases: Vec<Case>,
}

/// kv entries, by scope.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvContents {
    /// Plugin-scoped entries.
    #[serde(default)]
    pub plugin: BTreeMap<String, String>,
    /// Entries of the test user (`harness/tester`).
    #[serde(default)]
    pub user: BTreeMap<String, String>,
}

/// A scripted HTTP response.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripted {
    /// `METHOD url-prefix`, e.g. `GET https://api.example.com/latest`.
    #[serde(rename = "match")]
    pub matches: String,
    /// The status (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A text body.
    #[serde(default)]
    pub body: Option<String>,
    /// A JSON body (sets `content-type: application/json`).
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Answer every matching request, not just the first.
    #[serde(default)]
    pub repeat: bool,
}

fn ok() -> u16 {
    200
}

/// One call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it shows.
    pub name: String,
    /// The action (without the plugin's name).
    pub action: String,
    /// The input.
    #[serde(default)]
    pub input: serde_json::Value,
    /// What must come out.
    #[serde(default)]
    pub expect: Expect,
}

/// Expectations of a call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The outcome (`ok`, a named outcome, or `error` for any failure).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Fields the output must contain (a subset match).
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// Text the error message must contain.
    #[serde(default)]
    pub error: Option<String>,
}

/// What one case did.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// The outcome, or the error.
    pub result: Result<(String, serde_json::Value), PluginError>,
    /// Instructions executed (wasmtime fuel).
    pub fuel: Option<u64>,
    /// Peak linear memory, in bytes.
    pub peak_memory: usize,
    /// HTTP requests made.
    pub http_calls: u32,
    /// Wall-clock time, in microseconds.
    pub micros: u128,
}

/// Answers from the script, recording what was asked.
#[derive(Debug)]
struct ScriptedHttp {
    left: Mutex<Vec<(Scripted, bool)>>,
}

impl Responder for ScriptedHttp {
    fn respond(
        &self,
        method: &str,
        url: &Url,
        _headers: &[(String, String)],
        _body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let mut left = self.left.lock().map_err(|_| "poisoned".to_string())?;
        let asked = format!("{method} {url}");
        let found = left.iter_mut().find(|(s, used)| {
            (!*used || s.repeat) && {
                let (m, prefix) = s.matches.split_once(' ').unwrap_or(("GET", &s.matches));
                m.eq_ignore_ascii_case(method) && same_place(url, prefix.trim())
            }
        });
        let Some((scripted, used)) = found else {
            return Err(format!("the script has no response for {asked}"));
        };
        *used = true;
        let mut headers: Vec<(String, String)> = scripted
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = match (&scripted.json, &scripted.body) {
            (Some(json), _) => {
                headers.push(("content-type".into(), "application/json".into()));
                json.to_string().into_bytes()
            }
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        Ok(Response {
            status: scripted.status,
            headers,
            body,
        })
    }
}

/// Whether `url` is at `prefix`: the same origin, and a path (and query) that starts with the
/// prefix's (`https://api.example.com` does not match `https://api.example.com.evil.net`).
fn same_place(url: &Url, prefix: &str) -> bool {
    let Ok(wanted) = Url::parse(prefix) else {
        return false;
    };
    let rest = |u: &Url| match u.query() {
        Some(query) => format!("{}?{query}", u.path()),
        None => u.path().to_string(),
    };
    crate::grants::origin_of(url) == crate::grants::origin_of(&wanted)
        && rest(url).starts_with(&rest(&wanted))
}

/// Whether `actual` contains everything in `expected` (maps by key, other values equal).
fn contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    match (actual, expected) {
        (serde_json::Value::Object(a), serde_json::Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (a, e) => a == e,
    }
}

/// The user the harness calls as.
pub fn tester() -> ConversationKey {
    ConversationKey::new("harness", "tester")
}

/// Loads the plugin at `manifest` and runs `script` against it.
pub fn run(manifest: &Path, script: &Script) -> Result<Vec<CaseReport>, PluginError> {
    let mut secrets = MemorySecrets::new();
    for (name, value) in &script.secrets {
        secrets = secrets.with(name, value);
    }
    let kv = Arc::new(PluginKv::temporary().map_err(|err| PluginError::Load {
        plugin: "(harness)".into(),
        reason: err.to_string(),
    })?);
    let responder = Arc::new(ScriptedHttp {
        left: Mutex::new(script.http.iter().map(|s| (s.clone(), false)).collect()),
    });
    let host = PluginHost::new(
        Arc::new(secrets),
        Some(kv.clone()),
        HostConfig {
            metering: true,
            responder: Some(responder),
            ..HostConfig::default()
        },
    )?;
    let plugin = host.load(manifest)?;
    let quota = u64::MAX;
    let user = tester();
    let seeding = |err: influxify_store::StoreError| PluginError::Load {
        plugin: "(harness)".into(),
        reason: format!("cannot put the script's kv entries in place: {err}"),
    };
    for (key, value) in &script.kv.plugin {
        kv.set(plugin.name(), KvScope::Plugin, key, value.as_bytes(), quota)
            .map_err(seeding)?;
    }
    for (key, value) in &script.kv.user {
        kv.set(
            plugin.name(),
            KvScope::User(&user),
            key,
            value.as_bytes(),
            quota,
        )
        .map_err(seeding)?;
    }
    let mut reports = Vec::new();
    for (i, case) in script.cases.iter().enumerate() {
        let call = Call::new(Some(user.clone()), &format!("harness:{i}"));
        let input = case.input.to_string();
        let qualified = format!("{}.{}", plugin.name(), case.action);
        let started = std::time::Instant::now();
        let (invoked, usage) = host.invoke_metered(&qualified, &input, &call);
        let micros = started.elapsed().as_micros();
        // The host has checked that the output is JSON.
        let result = invoked.map(|invocation| {
            let output = serde_json::from_str(&invocation.output).unwrap_or_default();
            (invocation.outcome, output)
        });
        let usage = Some(usage);
        let failure = judge(&case.expect, &result);
        reports.push(CaseReport {
            name: case.name.clone(),
            failure,
            result,
            fuel: usage.and_then(|u| u.fuel),
            peak_memory: usage.map_or(0, |u| u.peak_memory),
            http_calls: usage.map_or(0, |u| u.http_calls),
            micros,
        });
    }
    Ok(reports)
}

/// Why `result` does not meet `expect`, if it does not.
fn judge(
    expect: &Expect,
    result: &Result<(String, serde_json::Value), PluginError>,
) -> Option<String> {
    match result {
        Ok((outcome, output)) => {
            if expect.error.is_some() || expect.outcome.as_deref() == Some("error") {
                return Some(format!("expected an error, got outcome `{outcome}`"));
            }
            if let Some(wanted) = &expect.outcome
                && wanted != outcome
            {
                return Some(format!("expected outcome `{wanted}`, got `{outcome}`"));
            }
            if let Some(wanted) = &expect.output
                && !contains(output, wanted)
            {
                return Some(format!("expected output containing {wanted}, got {output}"));
            }
            None
        }
        Err(err) => {
            let expected_error =
                expect.error.is_some() || expect.outcome.as_deref() == Some("error");
            if !expected_error {
                return Some(format!("failed: {err}"));
            }
            match &expect.error {
                Some(text) if !err.to_string().contains(text.as_str()) => {
                    Some(format!("expected an error containing `{text}`, got: {err}"))
                }
                _ => None,
            }
        }
    }
}
