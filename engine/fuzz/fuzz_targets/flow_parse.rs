//! Any text given as a flow file: the parser and compiler answer with flows or diagnostics,
//! never a panic; diagnostics render.

#![no_main]

use influxify_core::{Source, compile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let compilation = compile(&[Source::new("fuzz.yaml", text)], None);
    for diagnostic in &compilation.diagnostics {
        let _ = diagnostic.to_string();
    }
});
