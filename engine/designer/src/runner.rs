//! Runs transcript tests and explains each failure as a readable diff of the conversation.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use influxify_core::conversation::Outbound;
use influxify_core::source::Positions;
use influxify_core::{Compilation, FlowSet};

use crate::project::{self, LoadError};
use crate::session::{Input, Mocks, Reply, Session};
use crate::spec::{Case, Expected, TestFile, Turn};

/// How one case went.
#[derive(Debug)]
pub struct CaseResult {
    /// The test file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// `None` when it passed; otherwise a readable explanation.
    pub failure: Option<String>,
}

/// The results of running test files.
#[derive(Debug, Default)]
pub struct Summary {
    /// Every case, in order.
    pub cases: Vec<CaseResult>,
}

impl Summary {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    /// Cases that failed (a test file that cannot run counts as one failed case).
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Runs the test files under `paths` (directories are searched recursively).
pub fn run_paths(paths: &[PathBuf]) -> Result<Summary, LoadError> {
    let found = project::find(paths)?;
    let mut summary = Summary::default();
    let mut compiled: HashMap<PathBuf, Compilation> = HashMap::new();
    for test in &found.tests {
        let dir = project::dir_of(test);
        if !compiled.contains_key(&dir) {
            compiled.insert(dir.clone(), project::compile_dir(&dir, None)?);
        }
        let compilation = &compiled[&dir];
        summary.cases.extend(run_file(test, compilation));
    }
    Ok(summary)
}

fn file_failure(file: &Path, message: String) -> Vec<CaseResult> {
    vec![CaseResult {
        file: file.to_path_buf(),
        name: "(the whole file)".to_string(),
        failure: Some(message),
    }]
}

/// Runs one test file against the flows of its directory.
pub fn run_file(file: &Path, compilation: &Compilation) -> Vec<CaseResult> {
    let Some(flows) = &compilation.flows else {
        let errors: Vec<String> = compilation
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        return file_failure(
            file,
            format!("the flows beside it do not compile:\n{}", errors.join("\n")),
        );
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) => return file_failure(file, format!("cannot read it: {err}")),
    };
    let spec: TestFile = match serde_yaml_ng::from_str(&text) {
        Ok(spec) => spec,
        Err(err) => return file_failure(file, format!("not a valid test file: {err}")),
    };
    let flow = match flow_under_test(file, &spec, flows) {
        Ok(flow) => flow,
        Err(message) => return file_failure(file, message),
    };
    let positions = Positions::of(&text);
    spec.cases
        .iter()
        .enumerate()
        .map(|(i, case)| CaseResult {
            file: file.to_path_buf(),
            name: case.name.clone(),
            failure: run_case(&spec, case, i, &flow, flows, &positions, file).err(),
        })
        .collect()
}

