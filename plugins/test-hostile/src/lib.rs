//! A plugin for the plugin host's tests that misbehaves on purpose, one action per
//! misbehaviour: `spin` (never returns), `hog` (allocates without bound), `fetch` (HTTP GET of
//! any URL: hosts not granted, private addresses, metadata endpoints, redirects), `secret`
//! (asks for a secret to be injected, granted or not), `flood` (an enormous output), `trap`
//! (executes `unreachable`), `panic` (a Rust panic), `kv` (writes values of any size, to hit
//! quotas), `sign` (HMAC with a named secret) and `escape` (tries to leave the sandbox through
//! WASI: files, environment, sockets, DNS).

use influxify_plugin_sdk::http::Placement;
use influxify_plugin_sdk::kv::Scope;
use influxify_plugin_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Loops forever.
struct Spin;

impl Action for Spin {
    const NAME: &'static str = "spin";
    const DESCRIPTION: &'static str = "Loops forever";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

/// Allocates (and touches) a megabyte at a time, without bound.
struct Hog;

impl Action for Hog {
    const NAME: &'static str = "hog";
    const DESCRIPTION: &'static str = "Allocates without bound";
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

/// The input of `fetch`.
#[derive(Deserialize, JsonSchema)]
struct FetchInput {
    /// The URL to GET.
    url: String,
}

/// What came back.
#[derive(Serialize, JsonSchema)]
struct Fetched {
    /// The HTTP status.
    status: u16,
    /// The response headers.
    headers: Vec<(String, String)>,
    /// The body, as text.
    body: String,
}

impl From<http::Response> for Fetched {
    fn from(response: http::Response) -> Self {
        Fetched {
            status: response.status,
            body: response.text(),
            headers: response.headers,
        }
    }
}

/// GETs any URL; host errors come back as the SDK maps them (a denial is `misconfigured`).
struct Fetch;

impl Action for Fetch {
    const NAME: &'static str = "fetch";
    const DESCRIPTION: &'static str = "HTTP GET of any URL, returning status, headers and body";
    type Input = FetchInput;
    type Output = Fetched;

    fn run(input: FetchInput, _: &Context) -> Result<Outcome<Fetched>, Error> {
        Ok(Fetched::from(http::get(input.url).send()?).into())
    }
}

/// The input of `secret`.
#[derive(Deserialize, JsonSchema)]
struct SecretInput {
    /// The URL to GET.
    url: String,
    /// The secret to have the host inject as `Authorization: Bearer`.
    name: String,
}

/// GETs a URL with a secret injected as bearer token (granted or not, for this host or not).
struct Secret;

impl Action for Secret {
    const NAME: &'static str = "secret";
    const DESCRIPTION: &'static str = "HTTP GET of a URL with a secret injected as bearer token";
    type Input = SecretInput;
    type Output = Fetched;

    fn run(input: SecretInput, _: &Context) -> Result<Outcome<Fetched>, Error> {
        let response = http::get(input.url)
            .secret(input.name, Placement::Bearer)
            .send()?;
        Ok(Fetched::from(response).into())
    }
}

/// The input of `flood`.
#[derive(Deserialize, JsonSchema)]
struct FloodInput {
    /// How many `x` the output string has (the output is 2 bytes more: its quotes).
    bytes: usize,
}

/// Returns a JSON string of `bytes` times `x` (so `bytes + 2` bytes of output, with the quotes),
/// built in place: the SDK's serialization copies it once more, so it needs about 2.5 times
/// `bytes` of memory.
struct Flood;

impl Action for Flood {
    const NAME: &'static str = "flood";
    const DESCRIPTION: &'static str = "Returns an output of the given size";
    type Input = FloodInput;
    type Output = Box<RawValue>;

    fn run(input: FloodInput, _: &Context) -> Result<Outcome<Box<RawValue>>, Error> {
        let mut text = String::with_capacity(input.bytes.saturating_add(2));
        text.push('"');
        text.extend(std::iter::repeat_n('x', input.bytes));
        text.push('"');
        let output = RawValue::from_string(text).map_err(|e| Error::permanent(e.to_string()))?;
        Ok(output.into())
    }
}

/// Executes the `unreachable` instruction.
struct Trap;

impl Action for Trap {
    const NAME: &'static str = "trap";
    const DESCRIPTION: &'static str = "Executes `unreachable`";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        std::process::abort();
    }
}

/// Panics (which aborts: `unreachable` after the message is written to stderr).
struct Panic;

impl Action for Panic {
    const NAME: &'static str = "panic";
    const DESCRIPTION: &'static str = "Panics";
    type Input = NoInput;
    type Output = ();

    fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
        panic!("test-hostile panics on purpose");
    }
}

/// Which kv scope.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KvScope {
    /// Shared by every conversation.
    Plugin,
    /// The current end user's.
    User,
}

/// The input of `kv`.
#[derive(Deserialize, JsonSchema)]
struct KvInput {
    /// `plugin` or `user`.
    scope: KvScope,
    /// The key.
    key: String,
    /// The size of the value to store, in bytes.
    bytes: usize,
}

/// What `kv` read back.
#[derive(Serialize, JsonSchema)]
struct KvOutput {
    /// The size of the value read back after the write (absent if there was none).
    stored: Option<usize>,
}

/// Sets a key to a value of the given size, then reads it back.
struct Kv;

impl Action for Kv {
    const NAME: &'static str = "kv";
    const DESCRIPTION: &'static str = "Sets a key to a value of the given size and reads it back";
    type Input = KvInput;
    type Output = KvOutput;

