"""``svsmlog simulate`` and the reading commands over what it writes (needs svsmlog.model)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from svsmlog.cli import main

pytest.importorskip("svsmlog.model.simulate")


def run(*args: object) -> SimpleNamespace:
    """``svsmlog ARGS`` in process, through main() as the console script calls it."""
    with CliRunner().isolation() as (out, err, _):
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return SimpleNamespace(code=code, stdout=out.getvalue().decode(), stderr=err.getvalue().decode())


def run_json(*args: object, code: int = 0) -> dict:
    r = run(*args)
    assert r.code == code, r.stderr
    return json.loads(r.stdout)


def error_line(r: SimpleNamespace) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("svsmlog: error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim-keys")
    assert run("keygen", "--out", d / "owner").code == 0
    assert run("keygen", "--out", d / "debug").code == 0
    return d


TRUTH_FIELDS = ("boot", "stream", "seq", "service", "component", "level", "t_ns", "message")


def _records(text: str) -> list[tuple]:
    """Records in the truth file's terms (it has no fields, target or flags)."""
    return [tuple(json.loads(line)[k] for k in TRUTH_FIELDS) for line in text.splitlines() if line]


def test_simulate_then_verify_and_extract_what_it_wrote(keys: Path, tmp_path: Path) -> None:
    image, truth, anchor = tmp_path / "disk.img", tmp_path / "truth.jsonl", tmp_path / "anchor.json"
    r = run("simulate", "--recipient", keys / "owner.pub", "--image", image, "--boots", 2, "--seed", 7,
            "--truth", truth, "--anchor-out", anchor, "--size", "8M")
    assert r.code == 0, r.stderr
    assert "boots 1..2" in r.stdout and str(anchor) in r.stdout
    assert image.stat().st_size == 8 << 20
    report = run_json("verify", image, "--key", keys / "owner.key", "--anchor", anchor, "--json")
    assert report["verdict"] == "intact" and report["anchor_checked"] is True
    assert [b["ending"] for b in report["boots"]] == ["clean shutdown", "clean shutdown"]
    got = run("extract", image, "--key", keys / "owner.key", "-f", "jsonl")
    assert got.code == 0
    assert _records(got.stdout) == _records(truth.read_text())


def test_simulate_a_crash_leaves_an_intact_log(keys: Path, tmp_path: Path) -> None:
    image, truth = tmp_path / "crash.img", tmp_path / "truth.jsonl"
    r = run("simulate", "--recipient", keys / "owner.pub", "--image", image, "--crash-after-writes", 12,
            "--tear-sectors", 1, "--truth", truth, "--size", "4M")
    assert r.code == 0, r.stderr
    assert "crashed after 12 device writes" in r.stdout
    assert run("verify", image, "--key", keys / "owner.key").code == 0
    extracted = _records(run("extract", image, "--key", keys / "owner.key", "-f", "jsonl").stdout)
    durable = _records(truth.read_text())
    # Everything durable is recovered. The torn write may have landed whole (a one-sector
    # frame torn after one sector), and then its records are recovered too.
    assert extracted[: len(durable)] == durable
    assert len({rec[2] for rec in extracted[len(durable) :]}) <= 1


def test_simulate_per_service_streams_and_a_debug_key(keys: Path, tmp_path: Path) -> None:
    image = tmp_path / "debug.img"
    r = run("simulate", "--recipient", keys / "owner.pub", "--image", image, "--scenario", "debug",
            "--debug-key", keys / "debug.pub", "--streams", "per-service", "--size", "4M")
    assert r.code == 0, r.stderr
    info = run_json("info", image, "--json")
    assert len(info["streams"]) > 1
    kinds = {r["kind"] for r in info["recipients"]}
    assert kinds == {"boot-secret", "chain-key"}
    debug_view = run_json("verify", image, "--key", keys / "debug.key", "--json", code=4)  # partial
    assert debug_view["verdict"] == "partial"
    readable = {s["stream"] for b in debug_view["boots"] for s in b["streams"] if s["frames"]}
    owner_view = run_json("verify", image, "--key", keys / "owner.key", "--json")
    everything = {s["stream"] for b in owner_view["boots"] for s in b["streams"] if s["frames"]}
    assert readable and readable < everything


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nonsense"], "unknown scenario"),
        (["--tear-sectors", "1"], "crash"),
        (["--size", "lots"], "size"),
        (["--streams", "sideways"], "'sideways' is not one of"),
        (["--recipient", "missing.pub"], "missing.pub"),
    ],
)
def test_simulate_bad_usage(keys: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.endswith(".pub") else a for a in args]
    r = run("simulate", "--recipient", keys / "owner.pub", "--image", tmp_path / "x.img", *args)
    assert r.code == 2
    assert message in error_line(r)


def test_simulate_needs_a_recipient(tmp_path: Path) -> None:
    r = run("simulate", "--image", tmp_path / "x.img")
    assert r.code == 2
    assert "recipient" in error_line(r)


def test_simulate_refuses_to_format_a_foreign_file(keys: Path, tmp_path: Path) -> None:
    image = tmp_path / "precious.img"
    image.write_bytes(b"\x01" * 4096)
    r = run("simulate", "--recipient", keys / "owner.pub", "--image", image)
    assert r.code == 2
    error_line(r)
    assert image.read_bytes() == b"\x01" * 4096


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
def test_simulate_with_openssl_keys(tmp_path: Path) -> None:
    key, pub = tmp_path / "o.key", tmp_path / "o.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    image = tmp_path / "o.img"
    assert run("simulate", "--recipient", pub, "--image", image, "--size", "4M").code == 0
    assert run("verify", image, "--key", key).code == 0


def test_simulate_records_sets_the_steady_state_record_count(keys: Path, tmp_path: Path) -> None:
    counts = []
    for n in (50, 400):
        truth = tmp_path / f"t{n}.jsonl"
        r = run("simulate", "--recipient", keys / "owner.pub", "--image", tmp_path / f"r{n}.img",
                "--records", n, "--size", "4M", "--seed", 3, "--truth", truth)
        assert r.code == 0, r.stderr
        counts.append(len(truth.read_text().splitlines()))
    # the same boot, attestation and shutdown lines around exactly n steady-state records
    assert counts[1] - counts[0] == 350
