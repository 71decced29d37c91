"""Merging several streams' lines by key, a window at a time: what ``heapq.merge`` does
line by line, done with one C sort per window.

``heapq.merge(*streams, key=k)`` takes, again and again, the stream whose next line has
the least key (the first such stream on a tie). When every stream's keys are in order
that is a stable sort of all the lines by key. When they are not (a host may write any
times it likes into its own frames, and the reader must still give every line exactly
once, in a defined order), it is the same stable sort by each line's *running maximum*
within its stream: a line whose key dips below an earlier one of its stream is only
reached after that earlier line was taken, when nothing else could come first
(tests/test_linemerge.py holds the two equal on arbitrary keys and piece cuts).

So, with each stream's lines arriving in pieces: every buffered line whose running-maximum
key (and stream, on a tie) is at most the smallest "last buffered key" of the streams not
yet exhausted can no longer be overtaken by a line still to come; those are sorted and
written, and the stream that set that bound is refilled. Each stream buffers at most one
piece.

Extract merges streams this way (svsmlog.recordpass): at 1M records of the per-service
layout the line-by-line merge was about a microsecond of the parent's time a line.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

# A piece: its lines as one UTF-8 string of bytes, where each line ends (its offset past
# its last byte), and the key of each. One string and two columns: a list of strings took
# four times as long to unpickle from a worker, and splitting the text again in this
# process cost more than the merge.
LinePiece = tuple[bytes, Sequence[int], Sequence[int]]


def merge_lines(streams: list[Iterable[LinePiece]]) -> Iterator[bytes]:
    """The lines of ``streams`` (each an iterable of pieces, in order) in the order
    ``heapq.merge`` gives for (key, line) pairs keyed by key, as bytes of whole lines."""
    sources = [iter(s) for s in streams]
    keys: list[list[int]] = [[] for _ in sources]  # running maxima of the buffered lines
    lines: list[list[bytes]] = [[] for _ in sources]
    highest: list[int | None] = [None] * len(sources)  # each stream's running maximum so far
    live = set(range(len(sources)))

    def refill(k: int) -> None:
        """Buffer stream k's next non-empty piece, or mark it exhausted."""
        for blob, ends, piece_keys in sources[k]:
            if len(ends) != len(piece_keys) or (ends and ends[-1] != len(blob)) or (not ends and blob):
                raise ValueError("a piece needs one key and one end per line, the last at its end")
            if not ends:
                continue
            piece_lines = list(map(blob.__getitem__, map(slice, [0, *ends[:-1]], ends)))
            top = highest[k]
            if top is None:
                maxima = list(accumulate(piece_keys, max))
            else:
                maxima = list(accumulate(piece_keys, max, initial=top))
                del maxima[0]
            highest[k] = maxima[-1]
            keys[k], lines[k] = maxima, piece_lines
            return
        live.discard(k)

    for k in range(len(sources)):
        refill(k)
    while live:
        # The least (last buffered key, stream) of the live streams bounds what may go out.
        bound, by = min((keys[k][-1], k) for k in live)
        out_keys: list[int] = []
        out_lines: list[bytes] = []
        for k in range(len(sources)):  # in stream order: the sort is stable, ties go to the earlier stream
            ks = keys[k]
            if not ks:
                continue
            cut = bisect_right(ks, bound) if k <= by else bisect_left(ks, bound)
            if cut:
                out_keys += ks[:cut]
                out_lines += lines[k][:cut]
                del ks[:cut], lines[k][:cut]
        order = sorted(range(len(out_keys)), key=out_keys.__getitem__)
        yield b"".join(map(out_lines.__getitem__, order))
        refill(by)  # its whole buffer was at most the bound: empty now
    # Exhausted streams may still hold lines below no bound: they go out last, merged.
    rest_keys = [x for ks in keys for x in ks]
    if rest_keys:
        rest_lines = [line for ls in lines for line in ls]
        order = sorted(range(len(rest_keys)), key=rest_keys.__getitem__)
        yield b"".join(map(rest_lines.__getitem__, order))
