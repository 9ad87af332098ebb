"""Every DDL statement the processor runs must also run on current ClickHouse
(the in-process engine of chdb), not only on the 18.16 server the other tests
use. The tables must then take and give back a row of each raw type."""

import tempfile
import uuid

import chdb
import pytest
from chdb import session

RAW_TABLES = ["crash_reports", "feature_requests", "feedback", "heartbeats"]


@pytest.fixture()
def db():
    with tempfile.TemporaryDirectory() as path:
        sess = session.Session(path)
        name = "ddl_" + uuid.uuid4().hex[:8]
        sess.query(f"CREATE DATABASE {name}")
        sess.query(f"USE {name}")
        yield sess
        sess.close()


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


def test_raw_tables_keep_one_row_per_report(db, ddl_files):
    apply_all(db, ddl_files)
    report_id = str(uuid.uuid4())
    common = (
        f"toUUID('{report_id}'), now(), now(), 'grid', 'ab12', 'required', "
        "'Windows 10 Enterprise G', '10.0.19045', 19045, 3570, 'zh-CN', 'x64'"
    )
    tail = "0, 1, 7, now()"
    db.query(
        f"INSERT INTO crash_reports VALUES ({common}, 'explorer.exe', '10.0', '0xC0000005', "
        f"'shell32.dll', '10.0', '0xA1B2C', ['shell32.dll'], ['CDefView::WndProc'], ['0x5E410'], {tail})"
    )
    db.query(f"INSERT INTO feature_requests VALUES ({common}, '任务栏分组', '', 'shell.taskbar', 'zh-CN', {tail})")
    db.query(f"INSERT INTO feedback VALUES ({common}, 4, 'faster updates', 'update', {tail})")
    db.query(f"INSERT INTO heartbeats VALUES ({common}, toDate('2026-11-20'), NULL, {tail})")
    # A redelivered copy of the crash collapses into one row.
    db.query(
        f"INSERT INTO crash_reports VALUES ({common}, 'explorer.exe', '10.0', '0xC0000005', "
        f"'shell32.dll', '10.0', '0xA1B2C', ['shell32.dll'], ['CDefView::WndProc'], ['0x5E410'], {tail})"
    )
    for table in RAW_TABLES:
        got = db.query(f"SELECT count() FROM {table} FINAL WHERE report_id = toUUID('{report_id}')", "CSV")
        assert got.bytes().decode().strip() == "1", table
