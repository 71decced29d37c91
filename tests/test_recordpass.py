"""The record pass in forked workers (svsmlog.recordpass) writes exactly what one process
writes: on every vector and sample image (clean, tampered, torn, wrapped, multi-key,
per-service and aggregated), in every line format, for every stream alone and all of them
merged, with and without a filter, with pieces of every size from 1 to 9 records (so runs
are cut at every frame). And the plan puts every frame in exactly one piece."""

from __future__ import annotations

import functools
import heapq
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import crypto, export, recordpass
from svsmlog.device import SECTOR, MemoryDevice
from svsmlog.ordering import Run
from svsmlog.records import Level, LocatedRecord
from svsmlog.vectors import KEY_SEEDS, vector_key
from svsmlog.verify import Keyring, Verifier

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((ROOT / "formats" / "vectors").glob("*.img")) + sorted((ROOT / "samples").glob("*.img"))
KEYS = [vector_key(n) for n in KEY_SEEDS] + [
    crypto.load_private_key(p.read_bytes()) for p in sorted((ROOT / "samples").glob("TEST-ONLY-*.key"))
]
FORMATS = {
    "jsonl": (export.jsonl_lines, export.write_jsonl),
    "syslog": (export.syslog_lines, export.write_syslog),
    "timesketch": (export.timesketch_lines, export.write_timesketch),
    # the plain text view with its boot separators (extract takes it this way where the
    # image has no gap markers to place)
    "text": (export.text_lines, functools.partial(export.write_text_plain, separators=True)),
}
BLOCK_FORMATS = {"jsonl": export.jsonl_block_lines, "text": export.text_block_lines,
                 "syslog": export.syslog_block_lines}


def verifier(image: bytes) -> Verifier:
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring(KEYS))
    v.run()
    return v


def sequential(v: Verifier, streams: list[int], fmt: str, keep: recordpass.RecordKeep) -> str:
    iters = [v.stream_records(s) for s in streams]
    merged = iters[0] if len(iters) == 1 else heapq.merge(*iters, key=lambda lr: (lr.boot, lr.record.t_ns))
    out = io.StringIO()
    FORMATS[fmt][1](filter(keep, merged) if keep else merged, out)
    return out.getvalue()


def in_workers(v: Verifier, streams: list[int], fmt: str, keep: recordpass.RecordKeep,
               seen: set[str] | None = None, jobs: int = 2,
               keep_services: frozenset[str] | None = None) -> str:
    """As extract runs it: jsonl, text and syslog made a frame at a time from the columns, text's
    boot separators put in by the merge."""
    heading = (lambda boot: export.BOOT_SEPARATOR.format(boot=boot).encode()) if fmt == "text" else None
    return b"".join(recordpass.lines(v, streams, FORMATS[fmt][0], keep, jobs, seen, BLOCK_FORMATS.get(fmt),
                                     heading, keep_services)).decode()


def _of_services(services: frozenset[str], lr: LocatedRecord) -> bool:
    return lr.record.service in services


def not_debug(lr: LocatedRecord) -> bool:
    return lr.record.level is not Level.DEBUG


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> int:
    size = getattr(request, "param", 3)
    monkeypatch.setattr(recordpass, "PIECE_RECORDS", size)
    return size


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_every_image_every_stream(path: Path, jobs: int) -> None:
    v = verifier(path.read_bytes())
    streams = [r.stream for r in v.volume.superblock.regions]
    for chosen in [streams, *([s] for s in streams), list(reversed(streams))]:
        seen: set[str] = set()
        assert in_workers(v, chosen, "jsonl", None, seen, jobs) == sequential(v, chosen, "jsonl", None)
        assert seen == {lr.record.service for s in chosen for lr in v.stream_records(s)}
        assert in_workers(v, chosen, "text", None, None, jobs) == sequential(v, chosen, "text", None)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
# basic-x25519 is aggregated: its frames name several services each
@pytest.mark.parametrize("name", ["multiboot-perservice", "wraparound", "tampered", "vtpm-panic",
                                  "basic-x25519"])
