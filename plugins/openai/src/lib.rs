//! The built-in `openai` plugin: `openai.chat` runs a Chat Completions request against OpenAI or
//! any OpenAI-compatible server (`POST {base_url}/v1/chat/completions`), with the conversation
//! context the flow passes, and optionally a JSON Schema for structured output, parsed into
//! `output.json` for the flow's variables.
//!
//! Every request says `store: false`: the provider keeps nothing beyond the interaction.
//!
//! Errors follow OpenAI's guidance: 429 `rate_limit_exceeded`, 408, 409 and 5xx are retryable
//! (with the server's `Retry-After` / `retry-after-ms` as `retry-after`, which the engine waits
//! out on its own timers: the plugin never sleeps; otherwise with the node's backoff); 429
//! `insufficient_quota` and 401 are not (the latter is a misconfiguration); `x-should-retry`
//! overrides. Error bodies of compatible servers are read leniently. A 200 whose body is not a
//! completion is not retried (the request was billed). A completion without content (the
//! model's `refusal`, a `content_filter` stop) is the outcome `refused`, never an empty answer.

use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The secret holding the API key.
const API_KEY: &str = "openai_api_key";

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    role: String,
    /// The text.
    content: String,
}

/// What to ask.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The model (default: the `model` setting).
    #[serde(default)]
    model: Option<String>,
    /// A system prompt, put first (the flow renders it as a template).
    #[serde(default)]
    system: Option<String>,
    /// The conversation so far, as the flow chooses to pass it (e.g. the last turns), oldest
    /// first.
    #[serde(default)]
    messages: Vec<Message>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    temperature: Option<f64>,
    /// The most tokens to generate.
    #[serde(default, alias = "max_tokens")]
    max_completion_tokens: Option<u32>,
    /// A JSON Schema the answer must follow (structured output); the parsed answer is
    /// `output.json`.
    #[serde(default)]
    json_schema: Option<serde_json::Value>,
    /// The schema's name (default `answer`).
    #[serde(default)]
    schema_name: Option<String>,
}

/// Token counts, when the server reports them.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Usage {
    /// Tokens of the prompt.
    #[serde(default)]
    prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    completion_tokens: u64,
}

/// The answer.
#[derive(Debug, Serialize, JsonSchema)]
struct Output {
    /// The answer's text (empty when the model gave none).
    text: String,
    /// The answer parsed as JSON, when a `json_schema` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
    /// Why the model declined, when it says (outcome `refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<String>,
    /// `stop`, `length`, `content_filter` ...
    finish_reason: String,
    /// The model that answered.
    model: String,
    /// Token counts, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

/// Chat Completions.
struct Chat;

impl Action for Chat {
    const NAME: &'static str = "chat";
    const DESCRIPTION: &'static str = "Chat Completions with an OpenAI-compatible server";
    /// `denied` is never produced by the plugin itself: the engine answers it when the user
    /// has not consented to AI processing (the call does not run). `refused`: the model gave
    /// no answer (its refusal, or a content filter), with `refusal` and `finish_reason`.
    const OUTCOMES: &'static [&'static str] = &["denied", "refused"];
    type Input = Input;
    type Output = Output;

    fn run(input: Input, ctx: &Context) -> Result<Outcome<Output>, Error> {
        let body = request_body(&input)?;
        let base = config::get_or("base_url", "https://api.openai.com");
        let url = format!("{}/v1/chat/completions", base.trim_end_matches('/'));
        let _ = ctx;
        // The model's own request timeout (`request_timeout_ms`, default 30 s), within the
        // call's budget: a slow model is cut short and retried, not waited on for a minute.
        let timeout = config::get_or("request_timeout_ms", "30000")
            .trim()
            .parse::<u32>()
            .map_err(|_| {
                Error::misconfigured(
                    "the setting `request_timeout_ms` is not a number of milliseconds",
                )
            })?;
        let mut request = http::post(&url).json(&body).timeout_ms(timeout);
        if secrets::available(API_KEY) {
            request = request.secret(API_KEY, http::Placement::Bearer);
        }
        let response = request.send()?;
        if response.is_success() {
            return answer(&response, input.json_schema.is_some());
        }
        Err(match classify(&response) {
            Failure::Retry {
                wait_ms: Some(wait),
            } => Error::retry_after(describe(&response), wait),
            Failure::Retry { wait_ms: None } => Error::retryable(describe(&response)),
            Failure::Permanent => Error::permanent(describe(&response)),
            Failure::Misconfigured => Error::misconfigured(describe(&response)),
        })
    }
}

influxify_plugin_sdk::plugin!(OpenAi: [Chat]);

