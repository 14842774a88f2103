//! A bot asks a real language model: `influxify serve` with the built-in `openai` and `consent`
//! plugins against llama.cpp's OpenAI-compatible server (installed by `cargo xtask test`)
//! serving SmolLM2-135M, chatting over the web chat channel. Only the user who consented to AI
//! processing reaches the model.
//! It asserts on the shape of the answers and on the flow's routing, not on clever content.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::served::{WebChatUser, serve};
use crate::{KillOnDrop, built_plugins, free_port, root};

const FLOW: &str = r#"
id: ask
start: ask_consent
nodes:
  ask_consent:
    kind: ask
    prompt: May an AI model answer your questions?
    validate:
      type: choice
      choices:
        - { title: "Yes", value: "yes" }
        - { title: "No", value: "no" }
    store: consent_answer
    next: record
  record:
    kind: plugin
    action: consent.record
    input: { purpose: ai_processing, granted: "{{ consent_answer == 'yes' }}" }
    on: { ok: question, error: failed }
  question:
    kind: ask
    prompt: Ask me anything.
    store: question
    next: llm
  llm:
    kind: plugin
    action: openai.chat
    input:
      system: "You are a helpful assistant. Answer in one short sentence."
      messages:
        - role: user
          content: "{{ question }}"
      temperature: 0
      max_completion_tokens: 24
    outputs:
      answer: "output.text | trim"
      reason: output.finish_reason
    retry: { attempts: 2, backoff: 1s }
    on: { ok: structured, denied: no_ai, error: failed }
  structured:
    kind: plugin
    action: openai.chat
    input:
      messages:
        - role: user
          content: "Give the capital of France as JSON."
      temperature: 0
      max_completion_tokens: 40
      json_schema:
        type: object
        properties: { city: { type: string } }
        required: [city]
    outputs:
      city: output.json.city
    on: { ok: reply, error: failed }
  reply:
    kind: message
    text: "ANSWER[{{ answer }}] REASON[{{ reason }}] CITY[{{ city }}]"
    next: done
  no_ai:
    kind: message
    text: "NO_AI"
    next: done
  failed:
    kind: message
    text: "FAILED"
    next: done
  done:
    kind: end
"#;

/// The llama.cpp server, stopped when dropped.
struct LlamaServer {
    _process: KillOnDrop,
    port: u16,
}

/// Where `cargo xtask test` installed the server and the model.
fn installed() -> (PathBuf, PathBuf) {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let python = std::env::var_os("INFLUXIFY_LLM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/influxify/llm/venv/bin/python"));
    let model = std::env::var_os("INFLUXIFY_LLM_MODEL").map(PathBuf::from);
    assert!(
        python.is_file(),
        "no llama.cpp server at {}: run `cargo xtask test`, which installs it",
        python.display()
    );
    let model = model.unwrap_or_else(|| {
        let found = Command::new(&python)
            .args(["-c", "import pathlib, sysconfig; print(next(pathlib.Path(sysconfig.get_paths()['purelib']).rglob('SmolLM2-135M-Instruct.Q4_1.gguf')))"])
            .output()
            .expect("python runs");
        PathBuf::from(String::from_utf8_lossy(&found.stdout).trim())
    });
    assert!(
        model.is_file(),
        "no model at {}: run `cargo xtask test`",
        model.display()
    );
    (python, model)
}

fn start_server() -> LlamaServer {
    let (python, model) = installed();
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--n_ctx",
            "1024",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the llama.cpp server starts");
    let server = LlamaServer {
        _process: KillOnDrop(child),
        port,
    };
    let began = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "the llama.cpp server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// The built openai plugin, pointed at `port`, in `plugins/openai/`, and the consent plugin.
fn install_openai(plugins: &Path, port: u16) {
    let sources = root().join("plugins");
    let built = built_plugins(&["openai", "consent"]);
    let dir = plugins.join("openai");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built.join("openai.wasm"), dir.join("openai.wasm")).unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    let manifest = std::fs::read_to_string(sources.join("openai/plugin.toml"))
        .unwrap()
        .replace("https://api.openai.com", &origin)
        .replace("\"max_completion_tokens\"", "\"max_tokens\"")
        .replace(
            "response_format = \"json_schema\"",
            "response_format = \"json_object\"",
        )
        .replace("time_ms = 60000", "time_ms = 30000");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    // The engine runs openai.chat only for users who consented to AI processing: the flow
    // records the consent first, through the consent plugin.
    let consent = plugins.join("consent");
    std::fs::create_dir_all(&consent).unwrap();
    std::fs::copy(built.join("consent.wasm"), consent.join("consent.wasm")).unwrap();
    std::fs::copy(
        sources.join("consent/plugin.toml"),
        consent.join("plugin.toml"),
    )
    .unwrap();
}

#[test]
fn a_served_bot_asks_a_real_model_only_for_users_who_consented() {
    let server = start_server();
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    install_openai(&plugins, server.port);
    let flows = work.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("ask.yaml"), FLOW).unwrap();
    let served = serve(work.path(), "ask", &plugins, &[]);
    let wait = Duration::from_secs(60);

    // Ada agrees: her question goes to the model, and the flow routes on its answer.
    let mut ada = WebChatUser::open(&served.addr);
    ada.say("hi");
    assert_eq!(
        ada.replies(1, wait),
        ["May an AI model answer your questions?"]
    );
    assert_eq!(
        ada.post(serde_json::json!({"text": "Yes", "payload": "yes"}))
            .0,
        202
    );
    assert_eq!(ada.replies(1, wait), ["Ask me anything."]);
    let asked = Instant::now();
    ada.say("What colour is the sky on a clear day?");
    let text = ada.replies(1, wait).pop().unwrap_or_default();
    let answer = text
        .split("ANSWER[")
        .nth(1)
        .unwrap_or_else(|| panic!("the flow did not reach its reply: {text}"))
        .split("] REASON[")
        .next()
        .unwrap();
    assert!(
        !answer.trim().is_empty(),
        "the model answered nothing: {text}"
    );
    assert!(
        text.contains("REASON[stop]") || text.contains("REASON[length]"),
        "{text}"
    );
    let city = text.split("CITY[").nth(1).unwrap().trim_end_matches(']');
    assert!(
        !city.trim().is_empty(),
        "structured output mapped into a flow variable: {text}"
    );
    eprintln!("LLM flow answered in {:?}: {text}", asked.elapsed());

    // Bob declines: the flow reaches the same node, and the engine takes its `denied` edge
    // without calling the model.
    let mut bob = WebChatUser::open(&served.addr);
    bob.say("hi");
    assert_eq!(
        bob.replies(1, wait),
        ["May an AI model answer your questions?"]
    );
    assert_eq!(
        bob.post(serde_json::json!({"text": "No", "payload": "no"}))
            .0,
        202
    );
    assert_eq!(bob.replies(1, wait), ["Ask me anything."]);
    bob.say("What colour is the sky on a clear day?");
    assert_eq!(bob.replies(1, wait), ["NO_AI"]);
}
