//! `influxify graph`: draws a flow in Mermaid or DOT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use influxify_core::source;

use crate::GraphFormat;

pub fn run(file: &Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let source =
        influxify_designer::project::read_source(file).map_err(|d| anyhow::anyhow!("{d}"))?;
    let (parsed, diagnostics) = source::parse(&source);
    let parsed = parsed.with_context(|| {
        let errors: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
        format!("cannot draw {}:\n{}", file.display(), errors.join("\n"))
    })?;
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        eprintln!("{d}");
    }
    let text = match format {
        GraphFormat::Mermaid => influxify_core::graph::mermaid(&parsed.flow),
        GraphFormat::Dot => influxify_core::graph::dot(&parsed.flow),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
