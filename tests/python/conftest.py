"""Shared fixtures of the Python checks: the repository root and the DDL the
processor runs, as printed by `cargo run -p schemas --example ddl`."""

import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def ddl_files() -> list:
    out = subprocess.run(
        ["cargo", "run", "--quiet", "-p", "schemas", "--example", "ddl"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)
