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


def imported_by(*args: str, full: bool = False) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Top-level modules (every module with ``full``) a fresh interpreter imports running
    ``args`` (``-X importtime``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=env)
    names = set()
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            names.add(m.group(1) if full else m.group(1).split(".")[0])
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


SAMPLE = ROOT / "samples" / "clean-multiboot.img"  # unattested: no attestation checks to import
SAMPLE_KEY = ROOT / "samples" / "TEST-ONLY-owner.key"
# What the reading commands do not need, on their paths into a file or a pipe: rich (the
# reports are written by svsmlog.cli.tables), construct, the model, the attestation checks
# of a boot without a report, process pools for a small image, pyca's serialization package
# (its SSH support), and the other commands' modules.
NOT_ON_THE_READING_PATH = ("rich", "construct", "svsmlog.model", "svsmlog.attestation", "svsmlog.export",
                           "svsmlog.crashes", "svsmlog.fleet", "svsmlog.cli.info", "svsmlog.cli.keygen",
                           "multiprocessing", "cryptography.hazmat.primitives.serialization",
                           "cryptography.x509")


@pytest.mark.parametrize("args", [["verify", str(SAMPLE), "--key", str(SAMPLE_KEY)],
                                  ["verify", str(SAMPLE), "--key", str(SAMPLE_KEY), "--json"],
                                  ["info", str(SAMPLE)]])
def test_reading_a_small_image_imports_only_what_it_needs(args: list[str]) -> None:
    os.chmod(SAMPLE_KEY, 0o600)
    names, r = imported_by("-m", "svsmlog.cli", *args, full=True)
    assert r.returncode == 0, r.stderr[-2000:]
    unneeded = NOT_ON_THE_READING_PATH if args[0] == "verify" else tuple(
        n for n in NOT_ON_THE_READING_PATH if n != "svsmlog.cli.info")
    if "--json" not in args:
        unneeded += ("json",)
    found = {n for n in names for u in unneeded if n == u or n.startswith(u + ".")}
    assert not found, sorted(found)


ATTESTED = ROOT / "samples" / "vtpm-panic.img"  # one boot, its report checked against the TEST-ONLY chain


def test_verifying_an_attested_boot_imports_no_construct() -> None:
    """The report is read by fixed-offset slices (svsmlog.attestation.report.LAYOUTS); the
    construct declaration is for the model and the tests."""
    os.chmod(SAMPLE_KEY, 0o600)
    measurement = (ROOT / "samples" / "measurement.hex").read_text().strip()
    args = ["verify", str(ATTESTED), "--key", str(SAMPLE_KEY), "--trust-root",
            str(ROOT / "samples" / "TEST-ONLY-amd-chain.pem"), "--measurement", measurement]
    names, r = imported_by("-m", "svsmlog.cli", *args, full=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "svsmlog.attestation.report" in names and "cryptography.x509" in names  # it was checked
    unneeded = ("rich", "construct", "svsmlog.model", "json", "svsmlog.export", "multiprocessing")
    assert not {n for n in names for u in unneeded if n == u or n.startswith(u + ".")}


def test_extract_jsonl_imports_no_rich() -> None:
    os.chmod(SAMPLE_KEY, 0o600)
    args = ["extract", str(SAMPLE), "--key", str(SAMPLE_KEY), "-f", "jsonl"]
    names, r = imported_by("-m", "svsmlog.cli", *args, full=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "svsmlog.export" in names
    assert not {n for n in names if n.split(".")[0] in ("rich", "construct")}


def test_one_command_app_keeps_help_and_errors() -> None:
    """main builds only the command named on the line: its help and usage errors are those
    of the whole app's."""
    code = ("import sys; import svsmlog.cli.app as _; m = sys.modules['svsmlog.cli.app']; "
            "m._app_for = lambda argv: m.app; sys.argv[0] = 'svsmlog'; sys.exit(m.main())")
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    for args in (["verify", "--help"], ["extract", "--help"], ["attest", "--help"], ["export-key", "--help"],
                 ["--debug", "info", "--help"], ["--color", "never", "crashes", "--help"], ["verify"],
                 ["verify", "x.img", "--bogus"], ["extract", "x.img", "-f", "bogus"], ["--help"], ["verfy"],
                 ["--color=never", "keygen", "--help"]):
        one = subprocess.run([sys.executable, "-m", "svsmlog.cli", *args], capture_output=True, text=True,
                             env=env)
        whole = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
        assert (one.returncode, one.stdout, one.stderr) == (whole.returncode, whole.stdout, whole.stderr), \
            args


def test_app_for_picks_the_named_command() -> None:
    import svsmlog.cli.app  # noqa: F401

    m = sys.modules["svsmlog.cli.app"]

    def names(argv: list[str]) -> list[str] | None:
        a = m._app_for(argv)
        return None if a is m.app else [m._command_name(c) for c in a.registered_commands]

    assert names(["verify", "x.img"]) == ["verify"]
    assert names(["--debug", "--color", "never", "export-key", "x"]) == ["export-key"]
    assert names(["--color=always", "info"]) == ["info"]
    for whole in ([], ["--help", "verify"], ["--version"], ["--color"], ["--color", "verify"], ["nope"],
                  ["--debug=1", "verify"]):
        assert names(whole) is None, whole


def test_format_choices_are_exports_formats() -> None:
    """Checked here, not by importing svsmlog.export with the app."""
    import svsmlog.cli.app  # noqa: F401
    from svsmlog.export import FORMATS

    m = sys.modules["svsmlog.cli.app"]
    assert tuple(f.value for f in m.Format) == FORMATS


def test_crypto_key_loaders_are_pycas() -> None:
    from cryptography.hazmat.primitives import serialization

    from svsmlog import crypto

    assert crypto._load_pem_private_key is serialization.load_pem_private_key
    assert crypto._load_der_private_key is serialization.load_der_private_key
    assert crypto._load_pem_public_key is serialization.load_pem_public_key
