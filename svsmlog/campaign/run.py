"""The campaigns at a given size, and their figures as markdown.

``python -m svsmlog.campaign --out docs/campaigns.md`` runs the full size (``make campaign``);
the tests in tests/campaigns/ run the CI size. The exit status is 1 if any must-be-zero
figure is not zero (known defects included: they are real failures until fixed).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..format import Layout
from ..volume import StreamSpec
from .common import Run, campaign_key, model_run, writer_run
from .crash import CrashFigures, crash_campaign
from .forgery import ATTESTED_BASES, attested_tamper, forgery_campaign, forgery_specs
from .forgery import CLASSES as FORGERY_CLASSES
from .forgery import PREFIX as FORGERY_PREFIX
from .hostile import (
    GENERATORS,
    Hostile,
    HostileFigures,
    RandomDraw,
    check_image,
    generate,
    key_cases,
    run_in_process,
    run_subprocess,
)
from .tamper import KNOWN_DEFECTS, TamperFigures, merge_tamper, tamper_bases, tamper_campaign

PER_SERVICE = ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")
SMALL = {n: 32 for n in PER_SERVICE}

# Defects found by the campaigns and fixed since (regression tests in
# tests/campaigns/test_found_defects.py); listed in the report for the record.
FIXED_DEFECTS = {
    "D13": "a region whose oldest readable frame followed a boot sealed to another owner was taken as "
    "holding its whole history, so boots the ring had rotated out were reported frame_missing",
    "D1": "a frame header claiming a huge seq made the reader ratchet its chain that many steps "
    "(seq 2**22: ~16 s; 2**40: days)",
    "D3": "a frame whose volume_id was changed was ignored unless its digest was right: a flipped bit in "
    "a boot's END frame read as a boot that never shut down (now frame_foreign)",
    "D4": "a gap in a wrapped region was reported between two adjacent present frames, not at the "
    "missing one",
    "D5": "the superblock was checked only against BOOT frames: once the ring reclaimed them a renamed "
    "region went unnoticed, and a changed volume_id was reported as frame_foreign everywhere",
    "D6": "an authenticated record block that does not parse made Verifier.records() raise: 'extract' "
    "exited 2 and wrote none of the verified records",
    "D7": "envelopes that open (host-chosen boot secrets sealed to the owner's public key) were not "
    "bounded: every candidate of the boot was tried with every secret, quadratic in the image size",
    "D2b": "a torn or unreadable frame at the region start excused missing history as rotation without "
    "the room conditions a missing start needs (one seq or boot bit of a roomy region's genesis BOOT "
    "frame, or of a wrap's KEYS frame, gave verdict intact)",
    "D10": "a frame header claiming boot 0 (spec §4.3: boot >= 1) was taken as a frame we hold no key for "
    "and, at a region start, excused the missing history as rotation",
    "D11": "an earlier lap's wrap frame spliced back over the newest one at the region start brought its "
    "old wrap_from: the violation was reported at a gap the ring had made legitimately",
    "D9": "a claimed seq past the ratchet budget was ratcheted towards until the image's whole budget was "
    "spent; every frame read after it was then frame_corrupt and its records were not output",
    "D12": "a torn frame at the start of a wrapped region claiming the next seq after the head was taken "
    "for a crash while wrapping although the head had ended its boot (an END frame): one seq bit of the "
    "wrap's KEYS frame gave verdict intact",
    "D2a": "erasing the region start (a wrap write in the middle of a boot, or a small region's first "
    "frames) was excused as a crash while wrapping whatever the erased length",
}
HOSTILE_DEFECTS: dict[str, str] = {}
DEFECTS = {**KNOWN_DEFECTS, **HOSTILE_DEFECTS}


# --------------------------------------------------------------------------- sizes


def _crash_runs(seed: int, full: bool) -> list[Callable[[], Run]]:
    ps3 = [StreamSpec(1, "core", 48), StreamSpec(2, "vtpm", 40), StreamSpec(3, "uefi", 32)]
    boots = 5 if full else 4
    runs: list[Callable[[], Run]] = [
        lambda: writer_run(
            f"writer/aggregated/{seed}",
            [StreamSpec(1, "all", 96)],
            boots=boots,
            records_per_boot=30,
            seed=seed,
        ),
        lambda: writer_run(
            f"writer/per-service/{seed}",
            ps3,
            boots=boots - 1,
            records_per_boot=30,
            seed=seed,
            layout=Layout.PER_SERVICE,
        ),
        lambda: model_run(
            "multi-boot", Layout.AGGREGATED, boots=boots, seed=seed, sectors={"all": 96}, steady_s=2
        ),
        lambda: model_run(
            "multi-boot", Layout.PER_SERVICE, boots=boots, seed=seed, sectors=SMALL, steady_s=1.5
        ),
        lambda: model_run("wraparound", Layout.AGGREGATED, boots=3, seed=seed, steady_s=6),
        lambda: model_run("debug", Layout.PER_SERVICE, boots=2, seed=seed, sectors=SMALL, steady_s=1),
        lambda: model_run(
            "multi-boot",
            Layout.AGGREGATED,
            boots=3,
            seed=seed,
            owners=("owner-pq",),
            sectors={"all": 128},
            steady_s=1.5,
        ),
        # grants (some must wrap), and a post-quantum owner added from the second boot on
        lambda: writer_run(
            f"writer/grants-and-recipients/{seed}",
            [StreamSpec(1, "core", 40), StreamSpec(2, "vtpm", 32)],
            boots=3,
            records_per_boot=24,
            seed=seed,
            layout=Layout.PER_SERVICE,
            grant_at=5,
            added_owner=(1, "owner-pq"),
        ),
    ]
    if full:
        runs += [
            lambda: model_run("wraparound", Layout.PER_SERVICE, boots=3, seed=seed, steady_s=6),
            lambda: model_run("panic", Layout.PER_SERVICE, boots=3, seed=seed, sectors=SMALL),
            lambda: model_run(
                "attestation-failure", Layout.AGGREGATED, boots=3, seed=seed, sectors={"all": 64}
            ),
        ]
    return runs


@dataclass(frozen=True)
class Size:
    name: str
    crash_seeds: tuple[int, ...]
    tamper_dense: bool
    hostile_per_generator: int
    hostile_max_sectors: int
    hostile_subprocess: bool
    hostile_big_mib: tuple[int, ...] = ()  # extra large images (magic sectors, random) to show linearity
    jobs: int = 1


CI = Size("ci", (1,), False, 4, 2048, False)
FULL = Size("full", (1, 2, 3), True, 15, 8192, True, (16, 64), jobs=2)


# --------------------------------------------------------------------------- running


def _crash_job(args: tuple[int, int, bool]) -> CrashFigures:
    seed, i, full = args
    run = _crash_runs(seed, full)[i]()
    fig = crash_campaign(run)
    fig.run = f"{run.name} (seed {seed})" if not run.name.endswith(f"/{seed}") else run.name
    return fig


def run_crash(size: Size) -> list[CrashFigures]:
    full = size.name == "full"
    jobs = [(seed, i, full) for seed in size.crash_seeds for i in range(len(_crash_runs(seed, full)))]
    if size.jobs > 1:
        with ProcessPoolExecutor(size.jobs) as ex:
            return list(ex.map(_crash_job, jobs))
    return [_crash_job(j) for j in jobs]


def _tamper_job(args: tuple[str, int]) -> TamperFigures:
    size_name, index = args
    bases, other = tamper_bases(size_name)
    return tamper_campaign([bases[index]], other, dense=size_name == "full")


def _forgery_job(args: tuple[str, str, int]) -> TamperFigures:
    size_name, what, index = args
    if what == "tamper":
        return attested_tamper(size_name, index)
    specs, other = forgery_specs(size_name)
    return forgery_campaign([specs[index]], other, every=size_name == "full")


def _forgery_jobs(size: Size) -> list[tuple[str, str, int]]:
    return [(size.name, "programs", i) for i in range(len(forgery_specs(size.name)[0]))] + [
        (size.name, "tamper", i) for i in range(len(ATTESTED_BASES))
    ]


def run_forgery(size: Size) -> TamperFigures:
    """Attested boots (svsmlog/campaign/forgery.py): the host's forgeries at every boot
    position, and the tamper classes over attested bases."""
    return merge_tamper([_forgery_job(j) for j in _forgery_jobs(size)])


def run_tamper(size: Size, *, forgery: bool = False) -> TamperFigures:
    """The tamper campaign; with ``forgery``, the forgery classes of attested boots too."""
    if size.jobs > 1:
        n = len(tamper_bases(size.name)[0])
        with ProcessPoolExecutor(size.jobs) as ex:
            # the big tamper bases first; the shorter attested jobs then fill the gaps
            parts = ex.map(_tamper_job, [(size.name, i) for i in range(n)])
            forged = ex.map(_forgery_job, _forgery_jobs(size) if forgery else [])
            return merge_tamper(list(parts) + list(forged))
    bases, other = tamper_bases(size.name)
    fig = tamper_campaign(bases, other, dense=size.tamper_dense)
    return merge_tamper([fig, run_forgery(size)]) if forgery else fig


@dataclass
class KeyResult:
    name: str
    expect: int
    got: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.got == self.expect and not self.problems


def run_hostile(size: Size, workdir: Path) -> tuple[list[HostileFigures], list[KeyResult], float]:
    t0 = time.perf_counter()
    key = campaign_key("owner")
    key_path = workdir / "owner.key"
    key_path.write_bytes(key.to_pem())
    figs = []
    for kind in GENERATORS:
        fig = HostileFigures(kind)
        n = size.hostile_per_generator
        max_sectors = size.hostile_max_sectors
        for i in range(n):
            h = generate(kind, RandomDraw(f"{size.name}/{kind}/{i}"), max_sectors, key)
            check_image(
                fig, h, workdir / "hostile.img", key_path, key, subprocess_mode=size.hostile_subprocess
            )
        figs.append(fig)
    for mib in size.hostile_big_mib:
        for h in (_big_magic(mib), _big_moved(mib), _big_random_volume(mib)):
            fig = HostileFigures(f"{h.name}, {mib} MiB")
            check_image(fig, h, workdir / "big.img", key_path, key, subprocess_mode=True,
                        commands=BIG_IMAGE_COMMANDS)
            figs.append(fig)
    # bad keys, against a real image
    image = workdir / "good.img"
    base = model_run("multi-boot", Layout.PER_SERVICE, boots=2, seed=11, steady_s=1)
    image.write_bytes(base.final())
    results = []
    for kc in key_cases(workdir / "keys", image, key):
        run = run_subprocess(kc.argv, timeout=60) if size.hostile_subprocess else run_in_process(kc.argv)
        results.append(KeyResult(kc.name, kc.expect, run.code, run.problems()))
    return figs, results, time.perf_counter() - t0


# The big images also go through the outputs as long as the image: every finding, every frame.
BIG_IMAGE_COMMANDS = ("verify", "verify --json", "extract", "info", "info --json", "info --frames")


def _big_volume(mib: int) -> tuple[bytearray, bytes, int]:
    return _volume(mib * 2048 - 64)


def _volume(sectors: int) -> tuple[bytearray, bytes, int]:
    """A superblock over one region of ``sectors`` zeroed sectors, from sector 64."""
    from ..device import SECTOR
    from .hostile import _sb

    vid = bytes(range(16))
    img = bytearray((64 + sectors) * SECTOR)
    img[:SECTOR] = _sb(vid, 64 + sectors, [(1, "all", 64, sectors)])
    return img, vid, sectors


def _big_magic(mib: int) -> Hostile:
    """One region of ``mib`` MiB with the longest forged header that fits on every sector."""
    from ..codec import FrameHeader, encode_frame_header
    from ..device import SECTOR
    from ..format import MAX_CT_LEN

    img, vid, sectors = _big_volume(mib)
    for lba in range(64, 64 + sectors):
        left = (64 + sectors - lba) * SECTOR - 84
        ct = max(16, min(MAX_CT_LEN, left))
        h = encode_frame_header(FrameHeader(3, 1, 1, lba, lba, vid, bytes(16), 0, ct, bytes(16)))
        img[lba * SECTOR : lba * SECTOR + 84] = h
    return Hostile("a frame magic on every sector", bytes(img))


def _big_moved(mib: int) -> Hostile:
    return Hostile("a moved frame on every sector", moved_frames_volume(mib * 2048 - 64))


def moved_frames_volume(frames: int) -> bytes:
    """One region of ``frames`` sectors with a one-sector frame on every sector, each
    claiming to have been written 64 sectors earlier: the reader reports every one
    (frame_moved), so the report is as long as the region (131,008 findings at 64 MiB)."""
    from ..codec import FrameHeader, encode_frame_header
    from ..device import SECTOR

    img, vid, sectors = _volume(frames)
    for lba in range(64, 64 + sectors):
        h = encode_frame_header(FrameHeader(3, 1, 1, lba, lba - 64, vid, bytes(16), 0, 100, bytes(16)))
        img[lba * SECTOR : lba * SECTOR + len(h)] = h
    return bytes(img)


def _big_random_volume(mib: int) -> Hostile:
    """A valid superblock over one region of random bytes."""
    from ..device import SECTOR

    img, _, sectors = _big_volume(mib)
    img[64 * SECTOR :] = RandomDraw(f"big/{mib}").bytes(sectors * SECTOR)
    return Hostile("random bytes in a valid volume", bytes(img))


# --------------------------------------------------------------------------- markdown


def _n(x: int) -> str:
    return f"{x:,}"


def crash_table(figs: list[CrashFigures]) -> str:
    head = (
        "| run | layout | boots | writes | ring wrapped | crash images | before format | durable records "
        "checked | durable lost | false violations | torn tails (reported/expected) | next-boot failures "
        "| ring-order violations | s |\n|" + "---|" * 14 + "\n"
    )
    rows = []
    tot = CrashFigures("total", "", 0, 0, False)
    for f in figs:
        rows.append(
            f"| {f.run} | {f.layout} | {f.boots} | {f.writes} | {'yes' if f.wrapped else 'no'} "
            f"| {_n(f.cases)} | {_n(f.unformatted)} | {_n(f.durable_checked)} | **{f.durable_lost}** "
            f"| **{f.false_violations}** "
            f"| {f.torn_expected - f.torn_missed}/{f.torn_expected} | **{f.next_boot_failures}** "
            f"| **{f.ring_order_violations}** | {f.seconds:.1f} |"
        )
        for a in (
            "writes",
            "cases",
            "unformatted",
            "durable_checked",
            "durable_lost",
            "false_violations",
            "torn_expected",
            "torn_missed",
            "next_boot_failures",
            "ring_order_violations",
        ):
            setattr(tot, a, getattr(tot, a) + getattr(f, a))
        tot.seconds += f.seconds
    rows.append(
        f"| **all** | | | {_n(tot.writes)} | | **{_n(tot.cases)}** | {_n(tot.unformatted)} "
        f"| {_n(tot.durable_checked)} | **{tot.durable_lost}** | **{tot.false_violations}** "
        f"| {tot.torn_expected - tot.torn_missed}/{tot.torn_expected} | **{tot.next_boot_failures}** "
        f"| **{tot.ring_order_violations}** | {tot.seconds:.1f} |"
    )
    return head + "\n".join(rows) + "\n"


def tamper_table(fig: TamperFigures) -> str:
    head = (
        "| class | cases | claimed | detected | located | missed | unproven | unproven reported intact "
        "| false violations | harmless as specified | not claimed (limit) | limit caught by the anchor "
        "| untouched frames' records lost | origin findings not as predicted "
        "| judged otherwise with a 7-sector scan window | known defects |\n|"
        + "---|" * 16
        + "\n"
    )
    rows = []
    keys = (
        "cases",
        "claimed",
        "detected",
        "located",
        "missed",
        "unp",
        "unp_intact",
        "false",
        "harmless",
        "ok",
        "lim",
        "ac",
        "a",
        "col",
        "cc",
        "ow",
        "oc",
        "wd",
        "wc",
    )
    tot = dict.fromkeys(keys, 0)
    for r in sorted(fig.rows.values(), key=_class_order):
        known = ", ".join(f"{k}: {v}" for k, v in sorted(r.known.items())) or ""
        harmless = f"{r.harmless_ok}/{r.harmless}" if r.harmless else ""
        anchor = f"{r.anchor_caught}/{r.anchor_cases}" if r.anchor_cases else ""
        lim = (
            f"{r.limits}" + (f" ({r.limits_flagged} flagged)" if r.limits_flagged else "") if r.limits else ""
        )
        unp = f"{r.unproven}" if r.unproven else ""
        col = f"**{r.collateral}** of {r.collateral_checked}" if r.collateral_checked else ""
        origin = f"**{r.origin_wrong}** of {r.origin_checked}" if r.origin_checked else ""
        window = f"**{r.window_differs}** of {r.window_checked}" if r.window_checked else ""
        rows.append(
            f"| {r.cls} | {_n(r.cases)} | {_n(r.claimed)} | {_n(r.detected)} | {_n(r.located)} "
            f"| **{r.missed}** | {unp} | **{r.unproven_intact}** | **{r.false_violations}** | {harmless} "
            f"| {lim} | {anchor} | {col} | {origin} | {window} | {known} |"
        )
        vals = (
            r.cases,
            r.claimed,
            r.detected,
            r.located,
            r.missed,
            r.unproven,
            r.unproven_intact,
            r.false_violations,
            r.harmless,
            r.harmless_ok,
            r.limits,
            r.anchor_caught,
            r.anchor_cases,
            r.collateral,
            r.collateral_checked,
            r.origin_wrong,
            r.origin_checked,
            r.window_differs,
            r.window_checked,
        )
        for k, v in zip(keys, vals, strict=True):
            tot[k] += v
    rows.append(
        f"| **all** | **{_n(tot['cases'])}** | {_n(tot['claimed'])} | {_n(tot['detected'])} "
        f"| {_n(tot['located'])} | **{tot['missed']}** | {_n(tot['unp'])} | **{tot['unp_intact']}** "
        f"| **{tot['false']}** | {tot['ok']}/{tot['harmless']} | {tot['lim']} "
        f"| {tot['ac']}/{tot['a']} | **{tot['col']}** of {_n(tot['cc'])} "
        f"| **{tot['ow']}** of {_n(tot['oc'])} | **{tot['wd']}** of {_n(tot['wc'])} | |"
    )
    return head + "\n".join(rows) + "\n"


def _class_order(r) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    if r.cls.startswith(FORGERY_PREFIX):  # after the others, in the order of forgery.CLASSES
        return (100 + FORGERY_CLASSES.index(r.cls[len(FORGERY_PREFIX) :]), r.cls)
    order = ["superblock", "key-directory", "BOOT", "DATA", "END", "KEYS", "commit", "padding"]
    for i, p in enumerate(order):
        if r.cls.startswith(p):
            return (i, r.cls)
    return (len(order), r.cls)


def hostile_table(figs: list[HostileFigures]) -> str:
    head = (
        "| generator | images | CLI runs | MiB | exit 0/1/2/3 | wrong exit | stderr problems | too slow "
        "| too big | worst s | worst s/MiB | worst memory MiB |\n|" + "---|" * 12 + "\n"
    )
    rows = []
    for f in figs:
        ex = "/".join(str(f.exits.get(c, 0)) for c in (0, 1, 2, 3))
        rows.append(
            f"| {f.kind} | {f.images} | {f.runs} | {f.bytes_total / (1 << 20):.1f} | {ex} "
            f"| **{f.wrong_exit}** | **{f.bad_stderr}** | **{f.too_slow}** | **{f.too_big}** "
            f"| {f.worst_seconds:.2f} | {f.worst_s_per_mib:.2f} | {f.worst_peak / (1 << 20):.0f} |"
        )
    return head + "\n".join(rows) + "\n"


def keys_table(results: list[KeyResult]) -> str:
    head = "| case | expected exit | exit | ok |\n|---|---|---|---|\n"
    return (
        head
        + "\n".join(
            f"| {r.name} | {r.expect} | {r.got} | {'yes' if r.ok else '**no** ' + '; '.join(r.problems)} |"
            for r in results
        )
        + "\n"
    )


def must_be_zero(
    crash: list[CrashFigures],
    tamper: TamperFigures | None,
    hostile: list[HostileFigures],
    keys: list[KeyResult],
) -> int:
    return (
        sum(f.must_be_zero for f in crash)
        + (tamper.must_be_zero if tamper else 0)
        + sum(f.must_be_zero for f in hostile)
        + sum(1 for k in keys if not k.ok)
    )


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
            mem = f", {kb / (1 << 20):.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){mem}, "
        f"Python {platform.python_version()}"
    )


def render(
    size: Size,
    command: str,
    crash: list[CrashFigures],
    tamper: TamperFigures | None,
    hostile: list[HostileFigures],
    keys: list[KeyResult],
    seconds: dict[str, float],
) -> str:
    bad = must_be_zero(crash, tamper, hostile, keys)
    out = [
        "# Campaigns: crash, tamper and hostile input\n",
        "Generated by the campaign itself; do not edit by hand. It proves the rows of the guarantees "
        "table of [formats/svsmlog-v3.md](../formats/svsmlog-v3.md) §10 and respects its stated limits "
        "(see `svsmlog/campaign/`). **Bold** figures must be zero.\n",
        f"- command: `{command}`",
        f"- size: {size.name}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        "- time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        f"- must-be-zero figures not zero: **{bad}**"
        + (" (see the examples and the defects below)" if bad else ""),
        "",
    ]
    if crash:
        out += [
            "## Crash campaign\n",
            "Every multi-boot run is recorded write by write. For every K (writes landed) and every tear "
            "point T of write K+1 (0 .. sectors-1), with the unwritten sectors left stale and, separately, "
            "filled with garbage: every record the writer reported durable and whose frame the ring had "
            "not reclaimed is recovered, verified; no finding is a violation; every frame of write K+1 whose "
            "header sector landed but not its last is reported `crash_tail` at its offset; the next boot "
            "mounts the crashed image, logs, shuts down, reclaims only the oldest frames, and the result "
            "verifies intact with everything recovered.\n",
            crash_table(crash),
        ]
    if tamper:
        out += [
            "## Tamper campaign\n",
            "Expected outcomes are decided by the v3 reader rules (obligations O1 and O2, the END rule, "
            "crash while wrapping, links through unreadable frames) applied to the writer's ground "
            "truth (`Rules` in `svsmlog/campaign/tamper.py`), not from the reader. *claimed*: the rules "
            "give a violation; *detected*: verdict violated; *located*: a violation names the changed "
            "frame or structure by byte offset or (stream, boot, seq), or is one the rules predict; "
            "*unproven*: the rules give no violation but something unproven (a `no_key` frame, a crash "
            "while wrapping, a torn slot of a later boot): the verdict must not be intact; *false "
            "violations*: a `frame_missing` for an absence O1 excuses, and in the `attested:` rows any "
            "violation where the rules give none; "
            "*harmless as specified*: commit digest and padding changes leave the verdict intact and "
            "the same records verified (§4.3), as do untouched attested volumes; *untouched frames' "
            "records lost*: cases where a record of "
            "a frame the change did not touch is no longer output, verified or not (§9); *not "
            "claimed*: a stated limit (the newest tail of a boot in a stream that nothing later names, "
            "the whole image rolled back, oldest history of a wrapped region, keys destroyed where what "
            "is left is older than a proven rotation, a boot forged by the host); "
            "*limit caught by the anchor*: the limits §10 says an anchor taken later "
            "detects, checked with the writer's anchor from the end of the run; *origin findings not "
            "as predicted*: attested volumes, cases whose origin findings (kind, boot) differ from those "
            "the origin rules predict; *judged otherwise with a 7-sector scan window*: every third case "
            "verified again with the region scan reading 7 sectors at a time, so that frames lie across "
            "the ends of its windows (where the verifier's window lane leaves them to the general path): "
            "cases whose report or records differ from the default window's. Base images: "
            + ", ".join(tamper.bases)
            + ".\n",
            "The `attested:` rows are the forgery campaign (`svsmlog/campaign/forgery.py`): volumes of "
            "the SVSM model on a TEST-ONLY SEV-SNP platform, every boot attested, in which the boot at "
            "one position (first, middle, newest; every position at full size) is replaced by one act of "
            "the host (`svsmlog/model/host.py`: the owner's public key, the image bytes, reports seen in "
            "any image, the guest OS's reports), the genuine boots after it carrying on; each image "
            "verified with the TEST-ONLY ARK and ASK and the genuine build's measurement, without and "
            "with `--require-attestation`. The outcome is derived, not listed per class: the origin "
            "rules (`OriginRules` in `svsmlog/campaign/tamper.py`) hold what each boot's authenticated "
            "key frames carry, as written, against what an honest attested writer must have written "
            "(a report a trusted chip signed at VMPL0, whose REPORT_DATA commits to the volume, the "
            "boot, its envelopes and launch grants, of the expected build, without the debug policy).\n",
            tamper_table(tamper),
            f"Forged later boots on volumes without attestation (the host runs the writer with the "
            f"owner's public key): verdict intact, "
            f"{tamper.forged_verified_records} forged records output as verified: as §10 states, only an "
            "anchor of a later boot or of the forged boot's number tells a real boot from one the host made "
            "(the forged boots after a rollback are in the row above, caught by the anchor). On attested "
            "volumes the `attested:` rows show every such boot reported.\n",
        ]
    if hostile:
        out += [
            "## Hostile input\n",
            "Images built to be structurally plausible and hostile (see `svsmlog/campaign/hostile.py`), "
            "each given to `svsmlog verify`, `extract -f jsonl` and `info` (the big ones also to "
            "`verify --json`, `info --json` and `info --frames`)"
            + (" in a subprocess (max RSS as GNU time's %M: the CLI forked by a small launcher, not by "
               "the campaign)" if size.hostile_subprocess else " in process")
            + ". Exit status must match the reader's own judgement (0 intact, 1 violated, 2 unreadable, "
            "3 nothing opened), stderr at most one line and never a traceback or an 'unexpected' error, "
            "time within 10 s + 20 s/MiB, memory within 64 MiB + 2 × the image.\n",
            hostile_table(hostile),
            "### Keys\n",
            keys_table(keys),
        ]
    failing = [(r.cls, r.examples) for r in (tamper.rows.values() if tamper else []) if r.must_be_zero]
    failing += [(f.kind, f.examples) for f in hostile if f.must_be_zero]
    failing += [(f.run, f.examples) for f in crash if f.must_be_zero]
    if failing:
        out += ["## Examples of non-zero must-be-zero figures\n"]
        for cls, examples in failing:
            out += [f"- {cls}:"] + [f"  - `{e[:300]}`" for e in examples[:3]]
        out += [""]
    out += ["## Defects\n", "Open (strict-xfail reproducers in `tests/campaigns/test_found_defects.py`):\n"]
    out += [f"- **{k}**: {v}" for k, v in DEFECTS.items()] or ["- none"]
    out += ["", "Found by these campaigns and fixed since (regression tests in the same file):\n"]
    out += [f"- {k}: {v}" for k, v in FIXED_DEFECTS.items()]
    out += [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m svsmlog.campaign", description=__doc__)
    p.add_argument("--out", type=Path, help="write the markdown here (e.g. docs/campaigns.md)")
    p.add_argument("--size", choices=("ci", "full"), default="full")
    p.add_argument("--only", default="crash,tamper,hostile", help="comma-separated campaigns to run")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: 2 at full size)")
    a = p.parse_args(argv)
    size = FULL if a.size == "full" else CI
    if a.jobs is not None:
        size = Size(**{**size.__dict__, "jobs": a.jobs})
    only = set(a.only.split(","))
    seconds: dict[str, float] = {}
    crash: list[CrashFigures] = []
    tamper = None
    hostile: list[HostileFigures] = []
    keys: list[KeyResult] = []
    if "crash" in only:
        t = time.perf_counter()
        crash = run_crash(size)
        seconds["crash"] = time.perf_counter() - t
    if "tamper" in only:
        t = time.perf_counter()
        tamper = run_tamper(size, forgery=True)
        seconds["tamper"] = time.perf_counter() - t
    if "hostile" in only:
        with tempfile.TemporaryDirectory() as d:
            hostile, keys, seconds["hostile"] = run_hostile(size, Path(d))
    args = " ".join(
        ["python -m svsmlog.campaign", *(argv if argv is not None else __import__("sys").argv[1:])]
    )
    text = render(size, args, crash, tamper, hostile, keys, seconds)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 1 if must_be_zero(crash, tamper, hostile, keys) else 0