/// The flow a test file tests: its `flow`, or the flow in the file with the same name.
pub fn flow_under_test(file: &Path, spec: &TestFile, flows: &FlowSet) -> Result<String, String> {
    if let Some(id) = &spec.flow {
        return match flows.get(id) {
            Some(_) => Ok(id.clone()),
            None => Err(format!(
                "flow `{id}` is not in {}",
                project::dir_of(file).display()
            )),
        };
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name.split(".test.").next().unwrap_or(name);
    flows
        .iter()
        .find(|flow| {
            let flow_name = Path::new(&flow.file).file_name().and_then(|n| n.to_str()).unwrap_or("");
            flow_name.rsplit_once('.').map(|(s, _)| s) == Some(stem)
        })
        .map(|flow| flow.id.clone())
        .ok_or_else(|| format!("no flow file named `{stem}.yaml` beside it; say which flow it tests with `flow: <id>`"))
}

fn run_case(
    spec: &TestFile,
    case: &Case,
    index: usize,
    flow: &str,
    flows: &FlowSet,
    positions: &Positions,
    file: &Path,
) -> Result<(), String> {
    let mut mocks = Mocks::default();
    mocks.push_front(&spec.mocks)?;
    mocks.push_front(&case.mocks)?;
    let profile = case.user.clone().unwrap_or_else(|| spec.user.clone());
    let mut session = Session::new(flows.clone(), flow, profile, mocks);
    let mut transcript = String::new();
    for (t, turn) in case.turns.iter().enumerate() {
        let input = turn_input(turn).map_err(|e| format!("turn {}: {e}", t + 1))?;
        let said = describe_input(&input);
        let reply = session.send(input);
        let problems = check_turn(turn, &reply, &session);
        if !problems.is_empty() {
            let line = positions
                .first_under(&format!("cases.{index}.turns.{t}"))
                .map(|p| format!("{}:{}", file.display(), p.line))
                .unwrap_or_else(|| file.display().to_string());
            let mut out = format!("turn {} ({line}): {said}\n", t + 1);
            for problem in problems {
                out.push_str(&indent(&problem, "  "));
            }
            if !transcript.is_empty() {
                out.push_str("  conversation before this turn:\n");
                out.push_str(&indent(&transcript, "    "));
            }
            return Err(out);
        }
        transcript.push_str(&format!("{said}\n"));
        for message in &reply.messages {
            let _ = writeln!(transcript, "  bot › {}", render_message(message));
        }
    }
    Ok(())
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// What a turn does: exactly one of `user`, `tap`, `advance`, `operator` or `resume`.
pub fn turn_input(turn: &Turn) -> Result<Input, String> {
    let mut inputs = Vec::new();
    if let Some(text) = &turn.user {
        inputs.push(Input::User(text.clone()));
    }
    if let Some(payload) = &turn.tap {
        inputs.push(Input::Tap(payload.clone()));
    }
    if let Some(advance) = &turn.advance {
        let duration = humantime::parse_duration(advance)
            .map_err(|err| format!("`advance: {advance}`: {err}"))?;
        inputs.push(Input::Advance(duration));
    }
    if let Some(text) = &turn.operator {
        inputs.push(Input::Operator(text.clone()));
    }
    if turn.resume {
        inputs.push(Input::Resume);
    }
    match inputs.len() {
        1 => Ok(inputs.remove(0)),
        0 => {
            Err("a turn needs one of `user`, `tap`, `advance`, `operator` or `resume: true`".into())
        }
        _ => {
            Err("a turn takes only one of `user`, `tap`, `advance`, `operator` or `resume`".into())
        }
    }
}

/// How an input reads in a transcript.
pub fn describe_input(input: &Input) -> String {
    match input {
        Input::User(text) => format!("user › {text}"),
        Input::Tap(payload) => format!("user taps › {payload}"),
        Input::Advance(d) => format!("(time passes: {})", humantime::format_duration(*d)),
        Input::Operator(text) => format!("operator › {text}"),
        Input::Resume => "(operator resumes the bot)".to_string(),
        Input::Reset => "(reset)".to_string(),
    }
}

/// One message on one line: text, then quick replies and buttons.
pub fn render_message(message: &Outbound) -> String {
    let mut out = message.text.replace('\n', "⏎");
    if !message.quick_replies.is_empty() {
        let titles: Vec<&str> = message
            .quick_replies
            .iter()
            .map(|q| q.title.as_str())
            .collect();
        let _ = write!(out, "  [{}]", titles.join(" | "));
    }
    if !message.buttons.is_empty() {
        let titles: Vec<&str> = message.buttons.iter().map(|b| b.title.as_str()).collect();
        let _ = write!(out, "  <{}>", titles.join(" | "));
    }
    out
}

fn check_turn(turn: &Turn, reply: &Reply, session: &Session) -> Vec<String> {
    let calls: Vec<&str> = reply.calls.iter().map(|c| c.action.as_str()).collect();
    check_outcome(turn, &reply.messages, &calls, &session.state, &reply.notes)
}

/// What is wrong with a turn's outcome (empty when it is what `turn` expects): the bot's
/// `messages`, the plugin actions `calls`ed and the conversation's `state` after it. `notes` are
/// added to the problems when there are some. The served transcript tests check what reached a
/// channel this way.
pub fn check_outcome(
    turn: &Turn,
    messages: &[Outbound],
    calls: &[&str],
    state: &influxify_core::ConversationState,
    notes: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(expected) = &turn.bot {
        check_messages(expected, messages, &mut problems);
    }
    for (name, want) in &turn.vars {
        let got = state
            .vars
            .get(name)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if !json_equal(want, &got) {
            problems.push(format!("variable `{name}`: expected {want}, got {got}"));
        }
    }
    if let Some(want) = &turn.node {
        let got = state.node.as_deref().unwrap_or("(not started)");
        if want != got {
            problems.push(format!("node: expected `{want}`, got `{got}`"));
        }
    }
    if let Some(want) = &turn.flow
        && want != &state.flow
    {
        problems.push(format!("flow: expected `{want}`, got `{}`", state.flow));
    }
    if let Some(want) = &turn.status {
        let got = crate::session::status_name(&state.status);
        if want != got {
            let detail = match &state.status {
                influxify_core::Status::Failed { error } => format!(" ({error})"),
                _ => String::new(),
            };
            problems.push(format!("status: expected `{want}`, got `{got}`{detail}"));
        }
    }
    if let Some(want) = &turn.calls
        && want.iter().map(String::as_str).ne(calls.iter().copied())
    {
        problems.push(format!("plugin calls: expected {want:?}, got {calls:?}"));
    }
    if !problems.is_empty() {
        for note in notes {
            problems.push(format!("note: {note}"));
        }
    }
    problems
}

/// Numbers compare by value (`3` equals `3.0`); everything else structurally.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn check_messages(expected: &[Expected], actual: &[Outbound], problems: &mut Vec<String>) {
    let mut diff = String::new();
    let mut differs = expected.len() != actual.len();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(want), Some(got)) => match mismatch(want, got) {
                None => {
                    let _ = writeln!(diff, "  {}", render_message(got));
                }
                Some(why) => {
                    differs = true;
                    let _ = writeln!(diff, "- {}   ({why})", describe_expected(want));
                    let _ = writeln!(diff, "+ {}", render_message(got));
                }
            },
            (Some(want), None) => {
                let _ = writeln!(diff, "- {}   (missing)", describe_expected(want));
            }
            (None, Some(got)) => {
                let _ = writeln!(diff, "+ {}   (unexpected)", render_message(got));
            }
            (None, None) => {}
        }
    }
    if differs {
        problems.push(format!(
            "bot replies differ (- expected, + actual):\n{diff}"
        ));
    }
}

