"""svsmlog.forked: workers forked once, tasks and results over pipes, no thread here."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import forked
from tests.helpers import child_pids

ROOT = Path(__file__).resolve().parent.parent


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), jobs=st.integers(1, 4), ahead=st.integers(1, 3))
def test_map_ordered_is_the_list_comprehension(n: int, jobs: int, ahead: int) -> None:
    assert forked.map_ordered(lambda i: (i, i * i), n, jobs, ahead=ahead) == [(i, i * i) for i in range(n)]
    assert child_pids() == set()


def test_tasks_run_in_every_worker_and_the_workers_are_reaped() -> None:
    before = threading.active_count()

    def task(i: int) -> int:
        time.sleep(0.02)  # long enough that one worker cannot take them all
        return os.getpid()

    with forked.Workers(task, 3) as workers:
        assert threading.active_count() == before  # no thread of its own in this process
        pids = set(workers.pids)
        assert child_pids() == pids
        for i in range(12):
            workers.submit(i)
        ran = {workers.result(i) for i in range(12)}
    assert ran == pids and os.getpid() not in ran
    assert child_pids() == set()


def test_a_result_larger_than_a_pipe_comes_back_whole() -> None:
    big = forked.map_ordered(lambda i: bytes([i]) * (5 << 20), 3, 2)
    assert [len(b) for b in big] == [5 << 20] * 3 and [b[-1] for b in big] == [0, 1, 2]


def test_what_a_task_raises_is_raised_here_and_ends_the_workers() -> None:
    def task(i: int) -> int:
        if i == 5:
            raise KeyError("the fifth")
        return i

    with pytest.raises(KeyError, match="the fifth"):
        forked.map_ordered(task, 20, 2)
    assert child_pids() == set()


def test_a_result_that_cannot_cross_a_pipe_is_an_error_not_a_hang() -> None:
    with pytest.raises(RuntimeError, match="task 1"):
        forked.map_ordered(lambda i: (lambda: i) if i == 1 else i, 3, 2)  # a lambda does not pickle
    assert child_pids() == set()


def test_a_worker_that_dies_is_an_error_not_a_hang() -> None:
    def task(i: int) -> int:
        if i == 3:
            os._exit(9)
        return i

    start = time.monotonic()
    with pytest.raises(forked.WorkerDied, match="ended before handing back its work"):
        forked.map_ordered(task, 10, 2)
    assert time.monotonic() - start < 10
    assert child_pids() == set()


def test_on_wait_is_called_on_time_even_while_results_keep_coming() -> None:
    calls: list[float] = []

    def task(i: int) -> int:
        time.sleep(0.01)
        return i

    start = time.monotonic()
    forked.map_ordered(task, 60, 2, on_wait=lambda: calls.append(time.monotonic()), wait_seconds=0.05)
    took = time.monotonic() - start
    # 60 results, one every 5 ms or so: a timer reset by each result would never fire
    assert len(calls) >= max(3, int(took / 0.05) // 2)
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(calls))


def test_handing_out_a_task_twice_or_asking_for_one_never_given_is_refused() -> None:
    with forked.Workers(lambda i: i, 1) as workers:
        workers.submit(0)
        with pytest.raises(ValueError, match="already"):
            workers.submit(0)
        with pytest.raises(ValueError, match="not handed out"):
            workers.result(1)
        assert workers.result(0) == 0


def test_a_worker_never_writes_what_the_parent_had_buffered() -> None:
    # The parent's stdout buffer holds a line when the workers fork: a worker that left
    # through sys.exit would flush it a second time.
    code = (
        "import sys; from svsmlog import forked\n"
        "sys.stdout.write('once\\n')\n"
        "print(forked.map_ordered(lambda i: i, 4, 2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out == "once\n[0, 1, 2, 3]\n"


def test_workers_whose_pipes_lie_past_fd_setsize_still_answer() -> None:
    # select() refuses a descriptor of 1024 or more; a process with many files open (a
    # fleet run, a test suite) gets pipes numbered past it.
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"only {soft} descriptors allowed")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert forked.map_ordered(lambda i: i + 1, 6, 2) == [1, 2, 3, 4, 5, 6]
    finally:
        for fd in held:
            os.close(fd)


def test_a_fork_that_fails_part_way_ends_the_workers_already_started(monkeypatch: pytest.MonkeyPatch) -> None:
    real, forks = os.fork, []

    def fork() -> int:
        forks.append(1)
        if len(forks) == 3:
            raise BlockingIOError(11, "Resource temporarily unavailable")  # EAGAIN: too many processes
        return real()

    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(BlockingIOError):
        forked.Workers(lambda i: i, 4)
    assert len(forks) == 3 and child_pids() == set()
