//! End-to-end tests of the `influxify` binary, run as a new user would run it.

mod admin;
mod builtin_harness;
mod channels;
mod chat;
mod crash;
mod demo;
mod designer;
/// The plugin host's test HTTP server, for fake services (Graph API, Sheets, token endpoints).
#[path = "../../engine/plugin-host/tests/support/http.rs"]
mod http_server;
mod llm;
mod playground;
mod plugin;
mod run;
mod schema;
mod serve;
mod served;
mod sheets;
/// A fake Google Sheets API and OAuth token endpoint (shared with the plugin host's tests).
#[path = "../../engine/plugin-host/tests/builtin/server.rs"]
mod sheets_server;
mod transcripts;
mod validate;
mod webchat;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `influxify args...` in the repository root, with `stdin` piped in.
pub fn influxify(args: &[&str], stdin: Option<&str>) -> Output {
    influxify_in(&root(), args, stdin)
}

/// Runs `influxify args...` in `dir`.
pub fn influxify_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_influxify"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the influxify binary runs");
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        if let Some(input) = stdin {
            // The command may exit without reading (a refused flow): a broken pipe is fine.
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    child.wait_with_output().expect("influxify finishes")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process killed when dropped (servers the tests start).
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds the plugin crates `names` of `plugins/` for wasm32-wasip2; returns where the
/// components are.
pub fn built_plugins(names: &[&str]) -> PathBuf {
    let sources = root().join("plugins");
    let mut args = vec!["build", "--quiet", "--release", "--target", "wasm32-wasip2"];
    for name in names {
        args.extend(["-p", name]);
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .current_dir(&sources)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the plugins {names:?} build");
    sources.join("target/wasm32-wasip2/release")
}
