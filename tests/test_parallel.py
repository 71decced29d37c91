"""``jobs`` > 1 gives the same report and records as one process, on every vector and
sample image (clean, tampered, torn, wrapped, multi-key) cut into chunks of every size
from 1 to 17 sectors (so chunk boundaries fall inside frames, on them and between them),
and on images whose budgets run out (where the parallel result must be redone)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import crypto, parallel, verify
from svsmlog.device import SECTOR, MemoryDevice
from svsmlog.frames import commit_digest
from svsmlog.vectors import KEY_SEEDS, vector_key
from svsmlog.verify import Keyring, Verifier

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((ROOT / "formats" / "vectors").glob("*.img")) + sorted((ROOT / "samples").glob("*.img"))
KEYS = [vector_key(n) for n in KEY_SEEDS] + [
    crypto.load_private_key(p.read_bytes()) for p in sorted((ROOT / "samples").glob("TEST-ONLY-*.key"))
]


PARALLEL_USED: list[bool] = []


def outcome(image: bytes, jobs: int) -> tuple[object, list[object]]:
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring(KEYS))
    report = v.run(jobs=jobs)
    PARALLEL_USED.append(v.scanned_in_parallel)
    return report.as_json(), [repr(r) for r in v.records()]


@pytest.fixture(autouse=True)
def parallel_even_when_small(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> list[int]:
    calls: list[int] = []
    real = parallel.map_forked

    def counting(task, n, jobs, on_wait=None):  # type: ignore[no-untyped-def]
        calls.append(n)
        return real(task, n, jobs, on_wait)

    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FRAME_SECTORS", 0)
    monkeypatch.setattr(parallel, "MIN_CHUNK_SECTORS", 1)
    monkeypatch.setattr(parallel, "MAX_PIECE_SECTORS", getattr(request, "param", 7))
    monkeypatch.setattr(verify, "map_forked", counting)
    return calls


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_same_report_and_records(path: Path, parallel_even_when_small: list[int]) -> None:
    image = path.read_bytes()
    parallel_result = outcome(image, 2)
    assert PARALLEL_USED[-1]  # the workers' scans stitched: not redone in one process
    assert parallel_result == outcome(image, 1)


@pytest.mark.parametrize("parallel_even_when_small", range(1, 18), indirect=True)
@pytest.mark.parametrize("name", ["wraparound", "multiboot-perservice", "torn-tail", "moved-frame"])
def test_every_chunk_size(name: str, parallel_even_when_small: list[int]) -> None:
    image = (ROOT / "formats" / "vectors" / f"{name}.img").read_bytes()
    parallel_result = outcome(image, 2)
    assert PARALLEL_USED[-1]
    assert parallel_result == outcome(image, 1)


def test_an_exhausted_ratchet_budget_falls_back_to_one_process(parallel_even_when_small: list[int]) -> None:
    """A frame claiming a seq past the budget (digest recomputed, so it is a complete frame)."""
    image = bytearray((ROOT / "formats" / "vectors" / "multiboot-perservice.img").read_bytes())
    at = 64 * SECTOR  # the first region's first frame
    assert image[at : at + 4] == b"SVLF"
    struct.pack_into("<Q", image, at + 12, 2**40)
    clear_len, ct_len = struct.unpack_from("<II", image, at + 60)
    body = bytes(image[at + 84 : at + 84 + clear_len + ct_len])
    image[at + 68 : at + 84] = commit_digest(bytes(image[at : at + 68]), body[:clear_len], body[clear_len:])
    single = outcome(bytes(image), 1)
    assert any("ratchet budget" in f["detail"] for f in single[0]["findings"])  # type: ignore[index]
    assert outcome(bytes(image), 2) == single
    assert not PARALLEL_USED[-1]


def test_a_foreign_frame_among_ours(parallel_even_when_small: list[int]) -> None:
    """Counters cross regions: one frame of another volume in a volume of ours."""
    vectors = ROOT / "formats" / "vectors"
    image = bytearray((vectors / "multiboot-perservice.img").read_bytes())
    other = (vectors / "basic-x25519.img").read_bytes()
    at = 64 * SECTOR
    image[at : at + 2 * SECTOR] = other[at : at + 2 * SECTOR]
    single = outcome(bytes(image), 1)
    kinds = {f["kind"] for f in single[0]["findings"]}  # type: ignore[index]
    assert "frame_foreign" in kinds and "superblock_mismatch" not in kinds
    assert outcome(bytes(image), 2) == single


def test_a_superblock_with_another_volume_id(parallel_even_when_small: list[int]) -> None:
    """Every frame is foreign; the finding counts them across regions (spec §8.6)."""
    image = bytearray((ROOT / "formats" / "vectors" / "multiboot-perservice.img").read_bytes())
    image[16] ^= 0xFF  # volume_id
    single = outcome(bytes(image), 1)
    assert any(f["kind"] == "superblock_mismatch" for f in single[0]["findings"])  # type: ignore[index]
    assert outcome(bytes(image), 2) == single


def test_small_frames_are_not_worth_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions with fewer sectors per frame than the threshold stay in one process."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FRAME_SECTORS", 10**9)
    image = (ROOT / "formats" / "vectors" / "multiboot-perservice.img").read_bytes()
    outcome(image, 2)
    assert not PARALLEL_USED[-1]
    monkeypatch.setattr(parallel, "PARALLEL_MIN_FRAME_SECTORS", 0)
    outcome(image, 2)
    assert PARALLEL_USED[-1]


def test_the_frame_size_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    from svsmlog.volume import read_volume

    monkeypatch.setattr(parallel, "PARALLEL_MIN_FRAME_SECTORS", 8)
    image = (ROOT / "formats" / "vectors" / "multiboot-perservice.img").read_bytes()
    vol = read_volume(image[:SECTOR], len(image) // SECTOR)
    sectors = sum(r.sectors for r in vol.superblock.regions)
    n = len(vol.superblock.regions)
    assert parallel.frames_large_enough(vol, [sectors // 8 // n] * n)
    assert not parallel.frames_large_enough(vol, [sectors // n] * n)  # one frame a sector
    assert not parallel.frames_large_enough(vol, [])  # the harvest stopped early


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 200_000), st.integers(0, 150_000)), min_size=1, max_size=9),
       st.integers(1, 4), st.booleans())
def test_the_plan_shares_the_frames(regions: list[tuple[int, int]], jobs: int, counted: bool) -> None:
    """Every sector of every region in exactly one piece, in disk order, at most ``jobs``
    shares of at least MIN_CHUNK_SECTORS; with the harvest's frame counts, the shares'
    frames (each region's spread evenly over it) differ by at most a sector's worth or two."""
    from svsmlog.codec import RegionEntry

    with pytest.MonkeyPatch.context() as m:
        m.setattr(parallel, "MAX_PIECE_SECTORS", None)
        m.setattr(parallel, "MIN_CHUNK_SECTORS", 8 * 1024)
        entries, start = [], 64
        for i, (sectors, _) in enumerate(regions):
            entries.append(RegionEntry(i + 1, f"r{i}", start, sectors))
            start += sectors
        frames = [min(f, s) for s, f in regions]
        plan = parallel.plan_chunks(tuple(entries), jobs, frames if counted else None)
    pieces = [p for g in plan for p in g]
    assert all(g for g in plan) and 1 <= len(plan) <= jobs
    expected = [(i, r.start, r.start + r.sectors) for i, r in enumerate(entries)]
    merged: list[tuple[int, int, int]] = []
    for i, lo, hi in pieces:  # contiguous, in order, nothing twice, nothing left out
        assert lo < hi
        if merged and merged[-1][0] == i:
            assert merged[-1][2] == lo
            merged[-1] = (i, merged[-1][1], hi)
        else:
            merged.append((i, lo, hi))
    assert merged == expected
    total = sum(r.sectors for r in entries)
    if len(plan) > 1:
        assert total // len(plan) >= 8 * 1024 // 2
    if counted and len(plan) > 1:
        cost = [f / r.sectors + parallel.EMPTY_SECTOR_COST for f, r in zip(frames, entries, strict=True)]
        shares = [sum((hi - lo) * cost[i] for i, lo, hi in g) for g in plan]
        assert max(shares) - min(shares) <= 2 * max(cost) + 1e-6, shares
