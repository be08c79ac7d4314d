"""Fixtures for the mpsb Python package tests (scripts/test.sh runs them in
build/venv after `pip install .`): the installed mpsbc and the example bundle."""

import json
import subprocess
from pathlib import Path

import pytest

import mpsb
from mpsb import _tools

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny_cnn"


def mpsbc(*args, check=True):
    """Runs the mpsbc shipped in the installed package."""
    return subprocess.run([_tools.tool_path("mpsbc"), *map(str, args)], check=check,
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def example_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("example") / "tiny_cnn.mpsb"
    mpsbc("compile", EXAMPLE / "manifest.json", "-o", out, "-q")
    return out


@pytest.fixture(scope="session")
def example_manifest() -> dict:
    return json.loads((EXAMPLE / "manifest.json").read_text())
