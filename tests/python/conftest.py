"""Shared fixtures of the Python checks: the repository root, the DDL the
processor runs and the OpenAPI document ingest serves, as printed by the
workspace's examples."""

import json
import pathlib
import subprocess

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
def openapi_document() -> dict:
    return cargo_example("ingest", "openapi")
