//! `openai.chat` against a fake Chat Completions server that answers with OpenAI's documented
//! bodies (`fixtures/openai/`), one scripted answer per request, recording what it was sent.

use std::sync::{Arc, Mutex};

use influxify_plugin_host::{HostConfig, MemorySecrets, PluginError, PluginHost};
use serde_json::json;

use crate::http_server::{HttpServer, Response};
use crate::*;

const COMPLETION: &str = include_str!("fixtures/openai/chat-completion.json");
const RATE_LIMITED: &str = include_str!("fixtures/openai/error-429-rate-limit.json");
const NO_QUOTA: &str = include_str!("fixtures/openai/error-429-insufficient-quota.json");

/// A scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// A request the server saw: its headers (lowercase names) and JSON body.
type Seen = (Vec<(String, String)>, serde_json::Value);

/// The fake server: answers in order, then 500s.
struct Fake {
    url: String,
    answers: Arc<Mutex<Vec<Answer>>>,
    http: HttpServer,
}

impl Fake {
    fn start(answers: Vec<Answer>) -> Fake {
        let answers = Arc::new(Mutex::new(answers));
        let queue = answers.clone();
        let http = HttpServer::start(move |request| {
            assert!(
                request.line.starts_with("POST /v1/chat/completions "),
                "{}",
                request.line
            );
            let (status, extra, body) = {
                let mut queue = queue.lock().unwrap();
                if queue.is_empty() {
                    (500, Vec::new(), "{}".to_string())
                } else {
                    queue.remove(0)
                }
            };
            let response = Response::new(status, body).header("content-type", "application/json");
            extra
                .into_iter()
                .fold(response, |response, (k, v)| response.header(k, v))
        });
        Fake {
            url: http.url.clone(),
            answers,
            http,
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.http
            .requests()
            .into_iter()
            .map(|r| {
                let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                (r.headers, body)
            })
            .collect()
    }
}

/// A host with the openai plugin pointed at `fake`, with an API key unless `key` is `None`.
fn openai(fake: &Fake, key: Option<&str>) -> (PluginHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url.clone();
    install(dir.path(), "openai", |m| {
        m.replace("https://api.openai.com", &url)
            .replace("time_ms = 60000", "time_ms = 8000")
    });
    let mut secrets = MemorySecrets::new();
    if let Some(key) = key {
        secrets = secrets.with("openai_api_key", key);
    }
    // The protocol, without the engine's consent policy (tested below).
    let host = PluginHost::new(
        Arc::new(secrets),
        Some(Arc::new(influxify_store::PluginKv::temporary().unwrap())),
        HostConfig {
            consent_gate: None,
            ..HostConfig::default()
        },
    )
    .unwrap();
    for loaded in host.load_dir(dir.path()) {
        loaded.unwrap();
    }
    (host, dir)
}

fn ask() -> serde_json::Value {
    json!({
        "model": "gpt-4o-mini",
        "system": "You are Nova.",
        "messages": [{"role": "user", "content": "Hello?"}],
        "temperature": 0.2,
        "max_completion_tokens": 50
    })
}

#[test]
fn a_completion_is_asked_with_the_key_and_read() {
    let fake = Fake::start(vec![(200, vec![], COMPLETION.to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let answer = call(&host, "openai.chat", &ask()).unwrap();
    assert_eq!(answer.outcome, "ok");
    let out = output(&answer);
    assert_eq!(out["text"], "Hello! How can I assist you today?");
    assert_eq!(out["finish_reason"], "stop");
    assert_eq!(out["usage"]["completion_tokens"], 10);
    let (headers, body) = &fake.requests()[0];
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer sk-test")
    );
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "You are Nova."})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "Hello?"})
    );
    assert_eq!(body["max_completion_tokens"], 50);
    assert!(!answer.output.contains("sk-test"));
}

#[test]
fn structured_output_is_asked_for_and_parsed() {
    let content = json!({"intent": "refund", "order": "A-1042"}).to_string();
    let reply = json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
    let fake = Fake::start(vec![(200, vec![], reply.to_string())]);
    let (host, _dir) = openai(&fake, None);
    let mut input = ask();
    input["json_schema"] = json!({"type": "object", "properties": {"intent": {"type": "string"}, "order": {"type": "string"}}, "required": ["intent", "order"], "additionalProperties": false});
    input["schema_name"] = json!("triage");
    let answer = call(&host, "openai.chat", &input).unwrap();
    assert_eq!(output(&answer)["json"]["intent"], "refund");
    let (headers, body) = &fake.requests()[0];
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "triage");
    assert!(
        !headers.iter().any(|(k, _)| k == "authorization"),
        "no key configured, none sent"
    );
}

