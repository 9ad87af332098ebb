"""Every DDL statement the processor runs must also run on current ClickHouse
(the in-process engine of chdb), not only on the 18.16 server the other tests
use. The tables must then take and give back a row of each raw type."""

import uuid

import chdb
import pytest

RAW_TABLES = ["crash_reports", "feature_requests", "feedback", "heartbeats"]


def test_engine_is_current_clickhouse():
    major = int(chdb.query("SELECT version()", "CSV").bytes().decode().strip().strip('"').split(".")[0])
    assert major >= 24


def apply_all(db, ddl_files):
    for entry in ddl_files:
        for statement in entry["statements"]:
            try:
                db.query(statement)
            except Exception as error:  # chdb raises its own error type
                pytest.fail(f"{entry['file']}: {error}\n{statement}")


def test_every_migration_runs_and_runs_twice(db, ddl_files):
    assert len(ddl_files) >= 3, "schema_migrations and at least two migrations"
    apply_all(db, ddl_files)
    apply_all(db, ddl_files)  # IF NOT EXISTS everywhere: a second run is harmless
    tables = db.query("SELECT name FROM system.tables WHERE database = currentDatabase()", "CSV")
    names = {line.strip('"') for line in tables.bytes().decode().split()}
    assert set(RAW_TABLES) | {"schema_migrations"} <= names


ENVELOPE = (
    "report_id, received_at, sent_at, org_id, machine_hash, consent, os_product, os_version, "
    "os_build, os_revision, os_locale, os_arch, os_build_full, build_key, scrubbed_total, "
    "kafka_partition, kafka_offset, inserted_at"
)


def envelope(report_id, machine="ab12", org="grid"):
    return (
        f"toUUID('{report_id}'), now(), now(), '{org}', '{machine}', 'required', "
        "'Windows 10 Enterprise G', '10.0.19045', 19045, 3570, 'zh-CN', 'x64', "
        "'10.0.19045.3570', 10995116277760, 0, 1, 7, now()"
    )


def one(db, sql):
    return db.query(sql, "CSV").bytes().decode().strip()


def crash_insert(crash_id):
    return (
        f"INSERT INTO crash_reports ({ENVELOPE}, app_name, app_version, exception_code, module_name, "
        "module_version, module_offset, frame_modules, frame_functions, frame_offsets, "
        "grouping_version, bucket, signature) VALUES "
        f"({envelope(crash_id)}, 'explorer.exe', '10.0', '0xC0000005', 'shell32.dll', '10.0', "
        "'0xA1B2C', ['shell32.dll'], ['CDefView::WndProc'], ['0x5E410'], 1, 'b', "
        "'shell32.dll!CDefView::WndProc')"
    )


