//! The admin API and the privacy operations through the real `influxify serve`: API keys and
//! scopes, secrets sealed at rest (the data directory never holds their plaintext), export and
//! erasure of an end user (an export afterwards finds nothing), restriction, the in-chat
//! "delete my data", flow publishing with the validator's diagnostics and rollback, and an
//! OpenAPI document whose every endpoint exists.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use sha2::Digest;

use crate::served::{Served, WebChatUser, http, serve_with};
use crate::{built_plugins, root};

const FLOW: &str = r#"
id: hello
start: ask_name
nodes:
  ask_name: { kind: ask, prompt: "What's your name?", store: name, next: consent }
  consent:
    kind: plugin
    action: consent.record
    input: { purpose: analytics, granted: true }
    on: { ok: greet, error: greet }
  greet: { kind: message, text: "Nice to meet you, {{ name }}.", next: wait }
  wait: { kind: wait, for: 1h, next: later }
  later: { kind: end, text: "Still there?" }
"#;

const ADMIN_KEY: &str = "ifx_admin-key-for-the-tests";
const READ_KEY: &str = "ifx_read-only-key-for-the-tests";
const SECRET: &str = "sk-test-PLAINTEXT-4711-do-not-store";
const WAIT: Duration = Duration::from_secs(20);

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn start(work: &Path) -> Served {
    let flows = work.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("hello.yaml"), FLOW).unwrap();
    let plugins = work.join("plugins/consent");
    std::fs::create_dir_all(&plugins).unwrap();
    let built = built_plugins(&["consent"]);
    std::fs::copy(built.join("consent.wasm"), plugins.join("consent.wasm")).unwrap();
    std::fs::copy(
        root().join("plugins/consent/plugin.toml"),
        plugins.join("plugin.toml"),
    )
    .unwrap();
    let config = format!(
        "[bot]\nflows = \"flows\"\nentry = \"hello\"\n[plugins]\ndir = \"plugins\"\n[store]\ndata = \"data\"\n\
         [[admin.keys]]\nname = \"ops\"\nscope = \"admin\"\nsha256 = \"{}\"\n\
         [[admin.keys]]\nname = \"viewer\"\nscope = \"read\"\nsha256 = \"{}\"\n",
        sha256(ADMIN_KEY),
        sha256(READ_KEY)
    );
    std::fs::write(work.join("influxify.toml"), config).unwrap();
    let args: Vec<OsString> = vec!["--config".into(), work.join("influxify.toml").into()];
    serve_with(&args, &[])
}

