//! `influxify`: the command bot designers use every day (validate, graph, chat, test, schema).

mod chat;
mod graph;
mod run;
mod schema;
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
    },
    /// Print a JSON Schema.
    Schema {
        /// Which schema.
        #[arg(value_enum)]
        which: SchemaKind,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DiagnosticFormat {
    Human,
    Json,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            paths,
            format,
            catalog,
        } => validate::run(&paths, format, catalog.as_deref()),
        Command::Graph { file, format } => graph::run(&file, format),
        Command::Chat { file, mocks, user } => chat::run(&file, mocks.as_deref(), &user),
        Command::Test { paths } => transcripts::run(&paths),
        Command::Schema { which } => schema::run(which),
        Command::Run { data, flows, entry } => run::run(&data, &flows, &entry),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
