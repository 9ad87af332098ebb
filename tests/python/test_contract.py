"""Contract fuzzing: schemathesis against the real ingest binary and Kafka.

Starts `target/debug/ingest` (built here with `cargo build -p ingest`) on a
free loopback port, with its own topics (`contract.reports.<random>`, deleted
at the end), a spool folder, and one organisation holding a valid token;
waits for `/readyz`; then runs `schemathesis run` against the `/openapi.json`
it serves, with a bounded number of examples per operation.

It fails on any 5xx, on a status code the document does not list for the
operation, and on a body, content type or header that breaks the document.
503 (`overloaded`, `unavailable`) and 507 (`spool_full`) are documented, but
only for when Kafka and the spool cannot take a report or ingest is at
capacity; here Kafka is up, the spool has room and one client sends one
request at a time, so they count as failures too.

Checks left out, and why:
- `positive_data_acceptance`: a report can match the schemas and still be
  refused for what they do not say (its consent above the organisation's,
  `sent_at` days ahead, an unknown report type, the rate limit);
- `negative_data_rejection`: `/v1/reports/batch` answers 200 with one result
  per report, an error for each bad one, by design;
- `ignored_auth`, `use_after_free`, `ensure_resource_availability`,
  `object_level_authorization`: the stateful checks need resources that
  one call makes and another reads; this API has none.

Environment: KAFKA_BROKERS (127.0.0.1:9092), CARGO_TARGET_DIR,
CONTRACT_MAX_EXAMPLES (per operation, default 100), CONTRACT_SEED.
"""

import hashlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "contract-" + secrets.token_hex(8)
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "missing_required_header",
    "unsupported_method",
]


def kafka_brokers() -> str:
    return os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")


def ingest_binary() -> pathlib.Path:
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "ingest"], cwd=ROOT, check=True)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "ingest"


def clickhouse_url() -> str:
    return os.environ.get("CLICKHOUSE_URL", "http://127.0.0.1:8123")


def clickhouse(sql: str, database: str = "default") -> None:
    query = urllib.parse.urlencode({"database": database})
    request = urllib.request.Request(f"{clickhouse_url()}/?{query}", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def config_text(spool: pathlib.Path, suffix: str, database: str) -> str:
    token_hash = hashlib.sha256(TOKEN.encode()).hexdigest()
    return f"""
listen = "127.0.0.1:0"
machine_id_key = "contract-test-key-{secrets.token_hex(16)}"
reload_interval_ms = 0

[kafka]
brokers = "{kafka_brokers()}"
partitions = 1

[topics]
reports = "contract.reports.{suffix}"
outcomes = "contract.outcomes.{suffix}"

[limits]
shutdown_grace_secs = 5

[spool]
dir = "{spool}"

[warehouse]
url = "{clickhouse_url()}"
database = "{database}"

[[organisation]]
id = "contract"
name = "Contract test"
consent_cap = "optional"

[[organisation.token]]
sha256 = "{token_hash}"
label = "contract"
"""


def delete_topics(pattern: str, logs: pathlib.Path) -> None:
    """Deletes the run's topics with Kafka's TopicCommand, from the jars
    `scripts/services` installed (as `bench/run` does)."""
    data = pathlib.Path(os.environ.get("TELEMETRY_DATA_DIR", ROOT / ".data"))
    port = kafka_brokers().split(",")[0].rsplit(":", 1)[1]
    result = subprocess.run(
        ["java", "-Xmx256m", "-cp", f"{data / 'kafka-jars'}/*",
         f"-Dlog4j2.configurationFile={ROOT / 'scripts/kafka/log4j2.properties'}",
         f"-Dkafka.logs.dir={logs}",
         "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", f"127.0.0.1:{port}",
         "--delete", "--topic", pattern],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        print(f"contract: could not delete topics {pattern}: {result.stderr[-500:]}", file=sys.stderr)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory, ddl_files):
    """The ingest binary on a free port, its exports reading a database of
    its own with every migration applied; yields its base URL."""
    binary = ingest_binary()
    work = tmp_path_factory.mktemp("contract")
    suffix = secrets.token_hex(6)
    database = f"contract_{suffix}"
    clickhouse(f"CREATE DATABASE {database}")
    for entry in ddl_files:
        for statement in entry["statements"]:
            clickhouse(statement, database)
    config = work / "ingest.toml"
    config.write_text(config_text(work / "spool", suffix, database), encoding="utf-8")
    env = dict(os.environ, LOG_FORMAT="json", RUST_LOG="info")
    process = subprocess.Popen(
        [str(binary), "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    address = {}
    found = threading.Event()
    log = work / "ingest.log"

    def follow():
        with log.open("w", encoding="utf-8") as out:
            for line in process.stderr:
                out.write(line)
                out.flush()
                if not found.is_set():
                    try:
                        fields = json.loads(line).get("fields", {})
                    except ValueError:
                        continue
                    if fields.get("message") == "ingest listening":
                        address["addr"] = fields["addr"]
                        found.set()

    threading.Thread(target=follow, daemon=True).start()
    try:
        assert found.wait(60), f"ingest did not start; its log: {log.read_text()}"
        base = f"http://{address['addr']}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"/readyz never 200; log: {log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        delete_topics(f"contract\\..*\\.{suffix}", work)
        clickhouse(f"DROP DATABASE IF EXISTS {database}")


def test_the_running_ingest_keeps_its_documented_contract(ingest, tmp_path):
    examples = os.environ.get("CONTRACT_MAX_EXAMPLES", "100")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{ingest}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        examples,
        "--workers",
        "1",
        "--seed",
        os.environ.get("CONTRACT_SEED", str(secrets.randbelow(2**31))),
        "--request-timeout",
        "30",
        # No stateful phase: no operation makes a resource another reads.
        "--phases",
        "examples,coverage,fuzzing",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    print(result.stdout[-20000:])
    print(result.stderr[-5000:], file=sys.stderr)
    print(f"contract: schemathesis took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, "schemathesis found responses that break the contract (above)"
