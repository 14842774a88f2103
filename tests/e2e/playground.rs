//! The playground in a real browser: `influxify serve` serves the page, Debian's headless
//! chromium (driven through chromedriver's WebDriver API) loads it, chats with the bot, and the
//! test checks the replies, the highlighted node following the conversation (into a subflow
//! too), the variables, picking another flow, and a reset. The playground's JSON API is checked
//! directly first: its shape and its refusals.

use std::time::Duration;

use serde_json::{Value, json};

use crate::served::{http, serve};
use crate::webdriver::{Browser, Driver};

/// The entry flow; it calls `feedback`, which sorts first, so the page must not just draw
/// the first flow.
const HELLO: &str = r#"
id: hello
title: Hello
start: ask_name
nodes:
  ask_name: { kind: ask, prompt: "What's your name?", store: name, next: greet }
  greet: { kind: message, text: "Nice to meet you, {{ name }}.", next: ask_colour }
  ask_colour:
    kind: ask
    prompt: Pick a colour.
    quick_replies: [{ title: Red, payload: RED }, { title: Blue, payload: BLUE }]
    store: colour
    next: thanks
  thanks: { kind: message, text: "{{ colour }} it is.", next: feedback }
  feedback: { kind: call, flow: feedback, next: bye }
  bye: { kind: end, text: Bye! }
"#;

const FEEDBACK: &str = r#"
id: feedback
start: rate
nodes:
  rate: { kind: ask, prompt: "How was it, from 1 to 5?", store: rating, next: done }
  done: { kind: end }
"#;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_designer_chats_with_a_flow_and_watches_it_move_in_the_browser() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("flows")).unwrap();
    std::fs::write(work.path().join("flows/hello.yaml"), HELLO).unwrap();
    std::fs::write(work.path().join("flows/feedback.yaml"), FEEDBACK).unwrap();
    let served = serve(work.path(), "hello", &work.path().join("plugins"), &[]);
    check_api(&served.addr);

    let browser = Browser::open(Driver::start());
    browser.goto(&format!("http://{}/playground", served.addr));
    browser.wait_for("the web chat session", WAIT, |b| {
        b.find("body[data-session='open']")
    });
    // The entry flow is drawn, every node a box, edges labelled; nothing is highlighted yet.
    assert_eq!(picked(&browser), "hello");
    let nodes = browser.find_all("svg[data-flow='hello'] .box[data-node]");
    assert_eq!(nodes.len(), 6);
    assert!(browser.texts("#graph .edge text").contains(&"next".into()));
    assert_eq!(current(&browser), None);

    say(&browser, "hi");
    wait_replies(&browser, &["What's your name?"]);
    wait_current(&browser, "ask_name");
    assert_eq!(
        text_of(&browser, "#state-status"),
        "active, waiting for reply"
    );

    say(&browser, "Ada");
    wait_replies(
        &browser,
        &[
            "What's your name?",
            "Nice to meet you, Ada.",
            "Pick a colour.",
        ],
    );
    wait_current(&browser, "ask_colour");
    wait_variable(&browser, "name", "Ada");

    // A quick reply is a button; tapping it sends its payload, and the conversation goes into
    // the `feedback` subflow: the page follows it there.
    let chips = browser.wait_for("the quick replies", WAIT, |b| {
        let chips = b.find_all("#quick-replies button");
        (chips.len() == 2).then_some(chips)
    });
    assert_eq!(browser.text(&chips[0]), "Red");
    assert_eq!(
        browser.attribute(&chips[0], "data-payload").as_deref(),
        Some("RED")
    );
    browser.click(&chips[0]);
    wait_replies(
        &browser,
        &[
            "What's your name?",
            "Nice to meet you, Ada.",
            "Pick a colour.",
            // The tap's payload is the answer (its title only beside it).
            "RED it is.",
            "How was it, from 1 to 5?",
        ],
    );
    browser.wait_for("the page to follow into `feedback`", WAIT, |b| {
        (picked(b) == "feedback").then_some(())
    });
    wait_current(&browser, "rate");
    wait_variable(&browser, "colour", "RED");
    assert!(browser.find("#quick-replies button").is_none());

    // Picking the calling flow by hand draws it, without a highlight: the conversation is in
    // the subflow. Picking the subflow again shows where it is.
    pick(&browser, "hello");
    browser.wait_for("the `hello` drawing", WAIT, |b| {
        b.find("svg[data-flow='hello']")
    });
    assert_eq!(current(&browser), None);
    pick(&browser, "feedback");
    wait_current(&browser, "rate");

    // Reset: the chat and the variables are cleared, and the next message starts over.
    browser.click(&browser.find("#reset").unwrap());
    browser.wait_for("the reset", WAIT, |b| {
        let variables = text_of(b, "#variables");
        (b.find("#messages li.bot").is_none()
            && !variables.contains("Ada")
            && text_of(b, "#state-node") == "–"
            && current(b).is_none())
        .then_some(())
    });
    assert_eq!(picked(&browser), "hello", "back in the entry flow");
    say(&browser, "hello again");
    wait_replies(&browser, &["What's your name?"]);
    wait_current(&browser, "ask_name");
}