def test_raw_tables_and_views_count_each_report_once(db, ddl_files):
    apply_all(db, ddl_files)
    crash_id, request_id, feedback_id, beat_id = (str(uuid.uuid4()) for _ in range(4))
    crash = crash_insert(crash_id)
    db.query(crash)
    db.query(crash)  # a redelivered copy
    db.query(
        f"INSERT INTO feature_requests ({ENVELOPE}, title, body, category, language, cluster_id, "
        f"cluster_similarity) VALUES ({envelope(request_id)}, '任务栏分组', '', 'shell.taskbar', "
        "'zh-CN', 42, 1)"
    )
    db.query(
        f"INSERT INTO feedback ({ENVELOPE}, rating, text, category) VALUES "
        f"({envelope(feedback_id)}, 4, 'faster updates', 'update')"
    )
    db.query(
        f"INSERT INTO heartbeats ({ENVELOPE}, day, uptime_minutes) VALUES "
        f"({envelope(beat_id, machine='cd34')}, today(), NULL)"
    )
    for table, report_id in [
        ("crash_reports", crash_id),
        ("feature_requests", request_id),
        ("feedback", feedback_id),
        ("heartbeats", beat_id),
    ]:
        got = one(db, f"SELECT count() FROM {table} FINAL WHERE report_id = toUUID('{report_id}')")
        assert got == "1", table
    # The views analysts read: exact despite the redelivered crash.
    assert one(db, "SELECT reports, machines, first_build FROM crash_signatures") == '1,1,"10.0.19045.3570"'
    assert one(db, "SELECT sum(reports) FROM crash_daily") == "1"
    assert one(db, "SELECT active_machines, crashed_machines, crash_free_rate FROM crash_free_daily") == "2,1,0.5"
    assert one(db, "SELECT cluster_id, requests, organisations FROM feature_request_clusters") == "42,1,1"
    assert one(db, "SELECT ratings, average_rating FROM feedback_daily") == "1,4"
    # The queries the processor's regression job runs.
    assert one(
        db,
        "SELECT count() FROM (SELECT os_build_full, build_key, signature, uniqExactMerge(machines) AS m "
        "FROM crash_daily_agg WHERE day >= today() - 30 AND grouping_version = 1 "
        "GROUP BY os_build_full, build_key, signature)",
    ) == "1"
    db.query(
        "INSERT INTO analytics_runs VALUES ('crash_regressions', now(), 0)"
    )
    assert one(db, "SELECT count() FROM crash_regressions") == "0"


def test_feeding_the_views_again_mends_and_counts_nothing_twice(db, ddl_files, refeeds):
    """What the processor runs for a report it finds already stored."""
    apply_all(db, ddl_files)
    assert {feed["source"] for feed in refeeds} == {"crash_reports", "heartbeats", "feature_requests", "feedback"}
    crash_id = str(uuid.uuid4())
    db.query(crash_insert(crash_id))

    def refeed():
        # A row written without report_key is counted by its report id.
        for feed in refeeds:
            db.query(feed["sql"].replace("{ids}", f"'{crash_id}'").replace("{keys}", f"'{crash_id}'"))

    refeed()
    assert one(db, "SELECT reports, machines FROM crash_signatures") == "1,1"
    assert one(db, "SELECT sum(reports) FROM crash_daily") == "1"
    assert one(db, "SELECT active_machines, crashed_machines FROM crash_free_daily") == "1,1"
    # A view's rows lost after the raw row was written come back.
    db.query("TRUNCATE TABLE crash_signatures_agg")
    assert one(db, "SELECT count() FROM crash_signatures") == "0"
    refeed()
    assert one(db, "SELECT reports, machines FROM crash_signatures") == "1,1"


def test_one_report_id_from_two_machines_counts_twice(db, ddl_files):
    """The key is (report_id, machine_hash): rows of two machines with one
    report id survive a merge, and the views count their report keys."""
    apply_all(db, ddl_files)
    shared = str(uuid.uuid4())
    columns = "report_id, report_key, received_at, org_id, machine_hash, grouping_version, signature, inserted_at"
    for machine in ["ab12", "cd34", "ab12"]:
        key = str(uuid.uuid5(uuid.UUID(shared), machine))
        db.query(
            f"INSERT INTO crash_reports ({columns}) VALUES "
            f"(toUUID('{shared}'), toUUID('{key}'), now(), 'grid', '{machine}', 1, 's', now())"
        )
    db.query("OPTIMIZE TABLE crash_reports FINAL")
    assert one(db, "SELECT count() FROM crash_reports") == "2"
    assert one(db, "SELECT reports, machines FROM crash_signatures") == "2,2"


