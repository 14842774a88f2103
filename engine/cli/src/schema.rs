//! `influxify schema`: prints a generated JSON Schema.

use std::process::ExitCode;

use crate::SchemaKind;

pub fn run(which: SchemaKind) -> anyhow::Result<ExitCode> {
    let schema = match which {
        SchemaKind::Flow => influxify_core::schema::flow_schema(),
        SchemaKind::Test => influxify_designer::schema::test_schema(),
        SchemaKind::Plugin => influxify_plugin_host::manifest::manifest_schema(),
        SchemaKind::Config => influxify_server::config::config_schema(),
    };
    print!("{}", influxify_core::schema::to_text(&schema));
    Ok(ExitCode::SUCCESS)
}
