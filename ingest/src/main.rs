//! `ingest [--config PATH]`: reads the configuration (default `ingest.toml`,
//! or `$INGEST_CONFIG`), binds, and serves until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The HTTP edge: authenticates, checks consent, validates, scrubs, hashes
/// the machine id and streams accepted reports to Kafka.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, env = "INGEST_CONFIG", default_value = "ingest.toml")]
    config: PathBuf,
}

/// Every report is many small, short-lived allocations (parsed JSON,
/// scrubbed text, encoded rows); mimalloc serves them with less work than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pipeline::logging::init();
    let config = ingest::Config::load(&args.config)
        .with_context(|| format!("loading configuration {}", args.config.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "ingest listening");
    ingest::serve(config, listener, pipeline::shutdown::signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_parses() {
        Args::command().debug_assert();
        let args =
            Args::try_parse_from(["ingest", "--config", "/etc/ingest.toml"]).expect("parses");
        assert_eq!(args.config, PathBuf::from("/etc/ingest.toml"));
        assert!(Args::try_parse_from(["ingest", "--bogus"]).is_err());
    }
}
