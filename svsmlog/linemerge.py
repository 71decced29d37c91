"""Merging several streams' lines by key, a window at a time: what ``heapq.merge`` does
line by line, done with one C sort per window.

``heapq.merge(*streams, key=k)`` takes, again and again, the stream whose next line has
the least key (the first such stream on a tie). When every stream's keys are in order
that is a stable sort of all the lines by key. When they are not (an authenticated block
may still carry times that go back: its deltas are signed, and the reader must give
every line exactly once, in a defined order), it is the same stable sort by each line's
*running maximum*
within its stream: a line whose key dips below an earlier one of its stream is only
reached after that earlier line was taken, when nothing else could come first
(tests/test_linemerge.py holds the two equal on arbitrary keys and piece cuts).

So, with each stream's lines arriving in pieces: every buffered line whose running-maximum
key (and stream, on a tie) is at most the smallest "last buffered key" of the streams not
yet exhausted can no longer be overtaken by a line still to come; those are sorted and
written, and the stream that set that bound is refilled. Each stream buffers at most one
piece, kept as the one string it came in; where more than ``BATCH_LINES`` lines could go
out at once, the bound is lowered to the key of the ``BATCH_LINES``-th (memory).

Extract merges streams this way (svsmlog.recordpass): at 1M records of the per-service
layout the line-by-line merge was about a microsecond of the parent's time a line.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate

# A piece: its lines as one UTF-8 string of bytes, where each line ends (its offset past
# its last byte), and the key of each. One string and two columns: a list of strings took
# four times as long to unpickle from a worker, and splitting the text again in this
# process cost more than the merge.
LinePiece = tuple[bytes, Sequence[int], Sequence[int]]


def merge_lines(streams: list[Iterable[LinePiece]],
                heading: Callable[[int], bytes] | None = None) -> Iterator[bytes]:
    """The lines of ``streams`` (each an iterable of pieces, in order) in the order
    ``heapq.merge`` gives for (key, line) pairs keyed by key, as bytes of whole lines.
    A stream's buffered piece stays one string: a line is cut out of it as it goes out.

    With ``heading``, ``heading(key >> GROUP_SHIFT)`` goes out before the first line of
    each run of lines whose keys share those high bits (recordpass's keys are boot << 64 |
    time: a heading per boot). A stream's running maxima keep its lines' high bits where
    those never go down within a stream (a stream's boots do not), so each group is one run."""
    sources = [iter(s) for s in streams]
    n = len(sources)
    blobs: list[bytes] = [b""] * n  # each stream's buffered piece
    starts: list[list[int]] = [[] for _ in sources]  # where its lines start and end in it
    ends: list[Sequence[int]] = [[] for _ in sources]
    keys: list[list[int]] = [[] for _ in sources]  # running maxima of its lines
    sent = [0] * n  # lines of the buffered piece already written
    highest: list[int | None] = [None] * n  # each stream's running maximum so far
    live = set(range(n))

    def refill(k: int) -> None:
        """Buffer stream k's next non-empty piece, or mark it exhausted."""
        for blob, piece_ends, piece_keys in sources[k]:
            if (len(piece_ends) != len(piece_keys) or (piece_ends and piece_ends[-1] != len(blob))
                    or (not piece_ends and blob)):
                raise ValueError("a piece needs one key and one end per line, the last at its end")
            if not piece_ends:
                continue
            top = highest[k]
            as_list = piece_keys if isinstance(piece_keys, list) else list(piece_keys)
            if (top is None or as_list[0] >= top) and as_list == sorted(as_list):
                maxima = as_list  # in order already (an honest log's are): one C sort checks it
            elif top is None:
                maxima = list(accumulate(piece_keys, max))
            else:
                maxima = list(accumulate(piece_keys, max, initial=top))
                del maxima[0]
            highest[k] = maxima[-1]
            blobs[k], ends[k], keys[k], sent[k] = blob, piece_ends, maxima, 0
            starts[k] = [0, *piece_ends[:-1]]
            return
        blobs[k], starts[k], ends[k], keys[k], sent[k] = b"", [], [], [], 0
        live.discard(k)

    def take(k: int, cut: int, out_lines: list[bytes], out_keys: list[int]) -> None:
        """Lines sent[k]..cut-1 of stream k out."""
        lo = sent[k]
        out_lines += map(blobs[k].__getitem__, map(slice, starts[k][lo:cut], ends[k][lo:cut]))
        out_keys += keys[k][lo:cut]
        sent[k] = cut

    def cuts(bound: int, by: int) -> list[int]:
        """Where each stream's lines at most (bound, by) end (by == n: every stream's at bound)."""
        return [bisect_right(keys[k], bound, sent[k]) if k <= by else bisect_left(keys[k], bound, sent[k])
                for k in range(n)]

    group: list[int | None] = [None]  # the high bits of the last line written

    for k in range(n):
        refill(k)
    while live:
        # The least (last buffered key, stream) of the live streams bounds what may go out.
        bound, by = min((keys[k][-1], k) for k in live)
        upto = cuts(bound, by)
        if sum(upto) - sum(sent) > BATCH_LINES:
            # Fewer at a time, for memory: only lines up to the BATCH_LINES-th smallest key,
            # a bound below the first, so just as safe.
            candidates: list[int] = []
            for k in range(n):
                candidates += keys[k][sent[k] : upto[k]]
            tighter = sorted(candidates)[BATCH_LINES - 1]
            if tighter < bound:
                upto = cuts(tighter, n)
        out_keys: list[int] = []
        out_lines: list[bytes] = []
        for k in range(n):  # in stream order: the sort is stable, ties go to the earlier stream
            if upto[k] > sent[k]:
                take(k, upto[k], out_lines, out_keys)
        if not out_lines:
            raise AssertionError("the merge must move on every round")
        if heading is None:
            yield from _in_order(out_lines, out_keys)
        else:
            yield from _in_order_with_headings(out_lines, out_keys, heading, group)
        if sent[by] == len(keys[by]):
            refill(by)  # the stream that set the bound: all its buffer has gone out
    # A stream is found exhausted only when its last piece was all sent: nothing is left.


def _in_order(lines: list[bytes], keys: list[int]) -> Iterator[bytes]:
    """The lines stably sorted by key, joined ``BATCH_LINES`` at a time (bounded memory)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    for i in range(0, len(order), BATCH_LINES):
        yield b"".join(map(lines.__getitem__, order[i : i + BATCH_LINES]))


def _in_order_with_headings(lines: list[bytes], keys: list[int], heading: Callable[[int], bytes],
                            group: list[int | None]) -> Iterator[bytes]:
    """``_in_order``, with ``heading(g)`` before the first line of each new group ``g``
    (``group[0]``: the group of the last line written before these)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ordered_keys = list(map(keys.__getitem__, order))
    pos = 0
    while pos < len(order):
        g = ordered_keys[pos] >> GROUP_SHIFT
        if g != group[0]:
            group[0] = g
            yield heading(g)
        end = bisect_left(ordered_keys, (g + 1) << GROUP_SHIFT, pos)  # a group changes rarely
        for i in range(pos, end, BATCH_LINES):
            yield b"".join(map(lines.__getitem__, order[i : min(i + BATCH_LINES, end)]))
        pos = end


BATCH_LINES = 4096  # as the line-by-line merge wrote them
GROUP_SHIFT = 64  # the bits below a heading's group
