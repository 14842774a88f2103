//! End-to-end tests of the `influxify` binary, run as a new user would run it.

mod chat;
mod crash;
mod designer;
mod llm;
mod plugin;
mod run;
mod schema;
mod serve;
mod validate;

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
