//! `influxify run`: a shipped bot on the durable runtime, across two runs of the process.

use crate::{influxify, stdout};

fn lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

#[test]
fn a_conversation_survives_a_restart_and_duplicates_are_dropped() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap().to_string();
    let args = [
        "run",
        "--data",
        &data,
        "--flows",
        "flows/order-status",
        "--entry",
        "order-status",
    ];
    let first = influxify(
        &args,
        Some("{\"user\": \"ada\", \"id\": \"m1\", \"text\": \"hi\"}\nnot json\n"),
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = lines(&first);
    assert!(
        out.iter().any(|l| l["ack"] == "m1" && l["new"] == true),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|l| l["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an event"))),
        "{out:#?}"
    );
    let greeting: Vec<&serde_json::Value> =
        out.iter().filter(|l| l.get("send").is_some()).collect();
    assert!(!greeting.is_empty(), "{out:#?}");
    assert_eq!(greeting[0]["send"]["key"], "stdin/ada:1:0");

    // The same data directory: a redelivered m1 is a duplicate, and the conversation goes on
    // from where it was (its next message is turn 2, not a new greeting).
    let second = influxify(
        &args,
        Some(
            "{\"user\": \"ada\", \"id\": \"m1\", \"text\": \"hi\"}\n{\"user\": \"ada\", \"id\": \"m2\", \"text\": \"something\"}\n",
        ),
    );
    assert!(second.status.success());
    let out = lines(&second);
    assert!(
        out.iter().any(|l| l["ack"] == "m1" && l["new"] == false),
        "{out:#?}"
    );
    assert!(
        out.iter().any(|l| l["ack"] == "m2" && l["new"] == true),
        "{out:#?}"
    );
    let keys: Vec<&str> = out
        .iter()
        .filter_map(|l| l["send"]["key"].as_str())
        .collect();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("stdin/ada:2:")),
        "{keys:?}"
    );
}
