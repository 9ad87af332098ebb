//! `processor [--config PATH]`: reads the configuration (default
//! `processor.toml`, or `$PROCESSOR_CONFIG`) and consumes until SIGINT or
//! SIGTERM.
//!
//! `processor report [--since 30d] [--out report.html] [--config PATH]`:
//! writes the roadmap report (HTML, and the same tables as CSV beside it)
//! from the ClickHouse the configuration names.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Consumes the reports and outcomes topics into exact ClickHouse tables.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "PROCESSOR_CONFIG",
        default_value = "processor.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes the roadmap report (HTML, with the same tables as CSV beside it).
    Report {
        /// How far back, in days, e.g. `30d`.
        #[arg(long, default_value = "30d", value_parser = since)]
        since: u32,
        /// Where the HTML goes; the CSV files go beside it.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
}

fn since(text: &str) -> Result<u32, String> {
    processor::report::parse_since(text).ok_or_else(|| format!("give days, e.g. 30d, not {text:?}"))
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
    match args.command {
        Some(Command::Report { since, out }) => {
            let store = processor::Store::connect(&config.clickhouse).await?;
            let report = processor::report::gather(&store, since).await?;
            let written = processor::report::write(&report, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            for file in written {
                tracing::info!(file = %file.display(), "written");
            }
        }
        None => processor::run(config, pipeline::shutdown::signal()).await?,
    }
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
            Args::try_parse_from(["processor", "report", "--since", "7d", "--config", "p.toml"])
                .expect("parses");
        assert_eq!(args.config, PathBuf::from("p.toml"));
        assert!(matches!(
            args.command,
            Some(Command::Report { since: 7, .. })
        ));
        assert!(Args::try_parse_from(["processor", "report", "--since", "soon"]).is_err());
        assert!(Args::try_parse_from(["processor", "--out", "x.html"]).is_err());
    }
}
