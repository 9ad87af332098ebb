//! `telemetry-admin`: the warehouse jobs from the command line, and
//! `telemetry-admin serve` to run the scheduled ones as a service.
//!
//! ClickHouse and the jobs' settings come from the processor's configuration
//! file (`--config`, or `$PROCESSOR_CONFIG`); without one, ClickHouse at
//! `http://127.0.0.1:8123`, database `telemetry`, and the defaults. The
//! `--clickhouse-url`, `--database`, `--user` and `--password` options (or
//! `CLICKHOUSE_URL`, `CLICKHOUSE_DATABASE`, `CLICKHOUSE_USER`,
//! `CLICKHOUSE_PASSWORD`) take precedence over the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use processor::config::ClickHouseConfig;
use tokio_util::sync::CancellationToken;
use warehouse::Settings;
use warehouse::cookbook::{self, Cookbook};

/// Runs the jobs over the telemetry tables in ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "telemetry-admin", version)]
struct Args {
    /// The processor's configuration file (TOML); its `[clickhouse]`,
    /// `[retention]` and `[analytics]` sections are read.
    #[arg(long, global = true, env = "PROCESSOR_CONFIG")]
    config: Option<PathBuf>,
    /// ClickHouse's HTTP interface, e.g. `http://127.0.0.1:8123`.
    #[arg(long, global = true, env = "CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// The database.
    #[arg(long, global = true, env = "CLICKHOUSE_DATABASE", value_parser = identifier)]
    database: Option<String>,
    #[arg(long, global = true, env = "CLICKHOUSE_USER")]
    user: Option<String>,
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    #[command(subcommand)]
    command: Command,
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
        /// A day of the ISO week whose feature-request trend is shown
        /// (YYYY-MM-DD, UTC); today by default.
        #[arg(long, value_parser = day)]
        week_of: Option<time::Date>,
    },
    /// Computes crash regressions once and prints them (TSV).
    Regressions,
    /// Drops the partitions past their retention once and prints them.
    Retention,
    /// Applies the migrations not applied yet and prints their versions.
    Migrate,
    /// Lists the analysts' queries, or runs one and prints TSV with names.
    Cookbook {
        /// Print the SQL that would be sent instead of sending it.
        #[arg(long)]
        sql: bool,
        /// Read the query files from this folder instead of the built-in
        /// ones (`schemas/queries/`).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// The query to run; none lists them all with their parameters.
        name: Option<String>,
        /// Its parameters, `name=value` each.
        #[arg(value_parser = param, requires = "name")]
        params: Vec<(String, String)>,
    },
    /// Runs retention and crash regressions on their intervals until SIGINT
    /// or SIGTERM.
    Serve {
        /// Where to serve `/metrics` and `/healthz`; none by default.
        #[arg(long, env = "TELEMETRY_ADMIN_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
    },
}

fn since(text: &str) -> Result<u32, String> {
    warehouse::report::parse_since(text).ok_or_else(|| format!("give days, e.g. 30d, not {text:?}"))
}

fn day(text: &str) -> Result<time::Date, String> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("give a day, e.g. 2026-11-30, not {text:?}"))
}

fn param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| format!("give name=value, not {text:?}"))
}

/// A database name goes into SQL (`CREATE DATABASE`): letters, digits and
/// underscores only, as the processor's configuration requires too.
fn identifier(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| text.to_string())
        .ok_or_else(|| format!("{text:?} is not letters, digits and underscores"))
}

