"""svsmlog.linemerge gives exactly heapq.merge's order: on keys in order and out of order
(a host writes what times it likes), with ties within and across streams, whatever the
pieces each stream arrives in."""

from __future__ import annotations

import heapq
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog.linemerge import merge_lines

# Few distinct keys: ties everywhere. Each stream: its keys, and where its pieces are cut.
_stream = st.lists(st.integers(0, 6), max_size=25).flatmap(
    lambda keys: st.tuples(st.just(keys), st.lists(st.integers(0, len(keys)), max_size=6))
)


def _pieces(k: int, keys: list[int], cuts: list[int]) -> list[tuple[str, list[int]]]:
    bounds = [0, *sorted(cuts), len(keys)]
    return [("".join(f"{k}.{i}\n" for i in range(a, b)), keys[a:b]) for a, b in pairwise(bounds)]


def _reference(streams: list[list[int]]) -> str:
    """heapq.merge over (key, line) pairs keyed by key, line by line."""
    iters = [[(key, f"{k}.{i}\n") for i, key in enumerate(keys)] for k, keys in enumerate(streams)]
    return "".join(line for _, line in heapq.merge(*iters, key=lambda pair: pair[0]))


@settings(max_examples=600)
@given(st.lists(_stream, max_size=5))
def test_the_order_heapq_merge_gives(streams: list[tuple[list[int], list[int]]]) -> None:
    pieces = [_pieces(k, keys, cuts) for k, (keys, cuts) in enumerate(streams)]
    assert "".join(merge_lines(pieces)) == _reference([keys for keys, _ in streams])


@settings(max_examples=200)
@given(st.lists(st.lists(st.integers(0, 2**70), max_size=30).map(sorted), min_size=2, max_size=4),
       st.integers(1, 7))
def test_sorted_streams_of_large_keys(streams: list[list[int]], size: int) -> None:
    """Keys in order, as an honest log's (boot << 64 | time), in pieces of one size."""
    pieces = [_pieces(k, keys, list(range(size, len(keys), size))) for k, keys in enumerate(streams)]
    assert "".join(merge_lines(pieces)) == _reference(streams)


def test_a_dip_waits_for_the_line_before_it() -> None:
    """Stream 0 goes 5, 1; stream 1 holds 3: the 1 is only reached after the 5."""
    assert "".join(merge_lines([[("a5\na1\n", [5, 1])], [("b3\n", [3])]])) == "b3\na5\na1\n"
    assert _reference([[5, 1], [3]]) == "1.0\n0.0\n0.1\n"


def test_a_piece_must_give_one_key_per_line() -> None:
    with pytest.raises(ValueError):
        list(merge_lines([[("a\nb\n", [1])], [("c\n", [2])]]))
    with pytest.raises(ValueError):
        list(merge_lines([[("a\nb", [1, 2])], [("c\n", [2])]]))
