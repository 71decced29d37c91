"""Verification pass 2 in parallel (``--jobs``): the same checks, the same report.

The regions are cut into chunks; a forked worker scans each chunk from its first sector
exactly as the sequential scan would, and records what every candidate did (its entry,
its findings, which frame counter it moved, what it cost the rejection budget). The
parent stitches each region's chunks back in order: a chunk is taken from the position
where the sequential scan reaches it (the end of the frame that crossed into it), which
the chunk's own scan must also have stood on, and from there on both scans see the same
sectors with the same keys. Whatever the pieces cannot show to be what one process would
have done — a scan that stood inside a frame at that position, a rejection budget or a
ratchet budget that the sequential pass would have run out of — makes the caller scan
sequentially instead, so ``--jobs`` never changes a result (tests/test_parallel.py).

Workers are forked: ``read`` must stay usable in a child (positional reads of a file,
as ``svsmlog.source`` does for raw and GPT images) and the parent must not run other
threads while forking. A progress display therefore never has a thread of its own: the
workers send it what they read (svsmlog.cli.common.ReadProgress), and the parent draws
it from ``on_wait``, called while it waits for the workers, after all of them were forked.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .codec import RegionEntry
from .device import SECTOR
from .ordering import Entry
from .report import Finding
from .scan import rejection_budget
from .volume import Volume

# Below this many bytes of regions, starting workers costs more than it saves (a 3.8 MB
# image: no gain; 18.6 MB: 0.39 -> 0.24 s). Frames of an honest log come back from the
# workers as runs (about 20 bytes a frame), so even a flush every few records pays (the
# model's default policy: 1.5 sectors a frame, 3.5 -> 2.3 s at 1M records); only regions
# where nearly every sector starts a header (a hostile image, each candidate handed back
# as an event of its own) stay in one process (benchmarks/README.md).
PARALLEL_MIN_BYTES = 8 * 1024 * 1024
PARALLEL_MIN_FRAME_SECTORS = 1.25
MIN_CHUNK_SECTORS = 8 * 1024  # 4 MiB: less is not worth a worker
MAX_PIECE_SECTORS: int | None = None  # cut pieces smaller still (the tests cut through frames)


class ScanEvent(NamedTuple):
    """What one candidate (or a malformed header) did to the verifier's state. A tuple, and
    the entry a tuple of its fields: pickling dataclasses back from the workers cost more
    than a tenth of a parallel pass."""

    lba: int
    sectors: int  # the candidate's length; 0 for a malformed header
    accepted: bool
    entry: tuple[Any, ...] | None  # Entry's fields (ENTRY_FIELDS), its chain left out
    chain_index: int  # the entry's chain among its (boot, stream) chains; -1 for none
    findings: list[Finding] | None
    counted: bytes | None  # b"" for a frame of ours, a volume id for a foreign one, else None
    superblock_at: int | None  # index in findings of a superblock finding this candidate raised
    # Frames of an honest log, back to back, that did nothing else than extend a run of the
    # index (ordering.Run.pack; lba and sectors then span them all, entry is None): handed
    # back in ~20 bytes a frame, not an event each.
    run: tuple[Any, ...] | None = None
    largest: int = 0  # with run: the most sectors one of its frames takes


ENTRY_FIELDS = Entry.__slots__


def entry_fields(e: Entry) -> tuple[Any, ...]:
    return tuple(None if f == "chain" else getattr(e, f) for f in ENTRY_FIELDS)


@dataclass
class ChunkScan:
    """A worker's scan of the candidates starting in [lo, hi) of one region."""

    lo: int
    hi: int
    events: list[ScanEvent] = field(default_factory=list)
    end: int = 0  # where the scan stood when it left the chunk
    stopped: bool = False  # the chunk's rejection budget ran out
    steps: int = 0  # ratchet steps spent
    exhausted: bool = False  # the ratchet budget ran out
    # The chain keys the worker's chains kept ((boot, chain index) -> seq -> key): the
    # parent's copies never stepped, and the record pass starts its pieces near them.
    checkpoints: dict[tuple[int, int], dict[int, bytes]] = field(default_factory=dict)


def may_run_in_parallel(volume: Volume, jobs: int) -> bool:
    """Whether ``Verifier.run(jobs=jobs)`` may fork workers for this volume (it decides once
    the key harvest has counted the frames: ``frames_large_enough``)."""
    return jobs > 1 and sum(r.sectors for r in volume.superblock.regions) * SECTOR >= PARALLEL_MIN_BYTES


