"""Start-up and a small image: what a guest owner pays on the images they really have.

Two tables, appended to ``make bench``'s output (``benchmarks.bench``):

*Start-up*: ``python -c pass`` (this interpreter, ``sys.executable``: on the build machine
``python3`` on PATH is a pyenv shim, a shell script that costs about 90 ms by itself),
``svsmlog --version``, ``svsmlog info`` on a sample image and ``svsmlog verify`` of a
one-boot sample (``samples/``, the TEST-ONLY owner key), each run ``runs`` times,
interleaved; median and range of wall clock, peak RSS.

*Small image*: a few MB, the shape most real logs have: the benchmark messages written by
the SVSM model's default flush policy in the per-service layout (``benchmarks.images``:
a frame every ~4 records), and journald given the same messages. ``svsmlog verify`` and
``extract --format jsonl`` against ``journalctl --verify`` and ``-o json``, interleaved,
median of ``rounds``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import images, journald, measure, messages
from svsmlog import crypto

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
INFO_SAMPLE = SAMPLES / "clean-multiboot.img"  # 3 boots, per-service, 1 MiB
VERIFY_SAMPLE = SAMPLES / "vtpm-panic.img"  # 1 boot, per-service, 1 MiB
SAMPLE_KEY = SAMPLES / "TEST-ONLY-owner.key"
# The verify sample is attested: checked, as ``make demo`` does, against the TEST-ONLY chain
# (AMD's own ARKs would call its report invalid: exit 1).
SAMPLE_CHAIN = SAMPLES / "TEST-ONLY-amd-chain.pem"
SAMPLE_MEASUREMENT = SAMPLES / "measurement.hex"
SMALL_LAYOUT, SMALL_POLICY = "per-service", "default"
MB = 1e6


@dataclass
class Row:
    label: str
    command: str
    timings: measure.Timings


@dataclass
class SmallImage:
    records: int
    payload: int
    image: images.ImageStats
    journal: journald.JournalStats | None
    timings: dict[tuple[str, str], measure.Timings] = field(default_factory=dict)


def startup_commands(svsmlog: str) -> list[tuple[str, list[str]]]:
    return [
        ("interpreter", [sys.executable, "-c", "pass"]),
        ("svsmlog --version", [svsmlog, "--version"]),
        (f"svsmlog info ({INFO_SAMPLE.name})", [svsmlog, "info", str(INFO_SAMPLE)]),
        (
            f"svsmlog verify ({VERIFY_SAMPLE.name}, 1 boot)",
            [
                svsmlog, "verify", str(VERIFY_SAMPLE), "--key", str(SAMPLE_KEY),
                "--trust-root", str(SAMPLE_CHAIN), "--measurement", SAMPLE_MEASUREMENT.read_text().strip(),
            ],
        ),
    ]


def measure_startup(svsmlog: str, runs: int) -> list[Row]:
    cmds = startup_commands(svsmlog)
    for _, argv in cmds:  # warm the page cache, and fail early
        measure.run(argv)
    samples: dict[str, list[measure.Sample]] = {label: [] for label, _ in cmds}
    for _ in range(runs):
        for label, argv in cmds:
            samples[label].append(measure.run(argv))
    return [
        Row(label, " ".join(Path(a).name if a.startswith("/") else a for a in argv),
            measure.summarise(samples[label]))
        for label, argv in cmds
    ]


def measure_small(
    svsmlog: str, n: int, out: Path, key: crypto.PrivateKey, key_file: Path, rounds: int, with_journald: bool
) -> SmallImage:
    records = messages.generate(n)
    path = out / f"small-{n}-{SMALL_LAYOUT}-{SMALL_POLICY}.img"
    st = images.build_image(path, records, SMALL_LAYOUT, SMALL_POLICY, key.public)
    journal = journald.build_journal(records, out / f"small-journal-{n}") if with_journald else None
    small = SmallImage(n, messages.payload_bytes(records), st, journal)
    cmds: dict[tuple[str, str], list[str]] = {
        ("svsmlog", "verify"): [svsmlog, "verify", str(path), "--key", str(key_file)],
        ("svsmlog", "extract"): [svsmlog, "extract", str(path), "--key", str(key_file), "--format", "jsonl"],
    }
    if journal is not None:
        files = [f"--file={p}" for p in journal.files]
        cmds["journald", "verify"] = ["journalctl", *files, "--verify", f"--verify-key={journal.verify_key}"]
        cmds["journald", "extract"] = ["journalctl", *files, "-o", "json", "--no-pager"]
    samples: dict[tuple[str, str], list[measure.Sample]] = {k: [] for k in cmds}
    for argv in cmds.values():
        measure.run(argv)
    for _ in range(rounds):
        for k, argv in cmds.items():
            samples[k].append(measure.run(argv))
    small.timings = {k: measure.summarise(v) for k, v in samples.items()}
    return small


def _ms(s: measure.Spread) -> str:
    return f"{s.median * 1e3:,.0f} ({s.low * 1e3:,.0f}–{s.high * 1e3:,.0f})"


def render_startup(rows: list[Row], runs: int) -> str:
    base = rows[0].timings.seconds.median
    out = [
        "#### Start-up",
        "",
        f"Wall clock of each command, median of {runs} (min–max), interleaved; the interpreter row is "
        "`python -c pass` with the interpreter svsmlog runs on. svsmlog's modules are byte-compiled "
        "first, as an installed package is (`bench.compile_svsmlog`).",
        "",
        "| command | ms, median (min–max) | over the interpreter, ms | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for r in rows:
        extra = "" if r is rows[0] else f"{(r.timings.seconds.median - base) * 1e3:+,.0f}"
        rss = r.timings.max_rss_kib / 1024
        out.append(f"| `{r.command}` | {_ms(r.timings.seconds)} | {extra} | {rss:.0f} |")
    return "\n".join(out)


def render_small(s: SmallImage, rounds: int) -> str:
    st = s.image
    out = [
        "#### Small image",
        "",
        f"{s.records:,} records ({s.payload / MB:.1f} MB of message text), {SMALL_LAYOUT} layout, "
        f"{SMALL_POLICY} policy: {st.frames:,} frames ({st.records_per_frame:.1f} records a frame), "
        f"image {st.image_bytes / MB:.1f} MB"
        + (f"; journal {s.journal.file_bytes / MB:.1f} MB" if s.journal else "")
        + f". Median of {rounds} (min–max), interleaved.",
        "",
        "| subject | action | ms, median (min–max) | MB/s of message text | peak RSS MiB | × journald |",
        "|---|---|---|---|---|---|",
    ]
    for (subject, action), t in s.timings.items():
        ratio = ""
        if subject == "svsmlog" and ("journald", action) in s.timings:
            ratio = f"{s.timings['journald', action].seconds.median / t.seconds.median:.2f}×"
        mbps = s.payload / MB / t.seconds.median
        out.append(
            f"| {subject} | {action} | {_ms(t.seconds)} | {mbps:.1f} | {t.max_rss_kib / 1024:.0f} | {ratio} |"
        )
    return "\n".join(out)
