"""Start-up: ``svsmlog --version`` and the reading path import only what they need.

Times live in benchmarks/ (the start-up row); these tests check which modules get imported,
which is what the times follow from."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import svsmlog.cli

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("typer", "rich", "click", "construct", "cryptography")


def imported_by(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Top-level modules a fresh interpreter imports running ``args`` (``-X importtime``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=env)
    names = set()
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            names.add(m.group(1).split(".")[0])
    return names, r


@pytest.mark.parametrize("how", [["-m", "svsmlog.cli"], ["-c", "import sys; from svsmlog.cli import main; "
                                                          "sys.argv[0] = 'svsmlog'; sys.exit(main())"]])
def test_version_imports_nothing_heavy(how: list[str]) -> None:
    names, r = imported_by(*how, "--version")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == f"svsmlog {metadata.version('svsmlog')}\n"
    assert not names & set(HEAVY), sorted(names & set(HEAVY))
    assert "importlib.metadata" not in r.stderr


def test_version_matches_importlib_metadata() -> None:
    assert svsmlog.cli.version() == metadata.version("svsmlog")


def test_other_arguments_still_reach_typer() -> None:
    names, r = imported_by("-m", "svsmlog.cli", "--version", "--debug")
    assert r.returncode == 0 and r.stdout.startswith("svsmlog ")
    assert "typer" in names
    assert svsmlog.cli.app is not None  # the typer app is still reachable as svsmlog.cli.app


def test_library_reading_modules_do_not_import_construct() -> None:
    """format.py's construct declarations are the normative twin; the hot path never needs them."""
    mods = "codec, crypto, format, frames, keyschedule, scan"
    names, r = imported_by("-c", f"from svsmlog import {mods}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "construct" not in names


def test_declarations_load_on_first_use() -> None:
    code = ("import sys; from svsmlog import format; assert 'construct' not in sys.modules; "
            "s = format.FrameHeader; assert 'construct' in sys.modules; "
            "assert format.FrameHeader is s and format.RecordBlock.sizeof is not None")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]


def test_app_stays_the_typer_app_after_the_submodule_is_imported() -> None:
    code = ("import svsmlog.cli, svsmlog.cli.app as m, typer; from svsmlog.cli import app; "
            "assert isinstance(app, typer.Typer) and isinstance(svsmlog.cli.app, typer.Typer)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
