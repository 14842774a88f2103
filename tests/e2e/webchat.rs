//! The web chat channel through the real `influxify serve`: a page opens a session, posts
//! messages and reads the bot's replies from the server-sent event stream; a retried post is
//! processed once, users do not see each other's replies, a reconnecting page gets what it
//! missed, and bad requests are refused with a clear error.

use std::time::Duration;

use crate::served::{WebChatUser, http, serve};

const FLOW: &str = r#"
id: hello
start: ask_name
nodes:
  ask_name: { kind: ask, prompt: "Hi {{ user.first_name | default('there') }}! What's your name?", store: name, next: greet }
  greet: { kind: message, text: "Nice to meet you, {{ name }}.", typing: 200ms, next: echo }
  echo:
    kind: ask
    prompt: Say something.
    quick_replies: [{ title: Yes, payload: YES }, { title: No, payload: NO }]
    store: said
    next: said
  said: { kind: message, text: "You said {{ said }}.", next: echo }
"#;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_page_chats_with_the_bot_over_the_web_chat_channel() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("flows")).unwrap();
    std::fs::write(work.path().join("flows/hello.yaml"), FLOW).unwrap();
    let served = serve(work.path(), "hello", &work.path().join("plugins"), &[]);

    let mut ada = WebChatUser::open(&served.addr);
    ada.say("hi");
    assert_eq!(ada.replies(1, WAIT), ["Hi there! What's your name?"]);
    ada.say("Ada");
    // A typing indicator, then the message, then the next question with its quick replies.
    let typing = ada.next_event(WAIT).unwrap();
    let boot = typing.id.split('-').next().unwrap().to_string();
    assert_eq!(typing.id, format!("{boot}-2"));
    assert_eq!(
        (typing.event.as_str(), &typing.data["ms"]),
        ("typing", &200.into())
    );
    assert_eq!(ada.replies(1, WAIT), ["Nice to meet you, Ada."]);
    let question = ada.next_event(WAIT).unwrap();
    assert_eq!(question.data["text"], "Say something.");
    assert_eq!(question.data["quick_replies"][0]["payload"], "YES");

    // A tapped quick reply, posted twice by a page that retried: processed once.
    let tap = serde_json::json!({ "text": "Yes", "payload": "YES", "id": "tap-1" });
    let (status, first) = ada.post(tap.clone());
    assert_eq!((status, &first["duplicate"]), (202, &false.into()));
    let (status, again) = ada.post(tap);
    assert_eq!((status, &again["duplicate"]), (202, &true.into()));
    // The tap's payload is the answer, not its title.
    assert_eq!(ada.replies(2, WAIT), ["You said YES.", "Say something."]);
    assert!(
        ada.next_event(Duration::from_millis(800)).is_none(),
        "the retried post was processed once"
    );

    // Another user has a conversation of their own; Ada's page sees none of it.
    // Bob's page knows his name: the flow reads it as `user.first_name`.
    let mut bob = WebChatUser::open_with(&served.addr, br#"{"profile": {"first_name": "Bob"}}"#);
    bob.say("hello");
    assert_eq!(bob.replies(1, WAIT), ["Hi Bob! What's your name?"]);
    assert!(ada.next_event(Duration::from_millis(500)).is_none());

    // A page that reconnects after the third event gets everything after it, in order.
    ada.reconnect(Some(&format!("{boot}-3")));
    let first = ada.next_event(WAIT).unwrap();
    assert_eq!(first.id, format!("{boot}-4"));
    assert_eq!(first.data["text"], "Say something.");
    // The tap's payload is the answer, not its title.
    assert_eq!(ada.replies(2, WAIT), ["You said YES.", "Say something."]);

    // Bad requests: refused with a clear error, and nothing is processed.
    let token = ("authorization", format!("Bearer {}", ada.token));
    let json = ("content-type", "application/json".to_string());
    let forged = format!("Bearer {}{}", &bob.user, &ada.token[ada.user.len()..]);
    type Case<'a> = (Vec<(&'a str, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![json.clone()],
            br#"{"text":"x"}"#.to_vec(),
            401,
            "token",
        ),
        (
            vec![("authorization", forged), json.clone()],
            br#"{"text":"x"}"#.to_vec(),
            401,
            "not valid",
        ),
        (
            vec![token.clone()],
            br#"{"text":"x"}"#.to_vec(),
            415,
            "JSON",
        ),
        (
            vec![token.clone(), json.clone()],
            b"{\"text\": ".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            vec![token.clone(), json.clone()],
            br#"{"txt":"x"}"#.to_vec(),
            400,
            "unknown field",
        ),
        (
            vec![token.clone(), json.clone()],
            br#"{"text":"   "}"#.to_vec(),
            422,
            "needs a `text`",
        ),
        (
            vec![token.clone(), json.clone()],
            serde_json::json!({ "text": "x".repeat(5000) })
                .to_string()
                .into_bytes(),
            422,
            "at most 4096",
        ),
        (
            vec![token.clone(), json.clone()],
            vec![b' '; 2 * 1024 * 1024],
            413,
            "",
        ),
    ];
    for (headers, body, status, why) in cases {
        let (got, answer) = http(&served.addr, "POST", "/webchat/messages", &headers, &body);
        assert_eq!(got, status, "{answer}");
        assert!(answer.contains(why), "{status}: {answer}");
    }
    let (status, answer) = http(
        &served.addr,
        "GET",
        "/webchat/events?token=nope.nope",
        &[],
        b"",
    );
    assert_eq!(status, 401, "{answer}");
    assert!(
        ada.next_event(Duration::from_millis(500)).is_none(),
        "nothing was processed"
    );
}

/// A reply the page had not read when the server was killed (SIGKILL) reaches it once after the
/// restart: the replay buffer is on disk, with the same event ids, and `Last-Event-ID` from
/// before the kill still counts.
#[test]
fn a_reply_the_page_had_not_read_survives_a_kill() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("flows")).unwrap();
    std::fs::write(work.path().join("flows/hello.yaml"), FLOW).unwrap();
    let plugins = work.path().join("plugins");
    let served = serve(work.path(), "hello", &plugins, &[]);
    let mut ada = WebChatUser::open(&served.addr);
    ada.say("hi");
    assert_eq!(ada.replies(1, WAIT), ["Hi there! What's your name?"]);
    let read = ada.last_id.clone().unwrap();
    // The page stops reading (its tab is asleep); another tab of the same session sees the
    // replies go out, so they were delivered before the kill.
    ada.say("Ada");
    let mut tab = WebChatUser::resume(&served.addr, &ada.token, Some(&read));
    assert_eq!(
        tab.replies(2, WAIT),
        ["Nice to meet you, Ada.", "Say something."]
    );
    let delivered = tab.last_id.clone().unwrap();
    let token = ada.token.clone();
    drop(tab);
    drop(ada);
    drop(served); // SIGKILL

    let served = serve(work.path(), "hello", &plugins, &[]);
    let mut page = WebChatUser::resume(&served.addr, &token, Some(&read));
    let mut events = Vec::new();
    while let Some(event) = page.next_event(Duration::from_secs(2)) {
        events.push(event);
    }
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.data["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        ["Nice to meet you, Ada.", "Say something."],
        "{events:?}"
    );
    assert_eq!(
        events.last().unwrap().id,
        delivered,
        "the same ids after the restart"
    );
}