/// The Chat Completions request for `input`.
fn request_body(input: &Input) -> Result<serde_json::Value, Error> {
    let mut messages = Vec::new();
    if let Some(system) = input.system.as_deref().filter(|s| !s.trim().is_empty()) {
        messages.push(serde_json::json!({"role": "system", "content": system}));
    }
    for message in &input.messages {
        if !matches!(
            message.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(Error::invalid_input(format!(
                "message role `{}` is not one of system, developer, user, assistant",
                message.role
            )));
        }
        messages.push(serde_json::json!({"role": message.role, "content": message.content}));
    }
    if messages.is_empty() {
        return Err(Error::invalid_input("there are no messages to send"));
    }
    let model = match &input.model {
        Some(model) => model.clone(),
        None => config::require("model")?,
    };
    // `store: false`: the provider keeps neither the request nor the answer (the privacy
    // policy's promise); servers that do not know the field ignore it.
    let mut body = serde_json::json!({"model": model, "messages": messages, "store": false});
    if let Some(temperature) = input.temperature {
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Error::invalid_input("temperature must be between 0 and 2"));
        }
        body["temperature"] = temperature.into();
    }
    if let Some(max) = input.max_completion_tokens {
        let field = config::get_or("max_tokens_field", "max_completion_tokens");
        body[field.as_str()] = max.into();
    }
    if let Some(schema) = &input.json_schema {
        // OpenAI's shape, or llama.cpp's server's (`json_object` with a `schema`), which does not
        // know `json_schema`.
        body["response_format"] = match config::get_or("response_format", "json_schema").as_str() {
            "json_object" => serde_json::json!({"type": "json_object", "schema": schema}),
            _ => serde_json::json!({
                "type": "json_schema",
                "json_schema": {
                    "name": input.schema_name.as_deref().unwrap_or("answer"),
                    "schema": schema,
                    "strict": true,
                }
            }),
        };
    }
    Ok(body)
}

/// What came back, read leniently.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

fn answer(response: &http::Response, structured: bool) -> Result<Outcome<Output>, Error> {
    // The request was billed: a body that is not a completion is not asked for again.
    let completion: Completion = response
        .json()
        .map_err(|e| Error::permanent(format!("the server's answer is not a completion: {e}")))?;
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(Error::permanent("the server answered with no choices"));
    };
    let finish_reason = choice.finish_reason.unwrap_or_else(|| "stop".to_string());
    let (content, refusal) = choice
        .message
        .map(|m| (m.content, m.refusal))
        .unwrap_or_default();
    let text = match content.filter(|c| !c.trim().is_empty()) {
        Some(text) if finish_reason != "content_filter" => text,
        _ => {
            return Ok(Outcome::named(
                "refused",
                Output {
                    text: String::new(),
                    json: None,
                    refusal,
                    finish_reason,
                    model: completion.model,
                    usage: completion.usage,
                },
            ));
        }
    };
    let json = if structured {
        Some(serde_json::from_str(&text).map_err(|e| {
            Error::retryable(format!("the answer does not follow the JSON schema: {e}"))
        })?)
    } else {
        None
    };
    Ok(Outcome::ok(Output {
        text,
        json,
        refusal: None,
        finish_reason,
        model: completion.model,
        usage: completion.usage,
    }))
}

/// How a failed request is treated.
#[derive(Debug, PartialEq)]
enum Failure {
    /// Try again, after `wait_ms` if the server said how long.
    Retry { wait_ms: Option<u64> },
    /// Trying again will not help.
    Permanent,
    /// The key or the account is wrong: tell an operator.
    Misconfigured,
}

/// The error's `code` and `type`, from OpenAI's shape (`{"error": {...}}`) or older vLLM's
/// (`{"object": "error", ...}`); codes may be strings or numbers.
fn error_code(response: &http::Response) -> (String, String) {
    let body: serde_json::Value = response.json().unwrap_or_default();
    let error = if body["error"].is_object() {
        &body["error"]
    } else {
        &body
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    (text(&error["code"]), text(&error["type"]))
}

fn classify(response: &http::Response) -> Failure {
    let (code, kind) = error_code(response);
    if let Some(should) = response.header("x-should-retry") {
        return if should.eq_ignore_ascii_case("true") {
            Failure::Retry {
                wait_ms: retry_after_ms(response),
            }
        } else if response.status == 401 {
            Failure::Misconfigured
        } else {
            Failure::Permanent
        };
    }
    match response.status {
        401 => Failure::Misconfigured,
        429 if code == "insufficient_quota" || kind == "insufficient_quota" => Failure::Permanent,
        408 | 409 | 429 | 500.. => Failure::Retry {
            wait_ms: retry_after_ms(response),
        },
        _ => Failure::Permanent,
    }
}

/// How long the server asks to wait: `retry-after-ms`, or `Retry-After` in seconds.
fn retry_after_ms(response: &http::Response) -> Option<u64> {
    if let Some(ms) = response
        .header("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(ms.max(0.0) as u64);
    }
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| (s.max(0.0) * 1000.0) as u64)
}

/// The error for people: status and the server's message.
fn describe(response: &http::Response) -> String {
    let body: serde_json::Value = response.json().unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .or_else(|| body["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| response.text().chars().take(200).collect());
    let (code, _) = error_code(response);
    if code.is_empty() {
        format!(
            "OpenAI-compatible server answered {}: {message}",
            response.status
        )
    } else {
        format!(
            "OpenAI-compatible server answered {} ({code}): {message}",
            response.status
        )
    }
}