#[test]
fn a_retry_after_is_left_to_the_engine_and_quota_and_keys_are_not_retried() {
    // Rate limited with `retry-after-ms`: the plugin never sleeps; the engine waits that long.
    let fake = Fake::start(vec![(
        429,
        vec![("retry-after-ms", "200".into())],
        RATE_LIMITED.to_string(),
    )]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let started = std::time::Instant::now();
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
    assert!(
        matches!(&err, PluginError::RetryAfter(m, 200) if m.contains("rate_limit_exceeded")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.requests()[0].1["store"], json!(false));

    // `Retry-After` in seconds.
    let fake = Fake::start(vec![(
        429,
        vec![("retry-after", "120".into())],
        RATE_LIMITED.to_string(),
    )]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert_eq!(err.retry_after_ms(), Some(120_000), "{err:?}");
    assert_eq!(fake.requests().len(), 1);

    // Without one: retryable, with the node's backoff.
    let fake = Fake::start(vec![(429, vec![], RATE_LIMITED.to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert!(matches!(&err, PluginError::Retryable(_)), "{err:?}");

    // A refusal (no content) is the outcome `refused`, never an empty answer.
    let refusal = json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]});
    let fake = Fake::start(vec![(200, vec![], refusal.to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let answer = call(&host, "openai.chat", &ask()).unwrap();
    assert_eq!(answer.outcome, "refused");
    assert_eq!(output(&answer)["refusal"], "I can't help with that.");

    // A 200 that is not a completion was billed: not retried.
    let fake = Fake::start(vec![(200, vec![], "<html>oops</html>".to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert!(matches!(&err, PluginError::Permanent(_)), "{err:?}");

    // No quota left: never retried.
    let fake = Fake::start(vec![(429, vec![], NO_QUOTA.to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-test"));
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert!(
        matches!(&err, PluginError::Permanent(m) if m.contains("insufficient_quota")),
        "{err:?}"
    );

    // A bad key: a misconfiguration.
    let bad_key = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
    let fake = Fake::start(vec![(401, vec![], bad_key.to_string())]);
    let (host, _dir) = openai(&fake, Some("sk-wrong"));
    let err = call(&host, "openai.chat", &ask()).unwrap_err();
    assert!(
        matches!(&err, PluginError::Misconfigured(m) if m.contains("invalid_api_key")),
        "{err:?}"
    );
}

#[test]
fn compatible_servers_error_shapes_are_read_leniently() {
    for (status, body, retryable) in [
        // Older vLLM: the error at the top level.
        (
            400,
            json!({"object": "error", "message": "max_tokens too large", "type": "BadRequestError", "code": 400}),
            false,
        ),
        // llama.cpp: an integer code.
        (
            503,
            json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}),
            true,
        ),
        (500, json!("not even an object"), true),
    ] {
        let fake = Fake::start(vec![(status, vec![], body.to_string())]);
        let (host, _dir) = openai(&fake, None);
        let err = call(&host, "openai.chat", &ask()).unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{status}: {err:?}");
    }
    // `x-should-retry: false` overrides a 5xx.
    let fake = Fake::start(vec![(
        500,
        vec![("x-should-retry", "false".into())],
        "{}".into(),
    )]);
    let (host, _dir) = openai(&fake, None);
    assert!(matches!(
        call(&host, "openai.chat", &ask()),
        Err(PluginError::Permanent(_))
    ));
    // Bad input never reaches the server.
    let fake = Fake::start(vec![]);
    let (host, _dir) = openai(&fake, None);
    for input in [
        json!({"messages": []}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
    ] {
        assert!(
            matches!(
                call(&host, "openai.chat", &input),
                Err(PluginError::InvalidInput(_))
            ),
            "{input}"
        );
    }
    assert!(fake.requests().is_empty());
    let _ = &fake.answers;
}

#[test]
fn without_consent_to_ai_processing_the_engine_answers_denied_and_sends_nothing() {
    let fake = Fake::start(vec![(200, vec![], COMPLETION.to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url.clone();
    install(dir.path(), "openai", |m| {
        m.replace("https://api.openai.com", &url)
    });
    install(dir.path(), "consent", |m| m);
    // The default policy: openai.chat needs consent to `ai_processing`.
    let (host, _) = host_with(Arc::new(MemorySecrets::new()));
    for loaded in host.load_dir(dir.path()) {
        loaded.unwrap();
    }
    let denied = call(&host, "openai.chat", &ask()).unwrap();
    assert_eq!(denied.outcome, "denied");
    assert_eq!(output(&denied)["purpose"], "ai_processing");
    assert!(fake.requests().is_empty(), "nothing reached the model");
    // Refused consent: still denied. Granted: the call runs. Bo's consent is not Ada's.
    let record = |granted: bool| json!({"purpose": "ai_processing", "granted": granted});
    call(&host, "consent.record", &record(false)).unwrap();
    assert_eq!(
        call(&host, "openai.chat", &ask()).unwrap().outcome,
        "denied"
    );
    call(&host, "consent.record", &record(true)).unwrap();
    assert_eq!(call(&host, "openai.chat", &ask()).unwrap().outcome, "ok");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(
        call_as(&host, &user("bo"), "openai.chat", &ask())
            .unwrap()
            .outcome,
        "denied"
    );
    // A withdrawal (a refusal recorded later) takes effect on the next call.
    call(&host, "consent.record", &record(false)).unwrap();
    assert_eq!(
        call(&host, "openai.chat", &ask()).unwrap().outcome,
        "denied"
    );
    assert_eq!(fake.requests().len(), 1);
}