def test_too_many_partitions_reads_as_the_processor_expects(db, ddl_files, root):
    """Current ClickHouse refuses an insert whose rows (or whose views'
    rows) fall in more than 100 partitions; 18.16 has no such limit. The
    processor tells that refusal by its text and splits the insert by
    partition (processor/src/store.rs, StoreError::failure): that text must
    be what current ClickHouse says, here for heartbeats whose machine days
    span 120 months of machine_days_agg."""
    apply_all(db, ddl_files)
    columns = "report_id, received_at, machine_hash, day, inserted_at"
    rows = ", ".join(
        f"(generateUUIDv4(), now(), 'm{i}', toDate('2010-01-15') + {i} * 31, now())" for i in range(120)
    )
    with pytest.raises(Exception) as refused:
        db.query(f"INSERT INTO heartbeats ({columns}) VALUES {rows}")
    source = (root / "processor" / "src" / "store.rs").read_text()
    marker = "Too many partitions for single INSERT block"
    assert f'text.contains("{marker}")' in source
    assert marker in str(refused.value) and "Code: 252" in str(refused.value)
    # The raw table took its rows before the view refused: the processor's
    # smaller inserts write them again (merged away by the
    # ReplacingMergeTree; every count is a uniqExact) and feed the view.
    assert one(db, "SELECT uniqExact(report_id) FROM heartbeats") == "120"
    assert one(db, "SELECT count() FROM machine_days_agg") == "0"
    db.query(f"INSERT INTO heartbeats ({columns}) SELECT {columns} FROM heartbeats WHERE toYYYYMM(day) < 201501")
    assert one(db, "SELECT sum(active_machines) FROM crash_free_daily") == one(
        db, "SELECT uniqExact(report_id) FROM heartbeats WHERE toYYYYMM(day) < 201501"
    )


def test_erasing_a_machine_leaves_nothing_of_it_and_the_rest_counted(db, ddl_files, root):
    """What the processor runs to erase a machine (schemas::erasure), on
    current ClickHouse: afterwards no table with a machine_hash column holds
    the machine, the views count the other machine, and its request's
    clustering signature is gone."""
    from conftest import cargo_example

    erasure = cargo_example("schemas", "erasure")
    apply_all(db, ddl_files)
    db.query("SET mutations_sync = 1")
    request_ids = {}
    for machine in ["ab12", "cd34"]:
        crash_id, request_id, feedback_id, beat_id = (str(uuid.uuid4()) for _ in range(4))
        request_ids[machine] = request_id
        columns = "report_id, report_key, received_at, org_id, machine_hash"

        def row(report_id):
            return f"toUUID('{report_id}'), toUUID('{report_id}'), now(), 'grid', '{machine}'"

        db.query(
            f"INSERT INTO crash_reports ({columns}, grouping_version, signature) "
            f"VALUES ({row(crash_id)}, 1, 'sig-{machine}')"
        )
        db.query(
            f"INSERT INTO feature_requests ({columns}, title, cluster_id) "
            f"VALUES ({row(request_id)}, 'title {machine}', {len(request_ids)})"
        )
        db.query(
            "INSERT INTO feature_request_signatures (cluster_id, report_id, received_at, minhash, inserted_at) "
            f"VALUES ({len(request_ids)}, toUUID('{request_id}'), now(), 'x', now())"
        )
        db.query(f"INSERT INTO feedback ({columns}, rating) VALUES ({row(feedback_id)}, 3)")
        db.query(f"INSERT INTO heartbeats ({columns}, day) VALUES ({row(beat_id)}, today())")
    assert one(db, "SELECT sum(active_machines) FROM crash_free_daily") == "2"

    for statement in erasure["statements"]:
        db.query(
            statement.replace("{machine}", "'ab12'").replace("{requests}", f"'{request_ids['ab12']}'")
        )
    for table in erasure["machine_tables"]:
        assert one(db, f"SELECT count() FROM {table} WHERE machine_hash = 'ab12'") == "0", table
        assert one(db, f"SELECT count() FROM {table} WHERE machine_hash = 'cd34'") != "0", table
    assert one(db, "SELECT sum(active_machines), sum(crashed_machines) FROM crash_free_daily") == "1,1"
    assert one(db, "SELECT signature, machines FROM crash_signatures") == '"sig-cd34",1'
    assert one(db, "SELECT title, machines FROM feature_request_clusters") == '"title cd34",1'
    assert one(db, "SELECT ratings FROM feedback_daily") == "1"
    assert one(db, "SELECT count() FROM feature_request_signatures") == "1"


