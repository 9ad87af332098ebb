//! `processor [--config PATH]`: reads the configuration (default
//! `processor.toml`, or `$PROCESSOR_CONFIG`) and consumes until SIGINT or
//! SIGTERM. The jobs over the tables (report, regressions, retention) are
//! `telemetry-admin`'s.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Consumes the reports and outcomes topics into exact ClickHouse tables.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, env = "PROCESSOR_CONFIG", default_value = "processor.toml")]
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
    let config = processor::Config::load(&args.config)
        .with_context(|| format!("loading configuration {}", args.config.display()))?;
    processor::run(config, pipeline::shutdown::signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_parses() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["processor", "--config", "p.toml"]).expect("parses");
        assert_eq!(args.config, PathBuf::from("p.toml"));
        assert!(Args::try_parse_from(["processor", "report"]).is_err());
    }
}