def frames_large_enough(volume: Volume, frame_sectors: list[int]) -> bool:
    """Frames (sectors starting with the magic, per region) are large enough on average."""
    regions = volume.superblock.regions
    if len(frame_sectors) != len(regions):
        return False  # the harvest stopped early (an envelope flood): no figure, no workers
    return sum(r.sectors for r in regions) >= PARALLEL_MIN_FRAME_SECTORS * max(1, sum(frame_sectors))


# What a sector with no frame costs a worker, against a frame: the scan finds the next magic
# with one C search a window, so an empty stretch is nearly free.
EMPTY_SECTOR_COST = 1 / 64


def plan_chunks(regions: tuple[RegionEntry, ...], jobs: int,
                frames: list[int] | None = None) -> list[list[tuple[int, int, int]]]:
    """One list of (region index, lo, hi) pieces per worker, in disk order, so that a
    worker's chains step forward from piece to piece. The shares are about equal in frames
    where ``frames`` gives each region's count (the key harvest's: a region's frames taken
    as spread evenly over it), since a frame's checks, not its sectors, are the work;
    otherwise in sectors. A share that starts inside a region also steps its chains past
    the frames before it, left out here: one HMAC block each (keyschedule.next_chain_key),
    2.4 against about 16 us to check one. How many workers follows from the sectors: at
    least MIN_CHUNK_SECTORS each."""
    total = sum(r.sectors for r in regions)
    count = min(jobs, -(-total // max(MIN_CHUNK_SECTORS, -(-total // jobs)))) if total else 1
    if frames is None or len(frames) != len(regions):
        cost = [1.0] * len(regions)
    else:  # per sector
        cost = [f / max(1, r.sectors) + EMPTY_SECTOR_COST for f, r in zip(frames, regions, strict=True)]
    share = sum(c * r.sectors for c, r in zip(cost, regions, strict=True)) / count
    groups: list[list[tuple[int, int, int]]] = [[]]
    room = share
    for i, r in enumerate(regions):
        lo, end = r.start, r.start + r.sectors
        while lo < end:
            last = len(groups) == count  # the last worker takes what is left
            take = end - lo if last else max(1, min(end - lo, round(room / cost[i])))
            hi = min(lo + take, lo + (MAX_PIECE_SECTORS or take))
            groups[-1].append((i, lo, hi))
            room -= (hi - lo) * cost[i]
            lo = hi
            if not last and room < cost[i] / 2:  # less than half a sector's work left
                groups.append([])
                room += share
    return [g for g in groups if g]


def stitch(region: RegionEntry, chunks: list[ChunkScan]) -> list[ScanEvent] | None:
    """The events of the sequential scan of ``region``, from its chunks in order; None
    where the chunks cannot show them (the caller then scans sequentially)."""
    pos, budget, out = region.start, rejection_budget(region), []
    for ch in chunks:
        if pos >= ch.hi:
            continue  # a frame that began in an earlier chunk covers this one
        if ch.stopped or ch.lo > pos:
            return None
        if any(ev.accepted and ev.lba < pos < ev.lba + ev.sectors for ev in ch.events):
            return None  # this chunk's scan jumped over the position the sequential scan stands on
        for ev in ch.events:
            if ev.lba < pos:
                continue  # (a run that crosses pos was refused above)
            if ev.sectors:
                if budget < (ev.largest or ev.sectors) * SECTOR:  # a run: as each of its frames
                    return None  # the sequential scan stops here (spec §8.1)
                if not ev.accepted:
                    budget -= ev.sectors * SECTOR
            out.append(ev)
        pos = ch.end
    return out


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_task: Callable[[int], Any] | None = None  # set in the parent before forking; workers inherit it


def _run(i: int) -> Any:
    assert _task is not None
    return _task(i)


WAIT_SECONDS = 0.1  # how often ``map_forked`` calls ``on_wait`` while the workers run


def map_forked(
    task: Callable[[int], Any], n: int, jobs: int, on_wait: Callable[[], None] | None = None
) -> list[Any]:
    """``[task(i) for i in range(n)]`` in up to ``jobs`` forked workers, in order
    (svsmlog.forked: no thread in this process). ``on_wait`` is called in this process every
    ``WAIT_SECONDS`` while it waits for the workers, and once when all are done; never before
    every worker was forked (they are all forked first, and never again). Whatever it
    raises ends the workers, as an interrupt does."""
    global _task
    from .forked import map_ordered

    _task = task
    gc.freeze()  # the children's collector would otherwise touch (and copy) every inherited page
    try:
        out = map_ordered(_run, n, jobs, on_wait, WAIT_SECONDS)
        if on_wait is not None:
            on_wait()
        return out
    finally:
        _task = None
        gc.unfreeze()
