"""The record pass in pieces (``extract``'s line formats): the same lines, in the same order.

After verification (``Verifier.run``), extract reads every verified frame again, decodes
its records and formats each as one line. Here that work is cut into pieces of about
``PIECE_RECORDS`` records (a stream's frames in log order, runs cut between frames), and
forked workers (``--jobs``; with one job, this process) read, filter and format the
pieces. This process only puts the lines back in order: one stream's pieces in turn,
several streams merged by svsmlog.linemerge into the order ``heapq.merge`` gives on
(boot, time since boot), ties to the earlier stream, which is the order
``Verifier.records`` gives, so the output is byte for byte the record-by-record one
(tests/test_recordpass.py). Where every record is kept, a line format may make a frame's
lines straight from its columns (``BlockFormat``: jsonl does).

Memory stays bounded: at most ``WINDOW_PER_JOB`` pieces per worker are handed out and not
yet written, whatever the image's size, plus those the merge is waiting on (one per stream).
Pieces are handed out in the order the merge is expected to need them (their first record's
time); where it needs another one first, that one is handed out at once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .linemerge import LinePiece, merge_lines
from .ordering import Item, Run

if TYPE_CHECKING:
    from .codec import RecordColumns
    from .forked import Workers
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
# A frame's lines from its columns: (columns, boot, stream name, seq, verified) -> lines.
BlockFormat = Callable[["RecordColumns", int, str, int, bool], list[str]]


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
                 keep: RecordKeep, merged: bool, block_fmt: BlockFormat | None,
                 want_services: bool, keep_services: frozenset[str] | None) -> tuple[Any, ...]:
    """In a worker: the piece's kept records as lines, with their merge keys when merged,
    and, with ``want_services``, the services seen (for extract's check of --service)."""
    stream_items = items[piece.stream_index]
    if block_fmt is not None and (keep is None or keep_services is not None):
        return _piece_block_lines(verifier, stream_items, piece, fmt, block_fmt, merged, want_services,
                                  keep_services)
    records: list[LocatedRecord] = []
    for idx, lo, hi in piece.parts:
        records.extend(verifier.item_records(piece.stream, stream_items[idx], lo, hi))
    services = {lr.record.service for lr in records} if want_services else set()
    if keep is not None:
        records = [lr for lr in records if keep(lr)]
    lines = list(fmt(records))
    if len(lines) != len(records):
        raise AssertionError("a line format must give one line per record")
    keys = [merge_key(lr.boot, lr.record.t_ns) for lr in records] if merged else None
    return _result(lines, keys, services)


def _piece_block_lines(verifier: Verifier, stream_items: list[Item], piece: Piece, fmt: LineFormat,
                       block_fmt: BlockFormat, merged: bool, want_services: bool,
                       keep_services: frozenset[str] | None) -> tuple[Any, ...]:
    """``_piece_lines`` a frame at a time, from each frame's columns: every record kept, or
    (``keep_services``) those of these services. A frame that names none of them is passed
    over; one that names some of them and others (an aggregated stream's) takes ``fmt``
    on its kept records."""
    from .codec import records_of
    from .records import LocatedRecord

    name = verifier.volume.region(piece.stream).name
    lines: list[str] = []
    keys: list[int] = []
    services: set[str] = set()
    for idx, lo, hi in piece.parts:
        item = stream_items[idx]
        verified = verifier.is_verified(item.boot, name)
        boot_key = merge_key(item.boot, 0)
        for seq, off, block in verifier.item_columns(item, lo, hi):
            if want_services or keep_services is not None:
                named = {block.names[i][0] for i in set(block.ids)}
                if want_services:
                    services |= named
                if keep_services is not None and not named <= keep_services:
                    if named & keep_services:  # some of its records: those, one by one
                        kept = [LocatedRecord(item.boot, name, seq, off, r, verified)
                                for r in records_of(block) if r.service in keep_services]
                        _add(lines, list(fmt(kept)), len(kept))
                        if merged:
                            keys += (boot_key + lr.record.t_ns for lr in kept)
                    continue
            _add(lines, block_fmt(block, item.boot, name, seq, verified), len(block.times))
            if merged:
                keys += map(boot_key.__add__, block.times)
    return _result(lines, keys if merged else None, services)


def _add(lines: list[str], more: list[str], records: int) -> None:
    if len(more) != records:
        raise AssertionError("a line format must give one line per record")
    lines += more


def _result(lines: list[str], keys: list[int] | None, services: set[str]) -> tuple[Any, ...]:
    """What a worker hands back: the lines as UTF-8 bytes, with where each ends and its
    merge key when merged (svsmlog.linemerge)."""
    from .export import utf8_lines

    blob, ends = utf8_lines(lines, with_ends=keys is not None)
    return blob, ends, keys, services


def merge_key(boot: int, t_ns: int) -> int:
    """(boot, time since boot) as one integer: the order Verifier.records merges streams in."""
    return boot << 64 | t_ns


class _Window:
    """Pieces handed to the workers in their expected order, at most ``limit`` ahead."""

    def __init__(self, workers: Workers, order: list[int], limit: int) -> None:
        self.workers, self.order, self.limit = workers, order, limit
        self.pending: set[int] = set()
        self.done: set[int] = set()
        self.next = 0  # position in ``order`` of the next piece to hand out

    def _submit(self, i: int) -> None:
        if i not in self.pending and i not in self.done:
            self.workers.submit(i)
            self.pending.add(i)

    def _top_up(self) -> None:
        while len(self.pending) < self.limit and self.next < len(self.order):
            self._submit(self.order[self.next])
            self.next += 1

    def take(self, i: int) -> Any:
        self._submit(i)
        self._top_up()
        result = self.workers.result(i)
        self.pending.discard(i)
        self.done.add(i)
        self._top_up()
        return result


class _InProcess:
    """The pieces made here, one by one as the merge asks for them (``jobs`` of 1)."""

    def take(self, i: int) -> Any:
        return _run(i)


def lines(verifier: Verifier, streams: list[int], fmt: LineFormat, keep: RecordKeep, jobs: int,
          services_seen: set[str] | None = None, block_fmt: BlockFormat | None = None,
          heading: Callable[[int], bytes] | None = None,
          keep_services: frozenset[str] | None = None) -> Iterator[bytes]:
    """The lines of ``fmt(records)``, ``records`` being the kept records of ``streams`` as
    extract reads them (one stream's in log order; several merged like Verifier.records),
    made by ``jobs`` forked workers (in this process for 1). ``block_fmt``, where given,
    makes the same lines from a frame's columns; it is used when every record is kept.
    ``services_seen``, where given, gets the service of every record read (the workers
    collect them only then). ``heading(boot)``, where given, goes before the first line
    of each boot (the text view's ``-- boot N --``). ``keep_services``, where given, says
    that ``keep`` keeps exactly the records of these services: ``block_fmt`` then still
    serves, and a frame that names none of them is not formatted at all. Yields batches
    of lines (UTF-8 bytes of whole lines)."""
    global _work
    from .forked import Workers

    # Lines carry merge keys where streams are merged, or where a boot's first line must
    # be found (one stream's lines merged alone keep their order).
    merged = len(streams) > 1 or heading is not None
    items, pieces = plan(verifier, streams, max(1, PIECE_RECORDS // 4) if len(streams) > 1 else PIECE_RECORDS)
    want_services = services_seen is not None
    _work = lambda i: _piece_lines(verifier, items, pieces[i], fmt, keep, merged, block_fmt,  # noqa: E731
                                   want_services, keep_services)
    order = sorted(range(len(pieces)), key=lambda i: (pieces[i].start, pieces[i].stream_index, i))
    by_stream: list[list[int]] = [[] for _ in streams]
    for i, p in enumerate(pieces):
        by_stream[p.stream_index].append(i)
    jobs = max(1, min(jobs, len(pieces)))  # no worker without a piece to make
    if jobs > 1:
        gc.freeze()  # the children's collector would otherwise touch (and copy) every inherited page
    try:
        with Workers(_run, jobs) if jobs > 1 else nullcontext() as workers:
            window = _Window(workers, order, WINDOW_PER_JOB * jobs) if workers else _InProcess()
            if not merged:
                for i in by_stream[0]:
                    blob, _, _, services = window.take(i)
                    if services_seen is not None:
                        services_seen.update(services)
                    if blob:
                        yield blob
                return

            def stream_pieces(k: int) -> Iterator[LinePiece]:
                for i in by_stream[k]:
                    blob, ends, keys, services = window.take(i)
                    if services_seen is not None:
                        services_seen.update(services)
                    yield blob, ends, keys

            yield from merge_lines([stream_pieces(k) for k in range(len(streams))], heading)
    finally:
        _work = None
        if jobs > 1:
            gc.unfreeze()
