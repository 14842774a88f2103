//! A plugin for the plugin host's tests: `echo` returns its input, `now` reads the host clock,
//! `spin` never returns (CPU limit), `hog` allocates without end (memory limit).

wit_bindgen::generate!({
    world: "action-plugin",
    path: "../wit",
});

use exports::influxify::plugin::action::{ActionInfo, ActionResult, Guest};
use influxify::plugin::types::{CallContext, Error};
use influxify::plugin::{clock, log};

struct TestEcho;

fn info(name: &str, description: &str) -> ActionInfo {
    ActionInfo {
        name: name.to_string(),
        description: description.to_string(),
        input_schema: "{}".to_string(),
        output_schema: "{}".to_string(),
        outcomes: Vec::new(),
    }
}

impl Guest for TestEcho {
    fn actions() -> Vec<ActionInfo> {
        vec![
            info("echo", "Returns its input"),
            info("now", "Returns the host's clock"),
            info("spin", "Never returns"),
            info("hog", "Allocates until stopped"),
        ]
    }

    fn invoke(action: String, input: String, context: CallContext) -> Result<ActionResult, Error> {
        match action.as_str() {
            "echo" => {
                log::log(
                    log::Level::Info,
                    &format!("echo for {}", context.idempotency_key),
                );
                Ok(ActionResult {
                    outcome: "ok".to_string(),
                    output: input,
                })
            }
            "now" => Ok(ActionResult {
                outcome: "ok".to_string(),
                output: clock::now_ms().to_string(),
            }),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    chunks.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&chunks);
                }
            }
            other => Err(Error::InvalidInput(format!("no action `{other}`"))),
        }
    }
}

export!(TestEcho);
