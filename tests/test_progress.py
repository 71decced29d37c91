"""The progress bars of ``verify`` and ``extract`` (svsmlog.cli.common.ReadProgress): one per
pass over the regions, ending at exactly what the pass read; with forked workers too, drawn
by the parent only, from what the workers send it, and only once every worker was forked.

Uses the session images of tests/test_cli.py for the runs on a pseudo-terminal."""

# The session images of tests/test_cli.py are imported as a fixture: parameters of that
# name are what pytest injects, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import os
import random
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from svsmlog import crypto, parallel
from svsmlog.cli.common import Coverage, ReadProgress, region_extents
from svsmlog.device import SECTOR, MemoryDevice
from svsmlog.verify import Keyring, Verifier
from svsmlog.volume import Volume, read_volume
from tests.helpers import child_pids
from tests.test_cli import Images, images, run  # noqa: F401 - images is a fixture

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.img"))
KEYS = [crypto.load_private_key(p.read_bytes()) for p in sorted((ROOT / "samples").glob("TEST-ONLY-*.key"))]


def test_coverage_counts_each_sector_of_the_extents_once() -> None:
    c = Coverage([(10, 10), (30, 5)])
    assert (c.total, c.sectors) == (15, 0)
    c.add(0, 12)  # before the first extent: only 10, 11 count
    assert c.sectors == 2
    c.add(11, 3)  # read again in part
    assert c.sectors == 4
    c.add(18, 20)  # the end of one extent, the gap, all of the next
    assert c.sectors == 11
    c.add(14, 4)  # the hole between two runs: they merge
    assert c.sectors == c.total == 15
    rng = random.Random(14)
    for _ in range(50):  # against a set of sectors
        drawn = [(rng.randrange(0, 400), rng.randrange(0, 30)) for _ in range(3)]
        extents = [(s, n) for k, (s, n) in enumerate(drawn)  # disjoint, as regions are
                   if not any(s < s2 + n2 and s2 < s + n for s2, n2 in drawn[:k])]
        inside = {lba for s, n in extents for lba in range(s, s + n)}
        c, seen = Coverage(extents), set()
        for _ in range(40):
            lba, n = rng.randrange(0, 450), rng.randrange(0, 40)
            c.add(lba, n)
            seen |= inside & set(range(lba, lba + n))
            assert c.sectors == len(seen)


class Recorder:
    """A progress display on a terminal that is a string, and every read it was asked for."""

    def __init__(self, dev: MemoryDevice, volume: Volume) -> None:
        self.sink = io.StringIO()
        self.reads: list[tuple[str, int, int]] = []  # (pass, lba, sectors)
        self.passes = ["-"]
        console = Console(file=self.sink, force_terminal=True, width=100)
        self.progress = ReadProgress(self._read, region_extents(volume), console=console)
        self._dev = dev

    def _read(self, lba: int, count: int) -> bytes:
        self.reads.append((self.passes[-1], lba, count))
        return self._dev.read(lba, count)

    def begin(self, label: str) -> None:
        self.passes.append(label)
        self.progress.begin(label)


