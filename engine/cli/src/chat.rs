//! `influxify chat`: a conversation with a flow in the terminal, with mocked plugins.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use influxify_core::conversation::Outbound;
use influxify_designer::project;
use influxify_designer::session::{Input, Mocks, Reply, Session};
use influxify_designer::spec::TestFile;

const HELP: &str = "\
Type a message and press Enter. A number taps the quick reply with that number.
  /tap PAYLOAD      tap a quick reply or button by payload
  /advance 2h       let time pass (timers, waits and timeouts fire)
  /operator TEXT    an operator says TEXT
  /resume           an operator gives the conversation back to the bot
  /vars             show the variables
  /state            show the whole conversation state
  /reset            start over
  /quit             leave (or Ctrl-D)";

pub fn run(file: &Path, mocks_file: Option<&Path>, user: &[String]) -> anyhow::Result<ExitCode> {
    if !file.is_file() {
        anyhow::bail!("cannot read {}: no such file", file.display());
    }
    let dir = project::dir_of(file);
    let compilation = project::compile_dir(&dir, None)?;
    let Some(flows) = compilation.flows else {
        for d in compilation.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{d}\n");
        }
        anyhow::bail!(
            "the flows in {} do not compile; run `influxify validate {}`",
            dir.display(),
            dir.display()
        );
    };
    let wanted = project::canonical(file);
    let flow = flows
        .iter()
        .find(|f| project::canonical(Path::new(&f.file)) == wanted)
        .map(|f| f.id.clone())
        .with_context(|| format!("{} is not a flow file in {}", file.display(), dir.display()))?;

    let mut mocks = Mocks::default();
    let mut profile = serde_json::Map::new();
    let mocks_path = mocks_file
        .map(Path::to_path_buf)
        .or_else(|| sibling_test_file(file));
    if let Some(path) = &mocks_path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let spec: TestFile = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a test file", path.display()))?;
        mocks.push_front(&spec.mocks).map_err(anyhow::Error::msg)?;
        profile = spec.user;
    }
    for field in user {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("`--user {field}`: write FIELD=VALUE"))?;
        profile.insert(
            key.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }

    let mut session = Session::new(flows, &flow, profile, mocks);
    println!("Chatting with flow `{flow}` ({}).", file.display());
    if let Some(path) = &mocks_path {
        println!(
            "Plugin calls are answered by the mocks in {}.",
            path.display()
        );
    }
    println!("Type /help for commands.\n");

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut last: Vec<Outbound> = Vec::new();
    let mut line = String::new();
    loop {
        print!("you › ");
        std::io::stdout().flush()?;
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let text = line.trim();
        if !interactive {
            // Piped input is echoed so that the transcript reads like a conversation.
            println!("{text}");
        }
        if text.is_empty() {
            continue;
        }
        let input = match parse_command(text, &last) {
            Ok(Some(input)) => input,
            Ok(None) => match text {
                "/quit" | "/exit" => break,
                "/help" => {
                    println!("{HELP}");
                    continue;
                }
                "/vars" => {
                    println!("{}", serde_json::to_string_pretty(&session.state.vars)?);
                    continue;
                }
                "/state" => {
                    println!("{}", serde_json::to_string_pretty(&session.state)?);
                    continue;
                }
                _ => {
                    println!("unknown command {text}; type /help");
                    continue;
                }
            },
            Err(message) => {
                println!("{message}");
                continue;
            }
        };
        let reply = session.send(input);
        print_reply(&reply);
        if !reply.messages.is_empty() {
            last = reply.messages;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sibling_test_file(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_str()?;
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    ["yaml", "yml", "json"]
        .iter()
        .map(|ext| file.with_file_name(format!("{stem}.test.{ext}")))
        .find(|p| p.is_file())
}

/// `Ok(None)` for commands that do not talk to the bot.
fn parse_command(text: &str, last: &[Outbound]) -> Result<Option<Input>, String> {
    if let Some(rest) = text.strip_prefix("/tap ") {
        return Ok(Some(Input::Tap(rest.trim().to_string())));
    }
    if let Some(rest) = text.strip_prefix("/advance ") {
        let duration = humantime_duration(rest)?;
        return Ok(Some(Input::Advance(duration)));
    }
    if let Some(rest) = text.strip_prefix("/operator ") {
        return Ok(Some(Input::Operator(rest.trim().to_string())));
    }
    match text {
        "/resume" => return Ok(Some(Input::Resume)),
        "/reset" => return Ok(Some(Input::Reset)),
        _ if text.starts_with('/') => return Ok(None),
        _ => {}
    }
    // A number picks a quick reply of the last message that offered some, unless the replies
    // are numbers themselves (then the number is the answer).
    if let Ok(n) = text.parse::<usize>()
        && let Some(offer) = last.iter().rev().find(|m| !m.quick_replies.is_empty())
        && !offer
            .quick_replies
            .iter()
            .any(|q| q.title.trim().parse::<f64>().is_ok())
        && let Some(reply) = n.checked_sub(1).and_then(|i| offer.quick_replies.get(i))
    {
        return Ok(Some(Input::Tap(reply.payload.clone())));
    }
    Ok(Some(Input::User(text.to_string())))
}

fn humantime_duration(text: &str) -> Result<std::time::Duration, String> {
    text.trim()
        .parse::<influxify_core::duration::Duration>()
        .map(|d| d.std())
        .map_err(|err| {
            format!(
                "`{}` is not a duration ({err}); try 30s, 10m or 2h",
                text.trim()
            )
        })
}

fn print_reply(reply: &Reply) {
    for call in &reply.calls {
        let answer = match &call.answer {
            Ok(outcome) => format!("→ {outcome}"),
            Err(error) => format!("→ error: {error}"),
        };
        println!("  (plugin {} {} {answer})", call.action, call.input);
    }
    for message in &reply.messages {
        if let Some(ms) = message.typing_ms {
            println!("  (typing… {ms} ms)");
        }
        println!("bot › {}", message.text);
        if !message.quick_replies.is_empty() {
            let offers: Vec<String> = message
                .quick_replies
                .iter()
                .enumerate()
                .map(|(i, q)| format!("[{}] {}", i + 1, q.title))
                .collect();
            println!("      {}", offers.join("  "));
        }
        for button in &message.buttons {
            match (&button.url, &button.payload) {
                (Some(url), _) => println!("      ({} → {url})", button.title),
                (None, Some(payload)) => println!("      ({} → /tap {payload})", button.title),
                _ => {}
            }
        }
    }
    for note in &reply.notes {
        println!("  ({note})");
    }
}