/// The playground's JSON API, without a browser: the flows as drawn, and its refusals.
fn check_api(addr: &str) {
    let (status, page) = http(addr, "GET", "/playground", &[], b"");
    assert_eq!(status, 200);
    assert!(page.contains("/playground/app.js"), "{page}");
    for asset in ["/playground/app.js", "/playground/style.css"] {
        assert_eq!(http(addr, "GET", asset, &[], b"").0, 200, "{asset}");
    }

    let (status, body) = http(addr, "GET", "/playground/api/flows", &[], b"");
    assert_eq!(status, 200, "{body}");
    let flows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(flows["entry"], "hello");
    assert_eq!(flows["head"], true);
    let hello = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "hello")
        .expect("the flow `hello` is listed");
    assert_eq!(hello["start"], "ask_name");
    let boxes = hello["boxes"].as_array().unwrap();
    let ask = boxes.iter().find(|b| b["node"] == "ask_name").unwrap();
    assert_eq!(
        (&ask["node_kind"], &ask["detail"]),
        (&json!("ask"), &json!("What's your name?"))
    );
    assert!(
        boxes
            .iter()
            .any(|b| b["kind"] == "flow" && b["title"] == "flow feedback"),
        "the called flow is a box of its own: {boxes:?}"
    );
    let edges = hello["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["label"] == "call" && e["dashed"] == true)
    );

    // State and reset need a genuine web chat token; errors are JSON.
    let refusals = [
        (
            "GET",
            "/playground/api/state".to_string(),
            401,
            "token is required",
        ),
        (
            "GET",
            "/playground/api/state?token=nope.nope".into(),
            401,
            "not valid",
        ),
        (
            "POST",
            "/playground/api/reset?token=nope.nope".into(),
            401,
            "not valid",
        ),
        (
            "GET",
            "/playground/api/flows?version=0000".into(),
            404,
            "not stored",
        ),
    ];
    for (method, target, status, why) in refusals {
        let (got, body) = http(addr, method, &target, &[], b"");
        assert_eq!(got, status, "{method} {target}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(why),
            "{method} {target}: {body}"
        );
    }
}

/// Types `text` into the chat box and sends it.
fn say(browser: &Browser, text: &str) {
    let input = browser.find("#text").expect("the chat box");
    browser.type_text(&input, text);
    browser.click(&browser.find("#send").expect("the send button"));
}

/// Waits until the bot's messages in the chat are `expected`.
fn wait_replies(browser: &Browser, expected: &[&str]) {
    browser.wait_for(&format!("the replies {expected:?}"), WAIT, |b| {
        (b.texts("#messages li.bot") == expected).then_some(())
    });
}

/// The node highlighted in the drawing.
fn current(browser: &Browser) -> Option<String> {
    let boxes = browser.find_all("#graph .box.current");
    assert!(boxes.len() <= 1, "one node at most is highlighted");
    boxes
        .first()
        .and_then(|b| browser.attribute(b, "data-node"))
}

fn wait_current(browser: &Browser, node: &str) {
    browser.wait_for(&format!("node `{node}` highlighted"), WAIT, |b| {
        (current(b).as_deref() == Some(node)).then_some(())
    });
}

/// Waits until the variables panel shows `name` = `value`.
fn wait_variable(browser: &Browser, name: &str, value: &str) {
    browser.wait_for(&format!("variable `{name}` = {value:?}"), WAIT, |b| {
        let shown: Value = serde_json::from_str(&text_of(b, "#variables")).ok()?;
        (shown[name] == value).then_some(())
    });
}

fn text_of(browser: &Browser, selector: &str) -> String {
    let element = browser
        .find(selector)
        .unwrap_or_else(|| panic!("no {selector}"));
    browser.text(&element)
}

/// The flow the picker shows.
fn picked(browser: &Browser) -> String {
    let value = browser.execute(
        "return document.getElementById('flow-picker').value;",
        json!([]),
    );
    value.as_str().unwrap_or_default().to_string()
}

/// Picks flow `id` in the picker, as a designer would.
fn pick(browser: &Browser, id: &str) {
    let option = browser
        .find(&format!("#flow-picker option[value='{id}']"))
        .unwrap_or_else(|| panic!("no option {id}"));
    browser.click(&option);
}