/// An admin API call with `key`: status and JSON body.
fn call(
    served: &Served,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut headers = Vec::new();
    if let Some(key) = key {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("content-type", "application/json".to_string()));
    }
    let (status, text) = http(&served.addr, method, path, &headers, body.as_bytes());
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Every file under `dir`, read as bytes, contains `needle`?
fn found_in_files(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn admins_manage_versions_secrets_and_end_users_data() {
    let work = tempfile::tempdir().unwrap();
    let served = start(work.path());

    // Keys and scopes.
    let (status, _) = call(&served, None, "GET", "/admin/v1/versions", None);
    assert_eq!(status, 401);
    let (status, _) = call(
        &served,
        Some("ifx_wrong"),
        "GET",
        "/admin/v1/versions",
        None,
    );
    assert_eq!(status, 401);
    let (status, versions) = call(&served, Some(READ_KEY), "GET", "/admin/v1/versions", None);
    assert_eq!(status, 200, "{versions}");
    assert_eq!(versions.as_array().unwrap().len(), 1);
    let first = versions[0]["hash"].as_str().unwrap().to_string();
    let (status, answer) = call(
        &served,
        Some(READ_KEY),
        "PUT",
        "/admin/v1/secrets/openai_api_key",
        Some(serde_json::json!({ "value": SECRET })),
    );
    assert_eq!(status, 403, "{answer}");

    // A secret: set (write-only), listed by name, sealed at rest.
    let (status, answer) = call(
        &served,
        Some(ADMIN_KEY),
        "PUT",
        "/admin/v1/secrets/openai_api_key",
        Some(serde_json::json!({ "value": SECRET })),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, secrets) = call(&served, Some(READ_KEY), "GET", "/admin/v1/secrets", None);
    assert_eq!(status, 200);
    // The web chat's session key is a sealed secret too.
    assert_eq!(
        secrets,
        serde_json::json!([
            { "name": "openai_api_key", "origin": "stored" },
            { "name": "webchat_session_key", "origin": "stored" }
        ])
    );
    assert!(!secrets.to_string().contains(SECRET));
    let leaks = found_in_files(&work.path().join("data"), SECRET.as_bytes());
    assert!(leaks.is_empty(), "plaintext secret found in {leaks:?}");

    // An end user talks to the bot; the consent plugin stores a record about them.
    let mut ada = WebChatUser::open(&served.addr);
    ada.say("hi");
    assert_eq!(ada.replies(1, WAIT), ["What's your name?"]);
    ada.say("Ada Lovelace");
    assert_eq!(ada.replies(1, WAIT), ["Nice to meet you, Ada Lovelace."]);
    let user_path = format!("/admin/v1/users/webchat/{}", ada.user);

    let (status, listed) = call(
        &served,
        Some(READ_KEY),
        "GET",
        "/admin/v1/conversations?flow=hello&node=wait",
        None,
    );
    assert_eq!(status, 200);
    assert!(listed.to_string().contains(&ada.user), "{listed}");
    let (status, detail) = call(
        &served,
        Some(READ_KEY),
        "GET",
        &format!("/admin/v1/conversations/webchat/{}", ada.user),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(detail["timers"].as_array().unwrap().len(), 1, "{detail}");

    // Export: everything about Ada, as one JSON document (admin scope only).
    let (status, _) = call(&served, Some(READ_KEY), "GET", &user_path, None);
    assert_eq!(status, 403);
    let (status, export) = call(&served, Some(ADMIN_KEY), "GET", &user_path, None);
    assert_eq!(status, 200, "{export}");
    assert_eq!(
        export["conversation"]["variables"]["name"], "Ada Lovelace",
        "{export}"
    );
    assert_eq!(export["timers"].as_array().unwrap().len(), 1);
    let consent = export["plugin_data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["plugin"] == "consent")
        .unwrap_or_else(|| panic!("no consent record in {export}"));
    assert!(consent.to_string().contains("analytics"), "{consent}");
    // Without `transcript_ttl`, message text is not kept beyond its turn.
    assert_eq!(export["transcript"], serde_json::json!([]), "{export}");

    // Erase: all of it, and the audit keeps only that an erasure happened.
    let (status, erased) = call(&served, Some(ADMIN_KEY), "DELETE", &user_path, None);
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["conversation"], true);
    assert_eq!(erased["timers"], 1);
    assert!(erased["plugin_entries"].as_u64().unwrap() >= 1, "{erased}");
    let (_, after) = call(&served, Some(ADMIN_KEY), "GET", &user_path, None);
    assert!(after["conversation"].is_null(), "{after}");
    for part in ["inbox", "outbox", "timers", "plugin_data"] {
        assert_eq!(after[part], serde_json::json!([]), "{part}: {after}");
    }
    // The only audit entry about Ada is the export just made.
    assert_eq!(after["audit"].as_array().unwrap().len(), 1, "{after}");
    let (_, audit) = call(&served, Some(ADMIN_KEY), "GET", "/admin/v1/audit", None);
    let erase = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "erase")
        .unwrap_or_else(|| panic!("no erasure in {audit}"));
    assert_eq!(erase["actor"], "ops");
    assert!(!erase.to_string().contains(&ada.user), "{erase}");
    assert!(!erase.to_string().contains("Ada"), "{erase}");
    assert!(audit.to_string().contains("secret.set"), "{audit}");

    // Restriction: acknowledged, not processed, until lifted.
    let mut bob = WebChatUser::open(&served.addr);
    let restriction = format!("/admin/v1/users/webchat/{}/restriction", bob.user);
    let (status, _) = call(&served, Some(ADMIN_KEY), "PUT", &restriction, None);
    assert_eq!(status, 200);
    let (status, posted) = bob.post(serde_json::json!({ "text": "hi" }));
    assert_eq!((status, &posted["restricted"]), (202, &true.into()));
    assert!(bob.next_event(Duration::from_millis(700)).is_none());
    let (status, _) = call(&served, Some(ADMIN_KEY), "DELETE", &restriction, None);
    assert_eq!(status, 200);
    bob.say("hi");
    assert_eq!(bob.replies(1, WAIT), ["What's your name?"]);

    // In-chat: "delete my data" erases and confirms.
    bob.say("Bob");
    assert_eq!(bob.replies(1, WAIT), ["Nice to meet you, Bob."]);
    bob.say("Delete my data");
    let confirmed = bob.replies(1, WAIT);
    assert!(
        confirmed[0].starts_with("Done: everything we stored about you has been deleted"),
        "{confirmed:?}"
    );
    let (_, gone) = call(
        &served,
        Some(ADMIN_KEY),
        "GET",
        &format!("/admin/v1/users/webchat/{}", bob.user),
        None,
    );
    assert!(
        gone["conversation"].is_null() && gone["plugin_data"] == serde_json::json!([]),
        "{gone}"
    );
    // Writing again starts afresh (the replies of the erased conversation are forgotten, and
    // the new one's are not mistaken for them).
    bob.say("hi");
    assert_eq!(bob.replies(1, WAIT), ["What's your name?"]);

    // Publishing: an invalid version is refused with diagnostics, a valid one becomes the head,
    // and a rollback brings the first back.
    let broken = FLOW.replace("next: consent", "next: consnet");
    let (status, refused) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        "/admin/v1/versions",
        Some(serde_json::json!({ "files": { "hello.yaml": broken } })),
    );
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["diagnostics"].to_string().contains("consent"),
        "{refused}"
    );
    let changed = FLOW.replace("What's your name?", "Who are you?");
    let (status, published) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        "/admin/v1/versions",
        Some(serde_json::json!({ "files": { "hello.yaml": changed }, "stranded": "keep" })),
    );
    assert_eq!(status, 201, "{published}");
    let mut carol = WebChatUser::open(&served.addr);
    carol.say("hi");
    assert_eq!(carol.replies(1, WAIT), ["Who are you?"]);
    let (status, _) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        &format!("/admin/v1/versions/{first}/rollback"),
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        "/admin/v1/versions/no-such-version/rollback",
        None,
    );
    assert_eq!(status, 404);
    let mut dan = WebChatUser::open(&served.addr);
    dan.say("hi");
    assert_eq!(dan.replies(1, WAIT), ["What's your name?"]);
    // Carol stays on the version she started on.
    carol.say("Carol");
    assert_eq!(carol.replies(1, WAIT), ["Nice to meet you, Carol."]);
    // An operator speaks to her.
    let (status, answer) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        &format!("/admin/v1/conversations/webchat/{}/messages", carol.user),
        Some(serde_json::json!({ "text": "Hello from a human." })),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(carol.replies(1, WAIT), ["Hello from a human."]);
    let (status, _) = call(
        &served,
        Some(ADMIN_KEY),
        "POST",
        &format!(
            "/admin/v1/conversations/webchat/{}/effects/retry",
            carol.user
        ),
        None,
    );
    assert_eq!(status, 409, "nothing failed, so there is nothing to retry");

    // Bad input changes nothing.
    let (status, _) = call(
        &served,
        Some(ADMIN_KEY),
        "PUT",
        "/admin/v1/secrets/BAD%20NAME",
        Some(serde_json::json!({ "value": "x" })),
    );
    assert_eq!(status, 422);
    let (status, _) = http(
        &served.addr,
        "POST",
        "/admin/v1/versions",
        &[
            ("authorization", format!("Bearer {ADMIN_KEY}")),
            ("content-type", "application/json".into()),
        ],
        b"{not json",
    );
    assert_eq!(status, 400);

    // The OpenAPI document lists every route, and each exists (401 without a key, not 404).
    let (status, document) = call(&served, None, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{paths:?}");
    assert!(document["components"]["schemas"]["Export"].is_object());
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let concrete = path
                .replace("{channel}", "webchat")
                .replace("{user}", "nobody")
                .replace("{hash}", "x")
                .replace("{name}", "x");
            let (status, _) = call(&served, None, &method.to_uppercase(), &concrete, None);
            assert_eq!(status, 401, "{method} {path}");
        }
    }
}