    fn run(input: KvInput, _: &Context) -> Result<Outcome<KvOutput>, Error> {
        let scope = match input.scope {
            KvScope::Plugin => Scope::Plugin,
            KvScope::User => Scope::User,
        };
        kv::set(scope, &input.key, &vec![b'x'; input.bytes])?;
        let stored = kv::get(scope, &input.key)?.map(|value| value.len());
        Ok(KvOutput { stored }.into())
    }
}

/// The input of `sign`.
#[derive(Deserialize, JsonSchema)]
struct SignInput {
    /// The secret to sign with.
    secret: String,
    /// The message.
    message: String,
}

/// The signature, and whether the host verifies it (and refuses a tampered one).
#[derive(Serialize, JsonSchema)]
struct Signed {
    /// HMAC-SHA256, hex.
    signature: String,
    /// Whether the signature verifies.
    verified: bool,
    /// Whether a tampered signature verifies (it must not).
    tampered_verified: bool,
}

/// Signs a message with a named secret it never holds, and verifies the signature.
struct Sign;

impl Action for Sign {
    const NAME: &'static str = "sign";
    const DESCRIPTION: &'static str = "HMAC-SHA256 with a named secret, then verification";
    type Input = SignInput;
    type Output = Signed;

    fn run(input: SignInput, _: &Context) -> Result<Outcome<Signed>, Error> {
        let signature = crypto::hmac_sha256(&input.secret, input.message.as_bytes())?;
        let verified =
            crypto::verify_hmac_sha256(&input.secret, input.message.as_bytes(), &signature)?;
        let mut tampered = signature.clone();
        tampered[0] ^= 1;
        let tampered_verified =
            crypto::verify_hmac_sha256(&input.secret, input.message.as_bytes(), &tampered)?;
        Ok(Signed {
            signature: crypto::to_hex(&signature),
            verified,
            tampered_verified,
        }
        .into())
    }
}

/// The input of `escape`.
#[derive(Deserialize, JsonSchema)]
struct EscapeInput {
    /// The address to open a TCP connection to (`127.0.0.1:PORT`).
    addr: String,
}

/// One attempt to leave the sandbox.
#[derive(Serialize, JsonSchema)]
struct Attempt {
    /// Whether it succeeded.
    ok: bool,
    /// What it got, when it succeeded (the start of a file, names, a count, addresses).
    value: Option<String>,
    /// The error, when it failed.
    error: Option<String>,
}

impl<T: std::fmt::Display, E: std::fmt::Display> From<Result<T, E>> for Attempt {
    fn from(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Attempt {
                ok: true,
                value: Some(value.to_string()),
                error: None,
            },
            Err(error) => Attempt {
                ok: false,
                value: None,
                error: Some(error.to_string()),
            },
        }
    }
}

/// What each attempt to leave the sandbox got.
#[derive(Serialize, JsonSchema)]
struct Escaped {
    /// `std::fs::read_to_string("/etc/passwd")` (its first 100 characters).
    passwd: Attempt,
    /// `std::fs::read_dir("/")` (the names, comma-separated).
    root: Attempt,
    /// `std::env::vars().count()`: always succeeds, the value is the count.
    env_vars: Attempt,
    /// `std::env::var("HOME")`.
    home: Attempt,
    /// `std::net::TcpStream::connect(addr)` (the peer address).
    connect: Attempt,
    /// `"localhost:80".to_socket_addrs()` (the addresses, comma-separated).
    resolve: Attempt,
}

/// Tries to leave the sandbox through WASI: read a file, list `/`, read the environment, open a
/// TCP connection, resolve a name. Reports what each attempt got.
struct Escape;

impl Action for Escape {
    const NAME: &'static str = "escape";
    const DESCRIPTION: &'static str = "Tries files, environment, sockets and DNS through WASI";
    type Input = EscapeInput;
    type Output = Escaped;

    fn run(input: EscapeInput, _: &Context) -> Result<Outcome<Escaped>, Error> {
        use std::net::ToSocketAddrs;
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map(|text| text.chars().take(100).collect::<String>());
        let root = std::fs::read_dir("/").and_then(|entries| {
            let names = entries
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(names.join(","))
        });
        let env_vars = Ok::<_, String>(std::env::vars().count());
        let home = std::env::var("HOME");
        let connect =
            std::net::TcpStream::connect(input.addr.as_str()).and_then(|stream| stream.peer_addr());
        let resolve = "localhost:80"
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.to_string()).collect::<Vec<_>>().join(","));
        Ok(Escaped {
            passwd: passwd.into(),
            root: root.into(),
            env_vars: env_vars.into(),
            home: home.into(),
            connect: connect.into(),
            resolve: resolve.into(),
        }
        .into())
    }
}

/// The input of `sleep`.
#[derive(Deserialize, JsonSchema)]
struct SleepInput {
    /// How long to sleep, in milliseconds.
    ms: u64,
}

/// How long the sleep lasted.
#[derive(Serialize, JsonSchema)]
struct Slept {
    /// Milliseconds actually slept.
    ms: u128,
}

/// Sleeps through WASI (the host bounds it by the call's deadline).
struct Sleep;

impl Action for Sleep {
    const NAME: &'static str = "sleep";
    const DESCRIPTION: &'static str = "Sleeps through WASI";
    type Input = SleepInput;
    type Output = Slept;

    fn run(input: SleepInput, _: &Context) -> Result<Outcome<Slept>, Error> {
        let started = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(input.ms));
        Ok(Slept {
            ms: started.elapsed().as_millis(),
        }
        .into())
    }
}

influxify_plugin_sdk::plugin!(TestHostile: [Spin, Hog, Fetch, Secret, Flood, Trap, Panic, Kv, Sign, Escape, Sleep]);