impl Args {
    /// The settings of the configuration file (or the defaults), with the
    /// ClickHouse options over them.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => Settings::from(
                processor::Config::load(path)
                    .with_context(|| format!("loading configuration {}", path.display()))?,
            ),
            None => Settings {
                clickhouse: ClickHouseConfig::local("http://127.0.0.1:8123", "telemetry"),
                retention: Default::default(),
                analytics: Default::default(),
            },
        };
        let clickhouse = &mut settings.clickhouse;
        let overrides = [
            (&mut clickhouse.url, &self.clickhouse_url),
            (&mut clickhouse.database, &self.database),
            (&mut clickhouse.user, &self.user),
            (&mut clickhouse.password, &self.password),
        ];
        for (field, value) in overrides {
            if let Some(value) = value {
                field.clone_from(value);
            }
        }
        Ok(settings)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    pipeline::logging::init();
    let settings = args.settings()?;
    let connect = || async {
        processor::Store::connect(&settings.clickhouse)
            .await
            .context("connecting to clickhouse")
    };
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Report {
            since,
            out: path,
            week_of,
        } => {
            let week_of = week_of.unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
            let report =
                warehouse::report::gather_for_week(&connect().await?, since, week_of).await?;
            for file in warehouse::report::write(&report, &path)
                .with_context(|| format!("writing {}", path.display()))?
            {
                writeln!(out, "{}", file.display())?;
            }
        }
        Command::Regressions => {
            let found =
                warehouse::analytics::run_regressions(&connect().await?, &settings.analytics)
                    .await?;
            writeln!(
                out,
                "build\tprevious_build\tkind\tsignature\tmachines\trate_per_1000\tprevious_rate_per_1000"
            )?;
            for r in found {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{:.2}\t{:.2}",
                    r.os_build_full,
                    r.previous_build,
                    r.kind,
                    r.signature,
                    r.machines,
                    r.rate_per_1000,
                    r.previous_rate_per_1000
                )?;
            }
        }
        Command::Retention => {
            let today = time::OffsetDateTime::now_utc().date();
            let dropped =
                warehouse::retention::run_once(&connect().await?, &settings.retention, today)
                    .await?;
            for (table, partition) in dropped {
                writeln!(out, "{table}\t{partition}")?;
            }
        }
        Command::Migrate => {
            for version in warehouse::migrate::apply_all(&connect().await?).await? {
                writeln!(out, "{version}")?;
            }
        }
        Command::Cookbook {
            sql,
            queries,
            name,
            params,
        } => {
            let cookbook = match &queries {
                Some(dir) => Cookbook::read(dir).with_context(|| format!("{}", dir.display()))?,
                None => Cookbook::built_in(),
            };
            return run_cookbook(&settings.clickhouse, &cookbook, name, params, sql, &mut out)
                .await;
        }
        Command::Serve { metrics_listen } => {
            let stop = CancellationToken::new();
            let metrics = Arc::new(warehouse::metrics::Metrics::default());
            if let Some(addr) = metrics_listen {
                let observed: Arc<dyn pipeline::health::Observed> = metrics.clone();
                tokio::spawn(pipeline::health::serve(addr, observed, stop.clone()));
            }
            let trigger = stop.clone();
            tokio::spawn(async move {
                pipeline::shutdown::signal().await;
                trigger.cancel();
            });
            warehouse::serve(settings, metrics, stop).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the queries, prints one's SQL, or runs it. Exits 2 for a usage
/// error (no such query, a parameter missing, unknown or not of its type),
/// 1 when ClickHouse refuses.
async fn run_cookbook(
    clickhouse: &ClickHouseConfig,
    cookbook: &Cookbook,
    name: Option<String>,
    params: Vec<(String, String)>,
    print_sql: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let Some(name) = name else {
        for query in cookbook.queries()? {
            let usage = if query.params.is_empty() {
                String::new()
            } else {
                format!(" {}", query.usage())
            };
            writeln!(out, "{}{usage}\n    {}", query.name, query.purpose)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let values: BTreeMap<String, String> = params.into_iter().collect();
    let sql = match cookbook.query(&name).and_then(|q| q.bind(&values)) {
        Ok(sql) => sql,
        Err(error) => {
            eprintln!("cookbook: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    if print_sql {
        writeln!(out, "{sql}")?;
        return Ok(ExitCode::SUCCESS);
    }
    // No version probe and no `CREATE DATABASE`: an analyst's login may
    // only read. Uncompressed answers suit every server version.
    let client = pipeline::clickhouse::client(clickhouse.ca_file.as_ref())
        .with_url(&clickhouse.url)
        .with_user(&clickhouse.user)
        .with_password(&clickhouse.password)
        .with_database(&clickhouse.database)
        .with_compression(clickhouse::Compression::None);
    match cookbook::run(&client, &sql).await {
        Ok(tsv) => {
            out.write_all(&tsv)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("cookbook: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_parses() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "telemetry-admin",
            "report",
            "--since",
            "7d",
            "--config",
            "p.toml",
        ])
        .expect("parses");
        assert_eq!(args.config, Some(PathBuf::from("p.toml")));
        assert!(matches!(
            args.command,
            Command::Report {
                since: 7,
                week_of: None,
                ..
            }
        ));
        let args = Args::try_parse_from(["telemetry-admin", "report", "--week-of", "2026-12-02"])
            .expect("parses");
        assert!(matches!(
            args.command,
            Command::Report {
                week_of: Some(day),
                ..
            } if day.to_string() == "2026-12-02"
        ));
        assert!(
            Args::try_parse_from(["telemetry-admin", "report", "--week-of", "last week"]).is_err()
        );
        assert!(Args::try_parse_from(["telemetry-admin", "report", "--since", "soon"]).is_err());
        let args = Args::try_parse_from([
            "telemetry-admin",
            "cookbook",
            "--sql",
            "signature_spread",
            "signature=a=b",
            "days=7",
        ])
        .expect("parses");
        let Command::Cookbook {
            sql, name, params, ..
        } = args.command
        else {
            panic!("cookbook");
        };
        assert!(sql);
        assert_eq!(name.as_deref(), Some("signature_spread"));
        assert_eq!(
            params,
            [
                ("signature".into(), "a=b".into()),
                ("days".into(), "7".into())
            ]
        );
        assert!(Args::try_parse_from(["telemetry-admin", "cookbook", "q", "days"]).is_err());
        assert!(
            Args::try_parse_from(["telemetry-admin", "migrate", "--database", "a; DROP"]).is_err()
        );
    }
}