@pytest.mark.parametrize("image", SAMPLES, ids=lambda p: p.name)
def test_each_pass_has_a_bar_that_ends_at_exactly_what_it_read(image: Path) -> None:
    """-j 1: the key harvest, then the frame checks, each reading every region sector (the
    bar used to be one, of twice the regions' size). A bar counts each region sector once,
    however often it is read (a frame crossing the scan's 1 MiB window is read again)."""
    data = image.read_bytes()
    dev = MemoryDevice(len(data) // SECTOR, data)
    volume = read_volume(dev.read(0, 1), dev.sector_count)
    rec = Recorder(dev, volume)
    with rec.progress as p:
        Verifier(p.read, dev.sector_count, Keyring(KEYS), on_pass=rec.begin, on_wait=p.tick).run(jobs=1)
        bars = p.bars
    regions = {lba for start, n in region_extents(volume) for lba in range(start, start + n)}
    total = len(regions) * SECTOR
    read: dict[str, set[int]] = {"keys": set(), "verifying": set()}
    for name, lba, count in rec.reads:
        if name in read:
            read[name] |= regions & set(range(lba, lba + count))
    assert bars == [("keys", len(read["keys"]) * SECTOR, total),
                    ("verifying", len(read["verifying"]) * SECTOR, total)]
    assert len(read["keys"]) * SECTOR == len(read["verifying"]) * SECTOR == total  # 100 %, not 50 %
    # the superblock and the key directory are read too, but are not what the bars count
    assert sum(n for _, _, n in rec.reads) * SECTOR > 2 * total
    assert "keys" in rec.sink.getvalue() and "verifying" in rec.sink.getvalue()


@pytest.fixture
def parallel_even_when_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FRAME_SECTORS", 0)
    monkeypatch.setattr(parallel, "MIN_CHUNK_SECTORS", 1)
    monkeypatch.setattr(parallel, "MAX_PIECE_SECTORS", 64)


def test_forked_workers_send_what_they_read_and_only_the_parent_draws(
    parallel_even_when_small: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events: list[str] = []
    real_fork = os.fork

    def fork() -> int:
        # no thread of rich's (or of the display's) is running when a worker is forked
        assert not [t for t in threading.enumerate() if "Refresh" in type(t).__name__]
        events.append("fork")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    writers = tmp_path / "writers"
    fd = os.open(writers, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    class Terminal(io.StringIO):
        def write(self, s: str) -> int:
            os.write(fd, f"{os.getpid()}\n".encode())  # who draws, in a file every process shares
            return super().write(s)

    image = ROOT / "samples" / "clean-multiboot.img"
    parent = os.getpid()
    progress: list[ReadProgress] = []

    def tick() -> None:
        events.append("tick")
        progress[0].tick()

    data = image.read_bytes()
    dev = MemoryDevice(len(data) // SECTOR, data)
    volume = read_volume(dev.read(0, 1), dev.sector_count)
    console = Console(file=Terminal(), force_terminal=True, width=100)
    try:
        with ReadProgress(dev.read, region_extents(volume), console=console) as p:
            progress.append(p)
            v = Verifier(p.read, dev.sector_count, Keyring(KEYS), on_pass=p.begin, on_wait=tick)
            v.run(jobs=3)
            bars = p.bars
    finally:
        os.close(fd)
    assert v.scanned_in_parallel
    total = sum(n for _, n in region_extents(volume)) * SECTOR
    assert bars == [("keys", total, total), ("verifying", total, total)]  # the workers' reads, all of them
    assert events.count("fork") == 3  # then the display, not before
    assert events.index("tick") > max(i for i, e in enumerate(events) if e == "fork")
    assert {int(pid) for pid in writers.read_text().split()} == {parent}
    assert child_pids() == set()


def test_a_failing_display_ends_the_workers(parallel_even_when_small: None) -> None:
    def on_wait() -> None:
        raise OSError("the terminal went away")

    start = time.monotonic()
    with pytest.raises(OSError, match="terminal went away"):
        parallel.map_forked(lambda i: time.sleep(30), 2, 2, on_wait)
    assert time.monotonic() - start < 5
    assert child_pids() == set()


def _on_a_terminal(argv: list[str], timeout: float = 30) -> tuple[bytes, bytes, int]:
    """Run argv with stderr on a pseudo-terminal and stdout on a pipe; read both to their
    end, which comes only when no process holds them any more (a leaked worker would: the
    test then fails instead of waiting)."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    assert p.stdout is not None
    got: dict[int, list[bytes]] = {master: [], p.stdout.fileno(): []}
    open_fds, deadline = set(got), time.monotonic() + timeout
    try:
        while open_fds:
            left = deadline - time.monotonic()
            assert left > 0, "the terminal or stdout is still open: a process was left behind"
            for fd in select.select(list(open_fds), [], [], left)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every holder of the terminal's other side has closed it
                    chunk = b""
                if chunk:
                    got[fd].append(chunk)
                else:
                    open_fds.discard(fd)
        return b"".join(got[master]), b"".join(got[p.stdout.fileno()]), p.wait(timeout=timeout)
    finally:
        os.close(master)
        p.stdout.close()
        if p.poll() is None:
            p.kill()
            p.wait()


# The program as installed, with the thresholds for workers lowered so that a small image
# is verified by forked workers; says on stdout's last line how many times it forked them.
PARALLEL_PROGRAM = """
import sys
from svsmlog import parallel, verify
from svsmlog.cli import main
parallel.PARALLEL_MIN_BYTES = parallel.PARALLEL_MIN_FRAME_SECTORS = 0
parallel.MIN_CHUNK_SECTORS = 1
real, calls = verify.map_forked, []
def counting(*args):
    calls.append(args[1])
    return real(*args)
verify.map_forked = counting
code = main(sys.argv[1:])
print(f"forked {calls}")
sys.exit(code)
"""


def test_bars_on_a_terminal_with_workers(images: Images) -> None:
    args = ["verify", str(images.raw), "--key", str(images.owner_key), "--json", "-j", "2"]
    terminal, out, code = _on_a_terminal([sys.executable, "-c", PARALLEL_PROGRAM, *args])
    assert code == 0, terminal
    report, forked = out.decode().rsplit("\n", 2)[:2]
    assert forked.startswith("forked [") and forked != "forked []"
    assert json.loads(report)["verdict"] == "intact"  # stdout stays clean JSON
    assert b"keys" in terminal and b"verifying" in terminal
    assert b"Traceback" not in terminal


def test_no_bar_off_a_terminal_with_workers(images: Images) -> None:
    args = ["verify", str(images.raw), "--key", str(images.owner_key), "-j", "2"]
    p = subprocess.run([sys.executable, "-c", PARALLEL_PROGRAM, *args], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.splitlines()[-1].startswith("forked [") and "forked []" not in p.stdout
    # only the one-line notes (the origin of unattested boots), no bar
    notes = run("extract", images.raw, "--key", images.owner_key, "-f", "jsonl").stderr.splitlines()
    assert all(line.startswith("svsmlog: note: ") for line in notes)