def test_every_format_and_a_filter(name: str, fmt: str) -> None:
    paths = [p for p in IMAGES if p.stem == name]
    assert paths, name
    v = verifier(paths[0].read_bytes())
    streams = [r.stream for r in v.volume.superblock.regions]
    for keep in (None, not_debug):
        assert in_workers(v, streams, fmt, keep) == sequential(v, streams, fmt, keep)
    # --service alone (keep_services): frames naming none of them passed over, frames naming
    # some of them and others (an aggregated stream's) taken record by record
    services = sorted({lr.record.service for s in streams for lr in v.stream_records(s)})
    for chosen in (services[:1], services[::2], ["no-such-service"]):
        wanted = frozenset(chosen)
        keep = functools.partial(_of_services, wanted)
        seen: set[str] = set()
        assert in_workers(v, streams, fmt, keep, seen, 2, wanted) == sequential(v, streams, fmt, keep)
        assert seen == set(services)


@pytest.mark.parametrize("small_pieces", range(1, 10), indirect=True)
@pytest.mark.parametrize("name", ["wraparound", "multiboot-perservice", "torn-tail"])
def test_every_piece_size(name: str, small_pieces: int) -> None:
    v = verifier((ROOT / "formats" / "vectors" / f"{name}.img").read_bytes())
    streams = [r.stream for r in v.volume.superblock.regions]
    assert in_workers(v, streams, "jsonl", None) == sequential(v, streams, "jsonl", None)


def test_records_of_a_violated_boot_stay_marked() -> None:
    v = verifier((ROOT / "samples" / "tampered.img").read_bytes())
    streams = [r.stream for r in v.volume.superblock.regions]
    lines = [json.loads(x) for x in in_workers(v, streams, "jsonl", None).splitlines()]
    assert any(x.get("verified") is False for x in lines)
    assert lines == [json.loads(x) for x in sequential(v, streams, "jsonl", None).splitlines()]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 200))
def test_the_plan_holds_every_frame_once(size: int) -> None:
    v = verifier((ROOT / "formats" / "vectors" / "wraparound.img").read_bytes())
    streams = [r.stream for r in v.volume.superblock.regions]
    items, pieces = recordpass.plan(v, streams, size)
    for k, stream_items in enumerate(items):
        covered = [(idx, f) for p in pieces if p.stream_index == k for idx, lo, hi in p.parts
                   for f in range(lo, hi)]
        every = [(idx, f) for idx, it in enumerate(stream_items)
                 for f in range(it.count if isinstance(it, Run) else 1)]
        assert covered == every  # each frame once, in log order


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_extract_jobs_2_writes_what_jobs_1_writes(tmp_path: Path, fmt: str) -> None:
    """The command itself, with the record pass's threshold lowered (a small sample): in
    forked workers with -j 2, in this process with -j 1 (text: piped, so the plain view)."""
    img, key = ROOT / "samples" / "clean-multiboot.img", ROOT / "samples" / "TEST-ONLY-owner.key"
    script = ("import sys; from svsmlog import recordpass; recordpass.MIN_RECORDS = 0; "
              "recordpass.PIECE_RECORDS = 5; real = recordpass.lines\n"
              "def lines(*a):\n    print('jobs', a[4], file=sys.stderr); return real(*a)\n"
              "recordpass.lines = lines; from svsmlog.cli import main; sys.exit(main())")
    outs = []
    for jobs in ("1", "2"):
        args = [sys.executable, "-c", script, "extract", str(img), "--key", str(key),
                "-f", fmt, "-j", jobs, "--level", "info"]
        run = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        assert run.returncode == 0, run.stderr
        outs.append(run.stdout)
        assert f"jobs {jobs}\n" in run.stderr
    assert outs[0] == outs[1] and outs[0].count("\n") > 10
    if fmt == "text":
        assert [line for line in outs[0].splitlines() if line.startswith("--")] == [
            "-- boot 1 --", "-- boot 2 --", "-- boot 3 --"]


def test_a_worker_killed_mid_extract_ends_it_in_one_line_not_a_hang() -> None:
    """A worker that dies (the out-of-memory killer, say) makes extract stop with one error
    line and exit status 2, where multiprocessing.Pool waited forever for its result."""
    img, key = ROOT / "samples" / "clean-multiboot.img", ROOT / "samples" / "TEST-ONLY-owner.key"
    script = ("import os, sys; from svsmlog import recordpass; recordpass.MIN_RECORDS = 0; "
              "recordpass.PIECE_RECORDS = 5; real = recordpass._piece_lines\n"
              "def piece(*a):\n    os._exit(9) if a[2].parts[0][1] > 0 else None; return real(*a)\n"
              "recordpass._piece_lines = piece; from svsmlog.cli import main; sys.exit(main())")
    args = [sys.executable, "-c", script, "extract", str(img), "--key", str(key), "-f", "jsonl", "-j", "2"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("svsmlog: error:")]
    assert len(errors) == 1 and "ended before handing back its work" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
