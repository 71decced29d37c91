"""svsmlog.linemerge gives exactly heapq.merge's order: on keys in order and out of order
(a host writes what times it likes), with ties within and across streams, whatever the
pieces each stream arrives in."""

from __future__ import annotations

import heapq
from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import linemerge
from svsmlog.linemerge import merge_lines

# Few distinct keys: ties everywhere. Each stream: its keys, and where its pieces are cut.
_stream = st.lists(st.integers(0, 6), max_size=25).flatmap(
    lambda keys: st.tuples(st.just(keys), st.lists(st.integers(0, len(keys)), max_size=6))
)


def _piece(lines: list[str], keys: list[int]) -> tuple[bytes, list[int], list[int]]:
    parts = [line.encode() for line in lines]
    return b"".join(parts), list(accumulate(map(len, parts))), keys


def _pieces(k: int, keys: list[int], cuts: list[int]) -> list[tuple[bytes, list[int], list[int]]]:
    """Stream k's lines ("k.i", some not ASCII) cut into pieces at ``cuts``."""
    bounds = [0, *sorted(cuts), len(keys)]
    return [_piece([_line(k, i) for i in range(a, b)], keys[a:b]) for a, b in pairwise(bounds)]


def _line(k: int, i: int) -> str:
    return f"{k}.{i}{'é' * (i % 2)}\n"


def _reference(streams: list[list[int]]) -> str:
    """heapq.merge over (key, line) pairs keyed by key, line by line."""
    iters = [[(key, _line(k, i)) for i, key in enumerate(keys)] for k, keys in enumerate(streams)]
    return "".join(line for _, line in heapq.merge(*iters, key=lambda pair: pair[0]))


@settings(max_examples=600)
@given(st.lists(_stream, max_size=5), st.sampled_from([1, 2, 3, 4096]))
def test_the_order_heapq_merge_gives(streams: list[tuple[list[int], list[int]]], batch: int) -> None:
    """Whatever the keys, the cuts, and how many lines may go out at a time."""
    pieces = [_pieces(k, keys, cuts) for k, (keys, cuts) in enumerate(streams)]
    saved, linemerge.BATCH_LINES = linemerge.BATCH_LINES, batch
    try:
        out = list(merge_lines(pieces))
    finally:
        linemerge.BATCH_LINES = saved
    assert b"".join(out).decode() == _reference([keys for keys, _ in streams])
    longest = max((len(keys) for keys, _ in streams), default=0)  # ties at one key go out together
    assert all(chunk.count(b"\n") <= max(batch, longest) for chunk in out)


@settings(max_examples=400)
@given(st.lists(_stream, max_size=5), st.sampled_from([1, 2, 3, 4096]))
def test_a_heading_before_each_group(streams: list[tuple[list[int], list[int]]], batch: int) -> None:
    """With ``heading``, the order is the same, with heading(g) before the first line of each
    run of g = running maximum >> GROUP_SHIFT (the text view's boot separators; here two
    bits a group, so that few keys make many groups)."""
    pieces = [_pieces(k, keys, cuts) for k, (keys, cuts) in enumerate(streams)]
    saved = linemerge.BATCH_LINES, linemerge.GROUP_SHIFT
    linemerge.BATCH_LINES, linemerge.GROUP_SHIFT = batch, 1
    try:
        out = b"".join(merge_lines(pieces, lambda g: f"== {g} ==\n".encode())).decode()
    finally:
        linemerge.BATCH_LINES, linemerge.GROUP_SHIFT = saved
    iters = [[(top, _line(k, i)) for i, top in enumerate(accumulate(keys, max))]
             for k, (keys, _) in enumerate(streams)]
    expected, group = [], None
    for top, line in heapq.merge(*iters, key=lambda pair: pair[0]):
        if top >> 1 != group:
            group = top >> 1
            expected.append(f"== {group} ==\n")
        expected.append(line)
    assert out == "".join(expected)


@settings(max_examples=200)
@given(st.lists(st.lists(st.integers(0, 2**70), max_size=30).map(sorted), min_size=2, max_size=4),
       st.integers(1, 7))
def test_sorted_streams_of_large_keys(streams: list[list[int]], size: int) -> None:
    """Keys in order, as an honest log's (boot << 64 | time), in pieces of one size."""
    pieces = [_pieces(k, keys, list(range(size, len(keys), size))) for k, keys in enumerate(streams)]
    assert b"".join(merge_lines(pieces)).decode() == _reference(streams)


def test_a_dip_waits_for_the_line_before_it() -> None:
    """Stream 0 goes 5, 1; stream 1 holds 3: the 1 is only reached after the 5."""
    out = b"".join(merge_lines([[_piece(["a5\n", "a1\n"], [5, 1])], [_piece(["b3\n"], [3])]]))
    assert out == b"b3\na5\na1\n"
    assert _reference([[5, 1], [3]]) == "1.0\n0.0\n0.1é\n"


def test_a_piece_must_give_one_key_and_end_per_line() -> None:
    with pytest.raises(ValueError):
        list(merge_lines([[(b"a\nb\n", [2, 4], [1])], [_piece(["c\n"], [2])]]))
    with pytest.raises(ValueError):
        list(merge_lines([[(b"a\nb\n", [2, 3], [1, 2])], [_piece(["c\n"], [2])]]))


def test_written_a_bounded_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linemerge, "BATCH_LINES", 3)
    streams = [[1, 2, 3, 4, 5, 9], [0, 2, 2, 7, 8], [6]]
    pieces = [_pieces(k, keys, [c for c in (2, 4) if c <= len(keys)]) for k, keys in enumerate(streams)]
    chunks = list(merge_lines(pieces))
    assert all(0 < chunk.count(b"\n") <= 3 for chunk in chunks)
    assert b"".join(chunks).decode() == _reference(streams)
