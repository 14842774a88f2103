//! A plugin for the plugin host's tests and benchmarks: `echo` returns its input, `now` reads
//! the host clock, `spin` never returns (CPU limit), `hog` allocates without end (memory
//! limit), `noop` does nothing and `transform` upper-cases the strings of a JSON document.

use influxify_plugin_sdk::prelude::*;
use serde_json::value::RawValue;

/// Returns its input unchanged (the exact JSON text), and logs the call.
struct Echo;

impl Action for Echo {
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Returns its input";
    type Input = Box<RawValue>;
    type Output = Box<RawValue>;

    fn run(input: Box<RawValue>, ctx: &Context) -> Result<Outcome<Box<RawValue>>, Error> {
        info!("echo for {}", ctx.idempotency_key());
        Ok(input.into())
    }
}

/// The host's clock, in milliseconds since the Unix epoch.
struct Now;

impl Action for Now {
    const NAME: &'static str = "now";
    const DESCRIPTION: &'static str = "Returns the host's clock";
    type Input = NoInput;
    type Output = u64;

    fn run(_: NoInput, _: &Context) -> Result<Outcome<u64>, Error> {
        Ok(clock::now_ms().into())
    }
}

/// Loops forever: the host must stop it.
struct Spin;

impl Action for Spin {
    const NAME: &'static str = "spin";
    const DESCRIPTION: &'static str = "Never returns";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

/// Allocates a megabyte at a time until the host's memory limit stops it.
struct Hog;

impl Action for Hog {
    const NAME: &'static str = "hog";
    const DESCRIPTION: &'static str = "Allocates until stopped";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            chunks.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&chunks);
        }
    }
}

/// Does nothing (the host's per-call overhead).
struct Noop;

impl Action for Noop {
    const NAME: &'static str = "noop";
    const DESCRIPTION: &'static str = "Does nothing";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        Ok(().into())
    }
}

/// Upper-cases every string in a JSON document and counts them (a typical small transform).
struct Transform;

/// The transformed document.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Transformed {
    /// The document, strings upper-cased.
    document: serde_json::Value,
    /// How many strings there were.
    strings: usize,
}

fn shout(value: &mut serde_json::Value, count: &mut usize) {
    match value {
        serde_json::Value::String(s) => {
            *s = s.to_uppercase();
            *count += 1;
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| shout(v, count)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| shout(v, count)),
        _ => {}
    }
}

impl Action for Transform {
    const NAME: &'static str = "transform";
    const DESCRIPTION: &'static str = "Upper-cases every string of a JSON document";
    type Input = serde_json::Value;
    type Output = Transformed;

    fn run(mut document: serde_json::Value, _: &Context) -> Result<Outcome<Transformed>, Error> {
        let mut strings = 0;
        shout(&mut document, &mut strings);
        Ok(Transformed { document, strings }.into())
    }
}

influxify_plugin_sdk::plugin!(TestEcho: [Echo, Now, Spin, Hog, Noop, Transform]);
