"""Profile the in-process reader on one benchmark image: where a frame's time goes.

    python -m benchmarks.profile [--records 100000] [--layout per-service] [--policy default]
                                 [--extract] [--top 25] [--keep DIR]

Builds the image with ``benchmarks.images`` (the message set of ``benchmarks.messages``),
times ``Verifier.run()`` (and, with ``--extract``, every record) without a profiler, then
runs it once under cProfile and prints the functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import images, messages
from svsmlog import crypto
from svsmlog.device import FileDevice
from svsmlog.verify import Keyring, Verifier


def read_once(path: Path, key: crypto.PrivateKey, extract: bool) -> int:
    dev = FileDevice(path)
    try:
        v = Verifier(dev.read, dev.sector_count, Keyring([key]))
        v.run()
        return sum(1 for _ in v.records()) if extract else 0
    finally:
        dev.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--layout", choices=images.LAYOUTS, default="per-service")
    ap.add_argument("--policy", choices=images.POLICIES, default="default")
    ap.add_argument("--extract", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--keep", type=Path, help="build the image in this directory and keep it there")
    args = ap.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="svsmlog-profile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{args.records}-{args.layout}-{args.policy}.img"
    key_path = workdir / "owner.key"
    if key_path.exists() and path.exists():
        key = crypto.load_private_key(key_path.read_bytes())
        stats = None
    else:
        key = crypto.generate_private_key()
        key_path.write_bytes(key.to_pem())
        records = messages.generate(args.records)
        stats = images.build_image(path, records, args.layout, args.policy, key.public)
    frames = stats.frames if stats else "?"
    read_once(path, key, args.extract)  # warm: page cache, imports
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        read_once(path, key, args.extract)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t = statistics.median(times)
    print(f"{path.name}: {frames} frames, {path.stat().st_size / 1e6:.1f} MB; "
          f"{'verify+extract' if args.extract else 'verify'} wall median {t:.3f} s, "
          f"CPU min {min(cpu):.3f} s of {args.repeat}"
          + (f", {min(cpu) / stats.frames * 1e6:.1f} us CPU a frame" if stats else ""), file=sys.stderr)
    if not args.top:
        return 0
    prof = cProfile.Profile()
    prof.runcall(read_once, path, key, args.extract)
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
