//! The committed JSON Schema of flow files must match the Rust types.

use std::path::PathBuf;

use influxify_core::schema::{flow_schema, to_text};

#[test]
fn committed_flow_schema_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/flow.schema.json");
    let fresh = to_text(&flow_schema());
    if std::env::var_os("INFLUXIFY_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "schemas/flow.schema.json is stale: run `INFLUXIFY_BLESS=1 cargo test -p influxify-core` \
         (or `cargo run -- schema flow > schemas/flow.schema.json`) and commit it"
    );
}
