//! The machine-side client: makes reports, keeps them in a durable bounded
//! queue while the machine is offline, shows exactly what would leave the
//! machine, and sends them to ingest.
//!
//! ```text
//!  flags / payload JSON ──▶ build (consent, JSON Schemas) ──┐
//!  Report.wer files ─────▶ wer (crash/1, WER id as report id)┴▶ queue (spool, fsync'd)
//!                                                                 │        │
//!                                      show: JSON, edge-scrubbed ◀┘        │
//!  ingest ◀── POST /v1/reports/batch (gzip, ≤ 100) ◀── send (policy, backoff)
//! ```
//!
//! In: a [`Config`] (TOML), payloads from flags or files, WER report
//! folders. Out: envelopes (`schemas::Envelope`) posted to
//! `{endpoint}/v1/reports/batch`; on disk, the queue folder (see `queue`).
//! Nothing is sent but by [`Reporter::flush`]; nothing is queued that the
//! machine's consent does not cover; nothing queued is dropped on an answer
//! that is not recognisably the edge's (see `retry`). The answers are read
//! as `schemas::contract` types.
//!
//! Public, for the binary and the tests: [`Reporter`] and the types it
//! takes and returns, and
//! - [`config`]: the configuration file;
//! - [`system`]: what the machine says (the registry on Windows): OS facts,
//!   Group Policy, `%ProgramData%`;
//! - [`install`]: `reporter install` / `uninstall` (a scheduled task, the
//!   machine-wide folder and its ACL; Windows);
//! - [`build`]: payloads, OS facts, envelopes, local checks.
//!
//! The crate's own:
//! - `consent`: the level in force, the strictest of Group Policy, the
//!   file and the organisation, and who decided it;
//! - `wer`: `Report.wer` parsing;
//! - `queue`: the durable queue, its bounds and counters;
//! - `send`: flushing (policy, batches, what each answer does to the queue);
//! - `edge`: the HTTP calls and their answers, read faithfully;
//! - `retry`: what an answer means (the one place that decides), backoff,
//!   `Retry-After`;
//! - `fault`: the crash tests' abort points (`REPORTER_TEST_ABORT_AT`);
//! - `show`: the listing of what would be sent.

pub mod build;
pub mod config;
mod consent;
mod edge;
mod fault;
pub mod install;
mod queue;
mod retry;
mod send;
mod show;
pub mod system;
mod wer;

use std::path::{Path, PathBuf};

use schemas::SchemaId;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

pub use config::{Config, OsSettings, QueueBounds};
pub use consent::Decision;
pub use queue::{Pushed, Queue, Stats};
pub use send::{Backoff, FlushOptions, FlushReport, SendError};
pub use show::ShowSummary;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Usage(String),
    #[error("refused: {0}")]
    Consent(String),
    #[error("invalid report: {0}")]
    Invalid(String),
    #[error("queue: {0}")]
    Queue(#[from] spool::SpoolError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest refused this machine's enrollment token; nothing was dropped: {0}")]
    Send(SendError),
    #[error("ingest did not {action}: {source}")]
    Edge {
        action: &'static str,
        #[source]
        source: SendError,
    },
}

impl Error {
    /// The process exit code: 2 for bad flags, configuration or input,
    /// 3 for a report the consent does not cover, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Invalid(_) => 2,
            Error::Consent(_) => 3,
            Error::Queue(_) | Error::Io { .. } | Error::Send(_) | Error::Edge { .. } => 1,
        }
    }
}

/// A report just queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub report_id: Uuid,
    pub pushed: Pushed,
}

/// What `import-wer` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// `Report.wer` files found.
    pub found: usize,
    /// Report ids queued now.
    pub queued: Vec<Uuid>,
    /// Files imported before (in the ledger or still queued).
    pub already: usize,
    /// Files that are not crashes: path and `EventType`.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files that could not be read or turned into a report: path and why.
    pub failed: Vec<(PathBuf, String)>,
    /// Old reports dropped while queueing.
    pub pushed: Pushed,
}

