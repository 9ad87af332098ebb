"""Shared fixtures of the Python checks: the repository root, the DDL the
processor runs and the OpenAPI document ingest serves, as printed by the
workspace's examples."""

import json
import pathlib
import subprocess
import tempfile
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> pathlib.Path:
    return ROOT


def cargo_example(package: str, example: str):
    """Runs a workspace example and parses what it prints as JSON."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "-p", package, "--example", example],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="session")
def ddl_files() -> list:
    return cargo_example("schemas", "ddl")


@pytest.fixture(scope="session")
def refeeds() -> list:
    return cargo_example("schemas", "refeeds")


@pytest.fixture(scope="session")
def openapi_document() -> dict:
    return cargo_example("ingest", "openapi")


@pytest.fixture()
def db():
    """A chdb (current ClickHouse, in-process) session in a fresh database."""
    from chdb import session

    with tempfile.TemporaryDirectory() as path:
        sess = session.Session(path)
        name = "check_" + uuid.uuid4().hex[:8]
        sess.query(f"CREATE DATABASE {name}")
        sess.query(f"USE {name}")
        yield sess
        sess.close()
