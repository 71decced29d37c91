"""The record pass in forked workers (``extract --jobs``): the same lines, in the same order.

After verification (``Verifier.run``), extract reads every verified frame again, decodes
its records and formats each as one line. Here that work is cut into pieces of about
``PIECE_RECORDS`` records (a stream's frames in log order, runs cut between frames), and
forked workers read, filter and format the pieces. This process only puts the lines back
in order: one stream's pieces in turn, several streams merged by ``heapq.merge`` on
(boot, time since boot, stream position), which is the order ``Verifier.records`` gives
(its merge breaks ties by the stream's position too), so the output is byte for byte the
sequential one (tests/test_recordpass.py).

Memory stays bounded: at most ``WINDOW_PER_JOB`` pieces per worker are handed out and not
yet written, whatever the image's size, plus those the merge is waiting on (one per stream).
Pieces are handed out in the order the merge is expected to need them (their first record's
time); where it needs another one first, that one is handed out at once.
"""

from __future__ import annotations

import gc
import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .ordering import Item, Run
from .parallel import one_malloc_arena

if TYPE_CHECKING:
    from multiprocessing.pool import AsyncResult, Pool

    from .records import LocatedRecord
    from .verify import Verifier

# Records a piece holds, about: a worker's unit of work. Merged streams take a quarter: the
# merge holds a piece of every stream at once besides the window. Peak RSS of extract -j2,
# per-service/default, 100k -> 1M records (and the 1M time): pieces of 8192 62 -> 82 MiB
# (1.32x, 4.92 s), 4096 51 -> 62 MiB (1.22x, 5.15 s), 2048 45 -> 53 MiB (1.18x, 4.99 s), 1024
# 42 -> 49 MiB (5.62 s). One stream keeps 8192: 10 % faster than 4096 at 1M, 1.07x in RSS (make bench).
PIECE_RECORDS = 8192
WINDOW_PER_JOB = 3  # pieces handed out per worker and not yet written
MIN_RECORDS = 20_000  # below this, forking workers costs more than it saves (benchmarks/README.md)

LineFormat = Callable[[Iterable["LocatedRecord"]], Iterator[str]]
RecordKeep = Callable[["LocatedRecord"], bool] | None


@dataclass(frozen=True)
class Piece:
    """Frames lo..hi-1 of each of some consecutive items of one stream."""

    stream_index: int  # position of the stream in the list asked for (the merge's tie-break)
    stream: int
    parts: tuple[tuple[int, int, int], ...]  # (item index, lo, hi)
    records: int
    start: tuple[int, float]  # (boot, time) of its first record, about: the order to hand it out


def _frames(item: Item) -> int:
    return item.count if isinstance(item, Run) else 1


def _records(item: Item) -> int:
    return item.head.records + item.records if isinstance(item, Run) else item.records


def _time_at(item: Item, i: int) -> float:
    """About when frame i of the item starts (a run keeps its times only as a span)."""
    if isinstance(item, Run):
        first = item.head.first_t if item.head.first_t is not None else item.first_t
        if first is None or item.last_t is None:
            return 0.0
        return first + (item.last_t - first) * i / item.count
    return float(item.first_t or 0)


