//! The JSON Schema of flow files, generated from the [`crate::model`] types.

use crate::model::Flow;

/// The JSON Schema of flow files, as committed in `schemas/flow.schema.json`.
pub fn flow_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Flow);
    schema.insert(
        "$id".into(),
        "https://influxify.dev/schemas/flow.schema.json".into(),
    );
    serde_json::to_value(schema).unwrap_or_default()
}

/// Pretty JSON text of a schema, ending with a newline, as committed.
pub fn to_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
