"""svsmlog benchmarks: ``python benchmarks/bench.py [--size-mb 100] [--repeat 3]``.

Prints a markdown table to paste into benchmarks/README.md. Every figure is a
median over ``--repeat`` runs made in this one invocation, so ratios compare
like with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import construct

from svsmlog import codec, crypto, format
from svsmlog.device import SECTOR, FileDevice, MemoryDevice, RecordingDevice
from svsmlog.records import Level, Record
from svsmlog.verify import Keyring, Verifier
from svsmlog.volume import StreamSpec
from svsmlog.writer import LogWriter

OUT = Path(__file__).resolve().parent / "out"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def message(i: int, n: int = 100) -> Record:
    body = f"VTPM: command {i:08d} completed " + "x" * n
    return Record(i * 1000, Level.INFO, "vtpm", "vtpm", body[:n])


def overhead(per_flush: int, messages: int = 6400) -> tuple[float, float]:
    """Device bytes written per message byte, and device writes per flush (BOOT frames and
    formatting excluded: they are per boot, not per message)."""
    key = crypto.generate_private_key()
    dev = RecordingDevice(MemoryDevice(64 * 1024))
    w = LogWriter(dev, [StreamSpec(1, "all", 60000)], [key.public])
    start = len(dev.writes)
    flushes = 0
    for i in range(messages):
        w.append(1, message(i))
        if (i + 1) % per_flush == 0:
            w.flush()
            flushes += 1
    written = sum(len(x.data) for x in dev.writes[start:])
    return written / (messages * 100), (len(dev.writes) - start) / flushes


def model_amplification(layout: str) -> tuple[float, float, float]:
    """The SVSM model's ``normal`` scenario (seed 0): device bytes written per message byte
    for a first boot (formatting included: zeroing every region once) and for a second boot
    over the same image, and device writes per frame written (a flush is one frame)."""
    import tempfile

    from svsmlog.model.simulate import SimulateOptions, simulate

    with tempfile.TemporaryDirectory() as tmp:
        pub = Path(tmp) / "owner.pub"
        pub.write_bytes(crypto.generate_private_key().public.to_pem())
        img = Path(tmp) / "disk.img"
        opts = SimulateOptions(image=img, recipients=[pub], scenario="normal", streams=layout, size="16M")
        first = simulate(opts)
        second = simulate(opts)
    amp = lambda r: r.sectors_written * SECTOR / r.message_bytes  # noqa: E731
    return amp(first), amp(second), second.device_writes / second.frames


def build_image(path: Path, size_mb: int, key: crypto.PrivateKey) -> int:
    """A per-service image about ``size_mb`` MB full of 100-200 byte messages, 64 per flush."""
    sectors = size_mb * 1024 * 1024 // SECTOR
    names = ["boot", "core", "attest", "vtpm", "apic", "uefi", "console"]
    per = (sectors - 64) // len(names) // 8 * 8
    specs = [StreamSpec(i + 1, n, per) for i, n in enumerate(names)]
    dev = FileDevice(path, create_sectors=sectors)
    w = LogWriter(dev, specs, [key.public])
    records = 0
    budget = int(per * SECTOR * 0.97)
    used = {s.stream: 0 for s in specs}
    i = 0
    while any(u < budget for u in used.values()):
        for s in specs:
            if used[s.stream] >= budget:
                continue
            for j in range(64):
                r = Record(
                    i * 1000 + j, Level.INFO, s.name, s.name, f"{s.name} event {i}:{j} " + "d" * (80 + j)
                )
                w.append(s.stream, r)
            (sealed,) = w.flush(s.stream)
            used[s.stream] += sealed.sectors * SECTOR
            records += 64
        i += 1
    w.close()
    dev.close()
    return records


def decode_ratio(repeat: int) -> tuple[float, float]:
    block = codec.encode_record_block([codec.encode_record(message(i, 150)) for i in range(64)])
    n = 200
    fast = median_time(lambda: [codec.decode_record_block(block) for _ in range(n)], repeat) / n
    slow = median_time(lambda: [format.RecordBlock.parse(block) for _ in range(n)], repeat) / n
    return fast, slow


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    key = crypto.generate_private_key()
    rows: list[tuple[str, str]] = []

    for per in (1, 64):
        amp, wpf = overhead(per)
        rows.append((f"disk bytes per message byte, 100-byte messages, {per} per flush", f"{amp:.2f}"))
        rows.append((f"device writes per flush, {per} per flush", f"{wpf:.2f}"))

    for layout in ("aggregated", "per-service"):
        first, steady, wpf = model_amplification(layout)
        rows.append(
            (
                f"model, normal scenario, {layout}: device bytes per message byte, first boot "
                "(formatting included) / a later boot",
                f"{first:.1f} / {steady:.2f}",
            )
        )
        rows.append((f"model, normal scenario, {layout}: device writes per frame", f"{wpf:.2f}"))

    img = OUT / f"bench-{args.size_mb}mb.img"
    t0 = time.perf_counter()
    records = build_image(img, args.size_mb, key)
    build = time.perf_counter() - t0
    size = img.stat().st_size
    rows.append(("writer: records/s building the image (64 per flush)", f"{records / build:,.0f}"))

    def open_verifier() -> Verifier:
        dev = FileDevice(img)
        return Verifier(dev.read, dev.sector_count, Keyring([key]))

    def verify_only() -> None:
        assert open_verifier().run().verdict == "intact"

    def verify_and_extract() -> None:
        v = open_verifier()
        v.run()
        assert sum(1 for _ in v.records()) == records

    tv = median_time(verify_only, args.repeat)
    te = median_time(verify_and_extract, args.repeat)
    mb = size / 1e6
    rows.append(("image: MB / frames-of-64 records / records", f"{mb:.0f} / {records // 64:,} / {records:,}"))
    rows.append(("verify (keys, scan, AEAD, decode, checks): MB/s", f"{mb / tv:.1f}"))
    rows.append(("verify + extract all records: MB/s", f"{mb / te:.1f}"))
    rows.append(("verify + extract: records/s", f"{records / te:,.0f}"))
    fast, slow = decode_ratio(args.repeat)
    rows.append(
        ("decode a 64-record block: fast codec / construct (µs)", f"{fast * 1e6:.0f} / {slow * 1e6:.0f}")
    )
    rows.append(("construct is slower by", f"{slow / fast:.1f}×"))

    print(
        f"svsmlog benchmarks — Python {platform.python_version()}, construct {construct.__version__}, "
        f"{platform.machine()}, median of {args.repeat}"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    img.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
