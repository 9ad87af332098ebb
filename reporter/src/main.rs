//! `reporter`: parses the command line and calls the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reporter::install::{self, InstallOptions};
use reporter::{Config, Error, FlushOptions, OsSettings, Reporter, build, system};
use schemas::{Consent, SchemaId};
use serde_json::Value;

/// Opt-in telemetry client: queues reports durably, shows them, sends them.
#[derive(Debug, Parser)]
#[command(name = "reporter", version)]
struct Cli {
    /// Configuration file [default: $REPORTER_CONFIG, else
    /// %ProgramData%\Reporter\reporter.toml on Windows, reporter.toml elsewhere]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a report and queue it (`flush` sends it).
    Send {
        #[command(subcommand)]
        report: SendKind,
    },
    /// Queue a crash report for every crash Report.wer under DIR (once each);
    /// without DIR, under Windows Error Reporting's ReportArchive and ReportQueue.
    ImportWer {
        dir: Option<PathBuf>,
        #[command(flatten)]
        os: OsFlags,
    },
    /// Print the queued reports as they would be sent, and as the edge keeps them.
    Show {
        /// Indented JSON instead of one line per report.
        #[arg(long)]
        pretty: bool,
    },
    /// Send the queued reports to ingest.
    Flush {
        /// Longest the flush may take [default: flush.max_seconds, 60]
        #[arg(long)]
        max_seconds: Option<u64>,
        /// Reports per request, 1 to 100 [default: flush.batch_size, 100]
        #[arg(long)]
        batch_size: Option<usize>,
    },
    /// Print, as JSON, everything the pipeline holds about this machine
    /// (its rows of every table, the aggregates that count it).
    Export {
        /// Write the JSON to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Have everything the pipeline holds about this machine erased, and
    /// empty the local queue. Switch telemetry off too (Group Policy
    /// AllowTelemetry = 0, or uninstall), or it reports again.
    Erase {
        /// Confirm: the erasure cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// What the scheduled task runs: queue today's heartbeat (once a day),
    /// import new WER crashes from their standard folders, then flush.
    Run {
        /// Longest the flush may take [default: flush.max_seconds, 60]
        #[arg(long)]
        max_seconds: Option<u64>,
    },
    /// (Windows, as administrator) Set up %ProgramData%\Reporter with an ACL
    /// for SYSTEM and Administrators only, write its reporter.toml unless
    /// there is one, and register the scheduled task that runs `reporter run`.
    Install {
        /// Ingest's URL for a new reporter.toml (or set by Group Policy).
        #[arg(long)]
        endpoint: Option<String>,
        /// Enrollment token for a new reporter.toml (or set by Group Policy).
        #[arg(long)]
        token: Option<String>,
        /// Consent for a new reporter.toml; Group Policy may lower it.
        #[arg(long, value_parser = ["required", "optional"], default_value = "required")]
        consent: String,
        /// Hours between runs (1 to 24); each run starts at a random point of
        /// its interval.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=24))]
        every_hours: u32,
        /// Only print the task's definition (Task Scheduler XML, e.g. for a
        /// Group Policy scheduled-task item) and change nothing.
        #[arg(long)]
        print_task: bool,
    },
    /// (Windows, as administrator) Remove the scheduled task.
    Uninstall {
        /// Also delete %ProgramData%\Reporter: queue, machine id, configuration.
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SendKind {
    /// A crash (crash/1), from a payload JSON file.
    Crash {
        #[arg(long)]
        json: PathBuf,
        #[command(flatten)]
        os: OsFlags,
    },
    /// A feature request (feature_request/1); needs consent `optional`.
    FeatureRequest {
        #[arg(long, required_unless_present = "json")]
        title: Option<String>,
        #[arg(long)]
        body: Option<String>,
        /// e.g. shell.taskbar
        #[arg(long, required_unless_present = "json")]
        category: Option<String>,
        /// BCP 47 tag of the text, e.g. zh-CN
        #[arg(long)]
        language: Option<String>,
        /// The payload from a JSON file instead of the flags.
        #[arg(long, conflicts_with_all = ["title", "body", "category", "language"])]
        json: Option<PathBuf>,
        #[command(flatten)]
        os: OsFlags,
    },
    /// Feedback (feedback/1): a 1-5 rating of a product area; needs consent `optional`.
    Feedback {
        #[arg(long, required_unless_present = "json", value_parser = clap::value_parser!(u8).range(1..=5))]
        rating: Option<u8>,
        /// e.g. update
        #[arg(long, required_unless_present = "json")]
        category: Option<String>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long, conflicts_with_all = ["rating", "category", "text"])]
        json: Option<PathBuf>,
        #[command(flatten)]
        os: OsFlags,
    },
    /// A heartbeat (heartbeat/1): the machine was active on a day.
    Heartbeat {
        /// YYYY-MM-DD [default: today, UTC]
        #[arg(long)]
        day: Option<String>,
        #[arg(long)]
        uptime_minutes: Option<u32>,
        #[arg(long, conflicts_with_all = ["day", "uptime_minutes"])]
        json: Option<PathBuf>,
        #[command(flatten)]
        os: OsFlags,
    },
}

/// OS facts overriding the configuration's `[os]`.
#[derive(Debug, Args)]
struct OsFlags {
    #[arg(long)]
    os_product: Option<String>,
    /// major.minor.build, e.g. 10.0.19045
    #[arg(long)]
    os_version: Option<String>,
    /// Update build revision (UBR)
    #[arg(long)]
    os_revision: Option<u32>,
    /// e.g. zh-CN
    #[arg(long)]
    locale: Option<String>,
    /// x64, x86 or arm64
    #[arg(long)]
    arch: Option<String>,
}

impl From<OsFlags> for OsSettings {
    fn from(f: OsFlags) -> Self {
        OsSettings {
            product: f.os_product,
            version: f.os_version,
            revision: f.os_revision,
            locale: f.locale,
            arch: f.arch,
        }
    }
}

/// Longest an export or erasure request may take.
const RIGHTS_TIMEOUT: Duration = Duration::from_secs(60);

fn payload(json: Option<PathBuf>, from_flags: impl FnOnce() -> Value) -> Result<Value, Error> {
    json.map_or_else(|| Ok(from_flags()), |path| build::payload_from_file(&path))
}

fn send(reporter: &mut Reporter, kind: SendKind) -> Result<(), Error> {
    let (schema, payload, os) = match kind {
        SendKind::Crash { json, os } => (SchemaId::CRASH_V1, build::payload_from_file(&json)?, os),
        SendKind::FeatureRequest {
            title,
            body,
            category,
            language,
            json,
            os,
        } => {
            let p = payload(json, || {
                build::feature_request(
                    title.as_deref().unwrap_or_default(),
                    body.as_deref(),
                    category.as_deref().unwrap_or_default(),
                    language.as_deref(),
                )
            })?;
            (SchemaId::FEATURE_REQUEST_V1, p, os)
        }
        SendKind::Feedback {
            rating,
            category,
            text,
            json,
            os,
        } => {
            let p = payload(json, || {
                build::feedback(
                    rating.unwrap_or_default(),
                    category.as_deref().unwrap_or_default(),
                    text.as_deref(),
                )
            })?;
            (SchemaId::FEEDBACK_V1, p, os)
        }
        SendKind::Heartbeat {
            day,
            uptime_minutes,
            json,
            os,
        } => {
            let p = payload(json, || build::heartbeat(day.as_deref(), uptime_minutes))?;
            (SchemaId::HEARTBEAT_V1, p, os)
        }
    };
    let sent = reporter.send(schema, payload, &os.into())?;
    println!(
        "queued {schema} report {} ({} waiting; `reporter flush` sends)",
        sent.report_id,
        reporter.queue().len()
    );
    print_drops(sent.pushed.dropped_full, sent.pushed.dropped_expired);
    Ok(())
}

/// Which OS facts the machine gave, for `show`.
fn registry_facts(os: &OsSettings) -> String {
    let facts: Vec<&str> = [
        ("product", os.product.is_some()),
        ("version", os.version.is_some()),
        ("revision", os.revision.is_some()),
        ("locale", os.locale.is_some()),
        ("arch", os.arch.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, known)| known.then_some(name))
    .collect();
    if facts.is_empty() {
        "nothing".into()
    } else {
        facts.join(", ")
    }
}

fn print_drops(full: u64, expired: u64) {
    if full > 0 {
        println!("dropped {full} oldest report(s) to stay within queue.max_bytes");
    }
    if expired > 0 {
        println!("dropped {expired} report(s) older than queue.max_age_days");
    }
}

fn program_data() -> Result<PathBuf, Error> {
    system::program_data_dir()
        .ok_or_else(|| Error::Usage("install and uninstall need Windows' %ProgramData%".into()))
}

/// Imports every crash Report.wer under `dirs`; whether none failed. A
/// missing folder is skipped when `standard` (WER makes them on first use).
fn import_wer(
    reporter: &mut Reporter,
    dirs: &[PathBuf],
    os: &OsSettings,
    standard: bool,
) -> Result<bool, Error> {
    let mut ok = true;
    for dir in dirs {
        if standard && !dir.is_dir() {
            println!("{}: not there, nothing to import", dir.display());
            continue;
        }
        let s = reporter.import_wer(dir, os)?;
        println!(
            "{}: {} Report.wer file(s): {} queued, {} imported before, {} not a crash, {} failed",
            dir.display(),
            s.found,
            s.queued.len(),
            s.already,
            s.skipped.len(),
            s.failed.len()
        );
        for (path, event_type) in &s.skipped {
            println!("  skipped {} (EventType={event_type})", path.display());
        }
        for (path, why) in &s.failed {
            eprintln!("  failed {}: {why}", path.display());
        }
        print_drops(s.pushed.dropped_full, s.pushed.dropped_expired);
        ok &= s.failed.is_empty();
    }
    Ok(ok)
}

async fn run(cli: Cli) -> Result<bool, Error> {
    match cli.command {
        Command::Install {
            endpoint,
            token,
            consent,
            every_hours,
            print_task,
        } => {
            let exe = std::env::current_exe().map_err(|source| Error::Io {
                context: "finding reporter.exe".into(),
                source,
            })?;
            let options = InstallOptions {
                endpoint,
                token,
                consent: if consent == "optional" {
                    Consent::Optional
                } else {
                    Consent::Required
                },
                every_hours,
                exe,
                dir: program_data()?,
            };
            if print_task {
                let config = options.dir.join(reporter::config::DEFAULT_PATH);
                print!("{}", install::task_xml(&options.exe, &config, every_hours));
                return Ok(true);
            }
            let done = install::install(&options)?;
            println!(
                "installed: task {} runs `{} run` as SYSTEM every {every_hours} h; {} {}",
                install::TASK_NAME,
                options.exe.display(),
                if done.wrote_config {
                    "wrote"
                } else {
                    "kept the existing"
                },
                done.config.display()
            );
            if let Err(e) = Config::load(&done.config) {
                eprintln!(
                    "reporter: warning: the task cannot send yet: {e} \
                     (give --endpoint and --token, edit the file, or set them by Group Policy)"
                );
            }
            return Ok(true);
        }
        Command::Uninstall { purge } => {
            let dir = program_data()?;
            install::uninstall(&dir, purge)?;
            println!(
                "uninstalled: task {} removed{}",
                install::TASK_NAME,
                if purge {
                    format!("; {} deleted", dir.display())
                } else {
                    String::new()
                }
            );
            return Ok(true);
        }
        _ => {}
    }
    let config = Config::load(&Config::path(cli.config.as_deref()))?;
    let mut reporter = Reporter::open(config)?;
    match cli.command {
        Command::Install { .. } | Command::Uninstall { .. } => unreachable!("handled above"),
        Command::Send { report } => send(&mut reporter, report)?,
        Command::ImportWer { dir, os } => {
            return match dir {
                Some(dir) => import_wer(&mut reporter, &[dir], &os.into(), false),
                None => import_wer(&mut reporter, &standard_wer_dirs()?, &os.into(), true),
            };
        }
        Command::Run { max_seconds } => {
            let mut ok = true;
            if reporter.consent().level.is_some() {
                if let Some(sent) = reporter.daily_heartbeat()? {
                    println!("queued heartbeat/1 report {}", sent.report_id);
                }
                let dirs = system::wer_dirs();
                ok &= import_wer(&mut reporter, &dirs, &OsSettings::default(), true)?;
            } else {
                println!("{}: nothing queued", reporter.consent().describe());
            }
            let mut options = FlushOptions::from_settings(&reporter.config().flush);
            options.progress = false;
            if let Some(secs) = max_seconds {
                options.max_time = Duration::from_secs(secs.max(1));
            }
            return Ok(flush(&mut reporter, &options).await? && ok);
        }
        Command::Export { out } => {
            let export = reporter.export(RIGHTS_TIMEOUT).await?;
            let text = serde_json::to_string_pretty(&export).expect("JSON encodes");
            match out {
                Some(path) => {
                    std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
                        context: format!("writing {}", path.display()),
                        source,
                    })?;
                    println!("exported to {}", path.display());
                }
                None => println!("{text}"),
            }
        }
        Command::Erase { yes } => {
            if !yes {
                return Err(Error::Usage(
                    "erasing this machine's data cannot be undone; run `reporter erase --yes`"
                        .into(),
                ));
            }
            let (answer, dropped) = reporter.erase(RIGHTS_TIMEOUT).await?;
            println!(
                "erasure {} taken by ingest: every report of this machine is removed within minutes; \
                 {dropped} queued report(s) dropped here",
                answer["erasure_id"].as_str().unwrap_or("(no id)")
            );
        }
        Command::Show { pretty } => {
            let mut out = std::io::stdout().lock();
            let summary = reporter.show(&mut out, pretty)?;
            let _ = out.flush();
            let stats = reporter.queue().stats();
            eprintln!(
                "{} report(s) queued, {} bytes on disk. The machine id is replaced at the edge by a keyed hash; \
                 the edge's scrub rules would replace: {:?}",
                summary.reports,
                reporter.queue().bytes(),
                summary.scrubbed
            );
            eprintln!(
                "dropped so far: {} for room, {} for age, {} refused by ingest, {} switched off by policy, \
                 {} over the consent; {} sent",
                stats.dropped_full,
                stats.dropped_expired,
                stats.dropped_rejected,
                stats.dropped_disabled,
                stats.dropped_consent,
                stats.sent
            );
            eprintln!("{}", reporter.consent().describe());
            let machine = &reporter.config().machine;
            match reporter.os(&OsSettings::default()) {
                Ok(os) => eprintln!(
                    "os: {} {}(version {}, revision {}, {}, {}); the registry gave: {}",
                    os.product,
                    machine
                        .display_version
                        .as_deref()
                        .map_or_else(String::new, |v| format!("{v} ")),
                    os.version,
                    os.revision,
                    os.locale,
                    os.arch,
                    registry_facts(&machine.os)
                ),
                Err(e) => eprintln!("os: {e}"),
            }
        }
        Command::Flush {
            max_seconds,
            batch_size,
        } => {
            let mut options = FlushOptions::from_settings(&reporter.config().flush);
            if let Some(secs) = max_seconds {
                options.max_time = Duration::from_secs(secs.max(1));
            }
            if let Some(n) = batch_size {
                if !(1..=100).contains(&n) {
                    return Err(Error::Usage("--batch-size must be 1 to 100".into()));
                }
                options.batch_size = n;
            }
            return flush(&mut reporter, &options).await;
        }
    }
    Ok(true)
}

