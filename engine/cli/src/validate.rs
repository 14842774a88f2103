//! `influxify validate`: compiles flows directory by directory and prints their diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use influxify_core::{Catalog, Diagnostic};
use influxify_designer::project;

use crate::DiagnosticFormat;

pub fn run(
    paths: &[PathBuf],
    format: DiagnosticFormat,
    catalog: Option<&Path>,
    plugins: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut known = Catalog::builtin();
    if let Some(dir) = plugins {
        known
            .actions
            .extend(crate::run::load_plugins(dir, None, None)?.catalog().actions);
    }
    if let Some(path) = catalog {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let extra: Catalog = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a catalog", path.display()))?;
        known.actions.extend(extra.actions);
    }
    let found = project::find(paths)?;
    if found.flows.is_empty() {
        anyhow::bail!(
            "no flow files (.yaml, .yml, .json) found in {}",
            display_paths(paths)
        );
    }
    // Diagnostics name files as the user wrote them, whatever path siblings were read through.
    let requested: HashMap<PathBuf, String> = found
        .flows
        .iter()
        .map(|p| (project::canonical(p), p.display().to_string()))
        .collect();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for dir in project::by_dir(&found.flows).keys() {
        // Siblings are compiled too, so that references between them resolve.
        let compilation = project::compile_dir(dir, Some(&known))?;
        for mut d in compilation.diagnostics {
            let Some(file) = &d.file else {
                diagnostics.push(d);
                continue;
            };
            if let Some(name) = requested.get(&project::canonical(Path::new(file))) {
                d.file = Some(name.clone());
                diagnostics.push(d);
            }
        }
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match format {
        DiagnosticFormat::Json => {
            let report = serde_json::json!({
                "files": found.flows.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        DiagnosticFormat::Human => {
            for d in &diagnostics {
                println!("{d}\n");
            }
            let files = found.flows.len();
            let noun = if files == 1 { "file" } else { "files" };
            if errors == 0 {
                println!("ok: {files} flow {noun} valid, {warnings} warning(s)");
            } else {
                println!("{errors} error(s), {warnings} warning(s) in {files} flow {noun}");
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
