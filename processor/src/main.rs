//! `processor [--config PATH]`: reads the configuration (default
//! `processor.toml`, or `$PROCESSOR_CONFIG`) and consumes until SIGINT or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::logging::init();
    let path = config_path()?;
    let config = processor::Config::load(&path)
        .with_context(|| format!("loading configuration {}", path.display()))?;
    processor::run(config, pipeline::shutdown::signal()).await?;
    Ok(())
}

fn config_path() -> anyhow::Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(std::env::var_os("PROCESSOR_CONFIG")
            .map_or_else(|| PathBuf::from("processor.toml"), PathBuf::from)),
        (Some("--config"), Some(path)) => Ok(PathBuf::from(path)),
        _ => anyhow::bail!("usage: processor [--config PATH]"),
    }
}