fn describe_expected(expected: &Expected) -> String {
    match expected {
        Expected::Text(text) => text.replace('\n', "⏎"),
        Expected::Detailed(d) => {
            let mut parts = Vec::new();
            if let Some(text) = &d.text {
                parts.push(text.replace('\n', "⏎"));
            }
            if let Some(regex) = &d.regex {
                parts.push(format!("/{regex}/"));
            }
            if let Some(contains) = &d.contains {
                parts.push(format!("…{contains}…"));
            }
            if let Some(q) = &d.quick_replies {
                parts.push(format!("[{}]", q.join(" | ")));
            }
            if let Some(b) = &d.buttons {
                parts.push(format!("<{}>", b.join(" | ")));
            }
            parts.join("  ")
        }
    }
}

fn mismatch(expected: &Expected, actual: &Outbound) -> Option<String> {
    match expected {
        Expected::Text(text) => {
            (text.trim_end() != actual.text.trim_end()).then(|| "text differs".to_string())
        }
        Expected::Detailed(d) => {
            if let Some(text) = &d.text
                && text.trim_end() != actual.text.trim_end()
            {
                return Some("text differs".into());
            }
            if let Some(contains) = &d.contains
                && !actual.text.contains(contains.as_str())
            {
                return Some("text does not contain it".into());
            }
            if let Some(pattern) = &d.regex {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(&actual.text) => {}
                    Ok(_) => return Some("text does not match".into()),
                    Err(err) => return Some(format!("bad regex: {err}")),
                }
            }
            if let Some(titles) = &d.quick_replies
                && titles
                    .iter()
                    .map(String::as_str)
                    .ne(actual.quick_replies.iter().map(|q| q.title.as_str()))
            {
                return Some("quick replies differ".into());
            }
            if let Some(titles) = &d.buttons
                && titles
                    .iter()
                    .map(String::as_str)
                    .ne(actual.buttons.iter().map(|b| b.title.as_str()))
            {
                return Some("buttons differ".into());
            }
            None
        }
    }
}
