"""Crash campaign (CrashMonkey / ALICE in spirit; spec §1 torn writes, §7.5, §8.4, §10).

For a recorded multi-boot run, every crash point is visited: K writes landed (K = 0 ..
all), and write K+1 landed only its first T sectors (T = 0 .. sectors-1), its other
sectors either stale (old contents) or garbage. For each crashed image:

* every record the writer reported durable by write K is recovered, verified;
* no finding is a violation;
* every frame of write K+1 whose header sector landed but not its last sector is
  reported ``crash_tail`` at its offset;
* the next boot mounts the crashed image, appends, shuts down, and the result verifies
  intact with everything recovered (what was durable, and the new boot's records).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from ..device import SECTOR, MemoryDevice, RecordingDevice
from ..records import Level, Record
from ..report import Kind
from ..writer import LogWriter
from .common import RecordKey, Run, Verified, frames_in_write, owners_public, record_key, verify_bytes

FILLS = ("stale", "garbage")


@dataclass
class CrashFigures:
    run: str
    layout: str
    boots: int
    writes: int
    wrapped: bool
    cases: int = 0
    unformatted: int = 0  # crash before the superblock existed: nothing to read, next boot formats
    durable_checked: int = 0  # durable records checked, summed over cases
    durable_lost: int = 0
    false_violations: int = 0
    torn_expected: int = 0
    torn_missed: int = 0
    next_boot_failures: int = 0
    # honest crashes in a write that wrapped a ring: the hole they leave at the region start is
    # explained only by unauthenticated bytes, so the verdict is "partial" until the ring wraps
    # again (spec §8.3); any other unproven finding after an honest crash is a failure
    unproven_wrap: int = 0
    false_unproven: int = 0
    ring_order_violations: int = 0  # the writer reclaimed a frame that was not its region's oldest
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(what)

    @property
    def must_be_zero(self) -> int:
        return (
            self.durable_lost
            + self.false_violations
            + self.torn_missed
            + self.next_boot_failures
            + self.false_unproven
            + self.ring_order_violations
        )


def _garbage(run: Run, k: int, t: int, n: int) -> bytes:
    return random.Random(f"{run.name}/{k}/{t}").randbytes(n * SECTOR)


def crashed_image(run: Run, base: bytearray, k: int, t: int, fill: str) -> bytes:
    """``base`` holds the first k writes; land t sectors of write k+1 and fill the rest."""
    img = bytearray(base)
    if k < len(run.writes):
        w = run.writes[k]
        cut = t * SECTOR
        img[w.lba * SECTOR : w.lba * SECTOR + cut] = w.data[:cut]
        if fill == "garbage" and t < w.sectors:
            img[w.lba * SECTOR + cut : w.lba * SECTOR + len(w.data)] = _garbage(run, k, t, w.sectors - t)
    return bytes(img)


def next_boot(run: Run, image: bytes, tag: str) -> tuple[bytes, Counter[RecordKey], list[tuple[int, int]]]:
    """The boot after the crash: mount, one record per stream, clean shutdown. Returns the
    image, the new boot's records and its writes as (lba, sectors)."""
    mem = MemoryDevice(len(image) // SECTOR, image)
    dev = RecordingDevice(mem)
    w = LogWriter(dev, run.streams, owners_public(run))
    for i, s in enumerate(run.streams):
        w.append(s.stream, Record(1_000 + i, Level.INFO, "core", "svsm", f"after the crash {tag} {s.name}"))
    new: Counter[RecordKey] = Counter()
    for sealed in w.close():
        for r in sealed.records:
            new[record_key(w.boot, run.names[sealed.stream], sealed.seq, r)] += 1
    return mem.image(), new, [(x.lba, x.sectors) for x in dev.writes]


class Ground:
    """What must be readable after a crash, from the writer's side only: the frames whose
    sectors all still hold what the writer wrote, and the durable records in them. A frame
    the ring (or the torn write that was reclaiming it) overwrote is gone by design; the
    ring may only ever reclaim a region's oldest frames, which ``ring_order_violations``
    checks."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.by_frame: dict[tuple[int, int, int], list[tuple[RecordKey, int]]] = {}
        ids = {name: sid for sid, name in run.names.items()}
        for key, w in run.durable:
            boot, stream, seq = key[0], key[1], key[2]
            self.by_frame.setdefault((ids[stream], boot, seq), []).append((key, w))
        self.owner: dict[int, int] = {}  # sector -> index in run.frames of the frame written there
        self.index = {id(f): i for i, f in enumerate(run.frames)}
        self.frames_of_write: dict[int, list[int]] = {}
        for i, f in enumerate(run.frames):
            self.frames_of_write.setdefault(f.write, []).append(i)

    def apply(self, k: int) -> None:
        """Write k (0-based) landed."""
        w = self.run.writes[k]
        for s in range(w.lba, w.lba + w.sectors):
            self.owner.pop(s, None)
        for i in self.frames_of_write.get(k, []):
            f = self.run.frames[i]
            for s in range(f.lba, f.end):
                self.owner[s] = i

    def live(self, damaged: range = range(0)) -> list[int]:
        """Indices of frames intact now, with the sectors in ``damaged`` lost too."""
        seen = set(self.owner.values())
        out = []
        for i in sorted(seen):
            f = self.run.frames[i]
            if all(self.owner.get(s) == i for s in range(f.lba, f.end)) and not (
                f.lba < damaged.stop and damaged.start < f.end
            ):
                out.append(i)
        return out

    def records(self, frames: list[int], before_write: int) -> Counter[RecordKey]:
        out: Counter[RecordKey] = Counter()
        for i in frames:
            for key, w in self.by_frame.get(self.run.frames[i].ident, []):
                if w < before_write:
                    out[key] += 1
        return out


def ring_order_violations(run: Run, before: list[int], after: list[int]) -> list[str]:
    """Frames lost between two states must be the oldest of their region's history: the
    live frames since the newest gap in write order (older survivors before that gap are
    remnants of earlier laps in a dead zone, spec §7.3, and may outlive newer frames)."""
    kept = set(after)
    alive = set(before)
    bad = []
    for sid in run.regions:
        order = [i for i, f in enumerate(run.frames) if f.stream == sid]
        history: list[int] = []
        for i in reversed(order):
            if i not in alive:
                break
            history.append(i)
        history.reverse()
        lost = [i for i in history if i not in kept]
        survivors = [i for i in history if i in kept]
        if lost and survivors and max(lost) > min(survivors):
            f = run.frames[max(lost)]
            bad.append(f"{run.names[sid]} boot {f.boot} seq {f.seq} overwritten while older frames remain")
    return bad


def _overlaps(f_lba: int, f_end: int, writes: list[tuple[int, int]]) -> bool:
    return any(f_lba < lba + n and lba < f_end for lba, n in writes)


def check_case(
    run: Run, fig: CrashFigures, ground: Ground, base: bytearray, k: int, t: int, fill: str
) -> None:
    img = crashed_image(run, base, k, t, fill)
    where = f"{run.name} K={k} T={t} {fill}"
    fig.cases += 1
    damaged = range(0)
    if k < len(run.writes):
        w = run.writes[k]
        damaged = range(w.lba, w.lba + (w.sectors if fill == "garbage" else t))
    live = ground.live(damaged)
    durable = ground.records(live, k)
    fig.durable_checked += sum(durable.values())
    v = verify_bytes(img, run.owners)
    if v.report is None:
        if k >= run.formatted_at():
            fig.false_violations += 1
            fig.fail(f"{where}: unreadable after formatting: {v.error}")
        else:
            fig.unformatted += 1
        lost = durable
    else:
        lost = durable - v.records
        bad = v.violations()
        if bad:
            fig.false_violations += 1
            fig.fail(f"{where}: violation {[f.as_json() for f in bad][:2]}")
        _judge_unproven(run, fig, v, k, where)
        if k < len(run.writes):
            crash_at = {f.offset for f in v.report.findings if f.kind is Kind.CRASH_TAIL}
            w = run.writes[k]
            for fr in frames_in_write(w, k):
                rel = fr.lba - w.lba
                if rel < t < rel + fr.sectors:
                    fig.torn_expected += 1
                    if fr.offset not in crash_at:
                        fig.torn_missed += 1
                        fig.fail(f"{where}: torn frame at sector {fr.lba} not reported crash_tail")
    if lost:
        fig.durable_lost += sum(lost.values())
        fig.fail(f"{where}: {sum(lost.values())} durable records lost, e.g. {next(iter(lost))}")
    try:
        after, new, writes = next_boot(run, img, f"{k}/{t}/{fill}")
        kept = [i for i in live if not _overlaps(run.frames[i].lba, run.frames[i].end, writes)]
        order = ring_order_violations(run, live, kept)
        v2 = verify_bytes(after, run.owners)
        want = ground.records(kept, k) + new
        missing = want - v2.records
        partial_ok = v2.verdict == "partial" and _judge_unproven(run, fig, v2, k, where)
        honest = v2.verdict == "intact" or partial_ok
        if not honest or missing or order:
            fig.next_boot_failures += 1
            kinds = sorted({f.kind.value for f in v2.violations()})
            fig.fail(
                f"{where}: next boot {v2.verdict} {kinds}, {sum(missing.values())} records missing {order}"
            )
    except Exception as e:  # a writer that cannot carry on is a failure of the campaign's claim
        fig.next_boot_failures += 1
        fig.fail(f"{where}: next boot raised {type(e).__name__}: {e}")


def _judge_unproven(run: Run, fig: CrashFigures, v: Verified, k: int, where: str) -> bool:
    """True if every unproven finding is the hole of a crash in a wrapping write: write k
    (or an earlier one this image still shows torn) went to a region start."""
    if v.report is None:
        return True
    unproven = [f for f in v.report.findings if f.unproven]
    if not unproven:
        return True
    starts = {r.start * SECTOR for r in run.regions.values()}
    crash_wrap = {f.offset for f in v.report.findings if f.kind is Kind.CRASH_TAIL} & starts
    wrapping = any(w.lba * SECTOR in starts for w in run.writes[: k + 1])
    ok = all(f.kind is Kind.UNPROVEN and "crash while wrapping" in f.detail for f in unproven)
    if ok and crash_wrap and wrapping:
        fig.unproven_wrap += 1
        return True
    fig.false_unproven += 1
    fig.fail(f"{where}: unproven after an honest crash {[f.as_json() for f in unproven][:2]}")
    return False


def crash_campaign(run: Run, *, fills: tuple[str, ...] = FILLS) -> CrashFigures:
    """Every K and every tear point T of write K+1, with each fill."""
    t0 = time.perf_counter()
    fig = CrashFigures(run.name, run.layout.name.lower(), len(run.boot_starts), len(run.writes), run.wrapped)
    base = bytearray(run.sector_count * SECTOR)
    ground = Ground(run)
    before = ground.live()
    for k in range(len(run.writes) + 1):
        if k == len(run.writes):
            check_case(run, fig, ground, base, k, 0, "stale")
            break
        w = run.writes[k]
        for t in range(w.sectors):
            for fill in fills:
                check_case(run, fig, ground, base, k, t, fill)
        base[w.lba * SECTOR : w.lba * SECTOR + len(w.data)] = w.data
        ground.apply(k)
        now = ground.live()
        for bad in ring_order_violations(run, before, now):
            fig.ring_order_violations += 1
            fig.fail(f"{run.name} write {k}: {bad}")
        before = now
    fig.seconds = time.perf_counter() - t0
    return fig