def plan(verifier: Verifier, streams: list[int], piece_records: int = PIECE_RECORDS) -> tuple[
        list[list[Item]], list[Piece]]:
    """Each stream's items, and the pieces they are cut into (every frame in exactly one)."""
    all_items = [verifier.record_items(s) for s in streams]
    pieces: list[Piece] = []
    for k, (stream, items) in enumerate(zip(streams, all_items, strict=True)):
        parts: list[tuple[int, int, int]] = []
        count = 0
        start: tuple[int, float] | None = None
        for idx, item in enumerate(items):
            n = _frames(item)
            per_frame = max(1, _records(item) // n)
            lo = 0
            while lo < n:
                take = max(1, min(n - lo, -(-(piece_records - count) // per_frame)))
                if start is None:
                    start = (item.boot, _time_at(item, lo))
                parts.append((idx, lo, lo + take))
                count += take * per_frame
                lo += take
                if count >= piece_records:
                    pieces.append(Piece(k, stream, tuple(parts), count, start))
                    parts, count, start = [], 0, None
        if parts:
            assert start is not None
            pieces.append(Piece(k, stream, tuple(parts), count, start))
    return all_items, pieces


def total_records(verifier: Verifier, streams: list[int]) -> int:
    return sum(_records(item) for s in streams for item in verifier.record_items(s))


# Set in this process before the workers fork; they inherit it (as svsmlog.parallel does).
_work: Callable[[int], Any] | None = None


def _run(i: int) -> Any:
    assert _work is not None
    return _work(i)


def _piece_lines(verifier: Verifier, items: list[list[Item]], piece: Piece, fmt: LineFormat,
                 keep: RecordKeep, merged: bool) -> tuple[Any, ...]:
    """In a worker: the piece's kept records as lines, with their merge keys when merged,
    and the services seen (for extract's check of --service)."""
    stream_items = items[piece.stream_index]
    records: list[LocatedRecord] = []
    for idx, lo, hi in piece.parts:
        records.extend(verifier.item_records(piece.stream, stream_items[idx], lo, hi))
    services = {lr.record.service for lr in records}
    if keep is not None:
        records = [lr for lr in records if keep(lr)]
    lines = list(fmt(records))
    if len(lines) != len(records):
        raise AssertionError("a line format must give one line per record")
    if not merged:
        return "".join(lines), len(lines), services
    boots = array("Q", [lr.boot for lr in records])
    times = array("Q", [lr.record.t_ns for lr in records])
    return lines, boots, times, services


class _Window:
    """Pieces handed to the pool in their expected order, at most ``limit`` ahead."""

    def __init__(self, pool: Pool, count: int, order: list[int], limit: int) -> None:
        self.pool, self.order, self.limit = pool, order, limit
        self.pending: dict[int, AsyncResult[Any]] = {}
        self.done: set[int] = set()
        self.next = 0  # position in ``order`` of the next piece to hand out
        self.count = count

    def _submit(self, i: int) -> None:
        if i not in self.pending and i not in self.done:
            self.pending[i] = self.pool.apply_async(_run, (i,))

    def _top_up(self) -> None:
        while len(self.pending) < self.limit and self.next < len(self.order):
            self._submit(self.order[self.next])
            self.next += 1

    def take(self, i: int) -> Any:
        self._submit(i)
        self._top_up()
        result = self.pending.pop(i).get()
        self.done.add(i)
        self._top_up()
        return result


def lines(verifier: Verifier, streams: list[int], fmt: LineFormat, keep: RecordKeep, jobs: int,
          services_seen: set[str] | None = None) -> Iterator[str]:
    """The lines of ``fmt(records)``, ``records`` being the kept records of ``streams`` as
    extract reads them (one stream's in log order; several merged like Verifier.records),
    made by ``jobs`` forked workers. Yields batches of lines (strings of whole lines)."""
    global _work
    import multiprocessing

    merged = len(streams) > 1
    items, pieces = plan(verifier, streams, max(1, PIECE_RECORDS // 4) if merged else PIECE_RECORDS)
    _work = lambda i: _piece_lines(verifier, items, pieces[i], fmt, keep, merged)  # noqa: E731
    order = sorted(range(len(pieces)), key=lambda i: (pieces[i].start, pieces[i].stream_index, i))
    by_stream: list[list[int]] = [[] for _ in streams]
    for i, p in enumerate(pieces):
        by_stream[p.stream_index].append(i)
    one_malloc_arena()
    gc.freeze()  # the children's collector would otherwise touch (and copy) every inherited page
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            window = _Window(pool, len(pieces), order, WINDOW_PER_JOB * jobs)
            if not merged:
                for i in by_stream[0]:
                    text, _, services = window.take(i)
                    if services_seen is not None:
                        services_seen.update(services)
                    if text:
                        yield text
                return

            def stream_lines(k: int) -> Iterator[tuple[int, int, int, str]]:
                for i in by_stream[k]:
                    piece_lines, boots, times, services = window.take(i)
                    if services_seen is not None:
                        services_seen.update(services)
                    yield from zip(boots, times, repeat(k), piece_lines)

            batch: list[str] = []
            for entry in heapq.merge(*(stream_lines(k) for k in range(len(streams)))):
                batch.append(entry[3])
                if len(batch) >= 4096:
                    yield "".join(batch)
                    batch = []
            if batch:
                yield "".join(batch)
    finally:
        _work = None
        gc.unfreeze()
