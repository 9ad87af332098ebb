"""Stores rows on current ClickHouse (chdb, in-process) and says how many
each table took.

usage: store_on_current.py DIR

DIR holds `ddl.json` (a list of SQL statements, applied in order to a fresh
database) and one `<table>.jsonl` per raw table (JSONEachRow). Each file is
inserted into its table, which also runs the materialised views. Prints
`{"<table>": <rows>, ...}` as JSON, counted after the inserts, and exits
non-zero with the server's message if any statement or insert is refused.
Run by tests/tests/accepted_is_storable.rs.
"""

import json
import pathlib
import sys
import tempfile

from chdb import session


def main(folder: str) -> int:
    folder = pathlib.Path(folder)
    statements = json.loads((folder / "ddl.json").read_text())
    counts = {}
    with tempfile.TemporaryDirectory() as path:
        db = session.Session(path)
        db.query("CREATE DATABASE storable")
        db.query("USE storable")
        for statement in statements:
            db.query(statement)
        for rows in sorted(folder.glob("*.jsonl")):
            table = rows.stem
            data = rows.read_text()
            if data.strip():
                db.query(f"INSERT INTO {table} FORMAT JSONEachRow\n{data}")
            got = db.query(f"SELECT count() FROM {table}", "CSV").bytes().decode().strip()
            counts[table] = int(got)
        # The views took every row too: a query over each one runs.
        for view in ["crash_signatures", "crash_daily", "crash_free_daily",
                     "feature_request_clusters", "feedback_daily"]:
            db.query(f"SELECT * FROM {view}", "CSV")
        db.close()
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
