//! The harness of `reporter_windows.rs`: a Wine prefix, `reporter.exe` run
//! in it, the prefix's registry, and reading what arrived in Kafka.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{TestEnv, eventually, read_messages};
use rdkafka::Message;
use schemas::AcceptedReport;
use uuid::Uuid;

pub const CURRENT_VERSION: &str = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";
pub const DATA_COLLECTION: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\DataCollection";
pub const POLICY: &str = r"HKLM\SOFTWARE\Policies\Reporter";
pub const INTERNATIONAL: &str = r"HKU\.DEFAULT\Control Panel\International";

/// The Wine prefix and the program to run in it.
pub struct Wine {
    wine: PathBuf,
    prefix: PathBuf,
    exe: PathBuf,
}

pub fn wine() -> Wine {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{name} is not set: run these tests with scripts/windows"))
    };
    Wine {
        wine: std::env::var_os("WINE").map_or_else(|| "/usr/lib/wine/wine64".into(), PathBuf::from),
        prefix: var("WINEPREFIX"),
        exe: var("REPORTER_EXE"),
    }
}

/// A Unix path as Windows programs under Wine see it (drive `Z:` is `/`).
pub fn win_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Runs `command` to its end. Its output goes through files, not pipes: the
/// first program in a prefix starts Wine's own services, which inherit its
/// handles and outlive it, so a pipe would never close.
pub fn output(mut command: Command) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("output file");
    let status = command
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .status()
        .expect("wine runs");
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("output file");
    Output {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Wine {
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(&self.wine);
        command
            .arg(program)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("REPORTER_CONFIG")
            .env_remove("REPORTER_TEST_ABORT_AT");
        command
    }

    /// Runs `reporter.exe ARGS` with `env`; no I/O error may show in its output.
    pub fn reporter(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(&self.exe);
        command.args(args).envs(env.iter().copied());
        let out = output(command);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for bad in [
            "Access denied",
            "spool I/O error",
            "os error 5)",
            "os error 32)",
        ] {
            assert!(!all.contains(bad), "reporter {args:?}: {bad}: {all}");
        }
        out
    }

    /// Runs `reporter.exe --config CONFIG ARGS` and expects exit code `code`.
    pub fn run(&self, config: &Path, args: &[&str], code: i32) -> Output {
        let config = win_path(config);
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        let out = self.reporter(&all, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "reporter {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// `reg add KEY /v NAME /t TYPE /d DATA /f` in the prefix.
    pub fn reg_add(&self, key: &str, name: &str, kind: &str, data: &str) {
        let mut reg = self.command(Path::new("reg"));
        reg.args(["add", key, "/v", name, "/t", kind, "/d", data, "/f"]);
        let out = output(reg);
        assert!(
            out.status.success(),
            "reg add {key} {name}: {}",
            text(&out.stderr)
        );
    }

    /// `reg delete KEY /f`; a key that is not there is fine.
    pub fn reg_delete(&self, key: &str) {
        let mut reg = self.command(Path::new("reg"));
        reg.args(["delete", key, "/f"]);
        output(reg);
    }

    /// A Windows 10 Enterprise G machine in Chinese, with no policies.
    pub fn windows10(&self) {
        for (name, kind, data) in [
            ("ProductName", "REG_SZ", "Windows 10 Enterprise G"),
            ("CurrentMajorVersionNumber", "REG_DWORD", "10"),
            ("CurrentMinorVersionNumber", "REG_DWORD", "0"),
            ("CurrentBuild", "REG_SZ", "19045"),
            ("UBR", "REG_DWORD", "3570"),
            ("DisplayVersion", "REG_SZ", "22H2"),
        ] {
            self.reg_add(CURRENT_VERSION, name, kind, data);
        }
        self.reg_add(INTERNATIONAL, "LocaleName", "REG_SZ", "zh-CN");
        self.reg_delete(DATA_COLLECTION);
        self.reg_delete(POLICY);
    }

    pub fn drive_c(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }
}

/// Writes a configuration file in `dir` and returns its path.
pub fn config_file(
    dir: &Path,
    endpoint: Option<&str>,
    token: Option<&str>,
    consent: &str,
) -> PathBuf {
    let mut text = format!("consent = {consent:?}\nqueue_dir = \"queue\"\n");
    if let Some(endpoint) = endpoint {
        text.push_str(&format!("endpoint = {endpoint:?}\n"));
    }
    if let Some(token) = token {
        text.push_str(&format!("token = {token:?}\n"));
    }
    text.push_str("[flush]\nmax_seconds = 30\n");
    let path = dir.join("reporter.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The queued envelopes, as `reporter show` prints them.
pub fn shown(wine: &Wine, config: &Path) -> Vec<serde_json::Value> {
    let out = wine.run(config, &["show"], 0);
    text(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("show prints JSON")["sent"]
                .clone()
        })
        .collect()
}

pub fn ids(envelopes: &[serde_json::Value]) -> BTreeSet<Uuid> {
    envelopes
        .iter()
        .map(|e| e["report_id"].as_str().expect("id").parse().expect("uuid"))
        .collect()
}

/// A loopback address nothing listens on.
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// Waits until the reports topic holds exactly `count` messages; returns them.
pub async fn arrived(env: &TestEnv, count: usize) -> Vec<AcceptedReport> {
    eventually("reports in kafka", Duration::from_secs(60), || async {
        (env.reports_in_kafka().await == count as i64).then_some(())
    })
    .await;
    read_messages(&env.reports_topic, count, Duration::from_secs(60))
        .await
        .iter()
        .map(|m| serde_json::from_slice(m.payload().expect("value")).expect("AcceptedReport"))
        .collect()
}

/// Runs a blocking closure (Wine) off the runtime that serves ingest.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

/// Copies the sample WER reports into the prefix's standard folders: one
/// crash and the hang in `ReportArchive`, one crash in `ReportQueue`.
pub fn wer_folders(w: &Wine) {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reporter/tests/data/wer");
    let wer = w.drive_c().join("ProgramData/Microsoft/Windows/WER");
    let _ = std::fs::remove_dir_all(&wer);
    for (folder, under) in [
        ("AppCrash_explorer.exe_1", "ReportArchive"),
        ("AppHang_notepad.exe_3", "ReportArchive"),
        ("BEX64_wps.exe_2", "ReportQueue"),
    ] {
        let to = wer.join(under).join(folder);
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::copy(
            samples.join(folder).join("Report.wer"),
            to.join("Report.wer"),
        )
        .expect("copy");
    }
}
