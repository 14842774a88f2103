//! What the server parses from the outside besides webhooks: `influxify.toml` and operator
//! secrets. Errors, never panics; an error message never repeats a secret's value.

#![no_main]

use influxify_plugin_host::Secret;
use influxify_server::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Settings::parse(text);
    if let Err(err) = Secret::parse(text) {
        let message = err.to_string();
        // A refusal may quote field names, never the text it was given.
        assert!(text.len() < 24 || !message.contains(text), "{message}");
    }
});
