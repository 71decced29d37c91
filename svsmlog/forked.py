"""Forked workers without helper threads: task numbers down one pipe, results back up one
pipe per worker, read by the parent only when it asks for them.

``multiprocessing.Pool`` runs three threads in the parent. Its worker-handler thread
waits on the result pipe as well as on the workers, so whenever a result lies unread it
loops, and it contends for the GIL with the thread that would read that result and with
the thread that merges. Extract at 1M records, per-service/batch-64, ``--jobs 2``: the
pool's threads took 1.8 s of CPU over a record pass of 4.4 s (1.15 s the worker handler),
on a machine of two cores (benchmarks/README.md). Here the parent has no thread of its
own: it reads a result when it waits for it.

A task is a number ``i``; ``task(i)`` runs in whichever worker reads ``i`` first (eight
bytes, one atomic pipe write each, so each is read by exactly one worker). A result is
``(i, ok, value)`` pickled, its length first. What ``task`` raises comes back and is
raised again in the parent; a worker that dies is an error, not a hang.

Forking rules are the callers' (svsmlog.parallel): ``task`` and what it reads must stay
usable in a child, and the parent must run no other thread when it forks. A worker
leaves with ``os._exit``, so it never flushes what the parent had buffered for stdout.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from typing import Any

_INDEX = 8  # bytes of a task number, and of a result's length


class WorkerDied(ChildProcessError):
    """A worker ended without handing back a result it had taken (killed, say, by the
    out-of-memory killer): an OSError, so the CLI reports it in one line."""


class Workers:
    """``jobs`` forked workers running ``task``; ``submit(i)``, then ``result(i)``.

    Use as a context manager: leaving it ends every worker (at once, killing them, when
    tasks are still outstanding: an error, an interrupt, a reader that stopped early)."""

    def __init__(self, task: Callable[[int], Any], jobs: int) -> None:
        if jobs < 1:
            raise ValueError("at least one worker")
        self._results: dict[int, tuple[bool, Any]] = {}
        self._outstanding: set[int] = set()
        self._pids: list[int] = []
        self._reads: list[int] = []
        self._waited = time.monotonic()  # when on_wait was last called (or the workers forked)
        tasks_r, self._tasks_w = os.pipe()
        pipes = [os.pipe() for _ in range(jobs)]
        try:
            for k, (_, write_end) in enumerate(pipes):
                pid = os.fork()
                if pid == 0:  # the worker: keep only its two ends, and never come back
                    try:
                        os.close(self._tasks_w)
                        for j, pipe in enumerate(pipes):
                            for fd in pipe:
                                if j != k or fd != write_end:
                                    os.close(fd)
                        _serve(task, tasks_r, write_end)
                    finally:
                        os._exit(1)
                self._pids.append(pid)
        finally:
            os.close(tasks_r)
            for _, write_end in pipes:
                os.close(write_end)
            self._reads = [read_end for read_end, _ in pipes[: len(self._pids)]]
            for read_end, _ in pipes[len(self._pids) :]:
                os.close(read_end)
            self._by_fd = dict(zip(self._reads, self._pids, strict=True))
            self._poll = select.poll()  # not select(): any number of workers, past FD_SETSIZE
            for fd in self._reads:
                self._poll.register(fd, select.POLLIN)
            if len(self._pids) < jobs:  # a fork failed: end the ones that started
                self.close(kill=True)

    def submit(self, i: int) -> None:
        """Hand task ``i`` to whichever worker is free first. Keep the tasks outstanding
        few (a pipe holds 8,192 of them; past that, this would wait for a worker)."""
        if i < 0 or i in self._outstanding or i in self._results:
            raise ValueError(f"task {i} is already handed out")
        os.write(self._tasks_w, i.to_bytes(_INDEX, "little"))
        self._outstanding.add(i)

    def result(self, i: int, on_wait: Callable[[], None] | None = None,
               wait_seconds: float = 0.1) -> Any:
        """Task ``i``'s value (raising what it raised); while it waits, ``on_wait`` is
        called every ``wait_seconds`` (counted across calls: results that come in often
        do not hold it off)."""
        if i not in self._outstanding and i not in self._results:
            raise ValueError(f"task {i} was not handed out")
        while i not in self._results:
            timeout_ms = None
            if on_wait is not None:
                now = time.monotonic()
                if now >= self._waited + wait_seconds:
                    on_wait()
                    self._waited = now = time.monotonic()
                timeout_ms = max(1, round((self._waited + wait_seconds - now) * 1000))
            for fd, _ in self._poll.poll(timeout_ms):  # readable, or its worker gone (POLLHUP)
                self._take(fd)
        ok, value = self._results.pop(i)
        if not ok:
            raise value
        return value

    def _take(self, fd: int) -> None:
        """One whole result from this worker's pipe (it is writing it: this cannot hang)."""
        head = _read_exact(fd, _INDEX)
        if head is None:
            raise WorkerDied(f"worker process {self._by_fd[fd]} ended before handing back its work")
        body = _read_exact(fd, int.from_bytes(head, "little"))
        if body is None:
            raise WorkerDied(f"worker process {self._by_fd[fd]} ended while handing back its work")
        i, ok, value = pickle.loads(body)
        self._outstanding.discard(i)
        self._results[i] = (ok, value)

    @property
    def pids(self) -> list[int]:
        return list(self._pids)

    def close(self, kill: bool = False) -> None:
        """End the workers: they finish when their task pipe closes; outstanding tasks are
        not waited for (their workers are killed, as all are with ``kill``)."""
        if self._tasks_w < 0:
            return
        os.close(self._tasks_w)
        self._tasks_w = -1
        if kill or self._outstanding:
            for pid in self._pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for fd in self._reads:
            os.close(fd)  # a worker still writing gets EPIPE and leaves
        for pid in self._pids:
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
        self._reads, self._results = [], {}

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def map_ordered(task: Callable[[int], Any], n: int, jobs: int, on_wait: Callable[[], None] | None = None,
                wait_seconds: float = 0.1, ahead: int = 4) -> list[Any]:
    """``[task(i) for i in range(n)]`` in ``min(jobs, n)`` forked workers; at most
    ``ahead`` tasks a worker are handed out and not yet taken back."""
    out: list[Any] = []
    if n <= 0:
        return out
    workers = min(jobs, n)
    with Workers(task, workers) as pool:
        sent = 0
        for i in range(n):
            while sent < n and sent < i + ahead * workers:
                pool.submit(sent)
                sent += 1
            out.append(pool.result(i, on_wait, wait_seconds))
    return out


def _serve(task: Callable[[int], Any], tasks: int, results: int) -> None:
    """A worker's life: read a task number, run it, write its result; leave at the end of
    the task pipe, or when the parent stops reading. Never returns."""
    code = 0
    try:
        while (head := _read_exact(tasks, _INDEX)) is not None:
            i = int.from_bytes(head, "little")
            try:
                answer: tuple[int, bool, Any] = (i, True, task(i))
            except Exception as e:  # the parent raises it again
                answer = (i, False, e)
            try:
                body = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # what cannot cross a pipe still ends as an error there
                body = pickle.dumps((i, False, RuntimeError(f"task {i}: {answer[2]!r} ({e})")))
            _write_all(results, len(body).to_bytes(_INDEX, "little"))
            _write_all(results, body)
    except BaseException:  # the parent went away (EPIPE), or an interrupt
        code = 1
    finally:
        os._exit(code)


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes, or None at the end of the pipe (before or inside them)."""
    parts: list[bytes] = []
    left = n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
