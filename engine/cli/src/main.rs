//! `influxify`: the command bot designers use every day (validate, graph, chat, test, schema),
//! the durable runtime on standard input (`run`), and the plugin author's kit (`plugin`).

mod chat;
mod graph;
mod plugin;
mod run;
mod schema;
mod serve;
mod transcripts;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// The runtime allocates many small buffers (sled nodes, JSON); mimalloc serves them faster than
// the system allocator (measured: about 1.5x the durable turns per second).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Influxify: conversational bots as directed graphs.
#[derive(Debug, Parser)]
#[command(name = "influxify", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check flow files and report every problem with a code, the node and the line.
    Validate {
        /// Flow files or directories (searched recursively). Flows in one directory are
        /// checked together, as one bot.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
        /// A JSON file listing more installed plugin actions:
        /// `{"actions": {"crm.lookup": {"outcomes": ["not_found"]}}}`.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// A plugins directory (or one `plugin.toml`): its actions, outcomes and input schemas
        /// are known to validation.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Draw a flow as a Mermaid or Graphviz diagram.
    Graph {
        /// The flow file.
        file: PathBuf,
        /// The diagram language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Chat with a flow in the terminal. Plugin calls are answered by the mocks of a test file.
    Chat {
        /// The flow file.
        file: PathBuf,
        /// A test file whose `mocks` answer plugin calls (default: the `.test.yaml` beside the flow).
        #[arg(long)]
        mocks: Option<PathBuf>,
        /// A profile field for the user, e.g. `--user first_name=Ada` (repeatable).
        #[arg(long = "user", value_name = "FIELD=VALUE")]
        user: Vec<String>,
    },
    /// Run transcript tests (`*.test.yaml`) and print `N passed, N failed`.
    Test {
        /// Test files or directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run a bot durably on the embedded store, fed JSON lines of events on standard input.
    Run {
        /// The data directory of the embedded store.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The directory of the bot's flows.
        #[arg(long)]
        flows: PathBuf,
        /// The flow new conversations start in.
        #[arg(long)]
        entry: String,
        /// A plugins directory (each plugin a `plugin.toml` beside its component), or one
        /// `plugin.toml`; plugins reload when their files change. Secrets come from
        /// `INFLUXIFY_SECRET_<NAME>`.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Serve the bot over HTTP: channel webhooks, the web chat, the admin API, metrics and the
    /// playground, on the embedded store. Settings come from `influxify.toml` (in the working
    /// directory, or `--config`); the flags below override it.
    Serve {
        /// The configuration file (default: `influxify.toml` if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to listen (default 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// The data directory of the embedded store (default `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The directory of the bot's flows (default `flows`).
        #[arg(long)]
        flows: Option<PathBuf>,
        /// The flow new conversations start in.
        #[arg(long)]
        entry: Option<String>,
        /// The plugins directory (default `dist/plugins`). Secrets come from
        /// `INFLUXIFY_SECRET_<NAME>` or the admin API.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Make an admin API key: prints the key (shown once) and the lines that let
    /// `influxify.toml` accept it (only its SHA-256 is stored).
    AdminKey {
        /// Who will hold it (shown in the audit log).
        #[arg(long, default_value = "admin")]
        name: String,
        /// `read` (look only) or `admin` (everything).
        #[arg(long, value_enum, default_value_t = KeyScope::Admin)]
        scope: KeyScope,
    },
    /// Write, test and inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print a JSON Schema.
    Schema {
        /// Which schema.
        #[arg(value_enum)]
        which: SchemaKind,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create a plugin crate: an action, its manifest, a harness script and a README.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Where to create it (default: a directory named after the plugin).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin SDK crate (default: the one beside this engine's sources).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a built plugin against a script of cases (scripted HTTP, kv and secrets) and report
    /// the outcome, instructions and peak memory of each call.
    Test {
        /// The plugin's manifest (`plugin.toml`).
        manifest: PathBuf,
        /// The script (YAML).
        #[arg(long)]
        script: PathBuf,
    },
    /// Load every plugin of a directory and list their actions (or why one is refused).
    List {
        /// The plugins directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DiagnosticFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyScope {
    Read,
    Admin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaKind {
    /// Flow files.
    Flow,
    /// Transcript test files.
    Test,
    /// Plugin manifests (`plugin.toml`).
    Plugin,
    /// The server's configuration (`influxify.toml`).
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            paths,
            format,
            catalog,
            plugins,
        } => validate::run(&paths, format, catalog.as_deref(), plugins.as_deref()),
        Command::Graph { file, format } => graph::run(&file, format),
        Command::Chat { file, mocks, user } => chat::run(&file, mocks.as_deref(), &user),
        Command::Test { paths } => transcripts::run(&paths),
        Command::Schema { which } => schema::run(which),
        Command::Run {
            data,
            flows,
            entry,
            plugins,
        } => run::run(&data, &flows, &entry, plugins.as_deref()),
        Command::Serve {
            config,
            addr,
            data,
            flows,
            entry,
            plugins,
        } => serve::run(serve::Overrides {
            config,
            addr,
            data,
            flows,
            entry,
            plugins,
        }),
        Command::AdminKey { name, scope } => admin_key(&name, scope),
        Command::Plugin { command } => match command {
            PluginCommand::New { name, dir, sdk } => {
                plugin::new(&name, dir.as_deref(), sdk.as_deref())
            }
            PluginCommand::Test { manifest, script } => plugin::test(&manifest, &script),
            PluginCommand::List { dir } => plugin::list(&dir),
        },
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn admin_key(name: &str, scope: KeyScope) -> anyhow::Result<ExitCode> {
    let (key, hash) = influxify_server::admin::new_key()?;
    let scope = match scope {
        KeyScope::Read => "read",
        KeyScope::Admin => "admin",
    };
    println!("{key}");
    eprintln!(
        "Keep the key above: it is not stored. Add this to influxify.toml and restart:\n\n[[admin.keys]]\nname = {name:?}\nscope = \"{scope}\"\nsha256 = \"{hash}\""
    );
    Ok(ExitCode::SUCCESS)
}