/// The reporter with its queue open (and locked).
#[derive(Debug)]
pub struct Reporter {
    config: Config,
    queue: Queue,
    machine_id: String,
}

impl Reporter {
    pub fn open(config: Config) -> Result<Reporter, Error> {
        let queue = Queue::open(&config.queue_dir, config.queue)?;
        let machine_id = queue.machine_id()?;
        Ok(Reporter {
            config,
            queue,
            machine_id,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    /// The consent in force and who decided it (the organisation's cap as
    /// the last flush found it).
    pub fn consent(&self) -> Decision {
        self.config.consent_decision(self.queue.stats().consent_cap)
    }

    /// The OS facts: `os` (flags) over the configuration's `[os]` over what
    /// the machine says.
    pub fn os(&self, os: &OsSettings) -> Result<schemas::OsInfo, Error> {
        let settings = self.config.os.or(&self.config.machine.os);
        build::os_info(&settings, os)
    }

    /// What every envelope carries, with the OS facts `os` overrides.
    /// Refused (exit 3) while the consent in force is off.
    pub fn context(&self, os: &OsSettings) -> Result<build::Context, Error> {
        let decision = self.consent();
        let Some(consent) = decision.level else {
            return Err(Error::Consent(format!(
                "diagnostic data is off; nothing was queued: {}",
                decision.describe()
            )));
        };
        Ok(build::Context {
            machine_id: self.machine_id.clone(),
            consent,
            os: self.os(os)?,
        })
    }

    /// Builds, checks and queues one report (nothing is sent).
    pub fn send(
        &mut self,
        schema: SchemaId,
        payload: Value,
        os: &OsSettings,
    ) -> Result<Sent, Error> {
        let now = OffsetDateTime::now_utc();
        let envelope = build::envelope(&self.context(os)?, schema, payload, None, now)?;
        let report_id = envelope.report_id;
        let pushed = self.queue.push(envelope, now)?;
        Ok(Sent { report_id, pushed })
    }

    /// Queues a `crash/1` report for every crash `Report.wer` under `dir`
    /// not imported before. A file that fails is listed and the others go on.
    pub fn import_wer(&mut self, dir: &Path, os: &OsSettings) -> Result<ImportSummary, Error> {
        let files = wer::find_reports(dir).map_err(|source| Error::Io {
            context: format!("reading {}", dir.display()),
            source,
        })?;
        let mut summary = ImportSummary {
            found: files.len(),
            ..ImportSummary::default()
        };
        let mut seen = self.queue.imported()?;
        seen.extend(self.queue.report_ids()?);
        let context = self.context(os)?;
        if !context.consent.allows(schemas::ReportKind::Crash) {
            return Err(Error::Consent("crash reports are not covered".into()));
        }
        for path in files {
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| wer::parse(&bytes).map_err(|e| e.to_string()));
            let crash = match parsed {
                Ok(wer::WerReport::Crash(crash)) => crash,
                Ok(wer::WerReport::NotACrash { event_type }) => {
                    summary.skipped.push((path, event_type));
                    continue;
                }
                Err(why) => {
                    summary.failed.push((path, why));
                    continue;
                }
            };
            if seen.contains(&crash.report_id) {
                summary.already += 1;
                continue;
            }
            let mut ctx = context.clone();
            let facts = &crash.os;
            if let (Some(version), Some(build)) = (&facts.version, facts.build) {
                ctx.os.version = version.clone();
                ctx.os.build = build;
            }
            if let Some(revision) = facts.revision {
                ctx.os.revision = revision;
            }
            if let Some(locale) = &facts.locale {
                ctx.os.locale = locale.clone();
            }
            if let Some(arch) = &facts.arch {
                ctx.os.arch = arch.clone();
            }
            let payload = serde_json::to_value(&crash.payload).expect("payload encodes");
            let now = OffsetDateTime::now_utc();
            let envelope = match build::envelope(
                &ctx,
                SchemaId::CRASH_V1,
                payload,
                Some(crash.report_id),
                now,
            ) {
                Ok(envelope) => envelope,
                Err(e) => {
                    summary.failed.push((path, e.to_string()));
                    continue;
                }
            };
            let pushed = self.queue.push(envelope, now)?;
            self.queue.mark_imported(crash.report_id)?;
            seen.insert(crash.report_id);
            summary.queued.push(crash.report_id);
            summary.pushed.dropped_full += pushed.dropped_full;
            summary.pushed.dropped_expired += pushed.dropped_expired;
        }
        Ok(summary)
    }

    /// Queues today's heartbeat (UTC day) unless one was queued for today
    /// already; `None` when there was.
    pub fn daily_heartbeat(&mut self) -> Result<Option<Sent>, Error> {
        let today = build::heartbeat(None, None);
        let day = today["day"].as_str().map(str::to_string);
        if day.is_some() && self.queue.stats().heartbeat_day == day {
            return Ok(None);
        }
        let sent = self.send(SchemaId::HEARTBEAT_V1, today, &OsSettings::default())?;
        self.queue.update_stats(|s| s.heartbeat_day = day)?;
        Ok(Some(sent))
    }

    /// Writes the queue as [`show`] describes.
    pub fn show(&self, out: &mut dyn std::io::Write, pretty: bool) -> Result<ShowSummary, Error> {
        show::show(&self.queue, out, pretty)
    }

    /// Sends the queue; see [`send`].
    /// Everything the pipeline holds about this machine, as the edge
    /// answers `POST /v1/machines/export`.
    pub async fn export(&self, timeout: std::time::Duration) -> Result<Value, Error> {
        edge::Client::new(&self.config)
            .machine("export", self.machine_id(), timeout)
            .await
            .map_err(|source| Error::Edge {
                action: "export this machine's data",
                source,
            })
    }

    /// Asks the edge to erase everything stored about this machine, then
    /// empties the local queue, so that nothing queued before the request
    /// arrives after it. Returns the edge's answer (`erasure_id`) and how
    /// many queued reports were dropped. The queue is kept if the edge
    /// did not take the request.
    pub async fn erase(&mut self, timeout: std::time::Duration) -> Result<(Value, usize), Error> {
        let answer = edge::Client::new(&self.config)
            .machine("erase", self.machine_id(), timeout)
            .await
            .map_err(|source| Error::Edge {
                action: "take the erasure request",
                source,
            })?;
        let queued = self.queue.all()?;
        self.queue.settle(&queued, &[])?;
        Ok((answer, queued.len()))
    }

    pub async fn flush(&mut self, options: &FlushOptions) -> Result<FlushReport, Error> {
        send::flush(&self.config, &mut self.queue, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, consent: &str) -> Config {
        Config::from_toml(&format!(
            "endpoint = \"http://127.0.0.1:9\"\ntoken = \"t\"\nconsent = \"{consent}\"\n\
             queue_dir = {:?}\n",
            dir.join("queue").to_str().unwrap()
        ))
        .unwrap()
    }

    #[test]
    fn importing_twice_queues_each_crash_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wer");
        let mut reporter = Reporter::open(config(dir.path(), "required")).unwrap();
        let first = reporter.import_wer(&data, &OsSettings::default()).unwrap();
        assert_eq!(first.found, 3);
        assert_eq!(first.queued.len(), 2);
        assert_eq!(first.skipped.len(), 1);
        assert!(first.failed.is_empty(), "{:?}", first.failed);
        let second = reporter.import_wer(&data, &OsSettings::default()).unwrap();
        assert!(second.queued.is_empty());
        assert_eq!(second.already, 2);
        assert_eq!(reporter.queue().len(), 2);
        let first_report = reporter.queue().peek(1).unwrap().remove(0).report.unwrap();
        assert_eq!(first_report.envelope.os.locale, "zh-CN");
        assert_eq!(first_report.envelope.os.revision, 3570);
    }

    #[test]
    fn refused_reports_are_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let mut reporter = Reporter::open(config(dir.path(), "required")).unwrap();
        let payload = build::feedback(4, "update", Some("fine"));
        let err = reporter
            .send(SchemaId::FEEDBACK_V1, payload, &OsSettings::default())
            .unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(reporter.queue().is_empty());
    }
}
