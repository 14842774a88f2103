//! `influxify serve`: the engine over HTTP. Channel webhooks (`/channels/{channel}/webhook`)
//! feed the durable runtime on the embedded sled store; replies and plugin calls go through the
//! plugin host. Stops gracefully on Ctrl-C: no new requests, writers finish, everything flushed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use influxify_runtime::{Config, MigrationPolicy, Runtime};
use influxify_server::{AppState, ChannelEffects, WebChat};
use influxify_store::{DEFAULT_CACHE_BYTES, SledStore, Store};

use crate::run::{open_plugins, read_flows};

pub fn run(
    addr: SocketAddr,
    data: &Path,
    flows: &Path,
    entry: &str,
    plugins: &Path,
) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(serve(addr, data, flows, entry, plugins))
}

async fn serve(
    addr: SocketAddr,
    data: &Path,
    flows: &Path,
    entry: &str,
    plugins: &Path,
) -> anyhow::Result<ExitCode> {
    let sources = read_flows(flows)?;
    let sled = SledStore::open(data, DEFAULT_CACHE_BYTES)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let (host, catalog) = open_plugins(plugins, &sled, data)?;
    let mut config = Config::new("default", entry);
    config.catalog = Some(catalog);
    let store: Arc<dyn Store> = Arc::new(sled);
    let webchat = Arc::new(WebChat::open(data)?);
    let effects = ChannelEffects::new(host.clone()).with_webchat(webchat.clone());
    let runtime = Runtime::start(store, Arc::new(effects), config).await?;
    runtime
        .publish(sources, Some(MigrationPolicy::Keep))
        .await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("influxify: serving on http://{}", listener.local_addr()?);
    let app = influxify_server::router(AppState {
        runtime: runtime.clone(),
        plugins: host,
        webchat,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
