//! The binary: flags, exit codes, `show`, offline `flush`.

use std::path::Path;
use std::process::{Command, Output};

fn reporter(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reporter"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn write_config(dir: &Path, consent: &str) -> std::path::PathBuf {
    // Port 9 on loopback: nothing listens (discard is never enabled here).
    let path = dir.join("reporter.toml");
    std::fs::write(
        &path,
        format!(
            "endpoint = \"http://127.0.0.1:9\"\ntoken = \"t\"\nconsent = \"{consent}\"\n\
             queue_dir = \"queue\"\n[flush]\nmax_seconds = 1\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_reporter"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["send", "import-wer", "show", "flush"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn send_show_and_an_offline_flush() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "required");

    let refused = reporter(
        &config,
        &["send", "feedback", "--rating", "4", "--category", "update"],
    );
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs consent `optional`"));

    let bad = reporter(
        &config,
        &["send", "feedback", "--rating", "9", "--category", "update"],
    );
    assert_eq!(bad.status.code(), Some(2), "clap refuses the rating");

    let ok = reporter(&config, &["send", "heartbeat", "--day", "2026-11-20"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(dir.path().join("queue/machine_id").exists());

    let show = reporter(&config, &["show"]);
    assert!(show.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&show.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sent"]["schema"], "heartbeat/1");
    assert_eq!(lines[0]["sent"]["payload"]["day"], "2026-11-20");
    assert!(String::from_utf8_lossy(&show.stderr).contains("keyed hash"));

    let flush = reporter(&config, &["flush"]);
    assert_eq!(flush.status.code(), Some(1), "nothing could be sent");
    assert!(String::from_utf8_lossy(&flush.stderr).contains("flush incomplete"));
    assert!(String::from_utf8_lossy(&flush.stdout).contains("1 still queued"));

    let missing = reporter(&dir.path().join("nope.toml"), &["show"]);
    assert_eq!(missing.status.code(), Some(2));
}
