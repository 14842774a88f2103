//! Tests of the core through its public API: compile flows, check diagnostics, drive the step
//! function. One test binary, so it links once.

mod schema;
mod state_machine;
mod validation;

use influxify_core::{Compilation, FlowSet, Source, compile};

/// Compiles one YAML flow named `flow.yaml`.
pub fn compile_one(text: &str) -> Compilation {
    compile(
        &[Source::new("flow.yaml", text)],
        Some(&influxify_core::Catalog::builtin()),
    )
}

/// Compiles flows that must be valid.
pub fn flows(texts: &[&str]) -> FlowSet {
    let sources: Vec<Source> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Source::new(format!("flow{i}.yaml"), *text))
        .collect();
    let compilation = compile(&sources, Some(&influxify_core::Catalog::builtin()));
    let errors: Vec<String> = compilation
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors:\n{}",
        errors.join("\n")
    );
    compilation.flows.expect("no errors, so a flow set")
}