/// WER's standard folders, or a usage error where there are none.
fn standard_wer_dirs() -> Result<Vec<PathBuf>, Error> {
    let dirs = system::wer_dirs();
    if dirs.is_empty() {
        return Err(Error::Usage(
            "give the folder to import: %ProgramData% is not set".into(),
        ));
    }
    Ok(dirs)
}

/// Flushes and says what happened; whether everything was sent.
async fn flush(reporter: &mut Reporter, options: &FlushOptions) -> Result<bool, Error> {
    let r = reporter.flush(options).await?;
    println!(
        "sent {} report(s) ({} already there) in {} request(s); {} refused for good; {} still queued",
        r.accepted.len() + r.duplicates.len(),
        r.duplicates.len(),
        r.requests,
        r.rejected.len(),
        r.remaining
    );
    for rejected in &r.rejected {
        println!(
            "  refused {} {}: {} {}",
            rejected.schema, rejected.report_id, rejected.error, rejected.message
        );
    }
    for (schema, n) in &r.disabled {
        println!("  dropped {n} {schema} report(s): the organisation switched this type off");
    }
    if r.expired > 0 {
        println!(
            "  dropped {} report(s) older than queue.max_age_days",
            r.expired
        );
    }
    if r.over_consent > 0 {
        println!(
            "  dropped {} report(s) the consent in force no longer covers: {}",
            r.over_consent,
            reporter.consent().describe()
        );
    }
    if r.stopped {
        eprintln!(
            "reporter: flush stopped on an answer it cannot act on; \
             nothing was dropped for it, {} report(s) still queued: {}",
            r.remaining,
            r.last_error
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        );
    } else if !r.complete()
        && let Some(e) = &r.last_error
    {
        eprintln!("reporter: flush incomplete: {e}");
    }
    Ok(r.complete())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("reporter: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("reporter: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
