"""svsmlog against journald and the AES-GCM limit (issue 6): ``make bench``.

    python -m benchmarks.bench [--records 100000 1000000] [--repeat 3] [--keep]

From one deterministic message set (``benchmarks.messages``), for each size: four
svsmlog images (aggregated and per-service layouts, ``default`` and ``batch-64`` flush
policies: ``benchmarks.images``) and a sealed journald journal (``benchmarks.journald``).
Then, ``--repeat`` rounds, each running every command once, interleaved so that a noisy
machine slows all of them alike: ``svsmlog verify``, ``svsmlog extract --format
jsonl`` and ``svsmlog extract`` (its default text view) on every image, ``journalctl
--verify --verify-key``, ``journalctl -o json`` and ``journalctl`` (``-o short``) on
the journal, and ``openssl speed -evp aes-256-gcm`` (one core). Prints one markdown
table for benchmarks/README.md. Every input is rebuilt on each run, under
benchmarks/out/ (git-ignored), and removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/bench.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import images, journald, measure, messages, startup
from benchmarks.report import EXTRACT, EXTRACT_TEXT, INFO, JOURNALD, VERIFY, VERIFY_1, Run, SizeRun, render
from svsmlog import crypto

OUT = Path(__file__).resolve().parent / "out"
SVSMLOG = str(Path(sys.executable).with_name("svsmlog"))


def image_path(out: Path, records: int, label: str) -> Path:
    return out / f"svsmlog-{records}-{label.replace('/', '-')}.img"


def remove_inputs(out: Path) -> None:
    """What ``build`` makes in ``out``: images, journal directories, the key."""
    for p in out.glob("svsmlog-*.img"):
        p.unlink()
    for p in out.glob("small-*.img"):
        p.unlink()
    for p in [*out.glob("journal-*"), *out.glob("small-journal-*")]:
        shutil.rmtree(p, ignore_errors=True)
    (out / "owner.key").unlink(missing_ok=True)


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def compile_svsmlog() -> Path:
    """Byte-compile the svsmlog the commands run, as installing the package leaves it (pip
    compiles every module). Python would cache the bytecode of a checkout on first use,
    except where PYTHONDONTWRITEBYTECODE is set, as on the build machine: there every
    command would compile svsmlog's modules again, about 60 ms each time."""
    import compileall

    import svsmlog

    package = Path(svsmlog.__file__).resolve().parent
    compileall.compile_dir(str(package), quiet=1)
    return package


def offers_jobs(command: str) -> bool:
    """Whether ``svsmlog COMMAND --help`` lists a ``--jobs`` option."""
    r = subprocess.run([SVSMLOG, command, "--help"], capture_output=True, text=True, env=_wide_env())
    return "--jobs" in r.stdout


def _wide_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}  # so rich does not wrap option names


def build(n: int, records: list, out: Path, key: crypto.PrivateKey, args: argparse.Namespace) -> SizeRun:
    sz = SizeRun(records=n, payload=messages.payload_bytes(records))
    for layout in args.layouts:
        for policy in args.policies:
            label = f"{layout}/{policy}"
            st = images.build_image(image_path(out, n, label), records, layout, policy, key.public)
            sz.images[label] = st
            log(
                f"{n:,} records, {layout}/{policy}: {st.image_bytes / 1e6:.1f} MB, {st.frames:,} frames, "
                f"{st.records / st.seconds:,.0f} records/s written"
            )
    if not args.no_journald:
        t0 = time.perf_counter()
        sz.journal = journald.build_journal(records, out / f"journal-{n}")
        log(f"{n:,} records, journal: {sz.journal.file_bytes / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s")
    return sz


def commands(
    sz: SizeRun, out: Path, key_file: Path, jobs: dict[str, str | None]
) -> dict[tuple[str, str], list[str]]:
    cmds: dict[tuple[str, str], list[str]] = {}
    if sz.journal is not None:
        files = [f"--file={p}" for p in sz.journal.files]
        key = f"--verify-key={sz.journal.verify_key}"
        cmds[JOURNALD, VERIFY] = ["journalctl", *files, "--verify", key]
        cmds[JOURNALD, EXTRACT] = ["journalctl", *files, "-o", "json", "--no-pager"]
        cmds[JOURNALD, EXTRACT_TEXT] = ["journalctl", *files, "--no-pager"]
    for label in sz.images:
        img = str(image_path(out, sz.records, label))
        verify = [SVSMLOG, "verify", img, "--key", str(key_file)]
        extract = [SVSMLOG, "extract", img, "--key", str(key_file), "--format", "jsonl"]
        if jobs["verify"]:
            cmds[label, VERIFY] = [*verify, "--jobs", jobs["verify"]]
            if jobs["verify"] != "1":
                cmds[label, VERIFY_1] = [*verify, "--jobs", "1"]
        else:
            cmds[label, VERIFY] = verify
        cmds[label, EXTRACT] = [*extract, "--jobs", jobs["extract"]] if jobs["extract"] else extract
        text = extract[:-2]  # the default format
        cmds[label, EXTRACT_TEXT] = [*text, "--jobs", jobs["extract"]] if jobs["extract"] else text
        cmds[label, INFO] = [SVSMLOG, "info", img, "--json"]
    return cmds


