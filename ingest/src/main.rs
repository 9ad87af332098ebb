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
///
/// mimalloc asks the kernel for transparent huge pages on its arenas
/// (`MADV_HUGEPAGE`), so on a kernel whose THP mode is `madvise` (or
/// `always`) each 2 MiB region the heap touches becomes resident whole.
/// `main` turns that off for the process: under batch load (32 batch
/// requests at once, each checked on its own blocking thread) peak RSS was
/// 418 MB with huge pages and 169 MB without, idle 72 MB and 56 MB
/// (bench/RESULTS.md, "B5: what ingest's memory is").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking work at most: checking a batch (CPU work, so more
/// threads than cores buy nothing) and the spool's disk writes. Each thread
/// that allocates keeps its own mimalloc heap, about 2 MB under batch load;
/// tokio's default of 512 let 32 concurrent batches take 32 threads (peak
/// RSS 169 MB, against 124 MB with 8). Batches beyond the threads wait
/// holding only their compressed body; the byte budget still bounds them.
fn max_blocking_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).max(8)
}

/// mimalloc's setting for how long memory freed to it stays resident before
/// it goes back to the kernel; read from the environment when the process
/// starts.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Memory freed to mimalloc goes back to the kernel at once, not after
/// mimalloc 3's default of one second. Under batch load each blocking
/// thread frees a batch's inflated body, parsed reports and encoded
/// records many times a second; kept for a second, what they free piles up
/// resident on each of the threads at once. Peak RSS over bench/run's B1
/// then B2 fell from 88.7 MB to 66.5 MB (bench/RESULTS.md, "B5: what
/// ingest's memory is"), for a `madvise` per freed span.
///
/// mimalloc reads its options before `main` runs, and setting one in code
/// needs `unsafe` (which this workspace forbids), so the process runs itself
/// again (`exec`: the same process id) with `MIMALLOC_PURGE_DELAY=0` unless
/// the variable is already set, which leaves an operator's own value in
/// place. If that fails, ingest runs on with mimalloc's default.
fn purge_freed_memory_at_once() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
        return;
    }
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(PURGE_DELAY_VARIABLE, "0")
            .exec(),
        Err(error) => error,
    };
    eprintln!("ingest: could not restart with {PURGE_DELAY_VARIABLE}=0: {error}");
}

fn main() -> anyhow::Result<()> {
    purge_freed_memory_at_once();
    let args = Args::parse();
    pipeline::logging::init();
    // Process-wide (the flag is on the address space); failing only costs
    // memory, not correctness.
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(%error, "could not turn transparent huge pages off");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(max_blocking_threads())
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
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
