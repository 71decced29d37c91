"""``jobs`` > 1 gives the same report and records as one process, on every vector and
sample image (clean, tampered, torn, wrapped, multi-key) cut into chunks of every size
from 1 to 17 sectors (so chunk boundaries fall inside frames, on them and between them),
and on images whose budgets run out (where the parallel result must be redone)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

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
