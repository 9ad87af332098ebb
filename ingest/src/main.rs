//! `ingest [--config PATH]`: reads the configuration (default `ingest.toml`,
//! or `$INGEST_CONFIG`), binds, and serves until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

/// Every report is many small, short-lived allocations (parsed JSON,
/// scrubbed text, encoded rows); mimalloc serves them with less work than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::logging::init();
    let path = config_path()?;
    let config = ingest::Config::load(&path)
        .with_context(|| format!("loading configuration {}", path.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "ingest listening");
    ingest::serve(config, listener, pipeline::shutdown::signal()).await?;
    Ok(())
}

fn config_path() -> anyhow::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(std::env::var_os("INGEST_CONFIG")
            .map_or_else(|| PathBuf::from("ingest.toml"), PathBuf::from)),
        (Some("--config"), Some(path)) => Ok(PathBuf::from(path)),
        _ => anyhow::bail!("usage: ingest [--config PATH]"),
    }
}
