//! The Windows build of the reporter, `reporter.exe` run under Wine, against
//! the real ingest (in-process, on loopback) and the real Kafka: offline
//! queueing and exactly-once arrival, kills in the middle of a flush, OS
//! facts and the Group Policy consent level from the registry, WER's
//! standard folders, and `install` / `uninstall`.
//!
//! Windows-only work needs a Windows build and Wine, so these tests are
//! ignored by a plain `cargo test`; `scripts/windows` builds `reporter.exe`
//! and a Wine prefix, and runs them with `--ignored`, one at a time (they
//! share the prefix's registry). They read `REPORTER_EXE` (the `.exe`),
//! `WINEPREFIX` and `WINE` (default `/usr/lib/wine/wine64`).

mod wine;

use std::collections::BTreeSet;
use std::path::Path;

use e2e::{TestEnv, start_ingest};
use uuid::Uuid;
use wine::{
    DATA_COLLECTION, POLICY, arrived, blocking, closed_endpoint, config_file, ids, output, shown,
    text, wer_folders, win_path, wine,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn queued_offline_then_flushed_every_report_arrives_exactly_once() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let token = env.token("grid").to_string();
    let config = config_file(
        dir.path(),
        Some(&closed_endpoint()),
        Some(&token),
        "optional",
    );
    let crash = dir.path().join("crash.json");
    let fixture: serde_json::Value = serde_json::from_str(e2e::fixtures::CRASH).expect("fixture");
    std::fs::write(&crash, fixture["payload"].to_string()).expect("write payload");
    let crash = win_path(&crash);

    let (config, queued) = blocking(move || {
        let w = wine();
        w.windows10();
        w.run(
            &config,
            &["send", "heartbeat", "--uptime-minutes", "540"],
            0,
        );
        w.run(&config, &["send", "crash", "--json", &crash], 0);
        w.run(
            &config,
            &[
                "send",
                "feedback",
                "--rating",
                "4",
                "--category",
                "update",
                "--text",
                "Mail zhang.wei@sgcc.com.cn",
            ],
            0,
        );
        w.run(
            &config,
            &[
                "send",
                "feature-request",
                "--title",
                "按项目分组窗口",
                "--category",
                "shell.taskbar",
            ],
            0,
        );
        // Offline: nothing leaves, everything stays.
        let out = w.run(&config, &["flush", "--max-seconds", "2"], 1);
        assert!(
            text(&out.stdout).contains("4 still queued"),
            "{}",
            text(&out.stdout)
        );
        let queued = shown(&w, &config);
        (config, queued)
    })
    .await;
    assert_eq!(queued.len(), 4);

    let ingest = start_ingest(env.ingest_config()).await;
    let url = ingest.url.clone();
    let stdout = blocking(move || {
        let w = wine();
        let text_ = std::fs::read_to_string(&config).expect("config");
        let endpoint = text_
            .lines()
            .find(|l| l.starts_with("endpoint"))
            .expect("endpoint")
            .to_string();
        std::fs::write(
            &config,
            text_.replace(&endpoint, &format!("endpoint = {url:?}")),
        )
        .expect("config");
        let first = w.run(&config, &["flush"], 0);
        let second = w.run(&config, &["flush"], 0);
        assert!(shown(&w, &config).is_empty());
        (text(&first.stdout), text(&second.stdout))
    })
    .await;
    assert!(
        stdout
            .0
            .contains("sent 4 report(s) (0 already there) in 1 request(s)"),
        "{}",
        stdout.0
    );
    assert!(stdout.1.contains("sent 0 report(s)"), "{}", stdout.1);

    let reports = arrived(&env, 4).await;
    let arrived_ids: BTreeSet<Uuid> = reports.iter().map(|r| r.report_id).collect();
    assert_eq!(arrived_ids, ids(&queued), "every report exactly once");
    let feedback = reports
        .iter()
        .find(|r| r.payload["rating"] == 4)
        .expect("feedback");
    assert_eq!(feedback.payload["text"], "Mail <email>");
    assert_eq!(env.reports_in_kafka().await, 4, "no second copy");

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn killed_mid_flush_again_and_again_the_queue_loses_nothing() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(
        dir.path(),
        Some(&ingest.url),
        Some(env.token("grid")),
        "required",
    );

    let (all, kills) = blocking(move || {
        let w = wine();
        w.windows10();
        for day in 1..=12 {
            let day = format!("2026-11-{day:02}");
            w.run(&config, &["send", "heartbeat", "--day", &day], 0);
        }
        let all = ids(&shown(&w, &config));
        assert_eq!(all.len(), 12);
        // Against the real edge every report is accepted, so no copies are
        // made and `settle:appended` is never reached (the stand-in edge of
        // `reporter/tests/crash.rs`, run under Wine too, reaches it).
        let points = ["settle:start", "settle:acked"];
        let mut kills = 0;
        for run in 0..60 {
            let fault = format!(
                "{}:{}",
                points[run % points.len()],
                1 + (run / points.len()) % 2
            );
            let config_arg = win_path(&config);
            let out = w.reporter(
                &["--config", &config_arg, "flush", "--batch-size", "2"],
                &[("REPORTER_TEST_ABORT_AT", &fault)],
            );
            let left = ids(&shown(&w, &config));
            assert!(left.is_subset(&all), "after {fault}: a report appeared");
            if text(&out.stderr).contains("reporter: aborting at") {
                assert!(
                    !out.status.success(),
                    "after {fault}: an abort exits non-zero"
                );
                kills += 1;
                continue;
            }
            assert!(out.status.success(), "after {fault}: {}", text(&out.stderr));
            if left.is_empty() {
                return (all, kills);
            }
        }
        panic!("the flush never finished");
    })
    .await;

    // The edge de-duplicates a report sent again, so Kafka holds each once.
    let reports = arrived(&env, all.len()).await;
    let arrived_ids: BTreeSet<Uuid> = reports.iter().map(|r| r.report_id).collect();
    println!(
        "killed {kills} times; sent {}, arrived {}, lost {}",
        all.len(),
        reports.len(),
        all.difference(&arrived_ids).count()
    );
    assert_eq!(arrived_ids, all, "nothing lost");
    assert!(kills >= 4, "killed at each step at least twice: {kills}");
    assert_eq!(
        env.reports_in_kafka().await,
        all.len() as i64,
        "nothing doubled"
    );

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn os_facts_and_the_consent_level_come_from_the_registry() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Neither endpoint nor token in the file: Group Policy gives them.
    let config = config_file(dir.path(), None, None, "optional");
    let (url, token) = (ingest.url.clone(), env.token("grid").to_string());

    let (heartbeat, show_err) = blocking(move || {
        let w = wine();
        w.windows10();
        w.run(&config, &["show"], 2); // no endpoint, no token yet
        w.reg_add(POLICY, "Endpoint", "REG_SZ", &url);
        w.reg_add(POLICY, "Token", "REG_SZ", &token);
        w.reg_add(DATA_COLLECTION, "AllowTelemetry", "REG_DWORD", "1");

        // Required by Group Policy: the file's `optional` does not count.
        let refused = w.run(
            &config,
            &["send", "feedback", "--rating", "2", "--category", "update"],
            3,
        );
        assert!(
            text(&refused.stderr).contains("needs consent `optional`"),
            "{}",
            text(&refused.stderr)
        );
        w.run(&config, &["send", "heartbeat"], 0);
        let heartbeat = shown(&w, &config).remove(0);
        let show = w.run(&config, &["show"], 0);

        // Optional by policy: feedback is queued; then off: nothing is
        // queued and the queued feedback is dropped, never sent.
        w.reg_add(DATA_COLLECTION, "AllowTelemetry", "REG_DWORD", "3");
        w.run(
            &config,
            &["send", "feedback", "--rating", "2", "--category", "update"],
            0,
        );
        w.reg_add(DATA_COLLECTION, "AllowTelemetry", "REG_DWORD", "0");
        let off = w.run(&config, &["send", "heartbeat"], 3);
        assert!(
            text(&off.stderr).contains("consent off (decided by Group Policy"),
            "{}",
            text(&off.stderr)
        );
        // Back to required: the heartbeat goes, the feedback is dropped.
        w.reg_add(DATA_COLLECTION, "AllowTelemetry", "REG_DWORD", "1");
        let flushed = w.run(&config, &["flush"], 0);
        let out = text(&flushed.stdout);
        assert!(out.contains("sent 1 report(s)"), "{out}");
        assert!(
            out.contains("dropped 1 report(s) the consent in force no longer covers"),
            "{out}"
        );
        w.reg_delete(DATA_COLLECTION);
        w.reg_delete(POLICY);
        (heartbeat, text(&show.stderr))
    })
    .await;

    let os = &heartbeat["os"];
    assert_eq!(os["product"], "Windows 10 Enterprise G");
    assert_eq!(os["version"], "10.0.19045");
    assert_eq!(
        (os["build"].as_u64(), os["revision"].as_u64()),
        (Some(19045), Some(3570))
    );
    assert_eq!(os["locale"], "zh-CN");
    assert_eq!(os["arch"], "x64");
    assert_eq!(heartbeat["consent"], "required");
    assert!(
        show_err.contains("consent required (decided by Group Policy"),
        "{show_err}"
    );
    assert!(show_err.contains("AllowTelemetry = 1"), "{show_err}");
    assert!(
        show_err.contains("Windows 10 Enterprise G 22H2"),
        "{show_err}"
    );
    assert!(
        show_err.contains("the registry gave: product, version, revision, locale, arch"),
        "{show_err}"
    );

    let reports = arrived(&env, 1).await;
    assert_eq!(
        reports[0].report_id.to_string(),
        heartbeat["report_id"].as_str().expect("id")
    );
    assert_eq!((reports[0].os.build, reports[0].os.revision), (19045, 3570));
    assert_eq!(reports[0].os.locale, "zh-CN");

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn run_imports_the_standard_wer_folders_and_sends_a_daily_heartbeat() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_file(
        dir.path(),
        Some(&ingest.url),
        Some(env.token("water")),
        "required",
    );

    let (first, second) = blocking(move || {
        let w = wine();
        w.windows10();
        wer_folders(&w);
        let first = w.run(&config, &["run"], 0);
        let second = w.run(&config, &["run"], 0);
        (text(&first.stdout), text(&second.stdout))
    })
    .await;
    assert!(
        first.contains(r"ReportArchive: 2 Report.wer file(s): 1 queued"),
        "{first}"
    );
    assert!(
        first.contains(r"ReportQueue: 1 Report.wer file(s): 1 queued"),
        "{first}"
    );
    assert!(first.contains("queued heartbeat/1 report"), "{first}");
    assert!(first.contains("sent 3 report(s)"), "{first}");
    assert!(
        second.contains("ReportArchive: 2 Report.wer file(s): 0 queued, 1 imported before"),
        "{second}"
    );
    assert!(
        !second.contains("heartbeat"),
        "one heartbeat a day: {second}"
    );
    assert!(second.contains("sent 0 report(s)"), "{second}");

    let reports = arrived(&env, 3).await;
    let explorer: Uuid = "5d0f7a53-9c1e-4f3b-8a61-2b7e4c9d1a05"
        .parse()
        .expect("uuid");
    assert!(
        reports.iter().any(|r| r.report_id == explorer),
        "the archived crash under its WER id"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.payload["app"]["name"] == "wps.exe"),
        "the queued crash"
    );
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.schema == schemas::SchemaId::HEARTBEAT_V1)
            .count(),
        1
    );

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn install_registers_a_task_whose_command_works_and_uninstall_removes_it() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let (url, token) = (ingest.url.clone(), env.token("grid").to_string());

    let task_ran = blocking(move || {
        let w = wine();
        w.windows10();
        let _ = std::fs::remove_dir_all(w.drive_c().join("ProgramData/Microsoft/Windows/WER"));
        let data = w.drive_c().join("ProgramData/Reporter");
        let task = w.drive_c().join("windows/system32/tasks/Reporter/Run");
        let _ = std::fs::remove_dir_all(&data);

        let out = w.reporter(
            &[
                "install",
                "--endpoint",
                &url,
                "--token",
                &token,
                "--every-hours",
                "6",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(r"wrote C:\ProgramData\Reporter\reporter.toml"),
            "{}",
            text(&out.stdout)
        );
        assert!(data.join("queue").is_dir());
        assert!(
            !data.join("task.xml").exists(),
            "the definition is not left behind"
        );

        // Wine's Task Scheduler keeps the task as a file, but of the
        // definition it keeps only the description (its own XML, UTF-8):
        // the definition itself is read back with `--print-task`.
        let stored = std::fs::read(&task).expect("the task is registered");
        assert!(
            String::from_utf8_lossy(&stored)
                .contains("Sends this machine's queued diagnostic reports"),
            "{}",
            String::from_utf8_lossy(&stored)
        );
        let printed = w.reporter(&["install", "--print-task", "--every-hours", "6"], &[]);
        assert!(printed.status.success(), "{}", text(&printed.stderr));
        let xml = text(&printed.stdout);
        assert!(xml.contains("<UserId>S-1-5-18</UserId>"), "{xml}");
        assert!(
            xml.contains("<Interval>PT6H</Interval>")
                && xml.contains("<RandomDelay>PT6H</RandomDelay>"),
            "{xml}"
        );
        let field = |name: &str| {
            let start = xml.find(&format!("<{name}>")).expect(name) + name.len() + 2;
            let end = xml.find(&format!("</{name}>")).expect(name);
            xml[start..end]
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        };
        // Wine runs no schedule: run the task's own command line instead.
        let command = field("Command");
        let arguments: Vec<String> = field("Arguments")
            .split('"')
            .filter(|a| !a.trim().is_empty())
            .map(|a| a.trim().to_string())
            .collect();
        assert_eq!(arguments[0], "--config");
        assert_eq!(arguments[1], r"C:\ProgramData\Reporter\reporter.toml");
        assert_eq!(arguments[2], "run");
        let mut task_command = w.command(Path::new(&command));
        task_command.args(&arguments);
        let ran = output(task_command);
        assert!(
            ran.status.success(),
            "{}{}",
            text(&ran.stdout),
            text(&ran.stderr)
        );
        assert!(
            data.join("queue/machine_id").exists(),
            "the machine id lives under ProgramData"
        );

        let out = w.reporter(&["uninstall", "--purge"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!task.exists(), "the task is gone");
        assert!(!data.exists(), "the folder is gone");
        let again = w.reporter(&["uninstall"], &[]);
        assert!(
            again.status.success(),
            "uninstalling twice is fine: {}",
            text(&again.stderr)
        );
        text(&ran.stdout)
    })
    .await;
    assert!(task_ran.contains("queued heartbeat/1 report"), "{task_ran}");
    assert!(task_ran.contains("sent 1 report(s)"), "{task_ran}");
    assert_eq!(arrived(&env, 1).await.len(), 1);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}
