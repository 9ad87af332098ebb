//! `reporter install` and `reporter uninstall` (Windows): the machine-wide
//! folder, its ACL, the configuration file and a scheduled task.
//!
//! `install`, run as an administrator from where `reporter.exe` is to stay
//! (e.g. `C:\Program Files\Reporter`):
//!
//! 1. creates `%ProgramData%\Reporter` and its `queue` folder;
//! 2. limits the folder to SYSTEM and Administrators, full control, not
//!    inherited (`icacls <dir> /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F
//!    *S-1-5-32-544:(OI)(CI)F`): the queue, the machine id and the token are
//!    out of users' reach;
//! 3. writes `reporter.toml` there unless one is there already (a file the
//!    management tool pushed is kept as it is);
//! 4. registers the task [`TASK_NAME`] (`schtasks /Create /XML`), run as
//!    SYSTEM: `reporter run` ten minutes after each start of the machine and
//!    every few hours, each run delayed by a random part of the interval
//!    (Task Scheduler's `RandomDelay`) so that a fleet does not call at once;
//!    missed runs start when the machine is next on, one at a time, only with
//!    a network, at most an hour each.
//!
//! `uninstall` deletes the task; with `--purge` also the folder (queue,
//! machine id, configuration). The binary itself is the administrator's to
//! delete. The tools are called by their full path under `%SystemRoot%`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use schemas::Consent;

use crate::Error;

/// The scheduled task's path in Task Scheduler.
pub const TASK_NAME: &str = r"\Reporter\Run";

/// What `install` is asked for.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Ingest's URL for a new configuration file (or from Group Policy).
    pub endpoint: Option<String>,
    /// The enrollment token for a new configuration file (or from Group Policy).
    pub token: Option<String>,
    /// `consent` of a new configuration file.
    pub consent: Consent,
    /// Hours between runs, 1 to 24.
    pub every_hours: u32,
    /// The binary the task runs.
    pub exe: PathBuf,
    /// The machine-wide folder (`%ProgramData%\Reporter`).
    pub dir: PathBuf,
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub config: PathBuf,
    /// Whether the configuration file was written now (else it was there).
    pub wrote_config: bool,
}

/// The Task Scheduler definition (schema 1.2, Windows 7 and later) of the
/// task that runs `exe --config <config> run` as SYSTEM.
pub fn task_xml(exe: &Path, config: &Path, every_hours: u32) -> String {
    let hours = every_hours.clamp(1, 24);
    // XML escapes are HTML's for `& < > " '`.
    let exe = html_escape::encode_quoted_attribute(&exe.display().to_string()).into_owned();
    let args =
        html_escape::encode_quoted_attribute(&format!("--config \"{}\" run", config.display()))
            .into_owned();
    let mut xml = String::new();
    let _ = write!(
        xml,
        r#"<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>Sends this machine's queued diagnostic reports (crashes, heartbeats, feedback the operator consented to) and imports new Windows Error Reporting crashes.</Description>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
      <Delay>PT10M</Delay>
    </BootTrigger>
    <TimeTrigger>
      <Enabled>true</Enabled>
      <StartBoundary>2000-01-01T00:00:00</StartBoundary>
      <Repetition>
        <Interval>PT{hours}H</Interval>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
      <RandomDelay>PT{hours}H</RandomDelay>
    </TimeTrigger>
  </Triggers>
  <Principals>
    <Principal id="System">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>true</RunOnlyIfNetworkAvailable>
    <ExecutionTimeLimit>PT1H</ExecutionTimeLimit>
    <Priority>7</Priority>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="System">
    <Exec>
      <Command>{exe}</Command>
      <Arguments>{args}</Arguments>
    </Exec>
  </Actions>
</Task>
"#
    );
    xml
}

/// The text of a new configuration file; endpoint and token left out are
/// for Group Policy to set.
pub fn config_text(options: &InstallOptions) -> String {
    let mut text =
        String::from("# Written by `reporter install`; see the README's deployment notes.\n");
    if let Some(endpoint) = &options.endpoint {
        let _ = writeln!(text, "endpoint = {}", toml_string(endpoint));
    }
    if let Some(token) = &options.token {
        let _ = writeln!(text, "token = {}", toml_string(token));
    }
    let _ = writeln!(text, "consent = \"{}\"", options.consent.as_str());
    text.push_str("queue_dir = \"queue\"\n");
    text
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The arguments of `icacls` that limit `dir` to SYSTEM and Administrators.
pub fn acl_args(dir: &Path) -> Vec<String> {
    vec![
        dir.display().to_string(),
        "/inheritance:r".into(),
        "/grant:r".into(),
        "*S-1-5-18:(OI)(CI)F".into(),
        "*S-1-5-32-544:(OI)(CI)F".into(),
    ]
}

#[cfg(windows)]
fn system_tool(name: &str) -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    PathBuf::from(root).join("System32").join(name)
}

