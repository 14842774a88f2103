//! `influxify test`: runs transcript tests and prints a diff of each failing conversation.

use std::path::PathBuf;
use std::process::ExitCode;

use influxify_designer::runner;

pub fn run(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let summary = runner::run_paths(paths)?;
    if summary.cases.is_empty() {
        anyhow::bail!("no test files (*.test.yaml) found");
    }
    let mut current = None;
    for case in &summary.cases {
        if current != Some(&case.file) {
            println!("{}", case.file.display());
            current = Some(&case.file);
        }
        match &case.failure {
            None => println!("  ok    {}", case.name),
            Some(failure) => {
                println!("  FAIL  {}", case.name);
                for line in failure.lines() {
                    println!("        {line}");
                }
            }
        }
    }
    println!("\n{} passed, {} failed", summary.passed(), summary.failed());
    Ok(if summary.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
