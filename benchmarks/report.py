"""The results of one harness run and the markdown they print as (paste-ready)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .images import ImageStats
from .journald import JournalStats
from .measure import Spread, Timings

# Issue 6's targets.
VERIFY_VS_JOURNALD = 20.0  # svsmlog verify / journalctl --verify --verify-key, MB/s
EXTRACT_VS_JOURNALD = 3.0  # svsmlog extract --format jsonl / journalctl -o json, MB/s
VERIFY_VS_AES = 0.25  # svsmlog verify MB/s of message text / openssl AES-256-GCM, one core
BATCH64_BYTES = 1.25  # disk bytes per message byte with batch-64 flushes
WRITES_PER_FLUSH = 1.0
MEMORY_GROWTH = 1.25  # peak RSS at the largest size / at the smallest: "independent of size"

JOURNALD = "journald"
VERIFY, EXTRACT, VERIFY_1 = "verify", "extract", "verify --jobs 1"
# Each tool's default view, piped: svsmlog's plain text, journalctl's -o short. No target;
# here because it is what a person's first command writes.
EXTRACT_TEXT = "extract (text)"
INFO = "info --json"  # no key, no journald counterpart: here for its memory (every frame listed)
MB = 1e6


@dataclass
class SizeRun:
    records: int
    payload: int  # bytes of message text
    images: dict[str, ImageStats] = field(default_factory=dict)  # "layout/policy" -> stats
    journal: JournalStats | None = None
    timings: dict[tuple[str, str], Timings] = field(default_factory=dict)  # (subject, action)

    def mbps(self, subject: str, action: str) -> Spread:
        return self.timings[subject, action].seconds.scaled(self.payload / MB)

    def ratio(self, subject: str, action: str, other: str, other_action: str) -> float:
        """How many times faster ``subject`` is than ``other`` (medians; same messages)."""
        return self.timings[other, other_action].seconds.median / self.timings[subject, action].seconds.median


@dataclass
class Run:
    machine: dict[str, str]
    repeat: int
    jobs: str | None  # what svsmlog was given as --jobs, or None when it has no such option
    aes_bps: Spread  # openssl speed, bytes per second, one core
    sizes: list[SizeRun]
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _n(records: int) -> str:
    if records % 1_000_000 == 0:
        return f"{records // 1_000_000}M"
    return f"{records // 1000}k" if records % 1000 == 0 else str(records)


def _spread(s: Spread, digits: int = 1) -> str:
    return f"{s.median:,.{digits}f} ({s.low:,.{digits}f}–{s.high:,.{digits}f})"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


COMMANDS = {
    (JOURNALD, VERIFY): "`journalctl --file J… --verify --verify-key K`",
    (JOURNALD, EXTRACT): "`journalctl --file J… -o json`",
    (JOURNALD, EXTRACT_TEXT): "`journalctl --file J…` (`-o short`)",
    ("svsmlog", VERIFY): "`svsmlog verify IMG --key K{jobs}`",
    ("svsmlog", VERIFY_1): "`svsmlog verify IMG --key K --jobs 1`",
    ("svsmlog", EXTRACT): "`svsmlog extract IMG --key K --format jsonl{jobs}`",
    ("svsmlog", EXTRACT_TEXT): "`svsmlog extract IMG --key K{jobs}` (text)",
    ("svsmlog", INFO): "`svsmlog info IMG --json`",
}


def _command(subject: str, action: str, jobs: str | None) -> str:
    key = (JOURNALD if subject == JOURNALD else "svsmlog", action)
    return COMMANDS[key].format(jobs=f" --jobs {jobs}" if jobs else "")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _throughput(run: Run) -> Iterator[str]:
    aes = run.aes_bps.median
    yield _row(
        "records", "subject", "command", "MB/s of message text, median (min–max)",
        "records/s", "peak RSS MiB", "× journald", "% of AES-GCM",
    )  # fmt: skip
    yield "|---|---|---|---|---|---|---|---|"
    for sz in run.sizes:
        for subject in [JOURNALD, *sz.images]:
            for action in (VERIFY, VERIFY_1, EXTRACT, EXTRACT_TEXT, INFO):
                if (subject, action) not in sz.timings:
                    continue
                t = sz.timings[subject, action]
                ratio = pct = ""
                if subject != JOURNALD and action != INFO:
                    base = action if action in (EXTRACT, EXTRACT_TEXT) else VERIFY
                    # --no-journald: no journald row to compare with
                    if (JOURNALD, base) in sz.timings:
                        ratio = f"{sz.ratio(subject, action, JOURNALD, base):.2f}×"
                    if action not in (EXTRACT, EXTRACT_TEXT):
                        pct = f"{100 * sz.mbps(subject, action).median * MB / aes:.2f} %"
                yield _row(
                    _n(sz.records),
                    subject,
                    _command(subject, action, run.jobs),
                    _spread(sz.mbps(subject, action)),
                    f"{sz.records / t.seconds.median:,.0f}",
                    _mib(t.max_rss_kib),
                    ratio,
                    pct,
                )


def _space(run: Run) -> Iterator[str]:
    yield _row(
        "records", "subject", "disk bytes per message byte", "frames (flushes)", "records per frame",
        "device writes per flush", "file MB", "build records/s",
    )  # fmt: skip
    yield "|---|---|---|---|---|---|---|---|"
    for sz in run.sizes:
        for label, im in sz.images.items():
            yield _row(
                _n(sz.records),
                label,
                f"{im.written_bytes / sz.payload:.3f}",
                f"{im.frames:,}",
                f"{im.records_per_frame:.1f}",
                f"{im.writes_per_flush:.2f}",
                f"{im.image_bytes / MB:,.1f}",
                f"{im.records / im.seconds:,.0f}",
            )
        j = sz.journal
        if j is not None:
            yield _row(
                _n(sz.records),
                "journald (sealed)",
                f"{j.used_bytes / sz.payload:.3f} (whole file: {j.file_bytes / sz.payload:.3f})",
                f"{j.tags} seals, {len(j.files)} file{'s' if len(j.files) > 1 else ''}",
                "–",
                "–",
                f"{j.file_bytes / MB:,.1f}",
                "–",
            )


def _targets(run: Run) -> Iterator[str]:
    big = max(run.sizes, key=lambda s: s.records)
    small = min(run.sizes, key=lambda s: s.records)
    aes = run.aes_bps.median
    yield _row(f"target (issue 6), at {_n(big.records)} records", "figures", "")
    yield "|---|---|---|"

    def per_image(fn: Callable[[str], float], fmt: str) -> tuple[str, list[float]]:
        vals = {label: fn(label) for label in big.images}
        return ", ".join(f"{label} {fmt.format(v)}" for label, v in vals.items()), list(vals.values())

    if big.images and (JOURNALD, VERIFY) in big.timings:
        text, vals = per_image(lambda lb: big.ratio(lb, VERIFY, JOURNALD, VERIFY), "{:.2f}×")
        target = f"`svsmlog verify` ≥ {VERIFY_VS_JOURNALD:.0f}× `journalctl --verify`"
        yield _row(target, text, _met(min(vals) >= VERIFY_VS_JOURNALD))
    if big.images and (JOURNALD, EXTRACT) in big.timings:
        text, vals = per_image(lambda lb: big.ratio(lb, EXTRACT, JOURNALD, EXTRACT), "{:.2f}×")
        target = f"`svsmlog extract -f jsonl` ≥ {EXTRACT_VS_JOURNALD:.0f}× `journalctl -o json`"
        yield _row(target, text, _met(min(vals) >= EXTRACT_VS_JOURNALD))
    action = VERIFY_1 if any((lb, VERIFY_1) in big.timings for lb in big.images) else VERIFY
    if big.images:
        text, vals = per_image(lambda lb: 100 * big.mbps(lb, action).median * MB / aes, "{:.2f} %")
        target = f"`svsmlog {action}` ≥ {VERIFY_VS_AES:.0%} of one core's AES-256-GCM ({aes / MB:,.0f} MB/s)"
        yield _row(target, text, _met(min(vals) >= 100 * VERIFY_VS_AES))
    batch = {lb: im.written_bytes / big.payload for lb, im in big.images.items() if im.policy == "batch-64"}
    if batch:
        text = ", ".join(f"{lb} {v:.3f}" for lb, v in batch.items())
        if big.journal:
            text += f"; journald {big.journal.used_bytes / big.payload:.2f}"
        yield _row(
            f"disk bytes ≤ {BATCH64_BYTES}× message bytes, batch-64",
            text,
            _met(max(batch.values()) <= BATCH64_BYTES),
        )
    if big.images:
        worst = max(im.writes_per_flush for im in big.images.values())
        yield _row(
            "one device write per flush",
            f"at most {worst:.2f} (every image)",
            _met(worst <= WRITES_PER_FLUSH),
        )
    target = f"peak memory independent of image size (RSS ≤ {MEMORY_GROWTH}× from the smallest size)"
    if small is big:
        yield _row(target, "needs two sizes (the default --records)", "–")
        return
    growth = {
        f"{subject} {action}": t.max_rss_kib / small.timings[subject, action].max_rss_kib
        for (subject, action), t in big.timings.items()
        if (subject, action) in small.timings and subject != JOURNALD
    }
    if growth:
        worst_key = max(growth, key=lambda k: growth[k])
        over = sum(g > MEMORY_GROWTH for g in growth.values())
        text = (
            f"peak RSS at {_n(big.records)} / at {_n(small.records)}: at most {growth[worst_key]:.2f} "
            f"({worst_key}); {over} of {len(growth)} svsmlog commands above {MEMORY_GROWTH}× "
            "(per-command RSS in the throughput table)"
        )
        yield _row(target, text, _met(max(growth.values()) <= MEMORY_GROWTH))


def render(run: Run) -> str:
    m = run.machine
    first = run.sizes[0]
    sets = ", ".join(f"{_n(s.records)} records = {s.payload / MB:,.1f} MB of message text" for s in run.sizes)
    lines = [
        f"Machine: {m['platform']}; {m['cpu']}; nproc {m['nproc']}; Python {m['python']}; "
        f"{m['openssl']}; {m['systemd']}.",
        "",
        f"Every figure is from this one run: median of {run.repeat} (min–max), commands interleaved. "
        f"Messages: {sets} "
        f"(seed 0, {first.payload / first.records:.1f} bytes a message on average). "
        f"svsmlog --jobs: {run.jobs or 'not offered by this svsmlog'}. "
        f"AES-256-GCM limit: `openssl speed -evp aes-256-gcm`, 16384-byte blocks, one core: "
        f"{_spread(Spread(run.aes_bps.median / MB, run.aes_bps.low / MB, run.aes_bps.high / MB), 0)} MB/s. "
        f"Harness time: {run.seconds / 60:.1f} min.",
        "",
        "### Targets",
        "",
        *_targets(run),
        "",
        "### Throughput",
        "",
        *_throughput(run),
        "",
        "### Space and writes",
        "",
        *_space(run),
    ]
    if run.checks:
        lines += ["", "Checks: " + "; ".join(run.checks) + "."]
    return "\n".join(lines)
