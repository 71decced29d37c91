"""Outputs a host can make as long as the image, and what they hold: `verify --json` is
json.dumps of the report byte for byte, written a finding at a time, and the text report's
findings table stops at MAX_FINDING_ROWS rows and counts what it leaves out; `info` counts
frames as it scans and keeps them (as columns) only to list them, which --json and
--frames do a frame at a time."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog.cli import render
from svsmlog.cli.jsonout import item_json, write_with_list
from svsmlog.cli.render import omitted_line, write_report_json
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


json_values = st.recursive(st.none() | st.booleans() | st.integers() | any_text
                           | st.floats(allow_nan=False),
                           lambda inner: (st.lists(inner, max_size=3)
                                          | st.dictionaries(any_text, inner, max_size=3)),
                           max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(any_text, json_values, max_size=4),
       st.lists(st.dictionaries(any_text, json_values, max_size=5), max_size=4), any_text)
def test_a_document_written_an_item_at_a_time_is_json_dumps_of_it(head: dict, items: list[dict],
                                                                   key: str) -> None:
    head.pop(key, None)
    out = io.StringIO()
    write_with_list(head, key, iter(items), out)
    assert out.getvalue() == json.dumps({**head, key: items}, indent=2) + "\n"


@pytest.mark.parametrize("value", [1.5, True, False, None, 7, "é\n", [1, "a"], {"x": None}, {}])
def test_an_item_of_any_value_is_encoded_as_json_dumps_does(value: object) -> None:
    d = {"kind": "frame_moved", "odd": value, "detail": "x\ny"}
    assert item_json(d) == json.dumps(d, indent=2).replace("\n", "\n    ")


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
    """A volume of ``frames`` one-sector frames, each claiming another sector (frame_moved)."""
    from svsmlog.campaign.run import moved_frames_volume

    path.write_bytes(moved_frames_volume(frames))
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


def test_info_json_is_json_dumps_of_itself_and_lists_every_frame(tmp_path: Path) -> None:
    image = _moved_frames_image(tmp_path / "moved.img", 300)
    text = run("info", image, "--json").stdout
    d = json.loads(text)
    assert text == json.dumps(d, indent=2) + "\n"  # json.dumps's bytes, from the writer a frame at a time
    assert list(d)[-1] == "frames"
    assert [(f["offset"], f["seq"], f["status"]) for f in d["frames"]] == [
        (lba * SECTOR, lba, "misplaced") for lba in range(64, 364)]
    assert d["streams"][0]["other"] == 300 and d["streams"][0]["frames"] == 0


def test_info_lists_every_frame_in_text(tmp_path: Path) -> None:
    image = _moved_frames_image(tmp_path / "moved.img", 300)
    rows = [line.split() for line in run("info", image, "--frames").stdout.splitlines()]
    listed = [r for r in rows if len(r) == 7 and r[-1] == "misplaced"]
    assert [int(r[0]) for r in listed] == [lba * SECTOR for lba in range(64, 364)]


def test_info_holds_its_frames_only_to_list_them(tmp_path: Path) -> None:
    """Memory of `info` on a volume with a frame on every sector (32,704 of them): the
    plain summary counts them, and the listings hold them as columns of about 30 bytes a
    frame (as FrameInfo objects and dicts, --json held 90 MiB more than the summary)."""
    from svsmlog.campaign.hostile import run_subprocess
    from svsmlog.campaign.run import _big_moved

    image = tmp_path / "moved.img"
    image.write_bytes(_big_moved(16).image)
    peaks = {}
    for options in ([], ["--json"], ["--frames"]):
        r = run_subprocess(["info", str(image), *options], timeout=120)
        assert r.code == 0, r.stderr
        peaks[" ".join(options)] = r.peak_bytes
    assert peaks[""] < 64 << 20
    assert peaks["--json"] - peaks[""] < 8 << 20
    assert peaks["--frames"] - peaks[""] < 8 << 20


def test_several_images_ship_back_their_reports_only_for_json(tmp_path: Path) -> None:
    """verify of several images: a worker hands back the whole report (a finding per frame,
    if the host likes) only where --json writes it, and each image's line is its report."""
    from svsmlog import fleet

    image = _moved_frames_image(tmp_path / "moved.img", 300)
    bare = fleet.analyse(fleet.Job(image, (OWNER,), with_report=False))
    assert bare.report is None and bare.summary["violations"] == 300
    whole = fleet.analyse(fleet.Job(image, (OWNER,)))
    assert whole.report is not None and len(whole.report["findings"]) == 300  # type: ignore[arg-type]

    lines = run("verify", image, SAMPLES / "tampered.img", "--key", OWNER, "--json").stdout.splitlines()
    docs = [json.loads(line) for line in lines]
    assert [Path(d["image"]).name for d in docs] == ["moved.img", "tampered.img"]
    single = json.loads(run("verify", image, "--key", OWNER, "--json").stdout)
    assert docs[0]["findings"] == single["findings"]
