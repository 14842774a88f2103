//! The JSON Schema of transcript test files, generated from the [`crate::spec`] types.

use crate::spec::TestFile;

/// The JSON Schema of `*.test.yaml` files, as committed in `schemas/flow-test.schema.json`.
pub fn test_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(TestFile);
    schema.insert(
        "$id".into(),
        "https://influxify.dev/schemas/flow-test.schema.json".into(),
    );
    serde_json::to_value(schema).unwrap_or_default()
}