/// Runs a system tool; its own messages go to this console. (Not captured:
/// a service the tool starts may inherit the handles and outlive it.)
#[cfg(windows)]
fn run_tool(name: &str, args: &[String]) -> Result<(), Error> {
    let tool = system_tool(name);
    let status = std::process::Command::new(&tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|source| Error::Io {
            context: format!("running {}", tool.display()),
            source,
        })?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Io {
        context: format!("{name} {}", args.join(" ")),
        source: std::io::Error::other(format!("{status} (its messages are above)")),
    })
}

#[cfg(windows)]
fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Installs as the module documentation says.
#[cfg(windows)]
pub fn install(options: &InstallOptions) -> Result<Installed, Error> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir.join("queue"))
        .map_err(io(format!("creating {}", dir.display())))?;
    run_tool("icacls.exe", &acl_args(dir))?;
    let config = dir.join(crate::config::DEFAULT_PATH);
    let wrote_config = !config.exists();
    if wrote_config {
        std::fs::write(&config, config_text(options))
            .map_err(io(format!("writing {}", config.display())))?;
    }
    let xml_path = dir.join("task.xml");
    let xml = task_xml(&options.exe, &config, options.every_hours);
    // Task Scheduler reads the definition as UTF-16 (with its byte order mark).
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&xml_path, bytes).map_err(io(format!("writing {}", xml_path.display())))?;
    let created = run_tool(
        "schtasks.exe",
        &[
            "/Create".into(),
            "/TN".into(),
            TASK_NAME.into(),
            "/XML".into(),
            xml_path.display().to_string(),
            "/F".into(),
        ],
    );
    let _ = std::fs::remove_file(&xml_path);
    created?;
    Ok(Installed {
        config,
        wrote_config,
    })
}

/// Deletes the task; with `purge` also the folder `dir`. Idempotent: a task
/// or folder that is not there is no error.
#[cfg(windows)]
pub fn uninstall(dir: &Path, purge: bool) -> Result<(), Error> {
    let delete = ["/Delete", "/TN", TASK_NAME, "/F"].map(String::from);
    if let Err(e) = run_tool("schtasks.exe", &delete) {
        // Task Scheduler keeps each task as a file under System32\Tasks:
        // without it, there was nothing to delete.
        let tasks = system_tool("Tasks");
        if !tasks.is_dir() || tasks.join(TASK_NAME.trim_start_matches('\\')).exists() {
            return Err(e);
        }
    }
    if purge {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("removing {}", dir.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(windows))]
pub fn install(_: &InstallOptions) -> Result<Installed, Error> {
    Err(not_windows())
}

#[cfg(not(windows))]
pub fn uninstall(_: &Path, _: bool) -> Result<(), Error> {
    Err(not_windows())
}

#[cfg(not(windows))]
fn not_windows() -> Error {
    Error::Usage(
        "install and uninstall register a Windows scheduled task: run them on Windows".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> InstallOptions {
        InstallOptions {
            endpoint: Some("https://telemetry.example".into()),
            token: Some("tok\"en".into()),
            consent: Consent::Required,
            every_hours: 4,
            exe: r"C:\Program Files\Reporter & Co\reporter.exe".into(),
            dir: r"C:\ProgramData\Reporter".into(),
        }
    }

    #[test]
    fn the_task_runs_reporter_as_system_with_jitter() {
        let o = options();
        let config = Path::new(r"C:\ProgramData\Reporter\reporter.toml");
        let xml = task_xml(&o.exe, config, 30);
        assert!(xml.contains("<UserId>S-1-5-18</UserId>"));
        assert!(
            xml.contains("<Interval>PT24H</Interval>"),
            "clamped to a day"
        );
        assert!(xml.contains("<RandomDelay>PT24H</RandomDelay>"));
        assert!(
            xml.contains(r"<Command>C:\Program Files\Reporter &amp; Co\reporter.exe</Command>")
        );
        assert!(xml.contains(
            r"<Arguments>--config &quot;C:\ProgramData\Reporter\reporter.toml&quot; run</Arguments>"
        ));
    }

    #[test]
    fn a_new_configuration_file_parses() {
        let text = config_text(&options());
        let config = crate::Config::from_toml(&text).unwrap();
        assert_eq!(config.token, "tok\"en");
        assert_eq!(config.consent, Consent::Required);
        let policy_only = config_text(&InstallOptions {
            endpoint: None,
            token: None,
            ..options()
        });
        assert!(!policy_only.contains("token"));
    }

    #[test]
    fn the_acl_is_system_and_administrators_only() {
        let args = acl_args(Path::new(r"C:\ProgramData\Reporter"));
        assert_eq!(args[1..3], ["/inheritance:r", "/grant:r"]);
        assert!(args.iter().all(|a| !a.contains("S-1-5-32-545")), "no Users");
    }
}
