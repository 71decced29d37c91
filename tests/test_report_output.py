"""The report as `verify` prints it when a host makes it long: --json is json.dumps of the
report byte for byte, written a finding at a time, and the text report's findings table
stops at MAX_FINDING_ROWS rows and counts what it leaves out."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog.cli import render
from svsmlog.cli.render import _finding_json, omitted_line, write_report_json
from svsmlog.codec import FrameHeader, encode_frame_header
from svsmlog.device import SECTOR, FileDevice
from svsmlog.report import Finding, Kind, Report
from svsmlog.verify import Keyring, Verifier

from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
OWNER = SAMPLES / "TEST-ONLY-owner.key"

# Strings a host can put into a finding (stream names and details quote what it wrote):
# quotes, backslashes, newlines, controls, non-ASCII, lone surrogates.
any_text = st.text(st.characters(blacklist_categories=()), max_size=30)
maybe_int = st.none() | st.integers(0, 2**64 + 5)
findings = st.builds(Finding, st.sampled_from(list(Kind)), st.none() | any_text, maybe_int, maybe_int,
                     maybe_int, any_text)


def _json_text(report: Report) -> str:
    out = io.StringIO()
    write_report_json(report, out)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(findings, max_size=8), st.binary(min_size=16, max_size=16))
def test_the_json_report_is_json_dumps_of_it_byte_for_byte(found: list[Finding], volume_id: bytes) -> None:
    report = Report(volume_id, findings=found)
    assert _json_text(report) == json.dumps(report.as_json(), indent=2) + "\n"


@pytest.mark.parametrize("value", [1.5, True, False, [1, "a"], {"x": None}])
def test_a_finding_value_that_is_not_a_string_or_an_integer_takes_json_dumps(value: object) -> None:
    d = {"kind": "frame_moved", "odd": value, "detail": "x\ny"}
    assert _finding_json(d, json) == json.dumps(d, indent=2).replace("\n", "\n    ")


@pytest.mark.parametrize("image", sorted(SAMPLES.glob("*.img")), ids=lambda p: p.stem)
def test_the_json_report_of_every_sample_is_json_dumps_of_it(image: Path) -> None:
    from svsmlog import crypto

    dev = FileDevice(image)
    try:
        report = Verifier(dev.read, dev.sector_count,
                          Keyring([crypto.load_private_key(OWNER.read_bytes())])).run()
    finally:
        dev.close()
    assert _json_text(report) == json.dumps(report.as_json(), indent=2) + "\n"


def _moved_frames_image(path: Path, frames: int) -> Path:
    """A volume whose one region holds ``frames`` one-sector frames, each claiming to have
    been written 64 sectors earlier: the reader reports every one (frame_moved)."""
    from svsmlog.campaign.hostile import _sb

    vid = bytes(range(16))
    total = 64 + frames
    img = bytearray(total * SECTOR)
    img[:SECTOR] = _sb(vid, total, [(1, "all", 64, frames)])
    for lba in range(64, total):
        h = encode_frame_header(FrameHeader(3, 1, 1, lba, lba - 64, vid, bytes(16), 0, 100, bytes(16)))
        img[lba * SECTOR : lba * SECTOR + len(h)] = h
    path.write_bytes(bytes(img))
    return path


def test_the_text_report_shows_the_first_rows_and_counts_the_rest(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    image = _moved_frames_image(tmp_path / "moved.img", 300)
    full = json.loads(run("verify", image, "--key", OWNER, "--json").stdout)
    assert [f["kind"] for f in full["findings"]] == ["frame_moved"] * 300  # --json lists every one

    monkeypatch.setattr(render, "MAX_FINDING_ROWS", 120)
    from svsmlog.cli import main

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["verify", str(image), "--key", str(OWNER)]) == 1
    text = out.getvalue()
    rows = [line for line in text.splitlines() if line.lstrip().startswith("frame_moved ")]
    assert len(rows) == 120
    assert rows[0].split()[4] == "64" and rows[-1].split()[4] == "183"  # the first 120, in order
    assert ("... and 180 more finding(s) not shown (frame_moved 180); "
            "'svsmlog verify --json' lists every finding") in text


def test_the_text_report_of_a_short_list_leaves_nothing_out() -> None:
    r = run("verify", SAMPLES / "tampered.img", "--key", OWNER)
    assert "violation" in r.stdout
    assert "not shown" not in r.stdout


def test_what_the_table_leaves_out_is_counted_by_kind_most_first() -> None:
    rest = [Finding(Kind.FRAME_CORRUPT, "all", 1, None, 7, "y")] * 2
    rest += [Finding(Kind.FRAME_MOVED, "all", 1, i, i, "x") for i in range(1234)]
    assert omitted_line(rest) == ("... and 1,236 more finding(s) not shown (frame_moved 1,234, "
                                  "frame_corrupt 2); 'svsmlog verify --json' lists every finding")
