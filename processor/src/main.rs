//! `processor [--config PATH]`: reads the configuration (default
//! `processor.toml`, or `$PROCESSOR_CONFIG`) and consumes until SIGINT or
//! SIGTERM.
//!
//! `processor report [--since 30d] [--out report.html] [--config PATH]`:
//! writes the roadmap report (HTML, and the same tables as CSV beside it)
//! from the ClickHouse the configuration names.

use std::path::PathBuf;

use anyhow::{Context, bail};

const USAGE: &str = "usage: processor [--config PATH]\n       \
                     processor report [--since 30d] [--out report.html] [--config PATH]";

#[derive(Debug)]
struct Args {
    report: bool,
    config: Option<PathBuf>,
    since: u32,
    out: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        report: false,
        config: None,
        since: 30,
        out: PathBuf::from("report.html"),
    };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("report") {
        args.report = true;
        it.next();
    }
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--config" => args.config = Some(PathBuf::from(value()?)),
            "--since" if args.report => {
                let text = value()?;
                args.since = processor::report::parse_since(&text)
                    .with_context(|| format!("--since {text}: give days, e.g. 30d"))?;
            }
            "--out" if args.report => args.out = PathBuf::from(value()?),
            "--help" | "-h" => bail!("{USAGE}"),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(args)
}

/// Every report is many small, short-lived allocations (parsed JSON,
/// scrubbed text, encoded rows); mimalloc serves them with less work than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::logging::init();
    let args = parse_args()?;
    let path = args
        .config
        .or_else(|| std::env::var_os("PROCESSOR_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("processor.toml"));
    let config = processor::Config::load(&path)
        .with_context(|| format!("loading configuration {}", path.display()))?;
    if args.report {
        let store = processor::Store::connect(&config.clickhouse).await?;
        let report = processor::report::gather(&store, args.since).await?;
        let written = processor::report::write(&report, &args.out)
            .with_context(|| format!("writing {}", args.out.display()))?;
        for file in written {
            tracing::info!(file = %file.display(), "written");
        }
        return Ok(());
    }
    processor::run(config, pipeline::shutdown::signal()).await?;
    Ok(())
}
