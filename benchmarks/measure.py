"""Timing commands: wall clock, peak RSS, repeats summarised as median and spread.

Each command runs as a subprocess with its output sent to /dev/null; the wall clock is
taken around spawn and exit. The peak resident set size is GNU time's ``%M`` (what
``/usr/bin/time -v`` prints as "Maximum resident set size"): the kernel's ``ru_maxrss``
of the command, the largest single process of its tree (the command, or a child it
waited for), not a sum over processes. It is taken through ``/usr/bin/time`` rather than
``os.wait4`` on our own child because Python spawns with vfork: the child's figure would
be this (large) harness process's until the exec. ``/usr/bin/time`` itself adds about
1 ms to the wall clock.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass


class CommandFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_kib: int


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated figures."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def scaled(self, factor: float) -> Spread:
        """``factor / x`` for each figure, e.g. seconds to MB/s (the range flips)."""
        return Spread(factor / self.median, factor / self.high, factor / self.low)


TIME = "/usr/bin/time"


def run(argv: Sequence[str], *, ok: Sequence[int] = (0,)) -> Sample:
    """Run ``argv`` once with stdout to /dev/null; raises unless its exit status is in ``ok``."""
    if not os.access(TIME, os.X_OK):
        raise CommandFailed(f"{TIME} (GNU time) is needed for peak RSS: apt-get install time")
    with tempfile.NamedTemporaryFile("r", prefix="bench-rss-") as rss, open(os.devnull, "wb") as devnull:
        t0 = time.perf_counter()
        r = subprocess.run([TIME, "-f", "%M", "-o", rss.name, *argv], stdout=devnull, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t0
        text = rss.read().strip()
    if r.returncode not in ok:
        tail = r.stderr.decode(errors="replace").strip()[-2000:]
        raise CommandFailed(f"{' '.join(argv)}: exit {r.returncode}\n{tail}")
    # GNU time writes "Command exited with non-zero status N" first when the exit is not 0.
    return Sample(seconds, int(text.splitlines()[-1]))


@dataclass(frozen=True)
class Timings:
    seconds: Spread
    max_rss_kib: int  # the largest over the repeats


def summarise(samples: Sequence[Sample]) -> Timings:
    return Timings(Spread.of([s.seconds for s in samples]), max(s.max_rss_kib for s in samples))


# ---------------------------------------------------------------------- the AES-GCM limit

AES_BLOCK = 16384


def openssl_aes_gcm(seconds: int = 2) -> float:
    """Bytes per second of ``openssl speed -evp aes-256-gcm`` on 16384-byte buffers, one
    core (no ``-multi``); only that column is run (``-bytes``)."""
    argv = ["openssl", "speed", "-mr", "-evp", "aes-256-gcm", "-bytes", str(AES_BLOCK)]
    argv += ["-seconds", str(seconds)]
    r = subprocess.run(argv, capture_output=True, text=True, check=True)
    for line in r.stdout.splitlines():
        if line.startswith("+F:"):
            return float(line.rsplit(":", 1)[1])
    raise CommandFailed(f"no +F line in the output of {' '.join(argv)}")


# ---------------------------------------------------------------------- the machine


def _first_line(argv: Sequence[str]) -> str:
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True)
    except OSError:
        return "unavailable"
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict[str, str]:
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": sys.version.split()[0],
        "openssl": _first_line(["openssl", "version"]),
        "systemd": _first_line(["journalctl", "--version"]),
    }
