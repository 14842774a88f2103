//! A plugin for the plugin host's tests: `echo` returns its input, `now` reads the host clock,
//! `spin` never returns (CPU limit), `hog` allocates without end (memory limit).

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

influxify_plugin_sdk::plugin!(TestEcho: [Echo, Now, Spin, Hog]);
