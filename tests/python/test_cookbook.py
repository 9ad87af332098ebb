"""The analysts' query cookbook (schemas/queries/*.sql) on current ClickHouse
(chdb): a small known fixture inserted into the raw tables (the
materialised views fill the aggregates) and into the tables the processor
writes itself, then every query run with known parameters, compared with
the rows it must return. tests/tests/cookbook.rs runs the same files on the
18.16 server with data that went through the real pipeline.

Parameters are written `{name:Type}`. Current ClickHouse binds them itself
(`--param_name=...`, `param_name=` over HTTP); 18.16 does not know them, so
tools replace each placeholder with a quoted literal of its type first
(`telemetry-admin cookbook --sql`, through scripts/cookbook, used here; the
Rust test calls the same code). Both ways are checked here and must give the
same rows."""

import datetime
import pathlib
import re
import subprocess
import tempfile
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUERIES = ROOT / "schemas" / "queries"


COOKBOOK = ROOT / "scripts" / "cookbook"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9]+)\}")


class Refused(Exception):
    """The cookbook refused the values (exit status 2): a parameter missing,
    unknown, or not of its type."""


def cookbook(*args) -> str:
    """What scripts/cookbook (`telemetry-admin cookbook`) prints."""
    done = subprocess.run([str(COOKBOOK), *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode == 2:
        raise Refused(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return done.stdout


def bound(name: str, params: dict, *options) -> str:
    """The SQL the cookbook sends for query `name` with `params`."""
    args = [f"{k}={v}" for k, v in params.items()]
    return cookbook(*options, "--sql", name, *args).removesuffix("\n")


def substitute(sql: str, params: dict) -> str:
    """The SQL the cookbook sends for `sql`, written as a query file whose
    header declares its placeholders."""
    declared = ", ".join(f"{n} {t}" for n, t in sorted(set(PLACEHOLDER.findall(sql)))) or "none"
    header = f"-- name: q\n-- purpose: a test\n-- params: {declared}\n"
    with tempfile.TemporaryDirectory() as folder:
        (pathlib.Path(folder) / "q.sql").write_text(header + sql, encoding="utf-8")
        return bound("q", params, "--queries", folder).removeprefix(header)


def headers() -> list:
    """(name, purpose, {param: Type}) of each query file, in file name order,
    as the cookbook lists them."""
    lines = cookbook().rstrip("\n").split("\n")
    found = []
    for first, purpose in zip(lines[0::2], lines[1::2]):
        name, *args = first.split(" ")
        params = dict(arg.removesuffix(">").split("=<", 1) for arg in args)
        found.append((name, purpose.strip(), params))
    return found


def query_files():
    return sorted(QUERIES.glob("*.sql"))


# --- the fixture ---------------------------------------------------------

OLD, NEW = "10.0.19045.3570", "10.0.19045.4046"
SIG_A = "shell32.dll!CDefView::_OnContextMenu | shell32.dll!CDefView::WndProc"
SIG_B = "ntdll.dll!RtlpFreeHeap | ntdll.dll!RtlFreeHeap"
# MSVC's own spelling of anonymous namespaces: a backtick and a quote, so
# the String placeholder's quoting is exercised.
SIG_C = "msedge.dll!`anonymous namespace'::Render | msedge.dll!Paint"


def build_key(full: str) -> int:
    major, minor, build, revision = (int(p) for p in full.split("."))
    return (major << 56) | (minor << 48) | (build << 24) | revision


ENVELOPE = (
    "report_id, received_at, sent_at, org_id, machine_hash, consent, os_product, os_version, "
    "os_build, os_revision, os_locale, os_arch, os_build_full, build_key, scrubbed_total, "
    "kafka_partition, kafka_offset, inserted_at"
)


def sql_string(text: str) -> str:
    """A quoted SQL string, for the fixture's own inserts."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def envelope(report_id, at, org, machine, build):
    version, revision = build.rsplit(".", 1)
    return (
        f"toUUID('{report_id}'), '{at}', '{at}', {sql_string(org)}, {sql_string(machine)}, 'optional', "
        f"'Windows 10 Enterprise G', '{version}', {version.split('.')[2]}, {revision}, 'zh-CN', 'x64', "
        f"'{build}', {build_key(build)}, 0, 0, 1, '{at}'"
    )


class Fixture:
    """Known reports, inserted as the processor would have written them."""

    def __init__(self, db, today: datetime.date):
        self.db = db
        self.d0 = today
        self.d1 = today - datetime.timedelta(days=1)
        self.clusters = {"taskbar": 101, "sm2": 202, "dark": 303}

    def at(self, day, clock="08:00:00"):
        return f"{day.isoformat()} {clock}"

    def heartbeat(self, day, org, machine, build):
        self.db.query(
            f"INSERT INTO heartbeats ({ENVELOPE}, day, uptime_minutes) VALUES "
            f"({envelope(uuid.uuid4(), self.at(day), org, machine, build)}, '{day.isoformat()}', 480)"
        )

    def crash(self, day, org, machine, build, signature, times=1, clock="09:00:00"):
        row = (
            f"INSERT INTO crash_reports ({ENVELOPE}, app_name, app_version, exception_code, "
            "module_name, module_version, module_offset, frame_modules, frame_functions, "
            "frame_offsets, grouping_version, bucket, signature) VALUES "
            f"({envelope(uuid.uuid4(), self.at(day, clock), org, machine, build)}, 'explorer.exe', "
            "'10.0', '0xC0000005', 'shell32.dll', '10.0', '0xA1B2C', ['shell32.dll'], "
            f"['f'], ['0x1'], 1, 'bucket', {sql_string(signature)})"
        )
        for _ in range(times):  # times > 1: a redelivered copy of the same report
            self.db.query(row)

    def request(self, clock, org, machine, cluster, title, category, language, body=""):
        self.db.query(
            f"INSERT INTO feature_requests ({ENVELOPE}, title, body, category, language, "
            f"cluster_id, cluster_similarity) VALUES "
            f"({envelope(uuid.uuid4(), self.at(self.d0, clock), org, machine, NEW)}, "
            f"{sql_string(title)}, {sql_string(body)}, {sql_string(category)}, "
            f"{sql_string(language)}, {self.clusters[cluster]}, 0.8)"
        )

    def feedback(self, day, org, machine, build, rating, category):
        self.db.query(
            f"INSERT INTO feedback ({ENVELOPE}, rating, text, category) VALUES "
            f"({envelope(uuid.uuid4(), self.at(day, '11:00:00'), org, machine, build)}, "
            f"{rating}, '', {sql_string(category)})"
        )

    def outcome(self, event_id, outcome, reason, schema, org, size, field="", times=1):
        row = (
            "INSERT INTO outcomes (event_id, at, outcome, reason, schema, org_id, size, field, "
            "kafka_partition, kafka_offset, inserted_at) VALUES "
            f"(toUUID('{event_id}'), '{self.at(self.d0, '10:00:00')}', '{outcome}', '{reason}', "
            f"'{schema}', '{org}', {size}, {sql_string(field)}, 0, 1, now())"
        )
        for _ in range(times):
            self.db.query(row)

    def dead_letter(self, topic, partition, offset, stage, reason, size, times=1):
        row = (
            "INSERT INTO processing_errors (at, topic, kafka_partition, kafka_offset, stage, "
            f"reason, detail, size) VALUES ('{self.at(self.d0, '10:30:00')}', '{topic}', "
            f"{partition}, {offset}, '{stage}', '{reason}', 'error text', {size})"
        )
        for _ in range(times):
            self.db.query(row)

    def load(self):
        d0, d1 = self.d0, self.d1
        # Heartbeats. Old build: o0-o2 grid, o3-o4 water; new build: n0, n1,
        # n5 grid, n2-n4 water. Yesterday o0-o3 on the old build. Forty
        # days ago one more machine: outside every window.
        for m in ["o0", "o1", "o2"]:
            self.heartbeat(d0, "grid", m, OLD)
        for m in ["o3", "o4"]:
            self.heartbeat(d0, "water", m, OLD)
        for m in ["n0", "n1", "n5"]:
            self.heartbeat(d0, "grid", m, NEW)
        for m in ["n2", "n3", "n4"]:
            self.heartbeat(d0, "water", m, NEW)
        for m, org in [("o0", "grid"), ("o1", "grid"), ("o2", "grid"), ("o3", "water")]:
            self.heartbeat(d1, org, m, OLD)
        self.heartbeat(d0 - datetime.timedelta(days=40), "water", "o9", OLD)
        # Crashes. A: 1 machine on the old build, 3 on the new (a rate
        # increase); B: only on the new build (new); C: only on the old
        # build, one report delivered twice.
        self.crash(d0, "grid", "o0", OLD, SIG_A)
        self.crash(d0, "grid", "n0", NEW, SIG_A)
        self.crash(d0, "water", "n2", NEW, SIG_A)
        self.crash(d0, "water", "n3", NEW, SIG_A)
        self.crash(d0, "grid", "n1", NEW, SIG_B)
        self.crash(d0, "water", "n3", NEW, SIG_B, clock="09:30:00")
        self.crash(d0, "water", "n4", NEW, SIG_B)
        self.crash(d0, "water", "o3", OLD, SIG_C)
        self.crash(d1, "grid", "o1", OLD, SIG_C, times=2)
        self.crash(d1, "grid", "o2", OLD, SIG_C)
        # Feature requests, all today on the new build.
        self.request("12:00:01", "grid", "r0", "taskbar", "希望任务栏支持按项目分组窗口", "shell.taskbar", "zh-CN")
        self.request("12:00:02", "water", "r1", "taskbar", "任务栏能否按项目对窗口进行分组", "shell.taskbar", "zh-CN")
        self.request("12:00:03", "grid", "r2", "taskbar", "建议任务栏可以按照项目分组显示窗口", "shell.windows", "zh-CN",
                     body="希望任务栏按项目分组窗口。")
        self.request("12:00:04", "water", "r3", "sm2", "Support SM2 certificates for smart card login", "security.login", "en")
        self.request("12:00:05", "water", "r4", "sm2", "Support SM2 certificates for smart-card logon", "security.login", "en")
        self.request("12:00:06", "grid", "r5", "dark", "Dark mode for the taskbar", "shell.taskbar", "en")
        # Feedback.
        self.feedback(d0, "grid", "f0", OLD, 5, "update")
        self.feedback(d0, "grid", "f1", OLD, 4, "update")
        self.feedback(d1, "water", "f2", OLD, 2, "update")
        self.feedback(d0, "water", "f3", NEW, 1, "update")
        self.feedback(d0, "grid", "f4", NEW, 3, "shell.taskbar")
        self.feedback(d0, "grid", "f4", NEW, 4, "shell.taskbar")
        # What the edge refused (and one duplicate, which is no refusal).
        self.outcome(uuid.uuid4(), "rejected", "invalid", "crash/1", "grid", 2048, "payload.frames[2].offset")
        self.outcome(uuid.uuid4(), "rejected", "invalid", "crash/1", "grid", 1024, "payload.app.name")
        self.outcome(uuid.uuid4(), "rejected", "unknown_token", "", "", 300)
        self.outcome(uuid.uuid4(), "consent", "consent", "feature_request/1", "water", 512)
        for size, times in [(200, 1), (210, 1), (220, 2)]:
            self.outcome(uuid.uuid4(), "rate_limited", "rate_limited", "heartbeat/1", "grid", size, times=times)
        self.outcome(uuid.uuid4(), "duplicate", "duplicate", "crash/1", "grid", 900)
        self.outcome(uuid.uuid4(), "too_large", "too_large", "", "grid", 2000000)
        # Dead letters, one of them recorded twice.
        self.dead_letter("telemetry.reports.v1", 0, 5, "decode", "undecodable_report", 9, times=2)
        self.dead_letter("telemetry.reports.v1", 2, 9, "decode", "undecodable_report", 12)
        self.dead_letter("telemetry.reports.v1", 1, 7, "place", "invalid_heartbeat_day", 400)
        self.dead_letter("telemetry.outcomes.v1", 0, 3, "decode", "undecodable_outcome", 50)
        # Two runs of the regression job; the view shows the newer.
        self.db.query(
            "INSERT INTO crash_regressions_runs VALUES "
            f"('{self.at(d1, '06:00:00')}', '{NEW}', {build_key(NEW)}, '{OLD}', 1, 'stale', 'new', 9, 9, 1000, 0)"
        )
        newest = self.at(d0, "06:00:00")
        self.db.query(
            "INSERT INTO crash_regressions_runs VALUES "
            f"('{newest}', '{NEW}', {build_key(NEW)}, '{OLD}', 1, {sql_string(SIG_A)}, 'rate_increase', "
            "3, 6, 500, 200), "
            f"('{newest}', '{NEW}', {build_key(NEW)}, '{OLD}', 1, {sql_string(SIG_B)}, 'new', 3, 6, 500, 0)"
        )
        self.db.query(
            "INSERT INTO analytics_runs VALUES "
            f"('crash_regressions', '{self.at(d1, '06:00:00')}', 1), ('crash_regressions', '{newest}', 2)"
        )

    def expectations(self):
        """query name -> (params, expected rows as TSVWithNames lines)."""
        d0, d1 = self.d0.isoformat(), self.d1.isoformat()
        taskbar, sm2, dark = self.clusters["taskbar"], self.clusters["sm2"], self.clusters["dark"]
        monday = (self.d0 - datetime.timedelta(days=self.d0.weekday())).isoformat()
        sig_c_tsv = SIG_C.replace("'", "\\'")
        return {
            "top_crash_signatures_for_build": (
                {"build": OLD, "days": 7, "limit": 5},
                [
                    "grouping_version\tsignature\tmachines\treports\torganisations",
                    f"1\t{SIG_C}\t3\t3\t2",
                    f"1\t{SIG_A}\t1\t1\t1",
                ],
            ),
            "new_signatures_in_latest_build": (
                {},
                [
                    "build\tgrouping_version\tsignature\tmachines\treports\torganisations",
                    f"{NEW}\t1\t{SIG_B}\t3\t3\t2",
                ],
            ),
            "crash_free_rate_by_build": (
                {"days": 7},
                [
                    "day\tos_build_full\tactive_machines\tcrashed_machines\tcrash_free",
                    f"{d1}\t{OLD}\t4\t2\t0.5",
                    f"{d0}\t{OLD}\t5\t2\t0.6",
                    f"{d0}\t{NEW}\t6\t5\t0.1667",
                ],
            ),
            "regressions_between_builds": (
                {"from_build": OLD, "to_build": NEW, "days": 7},
                [
                    "grouping_version\tsignature\tfrom_machines\tfrom_active\tto_machines\tto_active"
                    "\tfrom_rate_per_1000\tto_rate_per_1000\tchange",
                    f"1\t{SIG_B}\t0\t5\t3\t6\t0\t500\tnew",
                    f"1\t{SIG_A}\t1\t5\t3\t6\t200\t500\trate_increase",
                    f"1\t{SIG_C}\t3\t5\t0\t6\t600\t0\tgone",
                ],
            ),
            "latest_regressions": (
                {},
                [
                    "os_build_full\tprevious_build\tkind\tgrouping_version\tsignature\tmachines"
                    "\tactive_machines\trate\tprevious_rate",
                    f"{NEW}\t{OLD}\tnew\t1\t{SIG_B}\t3\t6\t500\t0",
                    f"{NEW}\t{OLD}\trate_increase\t1\t{SIG_A}\t3\t6\t500\t200",
                ],
            ),
            "signature_spread": (
                {"signature": SIG_C, "days": 7},
                [
                    "org_id\tos_build_full\tmachines\treports",
                    f"grid\t{OLD}\t2\t2",
                    f"water\t{OLD}\t1\t1",
                ],
            ),
            "top_feature_request_clusters": (
                {"limit": 2},
                [
                    "cluster_id\ttitle\torganisations\trequests\tmachines\tfiled_under",
                    f"{taskbar}\t希望任务栏支持按项目分组窗口\t2\t3\t3\t['shell.taskbar','shell.windows']",
                    f"{sm2}\tSupport SM2 certificates for smart card login\t1\t2\t2\t['security.login']",
                ],
            ),
            # Every request came today: each cluster is new this week,
            # with nothing in the four weeks before.
            "feature_request_trends": (
                {"week_of": d0, "limit": 2},
                [
                    "cluster_id\ttitle\tweek_start\trequests_this_week\trequests_weekly_average"
                    "\torganisations_this_week\torganisations_weekly_average\tfirst_seen\tnew_this_week",
                    f"{taskbar}\t希望任务栏支持按项目分组窗口\t{monday}\t3\t0\t2\t0\t{d0} 12:00:01\t1",
                    f"{sm2}\tSupport SM2 certificates for smart card login\t{monday}\t2\t0\t1\t0\t{d0} 12:00:04\t1",
                ],
            ),
            "new_feature_request_clusters": (
                {"week_of": d0},
                [
                    "cluster_id\ttitle\tlanguages\tfirst_seen\trequests_this_week\torganisations_this_week"
                    "\tmachines_this_week",
                    f"{taskbar}\t希望任务栏支持按项目分组窗口\t['zh']\t{d0} 12:00:01\t3\t2\t3",
                    f"{sm2}\tSupport SM2 certificates for smart card login\t['en']\t{d0} 12:00:04\t2\t1\t2",
                    f"{dark}\tDark mode for the taskbar\t['en']\t{d0} 12:00:06\t1\t1\t1",
                ],
            ),
            "top_feature_request_clusters_by_category": (
                {"days": 7, "per_category": 1},
                [
                    "category\tcluster_id\tfirst_title\torganisations\trequests\tmachines",
                    f"security.login\t{sm2}\tSupport SM2 certificates for smart card login\t1\t2\t2",
                    f"shell.taskbar\t{taskbar}\t希望任务栏支持按项目分组窗口\t2\t2\t2",
                    f"shell.windows\t{taskbar}\t建议任务栏可以按照项目分组显示窗口\t1\t1\t1",
                ],
            ),
            "cluster_requests": (
                {"cluster_id": taskbar},
                [
                    "received_at\torg_id\tcategory\tlanguage\ttitle\tbody",
                    f"{d0} 12:00:01\tgrid\tshell.taskbar\tzh-CN\t希望任务栏支持按项目分组窗口\t",
                    f"{d0} 12:00:02\twater\tshell.taskbar\tzh-CN\t任务栏能否按项目对窗口进行分组\t",
                    f"{d0} 12:00:03\tgrid\tshell.windows\tzh-CN\t建议任务栏可以按照项目分组显示窗口\t希望任务栏按项目分组窗口。",
                ],
            ),
            "feedback_by_category_and_build": (
                {"days": 7},
                [
                    "category\tos_build_full\tratings\taverage_rating\trated_1\trated_2\trated_3\trated_4"
                    "\trated_5\tmachines\torganisations",
                    f"shell.taskbar\t{NEW}\t2\t3.5\t0\t0\t1\t1\t0\t1\t1",
                    f"update\t{OLD}\t3\t3.67\t0\t1\t0\t1\t1\t3\t2",
                    f"update\t{NEW}\t1\t1\t1\t0\t0\t0\t0\t1\t1",
                ],
            ),
            "refused_reports": (
                {"days": 7},
                [
                    "outcome\treason\tschema\torg_id\trefused\tlargest_bytes\tfields",
                    "rate_limited\trate_limited\theartbeat/1\tgrid\t3\t220\t[]",
                    "rejected\tinvalid\tcrash/1\tgrid\t2\t2048\t['payload.app.name','payload.frames[2].offset']",
                    "consent\tconsent\tfeature_request/1\twater\t1\t512\t[]",
                    "rejected\tunknown_token\t\t\t1\t300\t[]",
                    "too_large\ttoo_large\t\tgrid\t1\t2000000\t[]",
                ],
            ),
            "dead_letters_by_reason": (
                {"days": 7},
                [
                    "stage\treason\tmessages\tlargest_bytes\ttopics",
                    "decode\tundecodable_report\t2\t12\t['telemetry.reports.v1']",
                    "decode\tundecodable_outcome\t1\t50\t['telemetry.outcomes.v1']",
                    "place\tinvalid_heartbeat_day\t1\t400\t['telemetry.reports.v1']",
                ],
            ),
            "ingestion_volume_per_org_per_day": (
                {"days": 7},
                [
                    "day\torg_id\tcrashes\tfeature_requests\tfeedback_reports\theartbeats\treports",
                    f"{d1}\tgrid\t2\t0\t0\t3\t5",
                    f"{d1}\twater\t0\t0\t1\t1\t2",
                    f"{d0}\tgrid\t3\t3\t4\t6\t16",
                    f"{d0}\twater\t5\t3\t1\t5\t14",
                ],
            ),
        }, sig_c_tsv


# --- the tests -----------------------------------------------------------


def run(db, sql, params=None):
    result = db.query(sql, "TSVWithNames", params=params) if params else db.query(sql, "TSVWithNames")
    return result.bytes().decode().rstrip("\n").split("\n")


def test_every_query_file_has_a_header_matching_its_placeholders():
    files = query_files()
    assert len(files) >= 12, [f.name for f in files]
    listed = headers()
    assert len(listed) == len(files), listed
    for path, (name, purpose, params) in zip(files, listed):
        assert name == path.stem, f"{path.name}: -- name: {name}"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert purpose, path.name
        used = {(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(path.read_text(encoding="utf-8"))}
        assert used == set(params.items()), f"{path.name}: declared {params}, used {sorted(used)}"
        samples = {"Date": "2026-11-30"}
        bound(name, {p: samples.get(t, "1") for p, t in params.items()})  # types the substitution knows


def test_substitution_quotes_strings_and_refuses_what_is_not_a_number():
    sql = "SELECT {s:String}, {n:UInt32}, {t:String}"
    assert substitute(sql, {"s": "a'b\\c", "n": 7, "t": "{n:UInt32}"}) == "SELECT 'a\\'b\\\\c', 7, '{n:UInt32}'"
    with pytest.raises(Refused, match="is no UInt32"):
        substitute("SELECT {n:UInt32}", {"n": "1; DROP TABLE x"})
    with pytest.raises(Refused):
        substitute("SELECT {m:UInt32}", {"n": 1})


def test_every_query_returns_the_expected_rows(db, ddl_files):
    for entry in ddl_files:
        for statement in entry["statements"]:
            db.query(statement)
    today = datetime.date.fromisoformat(run(db, "SELECT today() AS d")[1])
    fixture = Fixture(db, today)
    fixture.load()
    expected, sig_c_tsv = fixture.expectations()
    # TSV escapes a quote in a value; the expected lines above are written
    # unescaped, so put the escaping in where SIG_C appears.
    files = {path.stem: path for path in query_files()}
    missing = sorted(set(files) - set(expected))
    assert not missing, f"query files without an expectation: {missing}"
    declared_params = {name: params for name, _, params in headers()}
    for name, path in files.items():
        declared = declared_params[name]
        params, rows = expected[name]
        assert set(params) == set(declared), f"{name}: test params {sorted(params)} vs {sorted(declared)}"
        rows = [row.replace(SIG_C, sig_c_tsv) for row in rows]
        text = path.read_text(encoding="utf-8")
        substituted = run(db, bound(name, params))
        assert substituted == rows, f"{name} (substituted):\n" + "\n".join(substituted)
        if params:
            # Current ClickHouse binds the placeholders itself: same rows.
            native = run(db, text, {k: str(v) for k, v in params.items()})
            assert native == rows, f"{name} (bound by the server):\n" + "\n".join(native)
