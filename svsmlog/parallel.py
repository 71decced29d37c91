"""Regions verified in parallel (``--jobs``): the same checks, the same report.

Regions are independent in verification pass 2 (spec §8.3 judges each on its own; every
(boot, stream) chain belongs to one region), so each can be scanned in a forked worker
from the state the harvest left. What crosses regions is merged back in region order
(findings, counters, the once-only superblock finding), and the ratchet budget, which
the sequential pass shares across regions, is checked afterwards: if the workers spent
more than it allows, or any worker ran out, the caller scans sequentially instead, so
``--jobs`` never changes a result.

Workers are forked: ``read`` must stay usable in a child (positional reads of a file,
as ``svsmlog.source`` does for raw and GPT images) and the parent must not run other
threads while forking.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .device import SECTOR
from .ordering import Entry
from .report import Finding
from .volume import Volume

# Below this many bytes of regions, starting workers costs more than it saves.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class RegionScan:
    """What scanning one region did, as a worker hands it back."""

    entries: list[Entry]
    chain_index: list[int]  # per entry: its chain's index among the (boot, stream) chains, -1 for none
    findings: list[Finding]
    ours: int
    foreign: dict[bytes, int] = field(default_factory=dict)
    superblock_at: int | None = None  # the index in findings of a superblock finding this scan raised
    steps: int = 0  # ratchet steps spent
    exhausted: bool = False  # the ratchet budget ran out in this worker


def runs_in_parallel(volume: Volume, jobs: int) -> bool:
    """Whether ``Verifier.run(jobs=jobs)`` forks workers for this volume."""
    regions = volume.superblock.regions
    return jobs > 1 and len(regions) > 1 and sum(r.sectors for r in regions) * SECTOR >= PARALLEL_MIN_BYTES


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_task: Callable[[int], Any] | None = None  # set in the parent before forking; workers inherit it


def _run(i: int) -> Any:
    assert _task is not None
    return _task(i)


def map_forked(task: Callable[[int], Any], n: int, jobs: int) -> list[Any]:
    """``[task(i) for i in range(n)]`` in up to ``jobs`` forked workers, in order."""
    global _task
    _task = task
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(jobs, n)) as pool:
            return pool.map(_run, range(n), chunksize=1)
    finally:
        _task = None