def check_counts(sz: SizeRun, cmds: dict[tuple[str, str], list[str]]) -> list[str]:
    """Untimed: every extract writes one line per record (run on the smallest size only)."""
    notes = []
    for (subject, action), argv in cmds.items():
        if action != EXTRACT:
            continue
        r = subprocess.run(argv, capture_output=True, check=True)
        lines = r.stdout.count(b"\n")
        if lines != sz.records:
            raise SystemExit(f"{subject}: {' '.join(argv)} wrote {lines} lines for {sz.records} records")
        notes.append(subject)
    return [f"at {sz.records:,} records every extract wrote one JSON line per record ({', '.join(notes)})"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layouts", nargs="+", choices=images.LAYOUTS, default=list(images.LAYOUTS))
    ap.add_argument("--policies", nargs="+", choices=images.POLICIES, default=list(images.POLICIES))
    ap.add_argument("--jobs", help="svsmlog --jobs (default: all cores), if svsmlog offers it")
    ap.add_argument("--no-journald", action="store_true", help="skip journald (no comparison ratios)")
    ap.add_argument(
        "--out",
        type=Path,
        default=OUT,
        help="where inputs are built (svsmlog-*.img, journal-*/, owner.key are replaced)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the images, journals and key in --out")
    ap.add_argument("--startup-runs", type=int, default=20, help="runs of each start-up command (0: none)")
    ap.add_argument("--small", type=int, default=20_000,
                    help="records of the small per-service/default image (0: none)")
    ap.add_argument("--small-rounds", type=int, default=10, help="rounds over the small image")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_journald:
        journald.journal_remote()  # fail early, with the fix, if it is missing
    nproc = str(len(os.sched_getaffinity(0)))
    jobs = {c: (args.jobs or nproc) if offers_jobs(c) else None for c in ("verify", "extract")}

    remove_inputs(out)
    log(f"bytecode of {compile_svsmlog()} compiled")
    try:
        key = crypto.generate_private_key()
        key_file = out / "owner.key"
        key_file.write_bytes(key.to_pem())
        key_file.chmod(0o600)

        sizes = sorted(set(args.records))
        t0 = time.perf_counter()
        everything = messages.generate(sizes[-1])
        log(f"{sizes[-1]:,} messages generated in {time.perf_counter() - t0:.1f} s")
        runs = [build(n, everything[:n], out, key, args) for n in sizes]
        del everything
        cmds = {sz.records: commands(sz, out, key_file, jobs) for sz in runs}
        checks = check_counts(runs[0], cmds[runs[0].records])

        samples: dict[tuple[int, str, str], list[measure.Sample]] = {}
        aes: list[float] = []
        for r in range(args.repeat):
            log(f"round {r + 1} of {args.repeat}")
            aes.append(measure.openssl_aes_gcm())
            for sz in runs:
                for (subject, action), argv in cmds[sz.records].items():
                    samples.setdefault((sz.records, subject, action), []).append(measure.run(argv))
        for sz in runs:
            for subject, action in cmds[sz.records]:
                sz.timings[subject, action] = measure.summarise(samples[sz.records, subject, action])

        run = Run(
            machine=measure.machine(),
            repeat=args.repeat,
            jobs=jobs["verify"],
            aes_bps=measure.Spread.of(aes),
            sizes=runs,
            checks=checks,
            seconds=time.perf_counter() - t_start,
        )
        extra = []
        if args.startup_runs:
            log(f"start-up: {args.startup_runs} runs of each command")
            extra.append(startup.render_startup(startup.measure_startup(SVSMLOG, args.startup_runs),
                                                args.startup_runs))
        if args.small:
            log(f"small image: {args.small:,} records, {args.small_rounds} rounds")
            small = startup.measure_small(SVSMLOG, args.small, out, key, key_file, args.small_rounds,
                                          not args.no_journald)
            extra.append(startup.render_small(small, args.small_rounds))
        print("\n\n".join([render(run), *extra]))
    finally:
        if not args.keep:
            remove_inputs(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
