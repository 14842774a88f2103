//! Transcripts are opt-in: with `[privacy] transcript_ttl` set, what the user and the bot said
//! is kept, exported with the rest of the user's data, and erased with it.

use std::ffi::OsString;
use std::time::Duration;

use sha2::Digest;

use crate::served::{WebChatUser, http, serve_with};

const FLOW: &str = r#"
id: hello
start: ask_name
nodes:
  ask_name: { kind: ask, prompt: "What's your name?", store: name, next: greet }
  greet: { kind: message, text: "Nice to meet you, {{ name }}.", next: done }
  done: { kind: end }
"#;

const KEY: &str = "ifx_transcripts-test-key";

fn call(addr: &str, method: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(
        addr,
        method,
        path,
        &[("authorization", format!("Bearer {KEY}"))],
        b"",
    );
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_bot_that_opts_in_keeps_transcripts_until_they_are_erased() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("flows")).unwrap();
    std::fs::write(work.path().join("flows/hello.yaml"), FLOW).unwrap();
    let hash: String = sha2::Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        work.path().join("influxify.toml"),
        format!(
            "[bot]\nflows = \"flows\"\n[store]\ndata = \"data\"\n[plugins]\ndir = \"plugins\"\n\
             [privacy]\ntranscript_ttl = \"30d\"\n\
             [[admin.keys]]\nname = \"ops\"\nscope = \"admin\"\nsha256 = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let args: Vec<OsString> = vec!["--config".into(), work.path().join("influxify.toml").into()];
    let served = serve_with(&args, &[]);
    let wait = Duration::from_secs(20);

    let mut ada = WebChatUser::open(&served.addr);
    ada.say("hi");
    assert_eq!(ada.replies(1, wait), ["What's your name?"]);
    ada.say("Ada");
    assert_eq!(ada.replies(1, wait), ["Nice to meet you, Ada."]);

    let path = format!("/admin/v1/users/webchat/{}", ada.user);
    let export = call(&served.addr, "GET", &path);
    let lines: Vec<(String, String)> = export["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["from"].as_str().unwrap().to_string(),
                l["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("user", "hi"),
        ("bot", "What's your name?"),
        ("user", "Ada"),
        ("bot", "Nice to meet you, Ada."),
    ] {
        assert!(
            lines.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {lines:?}"
        );
    }
    assert_eq!(lines.len(), 4, "{lines:?}");

    let erased = call(&served.addr, "DELETE", &path);
    assert_eq!(erased["transcript_lines"], 4, "{erased}");
    let after = call(&served.addr, "GET", &path);
    assert_eq!(after["transcript"], serde_json::json!([]), "{after}");
}