def test_replicated_ddl_parses_on_current_clickhouse():
    """The statements a replicated cluster runs ([clickhouse] cluster set):
    chdb has neither ZooKeeper nor a cluster, so it cannot run ON CLUSTER or
    make a Replicated*MergeTree table; it parses each one (EXPLAIN AST). The
    cluster check runs them on 18.16 replicas."""
    from conftest import cargo_example

    files = cargo_example("schemas", "replicated_ddl")
    statements = [(f["file"], s) for f in files for s in f["statements"]]
    assert any("ReplicatedAggregatingMergeTree(" in s for _, s in statements)
    for file, statement in statements:
        try:
            chdb.query(f"EXPLAIN AST {statement}", "CSV")
        except Exception as error:  # chdb raises its own error type
            pytest.fail(f"{file}: {error}\n{statement}")


def test_every_report_query_runs_on_current_clickhouse(db, ddl_files):
    """The roadmap report's queries (warehouse/src/report), each with 1 for
    every bound value, run on the migrated tables (the cluster query once
    needed an alias for each joined subquery that 18.16 did not ask for)."""
    from conftest import cargo_example

    apply_all(db, ddl_files)
    queries = cargo_example("warehouse", "report_sql")
    assert {q["name"] for q in queries} >= {"builds", "clusters", "feedback", "trends"}
    for query in queries:
        try:
            db.query(query["sql"].replace("?", "1"), "TSV")
        except Exception as error:  # chdb raises its own error type
            pytest.fail(f"{query['name']}: {error}\n{query['sql']}")


def test_a_merged_cluster_counts_once_under_the_surviving_id(db, ddl_files):
    """feature_request_clusters and feature_request_weeks on current
    ClickHouse: cluster 2 merged into 1 leaves one row, for 1, counting both
    ids' requests, organisations and machines once, a title per language,
    and this ISO week's requests against the four weeks before."""
    apply_all(db, ddl_files)
    columns = "report_id, received_at, org_id, machine_hash, title, language, cluster_id, inserted_at"
    rows = [
        # (cluster, days after this week's Monday, org, machine, title, language)
        (1, -20, "grid", "a", "Pin folders to Start", "en"),
        (2, -6, "water", "b", "Pin folders to Start", "en"),
        (2, 0, "water", "c", "开始菜单固定文件夹", "zh-CN"),
        (2, 0, "sun", "d", "开始菜单支持固定文件夹", "zh-CN"),
        (3, 0, "grid", "e", "Export the log to CSV", "en"),
    ]
    for cluster, days, org, machine, title, language in rows:
        db.query(
            f"INSERT INTO feature_requests ({columns}) SELECT generateUUIDv4(), "
            f"toDateTime(toMonday(today()) + {days}) + 60, '{org}', '{machine}', '{title}', "
            f"'{language}', {cluster}, now()"
        )
    db.query("INSERT INTO cluster_merges VALUES (2, 1, 0.9, now())")
    got = one(
        db,
        "SELECT cluster_id, languages, requests, organisations, machines, requests_this_week, "
        "requests_weekly_average, organisations_this_week, new_this_week "
        "FROM feature_request_clusters ORDER BY cluster_id",
    )
    assert got.split("\n") == [
        "1,\"['en','zh']\",4,3,4,2,0.5,2,0",
        "3,\"['en']\",1,1,1,1,0,1,1",
    ], got
    weeks = one(db, "SELECT cluster_id, requests FROM feature_request_weeks ORDER BY cluster_id, week")
    assert weeks.split("\n") == ["1,1", "1,1", "1,2", "3,1"], weeks
